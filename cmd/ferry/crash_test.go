//go:build failpoints && unix

package main

import (
	"context"
	"errors"
	"fmt"
	"os/exec"
	"syscall"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/ferry-sync/ferry/engine"
)

// A ferry run killed (SIGKILL) at each named point of a run, then a normal
// run: the CRM holds every contact exactly once, the link table says so,
// and nothing is left pending. The points are where a crash could lose a
// record (the bookmark passing it) or duplicate one (an insert sent, its
// link row not written).
func TestKilledAtEveryFailpointLosesAndDuplicatesNothing(t *testing.T) {
	const n = 300
	for _, point := range engine.Failpoints() {
		t.Run(point, func(t *testing.T) {
			t.Parallel()
			dir, wh, srv := crmProject(t, n)
			env := []string{"FERRY_TEST_CRM_TOKEN=s3cret-token", failpointEnv + "=" + point + ":3"}
			first, _, errOut := ferryProcess(t, env, "--project", dir, "--db", wh, "run", "contacts")
			err := first.Wait()
			var exit *exec.ExitError
			require.True(t, errors.As(err, &exit), "the run was not killed at %s: %v %s", point, err, errOut)
			status, ok := exit.Sys().(syscall.WaitStatus)
			require.True(t, ok && status.Signaled() && status.Signal() == syscall.SIGKILL, "killed at %s: %v %s", point, err, errOut)
			require.Contains(t, errOut.String(), "failpoint "+point+" reached")

			second, out, stderr := ferryProcess(t, env[:1], "--project", dir, "--db", wh, "run", "contacts")
			require.NoError(t, second.Wait(), "the next run: %s%s", out, stderr)

			emails := map[string]int{}
			ids := map[string]bool{}
			for _, r := range srv.Records("contacts") {
				emails[fmt.Sprint(r["email"])]++
				ids[fmt.Sprint(r["id"])] = true
			}
			assert.Len(t, emails, n, "every contact is in the CRM")
			for email, c := range emails {
				assert.Equal(t, 1, c, "%s exists once", email)
			}
			ctx := context.Background()
			conn, err := pgx.Connect(ctx, wh)
			require.NoError(t, err)
			defer conn.Close(ctx)
			rows, err := conn.Query(ctx, `SELECT source_id::text, status, coalesce(target_id::text, '') FROM link_tables.contacts`)
			require.NoError(t, err)
			links := 0
			for rows.Next() {
				var id, st, tid string
				require.NoError(t, rows.Scan(&id, &st, &tid))
				links++
				assert.Equal(t, "success", st, "source id %s", id)
				assert.True(t, ids[tid], "source id %s links to %q, which the CRM holds", id, tid)
			}
			require.NoError(t, rows.Err())
			assert.Equal(t, n, links, "one link row per contact")
			var intents int
			require.NoError(t, conn.QueryRow(ctx, `SELECT count(*) FROM ferry.write_intents`).Scan(&intents))
			assert.Zero(t, intents, "no write intent left")
		})
	}
}
