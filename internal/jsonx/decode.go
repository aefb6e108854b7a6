package jsonx

import (
	"bytes"
	"encoding/json"
	"strconv"
	"strings"
	"unicode/utf8"
)

// FindPath reads the id at a dot path ("id", "data.id", "results.0.id") in
// a response whose first JSON value is an object or an array, without
// decoding the rest. Where it reports ok it agrees with decoding body's first
// value with a json.Decoder using UseNumber, following path through object
// members (the last one, when a key repeats) and array elements (by a
// non-negative decimal index), and taking the text of what is there: a
// non-empty string as it is, a number's literal. Otherwise (not JSON, no id
// there, an id of another kind, an empty path) ok is false and the caller
// decodes, which also words the error.
func FindPath(body []byte, path string) (string, bool) {
	start := skipSpace(body, 0)
	if start == len(body) || (body[start] != '{' && body[start] != '[') || path == "" || path == "." {
		return "", false
	}
	end := skipValue(body, start)
	// A json.Decoder reads the first value and ignores what follows; a
	// container ends where its brackets close, so this is the value it reads.
	if end < 0 || !json.Valid(body[start:end]) {
		return "", false
	}
	v := body[start:end]
	for rest := path; ; {
		seg, more, dotted := strings.Cut(rest, ".")
		var ok bool
		if v, ok = member(v, seg); !ok {
			return "", false
		}
		if !dotted {
			break
		}
		rest = more
	}
	switch {
	case v[0] == '"':
		s, ok := unquote(v)
		return s, ok && s != ""
	case v[0] == '-' || ('0' <= v[0] && v[0] <= '9'):
		return string(v), true // json.Number keeps the literal
	}
	return "", false
}

// member returns the value seg names in v, a valid JSON value: an object's
// member (the last one, when the key repeats, as decoding into a map keeps)
// or an array's element by index.
func member(v []byte, seg string) ([]byte, bool) {
	switch v[0] {
	case '{':
		var found []byte
		i := skipSpace(v, 1)
		for v[i] != '}' {
			keyEnd := skipValue(v, i)
			key := v[i:keyEnd]
			i = skipSpace(v, keyEnd)
			i = skipSpace(v, i+1) // the colon
			valEnd := skipValue(v, i)
			if keyIs(key, seg) {
				found = v[i:valEnd]
			}
			i = skipSpace(v, valEnd)
			if v[i] == ',' {
				i = skipSpace(v, i+1)
			}
		}
		return found, found != nil
	case '[':
		n, err := strconv.Atoi(seg)
		if err != nil || n < 0 {
			return nil, false
		}
		i := skipSpace(v, 1)
		for k := 0; v[i] != ']'; k++ {
			end := skipValue(v, i)
			if k == n {
				return v[i:end], true
			}
			i = skipSpace(v, end)
			if v[i] == ',' {
				i = skipSpace(v, i+1)
			}
		}
	}
	return nil, false
}

// keyIs compares a quoted JSON key with seg as decoding would see the key.
func keyIs(quoted []byte, seg string) bool {
	raw := quoted[1 : len(quoted)-1]
	if bytes.IndexByte(raw, '\\') < 0 && utf8.Valid(raw) {
		return string(raw) == seg
	}
	s, ok := unquote(quoted)
	return ok && s == seg
}

// DecodeObject decodes a body that holds a JSON object as a json.Decoder
// with UseNumber decodes its first value into a map[string]any: numbers as
// json.Number with their digits, a repeated key keeping its last value, what
// follows the object ignored. ok is false for anything else (not JSON, not
// an object): the caller then asks encoding/json, which also says what is
// wrong.
func DecodeObject(b []byte) (map[string]any, bool) {
	start := skipSpace(b, 0)
	if start == len(b) || b[start] != '{' {
		return nil, false
	}
	end := skipValue(b, start)
	// A json.Decoder reads the first value; an object ends where its braces
	// close, so this is the value it reads.
	if end < 0 || !json.Valid(b[start:end]) {
		return nil, false
	}
	v, _, ok := parseValue(b, start)
	if !ok {
		return nil, false
	}
	return v.(map[string]any), true
}

// parseValue parses the valid JSON value at b[i] and returns it and where it
// ends.
func parseValue(b []byte, i int) (any, int, bool) {
	switch c := b[i]; {
	case c == '{':
		m := make(map[string]any)
		i = skipSpace(b, i+1)
		for b[i] != '}' {
			keyEnd := skipValue(b, i)
			key, ok := unquote(b[i:keyEnd])
			if !ok {
				return nil, 0, false
			}
			i = skipSpace(b, keyEnd)
			i = skipSpace(b, i+1) // the colon
			var v any
			if v, i, ok = parseValue(b, i); !ok {
				return nil, 0, false
			}
			m[key] = v
			i = skipSpace(b, i)
			if b[i] == ',' {
				i = skipSpace(b, i+1)
			}
		}
		return m, i + 1, true
	case c == '[':
		list := []any{}
		i = skipSpace(b, i+1)
		for b[i] != ']' {
			v, end, ok := parseValue(b, i)
			if !ok {
				return nil, 0, false
			}
			list = append(list, v)
			i = skipSpace(b, end)
			if b[i] == ',' {
				i = skipSpace(b, i+1)
			}
		}
		return list, i + 1, true
	case c == '"':
		end := skipValue(b, i)
		s, ok := unquote(b[i:end])
		return s, end, ok
	case c == 't':
		return true, i + 4, true
	case c == 'f':
		return false, i + 5, true
	case c == 'n':
		return nil, i + 4, true
	default:
		end := skipValue(b, i)
		return json.Number(b[i:end]), end, true
	}
}

// unquote decodes a valid JSON string literal.
func unquote(quoted []byte) (string, bool) {
	raw := quoted[1 : len(quoted)-1]
	if bytes.IndexByte(raw, '\\') < 0 && utf8.Valid(raw) {
		return string(raw), true
	}
	var s string
	if err := json.Unmarshal(quoted, &s); err != nil {
		return "", false
	}
	return s, true
}

// skipSpace returns where the JSON whitespace from b[i] ends.
func skipSpace(b []byte, i int) int {
	for i < len(b) && (b[i] == ' ' || b[i] == '\t' || b[i] == '\n' || b[i] == '\r') {
		i++
	}
	return i
}

// skipValue returns where the JSON value starting at b[i] ends, or -1 when
// b ends first. It trusts the input to be valid JSON: callers check that.
func skipValue(b []byte, i int) int {
	if i >= len(b) {
		return -1
	}
	switch b[i] {
	case '"':
		for j := i + 1; j < len(b); j++ {
			switch b[j] {
			case '\\':
				j++
			case '"':
				return j + 1
			}
		}
		return -1
	case '{', '[':
		depth := 0
		for j := i; j < len(b); j++ {
			switch b[j] {
			case '"':
				end := skipValue(b, j)
				if end < 0 {
					return -1
				}
				j = end - 1
			case '{', '[':
				depth++
			case '}', ']':
				depth--
				if depth == 0 {
					return j + 1
				}
			}
		}
		return -1
	default: // numbers, true, false, null
		j := i
		for j < len(b) && b[j] != ',' && b[j] != '}' && b[j] != ']' && b[j] != ' ' && b[j] != '\t' && b[j] != '\n' && b[j] != '\r' {
			j++
		}
		return j
	}
}
