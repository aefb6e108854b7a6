package engine_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/ferry-sync/ferry/engine"
	"github.com/ferry-sync/ferry/engine/connector"
	"github.com/ferry-sync/ferry/engine/enginetest"
	"github.com/ferry-sync/ferry/engine/project"
	"github.com/ferry-sync/ferry/queries/dbtest"
)

// pairBundle is a two-way setup: a CRM (A) and an ERP (B), each with its
// ELT copy in the warehouse, refreshed from the application between runs
// as an ELT pipeline would, and the pair crm_to_erp / erp_to_crm.
type pairBundle struct {
	t        *testing.T
	db       *pgxpool.Pool
	crm, erp *enginetest.Memory
	eng      *engine.Engine
}

const pairWarehouseSQL = `
CREATE SCHEMA elt_crm;
CREATE SCHEMA elt_erp;
CREATE TABLE elt_crm.companies (id text PRIMARY KEY, name text, city text, updated_at timestamptz, _sdc_batched_at timestamptz NOT NULL);
CREATE TABLE elt_erp.companies (id text PRIMARY KEY, name text, city text, updated_at timestamptz, _sdc_batched_at timestamptz NOT NULL);
`

func pairSyncs(conflict project.Conflict) []*project.Sync {
	mapping := []project.Field{{Source: "name", Target: "name"}, {Source: "city", Target: "city"}}
	return []*project.Sync{
		{
			Name:    "crm_to_erp",
			Source:  project.Source{Table: "elt_crm.companies", BookmarkColumn: "_sdc_batched_at"},
			Target:  project.TargetRef{Connection: "erp", Object: "companies"},
			Mapping: mapping,
			TwoWay:  &project.TwoWay{With: "erp_to_crm", Conflict: conflict},
		},
		{
			Name:    "erp_to_crm",
			Source:  project.Source{Table: "elt_erp.companies", BookmarkColumn: "_sdc_batched_at"},
			Target:  project.TargetRef{Connection: "crm", Object: "companies"},
			Mapping: mapping,
		},
	}
}

func setupPair(t *testing.T, conflict project.Conflict, edit ...func(crmToERP, erpToCRM *project.Sync)) *pairBundle {
	t.Helper()
	db := dbtest.NewPool(t)
	_, err := db.Exec(context.Background(), pairWarehouseSQL)
	require.NoError(t, err)
	syncs := pairSyncs(conflict)
	for _, e := range edit {
		e(syncs[0], syncs[1])
	}
	p, err := project.New(nil, map[string]project.Connection{"crm": testConnection, "erp": testConnection}, syncs...)
	require.NoError(t, err)
	b := &pairBundle{t: t, db: db, crm: enginetest.NewMemory(), erp: enginetest.NewMemory()}
	b.crm.Stamp, b.erp.Stamp = "updated_at", "updated_at"
	open := func(_ context.Context, c project.Connection) (connector.Target, error) {
		if c.Name == "crm" {
			return b.crm, nil
		}
		return b.erp, nil
	}
	b.eng = engine.New(db, engine.StaticProject(p), engine.Options{Open: open})
	return b
}

// refresh loads an application's records into its ELT copy, the whole
// table re-stamped, as a full-refresh pipeline does.
func (b *pairBundle) refresh(app string) {
	b.t.Helper()
	m := b.crm
	if app == "erp" {
		m = b.erp
	}
	ctx := context.Background()
	table := "elt_" + app + ".companies"
	_, err := b.db.Exec(ctx, "TRUNCATE "+table)
	require.NoError(b.t, err)
	for id, rec := range m.Records("companies") {
		_, err := b.db.Exec(ctx, "INSERT INTO "+table+" (id, name, city, updated_at, _sdc_batched_at) VALUES ($1, $2, $3, $4, now())",
			id, rec["name"], rec["city"], rec["updated_at"])
		require.NoError(b.t, err)
	}
}

// round runs crm_to_erp, refreshes the ERP's copy, runs erp_to_crm and
// refreshes the CRM's copy (or the other way round), and returns how many
// records each application was asked to write.
func (b *pairBundle) round(erpFirst bool) (toCRM, toERP int) {
	b.t.Helper()
	crm0, erp0 := b.crm.Writes(), b.erp.Writes()
	steps := []struct{ sync, refresh string }{{"crm_to_erp", "erp"}, {"erp_to_crm", "crm"}}
	if erpFirst {
		steps[0], steps[1] = steps[1], steps[0]
	}
	for _, st := range steps {
		res, err := b.eng.Run(context.Background(), st.sync, engine.RunOptions{})
		require.NoError(b.t, err)
		require.Equal(b.t, engine.RunSucceeded, res.Status, "%s: %s", st.sync, res.Error)
		b.refresh(st.refresh)
	}
	return b.crm.Writes() - crm0, b.erp.Writes() - erp0
}

// inStep checks that every record of each application has exactly one
// counterpart on the other side, linked both ways, with the same fields.
func (b *pairBundle) inStep() {
	b.t.Helper()
	crm, erp := b.crm.Records("companies"), b.erp.Records("companies")
	require.Len(b.t, erp, len(crm), "as many companies on each side")
	rows, err := b.db.Query(context.Background(), `
		SELECT a.source_id, a.target_id, coalesce(e.target_id, '') FROM link_tables.crm_to_erp a
		LEFT JOIN link_tables.erp_to_crm e ON e.source_id = a.target_id`)
	require.NoError(b.t, err)
	n := 0
	for rows.Next() {
		var crmID, erpID, back string
		require.NoError(b.t, rows.Scan(&crmID, &erpID, &back))
		n++
		assert.Equal(b.t, crmID, back, "erp_to_crm links ERP %s back to CRM %s", erpID, crmID)
		c, e := crm[crmID], erp[erpID]
		require.NotNil(b.t, c, "CRM %s", crmID)
		require.NotNil(b.t, e, "ERP %s", erpID)
		assert.Equal(b.t, c["name"], e["name"], "CRM %s / ERP %s", crmID, erpID)
		assert.Equal(b.t, c["city"], e["city"], "CRM %s / ERP %s", crmID, erpID)
	}
	require.NoError(b.t, rows.Err())
	assert.Equal(b.t, len(crm), n, "every CRM company is linked")
}

func (b *pairBundle) conflict(sync, id string) string {
	b.t.Helper()
	var note *string
	require.NoError(b.t, b.db.QueryRow(context.Background(), fmt.Sprintf(`SELECT conflict FROM link_tables.%s WHERE source_id = $1`, sync), id).Scan(&note))
	if note == nil {
		return ""
	}
	return *note
}

// syncedCompanies creates n companies in the CRM and runs two rounds: both
// sides hold them, linked, and the pair is at rest.
func (b *pairBundle) syncedCompanies(n int) {
	b.t.Helper()
	for i := 1; i <= n; i++ {
		b.crm.Put("companies", map[string]any{"name": fmt.Sprintf("CRM %d", i), "city": "Ghent"})
	}
	b.refresh("crm")
	b.refresh("erp")
	b.round(false)
	b.round(false)
}

// counterpartInERP is the ERP id linked to a CRM id.
func (b *pairBundle) counterpartInERP(crmID string) string {
	b.t.Helper()
	var id string
	require.NoError(b.t, b.db.QueryRow(context.Background(), `SELECT target_id FROM link_tables.crm_to_erp WHERE source_id = $1`, crmID).Scan(&id))
	return id
}

// Alternating the two directions writes each record once, then nothing: a
// value one direction wrote comes back through the other side's ELT copy
// and is not written back; one person's edit is one write, and not echoed.
func TestTwoWaySyncWritesNoEchoes(t *testing.T) {
	t.Parallel()
	b := setupPair(t, project.Conflict{Wins: "crm"})
	for i := 1; i <= 5; i++ {
		b.crm.Put("companies", map[string]any{"name": fmt.Sprintf("CRM %d", i), "city": "Ghent"})
	}
	for i := 1; i <= 3; i++ {
		b.erp.Put("companies", map[string]any{"name": fmt.Sprintf("ERP %d", i), "city": "Lyon"})
	}
	b.refresh("crm")
	b.refresh("erp")

	toCRM, toERP := b.round(false)
	assert.Equal(t, 3, toCRM, "the ERP's 3 companies are created in the CRM")
	assert.Equal(t, 5, toERP, "the CRM's 5 companies are created in the ERP")
	b.inStep()

	for i := 2; i <= 5; i++ {
		toCRM, toERP := b.round(i%2 == 0)
		assert.Zero(t, toCRM, "round %d: nothing written to the CRM", i)
		assert.Zero(t, toERP, "round %d: nothing written to the ERP", i)
	}
	b.inStep()
	assert.Len(t, b.crm.Records("companies"), 8, "nothing created twice")

	// One person edits a company in the CRM: one write to the ERP, none back.
	b.crm.Edit("companies", "2", map[string]any{"city": "Bruges"})
	b.refresh("crm")
	toCRM, toERP = b.round(false)
	assert.Equal(t, 0, toCRM)
	assert.Equal(t, 1, toERP)
	toCRM, toERP = b.round(true)
	assert.Zero(t, toCRM+toERP)
	assert.Equal(t, "Bruges", b.erp.Records("companies")[b.counterpartInERP("2")]["city"])

	// The same from the ERP's side.
	erpID := b.counterpartInERP("3")
	b.erp.Edit("companies", erpID, map[string]any{"name": "CRM 3 (renamed in the ERP)"})
	b.refresh("erp")
	toCRM, toERP = b.round(false)
	assert.Equal(t, 1, toCRM)
	assert.Equal(t, 0, toERP)
	toCRM, toERP = b.round(false)
	assert.Zero(t, toCRM+toERP)
	assert.Equal(t, "CRM 3 (renamed in the ERP)", b.crm.Records("companies")["3"]["name"])
	b.inStep()
}

// A record both sides changed is settled by the pair's rule, whichever
// direction runs first: one write, the winner's value on both sides, the
// conflict on the loser's link row.
func TestTwoWayConflictIsSettledByTheRule(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name     string
		conflict project.Conflict
		erpFirst bool
		want     string
	}{
		{"crm wins", project.Conflict{Wins: "crm"}, false, "Antwerp"},
		{"crm wins, erp runs first", project.Conflict{Wins: "crm"}, true, "Antwerp"},
		{"erp wins", project.Conflict{Wins: "erp"}, false, "Namur"},
		{"erp wins, erp runs first", project.Conflict{Wins: "erp_to_crm"}, true, "Namur"},
		{"newer wins (the erp's)", project.Conflict{Wins: "crm", Newer: "updated_at"}, false, "Namur"},
		{"newer wins (the erp's), erp runs first", project.Conflict{Wins: "crm", Newer: "updated_at"}, true, "Namur"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			b := setupPair(t, tc.conflict)
			b.syncedCompanies(3)

			erpID := b.counterpartInERP("2")
			b.crm.Edit("companies", "2", map[string]any{"city": "Antwerp"})
			time.Sleep(20 * time.Millisecond) // the ERP's edit is the later one
			b.erp.Edit("companies", erpID, map[string]any{"city": "Namur"})
			b.refresh("crm")
			b.refresh("erp")

			toCRM, toERP := b.round(tc.erpFirst)
			assert.Equal(t, 1, toCRM+toERP, "one write settles it")
			toCRM, toERP = b.round(!tc.erpFirst)
			assert.Zero(t, toCRM+toERP, "and nothing follows")
			assert.Equal(t, tc.want, b.crm.Records("companies")["2"]["city"])
			assert.Equal(t, tc.want, b.erp.Records("companies")[erpID]["city"])
			notes := b.conflict("crm_to_erp", "2") + b.conflict("erp_to_crm", erpID)
			assert.Contains(t, notes, "both sides changed since the last sync")
			b.inStep()
		})
	}
}

// The direction that lost a conflict may run before its copy of the other
// side is refreshed: it reads its side's losing edit, and must not write it
// over the winner's value.
func TestTwoWayLoserRunningBeforeTheRefreshWritesNothing(t *testing.T) {
	t.Parallel()
	b := setupPair(t, project.Conflict{Wins: "crm"})
	b.syncedCompanies(3)

	erpID := b.counterpartInERP("2")
	b.crm.Edit("companies", "2", map[string]any{"city": "Antwerp"})
	b.erp.Edit("companies", erpID, map[string]any{"city": "Namur"})
	b.refresh("crm")
	b.refresh("erp")
	writes := b.crm.Writes() + b.erp.Writes()
	for _, sync := range []string{"crm_to_erp", "erp_to_crm"} { // no refresh between them
		res, err := b.eng.Run(context.Background(), sync, engine.RunOptions{})
		require.NoError(t, err)
		require.Equal(t, engine.RunSucceeded, res.Status, res.Error)
	}
	assert.Equal(t, 1, b.crm.Writes()+b.erp.Writes()-writes, "the CRM's value is written to the ERP, and the ERP's stale copy is not written back")
	b.refresh("crm")
	b.refresh("erp")
	toCRM, toERP := b.round(true)
	assert.Zero(t, toCRM+toERP)
	assert.Equal(t, "Antwerp", b.crm.Records("companies")["2"]["city"])
	assert.Equal(t, "Antwerp", b.erp.Records("companies")[erpID]["city"])
}

// While one direction has inserts whose outcome is unknown, the other
// creates nothing: a record it would create may be one of them, come back
// through its copy before the link was known.
func TestTwoWayWaitsForThePartnersPendingInserts(t *testing.T) {
	t.Parallel()
	b := setupPair(t, project.Conflict{Wins: "crm"})
	b.crm.Put("companies", map[string]any{"name": "CRM 1", "city": "Ghent"})
	b.refresh("crm")
	b.refresh("erp")
	b.round(false)

	// crm_to_erp's insert of CRM 2 reached the ERP, but its answer was
	// lost: the link row is pending, and the ERP's copy already has it.
	b.crm.Put("companies", map[string]any{"name": "CRM 2", "city": "Ghent"})
	erpID := b.erp.Put("companies", map[string]any{"name": "CRM 2", "city": "Ghent"})
	_, err := b.db.Exec(context.Background(), `INSERT INTO link_tables.crm_to_erp (source_id, status, error_class) VALUES ('2', 'pending', 'pending')`)
	require.NoError(t, err)
	b.refresh("crm")
	b.refresh("erp")

	res, err := b.eng.Run(context.Background(), "erp_to_crm", engine.RunOptions{})
	require.NoError(t, err)
	assert.Zero(t, res.Counts.Inserted, "ERP %s is not created in the CRM", erpID)
	assert.Contains(t, b.linkError(t, "erp_to_crm", erpID), "crm_to_erp (the other direction) has inserts whose outcome is unknown (1)")
	assert.Len(t, b.crm.Records("companies"), 2)
}

func (b *pairBundle) linkError(t *testing.T, sync, id string) string {
	t.Helper()
	var msg *string
	require.NoError(t, b.db.QueryRow(context.Background(), fmt.Sprintf(`SELECT error FROM link_tables.%s WHERE source_id = $1`, sync), id).Scan(&msg))
	if msg == nil {
		return ""
	}
	return *msg
}

// A pair whose copy has no column for any field the sync writes could not
// tell an echo from a change: the run refuses, saying what to rename.
func TestTwoWayRefusesACopyItCannotCompareWith(t *testing.T) {
	t.Parallel()
	b := setupPair(t, project.Conflict{Wins: "crm"}, func(_, erpToCRM *project.Sync) {
		erpToCRM.Mapping = []project.Field{{Source: "nm", Target: "name"}, {Source: "town", Target: "city"}}
	})
	_, err := b.db.Exec(context.Background(), `ALTER TABLE elt_erp.companies RENAME COLUMN name TO nm; ALTER TABLE elt_erp.companies RENAME COLUMN city TO town`)
	require.NoError(t, err)
	_, err = b.eng.Run(context.Background(), "crm_to_erp", engine.RunOptions{})
	require.Error(t, err)
	assert.Contains(t, err.Error(), "none of the fields it writes (name, city) is a column of erp_to_crm's scope")
}
