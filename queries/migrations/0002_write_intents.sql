-- Write intents: before a page of inserts is sent, the ids go here in one
-- row; the row is deleted once their outcomes are in the link table. A row
-- left behind means a run died mid-write: the next run marks those ids
-- pending (their inserts may have reached the target) instead of
-- inserting them again.
CREATE TABLE ferry.write_intents (
    id         bigserial PRIMARY KEY,
    sync       text NOT NULL,
    run_id     bigint,
    source_ids text[] NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX write_intents_sync_idx ON ferry.write_intents (sync);
