package scripting

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
)

// Script is a compiled script, ready to be called: compile it once per run
// and call it per record. It is safe for concurrent use. It caches its pq
// lookups for its whole life (see Stats and ForgetLookups): one Script per
// run, with the same Host behind every call.
type Script struct {
	name    string
	opts    Options
	sources map[string][]byte
	key     string
	cache   *lookupCache

	prog    *program // IsolationNone
	pool    *Pool    // IsolationProcess
	ownPool bool
}

// Compile parses, resolves and initialises a script: its top-level code
// runs once, its globals are frozen, and the entry function (transform or
// main, per opts.Entry) must exist. Every problem is a *ScriptError with
// file, line and column, found before any record is touched. load() may
// name Ferry's modules and .star files under opts.LoadDir, nothing else.
func Compile(ctx context.Context, name string, src []byte, opts Options) (*Script, error) {
	opts = opts.withDefaults()
	if opts.Entry != EntryTransform && opts.Entry != EntryMain {
		return nil, fmt.Errorf("compile %s: unknown entry %q (want %q or %q)", name, opts.Entry, EntryTransform, EntryMain)
	}
	sources, err := collectSources(name, src, opts.LoadDir)
	if err != nil {
		return nil, err
	}
	s := &Script{name: name, opts: opts, sources: sources, key: scriptKey(name, opts, sources), cache: newLookupCache()}
	switch opts.Isolation {
	case IsolationNone:
		p, err := loadProgram(ctx, name, sources, opts.Entry, opts.MaxSteps, opts.Timeout, nil)
		if err != nil {
			return nil, err
		}
		s.prog = p
		return s, nil
	case IsolationProcess:
		s.pool = opts.Pool
		if s.pool == nil {
			pool, err := NewPool(PoolOptions{MemoryLimit: opts.MemoryLimit})
			if err != nil {
				return nil, err
			}
			s.pool, s.ownPool = pool, true
		}
		// Load it in a worker now, so a broken script fails here.
		w, err := s.pool.acquire(ctx)
		if err != nil {
			s.Close()
			return nil, fmt.Errorf("compile %s: %w", name, err)
		}
		if err := s.ensureLoaded(ctx, w); err != nil {
			s.pool.release(w, false)
			s.Close()
			return nil, err
		}
		s.pool.release(w, true)
		return s, nil
	}
	return nil, fmt.Errorf("compile %s: unknown isolation %q (want %q or %q)", name, opts.Isolation, IsolationProcess, IsolationNone)
}

func scriptKey(name string, opts Options, sources map[string][]byte) string {
	h := sha256.New()
	fmt.Fprintf(h, "%s\x00%s\x00%d\x00%d\x00", name, opts.Entry, opts.MaxSteps, opts.Timeout)
	names := make([]string, 0, len(sources))
	for n := range sources {
		names = append(names, n)
	}
	slices.Sort(names)
	for _, n := range names {
		fmt.Fprintf(h, "%s\x00%d\x00", n, len(sources[n]))
		h.Write(sources[n])
	}
	return hex.EncodeToString(h.Sum(nil))
}

// Name is the script's name as given to Compile.
func (s *Script) Name() string { return s.name }

// Stats counts the Host calls the script's pq calls made so far.
func (s *Script) Stats() Stats { return s.cache.stats() }

// ForgetLookups drops the cached lookups of a connection ("" is the
// sync's own target). The engine calls it after writing to a connection
// whose records a script may look up, so a lookup never misses a record
// the run itself created.
func (s *Script) ForgetLookups(connection string) { s.cache.forget(connection) }

// Close releases the Script's private worker pool, if it has one.
func (s *Script) Close() error {
	if s.ownPool && s.pool != nil {
		return s.pool.Close()
	}
	return nil
}

func (s *Script) hostFor(h Host) Host {
	if h == nil {
		h = noHost{}
	}
	return cachedHost{cache: s.cache, host: h}
}

// Transform calls transform on one record. Errors are *ScriptError; the
// output's Printed is set even then.
func (s *Script) Transform(ctx context.Context, in TransformInput) (TransformOutput, error) {
	if s.opts.Entry != EntryTransform {
		return TransformOutput{}, fmt.Errorf("%s: a main script has no transform", s.name)
	}
	if s.prog != nil {
		return runTransform(ctx, s.prog, &in, in.Host, s.cache)
	}
	r := s.TransformBatch(ctx, []TransformInput{in})
	return r[0].Output, r[0].Err
}

// TransformBatch calls transform on a page of records: one round trip to
// a worker for the page. Results are in input order; one record's failure
// (an error, the step limit, running out of memory) never fails another.
func (s *Script) TransformBatch(ctx context.Context, ins []TransformInput) []BatchResult {
	results := make([]BatchResult, len(ins))
	if s.opts.Entry != EntryTransform {
		for i := range results {
			results[i].Err = fmt.Errorf("%s: a main script has no transform", s.name)
		}
		return results
	}
	if s.prog != nil {
		for i := range ins {
			results[i].Output, results[i].Err = runTransform(ctx, s.prog, &ins[i], ins[i].Host, s.cache)
		}
		return results
	}
	s.batchInWorkers(ctx, ins, results)
	return results
}

// RunMain runs a standalone script's main(pq) and returns what it printed.
func (s *Script) RunMain(ctx context.Context, host Host) ([]string, error) {
	if s.opts.Entry != EntryMain {
		return nil, fmt.Errorf("%s: compiled as a transform, not a main script", s.name)
	}
	if s.prog != nil {
		return runMain(ctx, s.prog, host, s.cache)
	}
	w, err := s.pool.acquire(ctx)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", s.name, err)
	}
	if err := s.ensureLoaded(ctx, w); err != nil {
		s.pool.release(w, false)
		return nil, err
	}
	var e encoder
	e.byte(msgMain)
	e.string(s.key)
	ins := []TransformInput{{Host: host}}
	results := make([]BatchResult, 1)
	done := make([]bool, 1)
	sess := &session{s: s, w: w, ins: ins, results: results, done: done, lastSeen: -1}
	crash := sess.run(ctx, e.buf)
	s.pool.release(w, crash == nil)
	if crash != nil {
		return results[0].Output.Printed, crash.err
	}
	return results[0].Output.Printed, results[0].Err
}

// ensureLoaded loads the script into a worker that does not have it yet.
func (s *Script) ensureLoaded(ctx context.Context, w *worker) error {
	if w.loaded[s.key] {
		return nil
	}
	req := loadRequest{key: s.key, script: s.name, entry: s.opts.Entry, maxSteps: s.opts.MaxSteps, timeout: s.opts.Timeout, sources: s.sources}
	var e encoder
	req.encode(&e)
	stopKill := context.AfterFunc(ctx, w.kill)
	defer stopKill()
	if err := w.send(e.buf); err != nil {
		return s.loadDeath(ctx, w)
	}
	typ, d, err := w.read()
	if err != nil {
		return s.loadDeath(ctx, w)
	}
	defer w.release(d)
	if typ != msgLoaded {
		return fmt.Errorf("%s: worker protocol: got message %d, want loaded", s.name, typ)
	}
	if failed := d.bool(); failed {
		return decodeScriptError(d)
	}
	if d.err != nil {
		return d.err
	}
	w.loaded[s.key] = true
	return nil
}

func (s *Script) loadDeath(ctx context.Context, w *worker) error {
	if ctx.Err() != nil {
		return &ScriptError{Kind: KindCancelled, Script: s.name, File: s.name, Message: "not loaded: " + context.Cause(ctx).Error(), cause: ctx.Err()}
	}
	se := w.death(s.name, "")
	se.Kind = KindCompile
	se.Message = "while loading: " + se.Message
	return se
}

// batchInWorkers runs a page in workers. When a worker dies mid-page, the
// record it was running gets the error (out of memory, crash) and the rest
// of the page goes on in a fresh worker. When the parent cannot tell which
// record was running (results travel in one write per page), it re-runs
// the unanswered records with one write per result, which names it.
func (s *Script) batchInWorkers(ctx context.Context, ins []TransformInput, results []BatchResult) {
	done := make([]bool, len(ins))
	pending := make([]int, len(ins))
	for i := range pending {
		pending[i] = i
	}
	flushEach := false
	for len(pending) > 0 {
		if err := ctx.Err(); err != nil {
			s.failAll(pending, ins, results, done, &ScriptError{Kind: KindCancelled, Message: "not run: " + context.Cause(ctx).Error(), cause: err})
			return
		}
		w, err := s.pool.acquire(ctx)
		if err != nil {
			s.failAll(pending, ins, results, done, &ScriptError{Kind: KindCrash, Message: err.Error(), cause: err})
			return
		}
		if err := s.ensureLoaded(ctx, w); err != nil {
			s.pool.release(w, false)
			se := asScriptError(s.name, "", err)
			s.failAll(pending, ins, results, done, se)
			return
		}
		// Records first, then the header that counts them: a record whose
		// values no script could read fails here and is left out.
		var body encoder
		sent := make([]int, 0, len(pending))
		for _, i := range pending {
			mark := len(body.buf)
			in := ins[i]
			body.varint(int64(i))
			body.string(in.SourceID)
			err := body.record(in.Source, "source_record")
			if err == nil {
				err = body.record(in.Target, "target_record")
			}
			if err != nil {
				body.buf = body.buf[:mark]
				results[i].Err = &ScriptError{Kind: KindRuntime, Script: s.name, File: s.name, SourceID: in.SourceID, Message: err.Error()}
				done[i] = true
				continue
			}
			body.string(in.TargetID)
			body.bool(in.Host != nil)
			sent = append(sent, i)
		}
		e := encoder{buf: make([]byte, 0, len(body.buf)+len(s.key)+16)}
		e.byte(msgBatch)
		e.string(s.key)
		e.bool(flushEach)
		e.uvarint(uint64(len(sent)))
		e.buf = append(e.buf, body.buf...)
		if len(sent) == 0 {
			s.pool.release(w, true)
			return
		}
		sess := &session{s: s, w: w, ins: ins, results: results, done: done, lastSeen: -1}
		crash := sess.run(ctx, e.buf)
		s.pool.release(w, crash == nil)
		if crash == nil {
			return
		}
		var remaining []int
		for _, i := range sent {
			if !done[i] {
				remaining = append(remaining, i)
			}
		}
		culprit := -1
		switch {
		case ctx.Err() != nil:
			s.failAll(remaining, ins, results, done, &ScriptError{Kind: KindCancelled, Message: "stopped: " + context.Cause(ctx).Error(), cause: ctx.Err()})
			return
		case crash.index >= 0:
			culprit = crash.index
		case sess.lastSeen >= 0 && !done[sess.lastSeen]:
			culprit = sess.lastSeen
		case flushEach && len(remaining) > 0:
			culprit = remaining[0]
		}
		if culprit < 0 {
			flushEach = true // find the culprit on the next try
			pending = remaining
			continue
		}
		crash.err.SourceID = ins[culprit].SourceID
		results[culprit].Err = crash.err
		done[culprit] = true
		flushEach = false
		pending = slices.DeleteFunc(remaining, func(i int) bool { return i == culprit })
	}
}

func (s *Script) failAll(idx []int, ins []TransformInput, results []BatchResult, done []bool, se *ScriptError) {
	for _, i := range idx {
		if done[i] {
			continue
		}
		e := *se
		e.Script, e.SourceID = s.name, ins[i].SourceID
		if e.File == "" {
			e.File = s.name
		}
		results[i].Err = &e
		done[i] = true
	}
}

// session is one request to a worker, from the parent's side: it serves
// the worker's host calls and collects its results until done.
type session struct {
	s        *Script
	w        *worker
	ins      []TransformInput
	results  []BatchResult
	done     []bool
	lastSeen int // the last record the worker was seen working on
}

// crashInfo says a worker died during a session.
type crashInfo struct {
	index int // the record it said it was stuck on, or -1
	err   *ScriptError
}

// run sends the request and processes messages until the worker says
// done. It returns nil, or what is known about the worker's death.
func (ss *session) run(ctx context.Context, req []byte) *crashInfo {
	stopKill := context.AfterFunc(ctx, ss.w.kill)
	defer stopKill()
	if err := ss.w.send(req); err != nil {
		return &crashInfo{index: -1, err: ss.w.death(ss.s.name, "")}
	}
	for {
		typ, d, err := ss.w.read()
		if err != nil {
			return &crashInfo{index: -1, err: ss.w.death(ss.s.name, "")}
		}
		switch typ {
		case msgLog:
			i := d.int()
			msg := d.string()
			if d.err != nil || i < 0 || i >= len(ss.ins) {
				return ss.protocolError(d.err)
			}
			ss.lastSeen = i
			ss.results[i].Output.Printed = append(ss.results[i].Output.Printed, msg)
			if h := ss.ins[i].Host; h != nil {
				h.Log(msg)
			}
		case msgHostCall:
			i := d.int()
			if d.err != nil || i < 0 || i >= len(ss.ins) {
				return ss.protocolError(d.err)
			}
			ss.lastSeen = i
			reply := ss.hostCall(ctx, ss.ins[i].Host, d)
			if err := ss.w.send(reply); err != nil {
				return &crashInfo{index: -1, err: ss.w.death(ss.s.name, "")}
			}
		case msgResult:
			i := d.int()
			if d.err != nil || i < 0 || i >= len(ss.ins) {
				return ss.protocolError(d.err)
			}
			r := &ss.results[i]
			if failed := d.bool(); failed {
				r.Err = decodeScriptError(d)
			} else {
				r.Output.Payload = d.payload(ss.ins[i].Target)
				r.Output.SkipReason = d.string()
				r.Output.TargetID = d.string()
				r.Output.Insert = d.bool()
			}
			if d.err != nil {
				return ss.protocolError(d.err)
			}
			ss.done[i] = true
		case msgDone:
			ss.w.release(d)
			return nil
		case msgFatal:
			i := d.int()
			kind := ErrorKind(d.string())
			msg := d.string()
			ss.w.death(ss.s.name, "")
			if d.err != nil || i < -1 || i >= len(ss.ins) {
				return ss.protocolError(d.err)
			}
			return &crashInfo{index: i, err: &ScriptError{Kind: kind, Script: ss.s.name, File: ss.s.name, Message: msg}}
		default:
			return ss.protocolError(fmt.Errorf("unexpected message %d", typ))
		}
		// Every message is decoded in full before the next read (a host
		// call's arguments before the Host runs), so its frame is free.
		ss.w.release(d)
	}
}

func (ss *session) protocolError(err error) *crashInfo {
	if err == nil {
		err = errors.New("bad message")
	}
	ss.w.kill()
	return &crashInfo{index: -1, err: &ScriptError{Kind: KindCrash, Script: ss.s.name, File: ss.s.name,
		Message: "worker protocol: " + err.Error()}}
}

// hostCall serves one Host call of a worker and encodes the reply.
// A panic in the engine's Host becomes the failing call's error.
func (ss *session) hostCall(ctx context.Context, h Host, d *decoder) (reply []byte) {
	host := ss.s.hostFor(h)
	hctx, cancel := context.WithTimeout(ctx, ss.s.opts.Timeout)
	defer cancel()
	var e encoder
	e.byte(msgHostReply)
	fail := func(err error) []byte {
		e.buf = e.buf[:1]
		e.bool(true)
		e.string(err.Error())
		return e.buf
	}
	defer func() {
		if r := recover(); r != nil {
			reply = fail(fmt.Errorf("internal error: %v", r))
		}
	}()
	method := d.string()
	switch method {
	case hostQuery:
		sql, _ := d.value(0).(string)
		args, _ := d.value(0).([]any)
		if d.err != nil {
			return fail(d.err)
		}
		rows, err := host.Query(hctx, sql, args)
		if err != nil {
			return fail(err)
		}
		return encodeRowsReply(&e, rows, fail)
	case hostFind:
		conn, _ := d.value(0).(string)
		object, _ := d.value(0).(string)
		match, _ := d.value(0).(map[string]any)
		if d.err != nil {
			return fail(d.err)
		}
		rows, err := host.Find(hctx, conn, object, match)
		if err != nil {
			return fail(err)
		}
		return encodeRowsReply(&e, rows, fail)
	case hostWrite:
		var w Write
		w.Connection, _ = d.value(0).(string)
		w.Object, _ = d.value(0).(string)
		op, _ := d.value(0).(string)
		w.Op = WriteOp(op)
		w.ID, _ = d.value(0).(string)
		w.SourceID, _ = d.value(0).(string)
		w.Record, _ = d.value(0).(map[string]any)
		if d.err != nil {
			return fail(d.err)
		}
		id, err := host.Write(hctx, w)
		if err != nil {
			return fail(err)
		}
		e.bool(false)
		e.string(id)
		return e.buf
	case hostLink:
		sync, _ := d.value(0).(string)
		sourceID, _ := d.value(0).(string)
		if d.err != nil {
			return fail(d.err)
		}
		id, found, err := host.Link(hctx, sync, sourceID)
		if err != nil {
			return fail(err)
		}
		e.bool(false)
		e.string(id)
		e.bool(found)
		return e.buf
	case hostGetState:
		v, err := host.GetState(hctx)
		if err != nil {
			return fail(err)
		}
		e.bool(false)
		if err := e.value(v, "state"); err != nil {
			return fail(err)
		}
		return e.buf
	case hostSetState:
		v := d.value(0)
		if d.err != nil {
			return fail(d.err)
		}
		if err := host.SetState(hctx, v); err != nil {
			return fail(err)
		}
		e.bool(false)
		return e.buf
	}
	return fail(fmt.Errorf("unknown host call %q", method))
}

func encodeRowsReply(e *encoder, rows []map[string]any, fail func(error) []byte) []byte {
	e.bool(false)
	list := make([]any, len(rows))
	for i, r := range rows {
		list[i] = r
	}
	if err := e.value(list, "rows"); err != nil {
		return fail(err)
	}
	return e.buf
}
