-- name: LeaseAcquire :one
-- Takes the lease when nobody holds it, or when its holder stopped renewing
-- it (expired) or released it. The epoch grows with every claim.
INSERT INTO ferry.leases AS l (name, holder, epoch, acquired_at, renewed_at, expires_at)
VALUES (@name, @holder, 1, now(), now(), now() + make_interval(secs => @ttl_seconds::float8))
ON CONFLICT (name) DO UPDATE SET
    holder = EXCLUDED.holder,
    epoch = l.epoch + 1,
    run_id = NULL,
    acquired_at = EXCLUDED.acquired_at,
    renewed_at = EXCLUDED.renewed_at,
    expires_at = EXCLUDED.expires_at
WHERE l.expires_at < now()
RETURNING epoch, expires_at;

-- name: LeaseGet :one
SELECT name, holder, epoch, run_id, acquired_at, renewed_at, expires_at, now()::timestamptz AS db_now
FROM ferry.leases WHERE name = @name;

-- name: LeaseRenew :one
-- Renews the lease while its epoch is still the holder's. A lease that
-- expired but that nobody took since is renewed too: no one else wrote.
UPDATE ferry.leases SET
    renewed_at = now(),
    expires_at = now() + make_interval(secs => @ttl_seconds::float8)
WHERE name = @name AND epoch = @epoch
RETURNING expires_at;

-- name: LeaseSetRun :execrows
UPDATE ferry.leases SET run_id = @run_id WHERE name = @name AND epoch = @epoch;

-- name: LeaseCheck :one
-- The fence: a commit of a run checks in its own transaction that the lease
-- is still its own. FOR SHARE makes a new claim wait for that transaction,
-- so a claim and a commit of the old holder never interleave. A holder
-- paused mid-transaction would make the new claim wait for ever: the
-- transaction is ended by the server once it idles longer than
-- idle_timeout (milliseconds), which also releases the rows it locked.
SELECT epoch, set_config('idle_in_transaction_session_timeout', @idle_timeout_ms::text, true)::text AS idle_timeout
FROM ferry.leases WHERE name = @name AND epoch = @epoch FOR SHARE;

-- name: LeaseRelease :exec
UPDATE ferry.leases SET expires_at = '-infinity', run_id = NULL
WHERE name = @name AND epoch = @epoch;

-- name: LeaseTakeOver :one
-- Takes the lease from a holder known to be dead, only if it still holds
-- it (epoch), whatever its expiry.
UPDATE ferry.leases SET
    holder = @holder,
    epoch = epoch + 1,
    run_id = NULL,
    acquired_at = now(),
    renewed_at = now(),
    expires_at = now() + make_interval(secs => @ttl_seconds::float8)
WHERE name = @name AND epoch = @epoch
RETURNING epoch, expires_at;

-- name: LeaseRunning :one
-- The run that holds a live lease, if any. A run whose row says it ended
-- gives its lease up right after: it is not running any more.
SELECT l.run_id::bigint FROM ferry.leases l
WHERE l.name = @name AND l.expires_at > now() AND l.run_id IS NOT NULL
  AND NOT EXISTS (SELECT 1 FROM ferry.runs r WHERE r.id = l.run_id AND r.status <> 'running');
