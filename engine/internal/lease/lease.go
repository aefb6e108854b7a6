// Package lease owns the claim a run holds on its sync (or a standalone
// script): one run at a time across every process and replica that shares
// the warehouse, with a fencing token.
//
// The one thing to know: holding a Lease is not enough to write. Every
// commit of a run checks the lease's epoch in its own transaction (Fence),
// and every request to a target is preceded by Valid, which fails once the
// lease may have expired without being renewed. A run that was paused (a
// stopped process, a long GC, a partition) and lost its claim therefore
// writes nothing after the new holder took over.
package lease

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/ferry-sync/ferry/queries"
)

// DefaultTTL is how long a lease lasts without renewal. The holder renews
// it every TTL/3, so a process that stops for longer loses it.
const DefaultTTL = 30 * time.Second

// ErrLost is the cause of a run's context once its lease is lost.
var ErrLost = errors.New("this run lost its claim on the sync")

// HeldError says who holds a lease another process asked for.
type HeldError struct {
	Name      string
	Holder    string
	RunID     int64 // 0 when the holder has not started its run row yet
	ExpiresIn time.Duration
}

func (e *HeldError) Error() string {
	msg := "held by " + e.Holder
	if e.RunID != 0 {
		msg += fmt.Sprintf(" (run %d)", e.RunID)
	}
	return msg + fmt.Sprintf(", renewed until %s from now", e.ExpiresIn.Round(time.Second))
}

// Holder names this process in leases: host, the machine and process
// namespace it runs in, pid and a random part, so that two processes never
// take each other for the same holder.
func Holder() string {
	var b [4]byte
	_, _ = rand.Read(b[:])
	return fmt.Sprintf("%s/%d/%s", machine(), os.Getpid(), hex.EncodeToString(b[:]))
}

// machine names where pids mean the same thing: the host name, the boot
// (two machines never share one) and the pid namespace (two containers on
// one kernel do not see each other's processes).
func machine() string {
	host, _ := os.Hostname()
	boot, _ := os.ReadFile("/proc/sys/kernel/random/boot_id")
	ns, _ := os.Readlink("/proc/self/ns/pid")
	return fmt.Sprintf("%s[%s%s]", host, strings.TrimSpace(string(boot)), ns)
}

// holderGone reports whether holder is a process of this machine that no
// longer exists: its claim can be taken at once, since a dead process
// writes nothing. Anything less certain waits for the lease to expire.
func holderGone(holder string) bool {
	i := strings.LastIndex(holder, "/")
	if i < 0 {
		return false
	}
	j := strings.LastIndex(holder[:i], "/")
	if j < 0 || holder[:j] != machine() || strings.Contains(machine(), "[]") {
		return false
	}
	pid, err := strconv.Atoi(holder[j+1 : i])
	if err != nil || pid <= 0 || pid == os.Getpid() {
		return false
	}
	return !processAlive(pid)
}

// Lease is a claim on one name, renewed in the background while held.
type Lease struct {
	db     *pgxpool.Pool
	q      *queries.Queries
	name   string
	holder string
	epoch  int64
	ttl    time.Duration

	mu         sync.Mutex
	validUntil time.Time // local, monotonic: conservative end of the claim
	lost       error     // set once: why the claim is gone

	stopBeat context.CancelFunc
	beatDone chan struct{}
}

// Acquire takes the lease called name for holder, or returns a *HeldError
// when a live holder has it. Acquire does not renew it: call Keep.
//
// onClaim, when not nil, runs in the transaction that takes the lease and
// returns the id of the run that holds it (recorded on the lease): a
// process that finds the lease held then always learns which run holds it,
// since its own attempt waits for that transaction.
func Acquire(ctx context.Context, db *pgxpool.Pool, name, holder string, ttl time.Duration, onClaim func(context.Context, pgx.Tx) (int64, error)) (*Lease, error) {
	if ttl <= 0 {
		ttl = DefaultTTL
	}
	q := queries.New(db)
	// The claim cannot end before the database's now() + ttl, and that now()
	// is later than this moment: counting from here is on the safe side.
	asked := time.Now()
	var epoch int64
	var cur queries.LeaseGetRow
	held := false
	err := pgx.BeginFunc(ctx, db, func(tx pgx.Tx) error {
		qt := q.WithTx(tx)
		row, err := qt.LeaseAcquire(ctx, queries.LeaseAcquireParams{Name: name, Holder: holder, TtlSeconds: ttl.Seconds()})
		if errors.Is(err, pgx.ErrNoRows) {
			if cur, err = qt.LeaseGet(ctx, name); err != nil {
				return fmt.Errorf("lease %s is held, and reading who holds it failed: %w", name, err)
			}
			if !holderGone(cur.Holder) {
				held = true
				return nil
			}
			// Its holder died (kill -9, a crash) on this machine: take it
			// over from exactly that holder, at once.
			took, err := qt.LeaseTakeOver(ctx, queries.LeaseTakeOverParams{Name: name, Holder: holder, Epoch: cur.Epoch, TtlSeconds: ttl.Seconds()})
			if errors.Is(err, pgx.ErrNoRows) {
				held = true // someone else was quicker
				return nil
			}
			if err != nil {
				return fmt.Errorf("taking over lease %s from a dead process: %w", name, err)
			}
			row.Epoch = took.Epoch
		} else if err != nil {
			return fmt.Errorf("taking lease %s: %w", name, err)
		}
		epoch = row.Epoch
		if onClaim == nil {
			return nil
		}
		runID, err := onClaim(ctx, tx)
		if err != nil {
			return err
		}
		_, err = qt.LeaseSetRun(ctx, queries.LeaseSetRunParams{Name: name, Epoch: epoch, RunID: &runID})
		return err
	})
	if err != nil {
		return nil, err
	}
	if held {
		if cur.Name == "" { // taken over by another: read who
			if cur, err = q.LeaseGet(ctx, name); err != nil {
				return nil, fmt.Errorf("lease %s is held, and reading who holds it failed: %w", name, err)
			}
		}
		return nil, &HeldError{Name: name, Holder: cur.Holder, RunID: ptrOr(cur.RunID), ExpiresIn: cur.ExpiresAt.Sub(cur.DbNow)}
	}
	return &Lease{db: db, q: q, name: name, holder: holder, epoch: epoch, ttl: ttl, validUntil: asked.Add(ttl)}, nil
}

func ptrOr(p *int64) int64 {
	if p == nil {
		return 0
	}
	return *p
}

// Epoch is the lease's fencing token.
func (l *Lease) Epoch() int64 { return l.epoch }

// Keep renews the lease every TTL/3 until Release, and returns a context
// derived from ctx that is cancelled, with a cause wrapping ErrLost, as soon
// as the lease is lost: another holder took it, or it could not be renewed
// before it expired.
func (l *Lease) Keep(ctx context.Context) context.Context {
	runCtx, cancel := context.WithCancelCause(ctx)
	beatCtx, stop := context.WithCancel(context.WithoutCancel(ctx))
	l.stopBeat = stop
	l.beatDone = make(chan struct{})
	go func() {
		defer close(l.beatDone)
		l.beat(beatCtx, func(err error) { cancel(err) })
	}()
	return runCtx
}

func (l *Lease) beat(ctx context.Context, lose func(error)) {
	every := l.ttl / 3
	timer := time.NewTimer(every)
	defer timer.Stop()
	for {
		// Wake up at the next renewal, or when the claim runs out, whichever
		// comes first: a renewal that keeps failing must not outlive it.
		select {
		case <-ctx.Done():
			return
		case <-timer.C:
		}
		if err := l.Valid(); err != nil {
			lose(err)
			return
		}
		asked := time.Now()
		rctx, cancel := context.WithTimeout(ctx, every)
		_, err := l.q.LeaseRenew(rctx, queries.LeaseRenewParams{Name: l.name, Epoch: l.epoch, TtlSeconds: l.ttl.Seconds()})
		cancel()
		switch {
		case errors.Is(err, pgx.ErrNoRows):
			l.setLost(fmt.Errorf("%w: another run took it over (lease %s, epoch %d)", ErrLost, l.name, l.epoch))
			lose(l.Valid())
			return
		case err != nil:
			if ctx.Err() != nil {
				return
			}
			// The warehouse may be restarting: try again soon, while the
			// claim still holds.
			timer.Reset(min(time.Second, every))
			continue
		}
		l.mu.Lock()
		if l.lost == nil {
			l.validUntil = asked.Add(l.ttl)
		}
		l.mu.Unlock()
		timer.Reset(every)
	}
}

func (l *Lease) setLost(err error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.lost == nil {
		l.lost = err
	}
}

// Valid reports whether the claim still holds, as far as this process can
// tell without asking the database: nil until it may have expired. Check it
// before every write to a target.
func (l *Lease) Valid() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.lost != nil {
		return l.lost
	}
	if time.Now().After(l.validUntil) {
		l.lost = fmt.Errorf("%w: it was not renewed within %s (was the process paused, or the warehouse unreachable?)", ErrLost, l.ttl)
		return l.lost
	}
	return nil
}

// Fence checks, inside tx, that the lease is still this holder's. Call it
// first in every transaction that records a run's work: a new holder's
// claim waits for tx, and once it has the lease, Fence fails. It also
// bounds how long tx may sit idle (one TTL): a holder paused mid-commit
// cannot keep the next holder waiting.
func (l *Lease) Fence(ctx context.Context, tx pgx.Tx) error {
	_, err := l.q.WithTx(tx).LeaseCheck(ctx, queries.LeaseCheckParams{Name: l.name, Epoch: l.epoch, IdleTimeoutMs: strconv.FormatInt(l.ttl.Milliseconds(), 10)})
	if errors.Is(err, pgx.ErrNoRows) {
		l.setLost(fmt.Errorf("%w: another run took it over (lease %s, epoch %d)", ErrLost, l.name, l.epoch))
		return l.lost
	}
	if err != nil {
		return fmt.Errorf("checking lease %s: %w", l.name, err)
	}
	return nil
}

// Release stops the renewals and gives the lease up, so the next run need
// not wait for it to expire.
func (l *Lease) Release(ctx context.Context) {
	if l.stopBeat != nil {
		l.stopBeat()
		<-l.beatDone
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	// A claim not given up blocks the sync for a whole TTL: retried when the
	// connection died under it.
	_ = queries.RetryBroken(ctx, func(ctx context.Context) error {
		return l.q.LeaseRelease(ctx, queries.LeaseReleaseParams{Name: l.name, Epoch: l.epoch})
	})
}

// Name is the lease's name ("sync:contacts").
func (l *Lease) Name() string { return l.name }
