-- name: IntentAdd :one
INSERT INTO ferry.write_intents (sync, run_id, source_ids)
VALUES (@sync, @run_id, @source_ids::text[])
RETURNING id;

-- name: IntentDelete :exec
DELETE FROM ferry.write_intents WHERE id = @id;

-- name: IntentListBySync :many
SELECT * FROM ferry.write_intents WHERE sync = @sync ORDER BY id;
