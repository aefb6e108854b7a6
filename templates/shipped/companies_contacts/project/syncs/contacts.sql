-- Contacts with an e-mail address (the ERP requires one), their names joined.
-- company_id stays a CRM id: the relation in contacts.yaml translates it.
SELECT
    c.id,
    c.first_name || ' ' || c.last_name AS full_name,
    lower(c.email)                     AS email,
    c.company_id,
    c._sdc_batched_at
FROM {{contacts_table}} AS c
WHERE c.email IS NOT NULL
