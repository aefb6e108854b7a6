-- Contacts with an e-mail address. The id field written back is not read
-- here: writing it back does not make the contact change.
SELECT
    c.id,
    c.first_name || ' ' || c.last_name AS full_name,
    lower(c.email)                     AS email,
    c._sdc_batched_at
FROM {{contacts_table}} AS c
WHERE c.email IS NOT NULL
