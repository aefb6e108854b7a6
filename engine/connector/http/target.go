package httptarget

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/time/rate"

	"github.com/ferry-sync/ferry/engine/connector"
	"github.com/ferry-sync/ferry/internal/jsonx"
)

// Target writes to a REST API described by a Config. It is safe for
// concurrent use; its concurrency, rate limit and 429 pauses are shared by
// every call on it.
type Target struct {
	s         settings
	client    *http.Client
	transport *http.Transport
	limiter   *rate.Limiter // nil: no rate limit

	// slots bounds the requests in flight (and the changes being worked on)
	// across every call.
	slots chan struct{}
	// probe lets one request at a time through until the credentials are
	// known to work, so that bad credentials cost one request, not one per slot.
	probe    chan struct{}
	verified atomic.Bool

	// A 429 pauses the whole connection until pausedUntil, in nanoseconds
	// since epoch (0: never paused). Every request reads it: no lock.
	epoch       time.Time
	pausedUntil atomic.Int64

	// header and bodyHeader are the headers every request carries (but the
	// credentials), without and with a body: cloned per request.
	header, bodyHeader http.Header

	// redactor hides the credentials in every error the target returns:
	// APIs echo the Authorization header in their error bodies, and error
	// texts end up on link rows, in runs and on the terminal.
	redactor *connector.Redactor
}

// New checks cfg, reads its secrets from the environment and returns a
// Target. It makes no request: the first Write finds out whether the
// credentials work.
func New(_ context.Context, cfg Config) (*Target, error) {
	s, err := resolve(cfg)
	if err != nil {
		return nil, &connector.SettingsError{Err: fmt.Errorf("http connection: %w", err)}
	}
	transport := &http.Transport{
		Proxy:                 http.ProxyFromEnvironment,
		DialContext:           (&net.Dialer{Timeout: 30 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		ForceAttemptHTTP2:     true,
		MaxIdleConns:          s.concurrency,
		MaxIdleConnsPerHost:   s.concurrency,
		MaxConnsPerHost:       s.concurrency,
		IdleConnTimeout:       90 * time.Second,
		TLSHandshakeTimeout:   10 * time.Second,
		ExpectContinueTimeout: time.Second,
	}
	t := &Target{
		s:         s,
		transport: transport,
		client: &http.Client{
			Transport: transport,
			// A redirect on a write is an error to report, not to follow.
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		},
		slots:    make(chan struct{}, s.concurrency),
		probe:    make(chan struct{}, 1),
		epoch:    time.Now(),
		redactor: connector.NewRedactor(),
	}
	for _, secret := range s.secrets {
		t.redactor.Add(secret.Reveal())
	}
	t.header = http.Header{"Accept": {"application/json"}, "User-Agent": {"ferry"}}
	t.bodyHeader = t.header.Clone()
	t.bodyHeader.Set("Content-Type", "application/json")
	for k, v := range s.headers {
		t.header.Set(k, v)
		t.bodyHeader.Set(k, v)
	}
	if s.rateLimit > 0 {
		t.limiter = rate.NewLimiter(rate.Limit(s.rateLimit), 1)
	}
	return t, nil
}

// Close releases idle connections.
func (t *Target) Close() error {
	t.transport.CloseIdleConnections()
	return nil
}

// Secrets returns the credentials the target sends: the auth header's value
// and the values it is made of (the token; the username, the password and
// "user:pass").
func (t *Target) Secrets() []string {
	out := make([]string, len(t.s.secrets))
	for i, secret := range t.s.secrets {
		out[i] = secret.Reveal()
	}
	return out
}

// call is the shared state of one Write or Find call.
type call struct {
	connector.Halt
}

// Write sends each change as one request, up to the connection's
// concurrency at once, and reports the results in input order. No error it
// returns holds a secret of the connection.
func (t *Target) Write(ctx context.Context, objectName string, changes []connector.Change) ([]connector.Result, error) {
	// The results' errors are redacted where they are made (newError); the
	// call's own error may come from elsewhere (the engine's gate).
	results, err := t.write(ctx, objectName, changes)
	return results, t.redactor.RedactError(err)
}

func (t *Target) write(ctx context.Context, objectName string, changes []connector.Change) ([]connector.Result, error) {
	results := make([]connector.Result, len(changes))
	obj, ok := t.s.objects[objectName]
	if !ok {
		return results, fmt.Errorf("http target: object %q is not configured (configured: %s)",
			objectName, strings.Join(slices.Sorted(maps.Keys(t.s.objects)), ", "))
	}
	if len(changes) == 0 {
		return results, nil
	}
	// A few workers, not a goroutine per change: each takes the next change
	// once it holds a slot, so changes start in order and a worker's stack,
	// grown by its first request, serves the others.
	c := &call{}
	var next atomic.Int64
	var wg sync.WaitGroup
	for range min(t.s.concurrency, len(changes)) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil && !c.Stopped() && t.acquire(ctx) {
				i := int(next.Add(1)) - 1
				if c.Stopped() || i >= len(changes) {
					t.release()
					return
				}
				results[i] = t.writeOne(ctx, c, obj, changes[i])
				t.release()
			}
		}()
	}
	wg.Wait()
	if err := c.Err(); err != nil {
		return results, err
	}
	if err := ctx.Err(); err != nil {
		return results, fmt.Errorf("writing %d changes to %s: %w", len(changes), objectName, err)
	}
	return results, nil
}

func (t *Target) acquire(ctx context.Context) bool {
	select {
	case t.slots <- struct{}{}:
		return true
	case <-ctx.Done():
		return false
	}
}

func (t *Target) release() { <-t.slots }

func (t *Target) writeOne(ctx context.Context, c *call, obj object, ch connector.Change) connector.Result {
	var rq request
	switch ch.Op {
	case connector.OpInsert:
		rq = request{method: obj.insert.Method, path: obj.insert.Path, write: true}
	case connector.OpUpdate:
		if ch.TargetID == "" {
			return t.rejected(obj.update.Method+" "+obj.update.Path, "an update needs a target id")
		}
		rq = request{
			method:   obj.update.Method,
			path:     strings.ReplaceAll(obj.update.Path, "{id}", url.PathEscape(ch.TargetID)),
			notFound: true,
			write:    true,
		}
	default:
		return t.rejected(objectName(obj), fmt.Sprintf("unknown operation %q", ch.Op))
	}
	body, err := encodeBody(obj.bodyKey, ch.Payload)
	if err != nil {
		return t.rejected(rq.where(), "encoding the payload as JSON: "+err.Error())
	}
	rq.body = body

	resp, cerr, done := t.send(ctx, c, rq)
	switch {
	case !done:
		return connector.Result{}
	case cerr != nil:
		return connector.Result{Done: true, TargetID: ch.TargetID, Err: cerr}
	case ch.Op == connector.OpUpdate:
		return connector.Result{Done: true, TargetID: ch.TargetID}
	}
	id, err := insertedID(obj, resp.body, t.redactor)
	if err != nil {
		// The target answered 2xx, so the record was most likely created:
		// re-sending could duplicate it, so it must be reconciled.
		return connector.Result{Done: true, Err: t.newError(connector.Ambiguous, resp.status, rq.where()+": "+err.Error(), nil)}
	}
	return connector.Result{Done: true, TargetID: id}
}

func objectName(obj object) string { return "object " + obj.name }

func (t *Target) rejected(where, msg string) connector.Result {
	return connector.Result{Done: true, Err: t.newError(connector.Rejected, 0, where+": "+msg, nil)}
}

// newError makes a classified error with the connection's secrets redacted
// from its message and from its underlying error's text: every error the
// target reports is made here.
func (t *Target) newError(class connector.Class, status int, message string, err error) *connector.Error {
	return &connector.Error{
		Class:   class,
		Status:  status,
		Message: t.redactor.Redact(message),
		Err:     t.redactor.RedactError(err),
	}
}

// insertedID finds the new record's id in an insert response. The body it
// quotes in errors has r's secrets redacted.
func insertedID(obj object, body []byte, r *connector.Redactor) (string, error) {
	if id, ok := jsonx.FindPath(body, obj.idPath); ok {
		return id, nil
	}
	v, err := decodeJSON(body)
	if err != nil {
		return "", fmt.Errorf("the response is not JSON, so it has no id at %q: %s", obj.idPath, excerpt(body, r))
	}
	raw, ok := lookupPath(v, obj.idPath)
	if !ok {
		return "", fmt.Errorf("the response has no id at %q (id_path): %s", obj.idPath, excerpt(body, r))
	}
	id, ok := idText(raw)
	if !ok {
		return "", fmt.Errorf("the value at %q (id_path) is not a string or number id: %s", obj.idPath, excerpt(body, r))
	}
	return id, nil
}

// encodeBody encodes the payload as JSON, wrapped under bodyKey when set.
// json.Number keeps its digits, time.Time becomes RFC 3339.
func encodeBody(bodyKey string, payload map[string]any) ([]byte, error) {
	if payload == nil {
		payload = map[string]any{}
	}
	var v any = payload
	if bodyKey != "" {
		v = map[string]any{bodyKey: payload}
	}
	return jsonx.Encode(v)
}

// Find looks records up through the object's lookup endpoint: each match
// field becomes a query parameter. Each record found has its id, as text,
// under "id". No error it returns holds a secret of the connection.
func (t *Target) Find(ctx context.Context, objectName string, match map[string]any) ([]map[string]any, error) {
	found, err := t.find(ctx, objectName, match)
	return found, t.redactor.RedactError(err)
}

func (t *Target) find(ctx context.Context, objectName string, match map[string]any) ([]map[string]any, error) {
	obj, ok := t.s.objects[objectName]
	if !ok {
		return nil, fmt.Errorf("http target: object %q is not configured", objectName)
	}
	if obj.lookup == nil {
		return nil, fmt.Errorf("http target: object %q has no lookup endpoint configured", objectName)
	}
	query := url.Values{}
	for field, v := range match {
		s, err := queryValue(v)
		if err != nil {
			return nil, fmt.Errorf("looking up %s by %s: %w", objectName, field, err)
		}
		query.Set(field, s)
	}
	rq := request{method: obj.lookup.Method, path: obj.lookup.Path, query: query}
	resp, cerr, done := t.send(ctx, &call{}, rq)
	if !done {
		return nil, fmt.Errorf("looking up %s (%s): %w", objectName, rq.where(), context.Cause(ctx))
	}
	if cerr != nil {
		return nil, fmt.Errorf("looking up %s: %w", objectName, cerr)
	}
	return lookupResults(obj.lookup, rq.where(), resp.body)
}

func lookupResults(l *Lookup, where string, body []byte) ([]map[string]any, error) {
	v, err := decodeJSON(body)
	if err != nil {
		return nil, fmt.Errorf("%s: the response is not JSON: %w", where, err)
	}
	raw, ok := lookupPath(v, l.ResultsPath)
	if !ok {
		return nil, fmt.Errorf("%s: the response has no list at %q (results_path)", where, l.ResultsPath)
	}
	list, ok := raw.([]any)
	if !ok {
		return nil, fmt.Errorf("%s: the value at %q (results_path) is not a list", where, l.ResultsPath)
	}
	out := make([]map[string]any, 0, len(list))
	for i, item := range list {
		rec, ok := item.(map[string]any)
		if !ok {
			return nil, fmt.Errorf("%s: result %d is not an object", where, i)
		}
		rawID, _ := lookupPath(rec, l.IDPath)
		id, ok := idText(rawID)
		if !ok {
			return nil, fmt.Errorf("%s: result %d has no id at %q (lookup.id_path)", where, i, l.IDPath)
		}
		found := maps.Clone(rec)
		found["id"] = id
		out = append(out, found)
	}
	return out, nil
}

// queryValue writes a match value as a query parameter.
func queryValue(v any) (string, error) {
	switch v := v.(type) {
	case string:
		return v, nil
	case json.Number:
		return v.String(), nil
	case bool:
		return strconv.FormatBool(v), nil
	case int:
		return strconv.Itoa(v), nil
	case int64:
		return strconv.FormatInt(v, 10), nil
	case float64:
		return strconv.FormatFloat(v, 'f', -1, 64), nil
	case time.Time:
		return v.Format(time.RFC3339Nano), nil
	case nil:
		return "", fmt.Errorf("cannot match on null")
	default:
		return "", fmt.Errorf("cannot match on a %T value", v)
	}
}

// InFlight is how many requests the target sends at once (connector.Pacer).
func (t *Target) InFlight() int { return t.s.concurrency }
