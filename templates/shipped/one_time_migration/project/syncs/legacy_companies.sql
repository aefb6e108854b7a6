-- The legacy system's companies, as the migration moves them (shared by
-- legacy_companies_test.yaml and legacy_companies.yaml).
SELECT
    l.id,
    trim(l.name) AS name,
    l.vat,
    l.city
FROM {{legacy_table}} AS l
