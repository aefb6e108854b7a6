package engine

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"strconv"
	"strings"

	"github.com/ferry-sync/ferry/engine/connector"
	"github.com/ferry-sync/ferry/engine/internal/linktable"
	"github.com/ferry-sync/ferry/engine/project"
	"github.com/ferry-sync/ferry/internal/jsonx"
)

// item is one record on its way through a page.
type item struct {
	rec      *record
	id       string
	link     linktable.State
	linked   bool
	mapped   map[string]any
	payload  map[string]any
	hash     string
	decision Decision
	targetID string
	reason   string
	class    string
	printed  []string
	errBody  string // what the target answered with its error (redacted)
	recorded bool   // its outcome went to the recorder with its chunk
	// Two-way syncs (pair.go): the target's copy already holds the payload;
	// a conflict the pair's rule settled; the partner's row hash of the
	// target record that a write supersedes.
	inStep         bool
	conflict       string
	partnerRowHash *string
}

// decidedPage is a page the decider stage has prepared for the writer.
type decidedPage struct {
	recs  []*record
	tail  *string // a tail page: only moves the bookmark
	items []*item
	// Counted by the decider, added to the run's counts by the writer
	// (which alone touches them).
	nullIDs int64
	lookups int64
	err     error
}

// decidePage is the decider stage: it decides and transforms one page.
func (r *runner) decidePage(ctx context.Context, pg *page) *decidedPage {
	dp := &decidedPage{recs: pg.recs, tail: pg.tail}
	if pg.tail != nil {
		return dp
	}
	dp.items, dp.err = r.decide(ctx, dp)
	if dp.err != nil {
		return dp
	}
	for _, it := range dp.items {
		// An insert left pending by an earlier run is that run's residue,
		// listed for the analyst, not a sign this run's target or code is
		// broken: a crash leaves a whole chunk of them in a row.
		if it.class == "pending" {
			continue
		}
		if (it.decision == DecideFail || it.decision == DecideInvalid) && r.budget.observe(it.class, it.reason) {
			r.halt(r.budget.stopped())
		}
	}
	if dp.err = r.transform(ctx, dp.items); dp.err == nil {
		dp.err = r.pairCheck(ctx, dp.items)
	}
	return dp
}

// decide maps every record, resolves its relations, hashes it and compares
// with its link row. Link rows and parent ids are read once per page.
func (r *runner) decide(ctx context.Context, dp *decidedPage) ([]*item, error) {
	recs := dp.recs
	items := make([]*item, 0, len(recs))
	ids := make([]string, 0, len(recs))
	for _, rec := range recs {
		if rec.id == nil {
			dp.nullIDs++
			r.runError(ctx, nil, "invalid", fmt.Sprintf("a scope row has a NULL %s; rows need an id to be synced", r.s.Source.IDColumn))
			continue
		}
		items = append(items, &item{rec: rec, id: *rec.id})
		ids = append(ids, *rec.id)
	}
	links, err := r.lt.Fetch(ctx, r.e.db, ids, r.opts.DryRun && r.opts.Samples > 0)
	if err != nil {
		return nil, fmt.Errorf("sync %s: %w", r.s.Name, err)
	}
	parents := make([]map[string]linktable.State, len(r.parents))
	for i, plt := range r.parents {
		var keys []string
		for _, it := range items {
			if k := it.rec.rels[i]; k != nil {
				keys = append(keys, *k)
			}
		}
		if parents[i], err = plt.Fetch(ctx, r.e.db, keys, false); err != nil {
			return nil, fmt.Errorf("sync %s: %w", r.s.Name, err)
		}
	}
	for _, it := range items {
		it.link, it.linked = links[it.id]
		if it.rec.n > 1 {
			it.fail(DecideInvalid, "invalid", fmt.Sprintf("source id %s appears %d times in the scope; ids must be unique (a join that fans out?): fix the scope query", it.id, it.rec.n))
			continue
		}
		if it.rec.bad != "" {
			it.fail(DecideFail, "invalid", fmt.Sprintf("source id %s: %s; fix the value in the source or convert the column in the scope query (e.g. ::text)", it.id, it.rec.bad))
			continue
		}
		it.mapped = r.mapRecord(it.rec)
		if msg := r.resolve(it, parents); msg != "" {
			if it.decision == DecideWait {
				it.reason = msg
				continue
			}
			it.fail(DecideFail, "dependency", msg)
			continue
		}
		if r.deletedInSource(it) {
			it.decision, it.reason = DecideSkip, "deleted in the source ("+r.s.Delete.Flag+"): its target record is deleted after the writes"
			continue
		}
		it.hash = r.hashOf(it)
		it.decision = r.choose(it)
	}
	r.settlePending(ctx, items, dp)
	if err := r.lookupExisting(ctx, items, dp); err != nil {
		return nil, err
	}
	return items, nil
}

func (it *item) fail(d Decision, class, msg string) {
	it.decision, it.class, it.reason = d, class, msg
}

// mapRecord builds the target record from the mapping; without a mapping
// every scope column maps to the field of the same name, except the id,
// the bookmark, relation keys and the ELT's _sdc_ columns.
func (r *runner) mapRecord(rec *record) map[string]any {
	s := r.s
	if len(s.Mapping) == 0 {
		out := make(map[string]any, len(r.byName))
		for _, col := range r.byName {
			out[col] = rec.values[col]
		}
		return out
	}
	out := make(map[string]any, len(s.Mapping)+len(s.Relations))
	for _, f := range s.Mapping {
		if f.Source != "" {
			out[f.Target] = rec.values[f.Source]
		} else {
			out[f.Target] = r.static[f.Target]
		}
	}
	return out
}

// resolve puts each relation's parent target id into the mapped record, or
// says which parent is missing.
func (r *runner) resolve(it *item, parents []map[string]linktable.State) string {
	for i, rel := range r.s.Relations {
		key := it.rec.rels[i]
		if key == nil {
			it.mapped[rel.Target] = nil
			continue
		}
		parent, ok := parents[i][*key]
		const retried = "this record is retried on every run until its parent is synced"
		if parent.TargetID == "" && r.opts.planned[rel.Sync] {
			it.decision = DecideWait
			return fmt.Sprintf("waits for its parent %s id %s, which this plan syncs first", rel.Sync, *key)
		}
		switch {
		case r.parents[i] == nil:
			return fmt.Sprintf("parent sync %s has not run yet (no link_tables.%s): run %s first; %s", rel.Sync, rel.Sync, rel.Sync, retried)
		case !ok:
			return fmt.Sprintf("parent %s id %s is not in link_tables.%s: %s has not read it (is it in %s's scope?); %s", rel.Sync, *key, rel.Sync, rel.Sync, rel.Sync, retried)
		case parent.TargetID != "":
			it.mapped[rel.Target] = typedID(parent.TargetID, r.parents[i].TargetType)
			continue
		case parent.Status == linktable.StatusPending:
			return fmt.Sprintf("parent %s id %s is pending (its insert's outcome is unknown): settle it first (ferry status %s); %s", rel.Sync, *key, rel.Sync, retried)
		case parent.Status == linktable.StatusError:
			return fmt.Sprintf("parent %s id %s failed: %s; %s", rel.Sync, *key, parent.Error, retried)
		default:
			return fmt.Sprintf("parent %s id %s has no target id in link_tables.%s (status %s); %s", rel.Sync, *key, rel.Sync, parent.Status, retried)
		}
	}
	return ""
}

// typedID sends integer ids as numbers, so targets with numeric foreign
// keys get the type they expect.
func typedID(id, sqlType string) any {
	switch sqlType {
	case "bigint", "integer", "smallint":
		if n, err := strconv.ParseInt(id, 10, 64); err == nil {
			return n
		}
	}
	return id
}

// hashOf hashes what shapes the record in the target: the mapped record and,
// when a transform may read any column, the scope row too (less the
// bookmark and _sdc_ columns, which change without the data changing).
func (r *runner) hashOf(it *item) string {
	r.hashBuf = jsonx.AppendCanonical(append(r.hashBuf[:0], r.finger...), it.mapped)
	if len(r.s.TransformSource) > 0 {
		row := make(map[string]any, len(r.hashed))
		for _, col := range r.hashed {
			row[col] = it.rec.values[col]
		}
		r.hashBuf = jsonx.AppendCanonical(append(r.hashBuf, '\n'), row)
	}
	sum := sha256.Sum256(r.hashBuf)
	return hex.EncodeToString(sum[:16])
}

// choose decides between insert, update, unchanged and skip from the link
// row and the mode.
func (r *runner) choose(it *item) Decision {
	hasTarget := it.linked && it.link.TargetID != ""
	switch {
	case it.linked && !hasTarget && it.link.Status == linktable.StatusPending:
		return decideSettle // settlePending, for the whole page at once
	case it.linked && it.link.Status == linktable.StatusDeleted:
		// Back in the scope after its target record was deleted: inserted
		// again; an archived one is still there: updated (the mapping
		// brings it back).
		if d := r.s.Delete; d != nil && d.Mode == project.DeleteModeArchive && hasTarget {
			it.targetID = it.link.TargetID
			return DecideUpdate
		}
		if r.s.Mode == project.ModeUpdate {
			it.reason = "update-only sync: its target record was deleted"
			return DecideSkip
		}
		return DecideInsert
	case hasTarget && it.link.Hash != "" && it.link.Hash == it.hash:
		it.targetID = it.link.TargetID
		return DecideUnchanged
	case hasTarget:
		it.targetID = it.link.TargetID
		if r.s.Mode == project.ModeInsert {
			it.reason = "insert-only sync: the record is linked already"
			return DecideSkip
		}
		return DecideUpdate
	default:
		if r.s.Mode == project.ModeUpdate {
			it.reason = "update-only sync: no linked target record (seed link_tables." + r.s.Name + " with status matched to link one)"
			return DecideSkip
		}
		return DecideInsert
	}
}

// decideSettle marks, within decide, a pending insert that settlePending
// decides with the page's others.
const decideSettle Decision = "settle"

// settlePending settles the page's inserts whose outcome was lost (a
// crash, or an ambiguous timeout): each is looked up in the target by
// target.match_on when the target can, all at once within the
// connection's budget; otherwise it stays pending rather than risk a
// duplicate.
func (r *runner) settlePending(ctx context.Context, items []*item, dp *decidedPage) {
	unknown := func(it *item, why string) {
		it.fail(DecideFail, "pending", fmt.Sprintf(
			"an earlier insert of source id %s may or may not have reached the target%s; check %s for it, then set its row in link_tables.%s to target_id=<id>, status 'matched' (found) or status 'error' (absent: it is inserted again)%s",
			it.id, why, r.s.Target.Object, r.s.Name, r.matchHint()))
	}
	finder, canFind := r.target.(connector.Finder)
	var todo []*item
	var matches []map[string]any
	for _, it := range items {
		if it.decision != decideSettle {
			continue
		}
		switch {
		case !canFind || len(r.s.Target.MatchOn) == 0:
			unknown(it, "")
		case !r.mayCallTarget():
			it.decision, it.reason = DecideUnknown, "a pending insert is settled by looking it up in the target: "+noLookups
		case r.matchMissing(it) != "":
			unknown(it, fmt.Sprintf(" (its match_on field %s is empty, so it cannot be looked up)", r.matchMissing(it)))
		default:
			todo = append(todo, it)
			matches = append(matches, r.matchOf(it))
		}
	}
	if len(todo) == 0 {
		return
	}
	found, errs := r.findAll(ctx, finder, matches)
	dp.lookups += int64(len(todo))
	for i, it := range todo {
		switch {
		case errs[i] != nil:
			unknown(it, fmt.Sprintf(" (looking it up failed: %v)", errs[i]))
		case len(found[i]) == 0:
			it.decision = DecideInsert // it never arrived
		case len(found[i]) == 1:
			it.targetID = fmt.Sprint(found[i][0]["id"])
			it.decision = DecideUpdate
		default:
			unknown(it, fmt.Sprintf(" (%d target records match %v: ids %s)", len(found[i]), matches[i], foundIDs(found[i])))
		}
	}
}

// foundIDs lists the ids of lookup results, for a message.
func foundIDs(found []map[string]any) string {
	ids := make([]string, 0, len(found))
	for _, f := range found {
		ids = append(ids, fmt.Sprint(f["id"]))
	}
	return strings.Join(ids, ", ")
}

func (r *runner) matchHint() string {
	if len(r.s.Target.MatchOn) == 0 {
		return "; set target.match_on to let Ferry look it up itself"
	}
	return ""
}

// mayCallTarget says whether the run may call the target beyond writes:
// a plan calls none unless asked (--lookups).
func (r *runner) mayCallTarget() bool {
	return !r.opts.DryRun || r.opts.Lookups
}
