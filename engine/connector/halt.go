package connector

import (
	"context"
	"sync"
	"sync/atomic"
)

// Halt ends a call that writes changes concurrently at its first fatal
// error (bad credentials, or a gate that closed: see WithGate): goroutines
// check Stopped before they start a change, so nothing new is sent once the
// call is stopped, and the changes not sent stay undone. The zero value is
// ready to use.
type Halt struct {
	stopped atomic.Bool
	mu      sync.Mutex
	err     error
}

// Stop records err, if it is the first, and stops the call.
func (h *Halt) Stop(err *Error) { h.stop(err) }

func (h *Halt) stop(err error) {
	h.mu.Lock()
	if h.err == nil {
		h.err = err
	}
	h.mu.Unlock()
	h.stopped.Store(true)
}

// Pass asks ctx's gate whether a write may be sent now. When it may not,
// the call stops with the gate's error and Pass returns false: the caller
// must not send, and reports the change as not done.
func (h *Halt) Pass(ctx context.Context) bool {
	if h.Stopped() {
		return false
	}
	if err := CheckGate(ctx); err != nil {
		h.stop(err)
		return false
	}
	return true
}

// Stopped reports whether the call was stopped.
func (h *Halt) Stopped() bool { return h.stopped.Load() }

// Err returns the error that stopped the call, or nil.
func (h *Halt) Err() error {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.err
}
