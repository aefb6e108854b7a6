package postgres

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"sort"
	"strings"

	"github.com/jackc/pgx/v5"
)

// MaxFound is the most rows Find returns.
const MaxFound = 100

// Find returns the rows of object's table whose columns equal every match
// value (a nil value matches NULL), at most MaxFound of them. Each row is a
// map of its columns as JSON values (numerics as json.Number with their exact
// digits, timestamps as RFC 3339 text) with its id, as text, under "id".
// No error it returns holds a secret of the connection.
func (t *Target) Find(ctx context.Context, object string, match map[string]any) ([]map[string]any, error) {
	found, err := t.find(ctx, object, match)
	return found, t.redactor.RedactError(err)
}

func (t *Target) find(ctx context.Context, object string, match map[string]any) ([]map[string]any, error) {
	if len(match) == 0 {
		return nil, fmt.Errorf("postgres target: looking up %s: name at least one field to match", object)
	}
	tbl, err := t.table(ctx, object, false)
	if err != nil {
		return nil, err
	}
	if unknown := tbl.unknownColumns(match); len(unknown) > 0 {
		if tbl, err = t.table(ctx, object, true); err != nil {
			return nil, err
		}
		if unknown = tbl.unknownColumns(match); len(unknown) > 0 {
			return nil, fmt.Errorf("postgres target: looking up %s: %s", object, unknownMessage(unknown, tbl.name))
		}
	}
	fields := make([]string, 0, len(match))
	for f := range match {
		fields = append(fields, f)
	}
	sort.Strings(fields)
	conds := make([]string, len(fields))
	for i, f := range fields {
		q := pgx.Identifier{f}.Sanitize()
		if match[f] == nil {
			conds[i] = "ferry_t." + q + " IS NULL"
		} else {
			conds[i] = "ferry_t." + q + " = ferry_r." + q
		}
	}
	doc, err := encodePayload(match)
	if err != nil {
		return nil, fmt.Errorf("postgres target: looking up %s: encoding the match values: %w", object, err)
	}
	id := pgx.Identifier{tbl.idColumn}.Sanitize()
	sql := fmt.Sprintf(`SELECT ferry_t.%s::text, to_jsonb(ferry_t.*) FROM %s AS ferry_t, jsonb_populate_record(NULL::%s, $1::jsonb) AS ferry_r WHERE %s LIMIT %d`,
		id, tbl.quoted, tbl.quoted, strings.Join(conds, " AND "), MaxFound)

	rows, err := t.pool.Query(ctx, sql, doc)
	if err != nil {
		return nil, classifyWhole(fmt.Errorf("postgres target: looking up %s in %s: %w", object, tbl.name, err))
	}
	defer rows.Close()
	var found []map[string]any
	for rows.Next() {
		var rowID string
		var raw []byte
		if err := rows.Scan(&rowID, &raw); err != nil {
			return nil, fmt.Errorf("postgres target: reading a row of %s: %w", tbl.name, err)
		}
		dec := json.NewDecoder(bytes.NewReader(raw))
		dec.UseNumber()
		var rec map[string]any
		if err := dec.Decode(&rec); err != nil {
			return nil, fmt.Errorf("postgres target: decoding a row of %s: %w", tbl.name, err)
		}
		rec["id"] = rowID
		found = append(found, rec)
	}
	if err := rows.Err(); err != nil {
		return nil, classifyWhole(fmt.Errorf("postgres target: looking up %s in %s: %w", object, tbl.name, err))
	}
	return found, nil
}
