package connector

import (
	"context"
	"math/rand/v2"
	"time"
)

// BackoffCeiling is min(limit, base·2^attempt): the longest wait before retry
// number attempt (0 for the first retry).
func BackoffCeiling(attempt int, base, limit time.Duration) time.Duration {
	ceiling := base
	for i := 0; i < attempt && ceiling < limit; i++ {
		ceiling *= 2
	}
	return min(ceiling, limit)
}

// Backoff is exponential backoff with full jitter: a random wait between 0
// and BackoffCeiling, so that many clients retrying at once spread out.
func Backoff(attempt int, base, limit time.Duration) time.Duration {
	ceiling := BackoffCeiling(attempt, base, limit)
	if ceiling <= 0 {
		return 0
	}
	return rand.N(ceiling + 1)
}

// Sleep waits d, or until ctx ends; it reports whether ctx is still live.
func Sleep(ctx context.Context, d time.Duration) bool {
	if d <= 0 {
		return ctx.Err() == nil
	}
	timer := time.NewTimer(d)
	defer timer.Stop()
	select {
	case <-timer.C:
		return true
	case <-ctx.Done():
		return false
	}
}

// BackoffHalfJitter is a wait between half of BackoffCeiling and all of it:
// for a pause that must not be near zero (a rate limit that gave no
// Retry-After: a retry at once would only meet it again) and should still
// spread clients that met the limit together.
func BackoffHalfJitter(attempt int, base, limit time.Duration) time.Duration {
	ceiling := BackoffCeiling(attempt, base, limit)
	if ceiling <= 1 {
		return ceiling
	}
	half := ceiling / 2
	return half + rand.N(ceiling-half+1)
}
