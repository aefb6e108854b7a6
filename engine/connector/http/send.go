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
	notFound bool // a 404 means the addressed record does not exist (updates)
	write    bool // it may change the target: it must pass the call's gate
}

func (rq request) where() string { return rq.method + " " + rq.path }

// idempotent says whether the request may be sent again after it may have
// been applied: every method but POST (updates set fields to values).
func (rq request) idempotent() bool { return rq.method != http.MethodPost }

type response struct {
	status int
	header http.Header
	body   []byte
}

// send makes the request, retrying what is worth retrying. It returns the 2xx
// response, or the classified error of the last attempt. done is false when
// the call stopped (auth failure elsewhere in the call, or ctx) before
// anything that could have changed the target was sent.
func (t *Target) send(ctx context.Context, c *call, rq request) (response, *connector.Error, bool) {
	where := rq.where()
	for attempt := 0; ; attempt++ {
		probing, ok := t.waitTurn(ctx, c)
		if !ok {
			return response{}, nil, false
		}
		if rq.write && !c.Pass(ctx) {
			// Checked last, right before sending: the run's claim may have
			// ended while this request waited for its turn.
			if probing {
				<-t.probe
			}
			return response{}, nil, false
		}
		began := time.Now()
		resp, sent, err := t.roundTrip(ctx, c, rq)
		connector.Observe(ctx, resp.status, time.Since(began))
		t.learn(resp.status, err)
		var wait time.Duration // for a 429: how long the connection pauses
		if err == nil && resp.status == http.StatusTooManyRequests {
			var given bool
			if wait, given = parseRetryAfter(resp.header.Get("Retry-After"), time.Now()); !given {
				// The pause holds every request back: jitter would spread nothing.
				wait = connector.BackoffCeiling(attempt, t.s.backoffBase, t.s.backoffMax)
			}
			if wait <= t.s.maxRetryAfter {
				t.pauseFor(wait) // before the probe is released, so that no request slips through
			}
		}
		var authErr *connector.Error
		if err == nil && (resp.status == http.StatusUnauthorized || resp.status == http.StatusForbidden) {
			// Stopped before the probe is released, so that no request of the
			// call follows the one that met the refusal.
			authErr = t.newError(connector.Auth, resp.status, where+": "+targetMessage(resp.status, resp.body, t.redactor), nil)
			c.Stop(authErr)
		}
		if probing {
			<-t.probe
		}
		retriesLeft := attempt < t.s.retries

		if err != nil {
			switch {
			case errors.Is(err, errGateClosed):
				return response{}, nil, false
			case ctx.Err() != nil && !sent:
				return response{}, nil, false
			case ctx.Err() != nil && rq.idempotent():
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
			return t.newError(class, status, where+": "+targetMessage(status, resp.body, t.redactor), nil)
		}
		switch {
		case status >= 200 && status < 300:
			return resp, nil, true
		case authErr != nil:
			return resp, authErr, true
		case status == http.StatusTooManyRequests:
			if wait > t.s.maxRetryAfter || !retriesLeft {
				e := classified(connector.RateLimited)
				e.RetryAfter = wait
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

// waitTurn waits, while the credentials are unproven, for the probe; then
// for the connection's 429 pause and its rate limit. probing says the probe
// is held. ok is false when the call stopped or ctx ended.
func (t *Target) waitTurn(ctx context.Context, c *call) (probing, ok bool) {
	if c.Stopped() {
		return false, false
	}
	if !t.verified.Load() {
		select {
		case t.probe <- struct{}{}:
			probing = true
		case <-ctx.Done():
			return false, false
		}
		if t.verified.Load() {
			<-t.probe
			probing = false
		}
	}
	// The pause is checked after the probe: the request that held it may
	// just have been told to wait.
	ok = t.waitPause(ctx) && (t.limiter == nil || t.limiter.Wait(ctx) == nil) &&
		!c.Stopped() && ctx.Err() == nil
	if !ok && probing {
		<-t.probe
		probing = false
	}
	return probing, ok
}

// learn records whether the credentials work: any answer but 401, 403, 429
// and 5xx shows they do (a 4xx about the record means it was authenticated);
// 401 and 403 show they no longer do.
func (t *Target) learn(status int, err error) {
	switch {
	case err != nil || status == 0:
	case status == http.StatusUnauthorized || status == http.StatusForbidden:
		t.verified.Store(false)
	case status == http.StatusTooManyRequests || status >= 500:
	case status < 500:
		t.verified.Store(true)
	}
}

// roundTrip makes one attempt. sent says the request was written to the
// connection, so the target may have applied it even without a response.
func (t *Target) roundTrip(ctx context.Context, c *call, rq request) (resp response, sent bool, err error) {
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
	}
	if rq.body != nil {
		req.Header = t.bodyHeader.Clone()
	} else {
		req.Header = t.header.Clone()
	}
	if t.s.authHeader != "" {
		req.Header.Set(t.s.authHeader, t.s.authValue.Reveal())
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

// pauseFor holds back every request on the connection for d (a 429).
func (t *Target) pauseFor(d time.Duration) {
	until := int64(time.Since(t.epoch) + d)
	for {
		cur := t.pausedUntil.Load()
		if until <= cur || t.pausedUntil.CompareAndSwap(cur, until) {
			return
		}
	}
}

// waitPause waits until the connection is not paused, reporting false when
// ctx ended.
func (t *Target) waitPause(ctx context.Context) bool {
	for {
		until := t.pausedUntil.Load()
		if until == 0 {
			return true
		}
		d := time.Duration(until) - time.Since(t.epoch)
		if d <= 0 {
			return true
		}
		if !connector.Sleep(ctx, d) {
			return false
		}
	}
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
