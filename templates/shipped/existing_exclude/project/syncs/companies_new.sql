-- Companies the ERP does not have yet. The ERP's partners come from its own
-- ELT pipeline; a partner Ferry wrote (its origin says so) keeps its company
-- in scope, so later changes still reach it.
SELECT s.id, s.name, s.vat, s.city, s._sdc_batched_at
FROM {{companies_table}} AS s
WHERE NOT EXISTS (
    SELECT 1
    FROM {{target_table}} AS t
    WHERE t.{{match_column}} = s.{{match_column}}
      AND t.origin IS DISTINCT FROM {{origin}}
)
