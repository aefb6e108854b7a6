package scripting

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
	"sync/atomic"
	"time"
)

// WorkerCommand is the hidden subcommand under which the ferry binary runs
// ServeWorker; a Pool made without Args re-executes the binary with it.
const WorkerCommand = "__script-worker"

// stuckGrace is how long past its deadline a call may keep running (inside
// one long builtin, where the interpreter cannot stop it) before the
// worker gives up on it and exits.
const stuckGrace = 2 * time.Second

// ErrWorkerStuck is returned by ServeWorker when a call ran past its
// deadline inside a builtin the interpreter cannot interrupt. The process
// must exit: the call's goroutine cannot be stopped.
var ErrWorkerStuck = errors.New("script worker: a call is stuck past its deadline")

// ServeWorker runs the worker side of process isolation: it reads requests
// from r and answers on w (the pipes its parent Pool holds) until r ends.
// Call it from a hidden subcommand of the binary (see WorkerCommand) and
// exit non-zero when it returns an error: after ErrWorkerStuck a goroutine
// is still running a script. The parent's first message sets the process's
// memory limit (RLIMIT_DATA where the OS has it, and the Go runtime's soft
// limit), so a script that allocates without bound ends this process,
// never the parent.
func ServeWorker(ctx context.Context, r io.Reader, w io.Writer) error {
	s := &workerServer{
		in:       frameReader{r: bufio.NewReaderSize(r, 64<<10)},
		out:      &frameWriter{w: bufio.NewWriterSize(w, 64<<10)},
		programs: map[string]*program{},
		stuck:    make(chan struct{}),
	}
	done := make(chan error, 1)
	go func() { done <- s.serve(ctx) }()
	watchCtx, stopWatch := context.WithCancel(ctx)
	defer stopWatch()
	go s.watchdog(watchCtx)
	select {
	case err := <-done:
		return err
	case <-s.stuck:
		return ErrWorkerStuck
	case <-ctx.Done():
		return ctx.Err()
	}
}

// frameWriter writes frames under a lock: the watchdog may write the last
// one while the serving goroutine is stuck in a call.
type frameWriter struct {
	mu  sync.Mutex
	w   *bufio.Writer
	err error
}

func (f *frameWriter) send(body []byte, flush bool) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.err != nil {
		return f.err
	}
	if err := writeFrame(f.w, body); err != nil {
		f.err = err
		return err
	}
	if flush {
		if err := f.w.Flush(); err != nil {
			f.err = err
			return err
		}
	}
	return nil
}

type workerServer struct {
	in       frameReader
	out      *frameWriter
	programs map[string]*program

	// The running call, for the watchdog: its index, its start in Unix
	// nanoseconds (0 when idle or waiting on the parent) and its timeout.
	callIndex   atomic.Int64
	callStart   atomic.Int64
	callTimeout atomic.Int64
	stuck       chan struct{}
}

func (s *workerServer) serve(ctx context.Context) error {
	for {
		typ, d, err := s.in.read()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
		switch typ {
		case msgHello:
			limit := d.varint()
			if d.err != nil {
				return d.err
			}
			var e encoder
			e.byte(msgReady)
			if err := applyMemoryLimit(limit); err != nil {
				e.string(err.Error())
			} else {
				e.string("")
			}
			if err := s.out.send(e.buf, true); err != nil {
				return err
			}
		case msgLoad:
			var req loadRequest
			req.decode(d)
			if d.err != nil {
				return d.err
			}
			if err := s.load(ctx, &req); err != nil {
				return err
			}
		case msgBatch:
			if err := s.batch(ctx, d); err != nil {
				return err
			}
		case msgMain:
			if err := s.main(ctx, d); err != nil {
				return err
			}
		default:
			return fmt.Errorf("worker protocol: unexpected message %d", typ)
		}
		// Only now is the request's frame free: a batch decodes its page
		// record by record, with host replies read in between.
		s.in.release(d)
	}
}

func (s *workerServer) load(ctx context.Context, req *loadRequest) error {
	var e encoder
	e.byte(msgLoaded)
	s.startCall(-1, req.timeout)
	p, err := loadProgram(ctx, req.script, req.sources, req.entry, req.maxSteps, req.timeout, nil)
	s.endCall()
	if err != nil {
		e.bool(true)
		encodeScriptError(&e, asScriptError(req.script, "", err))
	} else {
		s.programs[req.key] = p
		e.bool(false)
	}
	return s.out.send(e.buf, true)
}

func (s *workerServer) program(key string) (*program, error) {
	p, ok := s.programs[key]
	if !ok {
		return nil, fmt.Errorf("worker protocol: script %.12s is not loaded", key)
	}
	return p, nil
}

func (s *workerServer) batch(ctx context.Context, d *decoder) error {
	key := d.string()
	flushEach := d.bool()
	n := d.uvarint()
	if d.err != nil {
		return d.err
	}
	p, err := s.program(key)
	if err != nil {
		return err
	}
	for range n {
		index := d.int()
		in := TransformInput{SourceID: d.string(), Source: d.record(), Target: d.record(), TargetID: d.string()}
		hasHost := d.bool()
		if d.err != nil {
			return d.err
		}
		host := &rpcHost{s: s, index: index, hasHost: hasHost}
		s.startCall(index, p.timeout)
		out, err := runTransform(ctx, p, &in, host, nil)
		s.endCall()
		if host.err != nil {
			return host.err
		}
		var e encoder
		e.byte(msgResult)
		e.varint(int64(index))
		if err != nil {
			e.bool(true)
			encodeScriptError(&e, asScriptError(p.script, in.SourceID, err))
		} else {
			e.bool(false)
			if err := e.record(out.Payload, "payload"); err != nil {
				return err // cannot happen: the payload came from FromStarlark
			}
			e.string(out.SkipReason)
			e.string(out.TargetID)
			e.bool(out.Insert)
		}
		// After a record that talked to the parent, flush its result: the
		// parent then knows that a crash later on is not this record's.
		if err := s.out.send(e.buf, flushEach || host.called); err != nil {
			return err
		}
	}
	return s.out.send([]byte{msgDone}, true)
}

func (s *workerServer) main(ctx context.Context, d *decoder) error {
	key := d.string()
	if d.err != nil {
		return d.err
	}
	p, err := s.program(key)
	if err != nil {
		return err
	}
	host := &rpcHost{s: s, index: 0, hasHost: true, flushLogs: true}
	s.startCall(0, p.timeout)
	_, err = runMain(ctx, p, host, nil)
	s.endCall()
	if host.err != nil {
		return host.err
	}
	var e encoder
	e.byte(msgResult)
	e.varint(0)
	if err != nil {
		e.bool(true)
		encodeScriptError(&e, asScriptError(p.script, "", err))
	} else {
		// The shape of a transform's result, empty.
		e.bool(false)
		e.byte(tagNil)
		e.string("")
		e.string("")
		e.bool(false)
	}
	if err := s.out.send(e.buf, false); err != nil {
		return err
	}
	return s.out.send([]byte{msgDone}, true)
}

func (s *workerServer) startCall(index int, timeout time.Duration) {
	s.callIndex.Store(int64(index))
	s.callTimeout.Store(int64(timeout))
	s.callStart.Store(time.Now().UnixNano())
}

func (s *workerServer) endCall() { s.callStart.Store(0) }

// watchdog ends the worker when a call runs far past its deadline: the
// interpreter checks its deadline between steps, so only a single long
// builtin can get here. It tells the parent which record it was first.
func (s *workerServer) watchdog(ctx context.Context) {
	tick := time.NewTicker(250 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		start := s.callStart.Load()
		if start == 0 {
			continue
		}
		timeout := time.Duration(s.callTimeout.Load())
		if timeout <= 0 || time.Since(time.Unix(0, start)) < timeout+stuckGrace {
			continue
		}
		var e encoder
		e.byte(msgFatal)
		e.varint(s.callIndex.Load())
		e.string(string(KindTimeout))
		e.string(fmt.Sprintf("stopped after running longer than %s (inside one builtin call; the worker was restarted)", timeout))
		_ = s.out.send(e.buf, true)
		close(s.stuck)
		return
	}
}

// rpcHost is the Host of a call in a worker: each call goes to the parent,
// which holds the real Host (and its cache), and waits for the reply.
type rpcHost struct {
	s         *workerServer
	index     int
	hasHost   bool
	flushLogs bool
	called    bool  // the record talked to the parent
	err       error // a protocol failure: the worker must stop
}

// call sends a Host call to the parent and returns a decoder over its
// reply; the caller decodes the reply and gives its frame back with done.
func (h *rpcHost) call(method string, args ...any) (*decoder, error) {
	if h.err != nil {
		return nil, h.err
	}
	if !h.hasHost {
		return nil, ErrNoHost
	}
	h.called = true
	var e encoder
	e.byte(msgHostCall)
	e.varint(int64(h.index))
	if err := encodeHostCall(&e, method, args...); err != nil {
		return nil, err
	}
	// While the parent works, the call is not the worker's to time.
	start := h.s.callStart.Swap(0)
	defer h.s.callStart.Store(start)
	if err := h.s.out.send(e.buf, true); err != nil {
		h.err = err
		return nil, err
	}
	// The reply comes in a frame of its own: the request being served
	// (a page of records) is still being decoded from the previous one.
	typ, d, err := h.s.in.read()
	if err == nil && typ != msgHostReply {
		err = fmt.Errorf("worker protocol: got message %d, want a host reply", typ)
	}
	if err != nil {
		h.err = err
		return nil, err
	}
	if failed := d.bool(); failed {
		msg := d.string()
		h.s.in.release(d)
		return nil, errors.New(msg)
	}
	return d, nil
}

// done gives a host reply's frame back once its caller decoded it.
func (h *rpcHost) done(d *decoder) { h.s.in.release(d) }

func (h *rpcHost) Query(_ context.Context, sql string, args []any) ([]map[string]any, error) {
	d, err := h.call(hostQuery, sql, args)
	if err != nil {
		return nil, err
	}
	defer h.done(d)
	return decodeRows(d)
}

func (h *rpcHost) Find(_ context.Context, connection, object string, match map[string]any) ([]map[string]any, error) {
	d, err := h.call(hostFind, connection, object, match)
	if err != nil {
		return nil, err
	}
	defer h.done(d)
	return decodeRows(d)
}

func (h *rpcHost) Write(_ context.Context, w Write) (string, error) {
	d, err := h.call(hostWrite, w.Connection, w.Object, string(w.Op), w.ID, w.SourceID, w.Record)
	if err != nil {
		return "", err
	}
	defer h.done(d)
	id := d.string()
	return id, d.err
}

func (h *rpcHost) Link(_ context.Context, sync, sourceID string) (string, bool, error) {
	d, err := h.call(hostLink, sync, sourceID)
	if err != nil {
		return "", false, err
	}
	defer h.done(d)
	id := d.string()
	found := d.bool()
	return id, found, d.err
}

func (h *rpcHost) GetState(context.Context) (any, error) {
	d, err := h.call(hostGetState)
	if err != nil {
		return nil, err
	}
	defer h.done(d)
	v := d.value(0)
	return v, d.err
}

func (h *rpcHost) SetState(_ context.Context, value any) error {
	d, err := h.call(hostSetState, value)
	if err != nil {
		return err
	}
	h.done(d)
	return nil
}

// Log sends a printed line to the parent; lines of a transform travel with
// the page's results, those of a main script at once.
func (h *rpcHost) Log(msg string) {
	if h.err != nil {
		return
	}
	var e encoder
	e.byte(msgLog)
	e.varint(int64(h.index))
	e.string(msg)
	if err := h.s.out.send(e.buf, h.flushLogs); err != nil {
		h.err = err
	}
}

func decodeRows(d *decoder) ([]map[string]any, error) {
	v := d.value(0)
	if d.err != nil {
		return nil, d.err
	}
	list, _ := v.([]any)
	rows := make([]map[string]any, 0, len(list))
	for _, r := range list {
		m, ok := r.(map[string]any)
		if !ok {
			return nil, fmt.Errorf("worker protocol: want a row, got %T", r)
		}
		rows = append(rows, m)
	}
	return rows, nil
}
