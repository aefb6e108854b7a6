package httptarget

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/time/rate"

	"github.com/ferry-sync/ferry/engine/connector"
)

// budget is what a connection may spend: requests in flight, requests per
// second, per window and per day, and the pause a 429 imposes. It is
// shared by every Target opened in the process for the same connection
// (the same base URL, credentials and limits): two syncs on one connection
// never exceed its limits together, because they draw on one budget.
type budget struct {
	key string

	// slots bounds the requests in flight (and the changes being worked on).
	slots   chan struct{}
	limiter *rate.Limiter // nil: no rate limit
	window  *window       // nil: none
	quota   *quota        // nil: none

	// A 429 pauses the whole connection until pausedUntil, in nanoseconds
	// since epoch (0: never paused). Every request reads it: no lock.
	epoch       time.Time
	pausedUntil atomic.Int64
	// throttled is set by a 429 and cleared by any other answer: while it
	// is set, requests go one at a time (throttle), so that the end of a
	// pause does not send a burst into the same limit.
	throttled atomic.Bool
	throttle  chan struct{}
	// streak counts the 429s in a row of requests sent one after another
	// (not of those that were in flight together when the limit was met:
	// they are one event); it grows the backoff when the answers carry no
	// Retry-After. limitedAt is when the last one grew it, in nanoseconds
	// since epoch.
	streak    atomic.Int64
	limitedAt atomic.Int64

	refs int       // targets using it, guarded by budgets.mu
	idle time.Time // when refs fell to 0
}

// budgets holds the process's budgets by connection.
var budgets = struct {
	mu sync.Mutex
	m  map[string]*budget
}{m: map[string]*budget{}}

// budgetKey names the connection a budget belongs to: its base URL, its
// auth settings (which name the credentials) and its limits.
func budgetKey(cfg Config, s settings) string {
	b, _ := json.Marshal(struct {
		BaseURL     string
		Auth        Auth
		Concurrency int
		RateLimit   float64
		RateWindow  *RateWindow
		DailyQuota  int
	}{s.baseURL, cfg.Auth, s.concurrency, s.rateLimit, s.window, s.dailyQuota})
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}

// acquireBudget returns the connection's budget, creating it for the first
// target. Each call must be matched by one releaseBudget.
func acquireBudget(s settings) *budget {
	budgets.mu.Lock()
	defer budgets.mu.Unlock()
	now := time.Now()
	for k, b := range budgets.m {
		// Unused budgets are dropped once nothing they hold can matter: a
		// daily quota's count for a day, a pause or a window for minutes.
		keep := 10 * time.Minute
		if b.quota != nil {
			keep = 25 * time.Hour
		}
		if b.refs == 0 && now.Sub(b.idle) > keep {
			delete(budgets.m, k)
		}
	}
	if b, ok := budgets.m[s.budgetKey]; ok {
		b.refs++
		return b
	}
	b := &budget{
		key:      s.budgetKey,
		slots:    make(chan struct{}, s.concurrency),
		epoch:    now,
		throttle: make(chan struct{}, 1),
		refs:     1,
	}
	if s.rateLimit > 0 {
		b.limiter = rate.NewLimiter(rate.Limit(s.rateLimit), 1)
	}
	if s.window != nil {
		b.window = newWindow(s.window.Requests, time.Duration(s.window.Per))
	}
	if s.dailyQuota > 0 {
		b.quota = &quota{limit: s.dailyQuota}
	}
	budgets.m[s.budgetKey] = b
	return b
}

func releaseBudget(b *budget) {
	budgets.mu.Lock()
	defer budgets.mu.Unlock()
	b.refs--
	if b.refs == 0 {
		b.idle = time.Now()
	}
}

func (b *budget) acquire(ctx context.Context) bool {
	select {
	case b.slots <- struct{}{}:
		return true
	case <-ctx.Done():
		return false
	}
}

func (b *budget) release() { <-b.slots }

// waitLimits waits for the connection's pause, rate limit and window, and
// takes one request from its daily quota. A used-up quota is a
// RateLimited error; a ctx that ended is nil with ctx.Err() set. slot is
// the window grant the request holds (-1 for none): give it back with
// windowDone once the answer is in.
func (b *budget) waitLimits(ctx context.Context, t *Target) (slot int, qerr *connector.Error) {
	slot = -1
	if !b.waitPause(ctx) {
		return slot, nil
	}
	if b.limiter != nil && !b.pace(ctx) {
		return slot, nil
	}
	if b.window != nil {
		var ok bool
		if slot, ok = b.window.wait(ctx); !ok {
			return -1, nil
		}
	}
	if b.quota != nil {
		if reset, ok := b.quota.take(time.Now()); !ok {
			b.windowDone(slot)
			e := t.newError(connector.RateLimited, 0, fmt.Sprintf(
				"the connection's daily_quota of %d requests is used up until %s UTC: nothing more is sent before then",
				b.quota.limit, reset.UTC().Format("2006-01-02 15:04")), nil)
			e.RetryAfter = time.Until(reset)
			return -1, e
		}
	}
	return slot, nil
}

// paceStep is the grid rate_limit's requests start on.
const paceStep = 50 * time.Millisecond

// pace waits for the rate limit's next token, reporting false when ctx
// ended first. The wait ends on the next multiple of paceStep rather than
// at the token's own time: the requests whose tokens come due within one
// step start together (rate_limit/20 of them), so that the process wakes
// once per step instead of once per request.
func (b *budget) pace(ctx context.Context) bool {
	r := b.limiter.Reserve()
	d := r.Delay()
	if d == 0 {
		return true
	}
	step := paceStep.Nanoseconds()
	due := time.Now().Add(d).UnixNano()
	t := time.NewTimer(time.Until(time.Unix(0, (due+step-1)/step*step)))
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		r.Cancel()
		return false
	}
}

// windowDone gives a window grant back once its request's answer is in.
func (b *budget) windowDone(slot int) {
	if b.window != nil && slot >= 0 {
		b.window.done(slot)
	}
}

// learn notes an answer: any but a 429 ends the throttling.
func (b *budget) learn(status int, err error) {
	if err == nil && status != 0 && status != http.StatusTooManyRequests {
		b.streak.Store(0)
		b.throttled.Store(false)
	}
}

// limited handles a 429: it pauses the connection for the answer's
// Retry-After, or, without one (or with 0), for a backoff that grows with
// the 429s in a row, and throttles it to one request at a time. It returns
// the wait, and false when the Retry-After is longer than max_retry_after
// (the change then fails as RateLimited at once).
func (b *budget) limited(header http.Header, sentAt time.Time, t *Target) (time.Duration, bool) {
	sent := int64(sentAt.Sub(b.epoch))
	var streak int64
	for {
		last := b.limitedAt.Load()
		if sent < last {
			// Sent before the last 429 was answered: the same event.
			streak = max(0, b.streak.Load()-1)
			break
		}
		if b.limitedAt.CompareAndSwap(last, int64(time.Since(b.epoch))) {
			streak = b.streak.Add(1) - 1
			break
		}
	}
	wait, given := parseRetryAfter(header.Get("Retry-After"), time.Now())
	if !given || wait <= 0 {
		wait = connector.BackoffHalfJitter(int(streak), t.s.backoffBase, t.s.backoffMax)
	}
	if wait > t.s.maxRetryAfter {
		return wait, false
	}
	b.pauseFor(wait)
	b.throttled.Store(true)
	return wait, true
}

// pauseFor holds back every request on the connection for d (a 429).
func (b *budget) pauseFor(d time.Duration) {
	until := int64(time.Since(b.epoch) + d)
	for {
		cur := b.pausedUntil.Load()
		if until <= cur || b.pausedUntil.CompareAndSwap(cur, until) {
			return
		}
	}
}

// waitPause waits until the connection is not paused, reporting false when
// ctx ended.
func (b *budget) waitPause(ctx context.Context) bool {
	for {
		until := b.pausedUntil.Load()
		if until == 0 {
			return ctx.Err() == nil
		}
		d := time.Duration(until) - time.Since(b.epoch)
		if d <= 0 {
			return ctx.Err() == nil
		}
		if !connector.Sleep(ctx, d) {
			return false
		}
	}
}

// window allows at most n requests in any span of per. A grant counts
// from when its request's answer came back, not from when it was sent:
// the server counts the request when it arrives, which is after it was
// sent and before its answer came back, so n+1 requests can never arrive
// within per, however late the network carries them. (A small margin
// covers a server whose clock reads the span a little short.)
type window struct {
	mu     sync.Mutex
	n      int
	span   time.Duration
	grants []time.Time // a ring of the last n grants: when they ended
	busy   []bool      // their requests are still out
	next   int         // the oldest grant
}

func newWindow(n int, per time.Duration) *window {
	return &window{n: n, span: per + min(per/50, 100*time.Millisecond), grants: make([]time.Time, 0, n), busy: make([]bool, 0, n)}
}

// wait takes a grant, waiting for the oldest to end and fall out of the
// window; false when ctx ended.
func (w *window) wait(ctx context.Context) (int, bool) {
	for {
		w.mu.Lock()
		now := time.Now()
		if len(w.grants) < w.n {
			w.grants, w.busy = append(w.grants, now), append(w.busy, true)
			slot := len(w.grants) - 1
			w.mu.Unlock()
			return slot, true
		}
		i := w.next
		pause := min(w.span/20, 10*time.Millisecond) // its request is still out
		if !w.busy[i] {
			free := w.grants[i].Add(w.span)
			if !now.Before(free) {
				w.grants[i], w.busy[i] = now, true
				w.next = (w.next + 1) % w.n
				w.mu.Unlock()
				return i, true
			}
			pause = free.Sub(now)
		}
		w.mu.Unlock()
		if !connector.Sleep(ctx, pause) {
			return -1, false
		}
	}
}

// done ends a grant: the window counts it from now.
func (w *window) done(slot int) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.grants[slot], w.busy[slot] = time.Now(), false
}

// quota counts requests per UTC day.
type quota struct {
	mu    sync.Mutex
	limit int
	day   int64
	used  int
}

// take counts one request, or reports when the quota resets.
func (q *quota) take(now time.Time) (time.Time, bool) {
	q.mu.Lock()
	defer q.mu.Unlock()
	day := now.UTC().Unix() / 86400
	if day != q.day {
		q.day, q.used = day, 0
	}
	if q.used >= q.limit {
		return time.Unix((day+1)*86400, 0), false
	}
	q.used++
	return time.Time{}, true
}
