package engine

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/ferry-sync/ferry/engine/internal/scope"
	"github.com/ferry-sync/ferry/queries"
	"github.com/jackc/pgx/v5"
)

// page is what the reader hands over: a page of scope rows, or (tail) the
// stamp the bookmark may move to once every page before it is recorded.
type page struct {
	recs []*record
	tail *string
}

const cursorName = "ferry_scope"

// record is one scope row.
type record struct {
	id     *string // text form; nil for a NULL id
	n      int64   // how often the id occurs in what was read
	bm     *string
	after  bool
	values map[string]any
	rels   []*string
	bad    string // a value that could not be read: the record fails with it
	// rowHash is the warehouse's hash of the row (see scope.rowHash).
	rowHash string
	// behind: a reconciling read found it behind the incremental range.
	behind bool
	// kept: read by id, it is in the window behind the bookmark that
	// incremental runs skip while it is unchanged (checkWindow).
	kept bool
	// mayAdvance: read past the bookmark (not a retry), so the bookmark may
	// move past it.
	mayAdvance bool
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
	if err := r.checkWindow(ctx, tx); err != nil {
		return err
	}
	if r.opts.IDs != nil {
		return r.readIDs(ctx, tx, r.opts.IDs, send)
	}
	sql, args := r.sc.ReadSQL(r.bookmark, r.reconcile, r.narrow, r.plan)
	if _, err := tx.Exec(ctx, "DECLARE "+cursorName+" NO SCROLL CURSOR FOR "+sql, append([]any{pgx.QueryExecModeDescribeExec}, args...)...); err != nil {
		return r.sc.Explain(err, 0)
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
		r.e.fail("after-scope-read")
		if err := send(&page{recs: recs}); err != nil {
			return err
		}
	}
	if r.sc.Bookmark != nil && r.s.IsIncremental() && !r.opts.DryRun {
		sql, args := r.sc.TailSQL(r.bookmark)
		var tail string
		err := tx.QueryRow(ctx, sql, args...).Scan(&tail)
		switch {
		case errors.Is(err, pgx.ErrNoRows):
			if r.bookmark != nil && !r.narrow {
				if err := r.printWindow(ctx, tx, *r.bookmark); err != nil {
					return err
				}
			}
		case err != nil:
			return r.sc.Explain(err, 0)
		default:
			if err := r.printWindow(ctx, tx, tail); err != nil {
				return err
			}
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

// checkWindow compares the window behind the stored bookmark with the
// fingerprint the last run that handled it noted: when nothing in it moved,
// the run reads only past the bookmark (narrow). After a bulk re-stamp the
// window holds every re-stamped row, and reading it again on every run
// (even to find it unchanged in the warehouse) cost seconds a million rows.
func (r *runner) checkWindow(ctx context.Context, tx pgx.Tx) error {
	if r.window == "" || r.reconcile {
		return nil // no fingerprint noted at this bookmark (prepare), or a whole read
	}
	now, err := r.windowPrint(ctx, tx, *r.bookmark)
	if err != nil {
		return err
	}
	r.narrow = now == r.window
	r.res.WindowUnchanged = r.narrow
	return nil
}

// printWindow fingerprints, in the run's snapshot, the window behind the
// stamp at the bookmark moves to (see noteWindow).
func (r *runner) printWindow(ctx context.Context, tx pgx.Tx, at string) error {
	if r.opts.DryRun || r.opts.IDs != nil || r.sc.Bookmark == nil || !r.skipsWindow() {
		return nil
	}
	print, err := r.windowPrint(ctx, tx, at)
	if err != nil {
		return err
	}
	r.windowNext = &queries.BookmarkSetWindowParams{Sync: r.s.Name, At: at, Print: print}
	return nil
}

// skipsWindow says whether the sync's scope is a table, the only scope the
// window is fingerprinted for. The fingerprint evaluates the scope over the
// window once more (twice in a run that moves the bookmark): on a table
// that is a range of the stamp's index, but a query the warehouse cannot
// filter by the stamp before it has computed it (an aggregate, say) would
// be computed whole each time, costing more than the window it skips.
func (r *runner) skipsWindow() bool {
	return r.s.Source.Table != ""
}

// windowPrint is the fingerprint of the window behind the bookmark at (see
// scope.WindowSQL), with the configuration's: a change of mapping,
// relations or transform re-reads the window, as it did before the window
// was fingerprinted (the warehouse compares each row's hash then).
func (r *runner) windowPrint(ctx context.Context, tx pgx.Tx, at string) (string, error) {
	sql, args := r.sc.WindowSQL(at, serverMajor(tx) >= 14, r.plan)
	var rows string
	if err := tx.QueryRow(ctx, sql, args...).Scan(&rows); err != nil {
		return "", r.sc.Explain(err, 0)
	}
	return rows + " " + r.finger + " " + r.scopePrint(), nil
}

// scopePrint fingerprints what shapes the scope rows besides the
// configuration fingerprint: the scope query, the delete flag and the
// mode. Changing one reads the window again.
func (r *runner) scopePrint() string {
	b, _ := json.Marshal(struct {
		SQL    string
		Mode   any
		Delete any
	}{r.sc.SQL(), r.s.Mode, r.s.Delete})
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:8])
}

// serverMajor is the warehouse's major version, 0 when unknown.
func serverMajor(tx pgx.Tx) int {
	v := tx.Conn().PgConn().ParameterStatus("server_version")
	major, _, _ := strings.Cut(v, ".")
	n, _ := strconv.Atoi(strings.TrimSpace(major))
	return n
}

// readIDs reads the given source ids (records to retry, or ferry test's).
func (r *runner) readIDs(ctx context.Context, tx pgx.Tx, ids []string, send func(*page) error) error {
	size := r.s.Source.PageSize
	for start := 0; start < len(ids); start += size {
		chunk := ids[start:min(start+size, len(ids))]
		sql, args := r.sc.IDsSQL(r.plan, r.bookmark, r.narrow)
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

func (r *runner) fetch(ctx context.Context, tx pgx.Tx, sql string, args ...any) ([]*record, error) {
	return fetchRecords(ctx, tx, r.sc, r.s.Name, sql, args...)
}

// fetchRecords reads scope rows of sc (the sync called name) with what the
// engine adds to them.
func fetchRecords(ctx context.Context, tx pgx.Tx, sc *scope.Scope, name, sql string, args ...any) ([]*record, error) {
	// The same FETCH text returns other columns for another sync, so pgx's
	// statement cache must not remember its shape: describe it every time.
	m := tx.Conn().TypeMap()
	rows, err := tx.Query(ctx, sql, append([]any{pgx.QueryExecModeDescribeExec, scope.ValueFormats(m)}, args...)...)
	if err != nil {
		return nil, sc.Explain(err, 0)
	}
	defer rows.Close()
	fields := rows.FieldDescriptions()
	dec := scope.NewRowDecoder(m, fields)
	ncols := len(sc.Columns)
	var recs []*record
	for rows.Next() {
		raw := rows.RawValues()
		rec := &record{values: make(map[string]any, ncols), rels: make([]*string, len(sc.Rels))}
		for i := 0; i < ncols; i++ {
			v, err := dec.Value(i, raw[i])
			if err != nil {
				// One value Ferry cannot read fails its record, not the run.
				if rec.bad == "" {
					rec.bad = fmt.Sprintf("column %s (%s): %v", fields[i].Name, sc.Columns[i].Type, err)
				}
				continue
			}
			rec.values[fields[i].Name] = v
		}
		for i := ncols; i < len(fields); i++ {
			v, err := dec.Value(i, raw[i])
			if err != nil {
				return nil, fmt.Errorf("sync %s: reading a scope row: %s: %w", name, fields[i].Name, err)
			}
			name := fields[i].Name
			switch {
			case name == "__ferry_id":
				rec.id = textOrNil(v)
			case name == "__ferry_n":
				rec.n, _ = v.(int64)
			case name == "__ferry_bm":
				rec.bm = textOrNil(v)
			case name == "__ferry_after":
				rec.after, _ = v.(bool)
			case name == "__ferry_rh":
				rec.rowHash, _ = v.(string)
			case name == "__ferry_behind":
				rec.behind, _ = v.(bool)
			case name == "__ferry_kept":
				rec.kept, _ = v.(bool)
			case strings.HasPrefix(name, "__ferry_rel_"):
				k, _ := strconv.Atoi(strings.TrimPrefix(name, "__ferry_rel_"))
				rec.rels[k] = textOrNil(v)
			}
		}
		recs = append(recs, rec)
	}
	if err := rows.Err(); err != nil {
		return nil, sc.Explain(err, 0)
	}
	return recs, nil
}

func textOrNil(v any) *string {
	if s, ok := v.(string); ok {
		return &s
	}
	return nil
}

// nextBookmark is where the bookmark may move once a page is recorded: the
// last record of the page that is past the stored bookmark, but never past
// a record the run did not send (it stopped mid-page): the next run must
// read that one again. Stopping on the stamp before it is enough, since
// reads start at the bookmark itself (>=), ties included.
func (r *runner) nextBookmark(recs []*record, items []*item) *string {
	if r.opts.DryRun || !r.s.IsIncremental() {
		return nil
	}
	unsent := map[*record]bool{}
	for _, it := range items {
		if it.decision == DecideNotSent {
			unsent[it.rec] = true
		}
	}
	var next *string
	for _, rec := range recs {
		if unsent[rec] {
			break
		}
		if rec.mayAdvance && rec.after && rec.bm != nil {
			next = rec.bm
		}
	}
	return next
}
