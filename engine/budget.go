package engine

import (
	"fmt"
	"strings"
	"sync"
	"unicode"

	"github.com/ferry-sync/ferry/engine/project"
)

// budget watches a run's recent failures: when most of the last records
// failed the same way (an expired token a target answers with 400, a
// transform that runs out of memory on every record, a target that fails
// every write), going on would only repeat the failure for every record
// left. It is shared by the decider (script failures) and the writer
// (the target's answers).
type budget struct {
	mu      sync.Mutex
	window  int
	need    int      // failures of one kind in the window that stop the run
	ring    []string // error kind of each recent record; "" for success
	next    int
	seen    int
	kinds   map[string]int
	example map[string]string // a message of each kind, for the report
	tripped string            // why the run stops, once it must
}

func newBudget(b *project.ErrorBudget) *budget {
	if b == nil || b.Window <= 0 {
		return nil
	}
	need := int(float64(b.Window)*b.Share + 0.999999)
	return &budget{window: b.Window, need: max(need, 1), ring: make([]string, b.Window),
		kinds: map[string]int{}, example: map[string]string{}}
}

// observe counts one record's outcome: kind "" for a success, else its
// class; msg its message. It reports whether the run must stop now.
func (b *budget) observe(kind, msg string) bool {
	if b == nil {
		return false
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.tripped != "" {
		return true
	}
	if kind != "" {
		kind += ": " + errorShape(msg)
		b.example[kind] = msg
	}
	if old := b.ring[b.next]; b.seen >= b.window && old != "" {
		b.kinds[old]--
	}
	b.ring[b.next] = kind
	b.next = (b.next + 1) % b.window
	b.seen++
	if kind == "" {
		return false
	}
	b.kinds[kind]++
	if b.seen >= b.window && b.kinds[kind] >= b.need {
		b.tripped = fmt.Sprintf("stopped early: %d of the last %d records failed the same way, e.g. %s; fix the cause and run again (records not tried are untouched; error_budget sets when a run stops)",
			b.kinds[kind], b.window, b.example[kind])
		return true
	}
	return false
}

// stopped returns why the run must stop, or "".
func (b *budget) stopped() string {
	if b == nil {
		return ""
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.tripped
}

// errorShape is a message with its numbers and quoted values blanked, so
// that "refused source id 7" and "refused source id 8" are the same failure.
func errorShape(msg string) string {
	var b strings.Builder
	inDigits := false
	for _, r := range msg {
		if unicode.IsDigit(r) {
			if !inDigits {
				b.WriteByte('#')
			}
			inDigits = true
			continue
		}
		inDigits = false
		b.WriteRune(r)
	}
	return b.String()
}
