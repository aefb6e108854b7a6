-- Reconciling runs read the whole scope and sync what incremental reads
-- missed (rows committed later than the overlap allows for); the bookmark
-- row remembers when the last one ran, and runs how many records they caught.
ALTER TABLE ferry.bookmarks ADD COLUMN reconciled_at timestamptz;
ALTER TABLE ferry.runs ADD COLUMN reconcile boolean NOT NULL DEFAULT false;
ALTER TABLE ferry.runs ADD COLUMN caught bigint NOT NULL DEFAULT 0;
