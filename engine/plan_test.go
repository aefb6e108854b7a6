package engine_test

import (
	"context"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/ferry-sync/ferry/engine"
	"github.com/ferry-sync/ferry/engine/project"
)

// A plan of a first sync says the children wait for the parents it syncs
// first (not that they would fail); a plan of an edit says what changes,
// field by field; RunMany does not start children of a failed parent.
func TestPlanAndRunMany(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := context.Background()
	b.exec(`INSERT INTO crm.companies (id, name, vat) VALUES (100, 'Acme', 'BE01')`)
	b.exec(`INSERT INTO crm.contacts (id, name, email, company_id) VALUES (500, 'Ann', 'ann@x', 100)`)

	plans, err := b.eng.Plan(ctx, engine.Selection{Names: []string{"contacts", "companies"}}, engine.PlanOptions{Samples: 3})
	require.NoError(t, err)
	require.Len(t, plans, 2)
	assert.Equal(t, "companies", plans[0].Sync, "parents first")
	assert.Equal(t, int64(1), plans[0].Counts.Inserted)
	assert.Equal(t, engine.Counts{Read: 1, Waiting: 1}, plans[1].Counts)
	assert.Equal(t, "waits for its parent companies id 100, which this plan syncs first", plans[1].Records[0].Reason)
	assert.Zero(t, b.target.Writes(), "a plan writes nothing")

	results, err := b.eng.RunMany(ctx, engine.Selection{}, engine.RunOptions{})
	require.NoError(t, err)
	require.Len(t, results, 2)
	assert.Equal(t, engine.RunSucceeded, results[1].Status)

	b.exec(`UPDATE crm.companies SET name = 'Acme Corp', _sdc_batched_at = now()`)
	plans, err = b.eng.Plan(ctx, engine.Selection{Names: []string{"companies"}}, engine.PlanOptions{Samples: 3})
	require.NoError(t, err)
	require.Len(t, plans[0].Records, 1)
	assert.Equal(t, []engine.FieldChange{{Field: "name", Old: "Acme", New: "Acme Corp"}}, plans[0].Records[0].Changes)

	b.target.AuthFail = true
	results, err = b.eng.RunMany(ctx, engine.Selection{}, engine.RunOptions{})
	require.NoError(t, err)
	assert.Equal(t, engine.RunFailed, results[0].Status)
	assert.Equal(t, engine.RunNotStarted, results[1].Status)
	assert.Equal(t, "not started: its parent companies failed", results[1].Error)
}

// A parent that fails before its run starts (its scope names a column that
// does not exist) does not let its children start either.
func TestRunManyParentFailingBeforeItsRun(t *testing.T) {
	t.Parallel()
	companies := companiesSync()
	companies.Mapping = []project.Field{{Source: "nam", Target: "name"}}
	b := setup(t, companies, contactsSync())
	results, err := b.eng.RunMany(context.Background(), engine.Selection{}, engine.RunOptions{})
	require.NoError(t, err)
	require.Len(t, results, 2)
	assert.Equal(t, engine.RunFailed, results[0].Status)
	assert.Contains(t, results[0].Error, `column "nam" is not in the scope`)
	assert.Equal(t, engine.RunNotStarted, results[1].Status)
}
