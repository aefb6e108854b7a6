package scripting

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"runtime/debug"
	"slices"
	"strconv"
	"time"

	"go.starlark.net/starlark"
)

// pollSteps is how often (in Starlark steps) a running call checks its
// deadline and its context: often enough to stop within a millisecond or
// so, rarely enough to cost nothing.
const pollSteps = 10_000

// Printed output is capped per call so print() in a loop cannot fill
// memory through the engine.
const (
	maxPrintedLines = 1000
	maxPrintedBytes = 1 << 20
)

// call is the state of one call into a script: the Starlark thread, its
// limits, what it printed and what it told the engine through pq.
type call struct {
	thread   starlark.Thread
	ctx      context.Context
	prog     *program
	deadline time.Time // set on first need: see deadlineAt
	timed    bool      // deadline is set
	host     Host      // nil: no engine behind this call
	cache    *lookupCache
	sourceID string

	// The arguments of transform, kept here to save allocations.
	pq     pqModule
	source sourceRecord

	stopKind ErrorKind
	stopMsg  string

	printed      []string
	printedBytes int
	truncated    bool

	hostCtx    context.Context
	hostCancel context.CancelFunc

	// What the script asked of the engine through pq.
	targetID   string
	insert     bool
	skip       bool
	skipReason string
}

// newCall prepares a call. Host calls go through cache when it is not nil
// (in the engine's process; a worker's calls are cached by its parent).
func newCall(ctx context.Context, p *program, host Host, cache *lookupCache, sourceID string) *call {
	c := &call{ctx: ctx, prog: p, host: host, cache: cache, sourceID: sourceID}
	c.pq.c = c
	c.thread.Name = p.script
	c.thread.Print = c.print
	c.thread.OnMaxSteps = c.onMaxSteps
	c.thread.SetMaxExecutionSteps(min(pollSteps, p.maxSteps))
	return c
}

// end releases what the call holds.
func (c *call) end() {
	if c.hostCancel != nil {
		c.hostCancel()
	}
}

// onMaxSteps runs every pollSteps steps: it enforces the step limit, the
// deadline and the caller's context, then lets the thread run on.
func (c *call) onMaxSteps(t *starlark.Thread) {
	switch {
	case t.Steps >= c.prog.maxSteps:
		c.stop(KindSteps, fmt.Sprintf("stopped after %d steps, the limit (an endless loop?)", c.prog.maxSteps))
	case c.timedOut():
		c.stop(KindTimeout, fmt.Sprintf("stopped after running longer than %s", c.prog.timeout))
	case c.ctx.Err() != nil:
		c.stop(KindCancelled, "stopped: "+context.Cause(c.ctx).Error())
	default:
		t.SetMaxExecutionSteps(min(t.Steps+pollSteps, c.prog.maxSteps))
	}
}

// deadlineAt returns the call's deadline (zero for none). The clock starts
// at the first look, the first poll (pollSteps steps in) or pq call, which
// spares short calls reading the clock at all.
func (c *call) deadlineAt() time.Time {
	if !c.timed {
		c.timed = true
		if c.prog.timeout > 0 {
			c.deadline = time.Now().Add(c.prog.timeout)
		}
		if d, ok := c.ctx.Deadline(); ok && (c.deadline.IsZero() || d.Before(c.deadline)) {
			c.deadline = d
		}
	}
	return c.deadline
}

func (c *call) timedOut() bool {
	d := c.deadlineAt()
	return !d.IsZero() && time.Now().After(d)
}

func (c *call) stop(kind ErrorKind, msg string) {
	if c.stopKind == "" {
		c.stopKind, c.stopMsg = kind, msg
	}
	c.thread.Cancel(msg)
}

func (c *call) print(_ *starlark.Thread, msg string) {
	c.emit(msg)
}

// emit records a printed or logged line and hands it to the Host.
func (c *call) emit(msg string) {
	if c.truncated {
		return
	}
	if len(c.printed) >= maxPrintedLines || c.printedBytes+len(msg) > maxPrintedBytes {
		c.truncated = true
		msg = "… (more output dropped)"
	}
	c.printed = append(c.printed, msg)
	c.printedBytes += len(msg)
	if c.host != nil {
		c.host.Log(msg)
	}
}

// hostContext is the context for a Host call: the caller's, bounded by the
// call's deadline. Made on the first pq call that needs it.
func (c *call) hostContext() context.Context {
	if c.hostCtx == nil {
		if d := c.deadlineAt(); d.IsZero() {
			c.hostCtx, c.hostCancel = context.WithCancel(c.ctx)
		} else {
			c.hostCtx, c.hostCancel = context.WithDeadline(c.ctx, d)
		}
	}
	return c.hostCtx
}

// hostAPI is the Host pq calls go through, or an error when there is none.
func (c *call) hostAPI(fn string) (Host, error) {
	if c.host == nil {
		return nil, &hostError{call: fn, err: ErrNoHost}
	}
	if c.cache != nil {
		return cachedHost{cache: c.cache, host: c.host}, nil
	}
	return c.host, nil
}

// run executes fn on the call's thread and turns every way it can fail (an
// error, a limit, a Go panic) into a *ScriptError.
func (c *call) run(fn func() (starlark.Value, error)) (v starlark.Value, err error) {
	if cerr := c.ctx.Err(); cerr != nil {
		return nil, &ScriptError{Kind: KindCancelled, Script: c.prog.script, SourceID: c.sourceID,
			Message: "not run: " + context.Cause(c.ctx).Error(), cause: cerr}
	}
	defer func() {
		if r := recover(); r != nil {
			v = nil
			err = &ScriptError{Kind: KindRuntime, Script: c.prog.script, File: c.prog.script, SourceID: c.sourceID,
				Message: fmt.Sprintf("internal error: %v", r), Backtrace: string(debug.Stack())}
		}
	}()
	v, err = fn()
	if err == nil {
		return v, nil
	}
	var se *ScriptError
	if errors.As(err, &se) && se.Kind != KindRuntime {
		return nil, se
	}
	var ee *starlark.EvalError
	if !errors.As(err, &ee) {
		return nil, &ScriptError{Kind: KindRuntime, Script: c.prog.script, File: c.prog.script, SourceID: c.sourceID, Message: err.Error(), cause: err}
	}
	se = evalError(c.prog.script, c.sourceID, ee)
	if c.stopKind != "" {
		se.Kind, se.Message = c.stopKind, c.stopMsg
		if c.stopKind == KindCancelled {
			se.cause = context.Cause(c.ctx)
		}
	}
	return nil, se
}

// TransformInput is one record for a transform call.
type TransformInput struct {
	SourceID string
	// Source is the source row, read-only in the script (source_record).
	Source map[string]any
	// Target is the mapped record, a mutable dict in the script
	// (target_record). Nil is an empty dict.
	Target map[string]any
	// TargetID is the linked target id; "" passes None.
	TargetID string
	// Host serves the record's pq calls; nil makes them fail with ErrNoHost.
	Host Host
}

// TransformOutput is what a transform decided for one record.
type TransformOutput struct {
	// Payload is the record to write; nil when the record is skipped.
	Payload map[string]any
	// SkipReason says why Payload is nil: "transform returned None", or
	// the reason the script gave to pq.skip.
	SkipReason string
	// TargetID is set when the script said "update the record with this
	// id" (pq.update_id): the engine updates it and links it to SourceID.
	TargetID string
	// Insert is set when the script said "insert" (pq.insert) although the
	// record is linked: the engine inserts a new target record.
	Insert bool
	// Printed holds what print() and pq.log wrote, in order. Set on error
	// too.
	Printed []string
}

// BatchResult is the outcome of one record of TransformBatch.
type BatchResult struct {
	Output TransformOutput
	Err    error // a *ScriptError
}

// SkipReturnedNone is the SkipReason of a transform that returned None.
const SkipReturnedNone = "transform returned None"

// runTransform calls a program's transform on one record. It is the one
// place a transform runs, in this process or in a worker.
func runTransform(ctx context.Context, p *program, in *TransformInput, host Host, cache *lookupCache) (TransformOutput, error) {
	c := newCall(ctx, p, host, cache, in.SourceID)
	defer c.end()
	var out TransformOutput
	v, err := c.run(func() (starlark.Value, error) {
		if err := checkRecord(in.Source, "source_record"); err != nil {
			return nil, err
		}
		target, err := dictFromMap(in.Target, "target_record", &p.keys)
		if err != nil {
			return nil, err
		}
		var targetID starlark.Value = starlark.None
		if in.TargetID != "" {
			targetID = starlark.String(in.TargetID)
		}
		c.source.fields = in.Source
		args := starlark.Tuple{&c.source, target, &c.pq, nil}[:3]
		var kwargs []starlark.Tuple
		switch p.passTargetID {
		case 1:
			args = append(args, targetID)
		case 2:
			kwargs = []starlark.Tuple{{starlark.String("target_id"), targetID}}
		}
		return starlark.Call(&c.thread, p.entry, args, kwargs)
	})
	out.Printed = c.printed
	if err != nil {
		return out, err
	}
	if err := c.decide(v, in.Target, &out); err != nil {
		return out, err
	}
	return out, nil
}

// decide turns the transform's return value and its pq requests into the
// output.
func (c *call) decide(v starlark.Value, target map[string]any, out *TransformOutput) error {
	fail := func(msg string) error {
		pos := c.prog.entry.Position()
		return &ScriptError{Kind: KindRuntime, Script: c.prog.script, File: pos.Filename(), Line: int(pos.Line),
			SourceID: c.sourceID, Message: msg}
	}
	if c.targetID != "" && c.insert {
		return fail("pq.update_id and pq.insert were both called: choose one")
	}
	out.TargetID, out.Insert = c.targetID, c.insert
	if c.skip {
		out.SkipReason = c.skipReason
		return nil
	}
	if v == starlark.None {
		out.SkipReason = SkipReturnedNone
		return nil
	}
	switch v.(type) {
	case *starlark.Dict, *sourceRecord:
	default:
		return fail(fmt.Sprintf("transform returned a %s: return a dict (the payload) or None (skip the record)", v.Type()))
	}
	payload, err := payloadFromValue(v, target)
	if err != nil {
		return fail("returned payload: " + err.Error())
	}
	out.Payload = payload
	return nil
}

// payloadFromValue converts the returned dict. A top-level value equal to
// the mapped record's own (an unchanged field, the common case) reuses the
// engine's Go value instead of converting it again.
func payloadFromValue(v starlark.Value, target map[string]any) (map[string]any, error) {
	d, ok := v.(*starlark.Dict)
	if !ok || len(target) == 0 {
		return mapFromValue(v, "payload")
	}
	m := make(map[string]any, d.Len())
	for _, kv := range d.Items() {
		k, ok := kv[0].(starlark.String)
		if !ok {
			return nil, fmt.Errorf("payload: dict key %s is a %s, want a string", kv[0].String(), kv[0].Type())
		}
		if orig, ok := target[string(k)]; ok && sameScalar(kv[1], orig) {
			m[string(k)] = orig
			continue
		}
		gv, err := fromStarlark(kv[1], 1)
		if err != nil {
			return nil, err.key(string(k)).at("payload")
		}
		m[string(k)] = gv
	}
	return m, nil
}

// sameScalar reports whether v is the immutable value the engine's orig
// converts to, so orig can stand for it.
func sameScalar(v starlark.Value, orig any) bool {
	switch x := v.(type) {
	case starlark.String:
		o, ok := orig.(string)
		return ok && o == string(x)
	case starlark.Int:
		o, ok := orig.(int64)
		if !ok {
			return false
		}
		i, ok := x.Int64()
		return ok && i == o
	case starlark.Float:
		o, ok := orig.(float64)
		return ok && o == float64(x)
	case Decimal:
		o, ok := orig.(json.Number)
		return ok && string(o) == x.s
	case starlark.Bool:
		o, ok := orig.(bool)
		return ok && o == bool(x)
	}
	return false
}

// runMain calls a standalone script's main(pq).
func runMain(ctx context.Context, p *program, host Host, cache *lookupCache) ([]string, error) {
	c := newCall(ctx, p, host, cache, "")
	defer c.end()
	_, err := c.run(func() (starlark.Value, error) {
		var args starlark.Tuple
		if p.passPQ {
			c.pq.standalone = true
			args = starlark.Tuple{&c.pq}
		}
		return starlark.Call(&c.thread, p.entry, args, nil)
	})
	return c.printed, err
}

// checkRecord walks an engine record and reports the first value no script
// could read, naming where it sits: the source record converts lazily, so
// its types are checked up front (without allocating, unless one is bad).
func checkRecord(m map[string]any, name string) error {
	for k, v := range m {
		if err := checkValue(v, 1); err != nil {
			path := childPath(name, k)
			for _, seg := range slices.Backward(err.segs) {
				path += seg
			}
			return fmt.Errorf("%s: %s", path, err.msg)
		}
	}
	return nil
}

// badValue is where checkValue found a bad value: path segments from the
// value up, and what is wrong.
type badValue struct {
	segs []string
	msg  string
}

func checkValue(v any, depth int) *badValue {
	if depth > maxDepth {
		return &badValue{msg: fmt.Sprintf("nested deeper than %d levels", maxDepth)}
	}
	switch x := v.(type) {
	case nil, string, bool, int64, int, int32, int16, int8, uint64, uint, uint32, uint16, uint8,
		float64, float32, time.Time, time.Duration, []byte, Decimal:
		return nil
	case json.Number:
		if !isJSONNumber(string(x)) {
			return &badValue{msg: fmt.Sprintf("%q is not a decimal number", string(x))}
		}
		return nil
	case map[string]any:
		for k, e := range x {
			if bad := checkValue(e, depth+1); bad != nil {
				bad.segs = append(bad.segs, "["+strconv.Quote(k)+"]")
				return bad
			}
		}
		return nil
	case []any:
		for i, e := range x {
			if bad := checkValue(e, depth+1); bad != nil {
				bad.segs = append(bad.segs, "["+strconv.Itoa(i)+"]")
				return bad
			}
		}
		return nil
	}
	// Typed slices and maps: let the converter judge.
	if _, err := toStarlark(v, depth); err != nil {
		return &badValue{segs: err.segs, msg: err.msg}
	}
	return nil
}
