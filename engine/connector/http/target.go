package httptarget

import (
	"context"
	"fmt"
	"maps"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ferry-sync/ferry/engine/connector"
	"github.com/ferry-sync/ferry/internal/jsonx"
)

// Target writes to a REST API described by a Config. It is safe for
// concurrent use; the connection's budget (concurrency, rate limits, daily
// quota, 429 pauses) is shared by every call on it and by every other
// Target opened in the process for the same connection.
type Target struct {
	s         settings
	client    *http.Client
	transport *http.Transport
	budget    *budget
	closeOnce sync.Once

	// probe lets one request at a time through until the credentials are
	// known to work, so that bad credentials cost one request, not one per slot.
	probe    chan struct{}
	verified atomic.Bool

	creds *credentials

	// header and bodyHeader are the headers every request carries (but the
	// credentials), without and with a body: cloned per request.
	header, bodyHeader http.Header

	// redactor hides the credentials in every error the target returns:
	// APIs echo the Authorization header in their error bodies, and error
	// texts end up on link rows, in runs and on the terminal.
	redactor *connector.Redactor
	// watchers are told of every secret the target learns after it opened
	// (tokens): connector.SecretWatcher.
	watchMu  sync.Mutex
	watchers []func(...string)

	// batchSize is each object's current batch size (it halves when a
	// batch times out).
	batchSize map[string]*atomic.Int64
}

// New checks cfg, reads its secrets from the environment and returns a
// Target. It makes no request: the first Write finds out whether the
// credentials work (and logs in, for auth type login).
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
		probe:     make(chan struct{}, 1),
		redactor:  connector.NewRedactor(),
		batchSize: map[string]*atomic.Int64{},
	}
	for _, secret := range s.secrets {
		t.redactor.Add(secret.Reveal())
	}
	t.creds = newCredentials(t)
	t.header = http.Header{"Accept": {"application/json"}, "User-Agent": {"ferry"}}
	t.bodyHeader = t.header.Clone()
	t.bodyHeader.Set("Content-Type", "application/json")
	for k, v := range s.headers {
		t.header.Set(k, v)
		t.bodyHeader.Set(k, v)
	}
	for name, obj := range s.objects {
		if obj.batch != nil {
			size := &atomic.Int64{}
			size.Store(int64(obj.batch.size))
			t.batchSize[name] = size
		}
	}
	t.budget = acquireBudget(s)
	return t, nil
}

// Close releases idle connections and the target's share of the
// connection's budget. It is idempotent.
func (t *Target) Close() error {
	t.closeOnce.Do(func() {
		t.transport.CloseIdleConnections()
		releaseBudget(t.budget)
	})
	return nil
}

// Secrets returns the credentials the target sends: the auth header's value
// and the values it is made of (the token; the username, the password and
// "user:pass"; the client secret and refresh token), and the token it holds
// now for auth types login and oauth2.
func (t *Target) Secrets() []string {
	out := make([]string, 0, len(t.s.secrets)+2)
	for _, secret := range t.s.secrets {
		out = append(out, secret.Reveal())
	}
	return append(out, t.creds.secrets()...)
}

// WatchSecrets asks the target to report each secret it learns from now on
// (the tokens of a login or an OAuth2 flow) to add (connector.SecretWatcher).
func (t *Target) WatchSecrets(add func(secrets ...string)) {
	t.watchMu.Lock()
	defer t.watchMu.Unlock()
	t.watchers = append(t.watchers, add)
}

// addSecrets makes new secrets known to the target's redactor and to its
// watchers, before they are used.
func (t *Target) addSecrets(secrets ...string) {
	var kept []string
	for _, s := range secrets {
		if s != "" {
			kept = append(kept, s)
		}
	}
	if len(kept) == 0 {
		return
	}
	t.redactor.Add(kept...)
	t.watchMu.Lock()
	watchers := slices.Clone(t.watchers)
	t.watchMu.Unlock()
	for _, w := range watchers {
		w(kept...)
	}
}

// call is the shared state of one Write or Find call.
type call struct {
	connector.Halt
}

// Write sends the changes, each as one request or, for an object with a
// batch, many to a request, up to the connection's concurrency at once, and
// reports the results in input order. No error it returns holds a secret of
// the connection.
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
	c := &call{}
	jobs := t.plan(obj, changes)
	// A few workers, not a goroutine per job: each takes the next job once
	// it holds a slot, so that jobs start in order and a worker's stack,
	// grown by its first request, serves the others.
	var next atomic.Int64
	var wg sync.WaitGroup
	for range min(t.s.concurrency, len(jobs)) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil && !c.Stopped() && t.budget.acquire(ctx) {
				i := int(next.Add(1)) - 1
				if c.Stopped() || i >= len(jobs) {
					t.budget.release()
					return
				}
				j := jobs[i]
				if j.batch == nil {
					results[j.idx[0]] = t.writeOne(ctx, c, obj, changes[j.idx[0]])
				} else {
					t.writeBatch(ctx, c, obj, j.batch, changes, j.idx, results)
				}
				t.budget.release()
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

// job is one request's worth of changes: one change, or a batch.
type job struct {
	idx   []int
	batch *batchEndpoint // nil: a single request
}

// plan cuts the changes into jobs: those of an operation the object
// batches into batches of its current size, in input order, and the others
// one by one.
func (t *Target) plan(obj object, changes []connector.Change) []job {
	var jobs []job
	if obj.batch == nil {
		jobs = make([]job, len(changes))
		for i := range changes {
			jobs[i] = job{idx: []int{i}}
		}
		return jobs
	}
	size := max(1, int(t.batchSize[obj.name].Load()))
	open := map[connector.Op]int{} // the index in jobs of the batch being filled
	for i, ch := range changes {
		ep := obj.batch.endpoint(ch.Op)
		if ep == nil {
			jobs = append(jobs, job{idx: []int{i}})
			continue
		}
		if at, ok := open[ch.Op]; ok && len(jobs[at].idx) < size {
			jobs[at].idx = append(jobs[at].idx, i)
			continue
		}
		open[ch.Op] = len(jobs)
		jobs = append(jobs, job{idx: []int{i}, batch: ep})
	}
	return jobs
}

func (t *Target) writeOne(ctx context.Context, c *call, obj object, ch connector.Change) connector.Result {
	var rq request
	payload := ch.Payload
	var clientID string
	switch ch.Op {
	case connector.OpInsert:
		rq = request{method: obj.insert.Method, path: obj.insert.Path, write: true, insert: true}
		if obj.clientID != nil {
			payload, clientID = t.withClientID(ctx, obj, ch)
		}
		if obj.idemKey != "" {
			rq.header = http.Header{obj.idemKey: {idempotencyKey(ctx, obj, ch)}}
		}
		rq.safe = obj.idempotentInserts()
	case connector.OpUpdate:
		if ch.TargetID == "" {
			return t.rejected(obj.update.Method+" "+obj.update.Path, "an update needs a target id")
		}
		rq = request{
			method:   obj.update.Method,
			path:     strings.ReplaceAll(obj.update.Path, "{id}", url.PathEscape(ch.TargetID)),
			notFound: true,
			write:    true,
			safe:     true,
		}
	default:
		return t.rejected(objectName(obj), fmt.Sprintf("unknown operation %q", ch.Op))
	}
	rq.obj = &obj
	body, err := encodeBody(obj.bodyKey, payload)
	if err != nil {
		return t.rejected(rq.where(), "encoding the payload as JSON: "+err.Error())
	}
	rq.body = body

	resp, cerr, done := t.send(ctx, c, rq)
	switch {
	case !done:
		return connector.Result{}
	case cerr != nil && clientID != "" && cerr.Class == connector.Rejected && obj.clientID.exists.matches(t.inspect(resp.status, resp.body, &obj)):
		// Sent before, and applied: the id chosen is the record's.
		return connector.Result{Done: true, TargetID: clientID}
	case cerr != nil:
		return connector.Result{Done: true, TargetID: ch.TargetID, Err: cerr}
	case ch.Op == connector.OpUpdate:
		return connector.Result{Done: true, TargetID: ch.TargetID}
	}
	id, err := insertedID(obj, resp.body, t.redactor)
	if err != nil && clientID != "" {
		return connector.Result{Done: true, TargetID: clientID}
	}
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
	return idAt(body, obj.idPath, "id_path", r)
}

func idAt(body []byte, path, setting string, r *connector.Redactor) (string, error) {
	if id, ok := jsonx.FindPath(body, path); ok {
		return id, nil
	}
	v, err := decodeJSON(body)
	if err != nil {
		return "", fmt.Errorf("the response is not JSON, so it has no id at %q: %s", path, excerpt(body, r))
	}
	raw, ok := lookupPath(v, path)
	if !ok {
		return "", fmt.Errorf("the response has no id at %q (%s): %s", path, setting, excerpt(body, r))
	}
	id, ok := idText(raw)
	if !ok {
		return "", fmt.Errorf("the value at %q (%s) is not a string or number id: %s", path, setting, excerpt(body, r))
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

// InFlight is how many changes the target has in flight at once
// (connector.Pacer): its concurrency, times the largest batch of its
// objects when they batch.
func (t *Target) InFlight() int {
	per := 1
	for _, obj := range t.s.objects {
		if obj.batch != nil {
			per = max(per, obj.batch.size)
		}
	}
	return t.s.concurrency * per
}
