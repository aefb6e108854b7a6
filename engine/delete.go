package engine

import (
	"context"
	"fmt"
	"strings"

	"github.com/jackc/pgx/v5"

	"github.com/ferry-sync/ferry/engine/connector"
	"github.com/ferry-sync/ferry/engine/project"
	"github.com/ferry-sync/ferry/internal/sqlident"
)

// deleteChunk is how many target records one delete call takes.
const deleteChunk = 100

// doomed is a linked record whose target record a run deletes.
type doomed struct{ sourceID, targetID string }

// deletes runs a sync's delete policy after its records were written:
// target records whose source record left the scope (or carries the
// delete flag) are deleted, or archived, and their link rows say so. The
// scope is read in the run's own read-only transaction. Guards: a scope
// that returns no row deletes nothing (a broken scope would delete
// everything), and a run never deletes more than max_share of the linked
// records; either way it says why and deletes none. A plan counts what it
// would delete.
func (r *runner) deletes(ctx context.Context, tx pgx.Tx) error {
	d := r.s.Delete
	if d == nil || r.lt == nil || r.opts.IDs != nil {
		return nil
	}
	victims, err := r.deleteCandidates(ctx, tx)
	if err != nil {
		return err
	}
	if len(victims) == 0 {
		return nil
	}
	if d.Flag == "" {
		var rows int64
		if err := tx.QueryRow(ctx, fmt.Sprintf("SELECT count(*) FROM (\n%s\n) s", r.sc.SQL())).Scan(&rows); err != nil {
			return r.sc.Explain(err, 0)
		}
		if rows == 0 {
			return r.refuseDeletes(fmt.Sprintf("the scope returned no rows, which would delete all %d linked records: none was deleted; if the scope is right, delete them with ferry rollback", len(victims)))
		}
	}
	linked, err := r.lt.Linked(ctx, r.e.db)
	if err != nil {
		return err
	}
	share := d.MaxShare
	if share == 0 {
		share = project.DefaultDeleteShare
	}
	if float64(len(victims)) > share*float64(linked) {
		return r.refuseDeletes(fmt.Sprintf("%d of the %d linked records left the scope (more than delete.max_share, %.0f%%): none was deleted; check the scope, or raise delete.max_share for this run if it is right",
			len(victims), linked, 100*share))
	}
	if r.opts.DryRun {
		r.count(func(c *Counts) { c.Deleted += int64(len(victims)) })
		return nil
	}
	for start := 0; start < len(victims); start += deleteChunk {
		if err := r.deleteChunk(ctx, victims[start:min(start+deleteChunk, len(victims))]); err != nil {
			return err
		}
	}
	return nil
}

// refuseDeletes ends the run's deletes with why: the records were synced,
// but the run stops so that someone looks.
func (r *runner) refuseDeletes(why string) error {
	r.res.Status = RunStopped
	r.res.Error = fmt.Sprintf("sync %s: deletes refused: %s", r.s.Name, why)
	return nil
}

// deleteCandidates finds the linked records to delete: those whose source
// record is no longer in the scope, or, with delete.flag, those flagged.
func (r *runner) deleteCandidates(ctx context.Context, tx pgx.Tx) ([]doomed, error) {
	d := r.s.Delete
	id := "s." + sqlident.Ident(r.sc.ID.Name)
	var sql string
	if d.Flag != "" {
		col, ok := r.sc.Lookup(d.Flag)
		if !ok {
			return nil, fmt.Errorf("sync %s: delete.flag: the scope has no column %s (it has %s)", r.s.Name, d.Flag, r.sc.ColumnNames())
		}
		flagged := fmt.Sprintf("s.%s IS NOT NULL", sqlident.Ident(d.Flag))
		if col.OID == boolOID {
			flagged = fmt.Sprintf("s.%s IS TRUE", sqlident.Ident(d.Flag))
		}
		sql = fmt.Sprintf(`SELECT l.source_id::text, l.target_id::text FROM (
%s
) s JOIN %s l ON l.source_id = (%s)::%s
WHERE l.status IN ('success', 'matched') AND l.target_id IS NOT NULL AND %s ORDER BY l.source_id`, r.sc.SQL(), r.lt.Ident, id, r.lt.SourceType, flagged)
	} else {
		sql = fmt.Sprintf(`SELECT l.source_id::text, l.target_id::text FROM %s l
WHERE l.status IN ('success', 'matched') AND l.target_id IS NOT NULL
  AND NOT EXISTS (SELECT 1 FROM (
%s
) s WHERE (%s)::%s = l.source_id) ORDER BY l.source_id`, r.lt.Ident, r.sc.SQL(), id, r.lt.SourceType)
	}
	rows, err := tx.Query(ctx, sql)
	if err != nil {
		return nil, r.sc.Explain(err, 0)
	}
	var out []doomed
	var v doomed
	if _, err := pgx.ForEachRow(rows, []any{&v.sourceID, &v.targetID}, func() error {
		out = append(out, v)
		return nil
	}); err != nil {
		return nil, fmt.Errorf("sync %s: finding the records to delete: %w", r.s.Name, err)
	}
	return out, nil
}

// boolOID is PostgreSQL's boolean type.
const boolOID = 16

// deleteChunk deletes (or archives) some target records and records the
// outcome: link rows of the done ones become deleted, failures are run
// errors and are tried again by the next run (they are still linked).
func (r *runner) deleteChunk(ctx context.Context, chunk []doomed) error {
	ids := make([]string, len(chunk))
	for i, v := range chunk {
		ids[i] = v.targetID
	}
	var results []connector.Result
	var err error
	if d := r.s.Delete; d != nil && d.Mode == project.DeleteModeArchive {
		changes := make([]connector.Change, len(chunk))
		for i, v := range chunk {
			changes[i] = connector.Change{Op: connector.OpUpdate, SourceID: v.sourceID, TargetID: v.targetID, Payload: d.Archive}
		}
		results, err = r.target.Write(connector.WithIdempotencyScope(ctx, r.s.Name), r.s.Target.Object, changes)
	} else {
		del, ok := r.target.(connector.Deleter)
		if !ok {
			return fmt.Errorf("sync %s: delete: connection %s cannot delete records (for an http connection, declare objects.%s.delete); or archive them instead (delete.mode: archive)",
				r.s.Name, r.s.Target.Connection, r.s.Target.Object)
		}
		results, err = del.Delete(ctx, r.s.Target.Object, ids)
	}
	var done []string
	for i, v := range chunk {
		res := connector.Result{}
		if i < len(results) {
			res = results[i]
		}
		switch {
		case res.Done && res.Err == nil:
			done = append(done, v.sourceID)
		case res.Err != nil:
			id := v.sourceID
			r.runError(ctx, &id, "delete", r.e.redact.Redact(fmt.Sprintf("deleting target record %s of source id %s: %v; tried again by the next run", v.targetID, v.sourceID, res.Err)))
		}
	}
	if len(done) > 0 {
		if err := r.fenced(ctx, func(tx pgx.Tx) error { return r.lt.MarkDeleted(ctx, tx, done) }); err != nil {
			return fmt.Errorf("sync %s: recording deletes: %w; the next run finds those records gone from the target", r.s.Name, err)
		}
		r.count(func(c *Counts) {
			c.Deleted += int64(len(done))
			c.TargetCalls++
		})
	}
	if err != nil {
		return fmt.Errorf("sync %s: deleting in connection %s: %w", r.s.Name, r.s.Target.Connection, err)
	}
	return nil
}

// deletedInSource says whether a record carries the sync's delete flag: it
// is not written (its target record is deleted after the writes).
func (r *runner) deletedInSource(it *item) bool {
	d := r.s.Delete
	if d == nil || d.Flag == "" {
		return false
	}
	v, ok := it.rec.values[d.Flag]
	if !ok || v == nil {
		return false
	}
	if b, isBool := v.(bool); isBool {
		return b
	}
	return strings.TrimSpace(fmt.Sprint(v)) != ""
}
