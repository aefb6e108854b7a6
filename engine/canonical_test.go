package engine

import (
	"encoding/json"
	"math/big"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestAppendJSONMatchesEncodingJSON(t *testing.T) {
	t.Parallel()
	ts := time.Date(2026, 3, 4, 5, 6, 7, 123456000, time.UTC)
	cases := []any{
		nil, true, false, "", "plain", "quote \" backslash \\ newline \n tab \t nul \x00 ctl \x1f", "héllo ✓ 日本",
		int64(-9007199254740993), 0.1, 1e21, 3.0, json.Number("12345678901234567890.123456789"),
		ts, []byte{0, 1, 2, 250}, []any{int64(1), "a", nil, []any{}},
		map[string]any{"b": int64(1), "a": map[string]any{"z": true, "y": []any{0.5}}, "": "empty key"},
	}
	for _, v := range cases {
		want, err := json.Marshal(v)
		require.NoError(t, err)
		assert.Equal(t, string(want), string(appendJSON(nil, v)), "%#v", v)
	}
}

func TestAppendJSONIsValidForOddValues(t *testing.T) {
	t.Parallel()
	for _, v := range []any{"bad utf8 \xff here", struct{ A int }{1}, big.NewInt(5)} {
		out := appendJSON(nil, v)
		assert.True(t, json.Valid(out), "%s", out)
	}
}
