// Package hubtest is an in-process HTTP server that behaves like HubSpot's
// CRM v3 API as it is documented, for tests of the http connector:
//
//	POST  /oauth/v1/token                          form: grant_type=refresh_token|client_credentials
//	POST  /crm/v3/objects/{type}                   {"properties"} → 201 record
//	GET   /crm/v3/objects/{type}/{id}              → 200 record, 404
//	PATCH /crm/v3/objects/{type}/{id}              {"properties"} → 200 record, 404
//	POST  /crm/v3/objects/{type}/search            {"filterGroups","properties","limit"} → 200 {"total","results"}
//	POST  /crm/v3/objects/{type}/batch/create      {"inputs":[{"properties","objectWriteTraceId"}]}
//	POST  /crm/v3/objects/{type}/batch/update      {"inputs":[{"id","properties"}]}
//
// What makes it HubSpot and not a stub:
//
//   - Records are {"id", "properties", "createdAt", "updatedAt",
//     "archived"}; property values come back as strings, with
//     hs_object_id, createdate and lastmodifieddate added.
//   - Errors are {"status": "error", "message", "correlationId",
//     "category"}; invalid properties are 400 VALIDATION_ERROR with an
//     "errors" list naming each property in context.propertyName; a
//     duplicate e-mail is 409 CONFLICT "Contact already exists. Existing
//     ID: …".
//   - Batches are partial: the good inputs are written; when some fail the
//     answer is 207 Multi-Status with "errors" whose context names the
//     input's objectWriteTraceId (creates) or id (updates), and results in
//     no particular order (they carry objectWriteTraceId). More than
//     MaxBatch inputs is a 400.
//   - Search filters by filterGroups (OR of ANDs) with EQ (case-insensitive),
//     NEQ, CONTAINS_TOKEN, IN, HAS_PROPERTY; results carry only the
//     properties asked for (else the object's defaults).
//   - Tokens: a private app token, or OAuth2 access tokens from the token
//     endpoint (refresh token or client credentials grant) that expire after
//     TokenTTL: an expired one is 401 EXPIRED_AUTHENTICATION.
//   - The rate limit (RateWindow requests per Per, in fixed windows) answers
//     429 RATE_LIMIT "You have reached your secondly limit." without
//     Retry-After.
package hubtest

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"log"
	"math/big"
	"net/http"
	"net/http/httptest"
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
	// Token is a private app token requests may carry; "" for none.
	Token string
	// OAuth, when set, runs the token endpoint.
	OAuth *OAuth
	// Objects are the object types and their rules.
	Objects map[string]Object
	// MaxBatch bounds a batch's inputs; default 100.
	MaxBatch int
	// RateWindow, when set, is the rate limit.
	RateWindow *RateWindow
	// Latency is added to every request.
	Latency time.Duration
}

// OAuth is an app's credentials at the token endpoint.
type OAuth struct {
	ClientID, ClientSecret string
	// RefreshToken is the one refresh token the app holds ("" for none).
	RefreshToken string
	// ClientCredentials allows the client credentials grant.
	ClientCredentials bool
	// TokenTTL is an access token's life; default 30m (expires_in is in
	// whole seconds).
	TokenTTL time.Duration
}

// RateWindow is Requests per Per, in fixed windows from the server's start.
type RateWindow struct {
	Requests int
	Per      time.Duration
}

// Object holds an object type's rules.
type Object struct {
	Unique   []string // e-mail for contacts
	Required []string
	Email    []string // properties that must hold an e-mail address
	// Defaults are the properties search returns when none are asked for.
	Defaults []string
}

// Server is a running HubSpot-like server.
type Server struct {
	URL string

	opts    Options
	http    *httptest.Server
	closing chan struct{}
	once    sync.Once
	start   time.Time

	requests  atomic.Int64
	limited   atomic.Int64
	tokensOut atomic.Int64

	tokMu  sync.Mutex
	tokens map[string]time.Time // access token → expiry

	winMu  sync.Mutex
	winIdx int64
	winN   int

	mu      sync.Mutex
	objects map[string]*objectStore
	seq     int64
}

type objectStore struct {
	rules Object
	recs  map[string]*record
}

type record struct {
	id       string
	props    map[string]string
	created  time.Time
	updated  time.Time
	sequence int64
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
	if opts.MaxBatch == 0 {
		opts.MaxBatch = 100
	}
	if opts.OAuth != nil && opts.OAuth.TokenTTL == 0 {
		opts.OAuth.TokenTTL = 30 * time.Minute
	}
	s := &Server{opts: opts, closing: make(chan struct{}), start: time.Now(), tokens: map[string]time.Time{}, objects: map[string]*objectStore{}}
	for name, o := range opts.Objects {
		s.objects[name] = &objectStore{rules: o, recs: map[string]*record{}}
	}
	s.http = httptest.NewUnstartedServer(s)
	s.http.Config.ErrorLog = log.New(io.Discard, "", 0)
	s.http.Start()
	s.URL = s.http.URL
	return s
}

// Close stops the server.
func (s *Server) Close() {
	s.once.Do(func() {
		close(s.closing)
		s.http.CloseClientConnections()
		s.http.Close()
	})
}

// Requests is how many requests arrived; Limited how many were refused by
// the rate limit; TokensIssued how many access tokens the token endpoint
// gave out.
func (s *Server) Requests() int     { return int(s.requests.Load()) }
func (s *Server) Limited() int      { return int(s.limited.Load()) }
func (s *Server) TokensIssued() int { return int(s.tokensOut.Load()) }

// RevokeTokens forgets every access token issued so far: requests with
// one are answered 401 until a new one is got.
func (s *Server) RevokeTokens() {
	s.tokMu.Lock()
	s.tokens = map[string]time.Time{}
	s.tokMu.Unlock()
}

// Count is how many records of a type exist.
func (s *Server) Count(object string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	if o := s.objects[object]; o != nil {
		return len(o.recs)
	}
	return 0
}

// Properties returns a record's properties.
func (s *Server) Properties(object, id string) (map[string]string, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	o := s.objects[object]
	if o == nil || o.recs[id] == nil {
		return nil, false
	}
	out := map[string]string{}
	for k, v := range o.recs[id].props {
		out[k] = v
	}
	return out, true
}

// Put creates a record as if made in HubSpot's UI and returns its id.
func (s *Server) Put(t testing.TB, object string, props map[string]any) string {
	t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	r, rep := s.create(object, props)
	if r == nil {
		t.Fatalf("hubtest: putting a %s: %v", object, rep.body)
	}
	return r.id
}

type reply struct {
	status int
	body   any
}

func correlationID() string {
	b := make([]byte, 16)
	_, _ = rand.Read(b)
	h := hex.EncodeToString(b)
	return h[:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:]
}

func hubError(status int, category, message string, extra map[string]any) reply {
	body := map[string]any{"status": "error", "message": message, "correlationId": correlationID(), "category": category}
	for k, v := range extra {
		body[k] = v
	}
	return reply{status, body}
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
		write(w, reply{http.StatusTooManyRequests, map[string]any{
			"status": "error", "message": "You have reached your secondly limit.", "errorType": "RATE_LIMIT",
			"correlationId": correlationID(), "policyName": "SECONDLY",
		}})
		return
	}
	if r.URL.Path == "/oauth/v1/token" && r.Method == http.MethodPost {
		write(w, s.token(r))
		return
	}
	if rep, ok := s.authorize(r); !ok {
		write(w, rep)
		return
	}
	write(w, s.route(r))
}

// allow counts the request in its fixed window.
func (s *Server) allow() bool {
	rw := s.opts.RateWindow
	if rw == nil {
		return true
	}
	s.winMu.Lock()
	defer s.winMu.Unlock()
	idx := int64(time.Since(s.start) / rw.Per)
	if idx != s.winIdx {
		s.winIdx, s.winN = idx, 0
	}
	if s.winN >= rw.Requests {
		return false
	}
	s.winN++
	return true
}

func write(w http.ResponseWriter, rep reply) {
	b, _ := json.Marshal(rep.body)
	w.Header().Set("Content-Type", "application/json;charset=utf-8")
	w.WriteHeader(rep.status)
	_, _ = w.Write(b)
}

// token is the OAuth2 token endpoint (form-encoded, client credentials in
// the form or in basic auth).
func (s *Server) token(r *http.Request) reply {
	o := s.opts.OAuth
	if o == nil {
		return hubError(http.StatusNotFound, "OBJECT_NOT_FOUND", "Not found", nil)
	}
	if err := r.ParseForm(); err != nil {
		return reply{http.StatusBadRequest, map[string]any{"status": "BAD_REQUEST", "message": "invalid form"}}
	}
	id, secret, basic := r.BasicAuth()
	if !basic {
		id, secret = r.PostForm.Get("client_id"), r.PostForm.Get("client_secret")
	}
	if id != o.ClientID {
		return reply{http.StatusBadRequest, map[string]any{"status": "BAD_CLIENT_ID", "message": "missing or unknown client id", "correlationId": correlationID()}}
	}
	if secret != o.ClientSecret {
		return reply{http.StatusBadRequest, map[string]any{"status": "BAD_CLIENT_SECRET", "message": "missing or invalid client secret", "correlationId": correlationID()}}
	}
	switch r.PostForm.Get("grant_type") {
	case "refresh_token":
		if o.RefreshToken == "" || r.PostForm.Get("refresh_token") != o.RefreshToken {
			return reply{http.StatusBadRequest, map[string]any{"status": "BAD_REFRESH_TOKEN", "message": "missing or unknown refresh token", "correlationId": correlationID()}}
		}
	case "client_credentials":
		if !o.ClientCredentials {
			return reply{http.StatusBadRequest, map[string]any{"status": "BAD_GRANT_TYPE", "message": "client credentials are not allowed for this app", "correlationId": correlationID()}}
		}
	default:
		return reply{http.StatusBadRequest, map[string]any{"status": "BAD_GRANT_TYPE", "message": "unknown grant_type", "correlationId": correlationID()}}
	}
	b := make([]byte, 24)
	_, _ = rand.Read(b)
	access := "CO" + hex.EncodeToString(b)
	s.tokMu.Lock()
	s.tokens[access] = time.Now().Add(o.TokenTTL)
	s.tokMu.Unlock()
	s.tokensOut.Add(1)
	body := map[string]any{"token_type": "bearer", "access_token": access, "expires_in": int64(o.TokenTTL / time.Second)}
	if o.RefreshToken != "" {
		body["refresh_token"] = o.RefreshToken
	}
	return reply{http.StatusOK, body}
}

func (s *Server) authorize(r *http.Request) (reply, bool) {
	tok, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	if !ok || tok == "" {
		return hubError(http.StatusUnauthorized, "INVALID_AUTHENTICATION", "Authentication credentials not found. This API supports OAuth 2.0 authentication and you can find more details at https://developers.hubspot.com/docs/methods/auth/oauth-overview", nil), false
	}
	if s.opts.Token != "" && tok == s.opts.Token {
		return reply{}, true
	}
	s.tokMu.Lock()
	exp, known := s.tokens[tok]
	s.tokMu.Unlock()
	if !known {
		return hubError(http.StatusUnauthorized, "INVALID_AUTHENTICATION", "Authentication credentials not found.", nil), false
	}
	if ago := time.Since(exp); ago >= 0 {
		return hubError(http.StatusUnauthorized, "EXPIRED_AUTHENTICATION",
			fmt.Sprintf("The OAuth token used to make this call expired %d second(s) ago.", int(ago/time.Second)), nil), false
	}
	return reply{}, true
}

var objectPath = regexp.MustCompile(`^/crm/v3/objects/([^/]+)(?:/([^/]+))?(?:/([^/]+))?$`)

func (s *Server) route(r *http.Request) reply {
	m := objectPath.FindStringSubmatch(r.URL.Path)
	if m == nil {
		return hubError(http.StatusNotFound, "OBJECT_NOT_FOUND", "Not found", nil)
	}
	object, a, b := m[1], m[2], m[3]
	if s.objects[object] == nil {
		return hubError(http.StatusBadRequest, "VALIDATION_ERROR", fmt.Sprintf("Unable to infer object type from: %s", object), nil)
	}
	var body map[string]any
	if r.Method == http.MethodPost || r.Method == http.MethodPatch {
		dec := json.NewDecoder(r.Body)
		dec.UseNumber()
		if err := dec.Decode(&body); err != nil {
			return hubError(http.StatusBadRequest, "VALIDATION_ERROR", "Invalid input JSON on line 1", nil)
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	switch {
	case a == "" && r.Method == http.MethodPost:
		props, _ := body["properties"].(map[string]any)
		rec, rep := s.create(object, props)
		if rec == nil {
			return rep
		}
		return reply{http.StatusCreated, s.view(rec, nil)}
	case a == "search" && b == "" && r.Method == http.MethodPost:
		return s.search(object, body)
	case a == "batch" && b == "create" && r.Method == http.MethodPost:
		return s.batchCreate(object, body)
	case a == "batch" && b == "update" && r.Method == http.MethodPost:
		return s.batchUpdate(object, body)
	case a != "" && b == "" && r.Method == http.MethodGet:
		rec := s.objects[object].recs[a]
		if rec == nil {
			return hubError(http.StatusNotFound, "OBJECT_NOT_FOUND", "resource not found", nil)
		}
		return reply{http.StatusOK, s.view(rec, nil)}
	case a != "" && b == "" && r.Method == http.MethodPatch:
		props, _ := body["properties"].(map[string]any)
		rec, rep := s.update(object, a, props)
		if rec == nil {
			return rep
		}
		return reply{http.StatusOK, s.view(rec, nil)}
	}
	return hubError(http.StatusMethodNotAllowed, "VALIDATION_ERROR", "HTTP method not allowed", nil)
}

var emailRE = regexp.MustCompile(`^[^@\s]+@[^@\s]+\.[^@\s]+$`)

// propString is how HubSpot stores a property value: as a string.
func propString(v any) string {
	switch x := v.(type) {
	case nil:
		return ""
	case string:
		return x
	case json.Number:
		return x.String()
	case bool:
		return strconv.FormatBool(x)
	default:
		b, _ := json.Marshal(x)
		return string(b)
	}
}

// validate checks properties (complete: the record as it will be); self is
// the record's id ("" for a new one). Called with s.mu held.
func (s *Server) validate(object string, props map[string]string, complete bool, self string) *reply {
	o := s.objects[object]
	var errs []any
	if complete {
		for _, f := range o.rules.Required {
			if props[f] == "" {
				errs = append(errs, map[string]any{"message": fmt.Sprintf("Property %q is required", f), "code": "REQUIRED_PROPERTY", "context": map[string]any{"propertyName": []any{f}}})
			}
		}
	}
	for _, f := range o.rules.Email {
		if v, ok := props[f]; ok && v != "" && !emailRE.MatchString(v) {
			errs = append(errs, map[string]any{"message": fmt.Sprintf("Email address %s is invalid", v), "code": "INVALID_EMAIL", "context": map[string]any{"propertyName": []any{f}}})
		}
	}
	if len(errs) > 0 {
		rep := hubError(http.StatusBadRequest, "VALIDATION_ERROR", "Property values were not valid", map[string]any{"errors": errs})
		return &rep
	}
	for _, f := range o.rules.Unique {
		v := props[f]
		if v == "" {
			continue
		}
		for id, r := range o.recs {
			if id != self && strings.EqualFold(r.props[f], v) {
				rep := hubError(http.StatusConflict, "CONFLICT", fmt.Sprintf("%s already exists. Existing ID: %s", capitalSingular(object), id), nil)
				return &rep
			}
		}
	}
	return nil
}

func capitalSingular(object string) string {
	s := strings.TrimSuffix(object, "s")
	if s == "" {
		return s
	}
	return strings.ToUpper(s[:1]) + s[1:]
}

// create makes a record. Called with s.mu held.
func (s *Server) create(object string, in map[string]any) (*record, reply) {
	props := map[string]string{}
	for k, v := range in {
		props[k] = propString(v)
	}
	if rep := s.validate(object, props, true, ""); rep != nil {
		return nil, *rep
	}
	s.seq++
	id := strconv.FormatInt(1000+s.seq, 10)
	now := time.Now().UTC()
	rec := &record{id: id, props: props, created: now, updated: now, sequence: s.seq}
	s.objects[object].recs[id] = rec
	return rec, reply{}
}

// update merges properties into a record. Called with s.mu held.
func (s *Server) update(object, id string, in map[string]any) (*record, reply) {
	rec := s.objects[object].recs[id]
	if rec == nil {
		return nil, hubError(http.StatusNotFound, "OBJECT_NOT_FOUND", "resource not found", nil)
	}
	props := map[string]string{}
	for k, v := range rec.props {
		props[k] = v
	}
	for k, v := range in {
		props[k] = propString(v)
	}
	if rep := s.validate(object, props, true, id); rep != nil {
		return nil, *rep
	}
	rec.props, rec.updated = props, time.Now().UTC()
	return rec, reply{}
}

// view is a record as the API shows it, with only the properties asked
// for (nil: all).
func (s *Server) view(rec *record, only []string) map[string]any {
	props := map[string]any{}
	if only == nil {
		for k, v := range rec.props {
			props[k] = v
		}
	} else {
		for _, k := range only {
			if v, ok := rec.props[k]; ok {
				props[k] = v
			} else {
				props[k] = nil
			}
		}
	}
	props["hs_object_id"] = rec.id
	props["createdate"] = rec.created.Format(time.RFC3339Nano)
	props["lastmodifieddate"] = rec.updated.Format(time.RFC3339Nano)
	return map[string]any{
		"id": rec.id, "properties": props, "archived": false,
		"createdAt": rec.created.Format(time.RFC3339Nano), "updatedAt": rec.updated.Format(time.RFC3339Nano),
	}
}

// search answers filterGroups. Called with s.mu held.
func (s *Server) search(object string, body map[string]any) reply {
	o := s.objects[object]
	groups, _ := body["filterGroups"].([]any)
	var props []string
	if list, ok := body["properties"].([]any); ok {
		for _, p := range list {
			if ps, ok := p.(string); ok {
				props = append(props, ps)
			}
		}
	} else {
		props = o.rules.Defaults
	}
	limit := 10
	if n, ok := body["limit"].(json.Number); ok {
		if v, err := n.Int64(); err == nil {
			limit = int(v)
		}
	}
	if limit > 200 {
		return hubError(http.StatusBadRequest, "VALIDATION_ERROR", "limit must be at most 200", nil)
	}
	var found []*record
	for _, r := range o.recs {
		if len(groups) == 0 || anyGroup(groups, r) {
			found = append(found, r)
		}
	}
	sort.Slice(found, func(i, j int) bool { return found[i].sequence < found[j].sequence })
	total := len(found)
	if len(found) > limit {
		found = found[:limit]
	}
	results := make([]any, len(found))
	for i, r := range found {
		results[i] = s.view(r, props)
	}
	return reply{http.StatusOK, map[string]any{"total": total, "results": results}}
}

func anyGroup(groups []any, r *record) bool {
	for _, g := range groups {
		gm, _ := g.(map[string]any)
		filters, _ := gm["filters"].([]any)
		all := true
		for _, f := range filters {
			fm, _ := f.(map[string]any)
			if !matches(fm, r) {
				all = false
				break
			}
		}
		if all {
			return true
		}
	}
	return false
}

func matches(f map[string]any, r *record) bool {
	name, _ := f["propertyName"].(string)
	op, _ := f["operator"].(string)
	got, has := r.props[name]
	if name == "hs_object_id" {
		got, has = r.id, true
	}
	want := propString(f["value"])
	switch op {
	case "EQ":
		return has && strings.EqualFold(got, want)
	case "NEQ":
		return !has || !strings.EqualFold(got, want)
	case "CONTAINS_TOKEN":
		return has && strings.Contains(strings.ToLower(got), strings.ToLower(strings.Trim(want, "*")))
	case "HAS_PROPERTY":
		return has && got != ""
	case "NOT_HAS_PROPERTY":
		return !has || got == ""
	case "IN":
		values, _ := f["values"].([]any)
		for _, v := range values {
			if has && strings.EqualFold(got, propString(v)) {
				return true
			}
		}
	}
	return false
}

func (s *Server) inputs(body map[string]any) ([]map[string]any, *reply) {
	list, ok := body["inputs"].([]any)
	if !ok {
		rep := hubError(http.StatusBadRequest, "VALIDATION_ERROR", "Invalid input JSON: inputs is required", nil)
		return nil, &rep
	}
	if len(list) > s.opts.MaxBatch {
		rep := hubError(http.StatusBadRequest, "VALIDATION_ERROR", fmt.Sprintf("Batch input of %d exceeds the limit of %d", len(list), s.opts.MaxBatch), nil)
		return nil, &rep
	}
	out := make([]map[string]any, len(list))
	for i, item := range list {
		m, ok := item.(map[string]any)
		if !ok {
			rep := hubError(http.StatusBadRequest, "VALIDATION_ERROR", fmt.Sprintf("inputs[%d] is not an object", i), nil)
			return nil, &rep
		}
		out[i] = m
	}
	return out, nil
}

// batchCreate writes the good inputs and lists the failures. Called with
// s.mu held.
func (s *Server) batchCreate(object string, body map[string]any) reply {
	inputs, bad := s.inputs(body)
	if bad != nil {
		return *bad
	}
	var results, errs []any
	for _, in := range inputs {
		trace := propString(in["objectWriteTraceId"])
		props, _ := in["properties"].(map[string]any)
		rec, rep := s.create(object, props)
		if rec == nil {
			errs = append(errs, batchError(rep, map[string]any{"objectWriteTraceId": []any{trace}}))
			continue
		}
		v := s.view(rec, nil)
		if trace != "" {
			v["objectWriteTraceId"] = trace
		}
		results = append(results, v)
	}
	return batchReply(http.StatusCreated, results, errs)
}

// batchUpdate updates the good inputs and lists the failures. Called with
// s.mu held.
func (s *Server) batchUpdate(object string, body map[string]any) reply {
	inputs, bad := s.inputs(body)
	if bad != nil {
		return *bad
	}
	var results, errs []any
	for _, in := range inputs {
		id := propString(in["id"])
		props, _ := in["properties"].(map[string]any)
		if s.objects[object].recs[id] == nil {
			errs = append(errs, map[string]any{
				"status": "error", "category": "OBJECT_NOT_FOUND",
				"message": fmt.Sprintf("Could not get some %s objects, they may be deleted or not exist. Check that ids are valid.", strings.ToUpper(strings.TrimSuffix(object, "s"))),
				"context": map[string]any{"ids": []any{id}},
			})
			continue
		}
		rec, rep := s.update(object, id, props)
		if rec == nil {
			errs = append(errs, batchError(rep, map[string]any{"ids": []any{id}}))
			continue
		}
		results = append(results, s.view(rec, nil))
	}
	return batchReply(http.StatusOK, results, errs)
}

func batchError(rep reply, context map[string]any) map[string]any {
	body, _ := rep.body.(map[string]any)
	e := map[string]any{"status": "error", "category": body["category"], "message": body["message"], "context": context}
	if inner, ok := body["errors"]; ok {
		e["errors"] = inner
	}
	return e
}

// batchReply shuffles the results, as HubSpot does not keep input order,
// and answers 207 when some inputs failed.
func batchReply(ok int, results, errs []any) reply {
	for i := len(results) - 1; i > 0; i-- {
		n, _ := rand.Int(rand.Reader, big.NewInt(int64(i+1)))
		j := int(n.Int64())
		results[i], results[j] = results[j], results[i]
	}
	if results == nil {
		results = []any{}
	}
	now := time.Now().UTC().Format(time.RFC3339Nano)
	body := map[string]any{"status": "COMPLETE", "results": results, "startedAt": now, "completedAt": now}
	if len(errs) == 0 {
		return reply{ok, body}
	}
	body["numErrors"] = len(errs)
	body["errors"] = errs
	return reply{http.StatusMultiStatus, body}
}
