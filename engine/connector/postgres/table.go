package postgres

import (
	"context"
	"fmt"
	"sort"
	"strings"

	"github.com/jackc/pgx/v5"
)

// table is what Ferry knows of one object's table, read from the catalog
// once and cached.
type table struct {
	name     string // schema.table, for messages
	quoted   string // "schema"."table"
	idColumn string
	idType   string            // format_type of the id column: bigint, uuid, …
	columns  map[string]string // column -> format_type
}

// IDType returns the SQL type of the id column of object's table, such as
// "bigint" or "uuid".
func (t *Target) IDType(ctx context.Context, object string) (string, error) {
	tbl, err := t.table(ctx, object, false)
	if err != nil {
		return "", t.redactor.RedactError(err)
	}
	return tbl.idType, nil
}

// table returns object's table, from the cache unless reload.
func (t *Target) table(ctx context.Context, object string, reload bool) (*table, error) {
	if !reload {
		t.mu.Lock()
		tbl, ok := t.tables[object]
		t.mu.Unlock()
		if ok {
			return tbl, nil
		}
	}
	tbl, err := t.loadTable(ctx, object)
	if err != nil {
		return nil, err
	}
	t.mu.Lock()
	t.tables[object] = tbl
	t.mu.Unlock()
	return tbl, nil
}

// forget drops object's table from the cache (after the table changed).
func (t *Target) forget(object string) {
	t.mu.Lock()
	delete(t.tables, object)
	t.mu.Unlock()
}

func (t *Target) loadTable(ctx context.Context, object string) (*table, error) {
	schema, name, idColumn, err := t.resolveObject(object)
	if err != nil {
		return nil, err
	}
	tbl := &table{
		name:     schema + "." + name,
		quoted:   pgx.Identifier{schema, name}.Sanitize(),
		idColumn: idColumn,
		columns:  make(map[string]string),
	}
	var oid *uint32
	if err := t.pool.QueryRow(ctx, "SELECT to_regclass($1)::oid", tbl.quoted).Scan(&oid); err != nil {
		return nil, classifyWhole(fmt.Errorf("postgres target: looking up table %s: %w", tbl.name, err))
	}
	if oid == nil {
		return nil, fmt.Errorf("postgres target: table %s (object %s) does not exist", tbl.name, object)
	}
	rows, err := t.pool.Query(ctx, `
		SELECT a.attname, format_type(a.atttypid, a.atttypmod)
		FROM pg_catalog.pg_attribute a
		WHERE a.attrelid = $1 AND a.attnum > 0 AND NOT a.attisdropped`, *oid)
	if err != nil {
		return nil, classifyWhole(fmt.Errorf("postgres target: reading the columns of %s: %w", tbl.name, err))
	}
	for rows.Next() {
		var col, typ string
		if err := rows.Scan(&col, &typ); err != nil {
			rows.Close()
			return nil, fmt.Errorf("postgres target: reading the columns of %s: %w", tbl.name, err)
		}
		tbl.columns[col] = typ
	}
	if err := rows.Err(); err != nil {
		return nil, classifyWhole(fmt.Errorf("postgres target: reading the columns of %s: %w", tbl.name, err))
	}
	typ, ok := tbl.columns[idColumn]
	if !ok {
		return nil, fmt.Errorf("postgres target: table %s has no column %q to use as its id (id_column)", tbl.name, idColumn)
	}
	tbl.idType = typ
	return tbl, nil
}

// resolveObject says which table and id column object is written to.
func (t *Target) resolveObject(object string) (schema, name, idColumn string, err error) {
	name, idColumn = object, t.idColumn
	if o, ok := t.objects[object]; ok {
		if o.Table != "" {
			name = o.Table
		}
		if o.IDColumn != "" {
			idColumn = o.IDColumn
		}
	}
	schema = t.schema
	if s, n, qualified := strings.Cut(name, "."); qualified {
		schema, name = s, n
	}
	if schema == "" || name == "" || strings.Contains(name, ".") {
		return "", "", "", fmt.Errorf("postgres target: object %q: the table must be \"table\" or \"schema.table\"", object)
	}
	return schema, name, idColumn, nil
}

// unknownColumns returns the payload keys that are not columns of the table.
func (tbl *table) unknownColumns(payload map[string]any) []string {
	var unknown []string
	for k := range payload {
		if _, ok := tbl.columns[k]; !ok {
			unknown = append(unknown, k)
		}
	}
	sort.Strings(unknown)
	return unknown
}

func quoteColumns(cols []string, prefix string) []string {
	out := make([]string, len(cols))
	for i, c := range cols {
		out[i] = prefix + pgx.Identifier{c}.Sanitize()
	}
	return out
}

// insertSQL inserts the given columns from a JSON document ($1), letting
// PostgreSQL convert each value to its column's type.
func (tbl *table) insertSQL(cols []string) string {
	id := pgx.Identifier{tbl.idColumn}.Sanitize()
	if len(cols) == 0 {
		return "INSERT INTO " + tbl.quoted + " DEFAULT VALUES RETURNING " + id + "::text"
	}
	list := strings.Join(quoteColumns(cols, ""), ", ")
	return "INSERT INTO " + tbl.quoted + " (" + list + ") SELECT " + list +
		" FROM jsonb_populate_record(NULL::" + tbl.quoted + ", $1::jsonb) RETURNING " + id + "::text"
}

// updateSQL sets the given columns from a JSON document ($1) on the row
// whose id is $2 (text, cast to the id's type so that its index is used).
// With no columns it only checks that the row exists, and the id is $1.
func (tbl *table) updateSQL(cols []string) string {
	id := pgx.Identifier{tbl.idColumn}.Sanitize()
	if len(cols) == 0 {
		return "SELECT ferry_t." + id + "::text FROM " + tbl.quoted + " AS ferry_t WHERE ferry_t." + id + " = $1::text::" + tbl.idType
	}
	match := "ferry_t." + id + " = $2::text::" + tbl.idType
	sets := make([]string, len(cols))
	for i, c := range cols {
		q := pgx.Identifier{c}.Sanitize()
		sets[i] = q + " = ferry_r." + q
	}
	return "UPDATE " + tbl.quoted + " AS ferry_t SET " + strings.Join(sets, ", ") +
		" FROM jsonb_populate_record(NULL::" + tbl.quoted + ", $1::jsonb) AS ferry_r WHERE " + match +
		" RETURNING ferry_t." + id + "::text"
}

// columnNames lists the table's columns in order of name.
func (tbl *table) columnNames() []string {
	names := make([]string, 0, len(tbl.columns))
	for c := range tbl.columns {
		names = append(names, c)
	}
	sort.Strings(names)
	return names
}
