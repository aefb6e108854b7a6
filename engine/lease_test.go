package engine_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/ferry-sync/ferry/engine"
	"github.com/ferry-sync/ferry/engine/connector"
	"github.com/ferry-sync/ferry/engine/enginetest"
)

// A DBA's idle_session_timeout ends idle connections. The claim on a sync
// must not live on one: a second run started while the first still writes
// is refused, and every record is written once.
func TestIdleSessionTimeoutDoesNotLetTwoRunsWrite(t *testing.T) {
	t.Parallel()
	s := companiesSync()
	s.Source.PageSize = 5
	b := setup(t, s)
	b.exec(`INSERT INTO crm.companies (id, name, vat) SELECT g, 'C' || g, 'V' || g FROM generate_series(1, 60) g`)
	var db string
	require.NoError(t, b.db.QueryRow(context.Background(), `SELECT current_database()`).Scan(&db))
	b.exec(`ALTER DATABASE ` + pgx.Identifier{db}.Sanitize() + ` SET idle_session_timeout = '1s'`)
	b.db.Reset() // new connections get the setting

	b.target.Validate = func(string, map[string]any) string { time.Sleep(40 * time.Millisecond); return "" }
	first := make(chan error, 1)
	go func() {
		_, err := b.eng.Run(context.Background(), "companies", engine.RunOptions{})
		first <- err
	}()
	time.Sleep(2 * time.Second) // well past the timeout; the first run writes for about 2.4 s
	_, err := b.eng.Run(context.Background(), "companies", engine.RunOptions{})
	require.ErrorIs(t, err, engine.ErrBusy)
	var busy *engine.BusyError
	require.ErrorAs(t, err, &busy)
	assert.NotZero(t, busy.RunID, "the refusal names the run that holds the sync")
	assert.Contains(t, err.Error(), "sync companies is already running (run ")

	require.NoError(t, <-first)
	assert.Len(t, b.target.Records("partners"), 60, "each record written once")
	var runs int
	require.NoError(t, b.db.QueryRow(context.Background(), `SELECT count(*) FROM ferry.runs`).Scan(&runs))
	assert.Equal(t, 1, runs)
}

// pausingTarget writes the changes of its second call, then holds the call
// until released: the run looks paused right after the target applied a page.
type pausingTarget struct {
	*enginetest.Memory
	mu      sync.Mutex
	calls   int
	paused  chan struct{}
	release chan struct{}
}

func (p *pausingTarget) Write(ctx context.Context, object string, changes []connector.Change) ([]connector.Result, error) {
	res, err := p.Memory.Write(ctx, object, changes)
	p.mu.Lock()
	p.calls++
	n := p.calls
	p.mu.Unlock()
	if n == 2 {
		close(p.paused)
		<-p.release
	}
	return res, err
}

// A run that lost its claim while the target applied a page records
// nothing more and sends nothing more; the run that took over settles that
// page through match_on, so every record exists once.
func TestRunThatLostItsClaimWritesAndRecordsNothingMore(t *testing.T) {
	t.Parallel()
	s := companiesSync()
	s.Source.PageSize = 10
	s.Target.MatchOn = []string{"vat"}
	b := setup(t, s)
	b.exec(`INSERT INTO crm.companies (id, name, vat) SELECT g, 'C' || g, 'V' || g FROM generate_series(1, 40) g`)
	target := &pausingTarget{Memory: b.target, paused: make(chan struct{}), release: make(chan struct{})}
	first := engine.New(b.db, engine.StaticProject(b.proj), engine.Options{Open: only(target)})
	done := make(chan error, 1)
	go func() {
		_, err := first.Run(context.Background(), "companies", engine.RunOptions{})
		done <- err
	}()
	<-target.paused
	// Another holder takes the claim over, as one would once the first
	// run's lease expired unrenewed.
	b.exec(`UPDATE ferry.leases SET epoch = epoch + 1, holder = 'another process' WHERE name = 'sync:companies'`)
	close(target.release)
	err := <-done
	require.Error(t, err)
	assert.Contains(t, err.Error(), "lost its claim on the sync")
	// The paused page, and at most the one chunk sent beside it while the
	// claim still held: nothing sent after the claim was lost.
	sent := len(b.target.Records("partners"))
	assert.Contains(t, []int{20, 30}, sent, "nothing sent after the claim was lost")
	assert.LessOrEqual(t, len(b.links("companies")), 10, "the second page is not recorded by the run that lost its claim")

	b.exec(`UPDATE ferry.leases SET expires_at = now() - interval '1 second' WHERE name = 'sync:companies'`)
	res := b.run("companies")
	assert.Equal(t, int64(40-sent), res.Counts.Inserted, "only what was never sent is inserted; the rest is found by match_on")
	assert.Len(t, b.target.Records("partners"), 40, "every record exactly once")
	for id, l := range b.links("companies") {
		assert.Regexp(t, `^(success|skipped):\d+$`, l, "source id %s", id)
	}
}

// A run whose row says it ended is not running, although it has not given
// its claim up yet (it does so right after): the server's trigger queues
// the next run instead of answering 409 busy.
func TestAFinishedRunIsNotRunningWhileItReleasesItsClaim(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.exec(`INSERT INTO crm.companies (id, name, vat) VALUES (1, 'Acme', 'V1')`)
	res := b.run("companies")
	// The moment between the two: the run row finished, the lease not yet
	// released.
	b.exec(`INSERT INTO ferry.leases (name, holder, epoch, run_id, acquired_at, renewed_at, expires_at)
		VALUES ('sync:companies', 'another process', 1, $1, now(), now(), now() + interval '30 seconds')
		ON CONFLICT (name) DO UPDATE SET run_id = EXCLUDED.run_id, expires_at = EXCLUDED.expires_at`, res.RunID)
	id, err := b.eng.Running(context.Background(), "sync", "companies")
	require.NoError(t, err)
	assert.Zero(t, id, "run %d ended", res.RunID)

	b.exec(`UPDATE ferry.runs SET status = 'running', finished_at = NULL WHERE id = $1`, res.RunID)
	id, err = b.eng.Running(context.Background(), "sync", "companies")
	require.NoError(t, err)
	assert.Equal(t, res.RunID, id, "a run still running is")
}
