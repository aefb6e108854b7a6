package engine_test

import (
	"context"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/ferry-sync/ferry/engine"
	"github.com/ferry-sync/ferry/engine/project"
)

// Records that leave the scope are deleted from the target, within the
// guards: never more than max_share of the linked records in a run, never
// on a scope that returns nothing; a plan says what it would delete; a
// record that comes back is inserted again.
func TestDeletesRecordsThatLeftTheScope(t *testing.T) {
	t.Parallel()
	s := companiesSync()
	s.Delete = &project.DeletePolicy{MaxShare: 0.2}
	b := setup(t, s)
	b.exec(`INSERT INTO crm.companies (id, name, vat) SELECT g, 'C' || g, 'V' || g FROM generate_series(1, 20) g`)
	b.run("companies")
	require.Len(t, b.target.Records("partners"), 20)

	b.exec(`DELETE FROM crm.companies WHERE id IN (1, 2)`)
	plan, err := b.eng.Run(context.Background(), "companies", engine.RunOptions{DryRun: true})
	require.NoError(t, err)
	assert.EqualValues(t, 2, plan.Counts.Deleted, "the plan says what it would delete")
	require.Len(t, b.target.Records("partners"), 20, "and deletes nothing")

	res := b.run("companies")
	assert.EqualValues(t, 2, res.Counts.Deleted)
	assert.Len(t, b.target.Records("partners"), 18)
	links := b.links("companies")
	assert.Regexp(t, `^deleted:\d+$`, links["1"], "the link row keeps the target id and says deleted")
	var deleted int64
	require.NoError(t, b.db.QueryRow(context.Background(), `SELECT deleted FROM ferry.runs WHERE id = $1`, res.RunID).Scan(&deleted))
	assert.EqualValues(t, 2, deleted)

	// 5 of 18 (28%) is more than max_share: none is deleted.
	b.exec(`DELETE FROM crm.companies WHERE id BETWEEN 3 AND 7`)
	res = b.run("companies")
	assert.Equal(t, engine.RunStopped, res.Status)
	assert.Contains(t, res.Error, "deletes refused: 5 of the 18 linked records left the scope (more than delete.max_share, 20%)")
	assert.Len(t, b.target.Records("partners"), 18)

	// A scope that returns nothing deletes nothing, whatever the share.
	s.Delete.MaxShare = 1
	b.exec(`DELETE FROM crm.companies`)
	res = b.run("companies")
	assert.Equal(t, engine.RunStopped, res.Status)
	assert.Contains(t, res.Error, "the scope returned no rows")
	assert.Len(t, b.target.Records("partners"), 18)

	// A deleted record that comes back is inserted again.
	b.exec(`INSERT INTO crm.companies (id, name, vat) SELECT g, 'C' || g, 'V' || g FROM generate_series(1, 20) g`)
	res = b.run("companies")
	assert.EqualValues(t, 2, res.Counts.Inserted, "ids 1 and 2 come back")
	assert.Len(t, b.target.Records("partners"), 20)
	assert.Regexp(t, `^success:\d+$`, b.links("companies")["1"])
}

// A delete flag archives the target record (mode archive) instead of
// deleting it, and the flagged record is not written.
func TestFlaggedRecordsAreArchived(t *testing.T) {
	t.Parallel()
	s := companiesSync()
	s.Delete = &project.DeletePolicy{Flag: "deleted", Mode: project.DeleteModeArchive, Archive: map[string]any{"active": false}, MaxShare: 1}
	b := setup(t, s)
	b.exec(`ALTER TABLE crm.companies ADD COLUMN deleted boolean NOT NULL DEFAULT false`)
	b.exec(`INSERT INTO crm.companies (id, name, vat) SELECT g, 'C' || g, 'V' || g FROM generate_series(1, 5) g`)
	b.run("companies")
	b.exec(`UPDATE crm.companies SET deleted = true, name = 'gone', _sdc_batched_at = now() WHERE id = 3`)
	res := b.run("companies")
	assert.EqualValues(t, 1, res.Counts.Deleted)
	assert.Zero(t, res.Counts.Updated, "the flagged record is not written")
	links := b.links("companies")
	id3 := links["3"][len("deleted:"):]
	rec := b.target.Records("partners")[id3]
	assert.Equal(t, false, rec["active"], "archived")
	assert.Equal(t, "C3", rec["name"], "its other fields as they were")
	assert.Zero(t, b.target.Deletes(), "archived, not deleted")

	// Unflagged again: updated, through the mapping.
	b.exec(`UPDATE crm.companies SET deleted = false, _sdc_batched_at = now() WHERE id = 3`)
	res = b.run("companies")
	assert.EqualValues(t, 1, res.Counts.Updated)
	assert.Equal(t, "gone", b.target.Records("partners")[id3]["name"])
}

// Rollback deletes what the sync inserted, never a record it was given (a
// seeded link row), and the run row counts it.
func TestRollbackDeletesOnlyWhatTheSyncInserted(t *testing.T) {
	t.Parallel()
	b := setup(t, companiesSync())
	given := b.target.Put("partners", map[string]any{"name": "Old", "vat": "V1"})
	b.exec(`INSERT INTO crm.companies (id, name, vat) SELECT g, 'C' || g, 'V' || g FROM generate_series(1, 5) g`)
	_, err := b.eng.LinkInit(context.Background(), "companies")
	require.NoError(t, err)
	b.exec(`INSERT INTO link_tables.companies (source_id, target_id) VALUES (1, $1)`, given)
	b.run("companies")
	require.Len(t, b.target.Records("partners"), 5)

	dry, err := b.eng.Rollback(context.Background(), "companies", engine.RollbackOptions{DryRun: true})
	require.NoError(t, err)
	assert.EqualValues(t, 4, dry.Counts.Deleted)
	require.Len(t, b.target.Records("partners"), 5, "a dry rollback deletes nothing")

	res, err := b.eng.Rollback(context.Background(), "companies", engine.RollbackOptions{})
	require.NoError(t, err)
	assert.EqualValues(t, 4, res.Counts.Deleted)
	assert.Equal(t, engine.RunSucceeded, res.Status)
	recs := b.target.Records("partners")
	require.Len(t, recs, 1)
	assert.Equal(t, "C1", recs[given]["name"], "the record the sync was given stays")
	assert.Regexp(t, `^deleted:\d+$`, b.links("companies")["2"])
}
