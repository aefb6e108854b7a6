-- What happens in the CRM between two demo runs, as the ELT loads it:
-- 1. a re-load stamps five companies again without changing them,
UPDATE crm.companies SET _sdc_batched_at = now() WHERE id BETWEEN 1 AND 5;
-- 2. three contacts really change (a new name, a stage moving on),
UPDATE crm.contacts SET last_name = last_name || '-Smith', _sdc_batched_at = now() WHERE id IN (1001, 1002);
UPDATE crm.contacts SET lifecycle_stage = 'customer', _sdc_batched_at = now() WHERE id = 1004 AND lifecycle_stage <> 'customer';
-- 3. a new company arrives with two new contacts.
INSERT INTO crm.companies (id, name, vat, city, _sdc_batched_at) VALUES (41, 'Nakatomi 41', 'BE0999999999', 'Ghent', now());
INSERT INTO crm.contacts (id, first_name, last_name, email, lifecycle_stage, company_id, _sdc_batched_at) VALUES
    (1151, 'Holly', 'Gennaro', 'holly@nakatomi.example', 'customer', 41, now()),
    (1152, 'Hans', 'Gruber', 'hans@nakatomi.example', 'lead', 41, now());
