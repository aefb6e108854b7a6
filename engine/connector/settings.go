package connector

import (
	"bytes"
	"encoding"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"sort"
	"strconv"
	"strings"
)

// DecodeStrict decodes a connection's settings into v (a pointer to a
// struct) like DecodeSettings, refusing unknown fields, and names the full
// settings path of every problem it finds, not just the object it was in:
//
//	objects.contacts.batch: unknown field "sise" (known: size, mode, insert, …)
//	objects.contacts.batch.size: a number is expected, not a string
//
// It checks the whole document before decoding, so that a user sees every
// mistake at once (joined by "; ", in path order). Fields are matched by their
// json tag, exactly or, as encoding/json does, without regard to case.
// Types that decode themselves (json.Unmarshaler) are decoded at their
// place, so their errors are named by path too.
func DecodeStrict(raw json.RawMessage, v any) error {
	if len(bytes.TrimSpace(raw)) == 0 {
		raw = []byte("{}")
	}
	rv := reflect.ValueOf(v)
	if rv.Kind() != reflect.Pointer || rv.IsNil() {
		return fmt.Errorf("DecodeStrict needs a non-nil pointer, not %T", v)
	}
	var problems []pathError
	checkValue(raw, rv.Type().Elem(), "", &problems)
	if len(problems) > 0 {
		sort.SliceStable(problems, func(i, j int) bool { return problems[i].path < problems[j].path })
		msgs := make([]string, len(problems))
		for i, p := range problems {
			msgs[i] = p.Error()
		}
		return errors.New(strings.Join(msgs, "; "))
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	dec.UseNumber()
	if err := dec.Decode(v); err != nil {
		// The check above should have caught it; say what encoding/json said.
		return errors.New(strings.TrimPrefix(err.Error(), "json: "))
	}
	return nil
}

type pathError struct {
	path string
	msg  string
}

func (e pathError) Error() string {
	if e.path == "" {
		return e.msg
	}
	return e.path + ": " + e.msg
}

var (
	unmarshalerType     = reflect.TypeFor[json.Unmarshaler]()
	textUnmarshalerType = reflect.TypeFor[encoding.TextUnmarshaler]()
)

func join(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

// checkValue checks raw against t, appending what is wrong to problems.
func checkValue(raw json.RawMessage, t reflect.Type, path string, problems *[]pathError) {
	raw = bytes.TrimSpace(raw)
	add := func(format string, args ...any) {
		*problems = append(*problems, pathError{path, fmt.Sprintf(format, args...)})
	}
	if len(raw) == 0 {
		return
	}
	if string(raw) == "null" {
		return // null leaves the zero value, as encoding/json does
	}
	if reflect.PointerTo(t).Implements(unmarshalerType) || t.Implements(unmarshalerType) {
		target := reflect.New(t)
		if err := json.Unmarshal(raw, target.Interface()); err != nil {
			add("%s", strings.TrimPrefix(err.Error(), "json: "))
		}
		return
	}
	switch t.Kind() {
	case reflect.Pointer:
		checkValue(raw, t.Elem(), path, problems)
	case reflect.Interface:
		if !json.Valid(raw) {
			add("not valid JSON")
		}
	case reflect.Struct:
		var fields map[string]json.RawMessage
		if raw[0] != '{' || json.Unmarshal(raw, &fields) != nil {
			add("an object is expected, not %s", jsonKind(raw))
			return
		}
		known := structFields(t)
		keys := make([]string, 0, len(fields))
		for k := range fields {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			f, ok := known.lookup(k)
			if !ok {
				add("unknown field %q (known: %s)", k, strings.Join(known.names, ", "))
				continue
			}
			checkValue(fields[k], f.typ, join(path, f.name), problems)
		}
	case reflect.Map:
		var entries map[string]json.RawMessage
		if raw[0] != '{' || json.Unmarshal(raw, &entries) != nil {
			add("an object is expected, not %s", jsonKind(raw))
			return
		}
		if t.Key().Kind() != reflect.String && !reflect.PointerTo(t.Key()).Implements(textUnmarshalerType) {
			return
		}
		for k, v := range entries {
			checkValue(v, t.Elem(), join(path, k), problems)
		}
	case reflect.Slice, reflect.Array:
		var items []json.RawMessage
		if raw[0] != '[' || json.Unmarshal(raw, &items) != nil {
			add("a list is expected, not %s", jsonKind(raw))
			return
		}
		for i, item := range items {
			checkValue(item, t.Elem(), path+"["+strconv.Itoa(i)+"]", problems)
		}
	case reflect.String:
		if raw[0] != '"' {
			add("a string is expected, not %s", jsonKind(raw))
		}
	case reflect.Bool:
		if string(raw) != "true" && string(raw) != "false" {
			add("true or false is expected, not %s", jsonKind(raw))
		}
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64,
		reflect.Float32, reflect.Float64:
		if !isJSONNumber(raw) {
			add("a number is expected, not %s", jsonKind(raw))
			return
		}
		target := reflect.New(t)
		if err := json.Unmarshal(raw, target.Interface()); err != nil {
			add("%s does not fit: %s", raw, describeNumberKind(t))
		}
	}
}

func isJSONNumber(raw []byte) bool {
	return len(raw) > 0 && (raw[0] == '-' || ('0' <= raw[0] && raw[0] <= '9'))
}

func describeNumberKind(t reflect.Type) string {
	switch t.Kind() {
	case reflect.Float32, reflect.Float64:
		return "a number is expected"
	default:
		return "a whole number is expected"
	}
}

// jsonKind names the kind of a JSON value for a message.
func jsonKind(raw []byte) string {
	switch raw[0] {
	case '{':
		return "an object"
	case '[':
		return "a list"
	case '"':
		return "a string (" + string(raw) + ")"
	case 't', 'f':
		return "a boolean"
	case 'n':
		return "null"
	default:
		return "a number (" + string(raw) + ")"
	}
}

type fieldInfo struct {
	name string
	typ  reflect.Type
}

type fieldSet struct {
	byName map[string]fieldInfo
	names  []string
}

func (s fieldSet) lookup(k string) (fieldInfo, bool) {
	if f, ok := s.byName[k]; ok {
		return f, true
	}
	for name, f := range s.byName {
		if strings.EqualFold(name, k) {
			return f, true
		}
	}
	return fieldInfo{}, false
}

// structFields lists the JSON fields of a struct type, by tag, in
// declaration order (embedded structs' fields included).
func structFields(t reflect.Type) fieldSet {
	s := fieldSet{byName: map[string]fieldInfo{}}
	var walk func(t reflect.Type)
	walk = func(t reflect.Type) {
		for i := range t.NumField() {
			f := t.Field(i)
			tag := f.Tag.Get("json")
			if tag == "-" {
				continue
			}
			name, _, _ := strings.Cut(tag, ",")
			if f.Anonymous && name == "" {
				ft := f.Type
				if ft.Kind() == reflect.Pointer {
					ft = ft.Elem()
				}
				if ft.Kind() == reflect.Struct {
					walk(ft)
					continue
				}
			}
			if !f.IsExported() {
				continue
			}
			if name == "" {
				name = f.Name
			}
			if _, dup := s.byName[name]; !dup {
				s.names = append(s.names, name)
			}
			s.byName[name] = fieldInfo{name: name, typ: f.Type}
		}
	}
	walk(t)
	s.names = slices.Clip(s.names)
	return s
}
