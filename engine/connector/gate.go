package connector

import "context"

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
