-- name: BookmarkGet :one
SELECT value FROM ferry.bookmarks WHERE sync = @sync;

-- name: BookmarkSet :exec
INSERT INTO ferry.bookmarks (sync, value, updated_at)
VALUES (@sync, @value, now())
ON CONFLICT (sync) DO UPDATE SET value = EXCLUDED.value, updated_at = EXCLUDED.updated_at;


-- name: BookmarkReconciledAt :one
-- When the sync last read its whole scope (NULL: never since it started
-- keeping the time), and the database's now, one clock for every replica.
SELECT reconciled_at, now()::timestamptz AS db_now FROM ferry.bookmarks WHERE sync = @sync;

-- name: BookmarkSetReconciled :exec
-- Notes that a read of the whole scope started at @at finished.
UPDATE ferry.bookmarks SET reconciled_at = @at WHERE sync = @sync;

-- name: BookmarkWindow :one
-- The fingerprint of the window behind the bookmark, as the last run that
-- handled all of it found it, and the bookmark it was taken at.
SELECT window_at, window_print FROM ferry.bookmarks WHERE sync = @sync;

-- name: BookmarkSetWindow :exec
-- Notes the window's fingerprint, while the bookmark is still @at.
UPDATE ferry.bookmarks SET window_at = @at::text, window_print = @print::text
WHERE sync = @sync AND value = @at::text;

-- name: BookmarkForgetWindow :exec
-- Forgets the window's fingerprint: the next run reads the window again.
UPDATE ferry.bookmarks SET window_at = NULL, window_print = NULL WHERE sync = @sync;
