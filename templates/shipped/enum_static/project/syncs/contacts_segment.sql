-- The CRM's lifecycle stage → the ERP's segment: a static enum mapping.
-- Add a WHEN for every new option; the ELSE catches the rest.
SELECT
    c.id,
    c.first_name || ' ' || c.last_name AS full_name,
    lower(c.email)                     AS email,
    CASE c.lifecycle_stage
        WHEN {{stage_for_a}} THEN 'A'
        WHEN {{stage_for_b}} THEN 'B'
        ELSE {{other_segment}}
    END                                AS segment,
    c._sdc_batched_at
FROM {{contacts_table}} AS c
WHERE c.email IS NOT NULL
