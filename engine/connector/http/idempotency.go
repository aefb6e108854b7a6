package httptarget

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"maps"
	"strings"

	"github.com/ferry-sync/ferry/engine/connector"
	"github.com/ferry-sync/ferry/internal/jsonx"
)

// clientID is a ClientID resolved.
type clientID struct {
	field    string
	length   int
	alphabet string
	exists   *answerRule
}

func resolveClientID(path string, in ClientID) (*clientID, error) {
	c := &clientID{field: in.Field, length: in.Length, alphabet: in.Alphabet}
	if c.field == "" {
		return nil, problem(path+".field", "is required: the field of the create body that holds the id")
	}
	if c.length == 0 {
		c.length = 15
	}
	if c.length < 8 || c.length > 64 {
		return nil, problem(path+".length", "%d: use 8 to 64 characters", in.Length)
	}
	if c.alphabet == "" {
		c.alphabet = DefaultClientIDChars
	}
	if len(c.alphabet) < 2 || len(c.alphabet) > 256 || strings.ContainsFunc(c.alphabet, func(r rune) bool { return r >= 0x80 }) {
		return nil, problem(path+".alphabet", "use 2 or more ASCII characters")
	}
	if in.Exists == nil {
		return nil, problem(path+".exists", "is required: the answer that says a record with that id already exists (e.g. {status: [400], field: id})")
	}
	var err error
	if c.exists, err = resolveAnswer(path+".exists", in.Exists); err != nil {
		return nil, err
	}
	return c, nil
}

// withClientID returns the payload with the insert's client-chosen id in
// it (a copy: the caller's map is not touched), and that id. A payload that
// already holds a non-empty string there keeps it.
func (t *Target) withClientID(ctx context.Context, obj object, ch connector.Change) (map[string]any, string) {
	c := obj.clientID
	if s, ok := ch.Payload[c.field].(string); ok && s != "" {
		return ch.Payload, s
	}
	id := deriveID(connector.IdempotencyScope(ctx), obj.name, ch.SourceID, c.length, c.alphabet)
	out := make(map[string]any, len(ch.Payload)+1)
	maps.Copy(out, ch.Payload)
	out[c.field] = id
	return out, id
}

// deriveID is an id of length characters of alphabet, the same for the
// same scope, object and source id: a retried insert carries the id of the
// first, so the API answers "already exists" instead of creating a
// duplicate. It is uniform over the alphabet (rejection sampling).
func deriveID(scope, object, sourceID string, length int, alphabet string) string {
	seed := sha256.Sum256([]byte(fmt.Sprintf("ferry-client-id\x00%s\x00%s\x00%s", scope, object, sourceID)))
	out := make([]byte, 0, length)
	limit := 256 - 256%len(alphabet) // bytes at or over it would bias the draw
	for block := uint32(0); len(out) < length; block++ {
		var counter [4]byte
		binary.BigEndian.PutUint32(counter[:], block)
		sum := sha256.Sum256(append(seed[:], counter[:]...))
		for _, b := range sum {
			if int(b) < limit {
				out = append(out, alphabet[int(b)%len(alphabet)])
				if len(out) == length {
					break
				}
			}
		}
	}
	return string(out)
}

// idempotencyKey is the Idempotency-Key of an insert: the same for the same
// scope, object, source id and record, so that a retry is recognised, and
// a different one once the record changed (a corrected record is a new
// request, not a replay of the refused one).
func idempotencyKey(ctx context.Context, obj object, ch connector.Change) string {
	h := sha256.New()
	fmt.Fprintf(h, "ferry-idempotency-key\x00%s\x00%s\x00%s\x00%s\x00", connector.IdempotencyScope(ctx), obj.name, ch.Op, ch.SourceID)
	h.Write(jsonx.AppendCanonical(nil, ch.Payload))
	return hex.EncodeToString(h.Sum(nil))[:40]
}
