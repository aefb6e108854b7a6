-- name: BookmarkGet :one
SELECT value FROM ferry.bookmarks WHERE sync = @sync;

-- name: BookmarkSet :exec
INSERT INTO ferry.bookmarks (sync, value, updated_at)
VALUES (@sync, @value, now())
ON CONFLICT (sync) DO UPDATE SET value = EXCLUDED.value, updated_at = EXCLUDED.updated_at;

-- name: BookmarkDelete :execrows
DELETE FROM ferry.bookmarks WHERE sync = @sync;
