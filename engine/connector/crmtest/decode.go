package crmtest

import (
	"bytes"
	"encoding/json"
	"unicode/utf8"
)

// decodeObject decodes a request body that holds a JSON object as a
// json.Decoder with UseNumber decodes its first value into a map[string]any:
// numbers keep their digits, a repeated key keeps its last value, what
// follows the object is ignored. ok is false for anything else (not JSON, not
// an object): the caller then asks encoding/json, which also says what is
// wrong. Like marshal, it saves the server the reflection of encoding/json on
// every request of a benchmark.
func decodeObject(b []byte) (map[string]any, bool) {
	start := skipSpace(b, 0)
	if start == len(b) || b[start] != '{' {
		return nil, false
	}
	end := skipValue(b, start)
	// A json.Decoder reads the first value; an object ends where its braces
	// close, so this is the value it would read.
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
