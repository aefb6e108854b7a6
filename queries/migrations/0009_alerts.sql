-- Webhook deliveries: one row per attempt to deliver a run event, so an
-- operator can tell "the receiver never answered" from "it answered 500
-- five times" with plain SQL. The URL is stored without its userinfo and
-- query (where tokens hide); the signing secret is never stored.
CREATE TABLE ferry.webhook_deliveries (
    id          bigserial PRIMARY KEY,
    delivery_id text NOT NULL,          -- the Ferry-Delivery header: the same for every attempt
    url         text NOT NULL,
    event       text NOT NULL,          -- run.failed, run.recovered …
    sync        text NOT NULL,
    -- No foreign key: the log outlives pruned runs, and a group's event
    -- has no run row of its own (NULL).
    run_id      bigint,
    attempt     integer NOT NULL,
    status_code integer,                -- NULL when no answer came back
    error       text,                   -- NULL when the receiver took it (2xx)
    duration_ms integer NOT NULL DEFAULT 0,
    created_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX webhook_deliveries_run_idx ON ferry.webhook_deliveries (run_id);
CREATE INDEX webhook_deliveries_created_idx ON ferry.webhook_deliveries (created_at DESC);
