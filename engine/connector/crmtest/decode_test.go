package crmtest

import (
	"bytes"
	"encoding/json"
	"testing"

	"github.com/stretchr/testify/require"
)

// slowObject is how readFields decoded a body before it had a fast path.
func slowObject(b []byte) (map[string]any, bool) {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	var body map[string]any
	if err := dec.Decode(&body); err != nil || body == nil {
		return nil, false
	}
	return body, true
}

var objectBodies = []string{
	`{"email":"a@example.com","n":12345678901234567890.5}`,
	` {"a" : [1, -2.5e+3, "x", true, false, null, {}, []], "b": {"c": {"d": "e"}}} `,
	`{"dup":1,"dup":2}`,
	`{"esc\u0061ped":"quote \" backslash \\ \u00e9 \ud83d\ude80 \n"}`,
	`{}`,
	`{"a":1}trailing`,
	`{"a":1}{"b":2}`,
	`{"a":[]}`,
	// not an object, or not JSON (or invalid UTF-8): the slow path answers
	`{"bad":"\xff utf8"}`,
	`null`, `[1]`, `"s"`, `{"a":}`, `{"a":1`, `{"a" 1}`, ``, `{"a":01}`, "\xef\xbb\xbf{}",
}

func TestDecodeObjectMatchesEncodingJSON(t *testing.T) {
	for _, body := range objectBodies {
		want, wantOK := slowObject([]byte(body))
		got, gotOK := decodeObject([]byte(body))
		if gotOK {
			require.True(t, wantOK, body)
			require.Equal(t, want, got, body)
		}
	}
	for _, body := range objectBodies[:8] {
		_, ok := decodeObject([]byte(body))
		require.True(t, ok, "%s takes the fast path", body)
	}
}

func FuzzDecodeObject(f *testing.F) {
	for _, body := range objectBodies {
		f.Add([]byte(body))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		got, ok := decodeObject(body)
		if !ok {
			return
		}
		want, wantOK := slowObject(body)
		if !wantOK {
			t.Fatalf("%q: decoded as %v where encoding/json fails", body, got)
		}
		require.Equal(t, want, got, "%q", body)
	})
}
