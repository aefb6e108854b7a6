package httptarget

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/ferry-sync/ferry/engine/connector"
)

// Defaults for the settings a Config leaves out.
const (
	DefaultTimeout       = 120 * time.Second
	DefaultConcurrency   = 16
	DefaultRetries       = 5
	DefaultBackoffBase   = 200 * time.Millisecond
	DefaultBackoffMax    = 30 * time.Second
	DefaultMaxRetryAfter = 5 * time.Minute
	DefaultIDPath        = "id"
	DefaultResultsPath   = "results"
)

// Config describes a REST API. Its JSON shape is what a connection's
// settings hold. Secrets are never in it: it names environment variables.
type Config struct {
	// BaseURL is prefixed to every path, e.g. "https://api.example.com/v3".
	BaseURL string `json:"base_url"`
	Auth    Auth   `json:"auth"`
	// Timeout bounds one request, from sending to the end of the response
	// body. Default 120s.
	Timeout Duration `json:"timeout,omitempty"`
	// Concurrency is how many requests may be in flight on this connection,
	// shared by every Write call on the Target. Default 16.
	Concurrency int `json:"concurrency,omitempty"`
	// RateLimit is requests per second for the connection; 0 means none.
	RateLimit float64 `json:"rate_limit,omitempty"`
	// Retries is how many times one request is retried (network errors
	// before sending, 500/502/503, 429). nil means 5; 0 means no retry.
	Retries *int `json:"retries,omitempty"`
	// BackoffBase and BackoffMax shape the exponential backoff with full
	// jitter between retries. Defaults 200ms and 30s.
	BackoffBase Duration `json:"backoff_base,omitempty"`
	BackoffMax  Duration `json:"backoff_max,omitempty"`
	// MaxRetryAfter is the longest Retry-After the target waits for within a
	// call; a longer one ends the change as RateLimited at once. Default 5m.
	MaxRetryAfter Duration `json:"max_retry_after,omitempty"`
	// Headers are sent with every request (API versions and the like; never
	// secrets: those go through Auth).
	Headers map[string]string `json:"headers,omitempty"`
	// Objects maps an object name to its endpoints.
	Objects map[string]Object `json:"objects"`

	// Env looks up the environment variables Auth names; nil means the
	// process environment.
	Env connector.LookupEnv `json:"-"`
}

// Auth says how requests authenticate. Secrets come from environment variables.
type Auth struct {
	// Type is bearer, basic, header or none (the default when nothing else is set).
	Type string `json:"type,omitempty"`
	// TokenEnv holds the bearer token (type bearer).
	TokenEnv string `json:"token_env,omitempty"`
	// UsernameEnv and PasswordEnv hold the basic credentials (type basic).
	UsernameEnv string `json:"username_env,omitempty"`
	PasswordEnv string `json:"password_env,omitempty"`
	// Header names the header and ValueEnv holds its value (type header,
	// e.g. "X-API-Key").
	Header   string `json:"header,omitempty"`
	ValueEnv string `json:"value_env,omitempty"`
}

// Object gives the endpoints of one object.
type Object struct {
	// Insert defaults to POST /{object}.
	Insert Endpoint `json:"insert"`
	// Update defaults to PATCH /{object}/{id}; {id} is the target id.
	Update Endpoint `json:"update"`
	// IDPath is where the new id is in the insert response: a dot path such
	// as "id", "data.id" or "results.0.id". Default "id".
	IDPath string `json:"id_path,omitempty"`
	// BodyKey, when set, wraps the payload as {"<body_key>": payload}.
	BodyKey string `json:"body_key,omitempty"`
	// Lookup, when set, lets Find look records up by field values.
	Lookup *Lookup `json:"lookup,omitempty"`
}

// Endpoint is a method and a path relative to BaseURL.
type Endpoint struct {
	Method string `json:"method,omitempty"`
	Path   string `json:"path,omitempty"`
}

// Lookup is a search endpoint: the match fields become query parameters
// (?email=x) of a GET.
type Lookup struct {
	Method string `json:"method,omitempty"` // GET, the only one supported
	Path   string `json:"path"`
	// ResultsPath is where the list of records is in the response; default
	// "results". "" in JSON means the default; "." means the body itself.
	ResultsPath string `json:"results_path,omitempty"`
	// IDPath is where each record's id is, relative to the record; default "id".
	IDPath string `json:"id_path,omitempty"`
}

// Duration is a time.Duration written as "30s" or "2m" in JSON.
type Duration time.Duration

// MarshalJSON writes the duration as a string like "30s".
func (d Duration) MarshalJSON() ([]byte, error) { return json.Marshal(time.Duration(d).String()) }

// UnmarshalJSON reads a string like "30s".
func (d *Duration) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return fmt.Errorf("a duration is a string like \"30s\" or \"2m\"")
	}
	v, err := time.ParseDuration(s)
	if err != nil {
		return fmt.Errorf("bad duration %q: write it like \"30s\" or \"2m\"", s)
	}
	if v < 0 {
		return fmt.Errorf("duration %q must not be negative", s)
	}
	*d = Duration(v)
	return nil
}

// settings is a Config with its defaults applied and its secrets resolved.
type settings struct {
	baseURL    string // no trailing slash
	authHeader string
	authValue  connector.Secret
	// secrets are every credential auth holds, for Target.Secrets: the
	// header value and the values it is made of.
	secrets       []connector.Secret
	timeout       time.Duration
	concurrency   int
	rateLimit     float64
	retries       int
	backoffBase   time.Duration
	backoffMax    time.Duration
	maxRetryAfter time.Duration
	headers       map[string]string
	objects       map[string]object
}

// object is an Object with its defaults applied.
type object struct {
	name    string
	insert  Endpoint
	update  Endpoint
	idPath  string
	bodyKey string
	lookup  *Lookup
}

func resolve(cfg Config) (settings, error) {
	s := settings{
		timeout:       durationOr(cfg.Timeout, DefaultTimeout),
		concurrency:   cfg.Concurrency,
		rateLimit:     cfg.RateLimit,
		retries:       DefaultRetries,
		backoffBase:   durationOr(cfg.BackoffBase, DefaultBackoffBase),
		backoffMax:    durationOr(cfg.BackoffMax, DefaultBackoffMax),
		maxRetryAfter: durationOr(cfg.MaxRetryAfter, DefaultMaxRetryAfter),
		headers:       cfg.Headers,
		objects:       make(map[string]object, len(cfg.Objects)),
	}
	if cfg.BaseURL == "" {
		return settings{}, fmt.Errorf("base_url is required")
	}
	base, err := url.Parse(strings.TrimRight(cfg.BaseURL, "/"))
	if err != nil || (base.Scheme != "http" && base.Scheme != "https") || base.Host == "" {
		return settings{}, fmt.Errorf("base_url %q must be an absolute http(s) URL", cfg.BaseURL)
	}
	if base.User != nil {
		return settings{}, fmt.Errorf("base_url must not hold credentials: use auth with environment variables")
	}
	if base.RawQuery != "" || base.Fragment != "" {
		return settings{}, fmt.Errorf("base_url %q must not have a query or fragment", cfg.BaseURL)
	}
	s.baseURL = base.String()
	if s.concurrency == 0 {
		s.concurrency = DefaultConcurrency
	}
	if s.concurrency < 0 {
		return settings{}, fmt.Errorf("concurrency %d must be positive", cfg.Concurrency)
	}
	if s.rateLimit < 0 {
		return settings{}, fmt.Errorf("rate_limit %v must not be negative", cfg.RateLimit)
	}
	if cfg.Retries != nil {
		if *cfg.Retries < 0 {
			return settings{}, fmt.Errorf("retries %d must not be negative", *cfg.Retries)
		}
		s.retries = *cfg.Retries
	}
	if s.authHeader, s.authValue, s.secrets, err = resolveAuth(cfg.Auth, cfg.Env); err != nil {
		return settings{}, err
	}
	if len(cfg.Objects) == 0 {
		return settings{}, fmt.Errorf("objects: at least one object is required")
	}
	for name, o := range cfg.Objects {
		obj, err := resolveObject(name, o)
		if err != nil {
			return settings{}, fmt.Errorf("objects.%s: %w", name, err)
		}
		s.objects[name] = obj
	}
	return s, nil
}

func resolveObject(name string, o Object) (object, error) {
	obj := object{
		name:    name,
		insert:  endpointOr(o.Insert, http.MethodPost, "/"+name),
		update:  endpointOr(o.Update, http.MethodPatch, "/"+name+"/{id}"),
		idPath:  o.IDPath,
		bodyKey: o.BodyKey,
	}
	if obj.idPath == "" {
		obj.idPath = DefaultIDPath
	}
	for _, e := range []struct {
		what string
		ep   Endpoint
	}{{"insert", obj.insert}, {"update", obj.update}} {
		if err := checkEndpoint(e.ep); err != nil {
			return object{}, fmt.Errorf("%s: %w", e.what, err)
		}
	}
	if !strings.Contains(obj.update.Path, "{id}") {
		return object{}, fmt.Errorf("update.path %q must contain {id}", obj.update.Path)
	}
	if o.Lookup != nil {
		l := *o.Lookup
		if l.Method == "" {
			l.Method = http.MethodGet
		}
		if l.Method != http.MethodGet {
			return object{}, fmt.Errorf("lookup.method %s: only GET is supported", l.Method)
		}
		if err := checkEndpoint(Endpoint{Method: l.Method, Path: l.Path}); err != nil {
			return object{}, fmt.Errorf("lookup: %w", err)
		}
		if l.ResultsPath == "" {
			l.ResultsPath = DefaultResultsPath
		}
		if l.IDPath == "" {
			l.IDPath = DefaultIDPath
		}
		obj.lookup = &l
	}
	return obj, nil
}

// checkEndpoint makes sure a request can be built from e.
func checkEndpoint(e Endpoint) error {
	if !strings.HasPrefix(e.Path, "/") {
		return fmt.Errorf("path %q must start with /", e.Path)
	}
	if _, err := http.NewRequest(e.Method, "http://example.invalid"+strings.ReplaceAll(e.Path, "{id}", "1"), nil); err != nil {
		return fmt.Errorf("%s %s: %w", e.Method, e.Path, err)
	}
	return nil
}

func endpointOr(e Endpoint, method, path string) Endpoint {
	if e.Method == "" {
		e.Method = method
	}
	e.Method = strings.ToUpper(e.Method)
	if e.Path == "" {
		e.Path = path
	}
	return e
}

// resolveAuth returns the header that carries the credentials, its value,
// and every secret auth holds: the header value and the values it is made
// of, since a target may echo any of them (the token alone, or the base64
// of "user:pass" without "Basic ").
func resolveAuth(a Auth, env connector.LookupEnv) (string, connector.Secret, []connector.Secret, error) {
	switch a.Type {
	case "", "none":
		if a.TokenEnv != "" || a.UsernameEnv != "" || a.ValueEnv != "" {
			return "", connector.Secret{}, nil, fmt.Errorf("auth.type is required when auth names a secret: bearer, basic or header")
		}
		return "", connector.Secret{}, nil, nil
	case "bearer":
		token, err := connector.SecretFromEnv(env, "auth.token_env", a.TokenEnv)
		if err != nil {
			return "", connector.Secret{}, nil, err
		}
		value := connector.NewSecret("Bearer " + token.Reveal())
		return "Authorization", value, []connector.Secret{token, value}, nil
	case "basic":
		user, err := connector.SecretFromEnv(env, "auth.username_env", a.UsernameEnv)
		if err != nil {
			return "", connector.Secret{}, nil, err
		}
		pass, err := connector.SecretFromEnv(env, "auth.password_env", a.PasswordEnv)
		if err != nil {
			return "", connector.Secret{}, nil, err
		}
		req := http.Request{Header: http.Header{}}
		req.SetBasicAuth(user.Reveal(), pass.Reveal())
		value := connector.NewSecret(req.Header.Get("Authorization"))
		pair := connector.NewSecret(user.Reveal() + ":" + pass.Reveal())
		return "Authorization", value, []connector.Secret{user, pass, pair, value}, nil
	case "header":
		if a.Header == "" {
			return "", connector.Secret{}, nil, fmt.Errorf("auth.header is required for auth type header")
		}
		value, err := connector.SecretFromEnv(env, "auth.value_env", a.ValueEnv)
		if err != nil {
			return "", connector.Secret{}, nil, err
		}
		return http.CanonicalHeaderKey(a.Header), value, []connector.Secret{value}, nil
	default:
		return "", connector.Secret{}, nil, fmt.Errorf("auth.type %q: use bearer, basic, header or none", a.Type)
	}
}

func durationOr(d Duration, def time.Duration) time.Duration {
	if d == 0 {
		return def
	}
	return time.Duration(d)
}

// Check validates a configuration without opening anything or reading the
// secrets' values, so a project can be checked where they are not set.
func Check(cfg Config) error {
	cfg.Env = func(string) (string, bool) { return "set", true }
	_, err := resolve(cfg)
	return err
}
