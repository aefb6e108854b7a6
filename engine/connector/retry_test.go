package connector

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func TestBackoffHasFullJitterAndACap(t *testing.T) {
	t.Parallel()
	base, limit := 10*time.Millisecond, 80*time.Millisecond
	for attempt := range 40 {
		ceiling := min(base<<min(attempt, 10), limit)
		require.Equal(t, ceiling, BackoffCeiling(attempt, base, limit))
		for range 20 {
			d := Backoff(attempt, base, limit)
			require.GreaterOrEqual(t, d, time.Duration(0))
			require.LessOrEqual(t, d, ceiling)
		}
	}
}

func TestSleepStopsWithItsContext(t *testing.T) {
	t.Parallel()
	require.True(t, Sleep(context.Background(), time.Millisecond))
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	require.False(t, Sleep(ctx, time.Hour), "a cancelled context ends the wait at once")
	require.False(t, Sleep(ctx, 0))
}

func TestBackoffHalfJitterStaysInTheUpperHalf(t *testing.T) {
	t.Parallel()
	base, limit := 10*time.Millisecond, 80*time.Millisecond
	for attempt := range 10 {
		ceiling := BackoffCeiling(attempt, base, limit)
		for range 50 {
			d := BackoffHalfJitter(attempt, base, limit)
			require.GreaterOrEqual(t, d, ceiling/2)
			require.LessOrEqual(t, d, ceiling)
		}
	}
	require.Zero(t, BackoffHalfJitter(3, 0, 0))
}
