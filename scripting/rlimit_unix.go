//go:build linux || darwin || freebsd || netbsd || openbsd

package scripting

import (
	"fmt"
	"os"
	"runtime"
	"runtime/debug"
	"syscall"
)

// applyMemoryLimit limits this process's data segment (RLIMIT_DATA: heap
// and anonymous mappings, which is what the Go heap grows into) and sets
// the Go runtime's soft limit below it, so the collector works hard before
// the hard limit ends the process with "fatal error: out of memory".
// RLIMIT_AS would be the wrong knob: the runtime and starlark-go reserve
// far more address space than they use.
func applyMemoryLimit(limit int64) error {
	if limit <= 0 {
		return nil
	}
	debug.SetMemoryLimit(limit / 4 * 3)
	// A worker's live heap is small and its garbage plentiful (a page of
	// records at a time): collect less often, the soft limit still holds.
	debug.SetGCPercent(400)
	rl := syscall.Rlimit{Cur: uint64(limit), Max: uint64(limit)}
	if err := syscall.Setrlimit(syscall.RLIMIT_DATA, &rl); err != nil {
		return fmt.Errorf("set RLIMIT_DATA to %d bytes: %w", limit, err)
	}
	return nil
}

// peakMemory is the peak resident memory of an exited process, in bytes.
func peakMemory(ps *os.ProcessState) int64 {
	ru, ok := ps.SysUsage().(*syscall.Rusage)
	if !ok {
		return 0
	}
	if runtime.GOOS == "darwin" {
		return ru.Maxrss // bytes there, kilobytes elsewhere
	}
	return ru.Maxrss * 1024
}
