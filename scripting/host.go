package scripting

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
)

// Host is what a script reaches the world through: the engine implements
// it, scripting never sees a database driver or an HTTP client. Every value
// crossing it is an engine value (see doc.go). Methods may be called from
// several goroutines at once (several records of a page in several
// workers).
type Host interface {
	// Query runs a read-only, parameterised SQL query on the warehouse
	// ($1, $2, ... placeholders) and returns its rows.
	Query(ctx context.Context, sql string, args []any) ([]map[string]any, error)
	// Find returns the records of object on connection whose fields equal
	// match; each carries its target id under "id". Connection "" is the
	// sync's own target connection, and object "" the sync's own object.
	Find(ctx context.Context, connection, object string, match map[string]any) ([]map[string]any, error)
	// Write adds, updates or deletes one record and returns its target id.
	Write(ctx context.Context, w Write) (string, error)
	// Link returns the target id that sync's link table holds for sourceID.
	Link(ctx context.Context, sync, sourceID string) (targetID string, found bool, err error)
	// GetState returns what the script stored with SetState on an earlier
	// run (nil the first time). Standalone scripts only.
	GetState(ctx context.Context) (any, error)
	// SetState stores value for the script's next run.
	SetState(ctx context.Context, value any) error
	// Log receives each line the script prints or logs, as it happens.
	Log(msg string)
}

// WriteOp is what a Write asks the target to do.
type WriteOp string

const (
	OpAdd    WriteOp = "add"
	OpUpdate WriteOp = "update"
	OpDelete WriteOp = "delete"
)

// Write is one write a script asks for through a pq connection.
type Write struct {
	Connection string // "" is the sync's own target connection
	Object     string
	Op         WriteOp
	ID         string // the target id, for OpUpdate and OpDelete
	// SourceID, when the script gave one, keys the write in the script's
	// link table: the engine turns an add whose SourceID is already linked
	// into an update of the linked record, so a rerun never writes twice.
	SourceID string
	Record   map[string]any // nil for OpDelete
}

// Stats counts a Script's calls to its Host, cache hits included, so the
// engine can put API usage in the run.
type Stats struct {
	Queries  int64 // Host.Query calls
	Finds    int64 // Host.Find calls (API lookups made)
	FindHits int64 // lookups answered from the cache
	Links    int64 // Host.Link calls
	LinkHits int64 // link look-ups answered from the cache
	Writes   int64 // Host.Write calls
}

// lookupCache remembers Find and Link answers for one Script (one run):
// the same lookup with the same arguments costs one API call per run. A
// write through pq forgets the written connection's lookups; the engine
// calls Script.ForgetLookups after its own writes.
type lookupCache struct {
	mu    sync.Mutex
	finds map[string]map[string][]map[string]any // connection -> object+match key -> rows
	links map[string]linkAnswer

	queries, findCalls, findHits, linkCalls, linkHits, writes atomic.Int64
}

type linkAnswer struct {
	targetID string
	found    bool
}

func newLookupCache() *lookupCache {
	return &lookupCache{
		finds: map[string]map[string][]map[string]any{},
		links: map[string]linkAnswer{},
	}
}

func (c *lookupCache) stats() Stats {
	return Stats{
		Queries:  c.queries.Load(),
		Finds:    c.findCalls.Load(),
		FindHits: c.findHits.Load(),
		Links:    c.linkCalls.Load(),
		LinkHits: c.linkHits.Load(),
		Writes:   c.writes.Load(),
	}
}

func (c *lookupCache) forget(connection string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	delete(c.finds, connection)
}

// cachedHost is the Host a script's pq calls go through: it counts every
// call and answers repeated lookups from the cache.
type cachedHost struct {
	cache *lookupCache
	host  Host
}

func (h cachedHost) Query(ctx context.Context, sql string, args []any) ([]map[string]any, error) {
	h.cache.queries.Add(1)
	return h.host.Query(ctx, sql, args)
}

func (h cachedHost) Find(ctx context.Context, connection, object string, match map[string]any) ([]map[string]any, error) {
	key, err := findKey(object, match)
	if err != nil {
		return nil, err
	}
	h.cache.mu.Lock()
	rows, ok := h.cache.finds[connection][key]
	h.cache.mu.Unlock()
	if ok {
		h.cache.findHits.Add(1)
		return copyRows(rows)
	}
	h.cache.findCalls.Add(1)
	rows, err = h.host.Find(ctx, connection, object, match)
	if err != nil {
		return nil, err
	}
	kept, err := copyRows(rows)
	if err != nil {
		return nil, err
	}
	h.cache.mu.Lock()
	if h.cache.finds[connection] == nil {
		h.cache.finds[connection] = map[string][]map[string]any{}
	}
	h.cache.finds[connection][key] = kept
	h.cache.mu.Unlock()
	return rows, nil
}

func (h cachedHost) Write(ctx context.Context, w Write) (string, error) {
	h.cache.writes.Add(1)
	h.cache.forget(w.Connection)
	return h.host.Write(ctx, w)
}

func (h cachedHost) Link(ctx context.Context, sync, sourceID string) (string, bool, error) {
	key := sync + "\x00" + sourceID
	h.cache.mu.Lock()
	a, ok := h.cache.links[key]
	h.cache.mu.Unlock()
	if ok {
		h.cache.linkHits.Add(1)
		return a.targetID, a.found, nil
	}
	h.cache.linkCalls.Add(1)
	id, found, err := h.host.Link(ctx, sync, sourceID)
	if err != nil {
		return "", false, err
	}
	h.cache.mu.Lock()
	h.cache.links[key] = linkAnswer{targetID: id, found: found}
	h.cache.mu.Unlock()
	return id, found, nil
}

func (h cachedHost) GetState(ctx context.Context) (any, error) { return h.host.GetState(ctx) }

func (h cachedHost) SetState(ctx context.Context, value any) error {
	return h.host.SetState(ctx, value)
}

func (h cachedHost) Log(msg string) { h.host.Log(msg) }

// findKey is a canonical key for a lookup: the object and the match fields
// in sorted order, each value with its type.
func findKey(object string, match map[string]any) (string, error) {
	var b strings.Builder
	b.WriteString(object)
	keys := make([]string, 0, len(match))
	for k := range match {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	var enc encoder
	for _, k := range keys {
		enc.string(k)
		if err := enc.value(match[k], k); err != nil {
			return "", err
		}
	}
	b.WriteByte(0)
	b.Write(enc.buf)
	return b.String(), nil
}

func copyRows(rows []map[string]any) ([]map[string]any, error) {
	out := make([]map[string]any, len(rows))
	for i, r := range rows {
		c, err := deepCopy(r, 0)
		if err != nil {
			return nil, err
		}
		out[i], _ = c.(map[string]any)
	}
	return out, nil
}

// ErrNoHost is returned by pq calls when the caller gave no Host (an
// in-memory test of a transform that needs none, for example).
var ErrNoHost = errors.New("not available here: this call has no engine behind it")

// noHost is the Host of a call made without one.
type noHost struct{}

func (noHost) Query(context.Context, string, []any) ([]map[string]any, error) {
	return nil, ErrNoHost
}

func (noHost) Find(context.Context, string, string, map[string]any) ([]map[string]any, error) {
	return nil, ErrNoHost
}
func (noHost) Write(context.Context, Write) (string, error) { return "", ErrNoHost }
func (noHost) Link(context.Context, string, string) (string, bool, error) {
	return "", false, ErrNoHost
}
func (noHost) GetState(context.Context) (any, error) { return nil, ErrNoHost }
func (noHost) SetState(context.Context, any) error   { return ErrNoHost }
func (noHost) Log(string)                            {}

// checkWrite validates a Write before it reaches the Host.
func checkWrite(w Write) error {
	if w.Object == "" {
		return fmt.Errorf("object name is empty")
	}
	switch w.Op {
	case OpAdd:
	case OpUpdate, OpDelete:
		if w.ID == "" {
			return fmt.Errorf("%s needs a target id", w.Op)
		}
	default:
		return fmt.Errorf("unknown write %q", w.Op)
	}
	return nil
}
