package connector_test

import (
	"encoding/json"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/ferry-sync/ferry/engine/connector"
)

type strictInner struct {
	Size  int               `json:"size"`
	Names []string          `json:"names"`
	Any   any               `json:"any"`
	Tags  map[string]string `json:"tags"`
}

type strictOuter struct {
	Name    string                 `json:"name"`
	On      bool                   `json:"on"`
	Objects map[string]strictInner `json:"objects"`
	Ptr     *strictInner           `json:"ptr"`
	Skip    string                 `json:"-"`
}

func TestDecodeStrictNamesThePath(t *testing.T) {
	t.Parallel()
	tests := []struct {
		raw  string
		want string
	}{
		{`{"objects":{"contacts":{"sise":1}}}`, `objects.contacts: unknown field "sise" (known: size, names, any, tags)`},
		{`{"objects":{"contacts":{"size":"ten"}}}`, `objects.contacts.size: a number is expected, not a string ("ten")`},
		{`{"objects":{"contacts":{"size":1.5}}}`, `objects.contacts.size: 1.5 does not fit: a whole number is expected`},
		{`{"ptr":{"names":["a",2]}}`, `ptr.names[1]: a string is expected, not a number (2)`},
		{`{"on":"yes"}`, `on: true or false is expected, not a string ("yes")`},
		{`{"objects":[]}`, `objects: an object is expected, not a list`},
		{`{"Skip":"x"}`, `unknown field "Skip" (known: name, on, objects, ptr)`},
		{`{"name":1,"on":2}`, `name: a string is expected, not a number (1); on: true or false is expected, not a number (2)`},
	}
	for _, tc := range tests {
		var v strictOuter
		err := connector.DecodeStrict(json.RawMessage(tc.raw), &v)
		require.EqualError(t, err, tc.want, tc.raw)
	}

	var v strictOuter
	require.NoError(t, connector.DecodeStrict(json.RawMessage(`{"NAME":"x","objects":{"c":{"size":3,"any":{"n":1.50},"tags":{"a":"b"}}},"ptr":null}`), &v))
	require.Equal(t, "x", v.Name, "matched without regard to case, as encoding/json does")
	require.Equal(t, 3, v.Objects["c"].Size)
	require.Equal(t, map[string]any{"n": json.Number("1.50")}, v.Objects["c"].Any, "numbers in free-form values keep their digits")
	require.NoError(t, connector.DecodeStrict(nil, &v))
}
