-- One row per invoice; its lines rebuilt as the target wants them: a JSON
-- array (jsonb, not text) of {"Name", "Quantity", "UnitPrice"}, in order.
SELECT
    i.id,
    i.number,
    co.vat        AS customer_vat,
    i.issued_on   AS invoice_date,
    i.currency,
    (SELECT jsonb_agg(jsonb_build_object(
                'Name',      l.line ->> 'product',
                'Quantity',  (l.line ->> 'qty')::integer,
                'UnitPrice', (l.line ->> 'price')::numeric) ORDER BY l.n)
       FROM jsonb_array_elements(i.lines) WITH ORDINALITY AS l (line, n)) AS lines,
    (SELECT sum((l ->> 'qty')::numeric * (l ->> 'price')::numeric)
       FROM jsonb_array_elements(i.lines) AS l)                     AS total,
    i._sdc_batched_at
FROM {{invoices_table}} AS i
LEFT JOIN {{companies_table}} AS co ON co.id = i.company_id
