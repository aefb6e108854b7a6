-- Scope query: only contacts with an e-mail address, names joined, the
-- CRM's lifecycle stage mapped to the ERP's segments (an enum mapping).
SELECT
    c.id,
    c.first_name || ' ' || c.last_name AS full_name,
    lower(c.email)                     AS email,
    CASE c.lifecycle_stage
        WHEN 'customer'    THEN 'A'
        WHEN 'opportunity' THEN 'B'
        ELSE 'C'
    END                                AS segment,
    c.company_id,
    c._sdc_batched_at
FROM crm.contacts AS c
WHERE c.email IS NOT NULL
