package connector_test

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/ferry-sync/ferry/engine/connector"
)

func TestSameValue(t *testing.T) {
	when := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	cases := []struct {
		got, want any
		same      bool
	}{
		{"a@x.com", "a@x.com", true},
		{" A@X.com ", "a@x.com", true},
		{"a@x.com", "b@x.com", false},
		{json.Number("5"), int64(5), true},
		{"5", int64(5), true},
		{"5.0", json.Number("5"), true},
		{"007", "7", false},
		{float64(1.5), json.Number("1.50"), true},
		{int64(5), int64(6), false},
		{true, true, true},
		{"true", true, true},
		{nil, nil, true},
		{nil, "", false},
		{"2026-01-02T04:04:05+01:00", when, true},
		{map[string]any{"a": "b"}, map[string]any{"a": "b"}, true},
	}
	for _, c := range cases {
		assert.Equal(t, c.same, connector.SameValue(c.got, c.want), "%#v vs %#v", c.got, c.want)
	}
}

func TestMatching(t *testing.T) {
	match := map[string]any{"email": "b@x.com"}
	all := []map[string]any{
		{"id": "1", "email": "a@x.com"},
		{"id": "2", "email": "B@x.com"},
		{"id": "3", "properties": map[string]any{"email": "b@x.com"}},
		{"id": "4"},
	}
	kept, err := connector.Matching("contacts", all, match)
	require.NoError(t, err)
	assert.Equal(t, []map[string]any{all[1]}, kept, "only a record whose field equals the match")

	kept, err = connector.Matching("contacts", all, map[string]any{"properties.email": "b@x.com"})
	require.NoError(t, err)
	assert.Equal(t, []map[string]any{all[2]}, kept, "a dotted path reaches a nested field")

	kept, err = connector.Matching("contacts", nil, match)
	require.NoError(t, err)
	assert.Empty(t, kept, "nothing returned is not found")

	_, err = connector.Matching("contacts", all[:1], match)
	var mismatch *connector.LookupMismatchError
	require.ErrorAs(t, err, &mismatch)
	assert.EqualError(t, err, "looking up contacts by email=b@x.com: the target answered 1 records and none has those values (the first has email=a@x.com): the lookup endpoint ignores or misreads the filter; fix the object's lookup settings")
}
