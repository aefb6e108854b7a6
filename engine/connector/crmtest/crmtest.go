// Package crmtest is an in-process HTTP server that behaves like a CRM's REST
// API as vendors document it, for tests, benchmarks and the demo.
//
// Each object (contacts, companies, …) is a collection of records whose ids
// the server assigns: strings "<prefix>_<n>" ("c_1", "c_2" … for contacts;
// the prefix is the object's first letter unless Object.IDPrefix says
// otherwise), or JSON numbers 1, 2, … when Object.NumericIDs is set.
//
//	POST   /{object}             create: 201 {"id": …, …fields}
//	GET    /{object}             list:   200 {"results": [...]}
//	GET    /{object}/search?f=v  lookup: 200 {"results": [...]} (equality on every f)
//	GET    /{object}/{id}        read:   200 {"id": …, …} or 404
//	PATCH  /{object}/{id}        merge:  200 {"id": …, …} or 404
//	PUT    /{object}/{id}        replace: 200 or 404
//	DELETE /{object}/{id}        204 or 404
//	POST   /{object}/batch/create {"inputs": [...]}: 201 {"results": [...]}, all or nothing
//	POST   /{object}/batch/update {"inputs": [{"id", "fields"}]}: 200, all or nothing
//
// A batch that fails is answered as its first bad input alone would be,
// without saying which input it was (see batch.go). Options.RateWindow
// limits requests in a sliding window (429 with or without Retry-After)
// and counts what it refused, so that tests can fail on any excess.
// Errors are JSON: 401 {"message":"invalid token"} for a wrong bearer token,
// 409 {"message":"contact with email x already exists"} for a unique field,
// 422 {"errors":[{"field":"email","message":"is required"}]} for a missing
// required field or a value that does not match its pattern, 404
// {"message":…} for an unknown object or id. With Options.EchoAuthInErrors
// they also quote the request's Authorization header.
//
// Faults are injected from tests: FailNext, RateLimitNext, HangNext and
// SetLatency. Counters (Requests, RequestsFor, Count, Waited) and snapshots
// (Records, Record) let tests assert what the server really received and
// holds. The server is safe for concurrent use and keeps its locks short, so
// benchmarks can drive tens of thousands of requests a second through it.
package crmtest

import (
	"fmt"
	"io"
	"log"
	"net/http/httptest"
	"regexp"
	"sort"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// Options configure a Server.
type Options struct {
	// Token is the bearer token requests must carry; "" accepts any request.
	Token string
	// Objects lists the collections and their validation rules. When nil,
	// any object name is a collection without rules.
	Objects map[string]Object
	// Latency is added to every request (also settable with SetLatency).
	Latency time.Duration
	// EchoAuthInErrors makes every error answer (4xx, 5xx) echo the
	// request's Authorization header, as some APIs do in their debug or
	// error payloads: the body gains "request": {"method", "path",
	// "headers": {"Authorization": …}}, and its message quotes the header
	// too: {"message": "invalid token (Authorization: Bearer …)", …}. A 422
	// without a message gets one: "validation failed (Authorization: …)".
	EchoAuthInErrors bool
	// MaxBatch is the most inputs a batch request may carry; default
	// DefaultMaxBatch.
	MaxBatch int
	// RateWindow, when set, limits requests as many APIs do: at most
	// Requests in any span of Per (a sliding window over the requests it
	// accepted). A request over the limit is answered 429, with a
	// Retry-After until a slot frees when RetryAfter is set, without one
	// otherwise, and counted (Refused).
	RateWindow *RateWindow
}

// RateWindow is a limit of Requests requests in any span of Per.
type RateWindow struct {
	Requests   int
	Per        time.Duration
	RetryAfter bool
}

// Object holds the validation rules and id style of one collection.
type Object struct {
	// Required fields must be present, non-null and not "" (422).
	Required []string
	// Unique fields may not hold the same value in two records (409).
	Unique []string
	// Patterns maps a field to a regular expression its value must match
	// when present and non-null (422); the value must then be a string.
	Patterns map[string]string
	// IDPrefix prefixes string ids; default: the object's first letter and "_".
	IDPrefix string
	// NumericIDs makes ids JSON numbers (1, 2, …) instead of strings.
	NumericIDs bool
	// Searchable, when set, lists the only fields search filters on: like
	// many real APIs, it ignores every other query parameter and answers
	// with the records the rest of the filter selects (all of them, when
	// nothing else is asked).
	Searchable []string
	// BodyKey, when set, makes requests and responses carry the fields
	// wrapped as {"<BodyKey>": {…}}, with "id" beside it (HubSpot style
	// "properties").
	BodyKey string
}

// Server is a running CRM-like server. Its methods are safe for concurrent use.
type Server struct {
	// URL is the base URL, http://127.0.0.1:port, without a trailing slash.
	URL string

	httpServer *httptest.Server
	anyObject  bool
	echoAuth   bool
	maxBatch   int
	window     *slidingWindow

	token    atomic.Pointer[string]
	latency  atomic.Int64 // nanoseconds
	failN    atomic.Int64
	failCode atomic.Int64
	limitN   atomic.Int64
	limitFor atomic.Int64 // nanoseconds
	hangN    atomic.Int64

	waits  atomic.Int64 // requests that waited for the latency
	waited atomic.Int64 // nanoseconds they waited in all

	closing   chan struct{}
	closeOnce sync.Once

	clockOnce sync.Once
	clock     *clock // wakes requests after the latency; nil: Go timers

	mu          sync.Mutex // guards collections (creation only)
	collections map[string]*collection

	statsMu  sync.Mutex
	total    int
	requests map[route]int
}

type route struct{ method, object string }

// New starts a server for the test and closes it when the test ends. It
// fails the test if the options are invalid.
func New(t testing.TB, opts Options) *Server {
	t.Helper()
	s, err := NewServer(opts)
	if err != nil {
		t.Fatalf("crmtest: %v", err)
	}
	t.Cleanup(s.Close)
	return s
}

// NewServer starts a server, for benchmarks and the demo. Call Close when done.
func NewServer(opts Options) (*Server, error) {
	s := &Server{
		anyObject:   opts.Objects == nil,
		echoAuth:    opts.EchoAuthInErrors,
		closing:     make(chan struct{}),
		collections: make(map[string]*collection),
		requests:    make(map[route]int),
		maxBatch:    opts.MaxBatch,
	}
	if s.maxBatch <= 0 {
		s.maxBatch = DefaultMaxBatch
	}
	if w := opts.RateWindow; w != nil {
		if w.Requests <= 0 || w.Per <= 0 {
			return nil, fmt.Errorf("rate window %d per %s: both must be positive", w.Requests, w.Per)
		}
		s.window = &slidingWindow{n: w.Requests, per: w.Per, retryAfter: w.RetryAfter}
	}
	for name, o := range opts.Objects {
		c, err := newCollection(name, o)
		if err != nil {
			return nil, err
		}
		s.collections[name] = c
	}
	token := opts.Token
	s.token.Store(&token)
	s.latency.Store(int64(opts.Latency))
	s.httpServer = httptest.NewUnstartedServer(s)
	s.httpServer.Config.ErrorLog = log.New(io.Discard, "", 0)
	s.httpServer.Start()
	s.URL = s.httpServer.URL
	return s, nil
}

// Close stops the server: requests that hang or wait for latency return at
// once. Close is idempotent.
func (s *Server) Close() {
	s.closeOnce.Do(func() {
		close(s.closing)
		s.httpServer.CloseClientConnections()
		s.httpServer.Close()
		s.clockOnce.Do(func() {}) // no clock after this
		if s.clock != nil {
			s.clock.close()
		}
	})
}

// SetToken changes the bearer token requests must carry ("" accepts any).
func (s *Server) SetToken(token string) { s.token.Store(&token) }

// SetLatency sets the delay added to every request.
func (s *Server) SetLatency(d time.Duration) { s.latency.Store(int64(d)) }

// FailNext answers the next n requests (after the auth check) with status and
// {"message":"injected failure"}, without touching any record.
func (s *Server) FailNext(n int, status int) {
	s.failCode.Store(int64(status))
	s.failN.Store(int64(n))
}

// RateLimitNext answers the next n requests (after the auth check) with 429
// and Retry-After: retryAfter in seconds. A whole number of seconds is written
// as an integer, as the HTTP standard has it; a fraction ("0.05") or 0 keeps
// tests fast: Ferry's http target reads fractional seconds too.
func (s *Server) RateLimitNext(n int, retryAfter time.Duration) {
	s.limitFor.Store(int64(retryAfter))
	s.limitN.Store(int64(n))
}

// HangNext makes the next n requests (after the auth check) apply their
// write and then never answer: the handler waits until the client gives up
// (its timeout) and drops the connection. This is how an ambiguous outcome
// looks from the client.
func (s *Server) HangNext(n int) { s.hangN.Store(int64(n)) }

// Requests returns how many requests the server has received.
func (s *Server) Requests() int {
	s.statsMu.Lock()
	defer s.statsMu.Unlock()
	return s.total
}

// RequestsFor returns how many requests with method went to object (the
// first path segment), whatever their outcome.
func (s *Server) RequestsFor(method, object string) int {
	s.statsMu.Lock()
	defer s.statsMu.Unlock()
	return s.requests[route{method, object}]
}

// ResetCounters sets the request counters to zero.
func (s *Server) ResetCounters() {
	s.statsMu.Lock()
	defer s.statsMu.Unlock()
	s.total = 0
	s.requests = make(map[route]int)
}

// Refused returns how many requests the rate window refused (429), and the
// most requests it saw in any span of its Per, refused ones included.
func (s *Server) Refused() (refused, peak int) {
	if s.window == nil {
		return 0, 0
	}
	return s.window.counts()
}

// Waited returns how many requests waited for the latency and how long they
// waited in all: the latency the server really added, which is a little
// more than asked when its timers fire late (a busy machine).
func (s *Server) Waited() (requests int, total time.Duration) {
	return int(s.waits.Load()), time.Duration(s.waited.Load())
}

// Count returns how many records object holds.
func (s *Server) Count(object string) int {
	c := s.lookupCollection(object)
	if c == nil {
		return 0
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.records)
}

// Records returns a copy of object's records in creation order, each with its
// id under "id".
func (s *Server) Records(object string) []map[string]any {
	c := s.lookupCollection(object)
	if c == nil {
		return nil
	}
	c.mu.Lock()
	recs := make([]*record, 0, len(c.records))
	for _, r := range c.records {
		recs = append(recs, r)
	}
	out := make([]map[string]any, 0, len(recs))
	sort.Slice(recs, func(i, j int) bool { return recs[i].seq < recs[j].seq })
	for _, r := range recs {
		out = append(out, r.flat())
	}
	c.mu.Unlock()
	return out
}

// Record returns a copy of one record, with its id under "id".
func (s *Server) Record(object, id string) (map[string]any, bool) {
	c := s.lookupCollection(object)
	if c == nil {
		return nil, false
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	r, ok := c.records[id]
	if !ok {
		return nil, false
	}
	return r.flat(), true
}

func (s *Server) lookupCollection(object string) *collection {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.collections[object]
}

// collectionFor returns the collection of object, creating it when any
// object name is allowed; nil when the object is unknown.
func (s *Server) collectionFor(object string) *collection {
	s.mu.Lock()
	defer s.mu.Unlock()
	if c, ok := s.collections[object]; ok {
		return c
	}
	if !s.anyObject || object == "" {
		return nil
	}
	c, _ := newCollection(object, Object{}) // no patterns: cannot fail
	s.collections[object] = c
	return c
}

func (s *Server) countRequest(method, object string) {
	s.statsMu.Lock()
	s.total++
	s.requests[route{method, object}]++
	s.statsMu.Unlock()
}

// take consumes one unit of a fault counter, reporting whether there was one.
func take(n *atomic.Int64) bool {
	for {
		v := n.Load()
		if v <= 0 {
			return false
		}
		if n.CompareAndSwap(v, v-1) {
			return true
		}
	}
}

func formatRetryAfter(d time.Duration) string {
	if d <= 0 {
		return "0"
	}
	if d%time.Second == 0 {
		return strconv.FormatInt(int64(d/time.Second), 10)
	}
	return strconv.FormatFloat(d.Seconds(), 'f', -1, 64)
}

func newCollection(name string, o Object) (*collection, error) {
	c := &collection{
		name:     name,
		rules:    o,
		patterns: make(map[string]*regexp.Regexp, len(o.Patterns)),
		records:  make(map[string]*record),
		unique:   make(map[string]map[string]string, len(o.Unique)),
	}
	for field, expr := range o.Patterns {
		re, err := regexp.Compile(expr)
		if err != nil {
			return nil, fmt.Errorf("object %s: pattern of %s: %w", name, field, err)
		}
		c.patterns[field] = re
	}
	for _, field := range o.Unique {
		c.unique[field] = make(map[string]string)
	}
	if c.rules.IDPrefix == "" && name != "" {
		c.rules.IDPrefix = name[:1] + "_"
	}
	return c, nil
}

// Put creates a record as if someone had made it in the CRM by hand, and
// returns its id. It fails the test on a validation error.
func (s *Server) Put(t testing.TB, object string, fields map[string]any) string {
	t.Helper()
	c := s.collectionFor(object)
	if c == nil {
		t.Fatalf("crmtest: unknown object %q", object)
	}
	rep := c.create(fields)
	body, _ := rep.body.(map[string]any)
	if rep.status != 201 || body == nil {
		t.Fatalf("crmtest: putting a %s: HTTP %d %v", object, rep.status, rep.body)
	}
	return valueKey(body["id"])
}

// SetSearchable changes which fields the object's search filters on (nil:
// every field), as Object.Searchable.
func (s *Server) SetSearchable(object string, fields []string) {
	c := s.lookupCollection(object)
	if c == nil {
		return
	}
	c.mu.Lock()
	c.rules.Searchable = fields
	c.mu.Unlock()
}
