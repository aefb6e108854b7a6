// Package auth owns who may call Ferry's REST API: API tokens (created,
// listed, revoked; only a hash of their secret is kept) and the roles they
// carry (viewer reads; editor also changes syncs and scripts and triggers
// runs; admin also manages connections, secrets, tokens and imports).
package auth

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/ferry-sync/ferry/queries"
)

// Role is what a token may do.
type Role string

// Roles, each allowed what the ones before it are.
const (
	Viewer Role = "viewer"
	Editor Role = "editor"
	Admin  Role = "admin"
)

// ParseRole reads a role's name.
func ParseRole(s string) (Role, error) {
	switch r := Role(s); r {
	case Viewer, Editor, Admin:
		return r, nil
	}
	return "", fmt.Errorf("role %q: use viewer, editor or admin", s)
}

// Allows reports whether a token of role r may do what needs role need.
func (r Role) Allows(need Role) bool { return rank(r) >= rank(need) }

func rank(r Role) int {
	switch r {
	case Viewer:
		return 1
	case Editor:
		return 2
	case Admin:
		return 3
	}
	return 0
}

// Token is a token as the API and CLI show it: never its secret.
type Token struct {
	ID         string     `json:"id"`
	Name       string     `json:"name"`
	Role       Role       `json:"role"`
	CreatedAt  time.Time  `json:"created_at"`
	ExpiresAt  *time.Time `json:"expires_at,omitempty"`
	RevokedAt  *time.Time `json:"revoked_at,omitempty"`
	LastUsedAt *time.Time `json:"last_used_at,omitempty"`
}

// tokenPrefix starts every token, so that secret scanners can spot one.
const tokenPrefix = "ferry_"

// Errors a caller can tell apart.
var (
	ErrNoToken      = errors.New("no API token: send it as Authorization: Bearer <token>")
	ErrInvalidToken = errors.New("the API token is not valid (unknown, revoked or expired)")
)

// Tokens keeps API tokens in ferry.tokens.
type Tokens struct {
	q *queries.Queries
}

// NewTokens returns the token store over db.
func NewTokens(db queries.DBTX) *Tokens { return &Tokens{q: queries.New(db)} }

// Create makes a token and returns it with its full text, which is shown
// once and never stored: only a hash of its secret part is.
func (ts *Tokens) Create(ctx context.Context, name string, role Role, ttl time.Duration) (Token, string, error) {
	if strings.TrimSpace(name) == "" {
		return Token{}, "", errors.New("a token needs a name (who or what uses it)")
	}
	if _, err := ParseRole(string(role)); err != nil {
		return Token{}, "", err
	}
	idb := make([]byte, 6)
	secret := make([]byte, 32)
	if _, err := rand.Read(idb); err != nil {
		return Token{}, "", err
	}
	if _, err := rand.Read(secret); err != nil {
		return Token{}, "", err
	}
	id := hex.EncodeToString(idb)
	secretText := base64.RawURLEncoding.EncodeToString(secret)
	var expires *time.Time
	if ttl > 0 {
		t := time.Now().Add(ttl).UTC()
		expires = &t
	}
	if err := ts.q.TokenCreate(ctx, queries.TokenCreateParams{ID: id, Name: name, Role: string(role), SecretHash: hash(secretText), ExpiresAt: expires}); err != nil {
		return Token{}, "", fmt.Errorf("creating a token: %w", err)
	}
	row, err := ts.q.TokenGet(ctx, id)
	if err != nil {
		return Token{}, "", fmt.Errorf("reading the new token: %w", err)
	}
	return tokenOf(row), tokenPrefix + id + "_" + secretText, nil
}

func hash(secret string) []byte {
	sum := sha256.Sum256([]byte(secret))
	return sum[:]
}

func tokenOf(r queries.FerryToken) Token {
	return Token{ID: r.ID, Name: r.Name, Role: Role(r.Role), CreatedAt: r.CreatedAt, ExpiresAt: r.ExpiresAt, RevokedAt: r.RevokedAt, LastUsedAt: r.LastUsedAt}
}

// Verify returns the token a request's bearer text names, if it is valid.
func (ts *Tokens) Verify(ctx context.Context, text string) (Token, error) {
	rest, ok := strings.CutPrefix(text, tokenPrefix)
	if !ok {
		return Token{}, ErrInvalidToken
	}
	id, secret, ok := strings.Cut(rest, "_")
	if !ok || id == "" || secret == "" {
		return Token{}, ErrInvalidToken
	}
	row, err := ts.q.TokenGet(ctx, id)
	if errors.Is(err, pgx.ErrNoRows) {
		return Token{}, ErrInvalidToken
	}
	if err != nil {
		return Token{}, fmt.Errorf("checking the API token: %w", err)
	}
	if subtle.ConstantTimeCompare(row.SecretHash, hash(secret)) != 1 ||
		row.RevokedAt != nil || (row.ExpiresAt != nil && time.Now().After(*row.ExpiresAt)) {
		return Token{}, ErrInvalidToken
	}
	_ = ts.q.TokenTouch(ctx, id) // best effort: last use is informative
	return tokenOf(row), nil
}

// List returns every token, newest last.
func (ts *Tokens) List(ctx context.Context) ([]Token, error) {
	rows, err := ts.q.TokenList(ctx)
	if err != nil {
		return nil, fmt.Errorf("listing tokens: %w", err)
	}
	out := make([]Token, len(rows))
	for i, r := range rows {
		out[i] = tokenOf(r)
	}
	return out, nil
}

// Revoke ends a token at once; it reports whether it was active.
func (ts *Tokens) Revoke(ctx context.Context, id string) (bool, error) {
	n, err := ts.q.TokenRevoke(ctx, id)
	if err != nil {
		return false, fmt.Errorf("revoking token %s: %w", id, err)
	}
	return n > 0, nil
}
