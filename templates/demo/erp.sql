-- The demo target: an ERP's partners and people, in their own database.
DROP SCHEMA IF EXISTS erp CASCADE;
CREATE SCHEMA erp;
CREATE TABLE erp.partners (
    id         bigserial PRIMARY KEY,
    name       text NOT NULL,
    vat        text UNIQUE,
    city       text,
    origin     text,
    meta       jsonb,
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE erp.people (
    id         bigserial PRIMARY KEY,
    partner_id bigint REFERENCES erp.partners (id),
    full_name  text NOT NULL,
    email      text NOT NULL UNIQUE,
    segment    char(1) CHECK (segment IN ('A', 'B', 'C')),
    created_at timestamptz NOT NULL DEFAULT now()
);
