-- What ferry serve's run queue and scheduler keep. The queue itself is
-- River's (its tables live in this schema too, migrated by River's own
-- migrations); Ferry adds what a run row says about how it came to be, and
-- the last tick each schedule enqueued.

-- Every run says what triggered it (cli, api, schedule, catchup, rescue),
-- on which replica it ran, the queue job and schedule tick it stands for,
-- and when it was queued: queue wait is started_at - queued_at, the tick's
-- delay started_at - tick.
ALTER TABLE ferry.runs
    ADD COLUMN triggered_by text NOT NULL DEFAULT 'cli',
    ADD COLUMN replica      text,
    ADD COLUMN job_id       bigint,
    ADD COLUMN tick         timestamptz,
    ADD COLUMN queued_at    timestamptz;
CREATE INDEX runs_job_idx ON ferry.runs (job_id) WHERE job_id IS NOT NULL;

-- The last tick a schedule enqueued, by any replica: a server that starts
-- after missed ticks enqueues one catch-up run, not one per missed tick.
CREATE TABLE ferry.schedule_ticks (
    kind      text NOT NULL,              -- sync, group, script
    name      text NOT NULL,
    last_tick timestamptz NOT NULL,
    PRIMARY KEY (kind, name)
);
