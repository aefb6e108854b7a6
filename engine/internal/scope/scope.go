package scope

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"unicode/utf8"

	"github.com/ferry-sync/ferry/engine/internal/linktable"
	"github.com/ferry-sync/ferry/engine/project"
	"github.com/ferry-sync/ferry/internal/sqlident"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgtype"
)

// Column is one column of a scope query's result.
type Column struct {
	Name string
	OID  uint32
	Type string // as format_type writes it: "bigint", "timestamp with time zone" …
	read string // "": as it is; "json": to_json in the warehouse; "numeric": cast
}

// Quoted is the column's quoted name.
func (c Column) Quoted() string { return sqlident.Ident(c.Name) }

// SQL is the user's scope query, cleaned (see Clean).
func (sc *Scope) SQL() string { return sc.sql }

// selectExpr reads column c of the scope (aliased alias) under its own name.
func (c Column) selectExpr(alias string) string {
	col := alias + "." + sqlident.Ident(c.Name)
	switch c.read {
	case "json":
		return "to_json(" + col + ") AS " + sqlident.Ident(c.Name)
	case "numeric":
		return "(" + col + ")::numeric AS " + sqlident.Ident(c.Name)
	}
	return col
}

// Scope is a sync's scope query, described: its columns, and the id and
// bookmark columns among them.
type Scope struct {
	sync     *project.Sync
	sql      string // the user's query, trailing semicolons removed
	Columns  []Column
	ID       Column
	Bookmark *Column  // nil for full reads
	Rels     []Column // the relations' key columns, in order
	role     string   // the scope role queries run as, "" for the warehouse login
	// uniqueIDs: the scope is a table whose id column has a unique index.
	uniqueIDs bool
}

// scopePrefix wraps the user's query; the newline before the closing
// parenthesis keeps a trailing "-- comment" in the query from eating it.
const scopePrefix = "SELECT * FROM (\n"

// Error is a problem with a sync's scope query: it does not parse, it
// lacks a column, it tries to write, it takes too long.
type Error struct {
	Sync    string
	File    string
	Line    int // 1-based line in the scope query, 0 when unknown
	Column  int
	Message string
	Hint    string
	Err     error
}

func (e *Error) Error() string {
	where := "sync " + e.Sync
	if e.File != "" {
		where += " (" + e.File + ")"
	}
	msg := where + ": scope query"
	if e.Line > 0 {
		msg += fmt.Sprintf(" line %d column %d", e.Line, e.Column)
	}
	msg += ": " + e.Message
	if e.Hint != "" {
		msg += "; " + e.Hint
	}
	return msg
}

func (e *Error) Unwrap() error { return e.Err }

// Clean trims a query and its trailing semicolons, so it can be wrapped.
func Clean(q string) string {
	q = strings.TrimSpace(q)
	for strings.HasSuffix(q, ";") {
		q = strings.TrimSpace(strings.TrimSuffix(q, ";"))
	}
	return q
}

// Describe reads a scope query's columns without reading its rows and
// checks the id, bookmark and relation columns against them.
func Describe(ctx context.Context, tx pgx.Tx, s *project.Sync, role string) (*Scope, error) {
	sc := &Scope{sync: s, sql: Clean(s.ScopeSQL()), role: role}
	if sc.sql == "" {
		return nil, &Error{Sync: s.Name, File: s.File, Message: "the query is empty"}
	}
	text := scopePrefix + sc.sql + "\n) s"
	desc, err := tx.Conn().Prepare(ctx, "", text)
	if err != nil {
		return nil, sc.Explain(err, len(scopePrefix))
	}
	oids := make([]uint32, len(desc.Fields))
	mods := make([]int32, len(desc.Fields))
	for i, f := range desc.Fields {
		oids[i], mods[i] = f.DataTypeOID, f.TypeModifier
	}
	// Each column's type name, and how it is read: composite values and
	// arrays whose elements Ferry cannot read natively become JSON in the
	// warehouse (nested objects and lists), money its exact numeric.
	var types, reads []string
	if err := tx.QueryRow(ctx, `
		SELECT array_agg(format_type(u.o, u.m) ORDER BY u.n),
		       array_agg(CASE
		           WHEN t.typtype = 'c' THEN 'json'
		           WHEN t.typcategory = 'A' AND (e.typtype = 'c' OR NOT (e.oid = ANY($3::oid[]))) THEN 'json'
		           WHEN t.oid = 'money'::regtype THEN 'numeric'
		           ELSE '' END ORDER BY u.n)
		FROM unnest($1::oid[], $2::int[]) WITH ORDINALITY AS u(o, m, n)
		LEFT JOIN pg_type t ON t.oid = u.o
		LEFT JOIN pg_type e ON e.oid = t.typelem`, oids, mods, arrayElemOIDs()).Scan(&types, &reads); err != nil {
		return nil, fmt.Errorf("sync %s: naming the scope's column types: %w", s.Name, err)
	}
	seen := map[string]bool{}
	for i, f := range desc.Fields {
		if seen[f.Name] {
			return nil, &Error{Sync: s.Name, File: s.File, Message: fmt.Sprintf("column %q appears twice", f.Name),
				Hint: "give one of them another name with AS (SELECT * over a join often does this)"}
		}
		seen[f.Name] = true
		if strings.HasPrefix(f.Name, "__ferry_") {
			return nil, &Error{Sync: s.Name, File: s.File, Message: fmt.Sprintf("column %q uses the prefix __ferry_, which Ferry reserves", f.Name)}
		}
		sc.Columns = append(sc.Columns, Column{Name: f.Name, OID: f.DataTypeOID, Type: types[i], read: reads[i]})
	}
	col, ok := sc.Lookup(s.Source.IDColumn)
	if !ok {
		return nil, &Error{Sync: s.Name, File: s.File,
			Message: fmt.Sprintf("no id column %q among the columns (%s)", s.Source.IDColumn, sc.ColumnNames()),
			Hint:    "set source.id_column, or name the id column AS " + s.Source.IDColumn}
	}
	sc.ID = col
	if s.Source.Table != "" {
		// Ids of a table with a unique index on its id column cannot repeat.
		err := tx.QueryRow(ctx, `
			SELECT EXISTS (SELECT 1 FROM pg_index i JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = i.indkey[0]
			               WHERE i.indrelid = to_regclass($1) AND i.indisunique AND i.indnkeyatts = 1 AND i.indpred IS NULL AND a.attname = $2)`,
			sqlident.Qualified(s.Source.Table), col.Name).Scan(&sc.uniqueIDs)
		if err != nil {
			return nil, fmt.Errorf("sync %s: reading the indexes of %s: %w", s.Name, s.Source.Table, err)
		}
	}
	if s.IsIncremental() {
		col, ok := sc.Lookup(s.Source.BookmarkColumn)
		if !ok {
			return nil, &Error{Sync: s.Name, File: s.File,
				Message: fmt.Sprintf("no bookmark column %q among the columns (%s)", s.Source.BookmarkColumn, sc.ColumnNames()),
				Hint:    "include it in the query, set source.bookmark_column, or set source.incremental: false to read everything each run"}
		}
		if !orderable(col.OID) {
			return nil, &Error{Sync: s.Name, File: s.File,
				Message: fmt.Sprintf("bookmark column %q has type %s, which cannot serve as a bookmark", col.Name, col.Type),
				Hint:    "use a timestamp, date or integer column"}
		}
		sc.Bookmark = &col
	}
	for i, f := range s.Mapping {
		if f.Source == "" {
			continue
		}
		if _, ok := sc.Lookup(f.Source); !ok {
			return nil, &project.ConfigError{File: s.FileOrName(), Field: fmt.Sprintf("mapping[%d].source", i),
				Message: fmt.Sprintf("column %q is not in the scope (columns: %s)", f.Source, sc.ColumnNames())}
		}
	}
	for i, r := range s.Relations {
		col, ok := sc.Lookup(r.Source)
		if !ok {
			return nil, &project.ConfigError{File: s.FileOrName(), Field: fmt.Sprintf("relations[%d].source", i),
				Message: fmt.Sprintf("column %q is not in the scope (columns: %s)", r.Source, sc.ColumnNames())}
		}
		sc.Rels = append(sc.Rels, col)
	}
	return sc, nil
}

// DerivedColumns returns, once per run, the columns a sync without a mapping
// maps by name (all but the id, the bookmark, relation keys and the ELT's
// _sdc_ columns) and the columns a transform sync's hash covers (all but
// the bookmark and _sdc_ columns, which change without the data changing).
func (sc *Scope) DerivedColumns(s *project.Sync) (byName, hashed []string) {
	relKey := map[string]bool{}
	for _, rel := range s.Relations {
		relKey[rel.Source] = true
	}
	for _, c := range sc.Columns {
		if strings.HasPrefix(c.Name, "_sdc_") || (sc.Bookmark != nil && c.Name == sc.Bookmark.Name) {
			continue
		}
		hashed = append(hashed, c.Name)
		if c.Name != sc.ID.Name && !relKey[c.Name] {
			byName = append(byName, c.Name)
		}
	}
	return byName, hashed
}

func orderable(oid uint32) bool {
	switch oid {
	case pgtype.TimestamptzOID, pgtype.TimestampOID, pgtype.DateOID,
		pgtype.Int2OID, pgtype.Int4OID, pgtype.Int8OID, pgtype.NumericOID:
		return true
	}
	return false
}

func isTimeType(oid uint32) bool {
	return oid == pgtype.TimestamptzOID || oid == pgtype.TimestampOID || oid == pgtype.DateOID
}

func (sc *Scope) Lookup(name string) (Column, bool) {
	for _, c := range sc.Columns {
		if c.Name == name {
			return c, true
		}
	}
	return Column{}, false
}

func (sc *Scope) ColumnNames() string {
	names := make([]string, len(sc.Columns))
	for i, c := range sc.Columns {
		names[i] = c.Name
	}
	return strings.Join(names, ", ")
}

// selectList is what the engine reads besides the scope's own columns: the
// id, bookmark and relation keys in their text form (so they compare with
// link tables whatever their type), a flag for rows past the stored
// bookmark, and how often the id occurs in what is read (duplicates are
// invalid). alias names the scope's rows; counted says __ferry_n is one of
// them already (computed over every row, before a filter).
func (sc *Scope) selectList(alias, afterParam string, counted bool) string {
	var b strings.Builder
	col := func(name string) string { return alias + "." + sqlident.Ident(name) }
	for _, c := range sc.Columns {
		b.WriteString(c.selectExpr(alias))
		b.WriteString(", ")
	}
	fmt.Fprintf(&b, "(%s)::text AS __ferry_id, ", col(sc.ID.Name))
	if counted {
		fmt.Fprintf(&b, "%s.__ferry_n", alias)
	} else {
		b.WriteString(sc.countExpr())
	}
	if sc.Bookmark != nil {
		bm := col(sc.Bookmark.Name)
		fmt.Fprintf(&b, ", (%s)::text AS __ferry_bm", bm)
		if afterParam != "" {
			fmt.Fprintf(&b, ", (%s > %s::text::%s) AS __ferry_after", bm, afterParam, sc.Bookmark.Type)
		} else {
			fmt.Fprintf(&b, ", (%s IS NOT NULL) AS __ferry_after", bm)
		}
	}
	for i, c := range sc.Rels {
		fmt.Fprintf(&b, ", (%s)::text AS __ferry_rel_%d", col(c.Name), i)
	}
	return b.String()
}

// countExpr counts the rows of each id (over the scope aliased s).
func (sc *Scope) countExpr() string {
	if sc.uniqueIDs {
		// A table whose id column is unique: no duplicate to count, and no
		// sort of the whole range by id to count them.
		return "1::bigint AS __ferry_n"
	}
	return "count(*) OVER (PARTITION BY s." + sqlident.Ident(sc.ID.Name) + ") AS __ferry_n"
}

// Plan is what a read needs besides the scope: the sync's link table
// and its parents' (nil when they do not exist yet), and the configuration
// fingerprint, for the row hash the warehouse computes.
type Plan struct {
	Link    *linktable.Table
	Parents []*linktable.Table // one per relation, in order; nil entries for parents not run yet
	Finger  string
	Hashed  []string // the columns the row hash covers
}

// rowHash is the warehouse's hash of a scope row: the columns that shape the
// record (all but the bookmark and _sdc_ columns), the parents' target ids
// its relations resolve to, and the sync's configuration fingerprint. A
// link row records it with each successful write; a row whose hash is
// unchanged need not leave the warehouse.
func (sc *Scope) rowHash(p Plan) string {
	parts := make([]string, 0, len(p.Hashed)+len(p.Parents))
	for _, c := range p.Hashed {
		parts = append(parts, "s."+sqlident.Ident(c))
	}
	for i, plt := range p.Parents {
		if plt != nil {
			parts = append(parts, fmt.Sprintf("__ferry_p%d.target_id", i))
		} else {
			parts = append(parts, "NULL::text")
		}
	}
	return fmt.Sprintf("md5(ROW(%s)::text || %s)", strings.Join(parts, ", "), sqlident.Literal(p.Finger))
}

// from joins the scope with the link tables the row hash and the filter
// need. Keys are cast to the link tables' source id types, so that their
// primary keys serve the join.
func (sc *Scope) from(p Plan, withLink bool) string {
	var b strings.Builder
	fmt.Fprintf(&b, "(\n%s\n) s", sc.sql)
	if withLink && p.Link != nil {
		fmt.Fprintf(&b, " LEFT JOIN %s __ferry_l ON __ferry_l.source_id = (s.%s)::%s", p.Link.Ident, sqlident.Ident(sc.ID.Name), p.Link.SourceType)
	}
	for i, plt := range p.Parents {
		if plt != nil {
			fmt.Fprintf(&b, " LEFT JOIN %s __ferry_p%d ON __ferry_p%d.source_id = (s.%s)::%s", plt.Ident, i, i, sqlident.Ident(sc.Rels[i].Name), plt.SourceType)
		}
	}
	return b.String()
}

// ReadSQL builds the query of an incremental, full or reconciling read.
// from, when set, is the stored bookmark: rows from it minus the overlap
// are read, and rows whose stamp is NULL, every time (they have no place
// in the order of stamps). reconcile reads the whole scope and flags the
// rows an incremental read would not have read. Either way, rows whose link
// row is a success with the same row hash stay in the warehouse: only what
// is new, changed, failed or never written comes back.
//
// narrow, with from, reads only past the bookmark: the window behind it
// (WindowSQL) was found as a run that handled all of it left it.
func (sc *Scope) ReadSQL(from *string, reconcile, narrow bool, p Plan) (string, []any) {
	var args []any
	var where []string
	order := "s." + sqlident.Ident(sc.ID.Name)
	outerOrder := "q." + sqlident.Ident(sc.ID.Name)
	after, behind := "", ""
	if sc.Bookmark != nil {
		bm := "s." + sqlident.Ident(sc.Bookmark.Name)
		order = bm + ", " + order
		outerOrder = "q." + sqlident.Ident(sc.Bookmark.Name) + ", " + outerOrder
		switch {
		case from != nil && narrow && !reconcile:
			args = []any{*from}
			after = "$1"
			where = append(where, fmt.Sprintf("(%s %s $1::text::%s OR %s IS NULL)", bm, sc.pastOp(), sc.Bookmark.Type, bm))
		case from != nil:
			var start string
			start, args = sc.start(from, 1)
			after = "$1"
			if reconcile {
				behind = fmt.Sprintf("%s < %s", bm, start)
			} else {
				where = append(where, fmt.Sprintf("(%s >= %s OR %s IS NULL)", bm, start, bm))
			}
		}
	}
	cond := ""
	if len(where) > 0 {
		cond = "WHERE " + strings.Join(where, " AND ")
	}
	behindCol := ""
	if behind != "" {
		behindCol = ", coalesce(" + behind + ", false) AS __ferry_behind"
	}
	if p.Link == nil {
		list := sc.selectList("s", after, false) + ", " + sc.rowHash(p) + " AS __ferry_rh" + behindCol
		return fmt.Sprintf("SELECT %s FROM %s %s ORDER BY %s", list, sc.from(p, false), cond, order), args
	}
	// The inner query computes each row's hash once (OFFSET 0 keeps the
	// planner from copying the expression into the filter), and little
	// else: what the engine reads besides the columns (text forms, flags)
	// is computed by the outer query for the rows that pass the filter
	// only. After a bulk re-stamp that is none of a million. Only what
	// passes is sorted, too (sorting first sorted every row, on disk).
	outerBehind := ""
	if behind != "" {
		outerBehind = ", q.__ferry_behind"
	}
	return fmt.Sprintf(`SELECT %s, q.__ferry_rh%s FROM (SELECT s.*, %s, %s AS __ferry_rh, __ferry_l.status AS __ferry_ls, __ferry_l.row_hash AS __ferry_lrh%s FROM %s %s OFFSET 0) q
WHERE q.__ferry_ls IS DISTINCT FROM 'success' OR q.__ferry_lrh IS DISTINCT FROM q.__ferry_rh
ORDER BY %s`, sc.selectList("q", after, true), outerBehind, sc.countExpr(), sc.rowHash(p), behindCol, sc.from(p, true), cond, outerOrder), args
}

// WindowSQL fingerprints the window an incremental read from the bookmark
// at reads behind it: the rows stamped from at minus the overlap through at
// itself (rows without a stamp are read by every run anyway). The
// fingerprint is their count and the sum of a 64-bit hash of each row's id,
// stamp and parents' target ids: a row committed late into the window,
// re-stamped into or out of it, or gone from it changes it. A change of
// content that keeps the stamp does not; incremental reads never promise to
// see those (reconciling reads do).
//
// recordHash says the warehouse has hash_record_extended (PostgreSQL 14):
// hashing the two values as they are, without their text forms, halves
// the query's cost on a million rows. Types it cannot hash use text.
func (sc *Scope) WindowSQL(at string, recordHash bool, p Plan) (string, []any) {
	bm := "s." + sqlident.Ident(sc.Bookmark.Name)
	id := "s." + sqlident.Ident(sc.ID.Name)
	start, args := sc.start(&at, 1)
	// The parents' target ids the rows' relations resolve to are part of
	// what a row is: a parent linked to another record re-reads its
	// children, as their row hash would have it.
	var parents []string
	for i, plt := range p.Parents {
		if plt != nil {
			parents = append(parents, fmt.Sprintf("__ferry_p%d.target_id::text", i))
		}
	}
	var hash string
	if recordHash && hashable(sc.ID.OID) && hashable(sc.Bookmark.OID) {
		hash = fmt.Sprintf("hash_record_extended(ROW(%s), 0)", strings.Join(append([]string{id, bm}, parents...), ", "))
	} else {
		texts := []string{fmt.Sprintf("coalesce(%s::text, '')", id), fmt.Sprintf("coalesce(%s::text, '')", bm)}
		for _, t := range parents {
			texts = append(texts, fmt.Sprintf("coalesce(%s, '')", t))
		}
		hash = fmt.Sprintf("hashtextextended(%s, 0)", strings.Join(texts, " || '|' || "))
	}
	return fmt.Sprintf(`SELECT count(*)::text || ':' || coalesce(sum(%[1]s), 0)::text
FROM %[2]s WHERE %[3]s >= %[4]s AND %[3]s <= $1::text::%[5]s`, hash, sc.from(p, false), bm, start, sc.Bookmark.Type), args
}

// pastOp is how a read that skips the window compares stamps with the
// bookmark: past it, or, for dates, also on its day. A date stamps every
// edit of a day alike, so the rows tied with the bookmark are read by
// every run, as they were before the window was skipped.
func (sc *Scope) pastOp() string {
	if sc.Bookmark.OID == pgtype.DateOID {
		return ">="
	}
	return ">"
}

// hashable says whether WindowSQL hashes ids or stamps of a type as they are.
func hashable(oid uint32) bool {
	switch oid {
	case pgtype.Int2OID, pgtype.Int4OID, pgtype.Int8OID, pgtype.NumericOID,
		pgtype.TextOID, pgtype.VarcharOID, pgtype.BPCharOID, pgtype.UUIDOID,
		pgtype.DateOID, pgtype.TimestampOID, pgtype.TimestamptzOID:
		return true
	}
	return false
}

// start is where an incremental read starts: the stored bookmark from
// minus the overlap, as an expression over parameters numbered from n.
func (sc *Scope) start(from *string, n int) (string, []any) {
	args := []any{*from}
	start := fmt.Sprintf("$%d::text::%s", n, sc.Bookmark.Type)
	if ov := sc.sync.Source.Overlap.Duration; ov > 0 && isTimeType(sc.Bookmark.OID) {
		args = append(args, ov.String())
		start = fmt.Sprintf("(%s - $%d::text::interval)", start, n+1)
	}
	return start, args
}

// TailSQL finds the highest stamp past the stored bookmark, read once the
// cursor is done: when the last rows stayed in the warehouse (unchanged),
// the bookmark still moves past them.
func (sc *Scope) TailSQL(from *string) (string, []any) {
	bm := "s." + sqlident.Ident(sc.Bookmark.Name)
	if from == nil {
		return fmt.Sprintf("SELECT (%s)::text FROM (\n%s\n) s WHERE %s IS NOT NULL ORDER BY %s DESC LIMIT 1", bm, sc.sql, bm, bm), nil
	}
	return fmt.Sprintf("SELECT (%s)::text FROM (\n%s\n) s WHERE %s > $1::text::%s ORDER BY %s DESC LIMIT 1", bm, sc.sql, bm, sc.Bookmark.Type, bm), []any{*from}
}

// IDsSQL builds the query that reads given source ids (retries, tests).
// With a stored bookmark, it flags the rows incremental reads do not reach.
//
// narrow says incremental runs skip the window behind the bookmark (it is
// unchanged): a row in it is flagged as kept (its edit kept its stamp).
func (sc *Scope) IDsSQL(p Plan, from *string, narrow bool) (string, []any) {
	id := "s." + sqlident.Ident(sc.ID.Name)
	list := sc.selectList("s", "", false) + ", " + sc.rowHash(p) + " AS __ferry_rh"
	var args []any
	if from != nil && sc.Bookmark != nil {
		var start string
		start, args = sc.start(from, 2)
		bm := "s." + sqlident.Ident(sc.Bookmark.Name)
		list += fmt.Sprintf(", coalesce(%s < %s, false) AS __ferry_behind", bm, start)
		if narrow {
			list += fmt.Sprintf(", coalesce(%s >= %s AND NOT %s %s $2::text::%s, false) AS __ferry_kept", bm, start, bm, sc.pastOp(), sc.Bookmark.Type)
		}
	}
	return fmt.Sprintf("SELECT %s FROM %s WHERE %s = ANY($1::text[]::%s[]) ORDER BY %s",
		list, sc.from(p, false), id, sc.ID.Type, id), args
}

// Explain turns a PostgreSQL error about the wrapped scope query into a
// Error that points into the user's query.
func (sc *Scope) Explain(err error, offset int) error {
	s := sc.sync
	se := &Error{Sync: s.Name, File: s.File, Message: err.Error(), Err: err}
	var pgErr *pgconn.PgError
	if !errors.As(err, &pgErr) {
		return se
	}
	se.Message = pgErr.Message
	if pgErr.Detail != "" {
		se.Message += " (" + pgErr.Detail + ")"
	}
	if pgErr.Position > 0 {
		se.Line, se.Column = position(sc.sql, int(pgErr.Position)-1-utf8.RuneCountInString(scopePrefix[:offset]))
	}
	switch {
	case pgErr.Code == "25006": // read_only_sql_transaction
		se.Message = "it tries to write: " + pgErr.Message
		se.Hint = "a scope query may only read (SELECT); Ferry runs it in a read-only transaction"
	case pgErr.Code == "57014": // query_canceled by statement_timeout
		se.Message = fmt.Sprintf("it took longer than source.timeout (%s) and was cancelled", s.Source.Timeout.Duration)
		se.Hint = "index the bookmark column, simplify the query, or raise source.timeout"
	case pgErr.Code == "42601":
		se.Hint = "fix the SQL; it must be one SELECT statement"
		if first := strings.ToUpper(firstWord(sc.sql)); first == "DELETE" || first == "UPDATE" || first == "INSERT" || first == "DROP" || first == "TRUNCATE" || first == "ALTER" || first == "CREATE" {
			se.Message = fmt.Sprintf("it is a %s statement, not a query", first)
			se.Hint = "a scope query may only read: write it as one SELECT"
			se.Line, se.Column = 0, 0
		}
	case pgErr.Code == "42P01" || pgErr.Code == "42703" || pgErr.Code == "3F000":
		se.Hint = "check the table and column names against the warehouse"
	case pgErr.Code == "42501" && sc.role != "":
		se.Hint = fmt.Sprintf("scope queries run as role %s, which may only read what it was granted: grant it SELECT (or run `ferry setup --scope-role %s --schemas …` for the schema)", sc.role, sc.role)
	case pgErr.Code == "42501":
		se.Hint = "the warehouse user lacks permission to read this"
	}
	return se
}

func firstWord(q string) string {
	q = strings.TrimLeft(q, " \t\r\n(")
	end := strings.IndexAny(q, " \t\r\n(;")
	if end < 0 {
		return q
	}
	return q[:end]
}

// position converts a 0-based character offset into 1-based line and column.
func position(text string, offset int) (int, int) {
	if offset < 0 {
		return 0, 0
	}
	line, col := 1, 1
	for i, r := range []rune(text) {
		if i == offset {
			return line, col
		}
		if r == '\n' {
			line, col = line+1, 1
		} else {
			col++
		}
	}
	return line, col
}
