package engine_test

import (
	"context"
	"sync"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/ferry-sync/ferry/engine"
	"github.com/ferry-sync/ferry/engine/connector"
	"github.com/ferry-sync/ferry/engine/enginetest"
)

// cancellingTarget applies the first n changes it is given, then cancels
// the run (as Ctrl-C would) and reports the rest as not sent.
type cancellingTarget struct {
	*enginetest.Memory
	mu     sync.Mutex
	n      int
	cancel context.CancelFunc
}

func (c *cancellingTarget) Write(ctx context.Context, object string, changes []connector.Change) ([]connector.Result, error) {
	c.mu.Lock()
	n := min(c.n, len(changes))
	c.n -= n
	c.mu.Unlock()
	results, err := c.Memory.Write(ctx, object, changes[:n])
	if err != nil || n == len(changes) {
		return append(results, make([]connector.Result, len(changes)-len(results))...), err
	}
	c.cancel()
	return append(results, make([]connector.Result, len(changes)-n)...), context.Canceled
}

func TestCancelledRunLosesAndDuplicatesNothing(t *testing.T) {
	t.Parallel()
	s := companiesSync()
	s.Source.PageSize = 10
	b := setup(t, s)
	b.exec(`INSERT INTO crm.companies (id, name, vat) SELECT g, 'C' || g, 'V' || g FROM generate_series(1, 35) g`)
	ctx, cancel := context.WithCancel(context.Background())
	target := &cancellingTarget{Memory: b.target, n: 23, cancel: cancel}
	eng := engine.New(b.db, engine.StaticProject(b.proj), engine.Options{Open: only(target)})

	first, err := eng.Run(ctx, "companies", engine.RunOptions{})
	require.Error(t, err)
	assert.Equal(t, engine.RunInterrupted, first.Status, "a cancelled run did not fail: it was interrupted")
	assert.Len(t, b.target.Records("partners"), 23)
	links := b.links("companies")
	assert.Len(t, links, 23, "every record the target applied has its link row, although the run was cancelled")

	res := b.run("companies")
	assert.Equal(t, int64(12), res.Counts.Inserted, "%+v %s", res.Counts, res.Error)
	assert.Len(t, b.target.Records("partners"), 35, "each record exactly once")
	var intents int
	require.NoError(t, b.db.QueryRow(context.Background(), `SELECT count(*) FROM ferry.write_intents`).Scan(&intents))
	assert.Zero(t, intents)
}

func TestCrashAfterWriteIsReconciledNotDuplicated(t *testing.T) {
	t.Parallel()
	s := companiesSync()
	s.Target.MatchOn = []string{"vat"}
	b := setup(t, s)
	b.exec(`INSERT INTO crm.companies (id, name, vat) VALUES (1, 'A', 'V1'), (2, 'B', 'V2'), (3, 'C', 'V3')`)
	b.run("companies")

	// A later run inserted 4 and 5 in the target and died before recording
	// them: their write intent is all that is left.
	b.exec(`INSERT INTO crm.companies (id, name, vat) VALUES (4, 'D', 'V4'), (5, 'E', 'V5')`)
	applied := b.target.Put("partners", map[string]any{"name": "D", "vat": "V4"})
	b.exec(`INSERT INTO ferry.write_intents (sync, source_ids) VALUES ('companies', '{4,5}')`)

	res := b.run("companies")
	assert.Equal(t, int64(1), res.Counts.Updated, "4 was found by match_on and linked")
	assert.Equal(t, int64(1), res.Counts.Inserted, "5 never arrived: inserted")
	assert.Len(t, b.target.Records("partners"), 5, "nothing duplicated")
	assert.Equal(t, "success:"+applied, b.links("companies")["4"])
}
