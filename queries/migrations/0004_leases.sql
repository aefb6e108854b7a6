-- Leases: one run at a time per sync (or per standalone script), across
-- every process and replica that shares the warehouse. A lease is a row, not
-- a session lock, so that no idle connection holds it and nothing a scope
-- query can call reaches it. epoch is the fencing token: it grows with every
-- new claim, and each commit of a run checks it in the same transaction, so
-- a run that lost its claim can never record anything after the new holder
-- took over. Times are the database's clock, the one clock every holder
-- shares.
CREATE TABLE ferry.leases (
    name        text PRIMARY KEY,     -- "sync:<name>" or "script:<name>"
    holder      text NOT NULL,        -- host, pid and a random part of the process holding it
    epoch       bigint NOT NULL,
    run_id      bigint,
    acquired_at timestamptz NOT NULL,
    renewed_at  timestamptz NOT NULL,
    expires_at  timestamptz NOT NULL
);
