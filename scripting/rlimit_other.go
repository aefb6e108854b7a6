//go:build !(linux || darwin || freebsd || netbsd || openbsd)

package scripting

import (
	"os"
	"runtime/debug"
)

// applyMemoryLimit can only set the Go runtime's soft limit here: this OS
// has no RLIMIT_DATA, so a script that allocates without bound still ends
// its worker process through the OS, not through a limit Ferry set.
func applyMemoryLimit(limit int64) error {
	if limit > 0 {
		debug.SetMemoryLimit(limit / 4 * 3)
		// A worker's live heap is small and its garbage plentiful (a page of
		// records at a time): collect less often, the soft limit still holds.
		debug.SetGCPercent(400)
	}
	return nil
}

// peakMemory is unknown here.
func peakMemory(*os.ProcessState) int64 { return 0 }
