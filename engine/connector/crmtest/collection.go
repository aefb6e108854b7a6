package crmtest

import (
	"encoding/json"
	"fmt"
	"net/http"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
)

// collection is one object's records. Its mutex is held only for map work.
type collection struct {
	name     string
	rules    Object
	patterns map[string]*regexp.Regexp

	mu      sync.Mutex
	seq     int64
	records map[string]*record
	unique  map[string]map[string]string // field -> value key -> record id
}

type record struct {
	seq    int64
	id     any // string, or json.Number with NumericIDs
	fields map[string]any
}

// flat returns a copy of the record's fields with the id under "id".
func (r *record) flat() map[string]any {
	out := make(map[string]any, len(r.fields)+1)
	for k, v := range r.fields {
		out[k] = v
	}
	out["id"] = r.id
	return out
}

// reply is a status and a JSON body (nil for none).
type reply struct {
	status int
	body   any
}

func message(status int, format string, args ...any) reply {
	return reply{status, map[string]any{"message": fmt.Sprintf(format, args...)}}
}

type fieldError struct {
	Field   string `json:"field"`
	Message string `json:"message"`
}

func (c *collection) response(r *record) any {
	if c.rules.BodyKey == "" {
		return r.flat()
	}
	fields := make(map[string]any, len(r.fields))
	for k, v := range r.fields {
		fields[k] = v
	}
	return map[string]any{"id": r.id, c.rules.BodyKey: fields}
}

// checkFields applies the pattern rules to fields, and the required rules
// too when complete (the record as it will be stored).
func (c *collection) checkFields(fields map[string]any, complete bool) []fieldError {
	var errs []fieldError
	if complete {
		for _, f := range c.rules.Required {
			v, ok := fields[f]
			if !ok || v == nil || v == "" {
				errs = append(errs, fieldError{f, "is required"})
			}
		}
	}
	names := make([]string, 0, len(c.patterns))
	for f := range c.patterns {
		names = append(names, f)
	}
	sort.Strings(names)
	for _, f := range names {
		v, ok := fields[f]
		if !ok || v == nil {
			continue
		}
		s, isString := v.(string)
		switch {
		case !isString:
			errs = append(errs, fieldError{f, "must be a string"})
		case !c.patterns[f].MatchString(s):
			errs = append(errs, fieldError{f, fmt.Sprintf("%q does not match %s", s, c.patterns[f])})
		}
	}
	return errs
}

func invalid(errs []fieldError) reply {
	return reply{http.StatusUnprocessableEntity, map[string]any{"errors": errs}}
}

// conflict returns a 409 reply when fields would break a unique rule; self
// is the id of the record being changed ("" on create). Called with c.mu held.
func (c *collection) conflict(fields map[string]any, self string) (reply, bool) {
	for _, f := range c.rules.Unique {
		v, ok := fields[f]
		if !ok || v == nil {
			continue
		}
		if owner, taken := c.unique[f][valueKey(v)]; taken && owner != self {
			return message(http.StatusConflict, "%s with %s %s already exists", singular(c.name), f, valueKey(v)), true
		}
	}
	return reply{}, false
}

// index adds (add true) or removes the record's unique values. Called with c.mu held.
func (c *collection) index(id string, fields map[string]any, add bool) {
	for _, f := range c.rules.Unique {
		v, ok := fields[f]
		if !ok || v == nil {
			continue
		}
		if add {
			c.unique[f][valueKey(v)] = id
		} else {
			delete(c.unique[f], valueKey(v))
		}
	}
}

func (c *collection) create(fields map[string]any) reply {
	if _, ok := fields["id"]; ok {
		return message(http.StatusBadRequest, "id is assigned by the server")
	}
	if errs := c.checkFields(fields, true); len(errs) > 0 {
		return invalid(errs)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if rep, bad := c.conflict(fields, ""); bad {
		return rep
	}
	return reply{http.StatusCreated, c.response(c.insertLocked(fields))}
}

// update merges fields into the record (replace false, PATCH) or replaces
// its fields (replace true, PUT).
func (c *collection) update(id string, fields map[string]any, replace bool) reply {
	if v, ok := fields["id"]; ok && valueKey(v) != id {
		return message(http.StatusBadRequest, "id cannot be changed")
	}
	delete(fields, "id")
	if errs := c.checkFields(fields, false); len(errs) > 0 {
		return invalid(errs)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	r, ok := c.records[id]
	if !ok {
		return message(http.StatusNotFound, "%s %s not found", singular(c.name), id)
	}
	merged := fields
	if !replace {
		merged = make(map[string]any, len(r.fields)+len(fields))
		for k, v := range r.fields {
			merged[k] = v
		}
		for k, v := range fields {
			merged[k] = v
		}
	}
	if errs := c.checkFields(merged, true); len(errs) > 0 {
		return invalid(errs)
	}
	if rep, bad := c.conflict(merged, id); bad {
		return rep
	}
	c.index(id, r.fields, false)
	r.fields = merged
	c.index(id, merged, true)
	return reply{http.StatusOK, c.response(r)}
}

func (c *collection) get(id string) reply {
	c.mu.Lock()
	defer c.mu.Unlock()
	r, ok := c.records[id]
	if !ok {
		return message(http.StatusNotFound, "%s %s not found", singular(c.name), id)
	}
	return reply{http.StatusOK, c.response(r)}
}

func (c *collection) remove(id string) reply {
	c.mu.Lock()
	defer c.mu.Unlock()
	r, ok := c.records[id]
	if !ok {
		return message(http.StatusNotFound, "%s %s not found", singular(c.name), id)
	}
	c.index(id, r.fields, false)
	delete(c.records, id)
	return reply{http.StatusNoContent, nil}
}

// searchable reports whether search filters on field.
func (c *collection) searchable(field string) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.rules.Searchable == nil || slices.Contains(c.rules.Searchable, field)
}

// search returns the records whose fields equal every match value (compared
// as text); with no match it lists every record.
func (c *collection) search(match map[string]string) reply {
	c.mu.Lock()
	var found []*record
	if idx, want, ok := c.uniqueIndex(match); ok {
		if id, hit := idx[want]; hit {
			found = append(found, c.records[id])
		}
	} else {
		found = c.scan(match)
	}
	sort.Slice(found, func(i, j int) bool { return found[i].seq < found[j].seq })
	results := make([]any, 0, len(found))
	for _, r := range found {
		results = append(results, c.response(r))
	}
	c.mu.Unlock()
	return reply{http.StatusOK, map[string]any{"results": results}}
}

// uniqueIndex returns the index of the one unique field match names, so that
// a lookup by email does not scan. Called with c.mu held.
func (c *collection) uniqueIndex(match map[string]string) (map[string]string, string, bool) {
	if len(match) != 1 {
		return nil, "", false
	}
	for f, want := range match {
		idx, ok := c.unique[f]
		return idx, want, ok
	}
	return nil, "", false
}

// scan is a full scan for search. Called with c.mu held.
func (c *collection) scan(match map[string]string) []*record {
	var found []*record
	for _, r := range c.records {
		ok := true
		for f, want := range match {
			v, has := r.fields[f]
			if !has || v == nil || valueKey(v) != want {
				ok = false
				break
			}
		}
		if ok {
			found = append(found, r)
		}
	}
	return found
}

// valueKey is the text form of a JSON value, used for unique rules, search and ids.
func valueKey(v any) string {
	switch v := v.(type) {
	case string:
		return v
	case json.Number:
		return v.String()
	case bool:
		return strconv.FormatBool(v)
	default:
		b, err := json.Marshal(v)
		if err != nil {
			return fmt.Sprint(v)
		}
		return string(b)
	}
}

// singular turns "contacts" into "contact" for messages.
func singular(object string) string {
	if s, ok := strings.CutSuffix(object, "ies"); ok {
		return s + "y"
	}
	return strings.TrimSuffix(object, "s")
}
