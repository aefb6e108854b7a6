package crmtest

import (
	"encoding/json"

	"github.com/ferry-sync/ferry/internal/jsonx"
)

// marshal encodes a reply body. Replies are records as requests decoded them
// (strings, json.Numbers, bools, nulls, objects and arrays), which
// jsonx.Append writes without the reflection of encoding/json, a good part
// of the server's work per request in a benchmark; anything else (the 422
// field errors) goes to json.Marshal. Strings are written without HTML
// escaping, which decodes to the same values.
func marshal(v any) ([]byte, error) {
	if b, ok := jsonx.Append(make([]byte, 0, 512), v); ok {
		return b, nil
	}
	return json.Marshal(v)
}
