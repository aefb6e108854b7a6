package httptarget

import (
	"bytes"
	"encoding/json"
	"math"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// slowBody is what encodeBody did before it had a fast path.
func slowBody(v any) ([]byte, error) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	return bytes.TrimSuffix(buf.Bytes(), []byte("\n")), nil
}

// slowID is what insertedID did before it had a fast path.
func slowID(body []byte, path string) (string, bool) {
	v, err := decodeJSON(body)
	if err != nil {
		return "", false
	}
	raw, ok := lookupPath(v, path)
	if !ok {
		return "", false
	}
	return idText(raw)
}

var jsonStrings = []string{
	"", "plain", `quote " and \ backslash`, "<html> & 'amp'", "tab\tnew\nline\rcr\bbs\fff",
	"\x00\x01\x1f\x7f", "é ü 漢字 🚀", "\u2028 and \u2029", "bad \xff utf8 \xc3", "\xed\xa0\x80 surrogate",
	strings.Repeat("long ", 100),
}

func TestAppendJSONMatchesEncodingJSON(t *testing.T) {
	values := []any{
		nil, true, false, int64(0), int64(-42), int64(math.MaxInt64), 7, int32(-7),
		0.0, -0.0, 1.5, 1e20, 1e21, 1e-6, 1e-7, 123456789.125, -2.5e-10, math.MaxFloat64, math.SmallestNonzeroFloat64,
		json.Number("1234.56"), json.Number("-0.5e+10"), json.Number(""),
		time.Date(2024, 1, 2, 3, 4, 5, 600, time.UTC), time.Date(2024, 1, 2, 3, 4, 5, 0, time.FixedZone("x", 3600)),
		map[string]any{}, map[string]any(nil), []any{}, []any(nil),
		map[string]any{"b": 1, "a": []any{"x", nil, map[string]any{"z": true, "y": json.Number("3")}}, "": "empty key", "é": 1.25},
	}
	for _, s := range jsonStrings {
		values = append(values, s, map[string]any{s: s})
	}
	for _, v := range values {
		want, err := slowBody(v)
		require.NoError(t, err, "%#v", v)
		got, ok := appendJSON(nil, v)
		require.True(t, ok, "%#v", v)
		require.Equal(t, string(want), string(got), "%#v", v)
	}
}

func TestAppendJSONLeavesTheRestToEncodingJSON(t *testing.T) {
	type custom struct{ A int }
	for _, v := range []any{
		math.NaN(), math.Inf(1), json.Number("1e"), json.Number("abc"), float32(1.5), uint8(3), custom{1},
		map[string]string{"a": "b"}, []string{"a"}, time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC),
		map[string]any{"ok": 1, "bad": math.NaN()}, []any{1, json.Number("x")},
	} {
		_, ok := appendJSON(nil, v)
		require.False(t, ok, "%#v", v)
		// and encodeBody still gives encoding/json's answer, error or bytes
		want, wantErr := slowBody(map[string]any{"v": v})
		got, gotErr := encodeBody("", map[string]any{"v": v})
		require.Equal(t, wantErr != nil, gotErr != nil, "%#v", v)
		require.Equal(t, string(want), string(got), "%#v", v)
	}
}

func TestAppendJSONRandomStrings(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	alphabet := []string{"a", "\"", "\\", "\n", "\x00", "\x1f", "é", "\u2028", "\xff", "\xe2\x80", "<", "漢", " "}
	for range 5000 {
		var sb strings.Builder
		for range r.IntN(12) {
			sb.WriteString(alphabet[r.IntN(len(alphabet))])
		}
		s := sb.String()
		want, err := slowBody(s)
		require.NoError(t, err)
		require.Equal(t, string(want), string(appendJSONString(nil, s)), "%q", s)
	}
}

func TestFindIDMatchesDecoding(t *testing.T) {
	cases := []struct{ body, path string }{
		{`{"id":"c_1","name":"x"}`, "id"},
		{` {"name":"x", "id" : 42 } `, "id"},
		{`{"id":1234567890123456789012}`, "id"},
		{`{"id":-1.5e3}`, "id"},
		{`{"id":"a"}trailing garbage`, "id"},
		{`{"id":"a"}{"id":"b"}`, "id"},
		{`{"id":"first","id":"last"}`, "id"},
		{`{"\u0069d":"escaped key"}`, "id"},
		{`{"id":"esc\"aped\u00e9"}`, "id"},
		{`{"data":{"id":"nested","x":[1,{"id":2}]}}`, "data.id"},
		{`{"results":[{"id":"r0"},{"id":"r1"}]}`, "results.1.id"},
		{`{"results":[{"id":"r0"}]}`, "results.+0.id"},
		{`{"results":[{"id":"r0"}]}`, "results.00.id"},
		{`[{"id":"top"}]`, "0.id"},
		{`{"a":{"":{"id":"x"}}}`, "a..id"},
		{`{"id":"x","s":"with } and ] and \" inside","n":[[],{}]}`, "id"},
		{`{"id":"bad \xff utf8"}`, "id"},
		// Not found or not an id: the slow path answers (with its error).
		{`{"id":""}`, "id"},
		{`{"id":null}`, "id"},
		{`{"id":true}`, "id"},
		{`{"id":{"x":1}}`, "id"},
		{`{"ID":"case"}`, "id"},
		{`{"results":[]}`, "results.0.id"},
		{`{"results":[{"id":"r0"}]}`, "results.-1.id"},
		{`{"results":{"0":{"id":"keyed"}}}`, "results.0.id"},
		{`"just a string"`, "."},
		{`42`, "id"},
		{`{"id":"x"`, "id"},
		{`{"id":"x",}`, "id"},
		{`{"id" "x"}`, "id"},
		{`not json`, "id"},
		{``, "id"},
		{"\xef\xbb\xbf{\"id\":\"bom\"}", "id"},
	}
	for _, c := range cases {
		wantID, wantOK := slowID([]byte(c.body), c.path)
		gotID, gotOK := findID([]byte(c.body), c.path)
		if gotOK {
			require.True(t, wantOK, "%s at %s: the fast path found %q where decoding finds none", c.body, c.path, gotID)
			require.Equal(t, wantID, gotID, "%s at %s", c.body, c.path)
		}
		// The fast path may decline what decoding accepts, but then
		// insertedID takes the slow path: the answer is the same.
		obj := object{idPath: c.path}
		id, err := insertedID(obj, []byte(c.body))
		require.Equal(t, wantOK, err == nil, "%s at %s", c.body, c.path)
		require.Equal(t, wantID, id, "%s at %s", c.body, c.path)
	}
	// The usual responses take the fast path.
	for _, c := range cases[:16] {
		_, ok := findID([]byte(c.body), c.path)
		require.True(t, ok, "%s at %s", c.body, c.path)
	}
}

func FuzzFindID(f *testing.F) {
	f.Add([]byte(`{"id":"c_1","name":"x"}`), "id")
	f.Add([]byte(`{"data":{"id":7}}`), "data.id")
	f.Add([]byte(`{"results":[{"id":"r0"},{"id":"r1"}]}`), "results.1.id")
	f.Add([]byte(`[1,"2",{"3":[4]}]`), "2.3.0")
	f.Fuzz(func(t *testing.T, body []byte, path string) {
		gotID, gotOK := findID(body, path)
		if !gotOK {
			return
		}
		wantID, wantOK := slowID(body, path)
		if !wantOK || wantID != gotID {
			t.Fatalf("%q at %q: fast %q, decoding %q (%v)", body, path, gotID, wantID, wantOK)
		}
	})
}

func FuzzAppendJSONString(f *testing.F) {
	for _, s := range jsonStrings {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		want, err := slowBody(s)
		if err != nil {
			t.Fatal(err)
		}
		if got := appendJSONString(nil, s); string(got) != string(want) {
			t.Fatalf("%q: got %s, want %s", s, got, want)
		}
	})
}
