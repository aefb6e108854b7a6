package engine_test

import (
	"context"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/ferry-sync/ferry/engine"
	"github.com/ferry-sync/ferry/engine/connector"
	"github.com/ferry-sync/ferry/engine/enginetest"
	"github.com/ferry-sync/ferry/engine/project"
)

func noReconcile(t *testing.T, s *project.Sync) *project.Sync {
	s.Source.ReconcileEvery = mustDuration(t, "0s")
	return s
}

// A NULL-stamped row has no place behind the bookmark: every run reads it
// (the warehouse compares its hash), also when the window is unchanged, so
// an edit of it alone is synced.
func TestWindowKeepsReadingNullStampedRows(t *testing.T) {
	t.Parallel()
	b := setup(t, noReconcile(t, companiesSync()))
	b.exec(`ALTER TABLE crm.companies ALTER COLUMN _sdc_batched_at DROP NOT NULL`)
	b.exec(`INSERT INTO crm.companies (id, name, _sdc_batched_at) VALUES (1, 'stamped', now() - interval '1 hour'), (2, 'unstamped', NULL)`)
	require.Equal(t, int64(2), b.run("companies").Counts.Inserted)
	b.run("companies")
	b.exec(`UPDATE crm.companies SET name = 'unstamped, edited' WHERE id = 2`)
	for i := 0; i < 3; i++ {
		b.run("companies")
	}
	names := map[string]bool{}
	for _, r := range b.target.Records("partners") {
		names[r["name"].(string)] = true
	}
	assert.True(t, names["unstamped, edited"], "edit of a NULL-stamped row never synced: %v", names)
}

// A date stamps every edit of a day alike: rows tied with the bookmark are
// read by every run, or a second edit on the bookmark's day, keeping its
// stamp, would be behind the bookmark once the next day arrives.
func TestWindowKeepsReadingTiesOfADateBookmark(t *testing.T) {
	t.Parallel()
	s := noReconcile(t, companiesSync())
	s.Source.Table = "crm.daily"
	s.Source.BookmarkColumn = "day"
	b := setup(t, s)
	b.exec(`CREATE TABLE crm.daily (id bigint PRIMARY KEY, name text, vat text, day date NOT NULL)`)
	b.exec(`INSERT INTO crm.daily VALUES (1, 'a', 'V1', '2026-06-01'), (2, 'b', 'V2', '2026-06-01')`)
	require.Equal(t, int64(2), b.run("companies").Counts.Inserted)
	require.True(t, b.run("companies").WindowUnchanged)
	// Edited later the same day: the day stays 2026-06-01.
	b.exec(`UPDATE crm.daily SET name = 'a, edited' WHERE id = 1`)
	res := b.run("companies")
	assert.Equal(t, int64(1), res.Counts.Updated, "same-day edit at the bookmark (a tie, read by >=)")
	// Next day, another row: the bookmark moves on.
	b.exec(`INSERT INTO crm.daily VALUES (3, 'c', 'V3', '2026-06-02')`)
	b.run("companies")
	names := map[string]bool{}
	for _, r := range b.target.Records("partners") {
		names[r["name"].(string)] = true
	}
	assert.True(t, names["a, edited"], "never synced: %v", names)
}

// A scope query is not fingerprinted: its window is read by every run.
func TestWindowOfAScopeQueryIsReadEveryRun(t *testing.T) {
	t.Parallel()
	s := noReconcile(t, companiesSync())
	s.Source.Table = ""
	s.Source.Query = "SELECT id, name, vat, _sdc_batched_at FROM crm.companies"
	b := setup(t, s)
	b.exec(`INSERT INTO crm.companies (id, name, vat, _sdc_batched_at) SELECT g, 'C' || g, 'V' || g, timestamptz '2026-06-01 00:00:00+00' FROM generate_series(1, 5) g`)
	b.run("companies")
	b.exec(`UPDATE crm.companies SET name = 'edited' WHERE id = 2`)
	res := b.run("companies")
	assert.False(t, res.WindowUnchanged)
	assert.Equal(t, int64(1), res.Counts.Updated, "an edit that kept its stamp, in the window: read")
}

// throttled answers 429 (past the retry budget) for one record, per item,
// without failing the call: the record is "not sent".
type throttled struct {
	*enginetest.Memory
	vat string
}

func (th *throttled) Write(ctx context.Context, object string, changes []connector.Change) ([]connector.Result, error) {
	var pass []connector.Change
	var at []int
	results := make([]connector.Result, len(changes))
	for i, c := range changes {
		if th.vat != "" && c.Payload["vat"] == th.vat {
			results[i] = connector.Result{Done: true, Err: &connector.Error{Class: connector.RateLimited, Status: 429, Message: "slow down"}}
			continue
		}
		pass = append(pass, c)
		at = append(at, i)
	}
	res, err := th.Memory.Write(ctx, object, pass)
	for k, i := range at {
		if k < len(res) {
			results[i] = res[k]
		}
	}
	return results, err
}

// A record the target would not take for now (429 past the retry budget,
// on that record only) is not sent, and the run goes on: the bookmark must
// not move past it, neither with the pages after it nor with the tail, and
// the window behind the bookmark must not be noted as handled.
func TestARecordNotSentHoldsTheBookmark(t *testing.T) {
	t.Parallel()
	s := noReconcile(t, companiesSync())
	b := setup(t, s)
	th := &throttled{Memory: b.target, vat: "V3"}
	eng := engine.New(b.db, engine.StaticProject(b.proj), engine.Options{Open: only(th)})
	b.exec(`INSERT INTO crm.companies (id, name, vat, _sdc_batched_at) SELECT g, 'C' || g, 'V' || g, timestamptz '2026-06-01 00:00:00+00' FROM generate_series(1, 5) g`)
	res, err := eng.Run(context.Background(), "companies", engine.RunOptions{})
	require.NoError(t, err)
	t.Logf("run 1: %+v status=%s err=%q", res.Counts, res.Status, res.Error)
	th.vat = ""
	for i := 0; i < 3; i++ {
		res, err = eng.Run(context.Background(), "companies", engine.RunOptions{})
		require.NoError(t, err)
		t.Logf("run %d: %+v", i+2, res.Counts)
	}
	assert.Len(t, b.target.Records("partners"), 5, "record 3 was never sent")
}

// Explain says what the next run does with a record whose edit kept its
// stamp inside an unchanged window: nothing, until a reconciling run.
func TestExplainSaysAnEditThatKeptItsStampWaitsForAReconcile(t *testing.T) {
	t.Parallel()
	b := setup(t, noReconcile(t, companiesSync()))
	b.exec(`INSERT INTO crm.companies (id, name, vat, _sdc_batched_at) SELECT g, 'C' || g, 'V' || g, timestamptz '2026-06-01 00:00:00+00' FROM generate_series(1, 5) g`)
	b.run("companies")
	require.True(t, b.run("companies").WindowUnchanged)
	b.exec(`UPDATE crm.companies SET name = 'edited' WHERE id = 2`)
	ex, err := b.eng.Explain(context.Background(), "companies", "2")
	require.NoError(t, err)
	assert.Contains(t, ex.Findings, "incremental runs do not read it: its edit kept its _sdc_batched_at, which is not past the bookmark, and the rows behind the bookmark are as the last run left them; the next reconciling run reads it, or run `ferry run companies --reconcile` now")
	assert.Contains(t, ex.Findings, "a reconciling run would: update")
	res := b.run("companies")
	assert.Equal(t, engine.Counts{}, res.Counts, "as explained")
	res, err = b.eng.Run(context.Background(), "companies", engine.RunOptions{Reconcile: true})
	require.NoError(t, err)
	assert.Equal(t, int64(1), res.Counts.Updated)
}

// With a bookmark without overlap (an integer version), a record not sent
// in one page was passed by the bookmark of the pages after it: the next
// run started past it, and it was never sent.
func TestARecordNotSentIsNotPassedByLaterPages(t *testing.T) {
	t.Parallel()
	s := noReconcile(t, companiesSync())
	s.Source.Table = ""
	s.Source.Query = "SELECT id, name, vat, version FROM crm.versioned"
	s.Source.BookmarkColumn = "version"
	s.Source.PageSize = 2
	b := setup(t, s)
	b.exec(`CREATE TABLE crm.versioned (id bigint PRIMARY KEY, name text, vat text, version bigint NOT NULL)`)
	b.exec(`INSERT INTO crm.versioned SELECT g, 'C' || g, 'V' || g, g FROM generate_series(1, 6) g`)
	th := &throttled{Memory: b.target, vat: "V3"}
	eng := engine.New(b.db, engine.StaticProject(b.proj), engine.Options{Open: only(th)})
	res, err := eng.Run(context.Background(), "companies", engine.RunOptions{})
	require.NoError(t, err)
	require.Equal(t, int64(5), res.Counts.Inserted)
	assert.Equal(t, "2", res.BookmarkAfter, "the bookmark stops before the record not sent")
	th.vat = ""
	res, err = eng.Run(context.Background(), "companies", engine.RunOptions{})
	require.NoError(t, err)
	assert.Equal(t, int64(1), res.Counts.Inserted, "the next run sends it")
	assert.Len(t, b.target.Records("partners"), 6)
}

// A record whose target record is gone is inserted again the way its
// error says, also when it is in an unchanged window: its link row asks
// for a retry. A rollback's records are inserted again by the next run.
func TestRecordsToInsertAgainAreReadWhateverTheWindow(t *testing.T) {
	t.Parallel()
	b := setup(t, noReconcile(t, companiesSync()))
	b.exec(`INSERT INTO crm.companies (id, name, vat, _sdc_batched_at) SELECT g, 'C' || g, 'V' || g, timestamptz '2026-06-01 00:00:00+00' FROM generate_series(1, 5) g`)
	b.run("companies")
	require.True(t, b.run("companies").WindowUnchanged)
	b.exec(`UPDATE link_tables.companies SET target_id = NULL, status = 'error' WHERE source_id = 4`)
	res := b.run("companies")
	assert.Equal(t, int64(1), res.Counts.Inserted, "inserted again")
	assert.Len(t, b.target.Records("partners"), 6)

	require.True(t, b.run("companies").WindowUnchanged)
	res, err := b.eng.Rollback(context.Background(), "companies", engine.RollbackOptions{})
	require.NoError(t, err)
	require.Equal(t, int64(5), res.Counts.Deleted)
	res = b.run("companies")
	assert.False(t, res.WindowUnchanged, "a rollback forgets the window")
	assert.Equal(t, int64(5), res.Counts.Inserted, "what the rollback deleted is inserted again")
}
