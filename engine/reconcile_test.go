package engine_test

import (
	"context"
	"fmt"
	"sync"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/ferry-sync/ferry/engine"
	"github.com/ferry-sync/ferry/engine/project"
)

// Rows whose stamp is NULL have no place in the order of stamps: every run
// reads them (the warehouse skips them while unchanged).
func TestNullStampedRowsAreReadEveryRun(t *testing.T) {
	t.Parallel()
	b := setup(t, companiesSync())
	b.exec(`ALTER TABLE crm.companies ALTER COLUMN _sdc_batched_at DROP NOT NULL`)
	b.exec(`INSERT INTO crm.companies (id, name, _sdc_batched_at) VALUES (1, 'stamped', now() - interval '1 hour'), (2, 'unstamped', NULL)`)
	res := b.run("companies")
	assert.Equal(t, int64(2), res.Counts.Inserted)

	res = b.run("companies")
	assert.Equal(t, engine.Counts{}, res.Counts, "unchanged: nothing leaves the warehouse")

	b.exec(`UPDATE crm.companies SET name = 'unstamped, edited' WHERE id = 2`)
	b.exec(`INSERT INTO crm.companies (id, name, _sdc_batched_at) VALUES (3, 'new and unstamped', NULL)`)
	res = b.run("companies")
	assert.Equal(t, int64(1), res.Counts.Updated, "a change to a NULL-stamped row is synced")
	assert.Equal(t, int64(1), res.Counts.Inserted, "a new NULL-stamped row is synced")
	names := map[string]bool{}
	for _, r := range b.target.Records("partners") {
		names[r["name"].(string)] = true
	}
	assert.Equal(t, map[string]bool{"stamped": true, "unstamped, edited": true, "new and unstamped": true}, names)
}

// Rows committed with a stamp older than the bookmark minus the overlap are
// never read by incremental runs; a reconciling run finds them in the
// warehouse (the link table is the truth) and says how many it caught.
func TestReconcileCatchesLateCommits(t *testing.T) {
	t.Parallel()
	s := companiesSync()
	s.Source.ReconcileEvery = mustDuration(t, "0s") // only on demand
	b := setup(t, s)
	b.exec(`INSERT INTO crm.companies (id, name, vat, _sdc_batched_at) SELECT g, 'C' || g, 'V' || g, now() - g * interval '1 minute' FROM generate_series(1, 5) g`)
	require.Equal(t, int64(5), b.run("companies").Counts.Inserted)

	// Committed now, stamped 10 minutes and 1 hour ago: past the 5-minute overlap.
	b.exec(`INSERT INTO crm.companies (id, name, vat, _sdc_batched_at) VALUES (6, 'late', 'V6', now() - interval '10 minutes'), (7, 'later', 'V7', now() - interval '1 hour')`)
	b.exec(`UPDATE crm.companies SET name = 'edited late', _sdc_batched_at = now() - interval '2 hours' WHERE id = 2`)
	res := b.run("companies")
	assert.Equal(t, engine.Counts{}, res.Counts, "incremental runs do not read them")

	ex, err := b.eng.Explain(context.Background(), "companies", "7")
	require.NoError(t, err)
	assert.Contains(t, ex.Findings, "incremental runs do not read it: its _sdc_batched_at is older than the bookmark minus the 5m0s overlap; the next reconciling run reads it, or run `ferry run companies --reconcile` now")

	res, err = b.eng.Run(context.Background(), "companies", engine.RunOptions{Reconcile: true})
	require.NoError(t, err)
	assert.True(t, res.Reconcile)
	assert.Equal(t, int64(2), res.Counts.Inserted)
	assert.Equal(t, int64(1), res.Counts.Updated)
	assert.Equal(t, int64(3), res.Counts.Caught, "the run says how many records incremental reads had missed")
	assert.Equal(t, int64(3), res.Counts.Read, "the unchanged rows stay in the warehouse")
	var caught int64
	require.NoError(t, b.db.QueryRow(context.Background(), `SELECT caught FROM ferry.runs WHERE id = $1`, res.RunID).Scan(&caught))
	assert.Equal(t, int64(3), caught)
	assert.Len(t, b.target.Records("partners"), 7)
}

// Runs reconcile on their own every source.reconcile_every.
func TestReconcileRunsOnItsOwn(t *testing.T) {
	t.Parallel()
	s := companiesSync()
	s.Source.ReconcileEvery = mustDuration(t, "1ms")
	b := setup(t, s)
	b.exec(`INSERT INTO crm.companies (id, name, _sdc_batched_at) VALUES (1, 'a', now())`)
	b.run("companies")
	b.exec(`INSERT INTO crm.companies (id, name, _sdc_batched_at) VALUES (2, 'late', now() - interval '1 day')`)
	res := b.run("companies")
	assert.True(t, res.Reconcile)
	assert.Equal(t, int64(1), res.Counts.Caught)
}

// A row that changed only in a column the sync does not send reaches the
// engine once, is found unchanged, and stays in the warehouse after that. A
// parent whose target id changed re-syncs exactly its children.
func TestWarehouseRowHashFollowsContentAndParents(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.exec(`ALTER TABLE crm.contacts ADD COLUMN notes text`)
	b.exec(`INSERT INTO crm.companies (id, name) VALUES (100, 'Acme'), (200, 'Globex')`)
	b.exec(`INSERT INTO crm.contacts (id, name, email, company_id) VALUES (1, 'Ann', 'a@x', 100), (2, 'Bob', 'b@x', 200), (3, 'Cy', 'c@x', 200)`)
	b.run("companies")
	require.Equal(t, int64(3), b.run("contacts").Counts.Inserted)

	b.exec(`UPDATE crm.contacts SET notes = 'not mapped', _sdc_batched_at = now() WHERE id = 1`)
	res := b.run("contacts")
	assert.Equal(t, engine.Counts{Read: 1, Unchanged: 1}, res.Counts)
	assert.Equal(t, engine.Counts{}, b.run("contacts").Counts, "its row hash moved on")

	// Globex is linked to another partner (an analyst re-seeded it).
	other := b.target.Put("partners", map[string]any{"name": "Globex (merged)"})
	b.exec(`UPDATE link_tables.companies SET target_id = $1 WHERE source_id = 200`, other)
	res = b.run("contacts")
	assert.Equal(t, engine.Counts{Read: 2, Updated: 2, TargetCalls: 2}, res.Counts, "Globex's two contacts, nothing else")
	for _, id := range []string{"2", "3"} {
		tid := b.links("contacts")[id][len("success:"):]
		assert.Equal(t, other, toString(b.target.Records("people")[tid]["partner_id"]))
	}
}

func mustDuration(t *testing.T, s string) project.Duration {
	t.Helper()
	var d project.Duration
	require.NoError(t, d.UnmarshalJSON([]byte(`"`+s+`"`)))
	return d
}

func toString(v any) string { return fmt.Sprint(v) }

// The bookmark moves to the highest stamp the run's read saw, never to one
// committed while it was reading: with a bookmark that has no overlap (an
// integer version), a row committed mid-run below that stamp would be
// behind the bookmark for good.
func TestBookmarkIgnoresRowsCommittedWhileReading(t *testing.T) {
	t.Parallel()
	s := companiesSync()
	s.Source.Table = ""
	s.Source.Query = "SELECT id, name, vat, version FROM crm.versioned"
	s.Source.BookmarkColumn = "version"
	b := setup(t, s)
	b.exec(`CREATE TABLE crm.versioned (id bigint PRIMARY KEY, name text, vat text, version bigint NOT NULL)`)
	b.exec(`INSERT INTO crm.versioned VALUES (1, 'one', 'V1', 1), (2, 'two', 'V2', 2)`)
	var once sync.Once
	eng := engine.New(b.db, engine.StaticProject(b.proj), engine.Options{Open: only(b.target), Failpoint: func(point string) {
		if point != "after-scope-read" {
			return
		}
		once.Do(func() {
			// Committed after the read began, before it ended: 3 and 4.
			_, err := b.db.Exec(context.Background(), `INSERT INTO crm.versioned VALUES (3, 'three', 'V3', 3), (4, 'four', 'V4', 4)`)
			require.NoError(t, err)
		})
	}})
	res, err := eng.Run(context.Background(), "companies", engine.RunOptions{})
	require.NoError(t, err)
	require.Equal(t, int64(2), res.Counts.Inserted, "the read saw 1 and 2")

	res = b.run("companies")
	assert.Equal(t, int64(2), res.Counts.Inserted, "3 and 4 are read by the next run")
	assert.Len(t, b.target.Records("partners"), 4)
}

// An incremental read looks again at the window behind the bookmark (its
// overlap and ties), for rows committed late. A run that handled all of it
// notes its fingerprint; the next run reads only past the bookmark while
// the window is as it was, and reads it again when a row moved into or
// within it, when the configuration changed, or when the last run did not
// handle all of it.
func TestWindowBehindTheBookmarkIsReadAgainOnlyWhenItMoved(t *testing.T) {
	t.Parallel()
	s := companiesSync()
	s.Source.PageSize = 10
	b := setup(t, s)
	// One ELT batch: 30 rows with one stamp.
	b.exec(`INSERT INTO crm.companies (id, name, vat, _sdc_batched_at) SELECT g, 'C' || g, 'V' || g, timestamptz '2026-06-01 00:00:00+00' FROM generate_series(1, 30) g`)
	res := b.run("companies")
	require.Equal(t, int64(30), res.Counts.Inserted)
	assert.False(t, res.WindowUnchanged)
	res = b.run("companies")
	assert.True(t, res.WindowUnchanged, "the batch is behind the bookmark, as the last run left it")
	assert.Equal(t, engine.Counts{}, res.Counts)

	// Committed late, stamped a minute before the bookmark: in the window.
	b.exec(`INSERT INTO crm.companies (id, name, vat, _sdc_batched_at) VALUES (31, 'late', 'V31', timestamptz '2026-06-01 00:00:00+00' - interval '1 minute')`)
	res = b.run("companies")
	assert.False(t, res.WindowUnchanged)
	assert.Equal(t, int64(1), res.Counts.Inserted, "the late row is read")
	assert.True(t, b.run("companies").WindowUnchanged)

	// Re-stamped within the window, unchanged: read again, nothing to write.
	b.exec(`UPDATE crm.companies SET _sdc_batched_at = _sdc_batched_at - interval '2 minutes' WHERE id = 5`)
	res = b.run("companies")
	assert.False(t, res.WindowUnchanged)
	assert.Equal(t, engine.Counts{}, res.Counts, "unchanged: it stays in the warehouse")
	assert.True(t, b.run("companies").WindowUnchanged)

	// The mapping changes, and the run that should re-send every record
	// stops at the first it cannot write: the window is read again after.
	s2 := companiesSync()
	s2.Source.PageSize = 10
	s2.Mapping = append(s2.Mapping, project.Field{Value: []byte(`"warehouse"`), Target: "origin"})
	s2.OnError = project.OnErrorStop
	p2, err := project.New(nil, map[string]project.Connection{"erp": testConnection}, s2)
	require.NoError(t, err)
	b.target.Validate = func(_ string, rec map[string]any) string {
		if rec["vat"] == "V12" {
			return "vat: refused"
		}
		return ""
	}
	eng2 := engine.New(b.db, engine.StaticProject(p2), engine.Options{Open: only(b.target)})
	res, err = eng2.Run(context.Background(), "companies", engine.RunOptions{})
	require.NoError(t, err)
	assert.False(t, res.WindowUnchanged, "the mapping changed")
	assert.Equal(t, int64(1), res.Counts.Failed)
	b.target.Validate = nil
	res, err = eng2.Run(context.Background(), "companies", engine.RunOptions{})
	require.NoError(t, err)
	assert.False(t, res.WindowUnchanged, "the run before did not handle the whole window")
	origins := 0
	for _, r := range b.target.Records("partners") {
		if r["origin"] == "warehouse" {
			origins++
		}
	}
	assert.Equal(t, 31, origins, "every record has the new mapping")
	res, err = eng2.Run(context.Background(), "companies", engine.RunOptions{})
	require.NoError(t, err)
	assert.True(t, res.WindowUnchanged)
	assert.Equal(t, engine.Counts{}, res.Counts)
}
