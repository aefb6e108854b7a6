-- name: TokenCreate :exec
INSERT INTO ferry.tokens (id, name, role, secret_hash, expires_at)
VALUES (@id, @name, @role, @secret_hash, sqlc.narg('expires_at'));

-- name: TokenGet :one
SELECT * FROM ferry.tokens WHERE id = @id;

-- name: TokenList :many
SELECT * FROM ferry.tokens ORDER BY created_at, id;

-- name: TokenRevoke :execrows
UPDATE ferry.tokens SET revoked_at = now() WHERE id = @id AND revoked_at IS NULL;

-- name: TokenTouch :exec
-- Notes when a token was last used, at most once a minute per token.
UPDATE ferry.tokens SET last_used_at = now()
WHERE id = @id AND (last_used_at IS NULL OR last_used_at < now() - interval '1 minute');
