-- name: SecretList :many
SELECT name, key_id, nonce, ciphertext, updated_at, updated_by FROM ferry.secrets ORDER BY name;

-- name: SecretGet :one
SELECT name, key_id, nonce, ciphertext, updated_at, updated_by FROM ferry.secrets WHERE name = @name;

-- name: SecretPut :exec
INSERT INTO ferry.secrets (name, key_id, nonce, ciphertext, updated_at, updated_by)
VALUES (@name, @key_id, @nonce, @ciphertext, now(), @actor)
ON CONFLICT (name) DO UPDATE SET key_id = EXCLUDED.key_id, nonce = EXCLUDED.nonce,
    ciphertext = EXCLUDED.ciphertext, updated_at = now(), updated_by = EXCLUDED.updated_by;

-- name: SecretReencrypt :execrows
-- Rotation: the same secret under another key, only if it has not changed since it was read.
UPDATE ferry.secrets SET key_id = @key_id, nonce = @nonce, ciphertext = @ciphertext
WHERE name = @name AND key_id = @old_key_id;

-- name: SecretDelete :execrows
DELETE FROM ferry.secrets WHERE name = @name;
