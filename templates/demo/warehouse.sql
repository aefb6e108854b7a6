-- The demo warehouse: what an ELT pipeline would have loaded from a CRM.
DROP SCHEMA IF EXISTS crm CASCADE;
CREATE SCHEMA crm;
CREATE TABLE crm.companies (
    id              bigint PRIMARY KEY,
    name            text NOT NULL,
    vat             text,
    city            text,
    _sdc_batched_at timestamptz NOT NULL
);
CREATE INDEX ON crm.companies (_sdc_batched_at);
CREATE TABLE crm.contacts (
    id              bigint PRIMARY KEY,
    first_name      text NOT NULL,
    last_name       text NOT NULL,
    email           text,
    lifecycle_stage text,
    company_id      bigint REFERENCES crm.companies (id),
    _sdc_batched_at timestamptz NOT NULL
);
CREATE INDEX ON crm.contacts (_sdc_batched_at);

INSERT INTO crm.companies (id, name, vat, city, _sdc_batched_at)
SELECT g,
       (ARRAY['Acme', 'Globex', 'Initech', 'Umbrella', 'Hooli', 'Stark', 'Wayne', 'Wonka'])[1 + (g - 1) % 8] || ' ' || g,
       'BE0' || (400000000 + g * 7919),
       (ARRAY['Ghent', 'Antwerp', 'Brussels', 'Leuven'])[1 + g % 4],
       timestamptz '2026-11-01 08:00:00+00' + g * interval '1 minute'
FROM generate_series(1, 40) AS g;

INSERT INTO crm.contacts (id, first_name, last_name, email, lifecycle_stage, company_id, _sdc_batched_at)
SELECT 1000 + g,
       (ARRAY['Ann', 'Bob', 'Cleo', 'Dirk', 'Eva', 'Frank'])[1 + g % 6],
       (ARRAY['Peeters', 'Janssens', 'Maes', 'Jacobs'])[1 + g % 4],
       CASE WHEN g % 25 = 0 THEN NULL ELSE 'person' || g || '@example.com' END,
       (ARRAY['lead', 'opportunity', 'customer'])[1 + g % 3],
       1 + (g - 1) % 40,
       timestamptz '2026-11-01 09:00:00+00' + g * interval '1 minute'
FROM generate_series(1, 150) AS g;
