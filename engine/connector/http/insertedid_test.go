package httptarget

import (
	"bytes"
	"encoding/json"
	"math"
	"testing"

	"github.com/stretchr/testify/require"
)

// insertedID reads the usual responses with jsonx.FindPath and decodes the
// rest; either way the id, or the want of one, is what decoding finds.
func TestInsertedIDAgreesWithDecoding(t *testing.T) {
	for _, c := range []struct{ body, path string }{
		{`{"id":"c_1","name":"x"}`, "id"},
		{`{"id":12345678901234567890}`, "id"},
		{`{"id":"first","id":"last"}`, "id"},
		{`{"data":{"record":{"id":"deep"}}}`, "data.record.id"},
		{`{"results":[{"id":"r0"},{"id":"r1"}]}`, "results.1.id"},
		{`[{"id":"top"}]`, "0.id"},
		{`"c_9"`, "."},
		{`77`, ""},
		{`{"id":""}`, "id"},
		{`{"id":[1]}`, "id"},
		{`{"other":"x"}`, "id"},
		{`<html>oops</html>`, "id"},
	} {
		var wantID string
		v, err := decodeJSON([]byte(c.body))
		raw, found := lookupPath(v, c.path)
		if err == nil && found {
			wantID, found = idText(raw)
		}
		id, err := insertedID(object{idPath: c.path}, []byte(c.body), nil)
		require.Equal(t, found, err == nil, "%s at %s", c.body, c.path)
		require.Equal(t, wantID, id, "%s at %s", c.body, c.path)
	}
}

// encodeBody writes what a json.Encoder without HTML escaping writes, and
// fails where it fails.
func TestEncodeBodyAsEncodingJSON(t *testing.T) {
	for _, c := range []struct {
		key     string
		payload map[string]any
	}{
		{"", nil},
		{"", map[string]any{"name": "<b>A & B</b>", "n": json.Number("1.50"), "tags": []any{"x", nil}}},
		{"record", map[string]any{"email": "a@example.com"}},
		{"record", map[string]any{"odd": []string{"a"}, "n": uint8(3)}},
		{"", map[string]any{"bad": math.NaN()}},
	} {
		var wrapped any = c.payload
		if c.payload == nil {
			wrapped = map[string]any{}
		}
		if c.key != "" {
			wrapped = map[string]any{c.key: wrapped}
		}
		var buf bytes.Buffer
		enc := json.NewEncoder(&buf)
		enc.SetEscapeHTML(false)
		wantErr := enc.Encode(wrapped)
		got, err := encodeBody(c.key, c.payload)
		require.Equal(t, wantErr != nil, err != nil, "%#v", c)
		require.Equal(t, string(bytes.TrimSuffix(buf.Bytes(), []byte("\n"))), string(got), "%#v", c)
	}
}
