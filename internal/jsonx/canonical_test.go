package jsonx

import (
	"bytes"
	"encoding/json"
	"math"
	"math/big"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestAppendCanonicalMatchesEncodingJSON(t *testing.T) {
	t.Parallel()
	ts := time.Date(2026, 3, 4, 5, 6, 7, 123456000, time.UTC)
	cases := []any{
		nil, true, false, "", "plain", "quote \" backslash \\ newline \n tab \t nul \x00 ctl \x1f", "héllo ✓ 日本",
		"<b>A & B</b>", int64(-9007199254740993), 0.1, 1e21, 3.0, 1e6, 1e-7, json.Number("12345678901234567890.123456789"),
		ts, []byte{0, 1, 2, 250}, []any{int64(1), "a", nil, []any{}},
		map[string]any{"b": int64(1), "a": map[string]any{"z": true, "y": []any{0.5}}, "": "empty key"},
		map[string]any{"odd": struct{ A string }{"x"}, "n": uint8(3)},
	}
	for _, v := range cases {
		// What a json.Encoder without HTML escaping writes: json.Marshal
		// would escape <, > and &, which appendJSON leaves as they are.
		var want bytes.Buffer
		enc := json.NewEncoder(&want)
		enc.SetEscapeHTML(false)
		require.NoError(t, enc.Encode(v))
		assert.Equal(t, string(bytes.TrimSuffix(want.Bytes(), []byte("\n"))), string(AppendCanonical(nil, v)), "%#v", v)
	}
}

func TestAppendCanonicalIsValidForOddValues(t *testing.T) {
	t.Parallel()
	for _, v := range []any{
		"bad utf8 \xff here", struct{ A int }{1}, big.NewInt(5), math.NaN(), math.Inf(-1), json.Number("12a"),
		time.Date(12000, 1, 2, 0, 0, 0, 0, time.UTC), []any{math.Inf(1), make(chan int)},
	} {
		out := AppendCanonical(nil, v)
		assert.True(t, json.Valid(out), "%s", out)
	}
}

// A value encoding/json refuses is written on its own: the rest of the
// record still counts in the hash, and the value itself too.
func TestAppendCanonicalKeepsTheRestAroundOddValues(t *testing.T) {
	t.Parallel()
	rec := func(name string, x any) map[string]any { return map[string]any{"name": name, "x": x} }
	for _, x := range []any{math.NaN(), math.Inf(1), time.Date(12000, 1, 2, 0, 0, 0, 0, time.UTC), make(chan int)} {
		assert.NotEqual(t, string(AppendCanonical(nil, rec("a", x))), string(AppendCanonical(nil, rec("b", x))), "%v", x)
	}
	assert.Equal(t, `{"name":"a","x":"NaN"}`, string(AppendCanonical(nil, rec("a", math.NaN()))))
	assert.NotEqual(t, string(AppendCanonical(nil, math.Inf(1))), string(AppendCanonical(nil, math.Inf(-1))))
	assert.NotEqual(t,
		string(AppendCanonical(nil, time.Date(12000, 1, 2, 0, 0, 0, 0, time.UTC))),
		string(AppendCanonical(nil, time.Date(12000, 1, 3, 0, 0, 0, 0, time.UTC))))
}
