-- The source option's value → its label → the target option with that
-- label: new options are mapped as soon as both systems have them.
SELECT
    c.id,
    c.name,
    c.vat,
    c.city,
    t.value AS section_id,         -- NULL while the target lacks the option
    -- Read the row again when the company or either of its options changed.
    greatest(c._sdc_batched_at, s._sdc_batched_at, t._sdc_batched_at) AS _sdc_batched_at
FROM {{companies_table}} AS c
LEFT JOIN {{source_options_table}} AS s ON s.field = {{field}} AND s.value = c.{{option_column}}
LEFT JOIN {{target_options_table}} AS t ON t.field = {{field}} AND t.label = s.label
