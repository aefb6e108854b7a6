package crmtest

import (
	"container/heap"
	"os"
	"sync"
	"syscall"
	"time"
	"unsafe"
)

// clock wakes the requests waiting for the latency at their deadlines, more
// precisely than Go timers do on Linux: an idle Go process sleeps in
// epoll_wait, whose timeout is in whole milliseconds, so a timer fires up to
// a millisecond late (half a millisecond on average: a tenth of a 5ms
// latency). The clock arms one timerfd for the earliest deadline; the
// runtime's poller sees it fire within microseconds. It never wakes a
// request before its deadline.
type clock struct {
	mu    sync.Mutex
	queue waiters
	armed time.Time // when the timerfd fires; zero when disarmed
	fd    uintptr
	file  *os.File
}

type waiter struct {
	at   time.Time
	done chan struct{}
}

// waiters is a heap of waiters, earliest deadline first.
type waiters []waiter

func (w waiters) Len() int           { return len(w) }
func (w waiters) Less(i, j int) bool { return w[i].at.Before(w[j].at) }
func (w waiters) Swap(i, j int)      { w[i], w[j] = w[j], w[i] }
func (w *waiters) Push(x any)        { *w = append(*w, x.(waiter)) }
func (w *waiters) Pop() any {
	old := *w
	x := old[len(old)-1]
	*w = old[:len(old)-1]
	return x
}

const clockMonotonic = 1 // CLOCK_MONOTONIC

// newClock creates the timerfd and the goroutine that reads it; nil when the
// system refuses (the server then uses Go timers).
func newClock() *clock {
	fd, _, errno := syscall.Syscall(syscall.SYS_TIMERFD_CREATE, clockMonotonic, syscall.O_NONBLOCK|syscall.O_CLOEXEC, 0)
	if errno != 0 {
		return nil
	}
	c := &clock{fd: fd, file: os.NewFile(fd, "crmtest-clock")} // non-blocking: read through the poller
	go c.run()
	return c
}

// after returns a channel closed once at has passed.
func (c *clock) after(at time.Time) <-chan struct{} {
	done := make(chan struct{})
	c.mu.Lock()
	heap.Push(&c.queue, waiter{at: at, done: done})
	if c.armed.IsZero() || at.Before(c.armed) {
		c.arm(at)
	}
	c.mu.Unlock()
	return done
}

// close stops the clock; waiters not yet released never are (the server
// is closing: they select on its closing channel too).
func (c *clock) close() { _ = c.file.Close() }

func (c *clock) run() {
	var ticks [8]byte
	for {
		if _, err := c.file.Read(ticks[:]); err != nil {
			return // closed
		}
		now := time.Now()
		c.mu.Lock()
		for len(c.queue) > 0 && !c.queue[0].at.After(now) {
			close(heap.Pop(&c.queue).(waiter).done)
		}
		c.armed = time.Time{}
		if len(c.queue) > 0 {
			c.arm(c.queue[0].at)
		}
		c.mu.Unlock()
	}
}

// arm sets the timerfd to fire at at. Called with c.mu held, so that the
// timer is always armed for the earliest deadline or earlier.
func (c *clock) arm(at time.Time) {
	d := time.Until(at)
	if d <= 0 {
		d = 1 // a zero value would disarm it
	}
	spec := struct{ interval, value syscall.Timespec }{value: syscall.NsecToTimespec(int64(d))}
	if _, _, errno := syscall.Syscall6(syscall.SYS_TIMERFD_SETTIME, c.fd, 0, uintptr(unsafe.Pointer(&spec)), 0, 0, 0); errno != 0 {
		// Only when closed: hand the waiters to Go timers rather than
		// strand them (or release them early).
		for len(c.queue) > 0 {
			w := heap.Pop(&c.queue).(waiter)
			time.AfterFunc(time.Until(w.at), func() { close(w.done) })
		}
		return
	}
	c.armed = at
}
