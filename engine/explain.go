package engine

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/ferry-sync/ferry/engine/internal/linktable"
	"github.com/ferry-sync/ferry/engine/project"
	"github.com/jackc/pgx/v5"
)

// Explanation answers the spec's FAQ for one record: is it in the scope, is
// it behind the bookmark, what does its link row say, and what would a run
// do with it now.
type Explanation struct {
	Sync     string         `json:"sync"`
	SourceID string         `json:"source_id"`
	InScope  bool           `json:"in_scope"`
	Bookmark string         `json:"bookmark,omitempty"` // the sync's stored bookmark
	Stamp    string         `json:"stamp,omitempty"`    // the record's bookmark column value
	Link     *linktable.Row `json:"link,omitempty"`
	Next     *RecordReport  `json:"next,omitempty"` // what a run would do now (a dry run)
	Findings []string       `json:"findings"`
}

// Explain says why a record did or did not sync. It writes nothing.
func (e *Engine) Explain(ctx context.Context, sync, sourceID string) (*Explanation, error) {
	_, s, err := e.sync(ctx, sync)
	if err != nil {
		return nil, err
	}
	ex := &Explanation{Sync: sync, SourceID: sourceID}
	res, err := e.Run(ctx, sync, RunOptions{DryRun: true, IDs: []string{sourceID}, Samples: 1, Lookups: true})
	if err != nil {
		return nil, err
	}
	if len(res.Records) > 0 {
		rec := res.Records[0]
		ex.InScope, ex.Next = true, &rec
		if s.IsIncremental() {
			switch v := rec.Source[s.Source.BookmarkColumn].(type) {
			case nil:
			case time.Time:
				ex.Stamp = v.Format(time.RFC3339Nano)
			default:
				ex.Stamp = fmt.Sprint(v)
			}
		}
	}
	if res.Counts.Invalid > 0 && len(res.Records) == 0 {
		ex.InScope = true
	}
	if s.IsIncremental() {
		v, err := e.q.BookmarkGet(ctx, sync)
		switch {
		case errors.Is(err, pgx.ErrNoRows):
		case err != nil:
			return nil, fmt.Errorf("reading the bookmark of %s: %w", sync, err)
		default:
			ex.Bookmark = v
		}
	}
	if ex.Link, err = linktable.RowOf(ctx, e.db, sync, sourceID); err != nil {
		return nil, err
	}
	ex.Findings = ex.findings(s)
	return ex, nil
}

// findings puts the answer in words, most important first.
func (ex *Explanation) findings(s *project.Sync) []string {
	var out []string
	say := func(format string, args ...any) { out = append(out, fmt.Sprintf(format, args...)) }
	if !ex.InScope {
		say("source id %s is not in the scope of %s: the scope query (%s) does not return it; check its WHERE clause and joins", ex.SourceID, s.Name, scopeName(s))
	}
	if l := ex.Link; l != nil {
		target := "no target id"
		if l.TargetID != nil {
			target = "target id " + *l.TargetID
		}
		say("link_tables.%s has it as %s (%s, %d failed attempts)", s.Name, l.Status, target, l.Attempts)
		if l.Error != nil && *l.Error != "" {
			say("last error: %s", *l.Error)
		}
		if l.Status == linktable.StatusError || l.Status == linktable.StatusPending {
			say("records in %s are read again on every run, whatever the bookmark", l.Status)
		}
	} else {
		say("link_tables.%s has no row for it: it was never written", s.Name)
	}
	if ex.Bookmark != "" && ex.Stamp != "" {
		say("its %s is %s; the sync's bookmark is %s (runs read from the bookmark minus the %s overlap)", s.Source.BookmarkColumn, ex.Stamp, ex.Bookmark, s.Source.Overlap.Duration)
	}
	if n := ex.Next; n != nil && n.Behind && n.Decision != DecideUnchanged {
		if n.Kept {
			say("incremental runs do not read it: its edit kept its %s, which is not past the bookmark, and the rows behind the bookmark are as the last run left them; the next reconciling run reads it, or run `ferry run %s --reconcile` now",
				s.Source.BookmarkColumn, s.Name)
		} else {
			say("incremental runs do not read it: its %s is older than the bookmark minus the %s overlap; the next reconciling run reads it, or run `ferry run %s --reconcile` now",
				s.Source.BookmarkColumn, s.Source.Overlap.Duration, s.Name)
		}
	}
	if n := ex.Next; n != nil {
		what := "a run now"
		if n.Behind {
			what = "a reconciling run"
		}
		msg := fmt.Sprintf("%s would: %s", what, n.Decision)
		if n.Reason != "" {
			msg += " (" + n.Reason + ")"
		}
		if n.Decision == DecideUnchanged {
			msg += ": the mapped record hashes the same as the last successful write"
		}
		say("%s", msg)
	}
	return out
}

func scopeName(s *project.Sync) string {
	if s.Source.Table != "" {
		return "SELECT * FROM " + s.Source.Table
	}
	if s.Source.QueryFile != "" {
		return s.Source.QueryFile
	}
	return "source.query"
}
