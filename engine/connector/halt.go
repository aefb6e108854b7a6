package connector

import (
	"sync"
	"sync/atomic"
)

// Halt ends a call that writes changes concurrently at its first fatal
// error (bad credentials): goroutines check Stopped before they start a
// change, so nothing new is sent once one change has failed that way, and
// the changes not sent stay undone. The zero value is ready to use.
type Halt struct {
	stopped atomic.Bool
	mu      sync.Mutex
	err     *Error
}

// Stop records err, if it is the first, and stops the call.
func (h *Halt) Stop(err *Error) {
	h.mu.Lock()
	if h.err == nil {
		h.err = err
	}
	h.mu.Unlock()
	h.stopped.Store(true)
}

// Stopped reports whether the call was stopped.
func (h *Halt) Stopped() bool { return h.stopped.Load() }

// Err returns the error that stopped the call, or nil.
func (h *Halt) Err() *Error {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.err
}
