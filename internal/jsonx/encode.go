package jsonx

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"math"
	"slices"
	"strconv"
	"time"
	"unicode/utf8"
)

// Append appends v as a json.Encoder with SetEscapeHTML(false) encodes it,
// without the trailing newline: map keys sorted, strings and numbers as
// encoding/json writes them. It knows the JSON-shaped values (nil, string,
// bool, json.Number, int64, int, int32, float64, time.Time, []byte,
// map[string]any, []any). ok is false when v holds a value it leaves to
// encoding/json: another type, and the values encoding/json refuses (NaN and
// ±Inf, an invalid json.Number, a time.Time it cannot write), so that the
// caller's fallback reports encoding/json's error. dst then holds a partial
// value: the caller drops it.
func Append(dst []byte, v any) ([]byte, bool) {
	return appendValue(dst, v, nil)
}

// AppendFunc is Append for a caller that must always have an encoding: each
// value Append would refuse, at any depth, is written by fallback instead
// (which appends it to the bytes it is given), and the rest as Append writes
// it.
func AppendFunc(dst []byte, v any, fallback func(dst []byte, v any) []byte) []byte {
	dst, _ = appendValue(dst, v, fallback)
	return dst
}

// Encode returns v as a json.Encoder with SetEscapeHTML(false) encodes it,
// without the trailing newline: Append, or encoding/json where Append
// refuses, with encoding/json's error.
func Encode(v any) ([]byte, error) {
	if b, ok := Append(make([]byte, 0, 256), v); ok {
		return b, nil
	}
	return encodingJSON(v)
}

// encodingJSON is Encode done by encoding/json alone.
func encodingJSON(v any) ([]byte, error) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	return bytes.TrimSuffix(buf.Bytes(), []byte("\n")), nil
}

// appendValue is Append, with fallback (when not nil) writing the values it
// refuses.
func appendValue(dst []byte, v any, fallback func([]byte, any) []byte) ([]byte, bool) {
	switch v := v.(type) {
	case nil:
		return append(dst, "null"...), true
	case string:
		return AppendString(dst, v), true
	case bool:
		return strconv.AppendBool(dst, v), true
	case json.Number:
		s := string(v)
		if s == "" {
			s = "0" // as encoding/json writes the zero Number
		}
		if isValidNumber(s) {
			return append(dst, s...), true
		}
	case int64:
		return strconv.AppendInt(dst, v, 10), true
	case int:
		return strconv.AppendInt(dst, int64(v), 10), true
	case int32:
		return strconv.AppendInt(dst, int64(v), 10), true
	case float64:
		if b, ok := appendFloat64(dst, v); ok {
			return b, true
		}
	case time.Time:
		// What Time.MarshalJSON writes, without its allocation.
		if b, err := v.AppendText(append(dst, '"')); err == nil {
			return append(b, '"'), true
		}
	case []byte:
		if v == nil {
			return append(dst, "null"...), true
		}
		dst = append(dst, '"')
		dst = base64.StdEncoding.AppendEncode(dst, v)
		return append(dst, '"'), true
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
			dst = AppendString(dst, k)
			dst = append(dst, ':')
			var ok bool
			if dst, ok = appendValue(dst, v[k], fallback); !ok {
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
			if dst, ok = appendValue(dst, e, fallback); !ok {
				return dst, false
			}
		}
		return append(dst, ']'), true
	}
	if fallback == nil {
		return dst, false
	}
	return fallback(dst, v), true
}

// appendFloat64 writes f as encoding/json does (ES6 number formatting); ok
// is false for NaN and ±Inf, which encoding/json refuses.
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

// AppendString appends s quoted as encoding/json quotes it without HTML
// escaping: control characters escaped, invalid UTF-8 as U+FFFD, U+2028 and
// U+2029 escaped; <, > and & as they are.
func AppendString(dst []byte, s string) []byte {
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
