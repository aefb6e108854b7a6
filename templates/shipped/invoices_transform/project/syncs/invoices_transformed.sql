-- One row per invoice, its lines as the source keeps them (jsonb): the
-- transform reshapes them.
SELECT
    i.id,
    i.number,
    co.vat      AS customer_vat,
    i.issued_on AS invoice_date,
    i.currency,
    i.lines,
    i._sdc_batched_at
FROM {{invoices_table}} AS i
LEFT JOIN {{companies_table}} AS co ON co.id = i.company_id
