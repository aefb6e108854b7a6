-- Ferry's own state, kept in the warehouse (schema ferry) beside the link
-- tables (schema link_tables) so that analysts can JOIN both with plain SQL.
CREATE SCHEMA IF NOT EXISTS ferry;
CREATE SCHEMA IF NOT EXISTS link_tables;

-- Bookmarks: the highest bookmark value a sync has fully recorded, kept in
-- its PostgreSQL text form so that any orderable column type works.
CREATE TABLE ferry.bookmarks (
    sync       text PRIMARY KEY,
    value      text NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now()
);

-- Runs: one row per execution of a sync, with its counts.
CREATE TABLE ferry.runs (
    id              bigserial PRIMARY KEY,
    sync            text NOT NULL,
    status          text NOT NULL DEFAULT 'running'
                    CHECK (status IN ('running', 'succeeded', 'failed', 'stopped')),
    started_at      timestamptz NOT NULL DEFAULT now(),
    finished_at     timestamptz,
    read            bigint NOT NULL DEFAULT 0,
    inserted        bigint NOT NULL DEFAULT 0,
    updated         bigint NOT NULL DEFAULT 0,
    unchanged       bigint NOT NULL DEFAULT 0,
    skipped         bigint NOT NULL DEFAULT 0,
    invalid         bigint NOT NULL DEFAULT 0,
    failed          bigint NOT NULL DEFAULT 0,
    target_calls    bigint NOT NULL DEFAULT 0,
    bookmark_before text,
    bookmark_after  text,
    error           text
);
CREATE INDEX runs_sync_started_idx ON ferry.runs (sync, started_at DESC);

-- Run errors: what went wrong with which record, for records that have no
-- link row to carry the message (a NULL source id) and for the run log.
CREATE TABLE ferry.run_errors (
    id         bigserial PRIMARY KEY,
    run_id     bigint NOT NULL REFERENCES ferry.runs (id) ON DELETE CASCADE,
    source_id  text,
    class      text NOT NULL,
    message    text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX run_errors_run_idx ON ferry.run_errors (run_id);

-- Script state: what a custom data-sync script keeps between its runs
-- (pq.get_state / pq.set_state).
CREATE TABLE ferry.script_state (
    script     text PRIMARY KEY,
    state      jsonb NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now()
);
