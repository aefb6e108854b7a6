package engine

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/ferry-sync/ferry/engine/connector"
	"github.com/ferry-sync/ferry/engine/internal/lease"
	"github.com/ferry-sync/ferry/engine/internal/linktable"
	"github.com/ferry-sync/ferry/engine/project"
	"github.com/ferry-sync/ferry/internal/sqlident"
	"github.com/ferry-sync/ferry/queries"
)

// chunk is a part of a page's changes sent in one Target.Write call.
type chunk struct {
	page    *writePage
	items   []*item
	intent  int64 // its write intent, 0 without inserts
	changes []connector.Change
	results []connector.Result
	err     error
	done    chan struct{}
}

// writer is the writer stage: it sends decided pages to the target in
// chunks, at most two in flight whichever pages they belong to, so that
// requests keep flowing across page boundaries instead of draining at the
// end of every page. A page is finished (its remaining link rows, counts
// and bookmark handed to the recorder) once all its chunks have landed,
// pages in order: the bookmark never passes a record not yet recorded.
//
// Each chunk's inserts are noted as a write intent first (fenced by the
// run's lease), so that if the process dies mid-write the next run settles
// them instead of inserting them again; chunks of a few times the target's
// concurrency keep that to the changes in flight, not a page. Sending
// stops early when the target refuses the credentials or cannot be
// reached, when the error budget is spent, and, with on_error: stop, at the
// first record that failed.
type writer struct {
	r      *runner
	rec    *recorder
	size   int          // changes per chunk
	flying []*chunk     // sent, in order
	pages  []*writePage // not finished yet, in order
	// stop is why nothing more is sent: the run must end.
	stop error
}

// writePage is a page between being sent and being finished.
type writePage struct {
	dp       *decidedPage
	tail     *string // a page that only moves the bookmark
	pending  int     // its chunks not landed yet
	sealed   bool    // all its chunks are sent (or it has none)
	writeErr error   // a chunk of it ended the run: its bookmark stays
}

func (r *runner) newWriter(rec *recorder) *writer {
	size := 0
	if p, ok := r.target.(connector.Pacer); ok {
		size = max(4*p.InFlight(), 100)
	}
	return &writer{r: r, rec: rec, size: size}
}

// page sends a decided page's changes (landing earlier chunks as needed)
// and finishes the pages whose chunks all landed. It returns an error when
// the run must end; the caller then drains what is in flight (drain).
func (w *writer) page(ctx context.Context, dp *decidedPage) error {
	r := w.r
	if dp.err != nil {
		return dp.err
	}
	wp := &writePage{dp: dp, tail: dp.tail}
	w.pages = append(w.pages, wp)
	if dp.tail == nil {
		r.count(func(c *Counts) {
			c.Read += int64(len(dp.recs))
			// Lookups the engine made (settling pending inserts, looking
			// records up before inserting them) are target calls and
			// lookups both, like a transform's.
			c.TargetCalls += dp.lookups
			c.Lookups += dp.lookups
		})
		var todo []*item
		for i, it := range dp.items {
			if r.s.OnError == project.OnErrorStop && (it.decision == DecideFail || it.decision == DecideInvalid) {
				notSent(dp.items[i+1:], "not sent: the run stops at source id "+it.id+" (on_error: stop)")
				break
			}
			if it.decision == DecideInsert || it.decision == DecideUpdate {
				todo = append(todo, it)
			}
		}
		if !r.opts.DryRun && len(todo) > 0 {
			w.send(ctx, wp, todo)
		}
		if r.s.OnError == project.OnErrorStop {
			// Strict: the next page is sent only once this one's failures
			// are known, so nothing after the first failure is written.
			for len(w.flying) > 0 {
				w.land(ctx)
			}
		}
	}
	wp.sealed = true
	w.finishReady(ctx)
	return w.stop
}

// send sends a page's changes in chunks.
func (w *writer) send(ctx context.Context, wp *writePage, todo []*item) {
	r := w.r
	size := w.size
	if size == 0 {
		size = len(todo)
	}
	for start := 0; start < len(todo); start += size {
		if w.stop == nil && r.halted() {
			notSent(todo[start:], "not sent: the run stopped before this record was written")
			return
		}
		if w.stop != nil {
			notSent(todo[start:], "not sent: the run stopped before this record was written")
			return
		}
		c := &chunk{page: wp, items: todo[start:min(start+size, len(todo))], done: make(chan struct{})}
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
				w.stop = fmt.Errorf("sync %s: recording write intents: %w; the records of this chunk were not sent: run the sync again", r.s.Name, err)
				wp.writeErr = w.stop
				notSent(todo[start:], "not sent: the run stopped before this record was written")
				return
			}
			c.intent = id
			r.e.fail("after-intent-commit")
		}
		go func() {
			defer close(c.done)
			// The scope keeps client-chosen ids and idempotency keys apart
			// between syncs that write the same source ids to one object.
			c.results, c.err = r.target.Write(connector.WithIdempotencyScope(ctx, r.s.Name), r.s.Target.Object, c.changes)
			r.e.fail("after-target-answered")
		}()
		wp.pending++
		w.flying = append(w.flying, c)
		if len(w.flying) == 2 {
			w.land(ctx)
		}
	}
}

// land waits for the oldest chunk in flight and records its results.
func (w *writer) land(ctx context.Context) {
	c := w.flying[0]
	w.flying = w.flying[1:]
	<-c.done
	if err := w.r.landed(ctx, c); err != nil && w.stop == nil {
		w.stop = err
		c.page.writeErr = err
	}
	c.page.pending--
	w.finishReady(ctx)
}

// drain lands every chunk in flight and finishes every page: called once
// no page is left, or when the run must end.
func (w *writer) drain(ctx context.Context) error {
	for len(w.flying) > 0 {
		w.land(ctx)
	}
	w.finishReady(ctx)
	return w.stop
}

// finishReady finishes the pages, in order, whose chunks all landed.
func (w *writer) finishReady(ctx context.Context) {
	for len(w.pages) > 0 && w.pages[0].sealed && w.pages[0].pending == 0 {
		wp := w.pages[0]
		w.pages = w.pages[1:]
		w.finish(wp)
	}
}

// finish hands a page's remaining link rows, its unchanged rows, counts and
// bookmark to the recorder, and decides whether the run stops there.
func (w *writer) finish(wp *writePage) {
	r := w.r
	if wp.tail != nil {
		if w.stop == nil && r.res.Status != RunStopped && !r.halted() && !r.held {
			w.rec.submit(&pageOutcome{bookmark: wp.tail})
		}
		return
	}
	dp := wp.dp
	out := &pageOutcome{writes: r.linkWrites(dp.items)}
	for _, it := range dp.items {
		if it.decision == DecideUnchanged && (it.link.Status != linktable.StatusSuccess || it.link.RowHash != it.rec.rowHash) {
			out.unchanged = append(out.unchanged, it.id)
			out.unchangedHashes = append(out.unchangedHashes, it.rec.rowHash)
		}
	}
	// What the page's records became counts once their link rows are
	// committed: a page the warehouse failed to record did not happen.
	out.counts = r.report(dp.items)
	out.counts.Invalid += dp.nullIDs
	if wp.writeErr == nil && !r.held {
		out.bookmark = r.nextBookmark(dp.recs, dp.items)
	}
	// A record not sent is untouched (no link row says it needs a retry):
	// the bookmark stops before it, and no later page nor the tail may move
	// it on, or the next run would start past it.
	for _, it := range dp.items {
		if it.decision == DecideNotSent {
			r.held = true
			break
		}
	}

	w.rec.submit(out)
	if r.opts.Progress != nil {
		r.opts.Progress(Progress{Sync: r.s.Name, Counts: r.counts(), Elapsed: time.Since(r.started)})
	}
	if r.res.Status == RunStopped || wp.writeErr != nil {
		return
	}
	if r.s.OnError == project.OnErrorStop {
		for _, it := range dp.items {
			if it.decision == DecideFail || it.decision == DecideInvalid {
				r.res.Status = RunStopped
				r.res.Error = fmt.Sprintf("stopped at source id %s: %s (on_error: stop; fix the record or set on_error: continue)", it.id, r.e.redact.Redact(it.reason))
				return
			}
		}
	}
	if why := r.haltReason(); why != "" {
		r.res.Status = RunStopped
		r.res.Error = r.e.redact.Redact(why)
	}
}

// addIntent notes inserts about to be sent, only while the run holds its
// lease. It is not cut short when the run is cancelled: an intent whose
// INSERT went through while its caller saw a cancellation would outlive the
// run and park records that were never sent as pending. Once it returns,
// the intent is known and is deleted with the chunk's link rows whatever
// the chunk becomes.
func (r *runner) addIntent(ctx context.Context, ids []string) (int64, error) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
	defer cancel()
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
	// A lost answer is one event however many records it leaves pending
	// (a batch of 100, or a chunk of inserts in flight when a connection
	// broke): counted once, not once per record, or a single reset would
	// spend the error budget and stop a healthy run.
	var lost *connector.Error
	for i, it := range c.items {
		res := c.results[i]
		switch {
		case !res.Done:
			it.fail(DecideNotSent, "not_sent", "not sent: the run stopped before this record was written")
			continue
		case res.Err != nil && (res.Err.Class == connector.Auth || res.Err.Class == connector.Unreachable || res.Err.Class == connector.RateLimited):
			// The target refused the credentials, was out of reach or its
			// quota is spent, not the record: untouched, like every record
			// not sent.
			calls++
			it.fail(DecideNotSent, "not_sent", "not written: "+res.Err.Error())
			continue
		case res.Err != nil:
			calls++
			it.fail(DecideFail, string(res.Err.Class), r.describeWriteError(c.changes[i], res.Err))
			it.errBody = r.e.redact.Redact(res.Err.Body)
			if res.Err.Class == connector.Ambiguous && c.changes[i].Op == connector.OpInsert {
				it.class = "pending"
			}
			if res.Err.Status == http.StatusConflict && c.changes[i].Op == connector.OpInsert && r.canSettle() {
				// The target says it holds this record already: found by
				// match_on and linked on the next run, not an error to fix.
				it.class = "pending"
				it.reason = fmt.Sprintf("inserting source id %s: %s already holds it (HTTP 409): the next run finds it by %s and links it", it.id, r.s.Target.Object, strings.Join(r.s.Target.MatchOn, ", "))
			}
			switch {
			case it.class == "pending" && res.Err.Class == connector.Ambiguous:
				lost = res.Err
			case it.class == "pending":
				// The target holds it already (409): linked next run.
				r.budget.observe("", "")
			case r.budget.observe(string(res.Err.Class), res.Err.Error()):
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
	if lost != nil && r.budget.observe(string(lost.Class), lost.Error()) {
		r.halt(r.budget.stopped())
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
	case connector.RateLimited:
		return fmt.Errorf("sync %s: connection %s refuses more requests for now: %w; the run stopped once its retry budget was spent (or its daily quota): records not written yet are untouched and go with the next run", r.s.Name, r.s.Target.Connection, c.err)
	}
	return fmt.Errorf("sync %s: writing to connection %s: %w", r.s.Name, r.s.Target.Connection, c.err)
}

// canSettle says whether a pending insert of this sync can be settled by
// looking it up (match_on and a target that finds records).
func (r *runner) canSettle() bool {
	_, finds := r.target.(connector.Finder)
	return finds && len(r.s.Target.MatchOn) > 0
}

// notSent marks items the run did not send: they stay as they were.
func notSent(items []*item, why string) {
	for _, it := range items {
		if it.decision == DecideInsert || it.decision == DecideUpdate {
			it.fail(DecideNotSent, "not_sent", why)
		}
	}
}

func (r *runner) describeWriteError(c connector.Change, err *connector.Error) string {
	what := "inserting"
	if c.Op == connector.OpUpdate {
		what = "updating " + c.TargetID + " in"
	}
	msg := fmt.Sprintf("%s %s refused source id %s: %s", what, r.s.Target.Object, c.SourceID, err.Error())
	switch err.Class {
	case connector.NotFound:
		msg += fmt.Sprintf("; the target record is gone: to insert it again, clear its target id (UPDATE %s SET target_id = NULL, status = 'error' WHERE source_id = %s): the next run retries it", r.lt.Ident, sqlident.Literal(c.SourceID))
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
