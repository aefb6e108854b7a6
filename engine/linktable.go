package engine

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/ferry-sync/ferry/internal/sqlident"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// LinkSchema holds one link table per sync.
const LinkSchema = "link_tables"

// Link statuses.
const (
	StatusSuccess = "success"
	StatusError   = "error"
	StatusSkipped = "skipped" // skipped by the transform or the mode, with the reason in error
	StatusMatched = "matched" // seeded by a user, or found by a lookup: update, never insert
	StatusPending = "pending" // an insert whose outcome is not known yet
)

// dbtx is what link tables need of a pool, a connection or a transaction.
type dbtx interface {
	Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error)
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}

// linkTable is link_tables.<sync>. Its shape is fixed; only its name and the
// types of source_id and target_id vary (they follow the source id column
// and the target's ids, so analysts JOIN without casts).
type linkTable struct {
	sync       string
	ident      string // quoted link_tables."<sync>"
	sourceType string
	targetType string
	upToDate   bool // has every column this version writes
}

// LinkRow is one row of a link table.
type LinkRow struct {
	SourceID      string     `json:"source_id"`
	TargetID      *string    `json:"target_id"`
	Status        string     `json:"status"`
	Hash          *string    `json:"hash"`
	Error         *string    `json:"error"`
	ErrorClass    *string    `json:"error_class"`
	Attempts      int32      `json:"attempts"`
	FirstSyncedAt *time.Time `json:"first_synced_at"`
	LastSyncedAt  *time.Time `json:"last_synced_at"`
	UpdatedAt     time.Time  `json:"updated_at"`
}

func newLinkTable(sync, sourceType, targetType string) *linkTable {
	return &linkTable{sync: sync, ident: pgx.Identifier{LinkSchema, sync}.Sanitize(), sourceType: sourceType, targetType: targetType}
}

// openLinkTable returns the link table of sync with the types it was made
// with, or nil when it does not exist yet.
func openLinkTable(ctx context.Context, db dbtx, sync string) (*linkTable, error) {
	var src, tgt string
	var upToDate bool
	err := db.QueryRow(ctx, `
		SELECT format_type(s.atttypid, s.atttypmod), format_type(t.atttypid, t.atttypmod),
		       EXISTS (SELECT 1 FROM pg_attribute r WHERE r.attrelid = s.attrelid AND r.attname = 'row_hash' AND NOT r.attisdropped)
		FROM pg_attribute s JOIN pg_attribute t ON t.attrelid = s.attrelid
		WHERE s.attrelid = to_regclass($1) AND s.attname = 'source_id' AND t.attname = 'target_id'`,
		pgx.Identifier{LinkSchema, sync}.Sanitize()).Scan(&src, &tgt, &upToDate)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("looking up link table %s.%s: %w", LinkSchema, sync, err)
	}
	lt := newLinkTable(sync, src, tgt)
	lt.upToDate = upToDate
	return lt, nil
}

// ensureLinkTable creates the link table of sync when it does not exist, and
// returns it (with the types it already has, if it existed).
func ensureLinkTable(ctx context.Context, db dbtx, sync, sourceType, targetType string) (*linkTable, error) {
	if lt, err := openLinkTable(ctx, db, sync); err != nil || lt != nil {
		if lt != nil && !lt.upToDate {
			// A link table made by an earlier version gets the columns added
			// since (a catalog change only: no row is rewritten). Only then:
			// ALTER TABLE waits for every reader of the table.
			if _, err := db.Exec(ctx, fmt.Sprintf(`ALTER TABLE %s ADD COLUMN IF NOT EXISTS row_hash text`, lt.ident)); err != nil {
				return nil, fmt.Errorf("upgrading link table %s: %w", lt.ident, err)
			}
		}
		return lt, err
	}
	lt := newLinkTable(sync, sourceType, targetType)
	lt.upToDate = true
	// Types come from format_type on the warehouse's own catalog, never from
	// user text; the status default lets analysts seed rows with just
	// (source_id, target_id).
	ddl := fmt.Sprintf(`CREATE SCHEMA IF NOT EXISTS %[1]s;
CREATE TABLE IF NOT EXISTS %[2]s (
    source_id       %[3]s PRIMARY KEY,
    target_id       %[4]s,
    status          text NOT NULL DEFAULT 'matched'
                    CHECK (status IN ('success', 'error', 'skipped', 'matched', 'pending')),
    hash            text,
    row_hash        text,  -- the scope row as last written, hashed by the warehouse: unchanged rows stay there
    error           text,
    error_class     text,
    attempts        integer NOT NULL DEFAULT 0,
    payload         json,  -- the last payload written, kept as sent (json: cheaper to store than jsonb)
    first_synced_at timestamptz,
    last_synced_at  timestamptz,
    updated_at      timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS %[5]s ON %[2]s (status) WHERE status IN ('error', 'pending');
CREATE INDEX IF NOT EXISTS %[6]s ON %[2]s (target_id);
COMMENT ON TABLE %[2]s IS %[7]s`,
		sqlident.Ident(LinkSchema), lt.ident, sourceType, targetType,
		sqlident.Ident(sync+"_retry_idx"), sqlident.Ident(sync+"_target_idx"),
		sqlident.Literal("Ferry link table of sync "+sync+": one row per source record (status success|error|skipped|matched|pending). Seed rows with status matched to link existing target records."))
	if _, err := db.Exec(ctx, ddl); err != nil {
		return nil, fmt.Errorf("creating link table %s: %w", lt.ident, err)
	}
	return lt, nil
}

// linkState is what the engine needs of an existing link row to decide.
type linkState struct {
	targetID string // "" when none
	status   string
	hash     string
	rowHash  string
	errText  string // the row's last error, "" for none
}

// fetch returns the link rows of ids, keyed by source id text.
func (lt *linkTable) fetch(ctx context.Context, db dbtx, ids []string) (map[string]linkState, error) {
	out := make(map[string]linkState, len(ids))
	if lt == nil || len(ids) == 0 {
		return out, nil
	}
	rows, err := db.Query(ctx, fmt.Sprintf(
		`SELECT source_id::text, coalesce(target_id::text, ''), status, coalesce(hash, ''), coalesce(row_hash, ''), coalesce(error, '') FROM %s WHERE source_id = ANY($1::text[]::%s[])`,
		lt.ident, lt.sourceType), ids)
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w", lt.ident, err)
	}
	defer rows.Close()
	for rows.Next() {
		var id string
		var st linkState
		if err := rows.Scan(&id, &st.targetID, &st.status, &st.hash, &st.rowHash, &st.errText); err != nil {
			return nil, fmt.Errorf("reading %s: %w", lt.ident, err)
		}
		out[id] = st
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("reading %s: %w", lt.ident, err)
	}
	return out, nil
}

// targetIDs maps parent source ids to their target ids (linked rows only).
func (lt *linkTable) targetIDs(ctx context.Context, db dbtx, ids []string) (map[string]string, error) {
	out := make(map[string]string, len(ids))
	if lt == nil || len(ids) == 0 {
		return out, nil
	}
	rows, err := db.Query(ctx, fmt.Sprintf(
		`SELECT source_id::text, target_id::text FROM %s WHERE source_id = ANY($1::text[]::%s[]) AND target_id IS NOT NULL`,
		lt.ident, lt.sourceType), ids)
	if err != nil {
		return nil, fmt.Errorf("reading parent link table %s: %w", lt.ident, err)
	}
	defer rows.Close()
	for rows.Next() {
		var s, t string
		if err := rows.Scan(&s, &t); err != nil {
			return nil, fmt.Errorf("reading parent link table %s: %w", lt.ident, err)
		}
		out[s] = t
	}
	return out, rows.Err()
}

// retryIDs returns the ids whose rows are in error or pending, or seeded
// (matched) and not written yet: they are read again on every run,
// whatever the bookmark, until they succeed.
func (lt *linkTable) retryIDs(ctx context.Context, db dbtx) ([]string, error) {
	if lt == nil {
		return nil, nil
	}
	rows, err := db.Query(ctx, fmt.Sprintf(`SELECT source_id::text FROM %s WHERE status IN ('error', 'pending', 'matched') ORDER BY source_id`, lt.ident))
	if err != nil {
		return nil, fmt.Errorf("reading records to retry from %s: %w", lt.ident, err)
	}
	return pgx.CollectRows(rows, pgx.RowTo[string])
}

// linkWrite is one link row to upsert. Nil pointers keep what the row has.
type linkWrite struct {
	sourceID   string
	targetID   *string
	status     string
	hash       *string
	rowHash    *string // the scope row's warehouse hash, with a successful write
	errText    *string
	errClass   *string
	payload    map[string]any // the payload written; encoded by upsert, on the recorder
	synced     bool           // a write succeeded: stamp last (and first) sync time
	failedOnce bool           // count an attempt
}

// upsert writes link rows in one statement.
func (lt *linkTable) upsert(ctx context.Context, db dbtx, ws []linkWrite) error {
	if len(ws) == 0 {
		return nil
	}
	// One statement may touch a row once: the last write of an id wins.
	last := make(map[string]int, len(ws))
	for i, w := range ws {
		last[w.sourceID] = i
	}
	if len(last) < len(ws) {
		kept := make([]linkWrite, 0, len(last))
		for i, w := range ws {
			if last[w.sourceID] == i {
				kept = append(kept, w)
			}
		}
		ws = kept
	}
	n := len(ws)
	ids, tids, statuses, hashes, rowHashes, errs, classes, payloads := make([]string, n), make([]*string, n), make([]string, n), make([]*string, n), make([]*string, n), make([]*string, n), make([]*string, n), make([]*string, n)
	synced, failed := make([]bool, n), make([]bool, n)
	for i, w := range ws {
		ids[i], tids[i], statuses[i], hashes[i], rowHashes[i], errs[i], classes[i], payloads[i] = w.sourceID, w.targetID, w.status, w.hash, w.rowHash, w.errText, w.errClass, payloadJSON(w.payload)
		synced[i], failed[i] = w.synced, w.failedOnce
	}
	sql := fmt.Sprintf(`
INSERT INTO %[1]s AS l (source_id, target_id, status, hash, row_hash, error, error_class, attempts, payload, first_synced_at, last_synced_at, updated_at)
SELECT u.source_id::%[2]s, u.target_id::%[3]s, u.status, u.hash, u.row_hash, u.error, u.error_class,
       CASE WHEN u.failed THEN 1 ELSE 0 END, u.payload::json,
       CASE WHEN u.synced THEN now() END, CASE WHEN u.synced THEN now() END, now()
FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[], $8::text[], $9::bool[], $10::bool[])
     AS u(source_id, target_id, status, hash, row_hash, error, error_class, payload, synced, failed)
ON CONFLICT (source_id) DO UPDATE SET
    target_id       = coalesce(EXCLUDED.target_id, l.target_id),
    status          = EXCLUDED.status,
    hash            = coalesce(EXCLUDED.hash, l.hash),
    row_hash        = CASE WHEN EXCLUDED.status = 'success' THEN EXCLUDED.row_hash ELSE l.row_hash END,
    error           = EXCLUDED.error,
    error_class     = EXCLUDED.error_class,
    attempts        = CASE WHEN EXCLUDED.attempts > 0 THEN l.attempts + 1
                           WHEN EXCLUDED.status = 'pending' THEN l.attempts ELSE 0 END,
    payload         = coalesce(EXCLUDED.payload, l.payload),
    first_synced_at = coalesce(l.first_synced_at, EXCLUDED.first_synced_at),
    last_synced_at  = coalesce(EXCLUDED.last_synced_at, l.last_synced_at),
    updated_at      = now()`, lt.ident, lt.sourceType, lt.targetType)
	if _, err := db.Exec(ctx, sql, ids, tids, statuses, hashes, rowHashes, errs, classes, payloads, synced, failed); err != nil {
		return fmt.Errorf("recording %d link rows in %s: %w", n, lt.ident, err)
	}
	return nil
}

// LinkRows lists link rows for status reports and tests: rows with status
// (all when empty), most recently changed first.
func LinkRows(ctx context.Context, db dbtx, sync, status string, limit int) ([]LinkRow, error) {
	lt, err := openLinkTable(ctx, db, sync)
	if err != nil || lt == nil {
		return nil, err
	}
	rows, err := db.Query(ctx, fmt.Sprintf(`
		SELECT source_id::text, target_id::text, status, hash, error, error_class, attempts, first_synced_at, last_synced_at, updated_at
		FROM %s WHERE ($1 = '' OR status = $1) ORDER BY updated_at DESC, source_id LIMIT $2`, lt.ident), status, limit)
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w", lt.ident, err)
	}
	return pgx.CollectRows(rows, pgx.RowToStructByPos[LinkRow])
}

// LinkCounts counts a sync's link rows by status.
func LinkCounts(ctx context.Context, db dbtx, sync string) (map[string]int64, error) {
	out := map[string]int64{}
	lt, err := openLinkTable(ctx, db, sync)
	if err != nil || lt == nil {
		return out, err
	}
	rows, err := db.Query(ctx, fmt.Sprintf(`SELECT status, count(*) FROM %s GROUP BY status`, lt.ident))
	if err != nil {
		return nil, fmt.Errorf("counting %s: %w", lt.ident, err)
	}
	defer rows.Close()
	for rows.Next() {
		var s string
		var n int64
		if err := rows.Scan(&s, &n); err != nil {
			return nil, err
		}
		out[s] = n
	}
	return out, rows.Err()
}

// markPending marks ids whose inserts may have reached the target as
// pending, unless their rows already hold a target id.
func (lt *linkTable) markPending(ctx context.Context, db dbtx, ids []string, msg string) error {
	_, err := db.Exec(ctx, fmt.Sprintf(`
INSERT INTO %[1]s AS l (source_id, status, error, error_class)
SELECT u::%[2]s, 'pending', $2, 'pending' FROM unnest($1::text[]) AS u
ON CONFLICT (source_id) DO UPDATE SET status = 'pending', error = EXCLUDED.error, error_class = 'pending', updated_at = now()
WHERE l.target_id IS NULL`, lt.ident, lt.sourceType), ids, msg)
	if err != nil {
		return fmt.Errorf("marking %d interrupted inserts pending in %s: %w", len(ids), lt.ident, err)
	}
	return nil
}

// markUnchanged records that records were found unchanged (same hash as
// their last successful write) whose rows need it: the row's warehouse hash
// moves on (so the warehouse skips the row next time), and a row left in
// error by a failed update of a record that is back to what the target holds
// is a success again. Their target id, hash and times stay.
func (lt *linkTable) markUnchanged(ctx context.Context, db dbtx, ids, rowHashes []string) error {
	if len(ids) == 0 {
		return nil
	}
	_, err := db.Exec(ctx, fmt.Sprintf(`
UPDATE %s AS l SET status = 'success', error = NULL, error_class = NULL, attempts = 0, row_hash = u.row_hash, updated_at = now()
FROM unnest($1::text[], $2::text[]) AS u(source_id, row_hash)
WHERE l.source_id = u.source_id::%s`, lt.ident, lt.sourceType), ids, rowHashes)
	if err != nil {
		return fmt.Errorf("recording %d unchanged records in %s: %w", len(ids), lt.ident, err)
	}
	return nil
}
