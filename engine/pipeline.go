package engine

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/ferry-sync/ferry/queries"
)

// A run is a pipeline of four stages, so that the warehouse, the script
// workers and the target work at the same time instead of waiting for each
// other:
//
//	reader    FETCHes the next page from the scope cursor
//	decider   reads the page's link rows and parents, maps, hashes, decides
//	          and runs the transform
//	writer    writes the page to the target (the caller's goroutine)
//	recorder  commits the previous page's link rows, the deletion of its
//	          write intent and the bookmark, in one transaction, in page order
//
// Each stage hands over at most one page, so memory stays flat. The bookmark
// still moves only past pages whose link rows are committed, because it
// commits in the same transaction as them. Pages hold distinct source ids
// (a duplicated id is invalid wherever it appears), so deciding page N+1
// before page N is recorded reads no link row that page N changes.

// pageOutcome is what the recorder commits for one page.
type pageOutcome struct {
	writes []linkWrite
	// unchanged are the ids (and row hashes) of unchanged records whose
	// link rows need their row hash or status brought up to date: one cheap
	// UPDATE instead of an upsert per row.
	unchanged, unchangedHashes []string
	intents                    []int64 // the page's write intents, deleted with the link rows
	bookmark                   *string // where the bookmark may move once the rows are in
	counts                     Counts  // what the page's records became, counted once committed
}

// stream runs the main read past the bookmark, then the records to retry.
func (r *runner) stream(ctx context.Context, tx pgx.Tx) (err error) {
	upstream, stopUpstream := context.WithCancel(ctx)
	pages := make(chan *page, 1)
	readErr := make(chan error, 1)
	go func() {
		defer close(pages)
		readErr <- r.readAll(upstream, tx, pages)
	}()
	decided := make(chan *decidedPage, 1)
	go func() {
		defer close(decided)
		for pg := range pages {
			select {
			case decided <- r.decidePage(upstream, pg):
			case <-upstream.Done():
				return
			}
		}
	}()
	rec := r.startRecorder(ctx)
	r.rec = rec
	defer func() {
		stopUpstream()
		for range decided { // let the decider finish
		}
		for range pages { // and the reader
		}
		rerr := <-readErr
		cerr := rec.close()
		if err == nil {
			err = cerr
		}
		if err == nil && !errors.Is(rerr, context.Canceled) {
			err = rerr
		}
	}()
	for dp := range decided {
		if err := rec.err(); err != nil {
			return err
		}
		if err := r.finishPage(ctx, dp, rec); err != nil {
			return err
		}
		if r.res.Status == RunStopped {
			return nil
		}
	}
	return nil
}

// page is what the reader hands over: a page of scope rows, or (tail) the
// stamp the bookmark may move to once every page before it is recorded.
type page struct {
	recs []*record
	tail *string
}

// readAll feeds pages to the processor: the scope past the bookmark through
// a cursor (rows the warehouse finds unchanged stay there), the stamp past
// the last row read, then the records whose link rows ask for a retry. Each
// page is tagged by whether it may move the bookmark.
func (r *runner) readAll(ctx context.Context, tx pgx.Tx, pages chan<- *page) error {
	send := func(pg *page) error {
		select {
		case pages <- pg:
			return nil
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	if r.opts.IDs != nil {
		return r.readIDs(ctx, tx, r.opts.IDs, send)
	}
	sql, args := r.sc.readSQL(r.bookmark, r.reconcile, r.plan)
	if _, err := tx.Exec(ctx, "DECLARE "+cursorName+" NO SCROLL CURSOR FOR "+sql, append([]any{pgx.QueryExecModeDescribeExec}, args...)...); err != nil {
		return r.sc.explain(err, 0)
	}
	fetch := fmt.Sprintf("FETCH %d FROM %s", r.s.Source.PageSize, cursorName)
	for {
		recs, err := r.fetch(ctx, tx, fetch)
		if err != nil {
			return err
		}
		if len(recs) == 0 {
			break
		}
		for _, rec := range recs {
			rec.mayAdvance = true
			if rec.id != nil {
				delete(r.retry, *rec.id)
			}
		}
		if err := send(&page{recs: recs}); err != nil {
			return err
		}
	}
	if r.sc.bookmark != nil && r.s.IsIncremental() && !r.opts.DryRun {
		sql, args := r.sc.tailSQL(r.bookmark)
		var tail string
		err := tx.QueryRow(ctx, sql, args...).Scan(&tail)
		switch {
		case errors.Is(err, pgx.ErrNoRows):
		case err != nil:
			return r.sc.explain(err, 0)
		default:
			if err := send(&page{tail: &tail}); err != nil {
				return err
			}
		}
	}
	again := make([]string, 0, len(r.retry))
	for id := range r.retry {
		again = append(again, id)
	}
	return r.readIDs(ctx, tx, again, send)
}

// readIDs reads the given source ids (records to retry, or ferry test's).
func (r *runner) readIDs(ctx context.Context, tx pgx.Tx, ids []string, send func(*page) error) error {
	size := r.s.Source.PageSize
	for start := 0; start < len(ids); start += size {
		chunk := ids[start:min(start+size, len(ids))]
		sql, args := r.sc.idsSQL(r.plan, r.bookmark)
		recs, err := r.fetch(ctx, tx, sql, append([]any{chunk}, args...)...)
		if err != nil {
			return err
		}
		if len(recs) == 0 {
			continue
		}
		if err := send(&page{recs: recs}); err != nil {
			return err
		}
	}
	return nil
}

// nextBookmark is where the bookmark may move once a page is recorded: the
// last record of the page that is past the stored bookmark.
func (r *runner) nextBookmark(recs []*record) *string {
	if r.opts.DryRun || !r.s.IsIncremental() {
		return nil
	}
	var next *string
	for _, rec := range recs {
		if rec.mayAdvance && rec.after && rec.bm != nil {
			next = rec.bm
		}
	}
	return next
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
// recorder, and how many it commits together at most.
const recorderQueue = 64

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
		if err := r.lt.upsert(ctx, tx, out.writes); err != nil {
			return err
		}
		if err := r.lt.markUnchanged(ctx, tx, out.unchanged, out.unchangedHashes); err != nil {
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
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("sync %s: recording a page: %w", r.s.Name, err)
	}
	if out.bookmark != nil {
		r.recordedBookmark = *out.bookmark
	}
	r.count(func(c *Counts) { c.add(out.counts) })
	return nil
}
