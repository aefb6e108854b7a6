// Package linktable owns the link tables: link_tables.<sync>, one row per
// source record (source id, target id, status, hashes, error, payload,
// times), kept in the warehouse so that analysts JOIN and seed them with
// plain SQL. It creates and upgrades them, reads pages of rows, records
// outcomes in bulk, counts and lists them, and seeds them.
//
// The one thing to know: a link row is the truth about its record. The
// bookmark only says where reading may start.
package linktable

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/ferry-sync/ferry/internal/jsonx"

	"github.com/ferry-sync/ferry/internal/sqlident"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// Schema holds one link table per sync.
const Schema = "link_tables"

// Status is what a link row says of its record.
type Status string

// Link statuses.
const (
	StatusSuccess Status = "success" // written; the target holds what the row's hash says
	StatusError   Status = "error"   // the last attempt failed (error, error_class); retried every run
	StatusSkipped Status = "skipped" // skipped by the transform (pq.skip, None), with the reason in error
	StatusMatched Status = "matched" // seeded by a user: updated, never inserted
	StatusPending Status = "pending" // an insert whose outcome is not known yet: settled, never re-sent blindly
	StatusDeleted Status = "deleted" // its target record was deleted (or archived) by the sync: the time is updated_at
)

// dbtx is what link tables need of a pool, a connection or a transaction.
type dbtx interface {
	Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error)
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}

// Table is link_tables.<sync>. Its shape is fixed; only its name and the
// types of source_id and target_id vary (they follow the source id column
// and the target's ids, so analysts JOIN without casts).
type Table struct {
	Sync       string
	Ident      string // quoted link_tables."<sync>"
	SourceType string // the SQL type of source_id (the scope's id column's)
	TargetType string // the SQL type of target_id (the target's ids')
	upToDate   bool   // has every column this version writes
}

// Row is one row of a link table.
type Row struct {
	SourceID      string     `json:"source_id"`
	TargetID      *string    `json:"target_id"`
	Status        Status     `json:"status"`
	Hash          *string    `json:"hash"`
	Error         *string    `json:"error"`
	ErrorClass    *string    `json:"error_class"`
	Attempts      int32      `json:"attempts"`
	FirstSyncedAt *time.Time `json:"first_synced_at"`
	LastSyncedAt  *time.Time `json:"last_synced_at"`
	UpdatedAt     time.Time  `json:"updated_at"`
	// ErrorBody is what the target answered with the error (capped,
	// secrets removed): its own words, field by field.
	ErrorBody *string `json:"error_body,omitempty"`
}

func newTable(sync, sourceType, targetType string) *Table {
	return &Table{Sync: sync, Ident: pgx.Identifier{Schema, sync}.Sanitize(), SourceType: sourceType, TargetType: targetType}
}

// Open returns the link table of sync with the types it was made
// with, or nil when it does not exist yet.
func Open(ctx context.Context, db dbtx, sync string) (*Table, error) {
	var src, tgt string
	var upToDate bool
	err := db.QueryRow(ctx, `
		SELECT format_type(s.atttypid, s.atttypmod), format_type(t.atttypid, t.atttypmod),
		       EXISTS (SELECT 1 FROM pg_attribute r WHERE r.attrelid = s.attrelid AND r.attname = 'row_hash' AND NOT r.attisdropped)
		       AND EXISTS (SELECT 1 FROM pg_attribute r WHERE r.attrelid = s.attrelid AND r.attname = 'error_body' AND NOT r.attisdropped)
		       AND EXISTS (SELECT 1 FROM pg_attribute r WHERE r.attrelid = s.attrelid AND r.attname = 'inserted_at' AND NOT r.attisdropped)
		       AND EXISTS (SELECT 1 FROM pg_attribute r WHERE r.attrelid = s.attrelid AND r.attname = 'conflict' AND NOT r.attisdropped)
		       AND EXISTS (SELECT 1 FROM pg_constraint c WHERE c.conrelid = s.attrelid AND c.contype = 'c' AND pg_get_constraintdef(c.oid) LIKE '%''deleted''%')
		       AND EXISTS (SELECT 1 FROM pg_class i WHERE i.relname = $2 AND i.relnamespace = $3::regnamespace)
		FROM pg_attribute s JOIN pg_attribute t ON t.attrelid = s.attrelid
		WHERE s.attrelid = to_regclass($1) AND s.attname = 'source_id' AND t.attname = 'target_id'`,
		pgx.Identifier{Schema, sync}.Sanitize(), todoIndex(sync), Schema).Scan(&src, &tgt, &upToDate)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("looking up link table %s.%s: %w", Schema, sync, err)
	}
	lt := newTable(sync, src, tgt)
	lt.upToDate = upToDate
	return lt, nil
}

// Ensure creates the link table of sync when it does not exist, and
// returns it (with the types it already has, if it existed).
func Ensure(ctx context.Context, db dbtx, sync, sourceType, targetType string) (*Table, error) {
	if lt, err := Open(ctx, db, sync); err != nil || lt != nil {
		if lt != nil && !lt.upToDate {
			// A link table made by an earlier version gets the columns and
			// indexes added since (catalog changes and one index build: no
			// row is rewritten). Only then: ALTER TABLE waits for every
			// reader of the table.
			if _, err := db.Exec(ctx, fmt.Sprintf(`ALTER TABLE %[1]s ADD COLUMN IF NOT EXISTS row_hash text, ADD COLUMN IF NOT EXISTS error_body text, ADD COLUMN IF NOT EXISTS inserted_at timestamptz, ADD COLUMN IF NOT EXISTS conflict text,
    DROP CONSTRAINT IF EXISTS %[3]s,
    ADD CONSTRAINT %[3]s CHECK (status IN ('success', 'error', 'skipped', 'matched', 'pending', 'deleted'));
CREATE INDEX IF NOT EXISTS %[2]s ON %[1]s (status, source_id) WHERE status IN ('error', 'pending', 'matched')`,
				lt.Ident, sqlident.Ident(todoIndex(sync)), sqlident.Ident(sync+"_status_check"))); err != nil {
				return nil, fmt.Errorf("upgrading link table %s: %w", lt.Ident, err)
			}
		}
		return lt, err
	}
	lt := newTable(sync, sourceType, targetType)
	lt.upToDate = true
	// Types come from format_type on the warehouse's own catalog, never from
	// user text; the status default lets analysts seed rows with just
	// (source_id, target_id).
	ddl := fmt.Sprintf(`CREATE SCHEMA IF NOT EXISTS %[1]s;
CREATE TABLE IF NOT EXISTS %[2]s (
    source_id       %[3]s PRIMARY KEY,
    target_id       %[4]s,
    status          text NOT NULL DEFAULT 'matched'
                    CONSTRAINT %[8]s CHECK (status IN ('success', 'error', 'skipped', 'matched', 'pending', 'deleted')),
    hash            text,
    row_hash        text,  -- the scope row as last written, hashed by the warehouse: unchanged rows stay there
    error           text,
    error_class     text,
    error_body      text,  -- what the target answered with the error (capped, secrets removed)
    attempts        integer NOT NULL DEFAULT 0,
    payload         json,  -- the last payload written, kept as sent (json: cheaper to store than jsonb)
    first_synced_at timestamptz,
    last_synced_at  timestamptz,
    inserted_at     timestamptz,  -- when Ferry inserted the target record (not set for one it found or was given): what ferry rollback deletes
    conflict        text,         -- two-way syncs: the last time both sides changed the record, which side won and why
    updated_at      timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS %[5]s ON %[2]s (status, source_id) WHERE status IN ('error', 'pending', 'matched');
CREATE INDEX IF NOT EXISTS %[6]s ON %[2]s (target_id);
COMMENT ON TABLE %[2]s IS %[7]s`,
		sqlident.Ident(Schema), lt.Ident, sourceType, targetType,
		sqlident.Ident(todoIndex(sync)), sqlident.Ident(sync+"_target_idx"),
		sqlident.Literal("Ferry link table of sync "+sync+": one row per source record (status success|error|skipped|matched|pending|deleted). Seed rows with status matched to link existing target records."),
		sqlident.Ident(sync+"_status_check"))
	if _, err := db.Exec(ctx, ddl); err != nil {
		return nil, fmt.Errorf("creating link table %s: %w", lt.Ident, err)
	}
	return lt, nil
}

// State is what the engine needs of an existing link row to decide.
type State struct {
	TargetID string // "" when none
	Status   Status
	Hash     string
	RowHash  string
	Error    string         // the row's last error, "" for none
	Payload  map[string]any // the last payload written (Fetch withPayload)
}

// Fetch returns the link rows of ids, keyed by source id text, with their
// last payloads when withPayload (plans show what an update changes).
func (lt *Table) Fetch(ctx context.Context, db dbtx, ids []string, withPayload bool) (map[string]State, error) {
	out := make(map[string]State, len(ids))
	if lt == nil || len(ids) == 0 {
		return out, nil
	}
	payload := "NULL::text"
	if withPayload {
		payload = "payload::text"
	}
	rows, err := db.Query(ctx, fmt.Sprintf(
		`SELECT source_id::text, coalesce(target_id::text, ''), status, coalesce(hash, ''), coalesce(row_hash, ''), coalesce(error, ''), %s FROM %s WHERE source_id = ANY($1::text[]::%s[])`,
		payload, lt.Ident, lt.SourceType), ids)
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w", lt.Ident, err)
	}
	defer rows.Close()
	for rows.Next() {
		var id string
		var st State
		var raw *string
		if err := rows.Scan(&id, &st.TargetID, &st.Status, &st.Hash, &st.RowHash, &st.Error, &raw); err != nil {
			return nil, fmt.Errorf("reading %s: %w", lt.Ident, err)
		}
		if raw != nil {
			dec := json.NewDecoder(strings.NewReader(*raw))
			dec.UseNumber()
			_ = dec.Decode(&st.Payload) // an unreadable payload only hides a plan's diff
		}
		out[id] = st
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("reading %s: %w", lt.Ident, err)
	}
	return out, nil
}

// TargetIDs maps parent source ids to their target ids (linked rows only).
func (lt *Table) TargetIDs(ctx context.Context, db dbtx, ids []string) (map[string]string, error) {
	out := make(map[string]string, len(ids))
	if lt == nil || len(ids) == 0 {
		return out, nil
	}
	rows, err := db.Query(ctx, fmt.Sprintf(
		`SELECT source_id::text, target_id::text FROM %s WHERE source_id = ANY($1::text[]::%s[]) AND target_id IS NOT NULL`,
		lt.Ident, lt.SourceType), ids)
	if err != nil {
		return nil, fmt.Errorf("reading parent link table %s: %w", lt.Ident, err)
	}
	defer rows.Close()
	for rows.Next() {
		var s, t string
		if err := rows.Scan(&s, &t); err != nil {
			return nil, fmt.Errorf("reading parent link table %s: %w", lt.Ident, err)
		}
		out[s] = t
	}
	return out, rows.Err()
}

// RetryIDs returns the ids whose rows are in error or pending, or seeded
// (matched) and not written yet: they are read again on every run,
// whatever the bookmark, until they succeed.
func (lt *Table) RetryIDs(ctx context.Context, db dbtx) ([]string, error) {
	if lt == nil {
		return nil, nil
	}
	rows, err := db.Query(ctx, fmt.Sprintf(`SELECT source_id::text FROM %s WHERE status IN ('error', 'pending', 'matched')`, lt.Ident))
	if err != nil {
		return nil, fmt.Errorf("reading records to retry from %s: %w", lt.Ident, err)
	}
	return pgx.CollectRows(rows, pgx.RowTo[string])
}

// Write is one link row to upsert. Nil pointers keep what the row has.
type Write struct {
	SourceID   string
	TargetID   *string
	Status     Status
	Hash       *string
	RowHash    *string // the scope row's warehouse hash, with a successful write
	Error      *string
	ErrorClass *string
	ErrorBody  *string        // the target's answer with the error
	Payload    map[string]any // the payload written (or that failed); encoded by Upsert, on the recorder
	Synced     bool           // a write succeeded: stamp last (and first) sync time
	Inserted   bool           // the write inserted the target record: stamp inserted_at
	FailedOnce bool           // count an attempt
	// Conflict, for two-way syncs, says both sides changed the record and
	// which won (nil keeps what the row has).
	Conflict *string
	// PartnerRowHash, for two-way syncs, is the warehouse hash of the
	// partner's scope row of the target record as this write found it:
	// the write supersedes that state, so the partner need not read it
	// again (see Table.Consume). Not a column of this table.
	PartnerRowHash *string
}

// Upsert writes link rows in one statement.
func (lt *Table) Upsert(ctx context.Context, db dbtx, ws []Write) error {
	if len(ws) == 0 {
		return nil
	}
	// One statement may touch a row once: the last write of an id wins.
	last := make(map[string]int, len(ws))
	for i, w := range ws {
		last[w.SourceID] = i
	}
	if len(last) < len(ws) {
		kept := make([]Write, 0, len(last))
		for i, w := range ws {
			if last[w.SourceID] == i {
				kept = append(kept, w)
			}
		}
		ws = kept
	}
	n := len(ws)
	ids, tids, statuses, hashes, rowHashes, errs, classes, payloads := make([]string, n), make([]*string, n), make([]string, n), make([]*string, n), make([]*string, n), make([]*string, n), make([]*string, n), make([]*string, n)
	bodies, conflicts := make([]*string, n), make([]*string, n)
	synced, failed, inserted := make([]bool, n), make([]bool, n), make([]bool, n)
	for i, w := range ws {
		ids[i], tids[i], statuses[i], hashes[i], rowHashes[i], errs[i], classes[i], payloads[i] = w.SourceID, w.TargetID, string(w.Status), w.Hash, w.RowHash, w.Error, w.ErrorClass, payloadJSON(w.Payload)
		synced[i], failed[i], bodies[i], inserted[i], conflicts[i] = w.Synced, w.FailedOnce, w.ErrorBody, w.Inserted, w.Conflict
	}
	sql := fmt.Sprintf(`
INSERT INTO %[1]s AS l (source_id, target_id, status, hash, row_hash, error, error_class, error_body, attempts, payload, first_synced_at, last_synced_at, inserted_at, conflict, updated_at)
SELECT u.source_id::%[2]s, u.target_id::%[3]s, u.status, u.hash, u.row_hash, u.error, u.error_class, u.error_body,
       CASE WHEN u.failed THEN 1 ELSE 0 END, u.payload::json,
       CASE WHEN u.synced THEN now() END, CASE WHEN u.synced THEN now() END, CASE WHEN u.inserted THEN now() END, u.conflict, now()
FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[], $8::text[], $9::bool[], $10::bool[], $11::text[], $12::bool[], $13::text[])
     AS u(source_id, target_id, status, hash, row_hash, error, error_class, payload, synced, failed, error_body, inserted, conflict)
ON CONFLICT (source_id) DO UPDATE SET
    target_id       = coalesce(EXCLUDED.target_id, l.target_id),
    status          = EXCLUDED.status,
    hash            = coalesce(EXCLUDED.hash, l.hash),
    row_hash        = CASE WHEN EXCLUDED.status = 'success' THEN EXCLUDED.row_hash ELSE l.row_hash END,
    error           = EXCLUDED.error,
    error_class     = EXCLUDED.error_class,
    error_body      = EXCLUDED.error_body,
    attempts        = CASE WHEN EXCLUDED.attempts > 0 THEN l.attempts + 1
                           WHEN EXCLUDED.status = 'pending' THEN l.attempts ELSE 0 END,
    payload         = coalesce(EXCLUDED.payload, l.payload),
    first_synced_at = coalesce(l.first_synced_at, EXCLUDED.first_synced_at),
    last_synced_at  = coalesce(EXCLUDED.last_synced_at, l.last_synced_at),
    inserted_at     = coalesce(EXCLUDED.inserted_at, l.inserted_at),
    conflict        = coalesce(EXCLUDED.conflict, l.conflict),
    updated_at      = now()`, lt.Ident, lt.SourceType, lt.TargetType)
	if _, err := db.Exec(ctx, sql, ids, tids, statuses, hashes, rowHashes, errs, classes, payloads, synced, failed, bodies, inserted, conflicts); err != nil {
		return fmt.Errorf("recording %d link rows in %s: %w", n, lt.Ident, err)
	}
	return nil
}

// Rows lists link rows for status reports and tests: rows with status
// (all when empty), most recently changed first.
func Rows(ctx context.Context, db dbtx, sync string, status Status, limit int) ([]Row, error) {
	lt, err := Open(ctx, db, sync)
	if err != nil || lt == nil {
		return nil, err
	}
	rows, err := db.Query(ctx, fmt.Sprintf(`
		SELECT source_id::text, target_id::text, status, hash, error, error_class, attempts, first_synced_at, last_synced_at, updated_at, %s
		FROM %s WHERE ($1 = '' OR status = $1) ORDER BY updated_at DESC, source_id LIMIT $2`, lt.errorBody(), lt.Ident), status, limit)
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w", lt.Ident, err)
	}
	return pgx.CollectRows(rows, pgx.RowToStructByPos[Row])
}

// Counts counts a sync's link rows by status.
func Counts(ctx context.Context, db dbtx, sync string) (map[Status]int64, error) {
	out := map[Status]int64{}
	lt, err := Open(ctx, db, sync)
	if err != nil || lt == nil {
		return out, err
	}
	rows, err := db.Query(ctx, fmt.Sprintf(`SELECT status, count(*) FROM %s GROUP BY status`, lt.Ident))
	if err != nil {
		return nil, fmt.Errorf("counting %s: %w", lt.Ident, err)
	}
	defer rows.Close()
	for rows.Next() {
		var s Status
		var n int64
		if err := rows.Scan(&s, &n); err != nil {
			return nil, err
		}
		out[s] = n
	}
	return out, rows.Err()
}

// MarkPending marks ids whose inserts may have reached the target as
// pending, unless their rows already hold a target id.
func (lt *Table) MarkPending(ctx context.Context, db dbtx, ids []string, msg string) error {
	_, err := db.Exec(ctx, fmt.Sprintf(`
INSERT INTO %[1]s AS l (source_id, status, error, error_class)
SELECT u::%[2]s, 'pending', $2, 'pending' FROM unnest($1::text[]) AS u
ON CONFLICT (source_id) DO UPDATE SET status = 'pending', error = EXCLUDED.error, error_class = 'pending', updated_at = now()
WHERE l.target_id IS NULL`, lt.Ident, lt.SourceType), ids, msg)
	if err != nil {
		return fmt.Errorf("marking %d interrupted inserts pending in %s: %w", len(ids), lt.Ident, err)
	}
	return nil
}

// MarkUnchanged records that records were found unchanged (same hash as
// their last successful write) whose rows need it: the row's warehouse hash
// moves on (so the warehouse skips the row next time), and a row left in
// error by a failed update of a record that is back to what the target holds
// is a success again. Their target id, hash and times stay.
func (lt *Table) MarkUnchanged(ctx context.Context, db dbtx, ids, rowHashes []string) error {
	if len(ids) == 0 {
		return nil
	}
	_, err := db.Exec(ctx, fmt.Sprintf(`
UPDATE %s AS l SET status = 'success', error = NULL, error_class = NULL, attempts = 0, row_hash = u.row_hash, updated_at = now()
FROM unnest($1::text[], $2::text[]) AS u(source_id, row_hash)
WHERE l.source_id = u.source_id::%s`, lt.Ident, lt.SourceType), ids, rowHashes)
	if err != nil {
		return fmt.Errorf("recording %d unchanged records in %s: %w", len(ids), lt.Ident, err)
	}
	return nil
}

func payloadJSON(p map[string]any) *string {
	if p == nil {
		return nil
	}
	s := string(jsonx.AppendCanonical(nil, p))
	return &s
}

// RowOf returns the link row of one source id, nil when there is none.
func RowOf(ctx context.Context, db dbtx, sync, sourceID string) (*Row, error) {
	lt, err := Open(ctx, db, sync)
	if err != nil || lt == nil {
		return nil, err
	}
	rows, err := db.Query(ctx, fmt.Sprintf(`
		SELECT source_id::text, target_id::text, status, hash, error, error_class, attempts, first_synced_at, last_synced_at, updated_at, %s
		FROM %s WHERE source_id::text = $1`, lt.errorBody(), lt.Ident), sourceID)
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w", lt.Ident, err)
	}
	found, err := pgx.CollectRows(rows, pgx.RowToStructByPos[Row])
	if err != nil || len(found) == 0 {
		return nil, err
	}
	return &found[0], nil
}

// Seed links source ids to existing target records (status matched): rows
// that do not exist are made; a row that has no target id yet (an error, a
// pending insert) takes the one given; rows already linked are left alone.
// It returns how many rows it wrote.
func (lt *Table) Seed(ctx context.Context, db dbtx, sourceIDs, targetIDs []string) (int64, error) {
	if len(sourceIDs) == 0 {
		return 0, nil
	}
	tag, err := db.Exec(ctx, fmt.Sprintf(`
INSERT INTO %[1]s AS l (source_id, target_id, status, error, error_class, attempts, updated_at)
SELECT u.s::%[2]s, u.t::%[3]s, 'matched', NULL, NULL, 0, now()
FROM unnest($1::text[], $2::text[]) AS u(s, t)
ON CONFLICT (source_id) DO UPDATE SET target_id = EXCLUDED.target_id, status = 'matched',
    error = NULL, error_class = NULL, attempts = 0, updated_at = now()
WHERE l.target_id IS NULL`, lt.Ident, lt.SourceType, lt.TargetType), sourceIDs, targetIDs)
	if err != nil {
		return 0, fmt.Errorf("seeding %s: %w", lt.Ident, err)
	}
	return tag.RowsAffected(), nil
}

// Page returns up to limit rows in source id order after the source id
// after ("" for the first page), with the given status and error class
// ("" for any), and the cursor of the next page ("" after the last).
func Page(ctx context.Context, db dbtx, sync string, status Status, errorClass, after string, limit int) ([]Row, string, error) {
	lt, err := Open(ctx, db, sync)
	if err != nil || lt == nil {
		return nil, "", err
	}
	// ORDER BY names the table's column: plain "source_id" would be the
	// output column, source_id::text, and sort 10 before 9, which the
	// cursor (compared in the id's type) would then skip rows by.
	// Only the filters given, each its own predicate: a generic plan of
	// "($1 = '' OR status = $1)" cannot use an index, and pgx reuses plans.
	args := []any{limit + 1}
	where := []string{"true"}
	if status != "" {
		args = append(args, string(status))
		where = append(where, fmt.Sprintf("status = $%d", len(args)))
		if status == StatusError || status == StatusPending || status == StatusMatched {
			// Implied, and spelt out so that the to-do index (partial on
			// these) serves the page even under a generic plan.
			where = append(where, "status IN ('error', 'pending', 'matched')")
		}
	}
	if errorClass != "" {
		args = append(args, errorClass)
		where = append(where, fmt.Sprintf("error_class = $%d", len(args)))
	}
	if after != "" {
		// The cursor compares in the source id's own type, so that an
		// index in source id order serves the page.
		args = append(args, after)
		where = append(where, fmt.Sprintf("source_id > $%d::text::%s", len(args), lt.SourceType))
	}
	rows, err := db.Query(ctx, fmt.Sprintf(`
		SELECT source_id::text, target_id::text, status, hash, error, error_class, attempts, first_synced_at, last_synced_at, updated_at, %s
		FROM %s l WHERE %s
		ORDER BY l.source_id LIMIT $1`, lt.errorBody(), lt.Ident, strings.Join(where, " AND ")), args...)
	if err != nil {
		return nil, "", fmt.Errorf("reading %s: %w", lt.Ident, err)
	}
	out, err := pgx.CollectRows(rows, pgx.RowToStructByPos[Row])
	if err != nil {
		return nil, "", fmt.Errorf("reading %s: %w", lt.Ident, err)
	}
	next := ""
	if len(out) > limit {
		out = out[:limit]
		next = out[limit-1].SourceID
	}
	return out, next, nil
}

// MarkDeleted records that the target records of ids were deleted (or
// archived): status deleted, the time in updated_at, the error cleared.
func (lt *Table) MarkDeleted(ctx context.Context, db dbtx, ids []string) error {
	if len(ids) == 0 {
		return nil
	}
	_, err := db.Exec(ctx, fmt.Sprintf(`UPDATE %s SET status = 'deleted', error = NULL, error_class = NULL, error_body = NULL,
		attempts = 0, last_synced_at = now(), updated_at = now() WHERE source_id::text = ANY($1::text[])`, lt.Ident), ids)
	if err != nil {
		return fmt.Errorf("marking %d link rows of %s deleted: %w", len(ids), lt.Ident, err)
	}
	return nil
}

// Inserted lists the rows whose target record Ferry inserted at or after
// since and that are still linked: what ferry rollback deletes.
func (lt *Table) Inserted(ctx context.Context, db dbtx, since time.Time) (sourceIDs, targetIDs []string, err error) {
	rows, err := db.Query(ctx, fmt.Sprintf(`SELECT source_id::text, target_id::text FROM %s
		WHERE status = 'success' AND target_id IS NOT NULL AND inserted_at >= $1 ORDER BY source_id`, lt.Ident), since)
	if err != nil {
		return nil, nil, fmt.Errorf("reading what %s inserted: %w", lt.Ident, err)
	}
	var s, t string
	_, err = pgx.ForEachRow(rows, []any{&s, &t}, func() error {
		sourceIDs, targetIDs = append(sourceIDs, s), append(targetIDs, t)
		return nil
	})
	if err != nil {
		return nil, nil, fmt.Errorf("reading what %s inserted: %w", lt.Ident, err)
	}
	return sourceIDs, targetIDs, nil
}

// Linked counts the rows whose target record the sync holds linked
// (success or matched): what a delete's share is measured against.
func (lt *Table) Linked(ctx context.Context, db dbtx) (int64, error) {
	var n int64
	err := db.QueryRow(ctx, fmt.Sprintf(`SELECT count(*) FROM %s WHERE status IN ('success', 'matched') AND target_id IS NOT NULL`, lt.Ident)).Scan(&n)
	if err != nil {
		return 0, fmt.Errorf("counting the linked rows of %s: %w", lt.Ident, err)
	}
	return n, nil
}

// Mirror records, in the partner's link table of a two-way pair, the links
// this sync made: the partner's source id is this sync's target id and the
// other way round, so that the partner never creates the record again. A
// partner row that already has a target id (or is pending) is left alone.
// The row hash stays empty: the partner reads the record once, finds its
// own side already holds it, and records nothing but the hash.
func (lt *Table) Mirror(ctx context.Context, db dbtx, sourceIDs, targetIDs []string) error {
	if len(sourceIDs) == 0 {
		return nil
	}
	_, err := db.Exec(ctx, fmt.Sprintf(`
INSERT INTO %[1]s AS l (source_id, target_id, status, updated_at)
SELECT u.s::%[2]s, u.t::%[3]s, 'success', now() FROM unnest($1::text[], $2::text[]) AS u(s, t)
ON CONFLICT (source_id) DO UPDATE SET target_id = EXCLUDED.target_id, status = 'success', hash = NULL, row_hash = NULL,
    error = NULL, error_class = NULL, error_body = NULL, attempts = 0, updated_at = now()
WHERE l.target_id IS NULL AND l.status <> 'pending'`, lt.Ident, lt.SourceType, lt.TargetType), sourceIDs, targetIDs)
	if err != nil {
		return fmt.Errorf("linking %d records in %s (the other direction of the pair): %w", len(sourceIDs), lt.Ident, err)
	}
	return nil
}

// Consume records, for the partner of a two-way pair, that the state of
// its source records with these row hashes was superseded by a write from
// the other side: the partner does not read them again until they change.
// Their hash is cleared: the other side was changed by someone else, so
// it no longer holds what the partner last wrote. notes (nil entries keep
// the row's) record a conflict the write settled.
func (lt *Table) Consume(ctx context.Context, db dbtx, ids, rowHashes []string, notes []*string) error {
	if len(ids) == 0 {
		return nil
	}
	_, err := db.Exec(ctx, fmt.Sprintf(`
UPDATE %s AS l SET row_hash = u.row_hash, hash = NULL, conflict = coalesce(u.note, l.conflict), updated_at = now()
FROM unnest($1::text[], $2::text[], $3::text[]) AS u(source_id, row_hash, note)
WHERE l.source_id = u.source_id::%s AND l.status = 'success'`, lt.Ident, lt.SourceType), ids, rowHashes, notes)
	if err != nil {
		return fmt.Errorf("recording %d superseded records in %s (the other direction of the pair): %w", len(ids), lt.Ident, err)
	}
	return nil
}

// Pending counts the rows whose insert's outcome is unknown.
func (lt *Table) Pending(ctx context.Context, db dbtx) (int64, error) {
	var n int64
	if err := db.QueryRow(ctx, fmt.Sprintf(`SELECT count(*) FROM %s WHERE status = 'pending'`, lt.Ident)).Scan(&n); err != nil {
		return 0, fmt.Errorf("counting the pending rows of %s: %w", lt.Ident, err)
	}
	return n, nil
}

// errorBody is the error_body column, or NULL for a table made before it
// existed (the next run adds it).
func (lt *Table) errorBody() string {
	if lt.upToDate {
		return "error_body"
	}
	return "NULL::text"
}

// todoIndex names the index of the rows every run reads whatever the
// bookmark (error, pending, matched): a few among millions.
func todoIndex(sync string) string { return sync + "_todo_idx" }
