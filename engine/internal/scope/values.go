package scope

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"math/big"
	"net/netip"
	"time"

	"github.com/jackc/pgx/v5/pgtype"
)

// Record values are JSON-shaped Go values, the same for every target:
//
//	warehouse type            Go value
//	NULL                      nil
//	boolean                   bool
//	smallint/integer/bigint   int64
//	real/double precision     float64
//	numeric                   json.Number (exact digits; NaN as a string)
//	text, varchar, enums      string
//	uuid                      string (canonical form)
//	timestamptz               time.Time in UTC
//	timestamp                 string "2006-01-02T15:04:05.999999" (no zone to invent)
//	date                      string "2006-01-02"
//	json/jsonb                map[string]any, []any, … with json.Number numbers
//	arrays                    []any of the element values
//	bytea                     []byte
//	inet/cidr                 string
//	money                     json.Number (in scopes, cast to numeric)
//	composite types           map[string]any (in scopes, read as JSON)
//	anything else             string: PostgreSQL's text form (interval,
//	                          time, ranges, bit strings, xml, tsvector, enums …)
//
// rowvalues.go decides, per column, how a value is read.
const (
	timestampLayout = "2006-01-02T15:04:05.999999"
	dateLayout      = "2006-01-02"
)

// normalize turns a value pgx decoded for a column of type oid into the
// record value above. It returns an error, never panics, on a type it does
// not know, naming what to do about it.
func normalize(oid uint32, v any) (any, error) {
	switch oid {
	case pgtype.DateOID:
		if t, ok := v.(time.Time); ok {
			return t.Format(dateLayout), nil
		}
	case pgtype.TimestampOID:
		if t, ok := v.(time.Time); ok {
			return t.Format(timestampLayout), nil
		}
	}
	return normalizeValue(v)
}

func normalizeValue(v any) (any, error) {
	switch x := v.(type) {
	case nil, bool, string, int64, float64, json.Number, []byte:
		return x, nil
	case int8:
		return int64(x), nil
	case int16:
		return int64(x), nil
	case int32:
		return int64(x), nil
	case int:
		return int64(x), nil
	case uint32:
		return int64(x), nil
	case float32:
		return float64(x), nil
	case time.Time:
		return x.UTC(), nil
	case pgtype.Numeric:
		return numericValue(x)
	case [16]byte:
		return uuidString(x), nil
	case netip.Prefix:
		return x.String(), nil
	case netip.Addr:
		return x.String(), nil
	case map[string]any:
		out := make(map[string]any, len(x))
		for k, e := range x {
			n, err := normalizeValue(e)
			if err != nil {
				return nil, err
			}
			out[k] = n
		}
		return out, nil
	case []any:
		out := make([]any, len(x))
		for i, e := range x {
			n, err := normalizeValue(e)
			if err != nil {
				return nil, err
			}
			out[i] = n
		}
		return out, nil
	case fmt.Stringer:
		return x.String(), nil
	}
	return nil, fmt.Errorf("cannot map a value of Go type %T; cast the column to text (or json) in the scope query", v)
}

func numericValue(n pgtype.Numeric) (any, error) {
	if !n.Valid {
		return nil, nil
	}
	if n.NaN {
		return "NaN", nil
	}
	if n.InfinityModifier != pgtype.Finite {
		if n.InfinityModifier == pgtype.Infinity {
			return "Infinity", nil
		}
		return "-Infinity", nil
	}
	return json.Number(numericDigits(n.Int, n.Exp)), nil
}

// numericDigits writes int × 10^exp in plain decimal notation, exactly.
func numericDigits(i *big.Int, exp int32) string {
	s := i.String()
	if exp >= 0 {
		if i.Sign() == 0 {
			return "0"
		}
		return s + string(bytes.Repeat([]byte{'0'}, int(exp)))
	}
	neg := false
	if s[0] == '-' {
		neg, s = true, s[1:]
	}
	frac := int(-exp)
	if len(s) <= frac {
		s = string(bytes.Repeat([]byte{'0'}, frac-len(s)+1)) + s
	}
	out := s[:len(s)-frac] + "." + s[len(s)-frac:]
	if neg {
		out = "-" + out
	}
	return out
}

func uuidString(b [16]byte) string {
	var buf [36]byte
	hex.Encode(buf[0:8], b[0:4])
	buf[8] = '-'
	hex.Encode(buf[9:13], b[4:6])
	buf[13] = '-'
	hex.Encode(buf[14:18], b[6:8])
	buf[18] = '-'
	hex.Encode(buf[19:23], b[8:10])
	buf[23] = '-'
	hex.Encode(buf[24:], b[10:])
	return string(buf[:])
}

// DecodeJSON decodes a json/jsonb column's raw bytes keeping numbers exact.
func DecodeJSON(raw []byte) (any, error) {
	if len(raw) > 0 && raw[0] == 1 { // jsonb binary format: a version byte
		raw = raw[1:]
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return nil, fmt.Errorf("decoding json: %w", err)
	}
	return v, nil
}
