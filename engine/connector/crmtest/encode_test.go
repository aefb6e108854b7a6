package crmtest

import (
	"bytes"
	"encoding/json"
	"io"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// decoded is what a client reads from a reply.
func decoded(t *testing.T, b []byte) any {
	t.Helper()
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	var v any
	require.NoError(t, dec.Decode(&v), "%s", b)
	_, err := dec.Token()
	require.ErrorIs(t, err, io.EOF, "%s: one value and nothing after it", b)
	return v
}

// marshal's replies may differ from json.Marshal's bytes (no HTML escaping)
// but not in what they decode to, nor in what it refuses.
func TestMarshalDecodesAsEncodingJSON(t *testing.T) {
	strs := []string{
		"", "plain", `quote " and \ backslash`, "<html> & 'amp'", "tab\tnew\nline\rcr\bbs\fff",
		"\x00\x01\x1f\x7f", "é ü 漢字 🚀", "\u2028 and \u2029", "bad \xff utf8 \xc3",
	}
	values := []any{
		nil, true, false, json.Number("12345678901234567890.5"), json.Number("-1e+5"), json.Number("0"),
		map[string]any{}, map[string]any(nil), []any{}, []any(nil),
		map[string]any{"id": "c_1", "b": []any{json.Number("1"), nil, map[string]any{"z": true}}, "a": "x"},
		map[string]any{"errors": []fieldError{{"email", "is required"}}},
		map[string]any{"n": json.Number("")}, map[string]any{"n": json.Number("1 ")}, json.Number("x"),
	}
	for _, s := range strs {
		values = append(values, s, map[string]any{s: s})
	}
	r := rand.New(rand.NewPCG(3, 4))
	alphabet := []string{"a", "\"", "\\", "\n", "\x00", "é", "\u2028", "\xff", "\xe2\x80", "<", "&", ">", " "}
	for range 3000 {
		var sb strings.Builder
		for range r.IntN(10) {
			sb.WriteString(alphabet[r.IntN(len(alphabet))])
		}
		values = append(values, sb.String())
	}
	for _, v := range values {
		want, wantErr := json.Marshal(v)
		got, gotErr := marshal(v)
		require.Equal(t, wantErr != nil, gotErr != nil, "%#v", v)
		if wantErr == nil {
			require.Equal(t, decoded(t, want), decoded(t, got), "%#v", v)
		}
	}
}
