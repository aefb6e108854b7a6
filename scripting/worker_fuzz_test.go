package scripting

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// sizedHost answers a lookup with a record whose "note" has the size the
// lookup asked for, so a test decides how large each host reply is.
type sizedHost struct {
	MemoryHost
}

func (h *sizedHost) Find(_ context.Context, _, _ string, match map[string]any) ([]map[string]any, error) {
	key, _ := match["key"].(string)
	size, _ := match["size"].(int64)
	if size == 0 {
		return nil, nil
	}
	// Vary the bytes with the key, so a reply read into the wrong place
	// cannot pass for the right one.
	note := strings.Repeat(string(rune('a'+len(key)%26)), int(size))
	return []map[string]any{{"id": key, "note": note}}, nil
}

const hostCallsScript = `
def transform(source_record, target_record, pq, target_id=None):
    notes = []
    for call in source_record["calls"]:
        found = pq.lookup("companies", key=call["key"], size=call["size"])
        notes.append(found["note"] if found else None)
    if source_record["print"]:
        print(source_record["print"])
    target_record["notes"] = notes
    return target_record
`

// fuzzBytes hands out the bytes of a fuzz input, then zeros.
type fuzzBytes []byte

func (b *fuzzBytes) next() int {
	if len(*b) == 0 {
		return 0
	}
	n := int((*b)[0])
	*b = (*b)[1:]
	return n
}

// fuzzSize spreads a byte over 0..16256, denser at the small end.
func fuzzSize(b int) int { return b * b / 4 }

// hostCallsPage makes a page from a fuzz input: its first byte is the
// page's size, then per record the size of its padding, its number of
// lookups, each lookup's key and reply sizes, and what it prints.
func hostCallsPage(data []byte, host Host) []TransformInput {
	in := fuzzBytes(data)
	page := make([]TransformInput, 1+in.next()%128)
	for i := range page {
		pad := strings.Repeat("p", fuzzSize(in.next()))
		calls := make([]any, in.next()%5)
		for j := range calls {
			key := fmt.Sprintf("%d.%d.", i, j) + strings.Repeat("k", fuzzSize(in.next()))
			calls[j] = map[string]any{"key": key, "size": int64(fuzzSize(in.next()))}
		}
		printed := ""
		if n := in.next(); n%4 == 0 {
			printed = strings.Repeat("l", fuzzSize(n))
		}
		page[i] = TransformInput{
			SourceID: fmt.Sprint(i),
			Source:   map[string]any{"calls": calls, "print": printed},
			Target:   map[string]any{"id": int64(i), "pad": pad},
			Host:     host,
		}
	}
	return page
}

// hostCallsSeed encodes a page for hostCallsPage: records of padding pad,
// each with calls lookups of key size key and reply size reply, and a
// line printed by every other record.
func hostCallsSeed(records, pad, calls, key, reply byte) []byte {
	data := []byte{records - 1}
	for i := range records {
		data = append(data, pad, calls)
		for range calls {
			data = append(data, key, reply)
		}
		data = append(data, 8*(i%2)) // 0 prints nothing, 8 a line of 16 bytes
	}
	return data
}

// Host calls of every size, interleaved with pages of every size, give
// through a worker process what they give in this process.
func FuzzWorkerHostCalls(f *testing.F) {
	pool := newTestPool(f, PoolOptions{Workers: 1})
	inWorker := compile(f, "hosts.star", hostCallsScript, Options{Pool: pool})
	inProcess := compile(f, "hosts.star", hostCallsScript, Options{Isolation: IsolationNone})

	f.Add([]byte{})
	f.Add([]byte{0, 0, 1, 0, 35})
	// The bug's shape: 100 records, one lookup each answered with ~300
	// bytes, more than the part of the page decoded before it.
	f.Add(hostCallsSeed(100, 0, 1, 0, 35))
	f.Add(hostCallsSeed(20, 200, 4, 10, 255))
	f.Add(hostCallsSeed(50, 255, 1, 255, 2))
	f.Add(hostCallsSeed(3, 0, 4, 0, 255))
	f.Add([]byte{7, 255, 0, 0, 1, 2, 3, 255, 255, 0, 40, 4, 9, 90, 200, 1, 0, 0, 3, 0, 60, 255, 12, 1, 80, 8})

	f.Fuzz(func(t *testing.T, data []byte) {
		ctx := context.Background()
		// Every lookup still goes to the parent; forgetting keeps the
		// cache from growing over a long fuzzing run.
		inWorker.ForgetLookups("")
		inProcess.ForgetLookups("")
		host := &sizedHost{}
		got := inWorker.TransformBatch(ctx, hostCallsPage(data, host))
		want := inProcess.TransformBatch(ctx, hostCallsPage(data, host))
		require.Len(t, got, len(want))
		for i := range want {
			require.NoError(t, want[i].Err, "record %d in process", i)
			require.NoError(t, got[i].Err, "record %d in a worker", i)
			require.Equal(t, want[i].Output, got[i].Output, "record %d", i)
		}
	})
}
