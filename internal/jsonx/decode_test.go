package jsonx

import (
	"bytes"
	"encoding/json"
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// decodePath is what FindPath must agree with: decode the first value with
// UseNumber, follow the path, take a non-empty string or a number's text.
func decodePath(body []byte, path string) (string, bool) {
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber()
	var v any
	if dec.Decode(&v) != nil {
		return "", false
	}
	if path != "" && path != "." {
		for seg := range strings.SplitSeq(path, ".") {
			var ok bool
			if obj, isObj := v.(map[string]any); isObj {
				v, ok = obj[seg]
			} else if list, isList := v.([]any); isList {
				n, err := strconv.Atoi(seg)
				if ok = err == nil && n >= 0 && n < len(list); ok {
					v = list[n]
				}
			}
			if !ok {
				return "", false
			}
		}
	}
	if n, isNum := v.(json.Number); isNum {
		return n.String(), true
	}
	s, _ := v.(string)
	return s, s != ""
}

var pathCases = []struct{ body, path string }{
	// The usual responses: FindPath answers.
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
	{"{\"id\":\"bad \xff utf8\"}", "id"},
	// Not JSON, not found or not an id: the caller decodes (and words the
	// error).
	{`{"id":"bad \x escape"}`, "id"},
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

func TestFindPathMatchesDecoding(t *testing.T) {
	for _, c := range pathCases {
		wantID, wantOK := decodePath([]byte(c.body), c.path)
		gotID, gotOK := FindPath([]byte(c.body), c.path)
		if gotOK {
			require.True(t, wantOK, "%s at %s: FindPath found %q where decoding finds none", c.body, c.path, gotID)
			require.Equal(t, wantID, gotID, "%s at %s", c.body, c.path)
		}
	}
	// The usual responses take the fast path.
	for _, c := range pathCases[:17] {
		_, ok := FindPath([]byte(c.body), c.path)
		require.True(t, ok, "%s at %s", c.body, c.path)
	}
}

func FuzzFindPath(f *testing.F) {
	for _, c := range pathCases {
		f.Add([]byte(c.body), c.path)
	}
	f.Add([]byte(`[1,"2",{"3":[4]}]`), "2.3.0")
	f.Fuzz(func(t *testing.T, body []byte, path string) {
		gotID, gotOK := FindPath(body, path)
		if !gotOK {
			return
		}
		wantID, wantOK := decodePath(body, path)
		if !wantOK || wantID != gotID {
			t.Fatalf("%q at %q: FindPath %q, decoding %q (%v)", body, path, gotID, wantID, wantOK)
		}
	})
}

// decodeObject is what DecodeObject must agree with.
func decodeObject(b []byte) (map[string]any, bool) {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	var body map[string]any
	if err := dec.Decode(&body); err != nil || body == nil {
		return nil, false
	}
	return body, true
}

var objectBodies = []string{
	// DecodeObject answers.
	`{"email":"a@example.com","n":12345678901234567890.5}`,
	` {"a" : [1, -2.5e+3, "x", true, false, null, {}, []], "b": {"c": {"d": "e"}}} `,
	`{"dup":1,"dup":2}`,
	`{"esc\u0061ped":"quote \" backslash \\ \u00e9 \ud83d\ude80 \n"}`,
	`{}`,
	`{"a":1}trailing`,
	`{"a":1}{"b":2}`,
	`{"a":[]}`,
	"{\"bad\":\"\xff utf8\"}",
	// Not an object, or not JSON: the caller decodes.
	`{"bad":"\x escape"}`,
	`null`, `[1]`, `"s"`, `{"a":}`, `{"a":1`, `{"a" 1}`, ``, `{"a":01}`, "\xef\xbb\xbf{}",
}

func TestDecodeObjectMatchesEncodingJSON(t *testing.T) {
	for _, body := range objectBodies {
		want, wantOK := decodeObject([]byte(body))
		got, gotOK := DecodeObject([]byte(body))
		if gotOK {
			require.True(t, wantOK, body)
			require.Equal(t, want, got, body)
		}
	}
	for _, body := range objectBodies[:9] {
		_, ok := DecodeObject([]byte(body))
		require.True(t, ok, "%s takes the fast path", body)
	}
}

func FuzzDecodeObject(f *testing.F) {
	for _, body := range objectBodies {
		f.Add([]byte(body))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		got, ok := DecodeObject(body)
		if !ok {
			return
		}
		want, wantOK := decodeObject(body)
		if !wantOK {
			t.Fatalf("%q: decoded as %v where encoding/json fails", body, got)
		}
		require.Equal(t, want, got, "%q", body)
	})
}
