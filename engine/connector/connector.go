// Package connector owns the targets Ferry writes to: the Target interface,
// the classified errors every kind reports, and the kinds themselves (http,
// postgres). It holds no engine logic: deciding what to write, hashing and
// link tables belong to package engine.
package connector

import (
	"context"
	"errors"
	"fmt"
	"net"
	"time"
)

// Op is what a change asks the target to do.
type Op string

const (
	OpInsert Op = "insert"
	OpUpdate Op = "update"
)

// Change is one record to write. Payload values are JSON-shaped: nil, bool,
// int64, float64, json.Number (exact numerics), string, time.Time,
// map[string]any and []any.
type Change struct {
	Op       Op
	SourceID string // for error messages and idempotency keys; never sent unless mapped
	TargetID string // set for OpUpdate
	Payload  map[string]any
}

// Result is the outcome of one change.
type Result struct {
	// Done is false when the change was never attempted (the call stopped
	// early, for example on an auth error): the engine leaves it untouched.
	// An insert that was in flight when the call stopped and whose outcome is
	// unknown is Done with an Ambiguous error; an update in that state (it is
	// idempotent) is Done with a Retryable error.
	Done     bool
	TargetID string // the id the target holds the record under
	Err      *Error // nil on success
}

// Target writes changes to one connection.
type Target interface {
	// Write applies the changes to object and reports one result per change,
	// in order. A non-nil error means the call as a whole failed (bad
	// credentials, cancelled context); results then say which changes were
	// done before it stopped. Results always has one entry per change, even
	// with a non-nil error. On an auth failure the change that met it is Done
	// with the Auth error and the error returned is that same *Error; on a
	// cancelled context the error wraps ctx.Err().
	Write(ctx context.Context, object string, changes []Change) ([]Result, error)
	// Close releases connections and pools.
	Close() error
}

// Finder is the optional capability to look records up by field values.
// It returns the matching records (each with its target id under "id").
type Finder interface {
	Find(ctx context.Context, object string, match map[string]any) ([]map[string]any, error)
}

// Deleter is the optional capability to delete records by target id (a
// sync's deletes, ferry rollback). A record already gone counts as
// deleted: Done, no error. Results come one per id, in order.
type Deleter interface {
	Delete(ctx context.Context, object string, targetIDs []string) ([]Result, error)
}

// IDTyper is the optional capability to say what SQL type the target's ids
// have, so that link tables can store target_id in a type analysts can JOIN
// against the target's own table without casts. Kinds without it get text.
type IDTyper interface {
	IDType(ctx context.Context, object string) (string, error)
}

// SecretHolder is the optional capability to say which secrets a target
// holds (tokens, passwords, connection URLs with a password), as their raw
// values, so that the engine can redact them (NewRedactor) from everything
// it stores or prints: link rows, runs, logs. The kinds redact their own
// errors too; this covers what reaches the engine by other paths.
type SecretHolder interface {
	Secrets() []string
}

// Class tells the engine what to do with a failed change.
type Class string

const (
	// Rejected: the target refused the record as invalid. Recorded on the
	// record's link row; retried on later runs, never within this one.
	Rejected Class = "rejected"
	// Retryable: network trouble or a 5xx; the connector already retried.
	Retryable Class = "retryable"
	// RateLimited: the target kept answering 429 beyond the retry budget.
	RateLimited Class = "rate_limited"
	// Auth: credentials are wrong or lack permission: stop the run.
	Auth Class = "auth"
	// Ambiguous: the request may have been applied (a timeout after the
	// request was sent). An insert must be reconciled before it is re-sent.
	Ambiguous Class = "ambiguous"
	// NotFound: an update addressed a target id the target does not have.
	NotFound Class = "not_found"
	// Unreachable: the target could not be reached at all (connection
	// refused, no such host) after the connector's retries, so nothing was
	// sent: the call stops, like Auth, and the run with it.
	Unreachable Class = "unreachable"
)

// Unreached reports whether err says the target could not be reached at
// all: no connection was made, so no request can have arrived.
func Unreached(err error) bool {
	var dns *net.DNSError
	if errors.As(err, &dns) {
		return true
	}
	var op *net.OpError
	return errors.As(err, &op) && op.Op == "dial"
}

// Error is a classified failure of one change or of a whole call.
type Error struct {
	Class      Class
	Status     int           // HTTP status or 0
	Message    string        // what the target said, trimmed
	RetryAfter time.Duration // for RateLimited
	Err        error         // the underlying error, if any
	// Body is the target's answer as it came (for an HTTP target, the
	// response body), with the connection's secrets redacted and capped at
	// MaxErrorBody bytes, for the engine to store beside Message: Message
	// says what went wrong, Body is the evidence. "" when there was none.
	Body string
}

// MaxErrorBody is the most of a target's answer an Error keeps in Body.
const MaxErrorBody = 2048

func (e *Error) Error() string {
	msg := e.Message
	if msg == "" && e.Err != nil {
		msg = e.Err.Error()
	}
	if e.Status != 0 {
		return fmt.Sprintf("%s (HTTP %d): %s", e.Class, e.Status, msg)
	}
	return fmt.Sprintf("%s: %s", e.Class, msg)
}

func (e *Error) Unwrap() error { return e.Err }

// ClassOf returns the class of err, or "" when err carries none.
func ClassOf(err error) Class {
	var ce *Error
	if errors.As(err, &ce) {
		return ce.Class
	}
	return ""
}

// Pacer is the optional capability to say how many writes a target keeps
// in flight at once. The engine hands such a target its changes in chunks
// of a few times that, each preceded by its write intent, so that a crash
// leaves only the changes of the chunks in flight to settle, not a page's.
type Pacer interface {
	InFlight() int
}

// Use is what a sync needs of an object on a target: the fields it writes
// (nil: not known, as with a transform) and whether it looks records up
// (match_on). An empty Object asks only whether the target answers.
type Use struct {
	Object string
	Fields []string
	Lookup bool
}

// Checker is the optional capability to check, without writing anything,
// that a target answers and that an object can be written as a sync uses
// it: that it exists, has the fields, and can be looked up when asked.
// Check returns every problem it finds (errors.Join).
type Checker interface {
	Check(ctx context.Context, use Use) error
}
