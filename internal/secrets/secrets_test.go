package secrets_test

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/ferry-sync/ferry/internal/secrets"
	"github.com/ferry-sync/ferry/queries/dbtest"
)

func newKey(t *testing.T) string {
	t.Helper()
	b := make([]byte, 32)
	_, err := rand.Read(b)
	require.NoError(t, err)
	return base64.StdEncoding.EncodeToString(b)
}

func keyring(t *testing.T, env map[string]string) *secrets.Keyring {
	t.Helper()
	kr, err := secrets.KeyringFromEnv(func(k string) (string, bool) { v, ok := env[k]; return v, ok })
	require.NoError(t, err)
	return kr
}

// Secrets are stored encrypted (no trace of the value in the table), read
// back only by name, bound to their name, and re-encrypted by a rotation.
func TestStoreEncryptsAndRotates(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := dbtest.NewPool(t)
	oldKey, newKeyB64 := newKey(t), newKey(t)
	store := secrets.NewStore(db, keyring(t, map[string]string{secrets.KeysEnv: "k1:" + oldKey}))
	const value = "tok-very-secret-value-42"
	require.NoError(t, store.Put(ctx, "CRM_TOKEN", value, "test"))

	var raw []byte
	require.NoError(t, db.QueryRow(ctx, `SELECT ciphertext FROM ferry.secrets WHERE name = 'CRM_TOKEN'`).Scan(&raw))
	assert.NotContains(t, string(raw), value)
	got, err := store.Reveal(ctx, "CRM_TOKEN")
	require.NoError(t, err)
	assert.Equal(t, value, got)
	v, ok := store.Env(ctx)("CRM_TOKEN")
	assert.True(t, ok)
	assert.Equal(t, value, v)

	infos, err := store.List(ctx)
	require.NoError(t, err)
	require.Len(t, infos, 1)
	assert.Equal(t, "k1", infos[0].KeyID)
	assert.True(t, infos[0].Set)

	// A ciphertext moved to another name does not decrypt.
	_, err = db.Exec(ctx, `INSERT INTO ferry.secrets (name, key_id, nonce, ciphertext, updated_by) SELECT 'OTHER', key_id, nonce, ciphertext, 'x' FROM ferry.secrets WHERE name = 'CRM_TOKEN'`)
	require.NoError(t, err)
	_, err = store.Reveal(ctx, "OTHER")
	assert.ErrorContains(t, err, "does not decrypt")

	// Rotation: the new key encrypts; the old one is still there to read.
	rotated := secrets.NewStore(db, keyring(t, map[string]string{secrets.KeysEnv: "k2:" + newKeyB64 + ",k1:" + oldKey}))
	_, err = rotated.Delete(ctx, "OTHER")
	require.NoError(t, err)
	n, err := rotated.Rotate(ctx)
	require.NoError(t, err)
	assert.Equal(t, 1, n)
	onlyNew := secrets.NewStore(db, keyring(t, map[string]string{secrets.KeysEnv: "k2:" + newKeyB64}))
	got, err = onlyNew.Reveal(ctx, "CRM_TOKEN")
	require.NoError(t, err)
	assert.Equal(t, value, got)

	// The old key alone no longer reads it, and says what to do.
	_, err = secrets.NewStore(db, keyring(t, map[string]string{secrets.KeyEnv: oldKey})).Reveal(ctx, "CRM_TOKEN")
	assert.ErrorContains(t, err, "which FERRY_SECRET_KEYS does not hold")

	assert.ErrorIs(t, secrets.NewStore(db, nil).Put(ctx, "X_TOKEN", "v", "t"), secrets.ErrNoKey)
	assert.ErrorContains(t, store.Put(ctx, "lower", "v", "t"), "environment variable")
	_, err = secrets.KeyringFromEnv(func(string) (string, bool) { return "short", true })
	assert.True(t, err != nil && strings.Contains(err.Error(), "32 bytes"))
}
