package main

import (
	"fmt"
	"io"
	"os"
	"time"

	"golang.org/x/term"

	"github.com/ferry-sync/ferry/engine"
)

// progress shows a long run's progress: a line rewritten in place on a
// terminal, a plain log line every few seconds otherwise. One progress
// follows the syncs of a RunMany one after the other.
type progress struct {
	w        io.Writer
	tty      bool
	last     time.Time
	shown    bool
	interval time.Duration
}

func newProgress(w io.Writer) *progress {
	p := &progress{w: w, interval: 10 * time.Second, last: time.Now()}
	if f, ok := w.(*os.File); ok && term.IsTerminal(int(f.Fd())) {
		p.tty, p.interval = true, 200*time.Millisecond
	}
	return p
}

func (p *progress) update(pr engine.Progress) {
	if time.Since(p.last) < p.interval {
		return
	}
	p.last = time.Now()
	k := pr.Counts
	rate := 0.0
	if secs := pr.Elapsed.Seconds(); secs > 0 {
		rate = float64(k.Read) / secs
	}
	line := fmt.Sprintf("%s: %d read, %d written, %d unchanged, %d failed (%.0f records/s)",
		pr.Sync, k.Read, k.Inserted+k.Updated, k.Unchanged, k.Failed+k.Invalid, rate)
	if p.tty {
		fmt.Fprintf(p.w, "\r\033[K%s", line)
		p.shown = true
		return
	}
	fmt.Fprintln(p.w, line)
}

func (p *progress) done() {
	if p.tty && p.shown {
		fmt.Fprint(p.w, "\r\033[K")
	}
}
