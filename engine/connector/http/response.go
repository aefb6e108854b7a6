package httptarget

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/ferry-sync/ferry/engine/connector"
	"github.com/ferry-sync/ferry/internal/jsonx"
)

// maxMessage is how much of a response body an error message keeps.
const maxMessage = 500

// decodeJSON decodes a response body keeping numbers exact.
func decodeJSON(b []byte) (any, error) {
	if obj, ok := jsonx.DecodeObject(b); ok {
		// The fast path for objects: the same values encoding/json gives.
		return obj, nil
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return nil, err
	}
	return v, nil
}

// lookupPath follows a dot path ("data.id", "results.0.id") through objects
// and arrays. "" and "." mean the value itself.
func lookupPath(v any, path string) (any, bool) {
	if path == "" || path == "." {
		return v, true
	}
	for _, seg := range strings.Split(path, ".") {
		switch node := v.(type) {
		case map[string]any:
			next, ok := node[seg]
			if !ok {
				return nil, false
			}
			v = next
		case []any:
			i, err := strconv.Atoi(seg)
			if err != nil || i < 0 || i >= len(node) {
				return nil, false
			}
			v = node[i]
		default:
			return nil, false
		}
	}
	return v, true
}

// idText turns an id found in a response into text: strings as they are,
// numbers with their exact digits.
func idText(v any) (string, bool) {
	switch id := v.(type) {
	case string:
		return id, id != ""
	case json.Number:
		return id.String(), true
	default:
		return "", false
	}
}

// targetMessage extracts what the target said from an error body, knowing
// the usual shapes: {"message"}, {"error": "…"}, {"error": {"message"}},
// {"errors": [...]}, RFC 7807 {"title", "detail"}, OAuth
// {"error_description"}. Otherwise it is the body itself, trimmed. r's
// secrets are redacted before trimming: a secret cut in two by the trim
// would no longer be recognised, and half of it would be kept.
func targetMessage(status int, body []byte, r *connector.Redactor) string {
	if v, err := decodeJSON(body); err == nil {
		if obj, ok := v.(map[string]any); ok {
			if msg := messageOf(obj); msg != "" {
				// Decoded, so a secret the body wrote with escapes is plain here.
				return trim(r.Redact(msg))
			}
		}
	}
	// Redacted before the whitespace is folded: a secret with a line break
	// in it would no longer match afterwards.
	if msg := strings.Join(strings.Fields(r.Redact(string(body))), " "); msg != "" {
		return trim(msg)
	}
	if text := http.StatusText(status); text != "" {
		return text
	}
	return fmt.Sprintf("status %d", status)
}

func messageOf(obj map[string]any) string {
	var parts []string
	add := func(s string) {
		if s = strings.TrimSpace(s); s != "" {
			parts = append(parts, s)
		}
	}
	if s, ok := obj["message"].(string); ok {
		add(s)
	}
	switch e := obj["error"].(type) {
	case string:
		if d, ok := obj["error_description"].(string); ok {
			add(e + ": " + d)
		} else {
			add(e)
		}
	case map[string]any:
		add(messageOf(e))
	}
	if len(parts) == 0 {
		if d, ok := obj["detail"].(string); ok {
			add(d)
		} else if t, ok := obj["title"].(string); ok {
			add(t)
		}
	}
	if errs, ok := obj["errors"].([]any); ok {
		var items []string
		for _, item := range errs {
			if s := errorItem(item); s != "" {
				items = append(items, s)
			}
		}
		add(strings.Join(items, "; "))
	}
	return strings.Join(parts, ": ")
}

// errorItem renders one entry of an "errors" list: a string, or an object
// with a message and maybe the field it is about.
func errorItem(item any) string {
	switch it := item.(type) {
	case string:
		return it
	case map[string]any:
		msg := messageOf(it)
		if msg == "" {
			if s, ok := it["code"].(string); ok {
				msg = s
			}
		}
		for _, key := range []string{"field", "property", "path", "name"} {
			if f, ok := it[key].(string); ok && f != "" && msg != "" {
				return f + ": " + msg
			}
		}
		return msg
	default:
		return ""
	}
}

// excerpt is a response body for an error message: r's secrets redacted,
// then trimmed.
func excerpt(body []byte, r *connector.Redactor) string {
	return trim(r.Redact(string(body)))
}

func trim(s string) string {
	if len(s) <= maxMessage {
		return s
	}
	cut := maxMessage
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + "…"
}

// parseRetryAfter reads a Retry-After header: delay seconds ("120", and
// fractions such as "0.5", which test servers send) or an HTTP date.
func parseRetryAfter(value string, now time.Time) (time.Duration, bool) {
	value = strings.TrimSpace(value)
	if value == "" {
		return 0, false
	}
	if secs, err := strconv.ParseFloat(value, 64); err == nil {
		if secs < 0 || secs > 1e6 {
			return 0, false
		}
		return time.Duration(secs * float64(time.Second)), true
	}
	when, err := http.ParseTime(value)
	if err != nil {
		return 0, false
	}
	d := when.Sub(now)
	if d < 0 {
		d = 0
	}
	return d, true
}
