package engine_test

import (
	"context"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/ferry-sync/ferry/engine"
)

// Records that already exist in the target are linked by a seed query
// (matched on VAT through the target's copy in the warehouse); ambiguous
// pairs are left out and said; the next run updates the linked records
// and inserts the rest: nothing is duplicated.
func TestLinkInitAndSeed(t *testing.T) {
	t.Parallel()
	b := setup(t, companiesSync())
	ctx := context.Background()
	acme := b.target.Put("partners", map[string]any{"name": "ACME (typed by hand)", "vat": "BE01"})
	globex1 := b.target.Put("partners", map[string]any{"name": "Globex", "vat": "BE02"})
	globex2 := b.target.Put("partners", map[string]any{"name": "Globex again", "vat": "BE02"})
	b.exec(`CREATE SCHEMA erp_elt; CREATE TABLE erp_elt.partners (id text, vat text)`)
	b.exec(`INSERT INTO erp_elt.partners VALUES ($1, 'BE01'), ($2, 'BE02'), ($3, 'BE02')`, acme, globex1, globex2)
	b.exec(`INSERT INTO crm.companies (id, name, vat, _sdc_batched_at) VALUES (1, 'Acme', 'BE01', now() - interval '2 days'), (2, 'Globex', 'BE02', now()), (3, 'Initech', 'BE03', now())`)

	created, err := b.eng.LinkInit(ctx, "companies")
	require.NoError(t, err)
	assert.True(t, created)
	created, err = b.eng.LinkInit(ctx, "companies")
	require.NoError(t, err)
	assert.False(t, created, "it is there already")

	const query = `SELECT c.id AS source_id, p.id AS target_id FROM crm.companies c JOIN erp_elt.partners p ON p.vat = c.vat`
	rep, err := b.eng.LinkSeed(ctx, "companies", query, true)
	require.NoError(t, err)
	assert.Equal(t, engine.SeedReport{Sync: "companies", Pairs: 3, Matched: 1, Ambiguous: 2, Unmatched: 2,
		AmbiguousExamples: rep.AmbiguousExamples}, *rep, "a dry run counts and writes nothing")
	assert.Len(t, rep.AmbiguousExamples, 2)
	assert.Empty(t, b.links("companies"))

	rep, err = b.eng.LinkSeed(ctx, "companies", query, false)
	require.NoError(t, err)
	assert.Equal(t, int64(1), rep.Written)
	assert.Equal(t, map[string]string{"1": "matched:" + acme}, b.links("companies"))

	res := b.run("companies")
	assert.Equal(t, int64(1), res.Counts.Updated, "the seeded record is updated")
	assert.Equal(t, int64(2), res.Counts.Inserted, "the others are inserted")
	assert.Equal(t, "Acme", b.target.Records("partners")[acme]["name"])
	assert.Len(t, b.target.Records("partners"), 5)

	rep, err = b.eng.LinkSeed(ctx, "companies", query, true)
	require.NoError(t, err)
	assert.Equal(t, int64(3), rep.AlreadyLinked, "every pair whose source is linked now")
}
