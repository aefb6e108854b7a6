-- name: TemplateList :many
SELECT name, version, files, updated_at, updated_by FROM ferry.templates ORDER BY name;

-- name: TemplateGet :one
SELECT name, version, files, updated_at, updated_by FROM ferry.templates WHERE name = @name;

-- name: TemplatePut :exec
INSERT INTO ferry.templates (name, version, files, updated_at, updated_by)
VALUES (@name, @version, @files, now(), @actor)
ON CONFLICT (name) DO UPDATE SET version = EXCLUDED.version, files = EXCLUDED.files,
    updated_at = now(), updated_by = EXCLUDED.updated_by;

-- name: TemplateDelete :execrows
DELETE FROM ferry.templates WHERE name = @name;
