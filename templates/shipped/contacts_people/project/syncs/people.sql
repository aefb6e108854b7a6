-- The scope query: one row per contact to sync, shaped for the ERP's people.
-- Edit it freely: `ferry check people` and `ferry plan people` say what it does.
SELECT
    c.id,
    c.first_name || ' ' || c.last_name                      AS full_name,
    lower(c.email)                                          AS email,
    coalesce(country.name, c.country_code)                  AS country,   -- an unknown code stays as it is
    CASE WHEN c.lifecycle_stage = {{vip_stage}} THEN 'VIP' ELSE 'Standard' END AS category,
    c._sdc_batched_at
FROM {{contacts_table}} AS c
LEFT JOIN (VALUES
    ('BE', 'Belgium'), ('DE', 'Germany'), ('FR', 'France'), ('LU', 'Luxembourg'),
    ('NL', 'Netherlands'), ('GB', 'United Kingdom'), ('UK', 'United Kingdom'), ('US', 'United States')
) AS country (code, name) ON country.code = upper(c.country_code)
WHERE c.email IS NOT NULL          -- the ERP requires an e-mail address
