-- name: RunStart :one
INSERT INTO ferry.runs (sync, triggered_by, replica, job_id, tick, queued_at)
VALUES (@sync, @triggered_by, sqlc.narg('replica'), sqlc.narg('job_id'), sqlc.narg('tick'), sqlc.narg('queued_at'))
RETURNING id, started_at;

-- name: RunFinish :exec
UPDATE ferry.runs SET
    status = @status,
    finished_at = now(),
    read = @read,
    inserted = @inserted,
    updated = @updated,
    unchanged = @unchanged,
    skipped = @skipped,
    invalid = @invalid,
    failed = @failed,
    target_calls = @target_calls,
    lookups = @lookups,
    caught = @caught,
    deleted = @deleted,
    reconcile = @reconcile,
    bookmark_before = sqlc.narg('bookmark_before'),
    bookmark_after = sqlc.narg('bookmark_after'),
    error = sqlc.narg('error')
WHERE id = @id;

-- name: RunGet :one
SELECT * FROM ferry.runs WHERE id = @id;

-- name: RunListBySync :many
SELECT * FROM ferry.runs WHERE sync = @sync ORDER BY started_at DESC, id DESC LIMIT @max_rows;

-- name: RunErrorAdd :exec
INSERT INTO ferry.run_errors (run_id, source_id, class, message)
VALUES (@run_id, sqlc.narg('source_id'), @class, @message);

-- name: RunErrorList :many
SELECT * FROM ferry.run_errors WHERE run_id = @run_id ORDER BY id LIMIT @max_rows;

-- name: RunCloseInterrupted :execrows
-- Runs of a sync still marked running when a new run holds the sync's lock
-- belong to a process that died: they did not finish.
UPDATE ferry.runs SET
    status = 'interrupted',
    finished_at = now(),
    error = 'interrupted: the process running it stopped before it finished (records it wrote were recorded or marked pending)'
WHERE sync = @sync AND status = 'running';

-- name: RunList :many
-- Runs newest first, filtered by sync and status ("" for all), before a
-- run id (0 for the newest): a page of a keyset cursor.
SELECT * FROM ferry.runs
WHERE (@sync::text = '' OR sync = @sync)
  AND (@status::text = '' OR status = @status)
  AND (@before_id::bigint = 0 OR id < @before_id)
ORDER BY id DESC LIMIT @max_rows;

-- name: RunErrorsBySource :many
-- What runs of a sync noted about one record, newest first.
SELECT e.* FROM ferry.run_errors e JOIN ferry.runs r ON r.id = e.run_id
WHERE r.sync = @sync AND e.source_id = @source_id
ORDER BY e.id DESC LIMIT @max_rows;

-- name: RunFinishScript :exec
UPDATE ferry.runs SET status = @status, finished_at = now(), error = sqlc.narg('error') WHERE id = @id;

-- name: RunByJob :one
-- The latest run a queue job started, if any: a job retried after its
-- replica died finds the run it already started.
SELECT * FROM ferry.runs WHERE job_id = @job_id ORDER BY id DESC LIMIT 1;

-- name: RunStartedAfter :one
-- Whether the sync ran again after run @id: a rescued job whose work was
-- taken over by another run has nothing left to do.
SELECT EXISTS (SELECT 1 FROM ferry.runs r WHERE r.sync = @sync AND r.id > @id)::bool;

-- name: RunsOrphaned :many
-- Queued runs whose process stopped renewing their lease without releasing
-- it: their replica died mid-run, and the run has to be given to another.
SELECT r.id, r.sync, r.job_id::bigint AS job_id
FROM ferry.runs r JOIN ferry.leases l ON l.run_id = r.id
WHERE r.status = 'running' AND r.job_id IS NOT NULL
  AND l.expires_at < now() AND l.expires_at > '-infinity';

-- name: RunListByJob :many
SELECT * FROM ferry.runs WHERE job_id = @job_id ORDER BY id;
