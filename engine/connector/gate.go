package connector

import (
	"context"
	"time"
)

type gateKey struct{}

// WithGate returns a context whose writes must each pass gate first: a
// target asks CheckGate right before it sends anything that could change
// the target. The engine gates a run's writes on its claim on the sync, so
// that a run that lost it (paused past its lease) sends nothing more.
func WithGate(ctx context.Context, gate func() error) context.Context {
	return context.WithValue(ctx, gateKey{}, gate)
}

// CheckGate returns the error of ctx's gate, or nil when it has none or the
// gate lets the write through. A target that gets an error must not send
// the write, and reports the change as not done.
func CheckGate(ctx context.Context) error {
	if gate, ok := ctx.Value(gateKey{}).(func() error); ok {
		return gate()
	}
	return nil
}

type observerKey struct{}

// Observer is told of every request a target makes: its HTTP status (0 for
// none, as for a network error) and how long it took.
type Observer func(status int, took time.Duration)

// WithObserver returns a context whose targets report their requests to
// observe (the server's metrics).
func WithObserver(ctx context.Context, observe Observer) context.Context {
	return context.WithValue(ctx, observerKey{}, observe)
}

// Observe reports a request to ctx's observer, if it has one.
func Observe(ctx context.Context, status int, took time.Duration) {
	if o, ok := ctx.Value(observerKey{}).(Observer); ok {
		o(status, took)
	}
}
