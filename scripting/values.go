package scripting

import (
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	starlarktime "go.starlark.net/lib/time"
	"go.starlark.net/starlark"
	"go.starlark.net/starlarkstruct"
)

// maxDepth bounds how deeply nested a value may be, both ways. It stops a
// cyclic list or dict (a list that contains itself) from recursing forever.
const maxDepth = 64

// ToStarlark converts an engine value to a Starlark value. It copies: the
// Starlark side never shares a map or slice with the Go side. The mapping
// is documented in doc.go; an unsupported Go type is an error naming the
// type and the key it sits under, never a panic.
func ToStarlark(v any) (starlark.Value, error) {
	sv, err := toStarlark(v, 0)
	if err != nil {
		return nil, err.at("value")
	}
	return sv, nil
}

// convError is a conversion failure and where it happened. The path is
// built only on failure, from the inside out, so a conversion that succeeds
// allocates nothing for it.
type convError struct {
	segs []string // innermost first: `["city"]`, `[2]`
	msg  string
}

func (e *convError) Error() string { return e.msg }

func (e *convError) key(k string) *convError {
	e.segs = append(e.segs, "["+strconv.Quote(k)+"]")
	return e
}

func (e *convError) index(i int) *convError {
	e.segs = append(e.segs, "["+strconv.Itoa(i)+"]")
	return e
}

// at renders the error under a root name: source_record["j"]["c"]: msg.
func (e *convError) at(root string) error {
	var b strings.Builder
	b.WriteString(root)
	for _, seg := range slices.Backward(e.segs) {
		b.WriteString(seg)
	}
	b.WriteString(": ")
	b.WriteString(e.msg)
	return errors.New(b.String())
}

func convErrorf(format string, args ...any) *convError {
	return &convError{msg: fmt.Sprintf(format, args...)}
}

func toStarlark(v any, depth int) (starlark.Value, *convError) {
	if depth > maxDepth {
		return nil, convErrorf("nested deeper than %d levels", maxDepth)
	}
	switch x := v.(type) {
	case nil:
		return starlark.None, nil
	case string:
		return starlark.String(x), nil
	case bool:
		return starlark.Bool(x), nil
	case int64:
		return starlark.MakeInt64(x), nil
	case int:
		return starlark.MakeInt(x), nil
	case int32:
		return starlark.MakeInt64(int64(x)), nil
	case int16:
		return starlark.MakeInt64(int64(x)), nil
	case int8:
		return starlark.MakeInt64(int64(x)), nil
	case uint64:
		return starlark.MakeUint64(x), nil
	case uint:
		return starlark.MakeUint64(uint64(x)), nil
	case uint32:
		return starlark.MakeUint64(uint64(x)), nil
	case uint16:
		return starlark.MakeUint64(uint64(x)), nil
	case uint8:
		return starlark.MakeUint64(uint64(x)), nil
	case float64:
		return starlark.Float(x), nil
	case float32:
		return starlark.Float(float64(x)), nil
	case json.Number:
		d, err := ParseDecimal(string(x))
		if err != nil {
			return nil, convErrorf("%s", err)
		}
		return d, nil
	case time.Time:
		return starlarktime.Time(x), nil
	case time.Duration:
		return starlarktime.Duration(x), nil
	case []byte:
		return starlark.Bytes(x), nil
	case map[string]any:
		return dictOf(x, nil, depth)
	case []any:
		elems := make([]starlark.Value, len(x))
		for i, e := range x {
			sv, err := toStarlark(e, depth+1)
			if err != nil {
				return nil, err.index(i)
			}
			elems[i] = sv
		}
		return starlark.NewList(elems), nil
	case Decimal:
		return x, nil
	}
	return reflectToStarlark(v, depth)
}

// dictOf converts a map to a dict with its keys in sorted order, so that
// printing a record or iterating over it is the same on every run.
func dictOf(m map[string]any, keys *keyCache, depth int) (*starlark.Dict, *convError) {
	d := starlark.NewDict(len(m))
	var buf [16]string
	names := buf[:0]
	for k := range m {
		names = append(names, k)
	}
	slices.Sort(names)
	for _, k := range names {
		sv, err := toStarlark(m[k], depth+1)
		if err != nil {
			return nil, err.key(k)
		}
		if err := d.SetKey(keys.key(k), sv); err != nil {
			return nil, convErrorf("%s", err).key(k)
		}
	}
	return d, nil
}

// reflectToStarlark handles typed slices and string-keyed maps ([]string,
// []int64, map[string]string, ...) that drivers hand out for array and
// hstore columns. Anything else is an error naming the Go type.
func reflectToStarlark(v any, depth int) (starlark.Value, *convError) {
	rv := reflect.ValueOf(v)
	switch rv.Kind() {
	case reflect.Slice, reflect.Array:
		elems := make([]starlark.Value, rv.Len())
		for i := range elems {
			sv, err := toStarlark(rv.Index(i).Interface(), depth+1)
			if err != nil {
				return nil, err.index(i)
			}
			elems[i] = sv
		}
		return starlark.NewList(elems), nil
	case reflect.Map:
		if rv.Type().Key().Kind() != reflect.String {
			break
		}
		keys := make([]string, 0, rv.Len())
		for _, k := range rv.MapKeys() {
			keys = append(keys, k.String())
		}
		slices.Sort(keys)
		d := starlark.NewDict(len(keys))
		for _, k := range keys {
			e := rv.MapIndex(reflect.ValueOf(k).Convert(rv.Type().Key()))
			sv, err := toStarlark(e.Interface(), depth+1)
			if err != nil {
				return nil, err.key(k)
			}
			if err := d.SetKey(starlark.String(k), sv); err != nil {
				return nil, convErrorf("%s", err).key(k)
			}
		}
		return d, nil
	case reflect.Pointer:
		if rv.IsNil() {
			return starlark.None, nil
		}
		return toStarlark(rv.Elem().Interface(), depth)
	}
	return nil, convErrorf("unsupported Go type %T", v)
}

// FromStarlark converts a Starlark value back to an engine value: the
// inverse of ToStarlark. Ints that fit go out as int64 and larger ones as
// json.Number (never a lossy float); a decimal goes out as the json.Number
// it came in as.
func FromStarlark(v starlark.Value) (any, error) {
	g, err := fromStarlark(v, 0)
	if err != nil {
		return nil, err.at("value")
	}
	return g, nil
}

func fromStarlark(v starlark.Value, depth int) (any, *convError) {
	if depth > maxDepth {
		return nil, convErrorf("nested deeper than %d levels (does a list or dict contain itself?)", maxDepth)
	}
	switch x := v.(type) {
	case starlark.NoneType:
		return nil, nil
	case starlark.String:
		return string(x), nil
	case starlark.Bool:
		return bool(x), nil
	case starlark.Int:
		if i, ok := x.Int64(); ok {
			return i, nil
		}
		return json.Number(x.String()), nil
	case starlark.Float:
		return float64(x), nil
	case Decimal:
		return json.Number(x.s), nil
	case starlarktime.Time:
		return time.Time(x), nil
	case starlarktime.Duration:
		return time.Duration(x), nil
	case starlark.Bytes:
		return []byte(x), nil
	case *starlark.Dict:
		m := make(map[string]any, x.Len())
		for _, kv := range x.Items() {
			k, ok := kv[0].(starlark.String)
			if !ok {
				return nil, convErrorf("dict key %s is a %s, want a string", kv[0].String(), kv[0].Type())
			}
			gv, err := fromStarlark(kv[1], depth+1)
			if err != nil {
				return nil, err.key(string(k))
			}
			m[string(k)] = gv
		}
		return m, nil
	case *sourceRecord:
		c, err := deepCopy(x.fields, depth)
		if err != nil {
			return nil, convErrorf("%s", err)
		}
		return c, nil
	case *starlark.List:
		out := make([]any, x.Len())
		for i := range out {
			gv, err := fromStarlark(x.Index(i), depth+1)
			if err != nil {
				return nil, err.index(i)
			}
			out[i] = gv
		}
		return out, nil
	case starlark.Tuple:
		out := make([]any, len(x))
		for i, e := range x {
			gv, err := fromStarlark(e, depth+1)
			if err != nil {
				return nil, err.index(i)
			}
			out[i] = gv
		}
		return out, nil
	case *starlark.Set:
		out := make([]any, 0, x.Len())
		iter := x.Iterate()
		defer iter.Done()
		var e starlark.Value
		for i := 0; iter.Next(&e); i++ {
			gv, err := fromStarlark(e, depth+1)
			if err != nil {
				return nil, err.index(i)
			}
			out = append(out, gv)
		}
		return out, nil
	case *starlarkstruct.Struct:
		m := make(map[string]any)
		for _, name := range x.AttrNames() {
			av, aerr := x.Attr(name)
			if aerr != nil {
				return nil, convErrorf("%s", aerr)
			}
			gv, err := fromStarlark(av, depth+1)
			if err != nil {
				return nil, err.key(name)
			}
			m[name] = gv
		}
		return m, nil
	}
	return nil, convErrorf("a %s cannot leave the script (want None, bool, int, float, decimal, string, bytes, time, list or dict)", v.Type())
}

// deepCopy copies the maps and slices of an engine value so that a payload
// never aliases the source record it was copied from.
func deepCopy(v any, depth int) (any, error) {
	if depth > maxDepth {
		return nil, fmt.Errorf("nested deeper than %d levels", maxDepth)
	}
	switch x := v.(type) {
	case map[string]any:
		m := make(map[string]any, len(x))
		for k, e := range x {
			c, err := deepCopy(e, depth+1)
			if err != nil {
				return nil, err
			}
			m[k] = c
		}
		return m, nil
	case []any:
		out := make([]any, len(x))
		for i, e := range x {
			c, err := deepCopy(e, depth+1)
			if err != nil {
				return nil, err
			}
			out[i] = c
		}
		return out, nil
	case []byte:
		return slices.Clone(x), nil
	}
	return v, nil
}

// dictFromMap converts a record to a mutable Starlark dict; name roots
// the path of a conversion error.
func dictFromMap(m map[string]any, name string, keys *keyCache) (*starlark.Dict, error) {
	d, err := dictOf(m, keys, 0)
	if err != nil {
		return nil, err.at(name)
	}
	return d, nil
}

// mapFromValue converts a dict-like Starlark value to a record.
func mapFromValue(v starlark.Value, name string) (map[string]any, error) {
	switch v.(type) {
	case *starlark.Dict, *sourceRecord, *starlarkstruct.Struct:
	default:
		return nil, fmt.Errorf("%s: got a %s, want a dict", name, v.Type())
	}
	g, err := fromStarlark(v, 0)
	if err != nil {
		return nil, err.at(name)
	}
	return g.(map[string]any), nil
}

func childPath(path, key string) string {
	return path + "[" + strconv.Quote(key) + "]"
}

// keyCache holds field names already boxed as Starlark strings: every
// record of a sync has the same keys, and boxing one costs an allocation.
// One per program, bounded; a nil *keyCache boxes every time.
type keyCache struct {
	m sync.Map
	n atomic.Int32
}

const maxCachedKeys = 4096

func (kc *keyCache) key(k string) starlark.Value {
	if kc == nil {
		return starlark.String(k)
	}
	if v, ok := kc.m.Load(k); ok {
		return v.(starlark.Value)
	}
	var v starlark.Value = starlark.String(k)
	if kc.n.Add(1) <= maxCachedKeys {
		kc.m.Store(k, v)
	}
	return v
}
