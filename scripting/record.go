package scripting

import (
	"fmt"
	"slices"
	"strings"

	"go.starlark.net/starlark"
)

// sourceRecord is the read-only source_record handed to transform. It wraps
// the engine's map and converts a field only when the script reads it, so a
// wide row costs nothing for the columns a script ignores. Reading a json
// column gives a fresh dict or list that the script may change freely; the
// record itself cannot be changed.
type sourceRecord struct {
	fields map[string]any
	keys   []string // sorted, made on first iteration
}

var (
	_ starlark.IterableMapping = (*sourceRecord)(nil)
	_ starlark.HasSetKey       = (*sourceRecord)(nil)
	_ starlark.HasAttrs        = (*sourceRecord)(nil)
	_ starlark.Sequence        = (*sourceRecord)(nil)
)

const sourceRecordType = "source_record"

func newSourceRecord(fields map[string]any) *sourceRecord {
	return &sourceRecord{fields: fields}
}

func (r *sourceRecord) String() string {
	var b strings.Builder
	b.WriteString("{")
	for i, k := range r.sortedKeys() {
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteString(starlark.String(k).String())
		b.WriteString(": ")
		v, err := r.get(k)
		if err != nil {
			b.WriteString("?")
			continue
		}
		b.WriteString(v.String())
	}
	b.WriteString("}")
	return b.String()
}

func (r *sourceRecord) Type() string         { return sourceRecordType }
func (r *sourceRecord) Freeze()              {}
func (r *sourceRecord) Truth() starlark.Bool { return len(r.fields) > 0 }
func (r *sourceRecord) Len() int             { return len(r.fields) }
func (r *sourceRecord) Hash() (uint32, error) {
	return 0, fmt.Errorf("unhashable type: %s", sourceRecordType)
}

// Get implements source_record[key] and `key in source_record`.
func (r *sourceRecord) Get(k starlark.Value) (starlark.Value, bool, error) {
	s, ok := k.(starlark.String)
	if !ok {
		return nil, false, nil
	}
	if _, found := r.fields[string(s)]; !found {
		return nil, false, nil
	}
	v, err := r.get(string(s))
	return v, err == nil, err
}

func (r *sourceRecord) get(k string) (starlark.Value, error) {
	v, err := toStarlark(r.fields[k], 1)
	if err != nil {
		return nil, err.key(k).at("source_record")
	}
	return v, nil
}

// SetKey refuses: the source record is read-only.
func (r *sourceRecord) SetKey(k, _ starlark.Value) error {
	return fmt.Errorf("source_record is read-only (setting %s): write to target_record, or copy it first with dict(source_record)", k.String())
}

func (r *sourceRecord) sortedKeys() []string {
	if r.keys == nil {
		r.keys = make([]string, 0, len(r.fields))
		for k := range r.fields {
			r.keys = append(r.keys, k)
		}
		slices.Sort(r.keys)
	}
	return r.keys
}

// Iterate yields the field names in sorted order.
func (r *sourceRecord) Iterate() starlark.Iterator {
	return &keyIterator{keys: r.sortedKeys()}
}

// Items returns (name, value) pairs in sorted order.
func (r *sourceRecord) Items() []starlark.Tuple {
	items := make([]starlark.Tuple, 0, len(r.fields))
	for _, k := range r.sortedKeys() {
		v, err := r.get(k)
		if err != nil {
			v = starlark.None
		}
		items = append(items, starlark.Tuple{starlark.String(k), v})
	}
	return items
}

// Attr returns the dict-like read methods: get, keys, values, items.
func (r *sourceRecord) Attr(name string) (starlark.Value, error) {
	switch name {
	case "get", "keys", "values", "items":
		return starlark.NewBuiltin(name, r.method).BindReceiver(r), nil
	case "pop", "update", "setdefault", "clear", "popitem":
		return nil, fmt.Errorf("source_record is read-only (.%s): write to target_record, or copy it first with dict(source_record)", name)
	}
	return nil, nil
}

func (r *sourceRecord) AttrNames() []string { return []string{"get", "items", "keys", "values"} }

func (r *sourceRecord) method(_ *starlark.Thread, b *starlark.Builtin, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
	switch b.Name() {
	case "get":
		var key string
		var dflt starlark.Value = starlark.None
		if err := starlark.UnpackPositionalArgs("get", args, kwargs, 1, &key, &dflt); err != nil {
			return nil, err
		}
		if _, found := r.fields[key]; !found {
			return dflt, nil
		}
		return r.get(key)
	case "keys":
		if err := starlark.UnpackPositionalArgs("keys", args, kwargs, 0); err != nil {
			return nil, err
		}
		keys := make([]starlark.Value, 0, len(r.fields))
		for _, k := range r.sortedKeys() {
			keys = append(keys, starlark.String(k))
		}
		return starlark.NewList(keys), nil
	case "values":
		if err := starlark.UnpackPositionalArgs("values", args, kwargs, 0); err != nil {
			return nil, err
		}
		vals := make([]starlark.Value, 0, len(r.fields))
		for _, k := range r.sortedKeys() {
			v, err := r.get(k)
			if err != nil {
				return nil, err
			}
			vals = append(vals, v)
		}
		return starlark.NewList(vals), nil
	default: // items
		if err := starlark.UnpackPositionalArgs("items", args, kwargs, 0); err != nil {
			return nil, err
		}
		items := make([]starlark.Value, 0, len(r.fields))
		for _, k := range r.sortedKeys() {
			v, err := r.get(k)
			if err != nil {
				return nil, err
			}
			items = append(items, starlark.Tuple{starlark.String(k), v})
		}
		return starlark.NewList(items), nil
	}
}

type keyIterator struct {
	keys []string
	i    int
}

func (it *keyIterator) Next(p *starlark.Value) bool {
	if it.i >= len(it.keys) {
		return false
	}
	*p = starlark.String(it.keys[it.i])
	it.i++
	return true
}

func (it *keyIterator) Done() {}
