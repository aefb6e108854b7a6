package engine_test

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/ferry-sync/ferry/engine"
	"github.com/ferry-sync/ferry/engine/project"
)

// typeSync maps every column of crm.types by name.
func typeSync() *project.Sync {
	return &project.Sync{Name: "types", Source: project.Source{Table: "crm.types"}, Target: project.TargetRef{Connection: "erp", Object: "things"}}
}

// Values of types Ferry reads natively keep their meaning; every other type
// is sent as PostgreSQL's text form; nested arrays stay nested.
func TestScopeValuesOfEveryKind(t *testing.T) {
	t.Parallel()
	cases := []struct {
		expr string
		want any
	}{
		{`interval '1 day 02:00:00'`, "1 day 02:00:00"},
		{`'12.5'::money`, json.Number("12.50")},
		{`int4range(1, 5)`, "[1,5)"},
		{`ARRAY[[1, 2], [3, 4]]`, []any{[]any{int64(1), int64(2)}, []any{int64(3), int64(4)}}},
		{`ARRAY[[[1]], [[2]]]`, []any{[]any{[]any{int64(1)}}, []any{[]any{int64(2)}}}},
		{`ARRAY[[1.5, 2], [3, 4]]::numeric[]`, []any{[]any{json.Number("1.5"), json.Number("2")}, []any{json.Number("3"), json.Number("4")}}},
		{`'{}'::int[]`, []any{}},
		{`ARRAY['2026-01-02'::date, NULL]`, []any{"2026-01-02", nil}},
		{`ARRAY['{"a": 12345678901234567890}'::jsonb]`, []any{map[string]any{"a": json.Number("12345678901234567890")}}},
		{`ARRAY[interval '1 day']`, []any{"1 day"}},
		{`B'101'`, "101"},
		{`'1.2.3.4'::inet`, "1.2.3.4/32"},
		{`'10.0.0.0/8'::cidr`, "10.0.0.0/8"},
		{`'08:00:2b:01:02:03'::macaddr`, "08:00:2b:01:02:03"},
		{`'<a>x</a>'::xml`, "<a>x</a>"},
		{`'a fat cat'::tsvector`, "'a' 'cat' 'fat'"},
		{`ROW(1, 'x')::crm.pair`, map[string]any{"a": json.Number("1"), "b": "x"}},
		{`ARRAY[ROW(1, 'x')::crm.pair]`, []any{map[string]any{"a": json.Number("1"), "b": "x"}}},
		{`'happy'::crm.mood`, "happy"},
		{`ARRAY['happy'::crm.mood]`, []any{"happy"}},
		{`5::crm.posint`, int64(5)},
		{`'12:34'::time`, "12:34:00"},
		{`'12:34+02'::timetz`, "12:34:00+02"},
		{`point(1, 2)`, "(1,2)"},
		{`'x'::"char"`, "x"},
		{`'infinity'::timestamptz`, "infinity"},
		{`'-infinity'::date`, "-infinity"},
		{`'NaN'::numeric`, "NaN"},
		{`'0/16B3748'::pg_lsn`, "0/16B3748"},
		{`'{1,2}'::int[]`, []any{int64(1), int64(2)}},
		{`'2026-01-02 03:04:05.123456+00'::timestamptz`, time.Date(2026, 1, 2, 3, 4, 5, 123456000, time.UTC)},
	}
	b := setup(t, typeSync())
	b.exec(`CREATE TYPE crm.mood AS ENUM ('sad', 'happy');
		CREATE TYPE crm.pair AS (a int, b text);
		CREATE DOMAIN crm.posint AS int CHECK (VALUE > 0)`)
	var cols, vals []string
	for i, c := range cases {
		cols = append(cols, fmt.Sprintf("c%02d", i))
		vals = append(vals, c.expr+" AS "+cols[i])
	}
	b.exec(`CREATE TABLE crm.types AS SELECT 1 AS id, now() AS _sdc_batched_at, ` + strings.Join(vals, ", "))
	res := b.run("types")
	require.Equal(t, int64(1), res.Counts.Inserted, "the record syncs: %v", b.links("types"))
	var got map[string]any
	for _, r := range b.target.Records("things") {
		got = r
	}
	for i, c := range cases {
		assert.Equal(t, c.want, got[cols[i]], "%s", c.expr)
	}
}

// One value Ferry cannot read (JSON nested deeper than a decoder allows)
// fails its record, naming the column; the others sync, and so does the
// next run.
func TestUnreadableValueFailsItsRecordOnly(t *testing.T) {
	t.Parallel()
	b := setup(t, typeSync())
	deep := strings.Repeat("[", 10001) + strings.Repeat("]", 10001)
	b.exec(`CREATE TABLE crm.types (id int PRIMARY KEY, doc jsonb, _sdc_batched_at timestamptz DEFAULT now())`)
	b.exec(`INSERT INTO crm.types (id, doc) SELECT g, '{"n": 1}' FROM generate_series(1, 5) g`)
	b.exec(`UPDATE crm.types SET doc = $1::text::jsonb WHERE id = 3`, deep)
	res := b.run("types")
	assert.Equal(t, int64(4), res.Counts.Inserted)
	assert.Equal(t, int64(1), res.Counts.Failed)
	assert.Contains(t, b.linkError("types", "3"), "column doc (jsonb)")
	assert.Contains(t, b.linkError("types", "3"), "source id 3")
	b.exec(`INSERT INTO crm.types (id, doc) VALUES (6, '[1]')`)
	res = b.run("types")
	assert.Equal(t, int64(1), res.Counts.Inserted)
}

// Every type in pg_type that a scope can select either converts or is sent
// as its text form: a sync over one column of each never fails its run and
// sends only JSON-shaped values.
func TestEveryCatalogTypeSyncs(t *testing.T) {
	t.Parallel()
	b := setup(t, typeSync())
	ctx := context.Background()
	rows, err := b.db.Query(ctx, `
		SELECT t.oid::regtype::text FROM pg_type t
		WHERE t.typtype IN ('b', 'e', 'r', 'm', 'd', 'c') AND t.typisdefined
		  AND t.typnamespace = 'pg_catalog'::regnamespace
		  AND (t.typrelid = 0 OR t.typtype = 'c' AND false)
		  AND t.typname NOT LIKE 'pg\_%' ORDER BY 1`)
	require.NoError(t, err)
	types, err := pgx.CollectRows(rows, pgx.RowTo[string])
	require.NoError(t, err)
	require.Greater(t, len(types), 80)
	// A value for each type: the first of these literals it accepts.
	literals := []string{"1", "t", "a", "2026-01-02 03:04:05", "[1,2)", "{1,2}", "(1,2)", "<1,2,3>", "1 day", "{\"a\":1}", "0/1", "08:00:2b:01:02:03", "1.2.3.4", "x"}
	var cols []string
	for i, typ := range types {
		expr := "NULL::" + typ
		for _, lit := range literals {
			tx, err := b.db.Begin(ctx)
			require.NoError(t, err)
			_, err = tx.Exec(ctx, "SELECT "+engineQuote(lit)+"::"+typ)
			_ = tx.Rollback(ctx)
			if err == nil {
				expr = engineQuote(lit) + "::" + typ
				break
			}
		}
		cols = append(cols, fmt.Sprintf("%s AS c%03d, ARRAY[%s] AS a%03d", expr, i, expr, i))
	}
	// A query, not a table: a scope may select types no table column can have.
	s := typeSync()
	s.Source = project.Source{Query: `SELECT 1 AS id, now() AS _sdc_batched_at, ` + strings.Join(cols, ", ")}
	p, err := project.New(nil, map[string]project.Connection{"erp": testConnection}, s)
	require.NoError(t, err)
	b.eng = engine.New(b.db, engine.StaticProject(p), engine.Options{Open: only(b.target)})
	res := b.run("types")
	require.Equal(t, int64(1), res.Counts.Inserted, "link: %v", b.linkError("types", "1"))
	for _, r := range b.target.Records("things") {
		_, err := json.Marshal(r)
		require.NoError(t, err)
		assert.Len(t, r, 2*len(types))
	}
}

func engineQuote(s string) string { return "'" + strings.ReplaceAll(s, "'", "''") + "'" }
