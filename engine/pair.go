package engine

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"math/big"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/ferry-sync/ferry/engine/internal/lease"
	"github.com/ferry-sync/ferry/engine/internal/linktable"
	"github.com/ferry-sync/ferry/engine/internal/scope"
	"github.com/ferry-sync/ferry/engine/project"
	"github.com/ferry-sync/ferry/internal/jsonx"
)

// A two-way pair is two syncs, A→B and B→A, each reading the other's
// target through that target's ELT copy in the warehouse. Each keeps its
// own link table; every link one makes is mirrored into the other's in the
// same fenced transaction, so a record created by one is never created
// again by the other. Before an update, a run compares what it would write
// with the target's copy (the partner's scope row): equal is an echo of
// what the other direction wrote, or a record already in step, and costs
// no write. A difference is the source's change unless the target changed
// too since the pair last synced it (the partner's row hash differs from
// its link row's): then the declared rule picks the side that wins, and
// both link rows record the conflict.

// pairSide is what a run of a two-way sync knows of the sync that writes
// the other way.
type pairSide struct {
	sync *project.Sync
	sc   *scope.Scope
	plan scope.Plan
	lt   *linktable.Table // nil in a dry run before either direction ran
	// pending counts the partner's inserts whose outcome is unknown: one of
	// them may be the counterpart of a record this run would insert.
	pending int64
	lease   *lease.Lease
}

// claimPartner takes the partner's lease before the run takes its own: the
// two directions of a pair never run at once (each reads what the other
// writes), and taking them in this order leaves no run row behind when the
// partner is busy.
func (r *runner) claimPartner(ctx context.Context) (context.Context, error) {
	pr := r.s.Pair
	if pr == nil || r.opts.DryRun {
		return ctx, nil
	}
	ctx, l, err := r.e.claim(ctx, "sync "+pr.Partner+" (the other direction of "+r.s.Name+")", "sync:"+pr.Partner, nil)
	if err != nil {
		return nil, err
	}
	r.pair = &pairSide{lease: l}
	return ctx, nil
}

// preparePair describes the partner's scope in the run's read transaction
// and opens (or creates) the partner's link table.
func (r *runner) preparePair(ctx context.Context, tx pgx.Tx) error {
	pr := r.s.Pair
	if pr == nil {
		return nil
	}
	partner, ok := r.p.Sync(pr.Partner)
	if !ok {
		return fmt.Errorf("sync %s: two_way: sync %s is not in the project", r.s.Name, pr.Partner)
	}
	if r.pair == nil {
		r.pair = &pairSide{}
	}
	ps := r.pair
	ps.sync = partner
	var err error
	if ps.sc, err = scope.Describe(ctx, tx, partner, r.p.Warehouse.ScopeRole); err != nil {
		return fmt.Errorf("sync %s: two_way: the scope of %s (the copy of this sync's target): %w", r.s.Name, partner.Name, err)
	}
	if r.opts.DryRun {
		ps.lt, err = linktable.Open(ctx, r.e.db, partner.Name)
	} else {
		// The partner's target ids are this sync's source ids.
		ps.lt, err = linktable.Ensure(ctx, r.e.db, partner.Name, ps.sc.ID.Type, r.sc.ID.Type)
	}
	if err != nil {
		return fmt.Errorf("sync %s: two_way: %w", r.s.Name, err)
	}
	var parents []*linktable.Table
	for _, rel := range partner.Relations {
		plt, err := linktable.Open(ctx, r.e.db, rel.Sync)
		if err != nil {
			return fmt.Errorf("sync %s: two_way: %w", r.s.Name, err)
		}
		parents = append(parents, plt)
	}
	_, hashed := ps.sc.DerivedColumns(partner)
	ps.plan = scope.Plan{Link: ps.lt, Parents: parents, Finger: fingerprint(partner), Hashed: hashed}
	if ps.lt != nil {
		if ps.pending, err = ps.lt.Pending(ctx, r.e.db); err != nil {
			return fmt.Errorf("sync %s: two_way: %w", r.s.Name, err)
		}
	}
	if err := r.checkCompared(); err != nil {
		return err
	}
	if pr.Newer != "" {
		if _, ok := r.sc.Lookup(pr.Newer); !ok {
			return fmt.Errorf("sync %s: two_way.conflict.newer: the scope has no column %s (both scopes of the pair need it)", r.s.Name, pr.Newer)
		}
		if _, ok := ps.sc.Lookup(pr.Newer); !ok {
			return fmt.Errorf("sync %s: two_way.conflict.newer: the scope of %s has no column %s (both scopes of the pair need it)", r.s.Name, partner.Name, pr.Newer)
		}
	}
	return nil
}

// checkCompared makes sure the target's copy has a column for at least one
// field this sync writes: without one, an echo cannot be told from a
// change, and the pair would write every change back and forth forever.
func (r *runner) checkCompared() error {
	var fields, missing []string
	for _, f := range r.s.Mapping {
		fields = append(fields, f.Target)
	}
	if len(r.s.Mapping) == 0 {
		fields = append(fields, r.byName...)
	}
	for _, rel := range r.s.Relations {
		fields = append(fields, rel.Target)
	}
	compared := 0
	for _, f := range fields {
		if _, ok := r.pair.sc.Lookup(f); ok {
			compared++
		} else {
			missing = append(missing, f)
		}
	}
	switch {
	case compared == 0 && len(r.s.TransformSource) == 0:
		return fmt.Errorf("sync %s: two_way: none of the fields it writes (%s) is a column of %s's scope (the copy of its target), so an echo cannot be told from a change: name the copy's columns as the target's fields (e.g. in %s's scope query: SELECT id, nm AS name …)",
			r.s.Name, strings.Join(fields, ", "), r.pair.sync.Name, r.pair.sync.Name)
	case len(missing) > 0:
		r.e.log.Warn("two_way: fields the target's copy has no column for are not compared (a change to only them is not written)", "sync", r.s.Name, "copy", r.pair.sync.Name, "fields", strings.Join(missing, ", "))
	}
	return nil
}

// counterpart is the target record as the target's copy in the warehouse
// holds it, and as the partner last synced it.
type counterpart struct {
	values  map[string]any
	rowHash string          // the partner's warehouse hash of it now
	link    linktable.State // the partner's link row
	linked  bool
}

// pairCheck settles the page's updates against the target's copy: echoes
// and records already in step become unchanged, conflicts go to the rule.
// New records wait while the partner has inserts whose outcome is unknown.
func (r *runner) pairCheck(ctx context.Context, items []*item) error {
	ps := r.pair
	if ps == nil || ps.sc == nil {
		return nil
	}
	var tids []string
	for _, it := range items {
		switch {
		case it.decision == DecideInsert && ps.pending > 0:
			it.payload = nil
			it.fail(DecideFail, "pair", fmt.Sprintf(
				"not inserted yet: %s (the other direction) has inserts whose outcome is unknown (%d), and one may be this record's counterpart; run %s to settle them, then this record is linked or inserted (it is retried on every run)",
				ps.sync.Name, ps.pending, ps.sync.Name))
		case it.decision == DecideUpdate && it.targetID != "" && it.payload != nil:
			tids = append(tids, it.targetID)
		}
	}
	if len(tids) == 0 {
		return nil
	}
	cps, err := r.counterparts(ctx, tids)
	if err != nil {
		return err
	}
	for _, it := range items {
		if it.decision != DecideUpdate || it.payload == nil {
			continue
		}
		cp, ok := cps[it.targetID]
		if !ok {
			continue // not in the target's copy yet: nothing to compare with
		}
		if r.inStep(it.payload, cp.values) {
			// An echo of what the other direction wrote, or a record
			// already in step: the target holds this payload.
			it.decision, it.inStep = DecideUnchanged, true
			continue
		}
		targetChanged := cp.linked && cp.link.RowHash != "" && cp.link.RowHash != cp.rowHash
		sourceChanged := !it.linked || it.link.RowHash != it.rec.rowHash
		switch {
		case !targetChanged:
			// This side's change: written; the target's copy is what the
			// write supersedes.
			rh := cp.rowHash
			it.partnerRowHash = &rh
		case !sourceChanged:
			// Only the other side changed: the partner writes it here.
			it.decision = DecideUnchanged
		default:
			note, wins := r.settleConflict(it, cp)
			it.conflict = note
			if wins {
				rh := cp.rowHash
				it.partnerRowHash = &rh
			} else {
				it.decision = DecideUnchanged
			}
		}
	}
	return nil
}

// counterparts reads the target records of ids from the partner's scope,
// with the partner's row hash, and the partner's link rows.
func (r *runner) counterparts(ctx context.Context, ids []string) (map[string]counterpart, error) {
	ps := r.pair
	recs, err := r.readCopy(ctx, ids)
	if err != nil {
		return nil, fmt.Errorf("sync %s: two_way: reading the target's copy (the scope of %s): %w", r.s.Name, ps.sync.Name, err)
	}
	// Read once the copy's connection is back: a run holds few at once.
	links, err := ps.lt.Fetch(ctx, r.e.db, ids, false)
	if err != nil {
		return nil, fmt.Errorf("sync %s: two_way: %w", r.s.Name, err)
	}
	out := make(map[string]counterpart, len(recs))
	for _, rec := range recs {
		if rec.id == nil || rec.bad != "" {
			continue
		}
		cp := counterpart{values: rec.values, rowHash: rec.rowHash}
		cp.link, cp.linked = links[*rec.id]
		out[*rec.id] = cp
	}
	return out, nil
}

// readCopy reads ids from the partner's scope, under the scope role, with
// the partner's row hashes.
func (r *runner) readCopy(ctx context.Context, ids []string) ([]*record, error) {
	ps := r.pair
	conn, err := r.e.db.Acquire(ctx)
	if err != nil {
		return nil, fmt.Errorf("connecting to the warehouse: %w", err)
	}
	defer conn.Release()
	tx, err := scope.BeginRead(ctx, conn, r.p.Warehouse.ScopeRole, ps.sync.Source.Timeout.Duration)
	if err != nil {
		return nil, err
	}
	defer tx.Rollback(context.WithoutCancel(ctx))
	sql, args := ps.sc.IDsSQL(ps.plan, nil, false)
	return fetchRecords(ctx, tx, ps.sc, ps.sync.Name, sql, append([]any{ids}, args...)...)
}

// inStep says whether the target's copy already holds every field of the
// payload that it has a column for. Fields the copy lacks cannot be
// compared and do not count.
func (r *runner) inStep(payload, copyRow map[string]any) bool {
	compared := 0
	for k, v := range payload {
		c, ok := copyRow[k]
		if !ok {
			continue
		}
		compared++
		if !sameValue(v, c) {
			return false
		}
	}
	return compared > 0
}

// settleConflict applies the pair's rule to a record both sides changed,
// and says what happened, for both link rows.
func (r *runner) settleConflict(it *item, cp counterpart) (note string, wins bool) {
	pr := r.s.Pair
	now := time.Now().UTC().Format(time.RFC3339)
	wins = pr.Wins == r.s.Name
	why := "conflict.wins names it"
	if pr.Newer != "" {
		mine, theirs := it.rec.values[pr.Newer], cp.values[pr.Newer]
		if c, ok := compareValues(mine, theirs); ok && c != 0 {
			wins = c > 0
			why = fmt.Sprintf("its %s is later (%v, the other %v)", pr.Newer, valueText(mine), valueText(theirs))
			if !wins {
				why = fmt.Sprintf("its %s is earlier (%v, the other %v)", pr.Newer, valueText(mine), valueText(theirs))
			}
		} else {
			why = fmt.Sprintf("%s is the same on both sides, and conflict.wins names the winner of ties", pr.Newer)
		}
	}
	side := fmt.Sprintf("%s's source (%s id %s)", r.s.Name, r.s.Name, it.id)
	other := fmt.Sprintf("%s's source (%s id %s)", r.pair.sync.Name, r.pair.sync.Name, it.targetID)
	if wins {
		return fmt.Sprintf("%s: both sides changed since the last sync; %s won over %s: %s", now, side, other, why), true
	}
	return fmt.Sprintf("%s: both sides changed since the last sync; %s won over %s: %s", now, other, side, strings.Replace(why, "its ", "the other's ", 1)), false
}

// sameValue compares a payload value with the value the target's copy
// holds, leniently across the types a transform and a column give the same
// value in: 5 and "5", 5 and 5.0, a time and its RFC 3339 text.
func sameValue(a, b any) bool {
	ca, cb := jsonx.AppendCanonical(nil, a), jsonx.AppendCanonical(nil, b)
	if bytes.Equal(ca, cb) {
		return true
	}
	sa, sb := valueText(a), valueText(b)
	if sa == sb {
		return true
	}
	if x, ok := new(big.Rat).SetString(sa); ok {
		if y, ok := new(big.Rat).SetString(sb); ok {
			return x.Cmp(y) == 0
		}
	}
	if x, err := time.Parse(time.RFC3339Nano, sa); err == nil {
		if y, err := time.Parse(time.RFC3339Nano, sb); err == nil {
			return x.Equal(y)
		}
	}
	return false
}

// compareValues orders two values of the newer column: times, numbers or
// text. ok is false when either is missing or they do not compare.
func compareValues(a, b any) (int, bool) {
	if a == nil || b == nil {
		return 0, false
	}
	if x, ok := a.(time.Time); ok {
		if y, ok := b.(time.Time); ok {
			return x.Compare(y), true
		}
	}
	sa, sb := valueText(a), valueText(b)
	if x, ok := new(big.Rat).SetString(sa); ok {
		if y, ok := new(big.Rat).SetString(sb); ok {
			return x.Cmp(y), true
		}
	}
	if x, err := time.Parse(time.RFC3339Nano, sa); err == nil {
		if y, err := time.Parse(time.RFC3339Nano, sb); err == nil {
			return x.Compare(y), true
		}
	}
	return strings.Compare(sa, sb), true
}

// valueText is a value's canonical JSON, unquoted when it is a string.
func valueText(v any) string {
	b := jsonx.AppendCanonical(nil, v)
	if len(b) >= 2 && b[0] == '"' {
		var s string
		if err := json.Unmarshal(b, &s); err == nil {
			return s
		}
	}
	return string(b)
}

// pairEffects writes, in the recorder's fenced transaction, what a page's
// link rows mean for the partner: its mirror links and the states the
// writes superseded.
func (r *runner) pairEffects(ctx context.Context, tx pgx.Tx, ws []linktable.Write) error {
	ps := r.pair
	if ps == nil || ps.lt == nil {
		return nil
	}
	var mirS, mirT, conIDs, conHashes []string
	var notes []*string
	for _, w := range ws {
		if w.Status != linktable.StatusSuccess || w.TargetID == nil || *w.TargetID == "" {
			continue
		}
		if w.Synced {
			mirS, mirT = append(mirS, *w.TargetID), append(mirT, w.SourceID)
		}
		if w.PartnerRowHash != nil {
			conIDs, conHashes, notes = append(conIDs, *w.TargetID), append(conHashes, *w.PartnerRowHash), append(notes, w.Conflict)
		}
	}
	if err := ps.lt.Mirror(ctx, tx, mirS, mirT); err != nil {
		return err
	}
	return ps.lt.Consume(ctx, tx, conIDs, conHashes, notes)
}
