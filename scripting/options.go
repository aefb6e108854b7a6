package scripting

import "time"

// Isolation says where a script's calls run.
type Isolation string

const (
	// IsolationProcess runs calls in a worker process with an OS memory
	// limit: a script that exhausts memory kills only its worker, fails its
	// record, and the next record runs in a fresh worker. The default.
	IsolationProcess Isolation = "process"
	// IsolationNone runs calls in the calling process: faster to start and
	// simpler to debug, but a script that allocates without bound can take
	// the whole process down. For tests, and for operators who opt out.
	IsolationNone Isolation = "none"
)

// Entry names the function a script must define.
const (
	EntryTransform = "transform" // def transform(source_record, target_record, pq, target_id=None)
	EntryMain      = "main"      // def main(pq), a standalone data-sync script
	EntryLibrary   = "library"   // no entry function: a file other scripts load() (Check only)
)

// Defaults for Options fields left zero.
const (
	DefaultTransformSteps   = 1_000_000
	DefaultTransformTimeout = 5 * time.Second
	DefaultMainSteps        = 1_000_000_000
	DefaultMainTimeout      = time.Hour
	DefaultMemoryLimit      = 256 << 20
)

// Options configure Compile.
type Options struct {
	// Entry is the function the script must define: EntryTransform (the
	// default) or EntryMain.
	Entry string
	// LoadDir is the project folder: load("lib/phone.star", ...) reads
	// LoadDir/lib/phone.star. Paths are relative to it and cannot leave it
	// (no "..", no absolute paths, no symlink out). Empty refuses every
	// load of a .star file.
	LoadDir string
	// MaxSteps bounds the Starlark steps of one call (and of the script's
	// top-level code). Zero means DefaultTransformSteps or DefaultMainSteps.
	MaxSteps uint64
	// Timeout bounds the wall time of one call, pq calls included. Zero
	// means DefaultTransformTimeout or DefaultMainTimeout.
	Timeout time.Duration
	// Isolation is IsolationProcess (the default) or IsolationNone.
	Isolation Isolation
	// Pool runs the calls of IsolationProcess. Nil makes a pool of one
	// worker for this Script alone (the running executable re-executed
	// with WorkerCommand), closed by Script.Close.
	Pool *Pool
	// MemoryLimit is the memory limit in bytes of that private pool's
	// worker. Zero means DefaultMemoryLimit. A shared Pool has its own.
	MemoryLimit int64
}

func (o Options) withDefaults() Options {
	if o.Entry == "" {
		o.Entry = EntryTransform
	}
	if o.MaxSteps == 0 {
		o.MaxSteps = DefaultTransformSteps
		if o.Entry == EntryMain {
			o.MaxSteps = DefaultMainSteps
		}
	}
	if o.Timeout == 0 {
		o.Timeout = DefaultTransformTimeout
		if o.Entry == EntryMain {
			o.Timeout = DefaultMainTimeout
		}
	}
	if o.Isolation == "" {
		o.Isolation = IsolationProcess
	}
	if o.MemoryLimit == 0 {
		o.MemoryLimit = DefaultMemoryLimit
	}
	return o
}
