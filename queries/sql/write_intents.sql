-- name: IntentDelete :exec
DELETE FROM ferry.write_intents WHERE id = @id;

-- name: IntentListBySync :many
SELECT * FROM ferry.write_intents WHERE sync = @sync ORDER BY id;

-- name: IntentAddFenced :one
-- Notes the inserts about to be sent, in one statement that commits only
-- while the run still holds its sync's lease (name, epoch): no row, no send.
INSERT INTO ferry.write_intents (sync, run_id, source_ids)
SELECT @sync, @run_id, @source_ids::text[]
WHERE EXISTS (SELECT 1 FROM ferry.leases WHERE name = @lease AND epoch = @epoch FOR SHARE)
RETURNING id;
