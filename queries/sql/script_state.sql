-- name: ScriptStateGet :one
SELECT state FROM ferry.script_state WHERE script = @script;

-- name: ScriptStateSet :exec
INSERT INTO ferry.script_state (script, state, updated_at)
VALUES (@script, @state, now())
ON CONFLICT (script) DO UPDATE SET state = EXCLUDED.state, updated_at = EXCLUDED.updated_at;
