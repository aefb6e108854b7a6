package httptarget

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"slices"
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
	DefaultRetryBudget   = 15 * time.Minute
	DefaultIDPath        = "id"
	DefaultResultsPath   = "results"
	DefaultBatchSize     = 100
	DefaultClientIDChars = "abcdefghijklmnopqrstuvwxyz0123456789"
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
	// shared by every target opened for it in the process. Default 16.
	Concurrency int `json:"concurrency,omitempty"`
	// RateLimit is requests per second for the connection; 0 means none.
	RateLimit float64 `json:"rate_limit,omitempty"`
	// RateWindow is at most Requests requests in any Per (PocketBase: 20
	// in 10s), shared like Concurrency.
	RateWindow *RateWindow `json:"rate_window,omitempty"`
	// DailyQuota is how many requests the connection may send per UTC day;
	// 0 means no quota. Once used up, calls stop as RateLimited.
	DailyQuota int `json:"daily_quota,omitempty"`
	// Retries is how many times one request is retried after a network
	// error before sending or a 408/500/502/503 (504 for all but inserts).
	// nil means 5; 0 means no retry. 429 answers are bounded by RetryBudget
	// instead.
	Retries *int `json:"retries,omitempty"`
	// RetryBudget is how long one request keeps being retried after 429
	// answers (waiting their Retry-After, or backing off without one).
	// Default 15m.
	RetryBudget Duration `json:"retry_budget,omitempty"`
	// BackoffBase and BackoffMax shape the exponential backoff with jitter
	// between retries. Defaults 200ms and 30s.
	BackoffBase Duration `json:"backoff_base,omitempty"`
	BackoffMax  Duration `json:"backoff_max,omitempty"`
	// MaxRetryAfter is the longest Retry-After the target waits for within a
	// call; a longer one ends the change as RateLimited at once. Default 5m.
	MaxRetryAfter Duration `json:"max_retry_after,omitempty"`
	// Headers are sent with every request (API versions and the like; never
	// secrets: those go through Auth).
	Headers map[string]string `json:"headers,omitempty"`
	// Errors says where an error answer lists what is wrong with each field,
	// for every object that does not say otherwise.
	Errors *FieldErrors `json:"errors,omitempty"`
	// AuthError declares answers other than 401 and 403 that mean the
	// credentials were refused (a stock PocketBase answers 400 to an expired
	// token).
	AuthError *Answer `json:"auth_error,omitempty"`
	// Objects maps an object name to its endpoints.
	Objects map[string]Object `json:"objects"`

	// Env looks up the environment variables Auth names; nil means the
	// process environment.
	Env connector.LookupEnv `json:"-"`
}

// RateWindow is a limit of Requests requests in any span of Per.
type RateWindow struct {
	Requests int      `json:"requests"`
	Per      Duration `json:"per"`
}

// Auth says how requests authenticate. Secrets come from environment variables.
type Auth struct {
	// Type is bearer, basic, header, login, oauth2 or none (the default
	// when nothing else is set).
	Type string `json:"type,omitempty"`
	// TokenEnv holds the bearer token (type bearer).
	TokenEnv string `json:"token_env,omitempty"`
	// UsernameEnv and PasswordEnv hold the basic credentials (type basic)
	// or those a login sends (type login).
	UsernameEnv string `json:"username_env,omitempty"`
	PasswordEnv string `json:"password_env,omitempty"`
	// Header names the header (type header, e.g. "X-API-Key"; for bearer,
	// login and oauth2 it replaces Authorization) and ValueEnv holds its
	// value (type header).
	Header   string `json:"header,omitempty"`
	ValueEnv string `json:"value_env,omitempty"`
	// Scheme is what precedes a token in its header (bearer, login,
	// oauth2): default "Bearer"; "none" sends the token alone
	// (PocketBase: "Authorization: <token>").
	Scheme string `json:"scheme,omitempty"`
	// Login is the request that trades the username and password for a
	// token (type login).
	Login *Login `json:"login,omitempty"`
	// OAuth2 (type oauth2): the token endpoint, the client's credentials,
	// and a refresh token (without one: the client credentials grant).
	TokenURL        string            `json:"token_url,omitempty"`
	ClientIDEnv     string            `json:"client_id_env,omitempty"`
	ClientSecretEnv string            `json:"client_secret_env,omitempty"`
	RefreshTokenEnv string            `json:"refresh_token_env,omitempty"`
	Scopes          []string          `json:"scopes,omitempty"`
	Params          map[string]string `json:"params,omitempty"` // more token request parameters (audience)
	// AuthStyle is how the client's credentials reach the token endpoint:
	// "header" (basic auth), "params" (in the form), or "" to find out.
	AuthStyle string `json:"auth_style,omitempty"`
}

// Login is a request that trades a username and password for a token.
type Login struct {
	Method string `json:"method,omitempty"` // default POST
	// Path is relative to base_url, or a whole http(s) URL.
	Path string `json:"path"`
	// Body is the JSON sent, where "{{username}}" and "{{password}}" stand
	// for the secrets. Default {"username": "{{username}}", "password":
	// "{{password}}"}.
	Body any `json:"body,omitempty"`
	// TokenPath is where the token is in the answer; default "token".
	TokenPath string `json:"token_path,omitempty"`
	// ExpiresInPath is where the answer says in how many seconds the token
	// expires. Without it, the token's JWT "exp" claim is read; without
	// one, the token is renewed only when an answer says it expired.
	ExpiresInPath string `json:"expires_in_path,omitempty"`
}

// FieldErrors says where an error answer says what is wrong with each
// field: at Path, an object keyed by field (PocketBase's "data": {"email":
// {"code", "message"}}) or a list of entries (with the field at Field).
type FieldErrors struct {
	Path    string `json:"path"`
	Field   string `json:"field,omitempty"`   // in a list's entries: where the field name is
	Message string `json:"message,omitempty"` // in an entry: default "message"
	Code    string `json:"code,omitempty"`    // in an entry: default "code"
}

// Answer describes answers of one meaning (an expired token, "already
// exists"): each condition set must hold.
type Answer struct {
	Status []int `json:"status,omitempty"`
	// MessageContains is text the answer's message (or body) holds, in any case.
	MessageContains string `json:"message_contains,omitempty"`
	// Field and Code match a field error (see FieldErrors): one on Field,
	// one with Code, or, with both, one on Field with Code.
	Field string `json:"field,omitempty"`
	Code  string `json:"code,omitempty"`
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
	// Errors overrides the connection's errors for this object.
	Errors *FieldErrors `json:"errors,omitempty"`
	// Batch, when set, writes records many to a request.
	Batch *Batch `json:"batch,omitempty"`
	// ClientID makes inserts idempotent by choosing the new record's id.
	ClientID *ClientID `json:"client_id,omitempty"`
	// IdempotencyKey makes inserts idempotent with a header the API honours.
	IdempotencyKey *IdempotencyKey `json:"idempotency_key,omitempty"`
	// Delete, when set, lets a sync delete records (delete:, ferry
	// rollback): {} is DELETE /{object}/{id}; a 404 counts as deleted.
	Delete *Endpoint `json:"delete,omitempty"`
}

// Endpoint is a method and a path relative to BaseURL.
type Endpoint struct {
	Method string `json:"method,omitempty"`
	Path   string `json:"path,omitempty"`
}

// Lookup is a search request. Without Query or Body, the match fields
// become query parameters (?email=x) of a GET. Otherwise its path, query
// values and body are templates (see doc.go) with the match's values.
type Lookup struct {
	Method string            `json:"method,omitempty"` // GET (default) or POST
	Path   string            `json:"path"`
	Query  map[string]string `json:"query,omitempty"`
	Body   any               `json:"body,omitempty"`
	// ResultsPath is where the list of records is in the response; default
	// "results". "." means the body itself.
	ResultsPath string `json:"results_path,omitempty"`
	// IDPath is where each record's id is, relative to the record; default "id".
	IDPath string `json:"id_path,omitempty"`
	// FieldsPath is where each record's fields are, relative to the record
	// (HubSpot: "properties"); default the object's body_key. They are
	// copied to the top of the record found, so that its fields are
	// compared with the match.
	FieldsPath string `json:"fields_path,omitempty"`
}

// Batch writes many records per request.
type Batch struct {
	// Size is the most records in one request; default 100. It halves
	// (down to 1) for the rest of the target's life when a batch times out.
	Size int `json:"size,omitempty"`
	// Mode is what the API does when some records of a batch are bad:
	// "all_or_nothing" (the default: it writes none of them; failures, when
	// set, names the failing ones, else the batch is split in halves down to
	// the bad records) or "partial" (it writes the good ones and lists the
	// others).
	Mode   string         `json:"mode,omitempty"`
	Insert *BatchEndpoint `json:"insert,omitempty"`
	Update *BatchEndpoint `json:"update,omitempty"`
	// ResultsPath is where the list of written records is in a 2xx answer;
	// default "results"; "." the body itself.
	ResultsPath string `json:"results_path,omitempty"`
	// IDPath is where each result's id is; default the object's id_path.
	IDPath string `json:"id_path,omitempty"`
	// Failures says where an answer names the records that failed.
	Failures *BatchFailures `json:"failures,omitempty"`
}

// BatchEndpoint is the request of a batch.
type BatchEndpoint struct {
	Method string `json:"method,omitempty"` // default POST
	Path   string `json:"path"`
	// Body is the JSON template of the request, "{{items}}" where the
	// records go; default "{{items}}" (a list).
	Body any `json:"body,omitempty"`
	// Item is the JSON template of one record: "{{record}}" (its fields),
	// "{{id}}" (its target id), "{{correlation_id}}". Default "{{record}}",
	// wrapped under body_key when the object has one.
	Item any `json:"item,omitempty"`
	// Correlate matches results and failures to records by an id the
	// request carries (HubSpot's objectWriteTraceId): "{{correlation_id}}"
	// in the item, or, for updates without it, the target id.
	Correlate *Correlate `json:"correlate,omitempty"`
}

// Correlate says where results and failures carry their record's
// correlation id.
type Correlate struct {
	Result  string `json:"result"`            // in each result
	Failure string `json:"failure,omitempty"` // in each failure entry
}

// BatchFailures says where an answer names failed records.
type BatchFailures struct {
	// Path is where they are: a list of entries, or an object keyed by the
	// record's index in the request (PocketBase: data.requests).
	Path string `json:"path"`
	// Index is where a list entry holds the record's index in the request.
	Index string `json:"index,omitempty"`
	// Body is where an entry holds the record's own error answer, read as a
	// single request's would be (PocketBase: response); default the entry.
	Body string `json:"body,omitempty"`
	// Status is where an entry (or its body) holds the record's HTTP status;
	// default: the batch answer's, or "code"/"status" of the body when it is
	// a number.
	Status string `json:"status,omitempty"`
	// NotFound is the failure of an update whose record does not exist,
	// for APIs whose entries carry no HTTP status (HubSpot:
	// {message_contains: "not exist"}).
	NotFound *Answer `json:"not_found,omitempty"`
}

// ClientID chooses a new record's id on the client, derived from the sync,
// the object and the source id, so that an insert sent twice meets "already
// exists" instead of creating a second record.
type ClientID struct {
	Field    string `json:"field"`              // the id field of the create body
	Length   int    `json:"length,omitempty"`   // default 15
	Alphabet string `json:"alphabet,omitempty"` // default a-z0-9
	// Exists is the answer that says a record with that id exists: the
	// insert then succeeds with that id.
	Exists *Answer `json:"exists"`
}

// IdempotencyKey sends a key derived from the sync, the object, the source
// id and the record with each insert, for APIs that answer a repeated key
// with the first answer.
type IdempotencyKey struct {
	Header string `json:"header,omitempty"` // default Idempotency-Key
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
	baseURL string // no trailing slash
	auth    authSettings
	// secrets are every credential auth holds from the start, for
	// Target.Secrets: the header value and the values it is made of.
	secrets       []connector.Secret
	timeout       time.Duration
	concurrency   int
	rateLimit     float64
	window        *RateWindow
	dailyQuota    int
	retries       int
	retryBudget   time.Duration
	backoffBase   time.Duration
	backoffMax    time.Duration
	maxRetryAfter time.Duration
	headers       map[string]string
	errors        *FieldErrors // the connection's; objects have their own copy
	authError     *answerRule
	objects       map[string]object
	budgetKey     string
}

// object is an Object with its defaults applied.
type object struct {
	name     string
	insert   Endpoint
	update   Endpoint
	idPath   string
	bodyKey  string
	lookup   *lookup
	errors   *FieldErrors
	batch    *batch
	clientID *clientID
	idemKey  string    // header name; "" for none
	delete   *Endpoint // nil: records are not deleted
}

// idempotentInserts says whether an insert may be sent again after it may
// have been applied.
func (o object) idempotentInserts() bool { return o.clientID != nil || o.idemKey != "" }

// problem is a settings error at a path.
func problem(path, format string, args ...any) error {
	return fmt.Errorf("%s: %s", path, fmt.Sprintf(format, args...))
}

func resolve(cfg Config) (settings, error) {
	s := settings{
		timeout:       durationOr(cfg.Timeout, DefaultTimeout),
		concurrency:   cfg.Concurrency,
		rateLimit:     cfg.RateLimit,
		dailyQuota:    cfg.DailyQuota,
		retries:       DefaultRetries,
		retryBudget:   durationOr(cfg.RetryBudget, DefaultRetryBudget),
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
	if w := cfg.RateWindow; w != nil {
		if w.Requests <= 0 {
			return settings{}, problem("rate_window.requests", "%d must be positive", w.Requests)
		}
		if w.Per <= 0 {
			return settings{}, problem("rate_window.per", "is required: the span the requests are counted in, like \"10s\"")
		}
		s.window = w
	}
	if s.dailyQuota < 0 {
		return settings{}, problem("daily_quota", "%d must not be negative", cfg.DailyQuota)
	}
	if cfg.Retries != nil {
		if *cfg.Retries < 0 {
			return settings{}, fmt.Errorf("retries %d must not be negative", *cfg.Retries)
		}
		s.retries = *cfg.Retries
	}
	if s.auth, s.secrets, err = resolveAuth(cfg.Auth, cfg.Env, s.baseURL); err != nil {
		return settings{}, err
	}
	if cfg.Errors != nil {
		if err := checkFieldErrors("errors", cfg.Errors); err != nil {
			return settings{}, err
		}
		s.errors = cfg.Errors
	}
	if cfg.AuthError != nil {
		if s.authError, err = resolveAnswer("auth_error", cfg.AuthError); err != nil {
			return settings{}, err
		}
	}
	if len(cfg.Objects) == 0 {
		return settings{}, fmt.Errorf("objects: at least one object is required")
	}
	for _, name := range slices.Sorted(mapsKeys(cfg.Objects)) {
		obj, err := resolveObject("objects."+name, name, cfg.Objects[name], cfg.Errors)
		if err != nil {
			return settings{}, err
		}
		s.objects[name] = obj
	}
	s.budgetKey = budgetKey(cfg, s)
	return s, nil
}

func mapsKeys[V any](m map[string]V) func(func(string) bool) {
	return func(yield func(string) bool) {
		for k := range m {
			if !yield(k) {
				return
			}
		}
	}
}

func resolveObject(path, name string, o Object, errs *FieldErrors) (object, error) {
	obj := object{
		name:    name,
		insert:  endpointOr(o.Insert, http.MethodPost, "/"+name),
		update:  endpointOr(o.Update, http.MethodPatch, "/"+name+"/{id}"),
		idPath:  o.IDPath,
		bodyKey: o.BodyKey,
		errors:  errs,
	}
	if o.Delete != nil {
		d := endpointOr(*o.Delete, http.MethodDelete, "/"+name+"/{id}")
		obj.delete = &d
	}
	if obj.idPath == "" {
		obj.idPath = DefaultIDPath
	}
	for _, e := range []struct {
		what string
		ep   Endpoint
	}{{"insert", obj.insert}, {"update", obj.update}} {
		if err := checkEndpoint(e.ep); err != nil {
			return object{}, problem(path+"."+e.what, "%v", err)
		}
	}
	if !strings.Contains(obj.update.Path, "{id}") {
		return object{}, problem(path+".update.path", "%q must contain {id}", obj.update.Path)
	}
	if o.Errors != nil {
		if err := checkFieldErrors(path+".errors", o.Errors); err != nil {
			return object{}, err
		}
		obj.errors = o.Errors
	}
	if o.Lookup != nil {
		l, err := resolveLookup(path+".lookup", *o.Lookup, o.BodyKey)
		if err != nil {
			return object{}, err
		}
		obj.lookup = l
	}
	if o.ClientID != nil {
		c, err := resolveClientID(path+".client_id", *o.ClientID)
		if err != nil {
			return object{}, err
		}
		obj.clientID = c
	}
	if o.IdempotencyKey != nil {
		obj.idemKey = http.CanonicalHeaderKey(o.IdempotencyKey.Header)
		if obj.idemKey == "" {
			obj.idemKey = "Idempotency-Key"
		}
	}
	if o.Batch != nil {
		b, err := resolveBatch(path+".batch", *o.Batch, obj)
		if err != nil {
			return object{}, err
		}
		obj.batch = b
	}
	return obj, nil
}

func checkFieldErrors(path string, f *FieldErrors) error {
	if f.Path == "" {
		return problem(path+".path", "is required: where the answer lists the fields' errors (\"data\", \"errors\")")
	}
	return nil
}

// answerRule is an Answer with its message lower-cased.
type answerRule struct {
	status   []int
	contains string
	field    string
	code     string
}

func resolveAnswer(path string, a *Answer) (*answerRule, error) {
	if len(a.Status) == 0 && a.MessageContains == "" && a.Field == "" && a.Code == "" {
		return nil, problem(path, "say which answers: status, message_contains, field or code")
	}
	for _, st := range a.Status {
		if st < 100 || st > 599 {
			return nil, problem(path+".status", "%d is not an HTTP status", st)
		}
	}
	return &answerRule{status: a.Status, contains: strings.ToLower(a.MessageContains), field: a.Field, code: a.Code}, nil
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

func durationOr(d Duration, def time.Duration) time.Duration {
	if d == 0 {
		return def
	}
	return time.Duration(d)
}

// Check validates a configuration without opening anything or reading the
// secrets' values, so a project can be checked where they are not set.
func Check(cfg Config) error {
	cfg.Env = func(string) (string, bool) { return "set-for-checking", true }
	_, err := resolve(cfg)
	return err
}
