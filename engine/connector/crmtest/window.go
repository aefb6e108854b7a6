package crmtest

import (
	"sync"
	"time"
)

// slidingWindow admits at most n requests in any span of per, counting the
// requests it admitted, and keeps the peak of all requests (refused too)
// seen in any such span.
type slidingWindow struct {
	n          int
	per        time.Duration
	retryAfter bool

	mu       sync.Mutex
	admitted []time.Time // in order; those older than per are dropped
	all      []time.Time // every arrival within per, for the peak
	refused  int
	peak     int
}

// admit reports whether a request arriving at now is within the limit, or
// how long until it would be.
func (w *slidingWindow) admit(now time.Time) (time.Duration, bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	cut := now.Add(-w.per)
	w.admitted = dropBefore(w.admitted, cut)
	w.all = append(dropBefore(w.all, cut), now)
	w.peak = max(w.peak, len(w.all))
	if len(w.admitted) >= w.n {
		w.refused++
		return w.admitted[0].Sub(cut), false
	}
	w.admitted = append(w.admitted, now)
	return 0, true
}

func (w *slidingWindow) counts() (int, int) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.refused, w.peak
}

// dropBefore removes the times not after cut (they are in order).
func dropBefore(times []time.Time, cut time.Time) []time.Time {
	i := 0
	for i < len(times) && !times[i].After(cut) {
		i++
	}
	if i == 0 {
		return times
	}
	return append(times[:0], times[i:]...)
}
