package httptarget_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/ferry-sync/ferry/engine/connector"
	"github.com/ferry-sync/ferry/engine/connector/crmtest"
	httptarget "github.com/ferry-sync/ferry/engine/connector/http"
)

// batchConfig is config with contacts written in batches through crmtest's
// all-or-nothing batch endpoints, which do not say which record failed.
func batchConfig(srv *crmtest.Server, size int) httptarget.Config {
	cfg := config(srv, token)
	cfg.Objects = map[string]httptarget.Object{"contacts": {
		Lookup: &httptarget.Lookup{Path: "/contacts/search"},
		Batch: &httptarget.Batch{
			Size:   size,
			Insert: &httptarget.BatchEndpoint{Path: "/contacts/batch/create", Body: map[string]any{"inputs": "{{items}}"}},
			Update: &httptarget.BatchEndpoint{Path: "/contacts/batch/update", Body: map[string]any{"inputs": "{{items}}"},
				Item: map[string]any{"id": "{{id}}", "fields": "{{record}}"}},
		},
	}}
	return cfg
}

func contacts(n int, from int) []connector.Change {
	changes := make([]connector.Change, n)
	for i := range changes {
		changes[i] = connector.Change{Op: connector.OpInsert, SourceID: fmt.Sprint(from + i),
			Payload: map[string]any{"email": fmt.Sprintf("person%d@example.com", from+i), "name": "Ann"}}
	}
	return changes
}

func TestBatchOf100WithOneBadRecordSplitsDownToIt(t *testing.T) {
	t.Parallel()
	srv := contactsCRM(t)
	target := newTarget(t, batchConfig(srv, 100))
	changes := contacts(100, 0)
	const bad = 37
	delete(changes[bad].Payload, "email")

	res, err := target.Write(context.Background(), "contacts", changes)
	require.NoError(t, err)
	require.Len(t, res, 100)
	for i, r := range res {
		require.True(t, r.Done, "change %d", i)
		if i == bad {
			require.NotNil(t, r.Err)
			require.Equal(t, connector.Rejected, r.Err.Class)
			require.Equal(t, 422, r.Err.Status)
			require.Contains(t, r.Err.Message, "email: is required", "the record's own message")
			require.Contains(t, r.Err.Body, `"field":"email"`, "the target's answer is kept")
			continue
		}
		require.Nil(t, r.Err, "change %d", i)
		rec, ok := srv.Record("contacts", r.TargetID)
		require.True(t, ok)
		require.Equal(t, changes[i].Payload["email"], rec["email"], "change %d got its own id", i)
	}
	require.Equal(t, 99, srv.Count("contacts"), "the 99 good records are written once each")
	requests := srv.RequestsFor("POST", "contacts")
	require.LessOrEqual(t, requests, 15, "halving 100 down to the bad record")
	t.Logf("%d requests for a batch of 100 with one bad record", requests)
}

func TestBatchFailuresEachKeepTheirOwnMessage(t *testing.T) {
	t.Parallel()
	srv := contactsCRM(t)
	srv.Put(t, "contacts", map[string]any{"email": "taken@example.com"})
	target := newTarget(t, batchConfig(srv, 50))
	changes := contacts(50, 0)
	delete(changes[3].Payload, "email")
	changes[20].Payload["email"] = "taken@example.com"
	changes[41].Payload["email"] = changes[40].Payload["email"] // a duplicate within the batch

	res, err := target.Write(context.Background(), "contacts", changes)
	require.NoError(t, err)
	want := map[int]string{
		3:  "email: is required",
		20: "contact with email taken@example.com already exists",
		41: "contact with email person40@example.com already exists",
	}
	for i, r := range res {
		if msg, bad := want[i]; bad {
			require.NotNil(t, r.Err, "change %d", i)
			require.Contains(t, r.Err.Message, msg)
			continue
		}
		require.Nil(t, r.Err, "change %d", i)
	}
	require.Equal(t, 1+47, srv.Count("contacts"))
}

func TestBatchUpdatesFindTheMissingRecord(t *testing.T) {
	t.Parallel()
	srv := contactsCRM(t)
	target := newTarget(t, batchConfig(srv, 10))
	res, err := target.Write(context.Background(), "contacts", contacts(10, 0))
	require.NoError(t, err)
	updates := make([]connector.Change, 10)
	for i, r := range res {
		require.Nil(t, r.Err)
		updates[i] = connector.Change{Op: connector.OpUpdate, SourceID: fmt.Sprint(i), TargetID: r.TargetID, Payload: map[string]any{"name": fmt.Sprintf("Renamed %d", i)}}
	}
	updates[6].TargetID = "c_999"
	res, err = target.Write(context.Background(), "contacts", updates)
	require.NoError(t, err)
	for i, r := range res {
		if i == 6 {
			require.Equal(t, connector.NotFound, r.Err.Class)
			continue
		}
		require.Nil(t, r.Err)
		rec, _ := srv.Record("contacts", updates[i].TargetID)
		require.Equal(t, fmt.Sprintf("Renamed %d", i), rec["name"])
	}
}

func TestBatchWhoseAnswerWasLostIsAmbiguousAsAWhole(t *testing.T) {
	t.Parallel()
	srv := contactsCRM(t)
	cfg := batchConfig(srv, 20)
	cfg.Timeout = httptarget.Duration(200 * time.Millisecond)
	target := newTarget(t, cfg)
	srv.HangNext(1)

	res, err := target.Write(context.Background(), "contacts", contacts(20, 0))
	require.NoError(t, err)
	for i, r := range res {
		require.True(t, r.Done)
		require.NotNil(t, r.Err, "change %d", i)
		require.Equal(t, connector.Ambiguous, r.Err.Class, "change %d: %v", i, r.Err)
		require.Contains(t, r.Err.Message, "a batch of 20 records whose answer was lost")
	}
	require.Equal(t, 20, srv.Count("contacts"), "the server applied it")
	require.Equal(t, 1, srv.RequestsFor("POST", "contacts"), "never re-sent")

	// The batch size adapts down: the next 20 go in two batches of 10.
	srv.ResetCounters()
	res, err = target.Write(context.Background(), "contacts", contacts(20, 100))
	require.NoError(t, err)
	for _, r := range res {
		require.Nil(t, r.Err)
	}
	require.Equal(t, 2, srv.RequestsFor("POST", "contacts"))
	require.Equal(t, httptarget.DefaultConcurrency*20, target.InFlight(), "the engine is still handed chunks of the configured size")
}
