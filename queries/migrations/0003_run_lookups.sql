-- Lookups a transform made in the target (pq.lookup and friends) cost API
-- calls: runs count them.
ALTER TABLE ferry.runs ADD COLUMN lookups bigint NOT NULL DEFAULT 0;
