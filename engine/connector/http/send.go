package httptarget

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptrace"
	"net/url"
	"strings"
	"sync/atomic"
	"time"

	"github.com/ferry-sync/ferry/engine/connector"
)

// maxResponse bounds how much of a response body is read.
const maxResponse = 32 << 20

// request is one HTTP exchange to make, with retries.
type request struct {
	method   string
	path     string // relative to the base URL, {id} already filled
	query    url.Values
	body     []byte
	header   http.Header // more headers (an Idempotency-Key)
	notFound bool        // a 404 means the addressed record does not exist (updates)
	write    bool        // it may change the target: it must pass the call's gate
	safe     bool        // it may be sent again after it may have been applied
	insert   bool        // it creates records (an insert, a batch of them)
	obj      *object     // whose field errors settings read its error answers
	timedOut *atomic.Bool
}

func (rq request) where() string { return rq.method + " " + rq.path }

// idempotent says whether the request may be sent again after it may have
// been applied: every method but POST (updates set fields to values), and
// inserts the object makes idempotent (a client-chosen id, an idempotency
// key).
func (rq request) idempotent() bool { return rq.safe || rq.method != http.MethodPost }

type response struct {
	status int
	header http.Header
	body   []byte
}

// send makes the request, retrying what is worth retrying. It returns the 2xx
// response, or the classified error of the last attempt (with the response
// it came with, if any). done is false when the call stopped (auth failure
// elsewhere in the call, or ctx) before anything that could have changed the
// target was sent.
func (t *Target) send(ctx context.Context, c *call, rq request) (response, *connector.Error, bool) {
	where := rq.where()
	renewed := false             // the token was renewed once for this request
	var limitedFor time.Duration // waited for 429s in all
	for attempt := 0; ; {
		turn, qerr, ok := t.waitTurn(ctx, c)
		if qerr != nil {
			c.Stop(qerr)
			return response{}, nil, false
		}
		if !ok {
			return response{}, nil, false
		}
		if rq.write && !c.Pass(ctx) {
			// Checked last, right before sending: the run's claim may have
			// ended while this request waited for its turn.
			turn.release()
			return response{}, nil, false
		}
		authValue, gen, aerr := t.creds.current(ctx)
		if aerr != nil {
			// Nothing was sent: the credentials could not be had.
			if aerr.Class == connector.Auth || aerr.Class == connector.Unreachable || aerr.Class == connector.RateLimited {
				c.Stop(aerr)
			}
			turn.release()
			if ctx.Err() != nil {
				return response{}, nil, false
			}
			return response{}, aerr, true
		}
		began := time.Now()
		resp, sent, err := t.roundTrip(ctx, c, rq, authValue)
		connector.Observe(ctx, resp.status, time.Since(began))

		var ans *answer
		inspect := func() answer {
			if ans == nil {
				a := t.inspect(resp.status, resp.body, rq.obj)
				ans = &a
			}
			return *ans
		}
		authFailed := err == nil && (resp.status == http.StatusUnauthorized || resp.status == http.StatusForbidden)
		if err == nil && !authFailed && t.s.authError != nil && resp.status >= 300 {
			authFailed = t.s.authError.matches(inspect())
		}
		t.learn(resp.status, err, authFailed)
		t.budget.learn(resp.status, err)
		var wait time.Duration // for a 429: how long the connection pauses
		waitOK := true
		if err == nil && resp.status == http.StatusTooManyRequests {
			wait, waitOK = t.budget.limited(resp.header, began, t)
		}
		var authErr *connector.Error
		if authFailed {
			if resp.status != http.StatusForbidden && t.creds.renewable() && !renewed {
				// The token expired or was revoked: get a new one, once,
				// and send the request again (it was refused, so not applied).
				turn.release()
				renewed = true
				if rerr := t.creds.renew(ctx, gen); rerr != nil {
					if ctx.Err() != nil {
						return response{}, nil, false
					}
					c.Stop(rerr)
					return resp, rerr, true
				}
				continue
			}
			// Stopped before the probe is released, so that no request of the
			// call follows the one that met the refusal.
			authErr = t.failureOf(connector.Auth, where, inspect())
			c.Stop(authErr)
		}
		turn.release()
		retriesLeft := attempt < t.s.retries

		if err != nil {
			if sent && rq.timedOut != nil && errors.Is(err, context.DeadlineExceeded) && ctx.Err() == nil {
				rq.timedOut.Store(true)
			}
			switch {
			case errors.Is(err, errGateClosed):
				return response{}, nil, false
			case ctx.Err() != nil && !sent:
				return response{}, nil, false
			case ctx.Err() != nil && rq.idempotent() && !rq.insert:
				return response{}, t.newError(connector.Retryable, 0, where+": cancelled while waiting for the response", err), true
			case ctx.Err() != nil:
				return response{}, t.newError(connector.Ambiguous, 0, where+": cancelled after the request was sent: the record may have been created", err), true
			case sent && !rq.idempotent():
				// Sending it again could create the record twice.
				return response{}, t.newError(connector.Ambiguous, 0, where+": "+t.describe(err)+" after the request was sent: the record may have been created", err), true
			case retriesLeft:
				if !t.backoff(ctx, attempt) {
					return response{}, nil, false
				}
				attempt++
				continue
			case !sent && connector.Unreached(err):
				// Nothing reached the target, after every retry: every other
				// request of the call would meet the same.
				e := t.newError(connector.Unreachable, 0, where+": cannot reach "+t.s.baseURL+": "+t.describe(err), err)
				c.Stop(e)
				return response{}, e, true
			default:
				return response{}, t.newError(connector.Retryable, 0, where+": "+t.describe(err), err), true
			}
		}

		status := resp.status
		classified := func(class connector.Class) *connector.Error {
			return t.failureOf(class, where, inspect())
		}
		switch {
		case status >= 200 && status < 300:
			return resp, nil, true
		case authErr != nil:
			return resp, authErr, true
		case status == http.StatusTooManyRequests:
			limitedFor += wait
			if !waitOK || limitedFor > t.s.retryBudget {
				e := classified(connector.RateLimited)
				e.RetryAfter = wait
				if waitOK {
					e.Message += fmt.Sprintf(" (still limited after %s of waiting: retry_budget)", t.s.retryBudget)
				}
				return resp, e, true
			}
			continue // waitTurn waits out the pause
		case status == http.StatusGatewayTimeout && !rq.idempotent():
			// The gateway gave up; the application behind it may not have.
			return resp, classified(connector.Ambiguous), true
		case retryableStatus(status):
			if !retriesLeft {
				return resp, classified(connector.Retryable), true
			}
			if !t.backoff(ctx, attempt) {
				return response{}, nil, false
			}
			attempt++
			continue
		case status >= 500:
			return resp, classified(connector.Retryable), true
		case status == http.StatusNotFound && rq.notFound:
			return resp, classified(connector.NotFound), true
		case status >= 300 && status < 400:
			// The Location may carry a token in its query: newError redacts it.
			msg := fmt.Sprintf("%s: unexpected redirect to %q", where, resp.header.Get("Location"))
			return resp, t.newError(connector.Rejected, status, msg, nil), true
		default:
			return resp, classified(connector.Rejected), true
		}
	}
}

// retryableStatus lists the statuses retried with backoff: the server or a
// gateway failed without applying the request (408: it never read it all).
func retryableStatus(status int) bool {
	switch status {
	case http.StatusRequestTimeout, http.StatusInternalServerError, http.StatusBadGateway,
		http.StatusServiceUnavailable, http.StatusGatewayTimeout:
		return true
	}
	return false
}

// turn is what a request holds while it is sent: the credentials probe, the
// connection's throttle.
type turn struct {
	t                   *Target
	probing, throttling bool
	windowSlot          int // the rate window's grant; -1 for none
}

func (tu *turn) release() {
	if tu.windowSlot >= 0 {
		tu.t.budget.windowDone(tu.windowSlot)
		tu.windowSlot = -1
	}
	if tu.probing {
		<-tu.t.probe
		tu.probing = false
	}
	if tu.throttling {
		<-tu.t.budget.throttle
		tu.throttling = false
	}
}

// waitTurn waits, while the credentials are unproven, for the probe; then
// for the connection's 429 pause and throttle, its rate limit, its window
// and its daily quota (the window last, so that its grant is the time of
// sending). ok is false when the call stopped or ctx ended; qerr is the
// used-up quota.
func (t *Target) waitTurn(ctx context.Context, c *call) (tu turn, qerr *connector.Error, ok bool) {
	tu.t, tu.windowSlot = t, -1
	if c.Stopped() {
		return tu, nil, false
	}
	fail := func() (turn, *connector.Error, bool) {
		tu.release()
		return tu, qerr, false
	}
	if !t.verified.Load() {
		select {
		case t.probe <- struct{}{}:
			tu.probing = true
		case <-ctx.Done():
			return tu, nil, false
		}
		if t.verified.Load() {
			<-t.probe
			tu.probing = false
		}
	}
	// The pause is checked after the probe: the request that held it may
	// just have been told to wait.
	b := t.budget
	if !b.waitPause(ctx) {
		return fail()
	}
	if b.throttled.Load() {
		select {
		case b.throttle <- struct{}{}:
			tu.throttling = true
		case <-ctx.Done():
			return fail()
		}
		if !b.waitPause(ctx) {
			return fail()
		}
	}
	if tu.windowSlot, qerr = b.waitLimits(ctx, t); qerr != nil || ctx.Err() != nil || c.Stopped() {
		return fail()
	}
	return tu, nil, true
}

// learn records whether the credentials work: any answer but 401, 403, 429,
// 5xx and those auth_error declares shows they do (a 4xx about the record
// means it was authenticated); a refusal shows they no longer do.
func (t *Target) learn(status int, err error, authFailed bool) {
	switch {
	case err != nil || status == 0:
	case authFailed:
		t.verified.Store(false)
	case status == http.StatusTooManyRequests || status >= 500:
	case status < 500:
		t.verified.Store(true)
	}
}

// roundTrip makes one attempt. sent says the request was written to the
// connection, so the target may have applied it even without a response.
func (t *Target) roundTrip(ctx context.Context, c *call, rq request, authValue string) (resp response, sent bool, err error) {
	ctx, cancel := context.WithTimeout(ctx, t.s.timeout)
	defer cancel()
	var wrote atomic.Bool // set on the transport's goroutine
	trace := &httptrace.ClientTrace{WroteRequest: func(httptrace.WroteRequestInfo) { wrote.Store(true) }}
	ctx = httptrace.WithClientTrace(ctx, trace)

	target := t.s.baseURL + rq.path
	if len(rq.query) > 0 {
		sep := "?"
		if strings.Contains(rq.path, "?") {
			sep = "&"
		}
		target += sep + rq.query.Encode()
	}
	var body io.Reader
	var gated *gatedBody
	if rq.body != nil {
		body = bytes.NewReader(rq.body)
		if rq.write {
			gated = &gatedBody{ctx: ctx, c: c, r: body}
			body = gated
		}
	}
	req, err := http.NewRequestWithContext(ctx, rq.method, target, body)
	if err != nil {
		return response{}, false, fmt.Errorf("building the request: %w", err)
	}
	if rq.body != nil {
		req.ContentLength = int64(len(rq.body))
		req.Header = t.bodyHeader.Clone()
	} else {
		req.Header = t.header.Clone()
	}
	for k, v := range rq.header {
		req.Header[k] = v
	}
	if authValue != "" {
		req.Header.Set(t.s.auth.header, authValue)
	}

	res, err := t.client.Do(req)
	if err != nil {
		if gated != nil && gated.refused {
			// Not a byte of the body left: the target has no whole request.
			return response{}, false, errGateClosed
		}
		return response{}, wrote.Load(), err
	}
	defer res.Body.Close()
	b, err := io.ReadAll(io.LimitReader(res.Body, maxResponse))
	if err != nil {
		return response{status: res.StatusCode}, true, fmt.Errorf("reading the response (HTTP %d): %w", res.StatusCode, err)
	}
	return response{status: res.StatusCode, header: res.Header, body: b}, true, nil
}

// describe says what went wrong with an attempt that got no response.
func (t *Target) describe(err error) string {
	if errors.Is(err, context.DeadlineExceeded) {
		return fmt.Sprintf("no response within %s (timeout)", t.s.timeout)
	}
	return err.Error()
}

// backoff sleeps before a retry, reporting false when ctx ended.
func (t *Target) backoff(ctx context.Context, attempt int) bool {
	return connector.Sleep(ctx, connector.Backoff(attempt, t.s.backoffBase, t.s.backoffMax))
}

// gatedBody asks the call's gate once more when the transport starts
// writing the body, the last moment before the target can apply the
// request: a run that was paused between its turn and the send (a stopped
// process) and lost its claim meanwhile aborts the request, and the target
// never gets a whole one.
type gatedBody struct {
	ctx     context.Context
	c       *call
	r       io.Reader
	passed  bool
	refused bool
}

func (g *gatedBody) Read(p []byte) (int, error) {
	if !g.passed {
		if !g.c.Pass(g.ctx) {
			g.refused = true
			return 0, errGateClosed
		}
		g.passed = true
	}
	return g.r.Read(p)
}

var errGateClosed = errors.New("the write was stopped before it was sent")
