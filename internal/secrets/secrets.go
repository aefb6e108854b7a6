// Package secrets keeps the secrets connections name (tokens, passwords,
// connection URLs) that were sent through the API: encrypted at rest with
// AES-256-GCM under a key from the environment, each with the id of the key
// that encrypted it, so that keys can be rotated (Rotate). Secrets are
// write-only: nothing here returns a value except to the engine's env
// lookup (Env), which hands it to the connection that names it.
//
// The one thing to know: connections name secrets the way they name
// environment variables (auth.token_env: CRM_TOKEN). Env resolves a name
// from the stored secrets first, then from the process environment, so a
// project folder in git never holds a secret either way.
package secrets

import (
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"regexp"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/ferry-sync/ferry/queries"
)

// Environment variables that hold the keys.
const (
	// KeysEnv holds the keys as "id:base64,id:base64": the first encrypts,
	// the others only decrypt (what a rotation leaves to re-encrypt).
	KeysEnv = "FERRY_SECRET_KEYS"
	// KeyEnv holds one base64 key, whose id is derived from it.
	KeyEnv = "FERRY_SECRET_KEY"
)

// ErrNoKey says no key is configured, so secrets cannot be stored.
var ErrNoKey = errors.New("no secret key is configured: set " + KeyEnv + " to a base64 key of 32 bytes (e.g. `openssl rand -base64 32`)")

// NamePattern is what a secret's name looks like: the name of an
// environment variable.
var namePattern = regexp.MustCompile(`^[A-Z_][A-Z0-9_]{0,127}$`)

// ValidName reports whether name can name a secret.
func ValidName(name string) bool { return namePattern.MatchString(name) }

// key is one AES-256 key and its id.
type key struct {
	id   string
	aead cipher.AEAD
}

// Keyring holds the keys: the first encrypts.
type Keyring struct {
	keys []key
}

// KeyringFromEnv reads the keys from the environment; a keyring with no key
// (nil, nil) when none is set.
func KeyringFromEnv(lookup func(string) (string, bool)) (*Keyring, error) {
	if lookup == nil {
		lookup = os.LookupEnv
	}
	var specs []string
	if v, ok := lookup(KeysEnv); ok && strings.TrimSpace(v) != "" {
		specs = strings.Split(v, ",")
	} else if v, ok := lookup(KeyEnv); ok && strings.TrimSpace(v) != "" {
		specs = []string{strings.TrimSpace(v)}
	} else {
		return nil, nil
	}
	kr := &Keyring{}
	for i, spec := range specs {
		spec = strings.TrimSpace(spec)
		id, b64, hasID := strings.Cut(spec, ":")
		if !hasID {
			b64, id = spec, ""
		}
		raw, err := base64.StdEncoding.DecodeString(b64)
		if err != nil || len(raw) != 32 {
			return nil, fmt.Errorf("secret key %d of %s: want 32 bytes in base64 (e.g. `openssl rand -base64 32`)", i+1, KeysEnv+"/"+KeyEnv)
		}
		if id == "" {
			sum := sha256.Sum256(raw)
			id = hex.EncodeToString(sum[:4])
		}
		block, err := aes.NewCipher(raw)
		if err != nil {
			return nil, err
		}
		aead, err := cipher.NewGCM(block)
		if err != nil {
			return nil, err
		}
		kr.keys = append(kr.keys, key{id: id, aead: aead})
	}
	return kr, nil
}

// CurrentID is the id of the key that encrypts.
func (kr *Keyring) CurrentID() string { return kr.keys[0].id }

func (kr *Keyring) seal(name, value string) (keyID string, nonce, ciphertext []byte, err error) {
	k := kr.keys[0]
	nonce = make([]byte, k.aead.NonceSize())
	if _, err := rand.Read(nonce); err != nil {
		return "", nil, nil, err
	}
	// The name is authenticated too: a ciphertext moved to another name
	// does not decrypt.
	return k.id, nonce, k.aead.Seal(nil, nonce, []byte(value), []byte(name)), nil
}

func (kr *Keyring) open(name, keyID string, nonce, ciphertext []byte) (string, error) {
	for _, k := range kr.keys {
		if k.id == keyID {
			plain, err := k.aead.Open(nil, nonce, ciphertext, []byte(name))
			if err != nil {
				return "", fmt.Errorf("secret %s does not decrypt with key %s (was it tampered with?)", name, keyID)
			}
			return string(plain), nil
		}
	}
	return "", fmt.Errorf("secret %s was encrypted with key %s, which %s does not hold: add it (as %s:<base64>) until `ferry secrets rotate` has re-encrypted it", name, keyID, KeysEnv, keyID)
}

// Info is what may be shown of a secret: that it is set, and when.
type Info struct {
	Name      string    `json:"name"`
	Set       bool      `json:"set"`
	KeyID     string    `json:"key_id"`
	UpdatedAt time.Time `json:"updated_at"`
	UpdatedBy string    `json:"updated_by"`
}

// Store keeps secrets in ferry.secrets.
type Store struct {
	q    *queries.Queries
	keys *Keyring // nil: secrets can be listed, not stored or read
}

// NewStore returns a store over db; keys may be nil.
func NewStore(db queries.DBTX, keys *Keyring) *Store {
	return &Store{q: queries.New(db), keys: keys}
}

// Put stores (or replaces) a secret.
func (s *Store) Put(ctx context.Context, name, value, actor string) error {
	if !ValidName(name) {
		return fmt.Errorf("secret name %q: use the form of an environment variable (A-Z, 0-9, _)", name)
	}
	if s.keys == nil {
		return ErrNoKey
	}
	keyID, nonce, ct, err := s.keys.seal(name, value)
	if err != nil {
		return fmt.Errorf("encrypting secret %s: %w", name, err)
	}
	if err := s.q.SecretPut(ctx, queries.SecretPutParams{Name: name, KeyID: keyID, Nonce: nonce, Ciphertext: ct, Actor: actor}); err != nil {
		return fmt.Errorf("storing secret %s: %w", name, err)
	}
	return nil
}

// Delete removes a secret; it reports whether there was one.
func (s *Store) Delete(ctx context.Context, name string) (bool, error) {
	n, err := s.q.SecretDelete(ctx, name)
	return n > 0, err
}

// List shows which secrets are set, never their values.
func (s *Store) List(ctx context.Context) ([]Info, error) {
	rows, err := s.q.SecretList(ctx)
	if err != nil {
		return nil, fmt.Errorf("listing secrets: %w", err)
	}
	out := make([]Info, len(rows))
	for i, r := range rows {
		out[i] = Info{Name: r.Name, Set: true, KeyID: r.KeyID, UpdatedAt: r.UpdatedAt, UpdatedBy: r.UpdatedBy}
	}
	return out, nil
}

// Env looks a name up among the stored secrets, then in the process
// environment: the engine's connector.LookupEnv. A stored secret that does
// not decrypt is reported as not set (the error is in the log of Reveal).
func (s *Store) Env(ctx context.Context) func(string) (string, bool) {
	return func(name string) (string, bool) {
		if v, err := s.Reveal(ctx, name); err == nil {
			return v, true
		}
		return os.LookupEnv(name)
	}
}

// Reveal returns a stored secret's value, for the connection that names
// it. It reads the database every time: connections are opened once per
// run, and another replica may have just changed the secret.
func (s *Store) Reveal(ctx context.Context, name string) (string, error) {
	row, err := s.q.SecretGet(ctx, name)
	if errors.Is(err, pgx.ErrNoRows) {
		return "", fmt.Errorf("no secret %s", name)
	}
	if err != nil {
		return "", fmt.Errorf("reading secret %s: %w", name, err)
	}
	if s.keys == nil {
		return "", ErrNoKey
	}
	return s.keys.open(name, row.KeyID, row.Nonce, row.Ciphertext)
}

// Rotate re-encrypts every secret not under the current key with it, and
// returns how many it re-encrypted. The old keys must still be in the
// keyring; once Rotate is done they can go.
func (s *Store) Rotate(ctx context.Context) (int, error) {
	if s.keys == nil {
		return 0, ErrNoKey
	}
	rows, err := s.q.SecretList(ctx)
	if err != nil {
		return 0, fmt.Errorf("listing secrets: %w", err)
	}
	n := 0
	for _, r := range rows {
		if r.KeyID == s.keys.CurrentID() {
			continue
		}
		plain, err := s.keys.open(r.Name, r.KeyID, r.Nonce, r.Ciphertext)
		if err != nil {
			return n, err
		}
		keyID, nonce, ct, err := s.keys.seal(r.Name, plain)
		if err != nil {
			return n, err
		}
		done, err := s.q.SecretReencrypt(ctx, queries.SecretReencryptParams{Name: r.Name, KeyID: keyID, Nonce: nonce, Ciphertext: ct, OldKeyID: r.KeyID})
		if err != nil {
			return n, fmt.Errorf("re-encrypting secret %s: %w", r.Name, err)
		}
		n += int(done)
	}
	return n, nil
}
