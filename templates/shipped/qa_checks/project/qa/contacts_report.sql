-- A QA report of sync {{sync}}: source → link table → target, one row per
-- problem. The target's tables reach the warehouse through its own ELT
-- pipeline: run it first. (Re)create the view with psql -f this file.
CREATE SCHEMA IF NOT EXISTS {{report_view.schema}};

CREATE OR REPLACE VIEW {{report_view}} AS
-- In the sync's scope, with no record in the target.
SELECT 'missing_in_target' AS problem, s.id::text AS source_id, l.target_id::text AS target_id,
       coalesce(l.status || ': ' || coalesce(l.error, 'not in the target'), 'never synced') AS detail
FROM {{source_table}} AS s
LEFT JOIN link_tables.{{sync}} AS l ON l.source_id = s.id
LEFT JOIN {{target_table}} AS t ON t.id = l.target_id
WHERE s.email IS NOT NULL          -- the filter of the sync's scope query: keep them the same
  AND t.id IS NULL
UNION ALL
-- Failed, or sent with no answer yet.
SELECT 'failed', l.source_id::text, l.target_id::text, l.status || ': ' || coalesce(l.error, '')
FROM link_tables.{{sync}} AS l
WHERE l.status IN ('error', 'pending')
UNION ALL
-- In the target under another parent than the parent's link row names.
SELECT 'wrong_parent', s.id::text, l.target_id::text,
       'the target has parent ' || coalesce(t.{{target_parent_column}}::text, 'none') || ', the parent is linked to ' || p.target_id::text
FROM {{source_table}} AS s
JOIN link_tables.{{sync}} AS l ON l.source_id = s.id
JOIN {{target_table}} AS t ON t.id = l.target_id
JOIN link_tables.{{parent_sync}} AS p ON p.source_id = s.{{parent_column}}
WHERE t.{{target_parent_column}} IS DISTINCT FROM p.target_id
UNION ALL
-- Linked, but gone from the source (deletes are not synced).
SELECT 'source_gone', l.source_id::text, l.target_id::text, 'deleted in the source; still in the target'
FROM link_tables.{{sync}} AS l
LEFT JOIN {{source_table}} AS s ON s.id = l.source_id
WHERE s.id IS NULL;
