-- Pairs of a CRM company and the ERP partner it already is, matched on VAT.
-- The ERP's partners reach the warehouse through its own ELT pipeline.
-- Seed them: ferry link seed companies_seeded --query "$(cat seeds/companies_seeded.sql)"
SELECT s.id AS source_id, t.id AS target_id
FROM {{companies_table}} AS s
JOIN {{target_table}} AS t ON t.{{match_column}} = s.{{match_column}}
WHERE s.{{match_column}} IS NOT NULL
