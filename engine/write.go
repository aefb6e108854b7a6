package engine

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/ferry-sync/ferry/engine/connector"
	"github.com/ferry-sync/ferry/engine/internal/lease"
	"github.com/ferry-sync/ferry/engine/internal/linktable"
	"github.com/ferry-sync/ferry/engine/project"
	"github.com/ferry-sync/ferry/queries"
)

// chunk is a part of a page's changes sent in one Target.Write call.
type chunk struct {
	items   []*item
	intent  int64 // its write intent, 0 without inserts
	changes []connector.Change
	results []connector.Result
	err     error
	done    chan struct{}
}

// write is the writer stage's work on one page: it sends the changes to the
// target in chunks and returns the link rows that record every outcome
// (committed by the recorder).
//
// Each chunk's inserts are noted as a write intent first (fenced by the
// run's lease), so that if the process dies mid-write the next run settles
// them instead of inserting them again; chunks of a few times the target's
// concurrency keep that to the changes in flight, not a page. The next
// chunk is sent while one is in flight, so requests keep flowing. Sending
// stops early when the target refuses the credentials or cannot be
// reached, when the error budget is spent, and, with on_error: stop, at the
// first record that failed.
func (r *runner) write(ctx context.Context, items []*item) (*pageOutcome, error) {
	out := &pageOutcome{}
	var todo []*item
	for i, it := range items {
		if r.s.OnError == project.OnErrorStop && (it.decision == DecideFail || it.decision == DecideInvalid) {
			notSent(items[i+1:], "not sent: the run stops at source id "+it.id+" (on_error: stop)")
			break
		}
		if it.decision == DecideInsert || it.decision == DecideUpdate {
			todo = append(todo, it)
		}
	}
	if !r.opts.DryRun && len(todo) > 0 {
		if err := r.send(ctx, todo); err != nil {
			out.writes = r.linkWrites(items)
			return out, err
		}
	}
	out.writes = r.linkWrites(items)
	for _, it := range items {
		if it.decision == DecideUnchanged && (it.link.Status != linktable.StatusSuccess || it.link.RowHash != it.rec.rowHash) {
			out.unchanged = append(out.unchanged, it.id)
			out.unchangedHashes = append(out.unchangedHashes, it.rec.rowHash)
		}
	}
	return out, nil
}

// send writes the items in chunks, at most two in flight, and records each
// result on its item. It returns an error when the run must end.
func (r *runner) send(ctx context.Context, todo []*item) error {
	size := len(todo)
	if p, ok := r.target.(connector.Pacer); ok {
		size = max(4*p.InFlight(), 100)
	}
	var flying []*chunk
	var stop error
	land := func() {
		c := flying[0]
		flying = flying[1:]
		<-c.done
		if err := r.landed(ctx, c); err != nil && stop == nil {
			stop = err
		}
	}
	for start := 0; start < len(todo); start += size {
		if stop == nil && r.halted() {
			stop = errHalted
		}
		if stop != nil {
			notSent(todo[start:], "not sent: the run stopped before this record was written")
			break
		}
		c := &chunk{items: todo[start:min(start+size, len(todo))], done: make(chan struct{})}
		var inserts []string
		for _, it := range c.items {
			if it.decision == DecideInsert {
				c.changes = append(c.changes, connector.Change{Op: connector.OpInsert, SourceID: it.id, Payload: it.payload})
				inserts = append(inserts, it.id)
			} else {
				c.changes = append(c.changes, connector.Change{Op: connector.OpUpdate, SourceID: it.id, TargetID: it.targetID, Payload: it.payload})
			}
		}
		if len(inserts) > 0 {
			id, err := r.addIntent(ctx, inserts)
			if err != nil {
				stop = fmt.Errorf("sync %s: recording write intents: %w", r.s.Name, err)
				notSent(todo[start:], "not sent: the run stopped before this record was written")
				break
			}
			c.intent = id
		}
		go func() {
			defer close(c.done)
			c.results, c.err = r.target.Write(ctx, r.s.Target.Object, c.changes)
		}()
		flying = append(flying, c)
		if len(flying) == 2 {
			land()
		}
	}
	for len(flying) > 0 {
		land()
	}
	if errors.Is(stop, errHalted) {
		return nil // the writer sees the halt and stops the run
	}
	return stop
}

// errHalted says sending stopped because the run is halting (error budget).
var errHalted = errors.New("the run is stopping")

// addIntent notes inserts about to be sent, only while the run holds its
// lease.
func (r *runner) addIntent(ctx context.Context, ids []string) (int64, error) {
	id, err := r.e.q.IntentAddFenced(ctx, queries.IntentAddFencedParams{
		Sync: r.s.Name, RunID: &r.runID, SourceIds: ids, Lease: r.lease.Name(), Epoch: r.lease.Epoch()})
	if errors.Is(err, pgx.ErrNoRows) {
		return 0, fmt.Errorf("%w: another run took it over", lease.ErrLost)
	}
	return id, err
}

// landed records a chunk's results on its items, counts them, writes new
// ids back, and says whether the run must end.
func (r *runner) landed(ctx context.Context, c *chunk) error {
	if r.xf != nil {
		// A cached "not found" would turn into a duplicate insert.
		r.xf.ForgetLookups("")
		r.xf.ForgetLookups(r.s.Target.Connection)
	}
	if len(c.results) != len(c.changes) {
		padded := make([]connector.Result, len(c.changes))
		copy(padded, c.results)
		c.results = padded
	}
	calls := int64(0)
	for i, it := range c.items {
		res := c.results[i]
		switch {
		case !res.Done:
			it.fail(DecideNotSent, "not_sent", "not sent: the run stopped before this record was written")
			continue
		case res.Err != nil && (res.Err.Class == connector.Auth || res.Err.Class == connector.Unreachable):
			// The target refused the credentials or was out of reach, not
			// the record: untouched, like every record not sent.
			calls++
			it.fail(DecideNotSent, "not_sent", "not written: "+res.Err.Error())
			continue
		case res.Err != nil:
			calls++
			it.fail(DecideFail, string(res.Err.Class), r.describeWriteError(c.changes[i], res.Err))
			if res.Err.Class == connector.Ambiguous && c.changes[i].Op == connector.OpInsert {
				it.class = "pending"
			}
			if r.budget.observe(string(res.Err.Class), res.Err.Error()) {
				r.halt(r.budget.stopped())
			}
		default:
			calls++
			if c.changes[i].Op == connector.OpInsert {
				it.targetID = res.TargetID
			}
			r.budget.observe("", "")
		}
		if r.s.OnError == project.OnErrorStop && it.decision == DecideFail {
			r.halt("")
		}
	}
	r.count(func(c *Counts) { c.TargetCalls += calls })
	r.writeBack(ctx, c.items, c.changes, c.results)
	// Recorded now, not with the page: a crash then leaves only the chunks
	// in flight to settle (the recorder commits what queued up together).
	out := &pageOutcome{writes: r.linkWrites(c.items), counts: r.report(c.items)}
	if c.intent != 0 {
		out.intents = []int64{c.intent}
	}
	for _, it := range c.items {
		it.recorded = true
	}
	r.rec.submit(out)
	if c.err == nil {
		return nil
	}
	switch connector.ClassOf(c.err) {
	case connector.Auth:
		return fmt.Errorf("sync %s: connection %s refused the credentials: %w; fix them (see the connection's auth settings) and run again: records not written yet are untouched", r.s.Name, r.s.Target.Connection, c.err)
	case connector.Unreachable:
		return fmt.Errorf("sync %s: connection %s cannot be reached: %w; the run stopped after the connector's retries: records not written yet are untouched", r.s.Name, r.s.Target.Connection, c.err)
	}
	return fmt.Errorf("sync %s: writing to connection %s: %w", r.s.Name, r.s.Target.Connection, c.err)
}

// notSent marks items the run did not send: they stay as they were.
func notSent(items []*item, why string) {
	for _, it := range items {
		if it.decision == DecideInsert || it.decision == DecideUpdate {
			it.fail(DecideNotSent, "not_sent", why)
		}
	}
}

// finishPage is the writer stage: it writes a decided page, counts it and
// hands its link rows to the recorder. It returns an error only when the
// run must end (the warehouse or the target's credentials failed); record
// failures are recorded and counted.
func (r *runner) finishPage(ctx context.Context, dp *decidedPage, rc *recorder) error {
	if dp.err != nil {
		return dp.err
	}
	if dp.tail != nil {
		rc.submit(&pageOutcome{bookmark: dp.tail})
		return nil
	}
	r.count(func(c *Counts) {
		c.Read += int64(len(dp.recs))
		c.TargetCalls += dp.lookups
	})
	out, writeErr := r.write(ctx, dp.items)
	// What the page's records became counts once their link rows are
	// committed: a page the warehouse failed to record did not happen.
	out.counts = r.report(dp.items)
	out.counts.Invalid += dp.nullIDs
	if writeErr == nil {
		out.bookmark = r.nextBookmark(dp.recs, dp.items)
	}
	rc.submit(out)
	if r.opts.Progress != nil {
		r.opts.Progress(Progress{Sync: r.s.Name, Counts: r.counts(), Elapsed: time.Since(r.started)})
	}
	if writeErr != nil {
		return writeErr
	}
	if r.s.OnError == project.OnErrorStop {
		for _, it := range dp.items {
			if it.decision == DecideFail || it.decision == DecideInvalid {
				r.res.Status = RunStopped
				r.res.Error = fmt.Sprintf("stopped at source id %s: %s (on_error: stop; fix the record or set on_error: continue)", it.id, r.e.redact.Redact(it.reason))
				return nil
			}
		}
	}
	if why := r.haltReason(); why != "" {
		r.res.Status = RunStopped
		r.res.Error = r.e.redact.Redact(why)
	}
	return nil
}

func (r *runner) describeWriteError(c connector.Change, err *connector.Error) string {
	what := "inserting"
	if c.Op == connector.OpUpdate {
		what = "updating " + c.TargetID + " in"
	}
	msg := fmt.Sprintf("%s %s refused source id %s: %s", what, r.s.Target.Object, c.SourceID, err.Error())
	switch err.Class {
	case connector.NotFound:
		msg += fmt.Sprintf("; the target record is gone: delete the row of source id %s from link_tables.%s to insert it again", c.SourceID, r.s.Name)
	case connector.Ambiguous:
		if _, finds := r.target.(connector.Finder); finds && len(r.s.Target.MatchOn) > 0 {
			msg += fmt.Sprintf("; the target may have applied it: the next run looks it up by %s before sending anything again", strings.Join(r.s.Target.MatchOn, ", "))
		} else {
			msg += fmt.Sprintf("; the target may have applied it, so it is never sent again blindly: set target.match_on (with a lookup) to let Ferry find it, or settle it in link_tables.%s by hand (ferry status %s says how)", r.s.Name, r.s.Name)
		}
	case connector.Rejected:
		msg += "; fix the source data or the mapping: the record is retried on every run"
	default:
		msg += "; retried on the next run"
	}
	return msg
}

// writeBack writes the ids of the page's new target records into the source
// application (write_back). A failure does not undo the insert: it is kept
// in ferry.run_errors with what to do, and the run goes on.
func (r *runner) writeBack(ctx context.Context, sent []*item, changes []connector.Change, results []connector.Result) {
	wb := r.s.WriteBack
	if wb == nil || r.back == nil {
		return
	}
	var backs []connector.Change
	for i, it := range sent {
		if changes[i].Op == connector.OpInsert && results[i].Done && results[i].Err == nil {
			backs = append(backs, connector.Change{Op: connector.OpUpdate, SourceID: it.id, TargetID: it.id,
				Payload: map[string]any{wb.Field: typedID(it.targetID, r.lt.TargetType)}})
		}
	}
	if len(backs) == 0 {
		return
	}
	res, err := r.back.Write(ctx, wb.Object, backs)
	for i, c := range backs {
		var failure error
		switch {
		case i < len(res) && res[i].Done && res[i].Err == nil:
			r.count(func(c *Counts) { c.WrittenBack++ })
			continue
		case i < len(res) && res[i].Err != nil:
			failure = res[i].Err
		case err != nil:
			failure = err
		default:
			failure = fmt.Errorf("not sent")
		}
		id := c.SourceID
		r.runError(ctx, &id, "write_back", fmt.Sprintf(
			"writing target id %v back to %s.%s of source id %s failed: %v; the record itself is synced (link_tables.%s holds its target id)",
			c.Payload[wb.Field], wb.Object, wb.Field, id, failure, r.s.Name))
	}
}
