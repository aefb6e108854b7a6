package scripting

import (
	"context"
	"fmt"
	"reflect"
	"strconv"
	"sync"
)

// MemoryHost is a Host kept in memory: target records, link tables,
// warehouse rows and state as plain maps. `ferry script test` gives it to
// transforms under test (so they need no target and no warehouse); Go
// tests of the engine may use it too. The zero value is ready to use.
type MemoryHost struct {
	mu sync.Mutex
	// Records holds target records by "object" (the sync's own
	// connection) or "connection/object"; each record has its "id".
	Records map[string][]map[string]any
	// Links holds link tables: sync -> source id -> target id.
	Links map[string]map[string]string
	// Rows answers Query by exact SQL text.
	Rows map[string][]map[string]any
	// State is what GetState returns and SetState replaces.
	State any
	// Writes lists every Write, in order; Logs every logged line.
	Writes []Write
	Logs   []string
	nextID int
}

var _ Host = (*MemoryHost)(nil)

func memKey(connection, object string) string {
	if connection == "" {
		return object
	}
	return connection + "/" + object
}

// Query returns Rows[sql], or an error naming the query.
func (h *MemoryHost) Query(_ context.Context, sql string, _ []any) ([]map[string]any, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	rows, ok := h.Rows[sql]
	if !ok {
		return nil, fmt.Errorf("no fixture rows for query %q", sql)
	}
	return copyRows(rows)
}

// Find returns the records of object whose fields equal match.
func (h *MemoryHost) Find(_ context.Context, connection, object string, match map[string]any) ([]map[string]any, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	var out []map[string]any
	for _, r := range h.Records[memKey(connection, object)] {
		if matches(r, match) {
			out = append(out, r)
		}
	}
	return copyRows(out)
}

func matches(r, match map[string]any) bool {
	for k, want := range match {
		got, ok := r[k]
		if !ok || !sameValue(got, want) {
			return false
		}
	}
	return true
}

// sameValue compares engine values, numbers by value whatever their Go type.
func sameValue(a, b any) bool {
	if reflect.DeepEqual(a, b) {
		return true
	}
	as, aok := numberString(a)
	bs, bok := numberString(b)
	return aok && bok && as == bs
}

func numberString(v any) (string, bool) {
	switch x := v.(type) {
	case int64:
		return strconv.FormatInt(x, 10), true
	case int:
		return strconv.Itoa(x), true
	case float64:
		return strconv.FormatFloat(x, 'f', -1, 64), true
	case Decimal:
		return x.s, true
	}
	return "", false
}

// Write applies w to Records and returns the record's id; an add gets the
// next id ("1", "2", ...).
func (h *MemoryHost) Write(_ context.Context, w Write) (string, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.Records == nil {
		h.Records = map[string][]map[string]any{}
	}
	h.Writes = append(h.Writes, w)
	key := memKey(w.Connection, w.Object)
	switch w.Op {
	case OpAdd:
		h.nextID++
		id := strconv.Itoa(h.nextID)
		rec, err := deepCopy(w.Record, 0)
		if err != nil {
			return "", err
		}
		m, _ := rec.(map[string]any)
		if m == nil {
			m = map[string]any{}
		}
		m["id"] = id
		h.Records[key] = append(h.Records[key], m)
		return id, nil
	case OpUpdate:
		for _, r := range h.Records[key] {
			if fmt.Sprint(r["id"]) == w.ID {
				for k, v := range w.Record {
					r[k] = v
				}
				return w.ID, nil
			}
		}
		return "", fmt.Errorf("%s: no record with id %s", key, w.ID)
	case OpDelete:
		recs := h.Records[key]
		for i, r := range recs {
			if fmt.Sprint(r["id"]) == w.ID {
				h.Records[key] = append(recs[:i:i], recs[i+1:]...)
				return w.ID, nil
			}
		}
		return "", fmt.Errorf("%s: no record with id %s", key, w.ID)
	}
	return "", fmt.Errorf("unknown write %q", w.Op)
}

// Link returns Links[sync][sourceID].
func (h *MemoryHost) Link(_ context.Context, sync, sourceID string) (string, bool, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	id, ok := h.Links[sync][sourceID]
	return id, ok, nil
}

// GetState returns State.
func (h *MemoryHost) GetState(context.Context) (any, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.State, nil
}

// SetState replaces State.
func (h *MemoryHost) SetState(_ context.Context, v any) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.State = v
	return nil
}

// Log appends to Logs.
func (h *MemoryHost) Log(msg string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.Logs = append(h.Logs, msg)
}
