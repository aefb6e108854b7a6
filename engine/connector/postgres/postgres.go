// Package postgres is the "postgres" kind of connection: each object is a
// table in a target PostgreSQL database (an ERP's or a back office's), and
// each change is one INSERT or UPDATE on it, through a pgx pool.
//
// The one thing to know: values are converted by PostgreSQL, not by Go. The
// payload is encoded as one JSON document and turned into a row of the
// table's own type with jsonb_populate_record, so exact numerics keep their
// digits (json.Number), nested objects land in json/jsonb columns and
// RFC 3339 timestamps in timestamp columns; a payload key that is not a
// column of the table is Rejected, never dropped. Errors are classified by
// SQLSTATE: 22 and 23 (bad data, constraints) are Rejected with PostgreSQL's
// message; 28 and 42501 (login, permission) are Auth and stop the call;
// lost connections are Retryable when nothing was sent, and Ambiguous for an
// insert whose statement may have run. Errors never hold the connection's
// password or a URL that holds it: PostgreSQL quotes values back in its
// messages (a duplicate key, a bad id), so the Target redacts them from
// every error it returns; Secrets reports them, for the engine.
package postgres

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"slices"
	"strings"
	"sync"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/ferry-sync/ferry/engine/connector"
)

// Defaults for the settings a Config leaves out.
const (
	DefaultSchema      = "public"
	DefaultIDColumn    = "id"
	DefaultConcurrency = 4
)

// Config is a connection's settings. Its JSON shape is what a connection's
// settings hold.
type Config struct {
	// URL is the connection URL, when it holds no password. A URL with a
	// password is a secret: put it in an environment variable and name that
	// in URLEnv.
	URL string `json:"url,omitempty"`
	// URLEnv names the environment variable that holds the connection URL.
	URLEnv string `json:"url_env,omitempty"`
	// Schema holds the tables of objects named without a schema. Default public.
	Schema string `json:"schema,omitempty"`
	// IDColumn is the tables' id column. Default "id".
	IDColumn string `json:"id_column,omitempty"`
	// Concurrency bounds how many changes one Write call writes at once.
	// Default 4.
	Concurrency int `json:"concurrency,omitempty"`
	// Objects overrides, per object, the table it is written to. Without an
	// entry, the object's name is the table ("contacts" or "crm.contacts").
	Objects map[string]Object `json:"objects,omitempty"`

	// Env looks up URLEnv; nil means the process environment.
	Env connector.LookupEnv `json:"-"`
}

// Object maps an object to its table.
type Object struct {
	// Table is "table" (in Schema) or "schema.table".
	Table string `json:"table,omitempty"`
	// IDColumn overrides Config.IDColumn for this table.
	IDColumn string `json:"id_column,omitempty"`
}

// Target writes to tables of one PostgreSQL database. It is safe for
// concurrent use.
type Target struct {
	pool        *pgxpool.Pool
	schema      string
	idColumn    string
	concurrency int
	objects     map[string]Object

	mu     sync.Mutex
	tables map[string]*table // by object name

	// secrets are the connection's password and the connection string that
	// holds it; redactor hides them in every error the target returns.
	secrets  []connector.Secret
	redactor *connector.Redactor
}

// New opens a pool on the target database and checks that it can connect.
func New(ctx context.Context, cfg Config) (*Target, error) {
	raw, hint, err := connectionURL(cfg)
	if err != nil {
		return nil, &connector.SettingsError{Err: fmt.Errorf("postgres connection: %w", err)}
	}
	t := &Target{
		schema:      cfg.Schema,
		idColumn:    cfg.IDColumn,
		concurrency: cfg.Concurrency,
		objects:     cfg.Objects,
		tables:      make(map[string]*table),
		redactor:    connector.NewRedactor(),
	}
	// Known before parsing: an error that fails to parse the URL may quote it.
	t.addSecrets(raw, urlPasswords(raw)...)
	if err := t.open(ctx, raw, hint); err != nil {
		return nil, t.redactor.RedactError(err)
	}
	return t, nil
}

// open applies the defaults and opens the pool. New redacts its errors.
func (t *Target) open(ctx context.Context, raw, hint string) error {
	if t.schema == "" {
		t.schema = DefaultSchema
	}
	if t.idColumn == "" {
		t.idColumn = DefaultIDColumn
	}
	if t.concurrency == 0 {
		t.concurrency = DefaultConcurrency
	}
	if t.concurrency < 0 {
		return &connector.SettingsError{Err: fmt.Errorf("postgres connection: concurrency %d must be positive", t.concurrency)}
	}
	poolCfg, err := pgxpool.ParseConfig(raw)
	if err != nil {
		return &connector.SettingsError{Err: fmt.Errorf("postgres connection: the URL (%s) does not parse: %w", hint, err)}
	}
	// The password as pgx found it: in the URL, in a key=value string, or
	// from PGPASSWORD or a password file.
	t.addSecrets(raw, poolCfg.ConnConfig.Password)
	// One connection per concurrent change, and one for catalog lookups.
	poolCfg.MaxConns = int32(t.concurrency + 1)
	where := describe(poolCfg.ConnConfig)
	pool, err := pgxpool.NewWithConfig(ctx, poolCfg)
	if err != nil {
		return fmt.Errorf("postgres connection: cannot connect to %s: %w; check %s", where, err, hint)
	}
	if err := pool.Ping(ctx); err != nil {
		pool.Close()
		if ce := classifyConnect(err); ce != nil {
			err = t.redactor.RedactClassified(ce)
		}
		return fmt.Errorf("postgres connection: cannot connect to %s: %w; check %s", where, err, hint)
	}
	t.pool = pool
	return nil
}

// Close closes the pool.
func (t *Target) Close() error {
	t.pool.Close()
	return nil
}

// Secrets returns the connection's password and, when it holds the
// password, the connection string.
func (t *Target) Secrets() []string {
	out := make([]string, len(t.secrets))
	for i, s := range t.secrets {
		out[i] = s.Reveal()
	}
	return out
}

// addSecrets records the passwords of the connection string raw, and raw
// itself when it holds one of them.
func (t *Target) addSecrets(raw string, passwords ...string) {
	for _, pw := range passwords {
		if pw == "" || slices.ContainsFunc(t.secrets, func(s connector.Secret) bool { return s.Reveal() == pw }) {
			continue
		}
		t.secrets = append(t.secrets, connector.NewSecret(pw))
		t.redactor.Add(pw)
		if strings.Contains(raw, pw) && !slices.ContainsFunc(t.secrets, func(s connector.Secret) bool { return s.Reveal() == raw }) {
			t.secrets = append(t.secrets, connector.NewSecret(raw))
			t.redactor.Add(raw)
		}
	}
}

// urlPasswords returns the passwords a connection URL holds: the userinfo
// password, decoded and as written (percent-encoded), and the password and
// sslpassword query parameters. None for a key=value string: pgx parses
// those, and New asks it.
func urlPasswords(raw string) []string {
	u, err := url.Parse(raw)
	if err != nil {
		return nil
	}
	var out []string
	if u.User != nil {
		if pw, ok := u.User.Password(); ok {
			out = append(out, pw)
		}
		// As written: between the first ':' and the '@' that ends the userinfo.
		if _, rest, ok := strings.Cut(raw, "://"); ok {
			authority := rest
			if i := strings.IndexAny(authority, "/?#"); i >= 0 {
				authority = authority[:i]
			}
			if at := strings.LastIndex(authority, "@"); at >= 0 {
				if _, pw, ok := strings.Cut(authority[:at], ":"); ok {
					out = append(out, pw)
				}
			}
		}
	}
	q := u.Query()
	return append(out, q.Get("password"), q.Get("sslpassword"))
}

// connectionURL returns the URL to connect with and which setting gave it.
func connectionURL(cfg Config) (raw, hint string, err error) {
	switch {
	case cfg.URL != "" && cfg.URLEnv != "":
		return "", "", errors.New("set url or url_env, not both")
	case cfg.URL != "":
		if u, err := url.Parse(cfg.URL); err == nil && u.User != nil {
			if _, has := u.User.Password(); has {
				return "", "", errors.New("url holds a password: put the URL in an environment variable and name it in url_env")
			}
		}
		return cfg.URL, "url", nil
	case cfg.URLEnv != "":
		s, err := connector.SecretFromEnv(cfg.Env, "url_env", cfg.URLEnv)
		if err != nil {
			return "", "", err
		}
		return s.Reveal(), "url_env " + cfg.URLEnv, nil
	default:
		return "", "", errors.New("url_env is required: name the environment variable that holds the connection URL")
	}
}

// describe names a database without its password.
func describe(c *pgx.ConnConfig) string {
	u := url.URL{Scheme: "postgres", Host: fmt.Sprintf("%s:%d", c.Host, c.Port), Path: "/" + c.Database}
	if c.User != "" {
		u.User = url.User(c.User)
	}
	return u.String()
}

// classifyConnect gives a connection failure its class: Auth for a refused
// login, Retryable otherwise; nil when err is not a connection failure.
func classifyConnect(err error) *connector.Error {
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) && (strings.HasPrefix(pgErr.Code, "28") || pgErr.Code == "42501") {
		return &connector.Error{Class: connector.Auth, Message: pgErr.Message + " [SQLSTATE " + pgErr.Code + "]", Err: err}
	}
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return nil
	}
	var connectErr *pgconn.ConnectError
	if errors.As(err, &connectErr) {
		return &connector.Error{Class: connector.Retryable, Message: err.Error(), Err: err}
	}
	return nil
}

// Check validates a configuration without connecting or reading the
// secrets' values, so a project can be checked where they are not set.
func Check(cfg Config) error {
	cfg.Env = func(string) (string, bool) { return "postgres://localhost/x", true }
	if _, _, err := connectionURL(cfg); err != nil {
		return err
	}
	if cfg.Concurrency < 0 {
		return fmt.Errorf("concurrency %d must be positive", cfg.Concurrency)
	}
	return nil
}

// InFlight is how many statements the target runs at once (connector.Pacer).
func (t *Target) InFlight() int { return t.concurrency }
