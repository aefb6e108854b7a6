-- name: ProjectFileList :many
SELECT path, content, updated_at, updated_by FROM ferry.project_files ORDER BY path;

-- name: ProjectFileGet :one
SELECT path, content, updated_at, updated_by FROM ferry.project_files WHERE path = @path;

-- name: ProjectFilePut :exec
INSERT INTO ferry.project_files (path, content, updated_at, updated_by)
VALUES (@path, @content, now(), @actor)
ON CONFLICT (path) DO UPDATE SET content = EXCLUDED.content, updated_at = now(), updated_by = EXCLUDED.updated_by;

-- name: ProjectFileDelete :execrows
DELETE FROM ferry.project_files WHERE path = @path;

-- name: ProjectVersionGet :one
SELECT version FROM ferry.project_version;

-- name: ProjectVersionBump :one
-- Takes the project's write lock (the row) for the transaction and moves
-- the version on.
UPDATE ferry.project_version SET version = version + 1 RETURNING version;

-- name: ProjectHistoryAdd :exec
INSERT INTO ferry.project_history (version, path, content_before, content_after, actor, reason)
VALUES (@version, @path, @content_before, @content_after, @actor, @reason);

-- name: ProjectHistoryList :many
-- Changes newest first, for one path or all ("" for all).
SELECT id, version, path, content_before, content_after, actor, reason, changed_at
FROM ferry.project_history
WHERE (@path::text = '' OR path = @path)
  AND (@before_id::bigint = 0 OR id < @before_id)
ORDER BY id DESC LIMIT @max_rows;

-- name: ProjectHistoryVersion :many
SELECT id, version, path, content_before, content_after, actor, reason, changed_at
FROM ferry.project_history WHERE version = @version ORDER BY path;
