// Package enginetest holds what the engine's tests and benchmarks share: an
// in-process target and helpers that build warehouses.
package enginetest

import (
	"context"
	"fmt"
	"strconv"
	"sync"
	"time"

	"github.com/ferry-sync/ferry/engine/connector"
)

// Memory is an in-process target: records kept in maps, ids assigned in
// order, a validation hook, and counters. It has no latency, so benchmarks
// against it measure the engine alone.
type Memory struct {
	mu      sync.Mutex
	next    int
	objects map[string]map[string]map[string]any
	// Validate, when set, rejects a payload by returning a message.
	Validate func(object string, payload map[string]any) string
	// AuthFail makes every call fail as bad credentials.
	AuthFail bool
	// Stamp names a field set to the time of every write and edit, as
	// applications stamp updated_at.
	Stamp   string
	calls   int
	writes  int
	finds   int
	deletes int
}

// NewMemory returns an empty in-process target.
func NewMemory() *Memory {
	return &Memory{objects: map[string]map[string]map[string]any{}}
}

// Write implements connector.Target.
func (m *Memory) Write(ctx context.Context, object string, changes []connector.Change) ([]connector.Result, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.calls++
	results := make([]connector.Result, len(changes))
	if m.AuthFail {
		m.writes++
		results[0] = connector.Result{Done: true, Err: &connector.Error{Class: connector.Auth, Status: 401, Message: "invalid token"}}
		return results, results[0].Err
	}
	objs := m.objects[object]
	if objs == nil {
		objs = map[string]map[string]any{}
		m.objects[object] = objs
	}
	for i, c := range changes {
		if err := ctx.Err(); err != nil {
			return results, err
		}
		// Like every real kind, nothing is written once the run's gate is
		// closed (it lost its claim on the sync).
		if err := connector.CheckGate(ctx); err != nil {
			return results, err
		}
		m.writes++
		// An update changes the fields it sends and keeps the others, as a
		// PATCH or an SQL UPDATE does; the record as it would be is checked.
		rec := map[string]any{}
		if c.Op == connector.OpUpdate {
			old, ok := objs[c.TargetID]
			if !ok {
				results[i] = connector.Result{Done: true, Err: &connector.Error{Class: connector.NotFound, Status: 404, Message: fmt.Sprintf("no %s with id %s", object, c.TargetID)}}
				continue
			}
			for k, v := range old {
				rec[k] = v
			}
		}
		for k, v := range c.Payload {
			rec[k] = v
		}
		if m.Stamp != "" {
			rec[m.Stamp] = time.Now().UTC()
		}
		if m.Validate != nil {
			if msg := m.Validate(object, rec); msg != "" {
				results[i] = connector.Result{Done: true, Err: &connector.Error{Class: connector.Rejected, Status: 422, Message: msg}}
				continue
			}
		}
		switch c.Op {
		case connector.OpInsert:
			m.next++
			id := strconv.Itoa(m.next)
			objs[id] = rec
			results[i] = connector.Result{Done: true, TargetID: id}
		case connector.OpUpdate:
			objs[c.TargetID] = rec
			results[i] = connector.Result{Done: true, TargetID: c.TargetID}
		}
	}
	return results, nil
}

// Close implements connector.Target.
func (m *Memory) Close() error { return nil }

// Records returns a copy of the records of object, by id.
func (m *Memory) Records(object string) map[string]map[string]any {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := map[string]map[string]any{}
	for id, r := range m.objects[object] {
		out[id] = r
	}
	return out
}

// Put stores a record as if it had been created in the target by hand.
func (m *Memory) Put(object string, payload map[string]any) string {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.objects[object] == nil {
		m.objects[object] = map[string]map[string]any{}
	}
	m.next++
	id := strconv.Itoa(m.next)
	if m.Stamp != "" && payload[m.Stamp] == nil {
		payload[m.Stamp] = time.Now().UTC()
	}
	m.objects[object][id] = payload
	return id
}

// Edit changes fields of a record as a person would in the application
// (not counted as a write).
func (m *Memory) Edit(object, id string, fields map[string]any) {
	m.mu.Lock()
	defer m.mu.Unlock()
	rec := map[string]any{}
	for k, v := range m.objects[object][id] {
		rec[k] = v
	}
	for k, v := range fields {
		rec[k] = v
	}
	if m.Stamp != "" {
		rec[m.Stamp] = time.Now().UTC()
	}
	m.objects[object][id] = rec
}

// Delete implements connector.Deleter: a record already gone counts as
// deleted.
func (m *Memory) Delete(ctx context.Context, object string, ids []string) ([]connector.Result, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.calls++
	results := make([]connector.Result, len(ids))
	if err := connector.CheckGate(ctx); err != nil {
		return results, err
	}
	for i, id := range ids {
		delete(m.objects[object], id)
		m.deletes++
		results[i] = connector.Result{Done: true, TargetID: id}
	}
	return results, nil
}

// Deletes counts the records the target was asked to delete.
func (m *Memory) Deletes() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.deletes
}

// Writes counts the changes the target was asked to apply.
func (m *Memory) Writes() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.writes
}

// Discard is an in-process target that assigns ids and keeps nothing but
// counts, so that benchmarks measure the engine's memory, not the target's.
type Discard struct {
	mu     sync.Mutex
	next   int
	writes int
}

// Write implements connector.Target.
func (d *Discard) Write(ctx context.Context, object string, changes []connector.Change) ([]connector.Result, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	results := make([]connector.Result, len(changes))
	for i, c := range changes {
		d.writes++
		id := c.TargetID
		if c.Op == connector.OpInsert {
			d.next++
			id = strconv.Itoa(d.next)
		}
		results[i] = connector.Result{Done: true, TargetID: id}
	}
	return results, ctx.Err()
}

// Close implements connector.Target.
func (d *Discard) Close() error { return nil }

// Writes counts the changes the target was asked to apply.
func (d *Discard) Writes() int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.writes
}

// Find implements connector.Finder: records whose fields equal match, each
// with its id under "id".
func (m *Memory) Find(ctx context.Context, object string, match map[string]any) ([]map[string]any, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.finds++
	var out []map[string]any
	for id, r := range m.objects[object] {
		ok := true
		for k, v := range match {
			if fmt.Sprint(r[k]) != fmt.Sprint(v) {
				ok = false
				break
			}
		}
		if ok {
			found := map[string]any{"id": id}
			for k, v := range r {
				found[k] = v
			}
			out = append(out, found)
		}
	}
	return out, ctx.Err()
}

// Finds counts the lookups the target answered.
func (m *Memory) Finds() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.finds
}
