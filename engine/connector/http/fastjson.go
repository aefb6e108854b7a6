package httptarget

import (
	"bytes"
	"encoding/json"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
)

// Every change is one request, so the JSON of the request body and of the
// insert response is on the hot path. encoding/json does both through
// reflection: encoding a map sorts reflected keys, and decoding a response
// builds every field only to read the id. The functions here do the common
// cases directly and give the same bytes and the same ids; whatever they do
// not handle (a type a payload does not normally hold, a response in an
// unusual shape) goes to encoding/json as before.

// appendJSON appends v encoded as a json.Encoder with SetEscapeHTML(false)
// encodes it, without the trailing newline. ok is false when v holds a value
// it leaves to encoding/json: a type outside the JSON-shaped ones, and the
// values encoding/json refuses (NaN, an invalid json.Number, a time.Time it
// cannot write), so that the caller's fallback reports encoding/json's error.
func appendJSON(dst []byte, v any) ([]byte, bool) {
	switch v := v.(type) {
	case nil:
		return append(dst, "null"...), true
	case string:
		return appendJSONString(dst, v), true
	case bool:
		return strconv.AppendBool(dst, v), true
	case json.Number:
		s := string(v)
		if s == "" {
			s = "0" // as encoding/json writes the zero Number
		}
		if !isValidNumber(s) {
			return dst, false
		}
		return append(dst, s...), true
	case int64:
		return strconv.AppendInt(dst, v, 10), true
	case int:
		return strconv.AppendInt(dst, int64(v), 10), true
	case int32:
		return strconv.AppendInt(dst, int64(v), 10), true
	case float64:
		return appendFloat64(dst, v)
	case time.Time:
		b, err := v.MarshalJSON()
		if err != nil {
			return dst, false
		}
		return append(dst, b...), true
	case map[string]any:
		if v == nil {
			return append(dst, "null"...), true
		}
		keys := make([]string, 0, len(v))
		for k := range v {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		dst = append(dst, '{')
		for i, k := range keys {
			if i > 0 {
				dst = append(dst, ',')
			}
			dst = appendJSONString(dst, k)
			dst = append(dst, ':')
			var ok bool
			if dst, ok = appendJSON(dst, v[k]); !ok {
				return dst, false
			}
		}
		return append(dst, '}'), true
	case []any:
		if v == nil {
			return append(dst, "null"...), true
		}
		dst = append(dst, '[')
		for i, e := range v {
			if i > 0 {
				dst = append(dst, ',')
			}
			var ok bool
			if dst, ok = appendJSON(dst, e); !ok {
				return dst, false
			}
		}
		return append(dst, ']'), true
	default:
		return dst, false
	}
}

// appendFloat64 writes f as encoding/json does (ES6 number formatting).
func appendFloat64(dst []byte, f float64) ([]byte, bool) {
	if math.IsInf(f, 0) || math.IsNaN(f) {
		return dst, false
	}
	format := byte('f')
	if abs := math.Abs(f); abs != 0 && (abs < 1e-6 || abs >= 1e21) {
		format = 'e'
	}
	dst = strconv.AppendFloat(dst, f, format, -1, 64)
	if format == 'e' {
		// e-09 becomes e-9
		n := len(dst)
		if n >= 4 && dst[n-4] == 'e' && dst[n-3] == '-' && dst[n-2] == '0' {
			dst[n-2] = dst[n-1]
			dst = dst[:n-1]
		}
	}
	return dst, true
}

const hexDigits = "0123456789abcdef"

// appendJSONString quotes s as encoding/json does without HTML escaping:
// control characters escaped, invalid UTF-8 as U+FFFD, U+2028 and U+2029
// escaped.
func appendJSONString(dst []byte, s string) []byte {
	dst = append(dst, '"')
	start := 0
	for i := 0; i < len(s); {
		if b := s[i]; b < utf8.RuneSelf {
			if b >= 0x20 && b != '"' && b != '\\' {
				i++
				continue
			}
			dst = append(dst, s[start:i]...)
			switch b {
			case '\\', '"':
				dst = append(dst, '\\', b)
			case '\b':
				dst = append(dst, '\\', 'b')
			case '\f':
				dst = append(dst, '\\', 'f')
			case '\n':
				dst = append(dst, '\\', 'n')
			case '\r':
				dst = append(dst, '\\', 'r')
			case '\t':
				dst = append(dst, '\\', 't')
			default:
				dst = append(dst, '\\', 'u', '0', '0', hexDigits[b>>4], hexDigits[b&0xF])
			}
			i++
			start = i
			continue
		}
		c, size := utf8.DecodeRuneInString(s[i:])
		if c == utf8.RuneError && size == 1 {
			dst = append(dst, s[start:i]...)
			dst = append(dst, `\ufffd`...)
			i += size
			start = i
			continue
		}
		if c == '\u2028' || c == '\u2029' {
			dst = append(dst, s[start:i]...)
			dst = append(dst, '\\', 'u', '2', '0', '2', hexDigits[c&0xF])
			i += size
			start = i
			continue
		}
		i += size
	}
	dst = append(dst, s[start:]...)
	return append(dst, '"')
}

// isValidNumber is encoding/json's check of a json.Number: the JSON number
// grammar.
func isValidNumber(s string) bool {
	if s == "" {
		return false
	}
	if s[0] == '-' {
		s = s[1:]
		if s == "" {
			return false
		}
	}
	switch {
	case s[0] == '0':
		s = s[1:]
	case '1' <= s[0] && s[0] <= '9':
		s = s[1:]
		for len(s) > 0 && '0' <= s[0] && s[0] <= '9' {
			s = s[1:]
		}
	default:
		return false
	}
	if len(s) >= 2 && s[0] == '.' && '0' <= s[1] && s[1] <= '9' {
		s = s[2:]
		for len(s) > 0 && '0' <= s[0] && s[0] <= '9' {
			s = s[1:]
		}
	}
	if len(s) >= 2 && (s[0] == 'e' || s[0] == 'E') {
		s = s[1:]
		if s[0] == '+' || s[0] == '-' {
			s = s[1:]
			if s == "" {
				return false
			}
		}
		for len(s) > 0 && '0' <= s[0] && s[0] <= '9' {
			s = s[1:]
		}
	}
	return s == ""
}

// findID reads the id at path in an insert response without decoding the
// rest, for responses whose first JSON value is an object or an array. It
// agrees with decodeJSON, lookupPath and idText where it reports ok; when it
// does not (not JSON, no id there, an id that is not a non-empty string or a
// number), the caller takes the slow path, which also words the error.
func findID(body []byte, path string) (string, bool) {
	start := skipSpace(body, 0)
	if start == len(body) || (body[start] != '{' && body[start] != '[') || path == "" || path == "." {
		return "", false
	}
	end := skipValue(body, start)
	// decodeJSON reads the first value and ignores what follows; a container
	// ends where its brackets close, so this is the value it would read.
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
