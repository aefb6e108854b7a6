-- name: WebhookDeliveryAdd :exec
INSERT INTO ferry.webhook_deliveries (delivery_id, url, event, sync, run_id, attempt, status_code, error, duration_ms)
VALUES (@delivery_id, @url, @event, @sync, sqlc.narg('run_id'), @attempt, sqlc.narg('status_code'), sqlc.narg('error'), @duration_ms);

-- name: WebhookDeliveryListByRun :many
SELECT * FROM ferry.webhook_deliveries WHERE run_id = @run_id::bigint ORDER BY id LIMIT @max_rows;

-- name: WebhookDeliveryList :many
-- Attempts newest first, before an id (0 for the newest): a page of a
-- keyset cursor.
SELECT * FROM ferry.webhook_deliveries
WHERE (@before_id::bigint = 0 OR id < @before_id)
ORDER BY id DESC LIMIT @max_rows;

-- name: RunPreviousStatus :one
-- How the run of the same sync before this one ended (running runs are
-- skipped: a run that holds the lease closes the ones a dead process left;
-- interrupted ones too: their process stopped, nothing failed), for
-- alerts: a success after a failure is a recovery, once.
SELECT p.status FROM ferry.runs r
JOIN ferry.runs p ON p.sync = r.sync AND p.id < r.id AND p.status NOT IN ('running', 'interrupted')
WHERE r.id = @run_id
ORDER BY p.id DESC LIMIT 1;
