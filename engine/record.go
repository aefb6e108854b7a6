package engine

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"sync"
	"time"

	"github.com/ferry-sync/ferry/engine/internal/linktable"
	"github.com/ferry-sync/ferry/internal/jsonx"
	"github.com/ferry-sync/ferry/queries"
	"github.com/jackc/pgx/v5"
)

// pageOutcome is what the recorder commits for one page.
type pageOutcome struct {
	writes []linktable.Write
	// unchanged are the ids (and row hashes) of unchanged records whose
	// link rows need their row hash or status brought up to date: one cheap
	// UPDATE instead of an upsert per row.
	unchanged, unchangedHashes []string
	intents                    []int64 // the page's write intents, deleted with the link rows
	bookmark                   *string // where the bookmark may move once the rows are in
	counts                     Counts  // what the page's records became, counted once committed
}

// recorder commits page outcomes in order on its own goroutine.
type recorder struct {
	in   chan *pageOutcome
	done chan struct{}
	mu   sync.Mutex
	fail error
}

func (r *runner) startRecorder(ctx context.Context) *recorder {
	// What was written to the target must be recorded even when the run is
	// cancelled (Ctrl-C): the recorder outlives the run's context a little.
	ctx = context.WithoutCancel(ctx)
	rc := &recorder{in: make(chan *pageOutcome, recorderQueue), done: make(chan struct{})}
	go func() {
		defer close(rc.done)
		for out := range rc.in {
			// Whatever queued up while the last commit ran goes in one
			// transaction, in order: prompt when the warehouse keeps up,
			// cheap when it does not.
			batch := []*pageOutcome{out}
		drain:
			for len(batch) < recorderQueue {
				select {
				case more, ok := <-rc.in:
					if !ok {
						break drain
					}
					batch = append(batch, more)
				default:
					break drain
				}
			}
			if rc.err() != nil {
				continue
			}
			if err := r.commit(ctx, merge(batch)); err != nil {
				rc.mu.Lock()
				rc.fail = err
				rc.mu.Unlock()
			}
		}
	}()
	return rc
}

// recorderQueue is how many outcomes (chunks and pages) may wait for the
// recorder, and so how many it commits together at most. It is small: a
// writer faster than the warehouse waits for it, so memory holds a few
// pages, not a run.
const recorderQueue = 4

// merge joins outcomes into one, in order: the bookmark is the last one's.
func merge(outs []*pageOutcome) *pageOutcome {
	if len(outs) == 1 {
		return outs[0]
	}
	m := &pageOutcome{}
	for _, o := range outs {
		m.writes = append(m.writes, o.writes...)
		m.unchanged = append(m.unchanged, o.unchanged...)
		m.unchangedHashes = append(m.unchangedHashes, o.unchangedHashes...)
		m.intents = append(m.intents, o.intents...)
		m.counts.add(o.counts)
		if o.bookmark != nil {
			m.bookmark = o.bookmark
		}
	}
	return m
}

func (rc *recorder) submit(out *pageOutcome) { rc.in <- out }

func (rc *recorder) err() error {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	return rc.fail
}

// close waits until every submitted page is committed.
func (rc *recorder) close() error {
	close(rc.in)
	<-rc.done
	return rc.err()
}

func (r *runner) commit(ctx context.Context, out *pageOutcome) error {
	if r.opts.DryRun || (len(out.writes) == 0 && len(out.unchanged) == 0 && len(out.intents) == 0 && out.bookmark == nil) {
		r.count(func(c *Counts) { c.add(out.counts) })
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	err := r.fenced(ctx, func(tx pgx.Tx) error {
		if err := r.lt.Upsert(ctx, tx, out.writes); err != nil {
			return err
		}
		if err := r.pairEffects(ctx, tx, out.writes); err != nil {
			return err
		}
		if err := r.lt.MarkUnchanged(ctx, tx, out.unchanged, out.unchangedHashes); err != nil {
			return err
		}
		q := r.e.q.WithTx(tx)
		for _, id := range out.intents {
			if err := q.IntentDelete(ctx, id); err != nil {
				return fmt.Errorf("clearing write intents: %w", err)
			}
		}
		if out.bookmark != nil {
			if err := q.BookmarkSet(ctx, queries.BookmarkSetParams{Sync: r.s.Name, Value: *out.bookmark}); err != nil {
				return fmt.Errorf("saving the bookmark: %w", err)
			}
			r.e.fail("before-bookmark-commit")
		}
		if len(out.writes) > 0 {
			r.e.fail("before-link-commit")
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("sync %s: recording a page: %w; run the sync again: what this run sent but could not record is settled then (write intents), not sent twice", r.s.Name, err)
	}
	if len(out.writes) > 0 {
		r.e.fail("after-link-commit")
	}
	if out.bookmark != nil {
		r.recordedBookmark = *out.bookmark
	}
	r.count(func(c *Counts) { c.add(out.counts) })
	return nil
}

// linkWrites returns the link rows that record the page's outcomes.
func (r *runner) linkWrites(items []*item) []linktable.Write {
	var ws []linktable.Write
	for _, it := range items {
		if it.recorded {
			continue
		}
		switch it.decision {
		case DecideInsert, DecideUpdate:
			tid := it.targetID
			h, rh := it.hash, it.rec.rowHash
			ws = append(ws, linktable.Write{SourceID: it.id, TargetID: &tid, Status: linktable.StatusSuccess, Hash: &h, RowHash: &rh, Payload: it.payload, Synced: true,
				Inserted: it.decision == DecideInsert, Conflict: r.conflictNote(it), PartnerRowHash: it.partnerRowHash})
		case DecideUnchanged:
			// Recorded by pageOutcome.unchanged, unless a two-way pair found
			// the target already holds the payload (its hash is now the
			// link row's) or settled a conflict.
			if it.inStep || it.conflict != "" {
				rh := it.rec.rowHash
				w := linktable.Write{SourceID: it.id, Status: linktable.StatusSuccess, RowHash: &rh, Conflict: r.conflictNote(it)}
				if it.inStep {
					h := it.hash
					w.Hash = &h
				}
				ws = append(ws, w)
			}
		case DecideSkip:
			if it.class == "transform" {
				reason := r.e.redact.Redact(it.reason)
				ws = append(ws, linktable.Write{SourceID: it.id, Status: linktable.StatusSkipped, Error: &reason})
			}
		case DecideNotSent:
			// Left as it was before this run.
		case DecideFail, DecideInvalid:
			msg, class := r.e.redact.Redact(it.reason), it.class
			status := linktable.StatusError
			if class == "pending" {
				status = linktable.StatusPending
			}
			w := linktable.Write{SourceID: it.id, Status: status, Error: &msg, ErrorClass: &class, FailedOnce: true}
			if it.link.TargetID == "" {
				// A record never written keeps the payload that failed, to
				// see what was sent; a written one keeps its last good one
				// (plans compare with it).
				w.Payload = it.payload
			}
			if it.errBody != "" {
				w.ErrorBody = &it.errBody
			}
			ws = append(ws, w)
		}
	}
	return ws
}

func (r *runner) conflictNote(it *item) *string {
	if it.conflict == "" {
		return nil
	}
	note := r.e.redact.Redact(it.conflict)
	return &note
}

// report counts the page's outcomes and keeps samples.
func (r *runner) report(items []*item) Counts {
	var counts Counts
	c := &counts
	for _, it := range items {
		if it.recorded {
			continue
		}
		switch it.decision {
		case DecideInsert:
			c.Inserted++
		case DecideUpdate:
			c.Updated++
		}
		if it.rec.behind && it.rec.mayAdvance && (it.decision == DecideInsert || it.decision == DecideUpdate) {
			c.Caught++
		}
		switch it.decision {
		case DecideUnchanged:
			c.Unchanged++
		case DecideSkip:
			c.Skipped++
		case DecideInvalid:
			c.Invalid++
		case DecideFail:
			c.Failed++
		case DecideWait:
			c.Waiting++
		case DecideUnknown:
			c.Unknown++
		}
		if r.opts.Samples > 0 && r.samples(it.decision) < r.opts.Samples {
			rep := RecordReport{
				SourceID: it.id, Source: it.rec.values, Mapped: it.mapped, Payload: it.payload, Decision: it.decision,
				TargetID: it.targetID, Reason: r.e.redact.Redact(it.reason), Printed: it.printed, LinkState: it.link.Status, Behind: it.rec.behind || it.rec.kept, Kept: it.rec.kept,
			}
			if it.decision == DecideUpdate && it.link.Payload != nil {
				rep.Changes = changes(it.link.Payload, it.payload)
			}
			r.res.Records = append(r.res.Records, rep)
		}
	}
	return counts
}

func (r *runner) samples(d Decision) int {
	n := 0
	for _, rr := range r.res.Records {
		if rr.Decision == d {
			n++
		}
	}
	return n
}

// changes lists the fields whose values differ between the last payload
// written and the new one, in field order.
func changes(old, new map[string]any) []FieldChange {
	var out []FieldChange
	for _, k := range slices.Sorted(maps.Keys(new)) {
		o, had := old[k]
		if !had || string(jsonx.AppendCanonical(nil, o)) != string(jsonx.AppendCanonical(nil, new[k])) {
			out = append(out, FieldChange{Field: k, Old: o, New: new[k]})
		}
	}
	for _, k := range slices.Sorted(maps.Keys(old)) {
		if _, has := new[k]; !has {
			out = append(out, FieldChange{Field: k, Old: old[k]})
		}
	}
	return out
}
