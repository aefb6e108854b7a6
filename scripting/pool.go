package scripting

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"sync"
	"time"
)

// PoolOptions configure NewPool.
type PoolOptions struct {
	// Command is the executable to run as a worker; "" is the running
	// executable (os.Executable).
	Command string
	// Args are its arguments; nil is []string{WorkerCommand}.
	Args []string
	// Env is the workers' environment; nil is the parent's.
	Env []string
	// Workers is how many worker processes may run at once (each serves
	// one page at a time); 0 is 1.
	Workers int
	// MemoryLimit is each worker's memory limit in bytes; 0 is
	// DefaultMemoryLimit.
	MemoryLimit int64
}

// Pool runs script calls in worker processes, started on demand and
// restarted after one dies. It is safe for concurrent use and may serve
// many Scripts at once (one per running sync).
type Pool struct {
	opts  PoolOptions
	slots chan struct{}

	mu     sync.Mutex
	idle   []*worker
	closed bool
	// replaced counts workers stopped because they died or broke (out of
	// memory, a runaway builtin): each is replaced by a fresh one on the
	// next call, so a rising count is the sign of a script in trouble.
	replaced int64
}

// Replaced is how many workers were stopped because they died or broke
// and so replaced by a fresh one.
func (p *Pool) Replaced() int64 {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.replaced
}

// NewPool makes a pool; no process starts until a script needs one.
func NewPool(opts PoolOptions) (*Pool, error) {
	if opts.Command == "" {
		exe, err := os.Executable()
		if err != nil {
			return nil, fmt.Errorf("script worker pool: find the executable: %w", err)
		}
		opts.Command = exe
	}
	if opts.Args == nil {
		opts.Args = []string{WorkerCommand}
	}
	if opts.Workers <= 0 {
		opts.Workers = 1
	}
	if opts.MemoryLimit <= 0 {
		opts.MemoryLimit = DefaultMemoryLimit
	}
	return &Pool{opts: opts, slots: make(chan struct{}, opts.Workers)}, nil
}

// MemoryLimit is each worker's memory limit in bytes.
func (p *Pool) MemoryLimit() int64 { return p.opts.MemoryLimit }

// Close stops the idle workers; busy ones stop when their call ends.
func (p *Pool) Close() error {
	p.mu.Lock()
	idle := p.idle
	p.idle, p.closed = nil, true
	p.mu.Unlock()
	var errs []error
	for _, w := range idle {
		errs = append(errs, w.stop())
	}
	return errors.Join(errs...)
}

var errPoolClosed = errors.New("script worker pool is closed")

// acquire returns a worker for the caller's exclusive use.
func (p *Pool) acquire(ctx context.Context) (*worker, error) {
	select {
	case p.slots <- struct{}{}:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		<-p.slots
		return nil, errPoolClosed
	}
	if n := len(p.idle); n > 0 {
		w := p.idle[n-1]
		p.idle = p.idle[:n-1]
		p.mu.Unlock()
		return w, nil
	}
	p.mu.Unlock()
	w, err := startWorker(ctx, p.opts)
	if err != nil {
		<-p.slots
		return nil, err
	}
	return w, nil
}

// release returns a worker; a dead or broken one is stopped instead.
func (p *Pool) release(w *worker, healthy bool) {
	defer func() { <-p.slots }()
	p.mu.Lock()
	if healthy && !p.closed {
		p.idle = append(p.idle, w)
		p.mu.Unlock()
		return
	}
	if !healthy {
		p.replaced++
	}
	p.mu.Unlock()
	_ = w.stop()
}

// worker is one worker process and the pipes to it.
type worker struct {
	cmd    *exec.Cmd
	stdin  *os.File
	stdout *os.File
	in     *bufio.Writer
	out    frameReader
	stderr *tailBuffer
	exited chan struct{}
	loaded map[string]bool
	limit  int64
}

func startWorker(ctx context.Context, opts PoolOptions) (*worker, error) {
	childIn, parentOut, err := os.Pipe()
	if err != nil {
		return nil, fmt.Errorf("start script worker: %w", err)
	}
	parentIn, childOut, err := os.Pipe()
	if err != nil {
		childIn.Close()
		parentOut.Close()
		return nil, fmt.Errorf("start script worker: %w", err)
	}
	cmd := exec.Command(opts.Command, opts.Args...)
	cmd.Env = opts.Env
	cmd.Stdin, cmd.Stdout = childIn, childOut
	stderr := &tailBuffer{max: 8 << 10}
	cmd.Stderr = stderr
	err = cmd.Start()
	childIn.Close()
	childOut.Close()
	if err != nil {
		parentIn.Close()
		parentOut.Close()
		return nil, fmt.Errorf("start script worker %s: %w", opts.Command, err)
	}
	w := &worker{
		cmd: cmd, stdin: parentOut, stdout: parentIn,
		in: bufio.NewWriterSize(parentOut, 64<<10), out: frameReader{r: bufio.NewReaderSize(parentIn, 64<<10)},
		stderr: stderr, exited: make(chan struct{}), loaded: map[string]bool{}, limit: opts.MemoryLimit,
	}
	go func() {
		_ = cmd.Wait()
		close(w.exited)
	}()
	stopKill := context.AfterFunc(ctx, w.kill)
	defer stopKill()
	var e encoder
	e.byte(msgHello)
	e.varint(opts.MemoryLimit)
	if err := w.send(e.buf); err != nil {
		return nil, w.failStart(err)
	}
	typ, d, err := w.read()
	if err == nil && typ != msgReady {
		err = fmt.Errorf("worker protocol: got message %d, want ready", typ)
	}
	if err != nil {
		return nil, w.failStart(err)
	}
	msg := d.string()
	w.out.release(d)
	if msg != "" {
		_ = w.stop()
		return nil, fmt.Errorf("start script worker: %s", msg)
	}
	return w, nil
}

func (w *worker) failStart(err error) error {
	_ = w.stop()
	if tail := w.stderr.lastLine(); tail != "" {
		return fmt.Errorf("start script worker: %w (it said: %s)", err, tail)
	}
	return fmt.Errorf("start script worker: %w", err)
}

func (w *worker) send(body []byte) error {
	if err := writeFrame(w.in, body); err != nil {
		return err
	}
	return w.in.Flush()
}

// read reads the worker's next message; its decoder owns the frame until
// released (see frameReader).
func (w *worker) read() (byte, *decoder, error) { return w.out.read() }

// release gives a message's frame back once it is decoded.
func (w *worker) release(d *decoder) { w.out.release(d) }

func (w *worker) kill() {
	if w.cmd.Process != nil {
		_ = w.cmd.Process.Kill()
	}
}

// stop closes the worker's input (it exits at end of input), waits a
// little, then kills it.
func (w *worker) stop() error {
	_ = w.stdin.Close()
	select {
	case <-w.exited:
	case <-time.After(2 * time.Second):
		w.kill()
		<-w.exited
	}
	_ = w.stdout.Close()
	return nil
}

// death waits for a worker that stopped answering and says why it died.
func (w *worker) death(script, sourceID string) *ScriptError {
	w.kill() // in case it only closed its pipe
	select {
	case <-w.exited:
	case <-time.After(5 * time.Second):
	}
	se := &ScriptError{Kind: KindCrash, Script: script, File: script, SourceID: sourceID}
	tail := w.stderr.String()
	switch {
	case isOutOfMemory(tail) || w.nearLimit() || (w.limit > 0 && isRuntimeFault(tail)):
		se.Kind = KindMemory
		se.Message = fmt.Sprintf("ran out of memory (limit %d MB); the worker was restarted", w.limit>>20)
	default:
		state := "exited"
		if w.cmd.ProcessState != nil {
			state = w.cmd.ProcessState.String()
		}
		se.Message = "the script worker crashed (" + state + ")"
		if line := w.stderr.lastLine(); line != "" {
			se.Message += ": " + line
		}
	}
	return se
}

// nearLimit reports whether a dead worker's peak memory came close to its
// limit: the Go runtime does not always die with "out of memory" when an
// allocation fails under RLIMIT_DATA (its collector can crash instead).
func (w *worker) nearLimit() bool {
	if w.cmd.ProcessState == nil {
		return false
	}
	peak := peakMemory(w.cmd.ProcessState)
	return peak > 0 && peak >= w.limit/2
}

// isOutOfMemory reads a worker's crash report: the Go runtime says "out of
// memory" when the heap cannot grow, and a cgo-enabled binary may instead
// fail to make a thread (its stack counts against RLIMIT_DATA too).
func isOutOfMemory(stderr string) bool {
	for _, sign := range []string{"out of memory", "cannot allocate memory", "pthread_create failed"} {
		if strings.Contains(stderr, sign) {
			return true
		}
	}
	return false
}

// isRuntimeFault reports a segmentation fault in the worker. Scripts run in
// pure Go (starlark-go), so they cannot fault by themselves; under
// RLIMIT_DATA the Go runtime's collector faults when its own allocations
// fail (seen in runtime.(*spanQueue).tryDrain), which is memory exhaustion
// by another name.
func isRuntimeFault(stderr string) bool {
	return strings.Contains(stderr, "SIGSEGV")
}

// tailBuffer keeps the first and the last bytes a worker wrote to stderr:
// a Go crash report starts with its reason ("fatal error: out of memory")
// and goes on with every goroutine's stack.
type tailBuffer struct {
	mu   sync.Mutex
	max  int
	head []byte
	buf  []byte
}

func (t *tailBuffer) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if room := t.max - len(t.head); room > 0 {
		t.head = append(t.head, p[:min(room, len(p))]...)
	}
	t.buf = append(t.buf, p...)
	if over := len(t.buf) - t.max; over > 0 {
		t.buf = append(t.buf[:0], t.buf[over:]...)
	}
	return len(p), nil
}

func (t *tailBuffer) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return string(t.head) + "\n" + string(t.buf)
}

// lastLine is the first line of the last "fatal error"/"panic" report, or
// the last non-empty line.
func (t *tailBuffer) lastLine() string {
	s := t.String()
	for _, marker := range []string{"fatal error:", "panic:"} {
		if i := strings.LastIndex(s, marker); i >= 0 {
			line, _, _ := strings.Cut(s[i:], "\n")
			return strings.TrimSpace(line)
		}
	}
	lines := bytes.Split(bytes.TrimSpace([]byte(s)), []byte("\n"))
	return strings.TrimSpace(string(lines[len(lines)-1]))
}
