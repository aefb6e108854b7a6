-- Syncs may delete (or archive) target records whose source left the scope,
-- and ferry rollback deletes what a sync created: runs count them.
ALTER TABLE ferry.runs ADD COLUMN deleted bigint NOT NULL DEFAULT 0;
