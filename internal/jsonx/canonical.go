package jsonx

import (
	"encoding/json"
	"strconv"
	"time"
)

// AppendCanonical appends v as JSON with map keys sorted: the same bytes for the
// same value, every time, for the hash and the link row's payload, which run
// once or twice per record. jsonx writes the record value types (engine/internal/scope/values.go)
// without reflection, as encoding/json would; each value it leaves to
// encoding/json, at any depth, is written by appendOther, so that one odd
// value never hides the rest of the record from the hash.
func AppendCanonical(b []byte, v any) []byte {
	return AppendFunc(b, v, appendOther)
}

// appendOther writes a value jsonx leaves to encoding/json: json.Marshal's
// bytes, and for what even json.Marshal refuses a string that says so, so
// that a hash never fails. NaN and ±Inf, and times outside years 0 to 9999,
// become strings of their value, as they always have.
func appendOther(b []byte, v any) []byte {
	switch x := v.(type) {
	case float64: // NaN or ±Inf: JSON has no number for them
		return AppendString(b, strconv.FormatFloat(x, 'g', -1, 64))
	case time.Time: // a year (or zone offset) RFC 3339 cannot write
		return AppendString(b, x.Format(time.RFC3339Nano))
	}
	out, err := json.Marshal(v)
	if err != nil {
		return AppendString(b, "!unencodable "+err.Error())
	}
	return append(b, out...)
}
