package engine_test

import (
	"fmt"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/ferry-sync/ferry/engine"
	"github.com/ferry-sync/ferry/engine/connector/crmtest"
)

// A batch whose answer was lost is one event, not a hundred failures: its
// records are pending (settled by the next run), and the error budget
// (45 of the last 50 failing the same way) does not stop the run over it.
func TestALostBatchAnswerDoesNotSpendTheErrorBudget(t *testing.T) {
	t.Parallel()
	b := setupCRMEdit(t, crmContactsSync(), crmtest.Options{Token: "secret"}, func(conn map[string]any) {
		contacts := conn["objects"].(map[string]any)["contacts"].(map[string]any)
		contacts["batch"] = map[string]any{"size": 100,
			"insert": map[string]any{"path": "/contacts/batch/create", "body": map[string]any{"inputs": "{{items}}"}}}
	})
	b.exec(`INSERT INTO crm.contacts (id, name, email) SELECT g, 'Person ' || g, 'p' || g || '@example.com' FROM generate_series(1, 300) g`)
	b.srv.HangNext(1) // the first batch is applied, and its answer never comes
	res := b.run("contacts")
	assert.Equal(t, engine.RunSucceededWithErrors, res.Status, res.Error)
	assert.EqualValues(t, 200, res.Counts.Inserted, "the other batches go on")
	assert.EqualValues(t, 100, res.Counts.Failed)
	assert.Equal(t, 300, b.srv.Count("contacts"), "the lost batch was applied")

	res = b.run("contacts")
	assert.Equal(t, engine.RunSucceeded, res.Status, res.Error)
	assert.EqualValues(t, 100, res.Counts.Updated, "the pending records are found by match_on and linked")
	for email, n := range b.emails() {
		assert.Equal(t, 1, n, "%s", email)
	}
	links := b.links("contacts")
	require.Len(t, links, 300)
	for id, l := range links {
		assert.Regexp(t, `^success:`, l, fmt.Sprintf("source id %s", id))
	}
}
