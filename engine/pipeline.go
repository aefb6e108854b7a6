package engine

import (
	"context"
	"errors"

	"github.com/jackc/pgx/v5"
)

// A run is a pipeline of four stages, so that the warehouse, the script
// workers and the target work at the same time instead of waiting for each
// other (one file each):
//
//	reader    (read.go)     FETCHes the next page from the scope cursor
//	decider   (decide.go,   reads the page's link rows and parents, maps,
//	          transform.go) hashes, decides and runs the transform
//	writer    (write.go)    sends pages to the target in chunks, two in
//	                        flight across page boundaries (the caller's
//	                        goroutine)
//	recorder  (record.go)   commits each chunk's link rows and write intent
//	                        as it lands, then the page's unchanged rows and
//	                        bookmark, in order, what queued up together
//
// Each stage hands over at most one page, so memory stays flat. The bookmark
// still moves only past pages whose link rows are committed, because it
// commits in order after them. Pages hold distinct source ids (a duplicated
// id is invalid wherever it appears), so deciding page N+1 before page N is
// recorded reads no link row that page N changes.

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
	w := r.newWriter(rec)
	for dp := range decided {
		if err := rec.err(); err != nil {
			if derr := w.drain(ctx); derr != nil {
				return derr
			}
			return err
		}
		if err := w.page(ctx, dp); err != nil {
			if derr := w.drain(ctx); derr != nil {
				return derr
			}
			return err
		}
		if r.res.Status == RunStopped {
			break
		}
	}
	return w.drain(ctx)
}
