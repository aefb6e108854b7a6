package crmtest

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"strconv"

	"github.com/ferry-sync/ferry/internal/jsonx"
)

// DefaultMaxBatch is how many inputs a batch request may carry unless
// Options.MaxBatch says otherwise.
const DefaultMaxBatch = 100

// Batches, as CRMs document them (HubSpot's shape):
//
//	POST /{object}/batch/create {"inputs": [{…fields}]}             201 {"results": [{"id", …}]}
//	POST /{object}/batch/update {"inputs": [{"id", "fields": {…}}]} 200 {"results": [{"id", …}]}
//
// (with Object.BodyKey, the fields of both are under that key instead).
// A batch is all or nothing: the server checks every input in order, as if
// the ones before it were written, and at the first bad one writes none of
// them and answers as a single request with that input would have (422,
// 409, 404), without saying which input it was. Results come in input
// order. More than MaxBatch inputs is a 400.

// batchInputs reads a batch body: {"inputs": [objects]}.
func (s *Server) batchInputs(r *http.Request) ([]map[string]any, reply, bool) {
	b, err := io.ReadAll(io.LimitReader(r.Body, 64*maxBody+1))
	if err != nil {
		return nil, message(http.StatusBadRequest, "reading body: %v", err), false
	}
	body, ok := jsonx.DecodeObject(b)
	if !ok {
		dec := json.NewDecoder(bytes.NewReader(b))
		dec.UseNumber()
		if err := dec.Decode(&body); err != nil || body == nil {
			return nil, message(http.StatusBadRequest, "body must be a JSON object"), false
		}
	}
	list, ok := body["inputs"].([]any)
	if !ok {
		return nil, message(http.StatusBadRequest, `body must be {"inputs": [...]}`), false
	}
	if len(list) > s.maxBatch {
		return nil, message(http.StatusBadRequest, "a batch holds at most %d inputs, not %d", s.maxBatch, len(list)), false
	}
	inputs := make([]map[string]any, len(list))
	for i, item := range list {
		m, ok := item.(map[string]any)
		if !ok {
			return nil, message(http.StatusBadRequest, "inputs[%d] must be an object", i), false
		}
		inputs[i] = m
	}
	return inputs, reply{}, true
}

// fieldsOf takes the fields of a batch input: under BodyKey, or under
// "fields" for an update without one, or the input itself for a create
// without one.
func (c *collection) fieldsOf(input map[string]any, update bool) (map[string]any, bool) {
	key := c.rules.BodyKey
	if key == "" && !update {
		return input, true
	}
	if key == "" {
		key = "fields"
	}
	fields, ok := input[key].(map[string]any)
	return fields, ok
}

func (c *collection) batchCreate(inputs []map[string]any) reply {
	all := make([]map[string]any, len(inputs))
	for i, in := range inputs {
		fields, ok := c.fieldsOf(in, false)
		if !ok {
			return message(http.StatusBadRequest, "inputs[%d] must be {%q: {...}}", i, c.rules.BodyKey)
		}
		if _, ok := fields["id"]; ok {
			return message(http.StatusBadRequest, "id is assigned by the server")
		}
		if errs := c.checkFields(fields, true); len(errs) > 0 {
			return invalid(errs)
		}
		all[i] = fields
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	// Unique values must be free, also of the inputs before.
	taken := map[string]map[string]bool{}
	for _, fields := range all {
		if rep, bad := c.conflict(fields, ""); bad {
			return rep
		}
		for _, f := range c.rules.Unique {
			v, ok := fields[f]
			if !ok || v == nil {
				continue
			}
			if taken[f] == nil {
				taken[f] = map[string]bool{}
			}
			if taken[f][valueKey(v)] {
				return message(http.StatusConflict, "%s with %s %s already exists", singular(c.name), f, valueKey(v))
			}
			taken[f][valueKey(v)] = true
		}
	}
	results := make([]any, len(all))
	for i, fields := range all {
		results[i] = c.response(c.insertLocked(fields))
	}
	return reply{http.StatusCreated, map[string]any{"results": results}}
}

func (c *collection) batchUpdate(inputs []map[string]any) reply {
	type change struct {
		id     string
		fields map[string]any
	}
	changes := make([]change, len(inputs))
	for i, in := range inputs {
		fields, ok := c.fieldsOf(in, true)
		if !ok {
			key := c.rules.BodyKey
			if key == "" {
				key = "fields"
			}
			return message(http.StatusBadRequest, "inputs[%d] must be {\"id\": …, %q: {...}}", i, key)
		}
		if errs := c.checkFields(fields, false); len(errs) > 0 {
			return invalid(errs)
		}
		changes[i] = change{valueKey(in["id"]), fields}
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	merged := make([]map[string]any, len(changes))
	owner := map[string]map[string]string{} // unique field -> value -> id, as the batch leaves them
	for i, ch := range changes {
		r, ok := c.records[ch.id]
		if !ok {
			return message(http.StatusNotFound, "%s %s not found", singular(c.name), ch.id)
		}
		m := make(map[string]any, len(r.fields)+len(ch.fields))
		for k, v := range r.fields {
			m[k] = v
		}
		for k, v := range ch.fields {
			m[k] = v
		}
		if errs := c.checkFields(m, true); len(errs) > 0 {
			return invalid(errs)
		}
		if rep, bad := c.conflict(m, ch.id); bad {
			return rep
		}
		for _, f := range c.rules.Unique {
			v, ok := m[f]
			if !ok || v == nil {
				continue
			}
			if owner[f] == nil {
				owner[f] = map[string]string{}
			}
			if other, dup := owner[f][valueKey(v)]; dup && other != ch.id {
				return message(http.StatusConflict, "%s with %s %s already exists", singular(c.name), f, valueKey(v))
			}
			owner[f][valueKey(v)] = ch.id
		}
		merged[i] = m
	}
	results := make([]any, len(changes))
	for i, ch := range changes {
		r := c.records[ch.id]
		c.index(ch.id, r.fields, false)
		r.fields = merged[i]
		c.index(ch.id, merged[i], true)
		results[i] = c.response(r)
	}
	return reply{http.StatusOK, map[string]any{"results": results}}
}

// insertLocked stores a new record. Called with c.mu held, after checks.
func (c *collection) insertLocked(fields map[string]any) *record {
	c.seq++
	r := &record{seq: c.seq, fields: fields}
	key := c.rules.IDPrefix + strconv.FormatInt(c.seq, 10)
	r.id = key
	if c.rules.NumericIDs {
		key = strconv.FormatInt(c.seq, 10)
		r.id = json.Number(key)
	}
	c.records[key] = r
	c.index(key, fields, true)
	return r
}
