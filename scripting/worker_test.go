package scripting

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

const bombScript = `
def transform(source_record, target_record, pq, target_id=None):
    if source_record["bomb"]:
        x = ["0123456789abcdef"]
        for i in range(64):
            x = x + x
    target_record["ok"] = True
    return target_record
`

func TestMemoryBombFailsOnlyItsRecord(t *testing.T) {
	t.Parallel()
	skipUnderRace(t)
	pool := newTestPool(t, PoolOptions{MemoryLimit: 256 << 20})
	s := compile(t, "contacts.star", bombScript, Options{Pool: pool})
	ctx := context.Background()

	ins := make([]TransformInput, 5)
	for i := range ins {
		ins[i] = TransformInput{SourceID: fmt.Sprint(40 + i), Source: map[string]any{"bomb": i == 2}}
	}
	results := s.TransformBatch(ctx, ins)
	for i, r := range results {
		if i == 2 {
			var se *ScriptError
			require.ErrorAs(t, r.Err, &se)
			require.Equal(t, KindMemory, se.Kind, se.Error())
			require.Equal(t, "contacts.star: ran out of memory (limit 256 MB); the worker was restarted (source id 42)", se.Error())
			continue
		}
		require.NoError(t, r.Err, "record %d", i)
		require.Equal(t, map[string]any{"ok": true}, r.Output.Payload)
	}

	// The next record runs in a fresh worker.
	out, err := s.Transform(ctx, TransformInput{SourceID: "45", Source: map[string]any{"bomb": false}})
	require.NoError(t, err)
	require.Equal(t, map[string]any{"ok": true}, out.Payload)
	require.EqualValues(t, 1, pool.Replaced(), "one worker was replaced (the server's metrics show it)")
}

func TestCancelKillsWorkerAndNextRecordRuns(t *testing.T) {
	t.Parallel()
	pool := newTestPool(t, PoolOptions{})
	src := `def transform(source_record, target_record, pq, target_id=None):
    while source_record["loop"]:
        pass
    return {"ok": True}
`
	s := compile(t, "loop.star", src, Options{Pool: pool, MaxSteps: 1 << 62, Timeout: time.Minute})
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	results := s.TransformBatch(ctx, []TransformInput{
		{SourceID: "1", Source: map[string]any{"loop": true}},
		{SourceID: "2", Source: map[string]any{"loop": false}},
	})
	for i, r := range results {
		var se *ScriptError
		require.ErrorAs(t, r.Err, &se, "record %d", i)
		require.Equal(t, KindCancelled, se.Kind)
		require.Equal(t, fmt.Sprint(i+1), se.SourceID)
	}
	out, err := s.Transform(context.Background(), TransformInput{SourceID: "3", Source: map[string]any{"loop": false}})
	require.NoError(t, err)
	require.Equal(t, map[string]any{"ok": true}, out.Payload)
}

func TestMemoryBombInTopLevelCodeFailsCompile(t *testing.T) {
	t.Parallel()
	skipUnderRace(t)
	pool := newTestPool(t, PoolOptions{MemoryLimit: 256 << 20})
	src := `
BIG = ["0123456789abcdef"]
for i in range(64):
    BIG = BIG + BIG
def transform(s, t, pq):
    return t
`
	_, err := Compile(context.Background(), "bomb.star", []byte(src), Options{Pool: pool})
	var se *ScriptError
	require.ErrorAs(t, err, &se)
	require.Equal(t, KindCompile, se.Kind)
	require.Equal(t, "bomb.star: while loading: ran out of memory (limit 256 MB); the worker was restarted", se.Error())

	s := compile(t, "ok.star", "def transform(s, t, pq):\n    return t\n", Options{Pool: pool})
	_, err = s.Transform(context.Background(), TransformInput{SourceID: "1"})
	require.NoError(t, err)
}

func TestConcurrentBatchesShareAPool(t *testing.T) {
	t.Parallel()
	pool := newTestPool(t, PoolOptions{Workers: 2})
	s := compile(t, "contacts.star", benchScript, Options{Pool: pool})
	errs := make(chan error, 4)
	for g := range 4 {
		go func() {
			page := make([]TransformInput, 50)
			for i := range page {
				page[i] = benchInput(g*100 + i)
			}
			for _, r := range s.TransformBatch(context.Background(), page) {
				if r.Err != nil {
					errs <- r.Err
					return
				}
				if r.Output.Payload["address"] == nil {
					errs <- fmt.Errorf("no address in %v", r.Output.Payload)
					return
				}
			}
			errs <- nil
		}()
	}
	for range 4 {
		require.NoError(t, <-errs)
	}
}

// A call stuck in one builtin past its deadline plus grace makes the worker
// report the record and give up (ServeWorker returns ErrWorkerStuck).
func TestWatchdogReportsStuckCall(t *testing.T) {
	t.Parallel()
	var out bytes.Buffer
	s := &workerServer{out: &frameWriter{w: bufio.NewWriter(&out)}, stuck: make(chan struct{})}
	s.startCall(3, time.Millisecond)
	s.callStart.Store(time.Now().Add(-time.Minute).UnixNano())
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go s.watchdog(ctx)
	select {
	case <-s.stuck:
	case <-time.After(5 * time.Second):
		t.Fatal("the watchdog did not fire")
	}
	frame, err := readFrame(&out, nil)
	require.NoError(t, err)
	require.Equal(t, msgFatal, frame[0])
	d := decoder{buf: frame[1:]}
	require.Equal(t, 3, d.int())
	require.Equal(t, string(KindTimeout), d.string())
	require.Equal(t, "stopped after running longer than 1ms (inside one builtin call; the worker was restarted)", d.string())
	require.NoError(t, d.err)
}

// A host reply read while the worker still decodes its page must not land
// in the page's buffer: each reply here is larger than the records already
// decoded, so it used to overwrite the rest of the page.
func TestHostRepliesDoNotOverwriteThePage(t *testing.T) {
	t.Parallel()
	pool := newTestPool(t, PoolOptions{Workers: 1})
	src := `
def transform(source_record, target_record, pq, target_id=None):
    company = pq.lookup("companies", vat=source_record["vat"])
    target_record["note"] = company["note"]
    return target_record
`
	s := compile(t, "companies.star", src, Options{Pool: pool})
	host := &MemoryHost{Records: map[string][]map[string]any{}}
	ins := make([]TransformInput, 100)
	for i := range ins {
		vat := fmt.Sprintf("BE%04d", i)
		note := strings.Repeat(string(rune('a'+i%26)), 300)
		host.Records["companies"] = append(host.Records["companies"], map[string]any{"id": fmt.Sprint(i), "vat": vat, "note": note})
		ins[i] = TransformInput{SourceID: fmt.Sprint(i), Host: host, Source: map[string]any{"vat": vat}, Target: map[string]any{"vat": vat}}
	}
	for i, r := range s.TransformBatch(context.Background(), ins) {
		require.NoError(t, r.Err, "record %d", i)
		require.Equal(t, map[string]any{"vat": fmt.Sprintf("BE%04d", i), "note": strings.Repeat(string(rune('a'+i%26)), 300)}, r.Output.Payload, "record %d", i)
	}
}
