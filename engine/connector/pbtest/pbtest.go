// Package pbtest is an in-process HTTP server that behaves like
// PocketBase's REST API (v0.23 and later) as it is documented and as it
// answers, for tests of the http connector against a real-world shape:
//
//	POST   /api/collections/_superusers/auth-with-password  {"identity","password"} → 200 {"token","record"}
//	GET    /api/collections/{c}/records?filter=&page=&perPage=  → 200 {"page","perPage","totalItems","totalPages","items"}
//	GET    /api/collections/{c}/records/{id}                    → 200 record, 404
//	POST   /api/collections/{c}/records                         → 200 (not 201) record; a body may choose the id
//	PATCH  /api/collections/{c}/records/{id}                    → 200 record, 404
//	DELETE /api/collections/{c}/records/{id}                    → 204, 404
//	POST   /api/batch {"requests":[{"method","url","body"}]}     → 200 [{"status","body"}], all or nothing
//
// What makes it PocketBase and not a stub:
//
//   - Errors are {"status", "message", "data"}, and a failed write says
//     which field and why in data: {"email": {"code":
//     "validation_not_unique", "message": "Value must be unique."}}. Every
//     validation failure has the same message, "Failed to create record.".
//   - The token is a JWT (HS256, with exp), sent as "Authorization: <token>"
//     ("Bearer <token>" is accepted too). Without one, records answer 403
//     "Only superusers can perform this action."; with an expired or
//     invalid one, 400 "The request requires valid record authorization
//     token." (not 401).
//   - A client may choose a record's id: 15 characters of [a-z0-9]; one that
//     exists is refused with data.id {"code": "validation_pk_invalid"}.
//   - The list endpoint filters with PocketBase's filter syntax
//     ((email='a@b.c' && name~'x'), quoted strings with backslash escapes)
//     and ignores query parameters it does not know: ?email=x lists
//     everything.
//   - The batch endpoint is off unless Options.BatchMax is set (403 "Batch
//     requests are not allowed."); it runs the requests in one transaction
//     and at the first failure writes none and answers 400 with
//     data.requests.<index> = {"code": "batch_request_failed", "message",
//     "response": <that request's error answer>}. PUT on the records URL is
//     an upsert by the body's id.
//   - Its rate limiter is PocketBase's: MaxRequests per Interval, where the
//     allowance refills only once Interval has passed since the last
//     request it allowed; over it, 429 {"message": "Too Many Requests."}
//     without Retry-After.
package pbtest

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"net/url"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// Options configure a Server.
type Options struct {
	// Email and Password are the superuser's.
	Email, Password string
	// TokenTTL is how long a token lives; default 15m. A JWT's exp is in
	// whole seconds, so a TTL under a second gives tokens of under a second.
	TokenTTL time.Duration
	// Collections are the record collections and their rules.
	Collections map[string]Collection
	// BatchMax turns the batch endpoint on and bounds its requests.
	BatchMax int
	// RateLimit, when set, limits every request as PocketBase does.
	RateLimit *RateLimit
	// Latency is added to every request.
	Latency time.Duration
}

// RateLimit is PocketBase's rule: MaxRequests per Interval.
type RateLimit struct {
	MaxRequests int
	Interval    time.Duration
}

// Collection holds a collection's rules, as its fields' options would.
type Collection struct {
	Required  []string
	Unique    []string
	Email     []string       // fields that must hold an e-mail address
	MaxLength map[string]int // text fields' longest value, in characters
}

// Server is a running PocketBase-like server.
type Server struct {
	URL string

	opts    Options
	http    *httptest.Server
	closing chan struct{}
	once    sync.Once

	keyMu sync.Mutex
	key   []byte // the token signing key; rotating it invalidates tokens

	rejectTokens atomic.Bool
	hangN        atomic.Int64
	logins       atomic.Int64
	requests     atomic.Int64
	limited      atomic.Int64

	limitMu     sync.Mutex
	available   int
	lastConsume time.Time

	mu          sync.Mutex // guards the records of every collection
	collections map[string]*collection
	seq         int64
}

type collection struct {
	name  string
	rules Collection
	recs  map[string]map[string]any
	order map[string]int64
}

// New starts a server for the test and closes it when the test ends.
func New(t testing.TB, opts Options) *Server {
	t.Helper()
	s := NewServer(opts)
	t.Cleanup(s.Close)
	return s
}

// NewServer starts a server; call Close when done.
func NewServer(opts Options) *Server {
	if opts.TokenTTL == 0 {
		opts.TokenTTL = 15 * time.Minute
	}
	s := &Server{opts: opts, closing: make(chan struct{}), collections: map[string]*collection{}}
	s.key = newKey()
	for name, rules := range opts.Collections {
		s.collections[name] = &collection{name: name, rules: rules, recs: map[string]map[string]any{}, order: map[string]int64{}}
	}
	if opts.RateLimit != nil {
		s.available = opts.RateLimit.MaxRequests
	}
	s.http = httptest.NewUnstartedServer(s)
	s.http.Config.ErrorLog = log.New(io.Discard, "", 0)
	s.http.Start()
	s.URL = s.http.URL
	return s
}

func newKey() []byte {
	k := make([]byte, 32)
	_, _ = rand.Read(k)
	return k
}

// Close stops the server.
func (s *Server) Close() {
	s.once.Do(func() {
		close(s.closing)
		s.http.CloseClientConnections()
		s.http.Close()
	})
}

// ExpireTokens makes every token issued so far invalid, as a restart with a
// new secret would.
func (s *Server) ExpireTokens() {
	s.keyMu.Lock()
	s.key = newKey()
	s.keyMu.Unlock()
}

// RejectTokens makes every request with a token, even a valid one, be
// answered 401 (the superuser lost its rights), or stops doing so.
func (s *Server) RejectTokens(on bool) { s.rejectTokens.Store(on) }

// HangNext makes the next n requests to records or batch apply their
// writes and never answer (the client times out).
func (s *Server) HangNext(n int) { s.hangN.Store(int64(n)) }

// Logins is how many password logins succeeded.
func (s *Server) Logins() int { return int(s.logins.Load()) }

// Requests is how many requests arrived.
func (s *Server) Requests() int { return int(s.requests.Load()) }

// Limited is how many requests the rate limiter refused.
func (s *Server) Limited() int { return int(s.limited.Load()) }

// Count is how many records a collection holds.
func (s *Server) Count(c string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	if col := s.collections[c]; col != nil {
		return len(col.recs)
	}
	return 0
}

// Records returns a copy of a collection's records in creation order.
func (s *Server) Records(c string) []map[string]any {
	s.mu.Lock()
	defer s.mu.Unlock()
	col := s.collections[c]
	if col == nil {
		return nil
	}
	return col.sorted(nil)
}

// Record returns a copy of one record.
func (s *Server) Record(c, id string) (map[string]any, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	col := s.collections[c]
	if col == nil {
		return nil, false
	}
	r, ok := col.recs[id]
	if !ok {
		return nil, false
	}
	return copyRecord(r), true
}

// Put creates a record as if made in the dashboard, returning its id.
func (s *Server) Put(t testing.TB, c string, fields map[string]any) string {
	t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	rep := s.create(c, fields)
	if rep.status != http.StatusOK {
		t.Fatalf("pbtest: putting a %s: %d %v", c, rep.status, rep.body)
	}
	return rep.body.(map[string]any)["id"].(string)
}

// reply is a status and a JSON body.
type reply struct {
	status int
	body   any
}

// apiError is PocketBase's error answer.
func apiError(status int, message string, data map[string]any) reply {
	if data == nil {
		data = map[string]any{}
	}
	return reply{status, map[string]any{"status": status, "message": message, "data": data}}
}

func fieldErr(code, message string) map[string]any {
	return map[string]any{"code": code, "message": message}
}

func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	s.requests.Add(1)
	if d := s.opts.Latency; d > 0 {
		select {
		case <-time.After(d):
		case <-r.Context().Done():
			return
		case <-s.closing:
			return
		}
	}
	if !s.allow() {
		s.limited.Add(1)
		write(w, apiError(http.StatusTooManyRequests, "Too Many Requests.", nil))
		return
	}
	path := r.URL.Path
	if path == "/api/collections/_superusers/auth-with-password" && r.Method == http.MethodPost {
		write(w, s.login(r))
		return
	}
	if rep, ok := s.authorize(r); !ok {
		write(w, rep)
		return
	}
	hang := s.hangN.Load() > 0 && s.hangN.Add(-1) >= 0
	var rep reply
	switch {
	case path == "/api/batch" && r.Method == http.MethodPost:
		rep = s.batch(r)
	case strings.HasPrefix(path, "/api/collections/"):
		body, bad := readBody(r)
		if bad != nil {
			rep = *bad
			break
		}
		s.mu.Lock()
		rep = s.route(r.Method, r.URL, body)
		s.mu.Unlock()
	default:
		rep = apiError(http.StatusNotFound, "The requested resource wasn't found.", nil)
	}
	if hang {
		select {
		case <-r.Context().Done():
		case <-s.closing:
		}
		if hj, ok := w.(http.Hijacker); ok {
			if conn, _, err := hj.Hijack(); err == nil {
				_ = conn.Close()
			}
		}
		return
	}
	write(w, rep)
}

// allow is PocketBase's fixed window: the allowance refills once Interval
// has passed since the last request it allowed.
func (s *Server) allow() bool {
	rl := s.opts.RateLimit
	if rl == nil {
		return true
	}
	s.limitMu.Lock()
	defer s.limitMu.Unlock()
	now := time.Now()
	if now.Sub(s.lastConsume) >= rl.Interval {
		s.available = rl.MaxRequests
	}
	if s.available > 0 {
		s.available--
		s.lastConsume = now
		return true
	}
	return false
}

func readBody(r *http.Request) (map[string]any, *reply) {
	if r.Method == http.MethodGet || r.Method == http.MethodDelete {
		return nil, nil
	}
	b, err := io.ReadAll(io.LimitReader(r.Body, 32<<20))
	if err != nil {
		rep := apiError(http.StatusBadRequest, "Failed to read the request body.", nil)
		return nil, &rep
	}
	var body map[string]any
	dec := json.NewDecoder(strings.NewReader(string(b)))
	dec.UseNumber()
	if len(strings.TrimSpace(string(b))) > 0 && dec.Decode(&body) != nil {
		rep := apiError(http.StatusBadRequest, "Failed to load the submitted data due to invalid formatting.", nil)
		return nil, &rep
	}
	if body == nil {
		body = map[string]any{}
	}
	return body, nil
}

func write(w http.ResponseWriter, rep reply) {
	if rep.body == nil {
		w.WriteHeader(rep.status)
		return
	}
	b, _ := json.Marshal(rep.body)
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(rep.status)
	_, _ = w.Write(b)
}

// login checks the superuser's credentials and issues a token.
func (s *Server) login(r *http.Request) reply {
	body, bad := readBody(r)
	if bad != nil {
		return *bad
	}
	identity, _ := body["identity"].(string)
	password, _ := body["password"].(string)
	if identity == "" || password == "" {
		data := map[string]any{}
		if identity == "" {
			data["identity"] = fieldErr("validation_required", "Cannot be blank.")
		}
		if password == "" {
			data["password"] = fieldErr("validation_required", "Cannot be blank.")
		}
		return apiError(http.StatusBadRequest, "An error occurred while validating the submitted data.", data)
	}
	if identity != s.opts.Email || password != s.opts.Password {
		return apiError(http.StatusBadRequest, "Failed to authenticate.", nil)
	}
	s.logins.Add(1)
	return reply{http.StatusOK, map[string]any{
		"token":  s.token(),
		"record": map[string]any{"id": "sup1234567890ab", "email": s.opts.Email, "collectionName": "_superusers"},
	}}
}

func (s *Server) token() string {
	header := base64.RawURLEncoding.EncodeToString([]byte(`{"alg":"HS256","typ":"JWT"}`))
	exp := time.Now().Add(s.opts.TokenTTL).Unix()
	claims, _ := json.Marshal(map[string]any{"id": "sup1234567890ab", "type": "auth", "collectionId": "pbc_3142635823", "refreshable": true, "exp": exp})
	payload := base64.RawURLEncoding.EncodeToString(claims)
	return header + "." + payload + "." + s.sign(header+"."+payload)
}

func (s *Server) sign(data string) string {
	s.keyMu.Lock()
	key := s.key
	s.keyMu.Unlock()
	m := hmac.New(sha256.New, key)
	m.Write([]byte(data))
	return base64.RawURLEncoding.EncodeToString(m.Sum(nil))
}

// authorize checks the token of a request to records or batch.
func (s *Server) authorize(r *http.Request) (reply, bool) {
	tok := strings.TrimPrefix(r.Header.Get("Authorization"), "Bearer ")
	if tok == "" {
		return apiError(http.StatusForbidden, "Only superusers can perform this action.", nil), false
	}
	parts := strings.Split(tok, ".")
	valid := len(parts) == 3 && hmac.Equal([]byte(s.sign(parts[0]+"."+parts[1])), []byte(parts[2]))
	if valid {
		raw, err := base64.RawURLEncoding.DecodeString(parts[1])
		var claims struct {
			Exp int64 `json:"exp"`
		}
		valid = err == nil && json.Unmarshal(raw, &claims) == nil && time.Now().Unix() < claims.Exp
	}
	if !valid {
		return apiError(http.StatusBadRequest, "The request requires valid record authorization token.", nil), false
	}
	if s.rejectTokens.Load() {
		return apiError(http.StatusUnauthorized, "The request requires valid record authorization token.", nil), false
	}
	return reply{}, true
}

var recordsPath = regexp.MustCompile(`^/api/collections/([^/?]+)/records(?:/([^/?]+))?$`)

// route answers one records request. Called with s.mu held.
func (s *Server) route(method string, u *url.URL, body map[string]any) reply {
	m := recordsPath.FindStringSubmatch(u.Path)
	if m == nil {
		return apiError(http.StatusNotFound, "The requested resource wasn't found.", nil)
	}
	c, id := m[1], m[2]
	if s.collections[c] == nil {
		return apiError(http.StatusNotFound, "Missing or invalid collection context.", nil)
	}
	switch {
	case id == "" && method == http.MethodGet:
		return s.list(c, u.Query())
	case id == "" && method == http.MethodPost:
		return s.create(c, body)
	case id == "" && method == http.MethodPut:
		// Upsert, as the batch endpoint allows: by the body's id.
		if bid, _ := body["id"].(string); bid != "" {
			if _, ok := s.collections[c].recs[bid]; ok {
				return s.update(c, bid, body)
			}
		}
		return s.create(c, body)
	case id != "" && method == http.MethodGet:
		r, ok := s.collections[c].recs[id]
		if !ok {
			return apiError(http.StatusNotFound, "The requested resource wasn't found.", nil)
		}
		return reply{http.StatusOK, copyRecord(r)}
	case id != "" && method == http.MethodPatch:
		return s.update(c, id, body)
	case id != "" && method == http.MethodDelete:
		if _, ok := s.collections[c].recs[id]; !ok {
			return apiError(http.StatusNotFound, "The requested resource wasn't found.", nil)
		}
		delete(s.collections[c].recs, id)
		return reply{http.StatusNoContent, nil}
	}
	return apiError(http.StatusMethodNotAllowed, "Method Not Allowed", nil)
}

var (
	idPattern    = regexp.MustCompile(`^[a-z0-9]{15}$`)
	emailPattern = regexp.MustCompile(`^[^@\s]+@[^@\s]+\.[^@\s]+$`)
)

const idChars = "abcdefghijklmnopqrstuvwxyz0123456789"

func (s *Server) newID() string {
	b := make([]byte, 15)
	_, _ = rand.Read(b)
	for i := range b {
		b[i] = idChars[int(b[i])%len(idChars)]
	}
	return string(b)
}

// validate checks a record as it would be stored; self is its id.
func (c *collection) validate(rec map[string]any, self string) map[string]any {
	errs := map[string]any{}
	for _, f := range c.rules.Required {
		if v, ok := rec[f]; !ok || v == nil || v == "" {
			errs[f] = fieldErr("validation_required", "Cannot be blank.")
		}
	}
	for f, n := range c.rules.MaxLength {
		if s, ok := rec[f].(string); ok && len([]rune(s)) > n {
			errs[f] = fieldErr("validation_max_text_constraint", fmt.Sprintf("Must be less than %d character(s).", n))
		}
	}
	for _, f := range c.rules.Email {
		if s, ok := rec[f].(string); ok && s != "" && !emailPattern.MatchString(s) {
			errs[f] = fieldErr("validation_is_email", "Must be a valid email address.")
		}
	}
	for _, f := range c.rules.Unique {
		v, ok := rec[f]
		if !ok || v == nil || v == "" {
			continue
		}
		if _, bad := errs[f]; bad {
			continue
		}
		for id, other := range c.recs {
			if id != self && strings.EqualFold(text(other[f]), text(v)) {
				errs[f] = fieldErr("validation_not_unique", "Value must be unique.")
				break
			}
		}
	}
	return errs
}

// create stores a new record. Called with s.mu held.
func (s *Server) create(c string, body map[string]any) reply {
	col := s.collections[c]
	rec := map[string]any{}
	for k, v := range body {
		rec[k] = v
	}
	id, _ := rec["id"].(string)
	errs := map[string]any{}
	switch {
	case rec["id"] != nil && id == "":
		errs["id"] = fieldErr("validation_invalid_format", "Invalid value format.")
	case id == "":
		id = s.newID()
	case !idPattern.MatchString(id):
		errs["id"] = fieldErr("validation_invalid_format", "Invalid value format.")
	case col.recs[id] != nil:
		errs["id"] = fieldErr("validation_pk_invalid", "The record primary key is invalid or already exists.")
	}
	for k, v := range col.validate(rec, id) {
		errs[k] = v
	}
	if len(errs) > 0 {
		return apiError(http.StatusBadRequest, "Failed to create record.", errs)
	}
	now := stamp()
	rec["id"], rec["collectionName"], rec["collectionId"], rec["created"], rec["updated"] = id, c, "pbc_"+c, now, now
	s.seq++
	col.recs[id], col.order[id] = rec, s.seq
	return reply{http.StatusOK, copyRecord(rec)}
}

// update merges body into a record. Called with s.mu held.
func (s *Server) update(c, id string, body map[string]any) reply {
	col := s.collections[c]
	old, ok := col.recs[id]
	if !ok {
		return apiError(http.StatusNotFound, "The requested resource wasn't found.", nil)
	}
	rec := copyRecord(old)
	for k, v := range body {
		if k == "id" || k == "created" || k == "updated" || k == "collectionId" || k == "collectionName" {
			continue
		}
		rec[k] = v
	}
	if errs := col.validate(rec, id); len(errs) > 0 {
		return apiError(http.StatusBadRequest, "Failed to update record.", errs)
	}
	rec["updated"] = stamp()
	col.recs[id] = rec
	return reply{http.StatusOK, copyRecord(rec)}
}

// list answers a filtered, paged list. Called with s.mu held.
func (s *Server) list(c string, q map[string][]string) reply {
	col := s.collections[c]
	var cond expr
	if f := first(q["filter"]); f != "" {
		var err error
		if cond, err = parseFilter(f); err != nil {
			return apiError(http.StatusBadRequest, "Something went wrong while processing your request. Invalid filter parameters.", nil)
		}
	}
	page, perPage := atoiOr(first(q["page"]), 1), atoiOr(first(q["perPage"]), 30)
	perPage = min(max(perPage, 1), 1000)
	page = max(page, 1)
	items := col.sorted(cond)
	total := len(items)
	start := min((page-1)*perPage, total)
	end := min(start+perPage, total)
	out := make([]any, 0, end-start)
	for _, r := range items[start:end] {
		out = append(out, r)
	}
	return reply{http.StatusOK, map[string]any{
		"page": page, "perPage": perPage, "totalItems": total, "totalPages": (total + perPage - 1) / perPage, "items": out,
	}}
}

// sorted returns copies of the records cond selects, oldest first.
func (c *collection) sorted(cond expr) []map[string]any {
	ids := make([]string, 0, len(c.recs))
	for id, r := range c.recs {
		if cond == nil || cond.eval(r) {
			ids = append(ids, id)
		}
	}
	sort.Slice(ids, func(i, j int) bool { return c.order[ids[i]] < c.order[ids[j]] })
	out := make([]map[string]any, len(ids))
	for i, id := range ids {
		out[i] = copyRecord(c.recs[id])
	}
	return out
}

// batch runs the requests in one transaction.
func (s *Server) batch(r *http.Request) reply {
	if s.opts.BatchMax <= 0 {
		return apiError(http.StatusForbidden, "Batch requests are not allowed.", nil)
	}
	body, bad := readBody(r)
	if bad != nil {
		return *bad
	}
	list, _ := body["requests"].([]any)
	if len(list) == 0 {
		return apiError(http.StatusBadRequest, "Invalid batch request data.", map[string]any{"requests": fieldErr("validation_required", "Cannot be blank.")})
	}
	if len(list) > s.opts.BatchMax {
		return apiError(http.StatusBadRequest, "Invalid batch request data.", map[string]any{"requests": fieldErr("validation_length_too_long", fmt.Sprintf("The length must be no more than %d.", s.opts.BatchMax))})
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	saved := s.snapshot()
	results := make([]any, 0, len(list))
	for i, item := range list {
		req, _ := item.(map[string]any)
		method, _ := req["method"].(string)
		rawURL, _ := req["url"].(string)
		b, _ := req["body"].(map[string]any)
		if b == nil {
			b = map[string]any{}
		}
		u, err := url.Parse(rawURL)
		var rep reply
		switch {
		case err != nil || !recordsPath.MatchString(u.Path):
			rep = apiError(http.StatusBadRequest, "unknown batch request action", nil)
		default:
			rep = s.route(strings.ToUpper(method), u, b)
		}
		if rep.status >= 400 {
			s.restore(saved)
			return apiError(http.StatusBadRequest, "Batch transaction failed.", map[string]any{"requests": map[string]any{
				strconv.Itoa(i): map[string]any{"code": "batch_request_failed", "message": "Batch request failed.", "response": rep.body},
			}})
		}
		results = append(results, map[string]any{"status": rep.status, "body": rep.body})
	}
	return reply{http.StatusOK, results}
}

type snapshot map[string]struct {
	recs  map[string]map[string]any
	order map[string]int64
}

func (s *Server) snapshot() snapshot {
	out := snapshot{}
	for name, c := range s.collections {
		recs := make(map[string]map[string]any, len(c.recs))
		order := make(map[string]int64, len(c.order))
		for k, v := range c.recs {
			recs[k] = v // records are replaced, never changed in place
		}
		for k, v := range c.order {
			order[k] = v
		}
		out[name] = struct {
			recs  map[string]map[string]any
			order map[string]int64
		}{recs, order}
	}
	return out
}

func (s *Server) restore(saved snapshot) {
	for name, c := range s.collections {
		c.recs, c.order = saved[name].recs, saved[name].order
	}
}

func copyRecord(r map[string]any) map[string]any {
	out := make(map[string]any, len(r))
	for k, v := range r {
		out[k] = v
	}
	return out
}

func stamp() string { return time.Now().UTC().Format("2006-01-02 15:04:05.000Z") }

func first(v []string) string {
	if len(v) == 0 {
		return ""
	}
	return v[0]
}

func atoiOr(s string, def int) int {
	n, err := strconv.Atoi(s)
	if err != nil {
		return def
	}
	return n
}

func text(v any) string {
	switch x := v.(type) {
	case string:
		return x
	case nil:
		return ""
	default:
		return fmt.Sprint(x)
	}
}
