package notify

import (
	"bytes"
	"context"
	"crypto/hmac"
	cryptorand "crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgtype"

	"github.com/ferry-sync/ferry/engine/project"
	"github.com/ferry-sync/ferry/queries"
)

// Headers of a webhook delivery.
const (
	// SignatureHeader holds "t=<unix seconds>,v1=<hex HMAC-SHA256>".
	SignatureHeader = "Ferry-Signature"
	// EventHeader names the event ("run.failed"), so a receiver can route
	// before it parses the body.
	EventHeader = "Ferry-Event"
	// DeliveryHeader is the same for every attempt of one delivery, so a
	// receiver can drop a retry of what it already took.
	DeliveryHeader = "Ferry-Delivery"
)

// DefaultTolerance is how old a signature's timestamp Verify accepts when
// given no tolerance: enough for clock skew and a slow network, short
// enough that a captured request cannot be replayed for long.
const DefaultTolerance = 5 * time.Minute

// Why Verify refused a delivery; test with errors.Is.
var (
	ErrMalformedSignature = errors.New("malformed " + SignatureHeader + " header: want t=<unix seconds>,v1=<hex>")
	ErrSignatureMismatch  = errors.New("no signature in the " + SignatureHeader + " header matches the body")
	ErrSignatureTooOld    = errors.New("the signature's timestamp is outside the tolerance (a replay, or clocks far apart)")
)

// Payload is the body of a webhook delivery.
type Payload struct {
	Event  string    `json:"event"`
	Run    Event     `json:"run"`
	SentAt time.Time `json:"sent_at"`
}

// Sign returns the Ferry-Signature header value for body sent at t: the
// HMAC-SHA256, keyed with secret, of "<unix seconds>.<body>". The
// timestamp is inside the signed text, so it cannot be changed to replay
// an old body.
func Sign(secret []byte, t time.Time, body []byte) string {
	ts := strconv.FormatInt(t.Unix(), 10)
	return "t=" + ts + ",v1=" + hex.EncodeToString(mac(secret, ts, body))
}

func mac(secret []byte, ts string, body []byte) []byte {
	h := hmac.New(sha256.New, secret)
	h.Write([]byte(ts))
	h.Write([]byte{'.'})
	h.Write(body)
	return h.Sum(nil)
}

// Verify checks a delivery's Ferry-Signature header against its raw body:
// one of its v1 signatures (there are several while a secret is rotated)
// must be the body's, and its timestamp within tolerance of now
// (DefaultTolerance when tolerance is 0). Receivers must pass the body
// exactly as received, before any JSON parsing.
func Verify(secret []byte, header string, body []byte, now time.Time, tolerance time.Duration) error {
	if tolerance <= 0 {
		tolerance = DefaultTolerance
	}
	var ts string
	var sigs [][]byte
	for part := range strings.SplitSeq(header, ",") {
		k, v, ok := strings.Cut(strings.TrimSpace(part), "=")
		if !ok {
			return ErrMalformedSignature
		}
		switch k {
		case "t":
			if ts != "" {
				return ErrMalformedSignature
			}
			ts = v
		case "v1":
			sig, err := hex.DecodeString(v)
			if err != nil || len(sig) != sha256.Size {
				return ErrMalformedSignature
			}
			sigs = append(sigs, sig)
		}
		// Other schemes (a future v2) are ignored, as Stripe's are.
	}
	if ts == "" || len(sigs) == 0 {
		return ErrMalformedSignature
	}
	unix, err := strconv.ParseInt(ts, 10, 64)
	if err != nil {
		return ErrMalformedSignature
	}
	want := mac(secret, ts, body)
	matched := false
	for _, sig := range sigs {
		if hmac.Equal(sig, want) {
			matched = true
		}
	}
	if !matched {
		return ErrSignatureMismatch
	}
	// Checked after the signature, so an attacker cannot learn from the
	// answer whether only the timestamp was wrong.
	if age := now.Sub(time.Unix(unix, 0)); age > tolerance || age < -tolerance {
		return fmt.Errorf("%w: signed %s ago, tolerance %s", ErrSignatureTooOld, age.Round(time.Second), tolerance)
	}
	return nil
}

// deliver sends one event to one webhook: up to maxAttempts attempts, each
// logged to ferry.webhook_deliveries.
func (n *Notifier) deliver(ctx context.Context, w project.Webhook, event string, ev Event) {
	safe := safeURL(w.URL)
	id := newID()
	logger := n.log.With("event", event, "sync", ev.Sync, "run_id", ev.RunID, "url", safe, "delivery", id)
	row := queries.WebhookDeliveryAddParams{DeliveryID: id, Url: safe, Event: event, Sync: ev.Sync}
	if ev.RunID > 0 {
		row.RunID = &ev.RunID
	}

	secret, ok := n.env(w.SecretEnv)
	if !ok || secret == "" {
		// An unsigned body would be refused by a receiver that checks, and
		// accepted by one that does not: neither is worth sending.
		msg := fmt.Sprintf("the webhook's secret %s is not set: nothing was sent", w.SecretEnv)
		logger.ErrorContext(ctx, "alerts: "+msg)
		row.Error = &msg
		n.logAttempt(ctx, row)
		return
	}
	body, err := json.Marshal(Payload{Event: event, Run: ev, SentAt: n.now().UTC()})
	if err != nil {
		logger.ErrorContext(ctx, "alerts: encoding the webhook body", "error", err)
		return
	}
	// Whatever the receiver or the network says is stored and logged; keep
	// the URL's userinfo and query (tokens) and the secret out of it.
	clean := redactor(w.URL, secret)

	for attempt := 1; ; attempt++ {
		row.Attempt = int32(attempt)
		start := time.Now()
		code, wait, err := n.post(ctx, w.URL, event, id, []byte(secret), body)
		row.DurationMs = int32(time.Since(start).Milliseconds())
		row.StatusCode = pgtype.Int4{Int32: int32(code), Valid: code != 0}
		row.Error = nil
		if err != nil {
			msg := clean(err.Error())
			row.Error = &msg
		}
		n.logAttempt(ctx, row)
		if err == nil {
			logger.InfoContext(ctx, "alerts: webhook delivered", "attempt", attempt, "status", code)
			return
		}
		var gaveUp string
		switch {
		case !retryable(code):
			gaveUp = "the receiver refused it"
		case attempt == maxAttempts:
			gaveUp = "out of attempts"
		case ctx.Err() != nil:
			gaveUp = "shutting down"
		}
		if gaveUp != "" {
			logger.WarnContext(ctx, "alerts: webhook not delivered: "+gaveUp, "attempt", attempt, "status", code,
				"error", clean(err.Error()))
			return
		}
		if wait == 0 {
			wait = n.backoff(attempt)
		}
		logger.DebugContext(ctx, "alerts: webhook attempt failed; retrying", "attempt", attempt, "status", code,
			"error", clean(err.Error()), "wait", wait)
		if !sleep(ctx, wait) {
			return
		}
	}
}

// post makes one attempt. It returns the status code (0 when no answer
// came), how long the receiver asked to wait (Retry-After), and an error
// unless the receiver took the event (2xx).
func (n *Notifier) post(ctx context.Context, rawURL, event, id string, secret, body []byte) (int, time.Duration, error) {
	ctx, cancel := context.WithTimeout(ctx, attemptTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, rawURL, bytes.NewReader(body))
	if err != nil {
		return 0, 0, fmt.Errorf("building the request: %w", err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "Ferry-Webhooks/1")
	req.Header.Set(EventHeader, event)
	req.Header.Set(DeliveryHeader, id)
	// Signed per attempt: a retry carries a fresh timestamp, so a receiver
	// with a short tolerance takes a late retry too.
	req.Header.Set(SignatureHeader, Sign(secret, n.now(), body))
	resp, err := n.client.Do(req)
	if err != nil {
		// net/http quotes the URL with its query: say the stored one.
		var ue *url.Error
		if errors.As(err, &ue) {
			ue.URL = safeURL(rawURL)
		}
		return 0, 0, err
	}
	defer resp.Body.Close()
	snippet, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
	// Drain a little more so the connection can be reused.
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	if resp.StatusCode >= 200 && resp.StatusCode < 300 {
		return resp.StatusCode, 0, nil
	}
	msg := "HTTP " + strconv.Itoa(resp.StatusCode)
	if s := printable(snippet, 200); s != "" {
		msg += ": " + s
	}
	return resp.StatusCode, retryAfter(resp.Header.Get("Retry-After"), time.Now()), errors.New(msg)
}

// retryable reports whether an attempt that got code (0: no answer) may
// succeed later: the network, the receiver's own trouble (5xx), a timeout
// (408) or a rate limit (429). Other answers are the receiver saying no.
func retryable(code int) bool {
	return code == 0 || code >= 500 || code == http.StatusRequestTimeout || code == http.StatusTooManyRequests
}

// backoff is the wait after the attempt-th attempt: the base doubled each
// time, half of it random, so that receivers that come back are not hit by
// every replica at once.
func (n *Notifier) backoff(attempt int) time.Duration {
	d := n.retryBase << (attempt - 1)
	return d/2 + rand.N(d/2+1)
}

// retryAfter reads a Retry-After header (seconds or an HTTP date); 0 when
// absent or unreadable.
func retryAfter(v string, now time.Time) time.Duration {
	v = strings.TrimSpace(v)
	if v == "" {
		return 0
	}
	var d time.Duration
	if secs, err := strconv.Atoi(v); err == nil {
		d = time.Duration(secs) * time.Second
	} else if t, err := http.ParseTime(v); err == nil {
		d = t.Sub(now)
	}
	return min(max(d, 0), maxRetryAfter)
}

// logAttempt writes an attempt to the delivery log; it goes on after a
// shutdown's cancel, briefly, so the last attempts are not lost.
func (n *Notifier) logAttempt(ctx context.Context, row queries.WebhookDeliveryAddParams) {
	if n.q == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), logWriteTimeout)
	defer cancel()
	if err := n.q.WebhookDeliveryAdd(ctx, row); err != nil {
		n.log.WarnContext(ctx, "alerts: writing the delivery log", "delivery", row.DeliveryID, "error", err)
	}
}

// safeURL is the URL as stored and logged: without userinfo, query and
// fragment, where tokens are put.
func safeURL(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return "(unparsable URL)"
	}
	u.User = nil
	u.RawQuery, u.ForceQuery, u.Fragment, u.RawFragment = "", false, "", ""
	return u.String()
}

// redactor returns a function that removes from a message the secret and
// the parts of rawURL that safeURL drops (net/http's errors quote the
// whole URL).
func redactor(rawURL, secret string) func(string) string {
	var pairs []string
	add := func(s, with string) {
		if len(s) >= 4 {
			pairs = append(pairs, s, with)
		}
	}
	add(rawURL, safeURL(rawURL))
	add(secret, "***")
	if u, err := url.Parse(rawURL); err == nil {
		if p, ok := u.User.Password(); ok {
			add(p, "***")
		}
		add(u.RawQuery, "***")
		for _, vs := range u.Query() {
			for _, v := range vs {
				add(v, "***")
			}
		}
	}
	r := strings.NewReplacer(pairs...)
	return r.Replace
}

// printable makes a receiver's answer fit for a log line and a text
// column: valid UTF-8, no control characters (PostgreSQL refuses NUL), at
// most limit runes.
func printable(b []byte, limit int) string {
	s := strings.ToValidUTF8(string(b), "?")
	var out strings.Builder
	n := 0
	for _, r := range s {
		if n == limit {
			out.WriteString("…")
			break
		}
		if r < 0x20 || r == 0x7f {
			r = ' '
		}
		out.WriteRune(r)
		n++
	}
	return strings.TrimSpace(out.String())
}

// newID is a delivery id: 16 random bytes in hex.
func newID() string {
	var b [16]byte
	_, _ = cryptorand.Read(b[:]) // never fails (crypto/rand panics instead)
	return hex.EncodeToString(b[:])
}
