package scripting

import (
	"fmt"
	"strings"

	"go.starlark.net/starlark"
)

// pqModule is the pq argument of transform and main. See doc.go for its API.
type pqModule struct {
	c          *call
	standalone bool // main(pq): no record to decide on
}

var _ starlark.HasAttrs = (*pqModule)(nil)

var pqAttrs = []string{
	"connect", "dbconnect", "get_state", "insert", "link", "log", "lookup",
	"query", "set_state", "skip", "source_id", "update_id",
}

func (p *pqModule) String() string        { return "<pq>" }
func (p *pqModule) Type() string          { return "pq" }
func (p *pqModule) Freeze()               {}
func (p *pqModule) Truth() starlark.Bool  { return true }
func (p *pqModule) Hash() (uint32, error) { return 0, fmt.Errorf("unhashable type: pq") }
func (p *pqModule) AttrNames() []string   { return pqAttrs }

func (p *pqModule) Attr(name string) (starlark.Value, error) {
	var fn builtinFunc
	switch name {
	case "source_id":
		if p.c.sourceID == "" {
			return starlark.None, nil
		}
		return starlark.String(p.c.sourceID), nil
	case "connect":
		fn = p.connect
	case "dbconnect":
		fn = p.dbconnect
	case "query":
		fn = p.query
	case "lookup":
		fn = p.lookup
	case "link":
		fn = p.link
	case "log":
		fn = p.log
	case "update_id":
		fn = p.updateID
	case "insert":
		fn = p.insertRecord
	case "skip":
		fn = p.skipRecord
	case "get_state":
		fn = p.getState
	case "set_state":
		fn = p.setState
	default:
		return nil, nil
	}
	return safeBuiltin(starlark.NewBuiltin("pq."+name, fn)), nil
}

// hostCall wraps an engine error so the ScriptError says the engine failed.
func hostCall(fn string, err error) error {
	return &hostError{call: fn, err: err}
}

// connect(name) returns a connection to write to and look up in.
func (p *pqModule) connect(_ *starlark.Thread, b *starlark.Builtin, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
	var name string
	if err := starlark.UnpackArgs(b.Name(), args, kwargs, "name", &name); err != nil {
		return nil, err
	}
	if name == "" {
		return nil, fmt.Errorf("%s: empty connection name", b.Name())
	}
	return &connection{c: p.c, name: name}, nil
}

// dbconnect(name="warehouse") returns the warehouse, for fetch().
func (p *pqModule) dbconnect(_ *starlark.Thread, b *starlark.Builtin, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
	name := "warehouse"
	if err := starlark.UnpackArgs(b.Name(), args, kwargs, "name?", &name); err != nil {
		return nil, err
	}
	if name != "warehouse" {
		return nil, fmt.Errorf("%s: unknown database %q: Ferry reads only its warehouse (pq.dbconnect() or pq.dbconnect(\"warehouse\"))", b.Name(), name)
	}
	return &database{c: p.c}, nil
}

// query(sql, params=[]) is pq.dbconnect().fetch(sql, params).
func (p *pqModule) query(_ *starlark.Thread, b *starlark.Builtin, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
	return fetch(p.c, b, args, kwargs)
}

func fetch(c *call, b *starlark.Builtin, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
	var sql string
	var params starlark.Value = starlark.None
	if err := starlark.UnpackArgs(b.Name(), args, kwargs, "sql", &sql, "params?", &params); err != nil {
		return nil, err
	}
	var goArgs []any
	if params != starlark.None {
		v, err := FromStarlark(params)
		if err != nil {
			return nil, fmt.Errorf("%s: params: %w", b.Name(), err)
		}
		list, ok := v.([]any)
		if !ok {
			return nil, fmt.Errorf("%s: params must be a list, got a %s", b.Name(), params.Type())
		}
		goArgs = list
	}
	host, err := c.hostAPI(b.Name())
	if err != nil {
		return nil, err
	}
	rows, err := host.Query(c.hostContext(), sql, goArgs)
	if err != nil {
		return nil, hostCall(b.Name(), err)
	}
	return rowsValue(b.Name(), rows)
}

func rowsValue(fn string, rows []map[string]any) (starlark.Value, error) {
	out := make([]starlark.Value, len(rows))
	for i, r := range rows {
		d, err := dictFromMap(r, "row", nil)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", fn, err)
		}
		out[i] = d
	}
	return starlark.NewList(out), nil
}

// matchArgs reads the match of a lookup: a dict after the object, or
// keyword arguments, or both.
func matchArgs(fn string, args starlark.Tuple, kwargs []starlark.Tuple) (map[string]any, error) {
	match := map[string]any{}
	switch len(args) {
	case 0:
	case 1:
		m, err := mapFromValue(args[0], "match")
		if err != nil {
			return nil, fmt.Errorf("%s: %w", fn, err)
		}
		match = m
	default:
		return nil, fmt.Errorf("%s: got %d positional arguments after the object, want at most a match dict", fn, len(args))
	}
	for _, kv := range kwargs {
		k := string(kv[0].(starlark.String))
		v, cerr := fromStarlark(kv[1], 0)
		if cerr != nil {
			return nil, fmt.Errorf("%s: %w", fn, cerr.at(k))
		}
		match[k] = v
	}
	if len(match) == 0 {
		return nil, fmt.Errorf("%s: no fields to match on: pass them as name=value (a lookup by \"id\" alone is not a lookup)", fn)
	}
	return match, nil
}

// find runs a lookup through the Host (and its cache).
func find(c *call, fn, conn, object string, match map[string]any) ([]map[string]any, error) {
	host, err := c.hostAPI(fn)
	if err != nil {
		return nil, err
	}
	rows, err := host.Find(c.hostContext(), conn, object, match)
	if err != nil {
		return nil, hostCall(fn, err)
	}
	return rows, nil
}

// lookup([object], **fields) looks up the sync's own target and returns
// the first matching record (a dict with its "id") or None. Without an
// object it searches the sync's own object.
func (p *pqModule) lookup(_ *starlark.Thread, b *starlark.Builtin, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
	object := ""
	if len(args) > 0 {
		s, ok := args[0].(starlark.String)
		if !ok {
			return nil, fmt.Errorf("%s: object must be a string, got a %s", b.Name(), args[0].Type())
		}
		object, args = string(s), args[1:]
	}
	match, err := matchArgs(b.Name(), args, kwargs)
	if err != nil {
		return nil, err
	}
	rows, err := find(p.c, b.Name(), "", object, match)
	if err != nil {
		return nil, err
	}
	return firstRow(b.Name(), rows)
}

// firstRow returns the one record a lookup found, None for none, and an
// error when several match: picking one would link the record to a target
// record chosen at random.
func firstRow(fn string, rows []map[string]any) (starlark.Value, error) {
	if len(rows) == 0 {
		return starlark.None, nil
	}
	if len(rows) > 1 {
		return nil, ambiguous(fn, rows)
	}
	d, err := dictFromMap(rows[0], "record", nil)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", fn, err)
	}
	return d, nil
}

// link(sync, source_id) returns the target id sync's link table holds for
// source_id, or None.
func (p *pqModule) link(_ *starlark.Thread, b *starlark.Builtin, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
	var sync string
	var sourceID starlark.Value
	if err := starlark.UnpackArgs(b.Name(), args, kwargs, "sync", &sync, "source_id", &sourceID); err != nil {
		return nil, err
	}
	if sourceID == starlark.None {
		return starlark.None, nil
	}
	id, err := idString(b.Name(), sourceID)
	if err != nil {
		return nil, err
	}
	host, err := p.c.hostAPI(b.Name())
	if err != nil {
		return nil, err
	}
	targetID, found, err := host.Link(p.c.hostContext(), sync, id)
	if err != nil {
		return nil, hostCall(b.Name(), err)
	}
	if !found {
		return starlark.None, nil
	}
	return starlark.String(targetID), nil
}

// idString accepts an id as a string or an int.
func idString(fn string, v starlark.Value) (string, error) {
	switch v := v.(type) {
	case starlark.String:
		if v == "" {
			return "", fmt.Errorf("%s: empty id", fn)
		}
		return string(v), nil
	case starlark.Int:
		return v.String(), nil
	case Decimal:
		return v.s, nil
	}
	return "", fmt.Errorf("%s: an id must be a string or an int, got a %s", fn, v.Type())
}

// log(*args, sep=" ") writes a line to the run's log, like print().
func (p *pqModule) log(_ *starlark.Thread, b *starlark.Builtin, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
	sep := " "
	if err := starlark.UnpackArgs(b.Name(), nil, kwargs, "sep?", &sep); err != nil {
		return nil, err
	}
	parts := make([]string, len(args))
	for i, a := range args {
		if s, ok := a.(starlark.String); ok {
			parts[i] = string(s)
		} else {
			parts[i] = a.String()
		}
	}
	p.c.emit(strings.Join(parts, sep))
	return starlark.None, nil
}

func (p *pqModule) needRecord(fn string) error {
	if p.standalone {
		return fmt.Errorf("%s: only a transform decides on a record; main(pq) writes with pq.connect(name)", fn)
	}
	return nil
}

// update_id(id) tells the engine to update the target record id with this
// record's payload, and to link it to the source record: the insert the
// engine would have made becomes an update, and later runs update it
// directly.
func (p *pqModule) updateID(_ *starlark.Thread, b *starlark.Builtin, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
	if err := p.needRecord(b.Name()); err != nil {
		return nil, err
	}
	var v starlark.Value
	if err := starlark.UnpackPositionalArgs(b.Name(), args, kwargs, 1, &v); err != nil {
		return nil, err
	}
	id, err := idString(b.Name(), v)
	if err != nil {
		return nil, err
	}
	p.c.targetID = id
	return starlark.None, nil
}

// insert() tells the engine to insert a new target record even though this
// source record is linked to one.
func (p *pqModule) insertRecord(_ *starlark.Thread, b *starlark.Builtin, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
	if err := p.needRecord(b.Name()); err != nil {
		return nil, err
	}
	if err := starlark.UnpackPositionalArgs(b.Name(), args, kwargs, 0); err != nil {
		return nil, err
	}
	p.c.insert = true
	return starlark.None, nil
}

// skip(reason) skips the record, whatever transform returns, with the
// reason in its link row. It returns None, so `return pq.skip("...")`
// reads well.
func (p *pqModule) skipRecord(_ *starlark.Thread, b *starlark.Builtin, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
	if err := p.needRecord(b.Name()); err != nil {
		return nil, err
	}
	reason := "skipped by the transform"
	if err := starlark.UnpackPositionalArgs(b.Name(), args, kwargs, 0, &reason); err != nil {
		return nil, err
	}
	p.c.skip, p.c.skipReason = true, reason
	return starlark.None, nil
}

// get_state() returns what set_state stored on an earlier run, or None.
func (p *pqModule) getState(_ *starlark.Thread, b *starlark.Builtin, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
	if err := starlark.UnpackPositionalArgs(b.Name(), args, kwargs, 0); err != nil {
		return nil, err
	}
	host, err := p.c.hostAPI(b.Name())
	if err != nil {
		return nil, err
	}
	v, err := host.GetState(p.c.hostContext())
	if err != nil {
		return nil, hostCall(b.Name(), err)
	}
	sv, err := ToStarlark(v)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", b.Name(), err)
	}
	return sv, nil
}

// set_state(value) stores value (anything JSON-like) for the next run.
func (p *pqModule) setState(_ *starlark.Thread, b *starlark.Builtin, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
	var v starlark.Value
	if err := starlark.UnpackPositionalArgs(b.Name(), args, kwargs, 1, &v); err != nil {
		return nil, err
	}
	gv, cerr := fromStarlark(v, 0)
	if cerr != nil {
		return nil, fmt.Errorf("%s: %w", b.Name(), cerr.at("state"))
	}
	host, err := p.c.hostAPI(b.Name())
	if err != nil {
		return nil, err
	}
	if err := host.SetState(p.c.hostContext(), gv); err != nil {
		return nil, hostCall(b.Name(), err)
	}
	return starlark.None, nil
}

// database is what pq.dbconnect returns.
type database struct{ c *call }

func (d *database) String() string        { return "<database warehouse>" }
func (d *database) Type() string          { return "database" }
func (d *database) Freeze()               {}
func (d *database) Truth() starlark.Bool  { return true }
func (d *database) Hash() (uint32, error) { return 0, fmt.Errorf("unhashable type: database") }
func (d *database) AttrNames() []string   { return []string{"fetch"} }

func (d *database) Attr(name string) (starlark.Value, error) {
	if name != "fetch" {
		return nil, nil
	}
	return safeBuiltin(starlark.NewBuiltin("fetch", func(_ *starlark.Thread, b *starlark.Builtin, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
		return fetch(d.c, b, args, kwargs)
	})), nil
}

// connection is what pq.connect returns: writes and lookups on one
// connection.
type connection struct {
	c    *call
	name string
}

var connectionAttrs = []string{"add", "delete", "find", "findone", "update", "upsert"}

func (cn *connection) String() string        { return fmt.Sprintf("<connection %s>", cn.name) }
func (cn *connection) Type() string          { return "connection" }
func (cn *connection) Freeze()               {}
func (cn *connection) Truth() starlark.Bool  { return true }
func (cn *connection) Hash() (uint32, error) { return 0, fmt.Errorf("unhashable type: connection") }
func (cn *connection) AttrNames() []string   { return connectionAttrs }

func (cn *connection) Attr(name string) (starlark.Value, error) {
	var fn builtinFunc
	switch name {
	case "add":
		fn = cn.add
	case "update":
		fn = cn.update
	case "upsert":
		fn = cn.upsert
	case "delete":
		fn = cn.delete
	case "find":
		fn = cn.find
	case "findone":
		fn = cn.findone
	default:
		return nil, nil
	}
	return safeBuiltin(starlark.NewBuiltin(name, fn)), nil
}

func (cn *connection) write(fn string, w Write) (starlark.Value, error) {
	w.Connection = cn.name
	if err := checkWrite(w); err != nil {
		return nil, fmt.Errorf("%s: %w", fn, err)
	}
	host, err := cn.c.hostAPI(fn)
	if err != nil {
		return nil, err
	}
	id, err := host.Write(cn.c.hostContext(), w)
	if err != nil {
		return nil, hostCall(fn, err)
	}
	if w.Op == OpDelete {
		return starlark.None, nil
	}
	return starlark.String(id), nil
}

func optionalID(fn string, v starlark.Value) (string, error) {
	if v == nil || v == starlark.None {
		return "", nil
	}
	return idString(fn, v)
}

// add(object, record, source_id=None) inserts and returns the new id.
func (cn *connection) add(_ *starlark.Thread, b *starlark.Builtin, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
	var object string
	var record, sourceID starlark.Value
	if err := starlark.UnpackArgs(b.Name(), args, kwargs, "object", &object, "record", &record, "source_id?", &sourceID); err != nil {
		return nil, err
	}
	rec, err := mapFromValue(record, "record")
	if err != nil {
		return nil, fmt.Errorf("%s: %w", b.Name(), err)
	}
	sid, err := optionalID(b.Name(), sourceID)
	if err != nil {
		return nil, err
	}
	return cn.write(b.Name(), Write{Object: object, Op: OpAdd, SourceID: sid, Record: rec})
}

// update(object, id, record, source_id=None) updates record id.
func (cn *connection) update(_ *starlark.Thread, b *starlark.Builtin, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
	var object string
	var id, record, sourceID starlark.Value
	if err := starlark.UnpackArgs(b.Name(), args, kwargs, "object", &object, "id", &id, "record", &record, "source_id?", &sourceID); err != nil {
		return nil, err
	}
	tid, err := idString(b.Name(), id)
	if err != nil {
		return nil, err
	}
	rec, err := mapFromValue(record, "record")
	if err != nil {
		return nil, fmt.Errorf("%s: %w", b.Name(), err)
	}
	sid, err := optionalID(b.Name(), sourceID)
	if err != nil {
		return nil, err
	}
	return cn.write(b.Name(), Write{Object: object, Op: OpUpdate, ID: tid, SourceID: sid, Record: rec})
}

// upsert(object, record, match=None, source_id=None) updates the record
// found by the match fields (their values taken from record), or the one
// named by record["id"], or else adds it. Returns the id.
func (cn *connection) upsert(_ *starlark.Thread, b *starlark.Builtin, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
	var object string
	var record, sourceID starlark.Value
	var matchFields *starlark.List
	if err := starlark.UnpackArgs(b.Name(), args, kwargs, "object", &object, "record", &record, "match?", &matchFields, "source_id?", &sourceID); err != nil {
		return nil, err
	}
	rec, err := mapFromValue(record, "record")
	if err != nil {
		return nil, fmt.Errorf("%s: %w", b.Name(), err)
	}
	sid, err := optionalID(b.Name(), sourceID)
	if err != nil {
		return nil, err
	}
	if matchFields != nil && matchFields.Len() > 0 {
		match := map[string]any{}
		for i := range matchFields.Len() {
			f, ok := matchFields.Index(i).(starlark.String)
			if !ok {
				return nil, fmt.Errorf("%s: match must list field names, got a %s", b.Name(), matchFields.Index(i).Type())
			}
			v, ok := rec[string(f)]
			if !ok {
				return nil, fmt.Errorf("%s: match field %s is not in the record", b.Name(), f.String())
			}
			match[string(f)] = v
		}
		rows, err := find(cn.c, b.Name(), cn.name, object, match)
		if err != nil {
			return nil, err
		}
		if len(rows) > 1 {
			return nil, ambiguous(b.Name(), rows)
		}
		if len(rows) > 0 {
			id, ok := rows[0]["id"]
			if !ok || id == nil {
				return nil, fmt.Errorf("%s: the record found has no \"id\"", b.Name())
			}
			return cn.write(b.Name(), Write{Object: object, Op: OpUpdate, ID: fmt.Sprint(id), SourceID: sid, Record: rec})
		}
		return cn.write(b.Name(), Write{Object: object, Op: OpAdd, SourceID: sid, Record: rec})
	}
	if id, ok := rec["id"]; ok && id != nil && id != "" {
		return cn.write(b.Name(), Write{Object: object, Op: OpUpdate, ID: fmt.Sprint(id), SourceID: sid, Record: rec})
	}
	return cn.write(b.Name(), Write{Object: object, Op: OpAdd, SourceID: sid, Record: rec})
}

// delete(object, id) deletes record id.
func (cn *connection) delete(_ *starlark.Thread, b *starlark.Builtin, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
	var object string
	var id starlark.Value
	if err := starlark.UnpackArgs(b.Name(), args, kwargs, "object", &object, "id", &id); err != nil {
		return nil, err
	}
	tid, err := idString(b.Name(), id)
	if err != nil {
		return nil, err
	}
	return cn.write(b.Name(), Write{Object: object, Op: OpDelete, ID: tid})
}

func (cn *connection) lookupArgs(b *starlark.Builtin, args starlark.Tuple, kwargs []starlark.Tuple) ([]map[string]any, error) {
	if len(args) == 0 {
		return nil, fmt.Errorf("%s: missing the object to look in", b.Name())
	}
	object, ok := args[0].(starlark.String)
	if !ok {
		return nil, fmt.Errorf("%s: object must be a string, got a %s", b.Name(), args[0].Type())
	}
	match, err := matchArgs(b.Name(), args[1:], kwargs)
	if err != nil {
		return nil, err
	}
	return find(cn.c, b.Name(), cn.name, string(object), match)
}

// findone(object, match=None, **fields) returns the first match or None.
func (cn *connection) findone(_ *starlark.Thread, b *starlark.Builtin, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
	rows, err := cn.lookupArgs(b, args, kwargs)
	if err != nil {
		return nil, err
	}
	return firstRow(b.Name(), rows)
}

// find(object, match=None, **fields) returns every match, as a list.
func (cn *connection) find(_ *starlark.Thread, b *starlark.Builtin, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
	rows, err := cn.lookupArgs(b, args, kwargs)
	if err != nil {
		return nil, err
	}
	return rowsValue(b.Name(), rows)
}

// ambiguous says that a lookup that must find at most one record found
// several, listing them.
func ambiguous(fn string, rows []map[string]any) error {
	ids := make([]string, 0, len(rows))
	for _, r := range rows {
		ids = append(ids, fmt.Sprint(r["id"]))
	}
	return fmt.Errorf("%s: %d records match (ids %s): the lookup is ambiguous; match on more fields, or use find() to get them all", fn, len(rows), strings.Join(ids, ", "))
}
