package enginetest_test

import (
	"context"
	"testing"

	"github.com/ferry-sync/ferry/engine/connector"
	"github.com/ferry-sync/ferry/engine/connector/conformance"
	"github.com/ferry-sync/ferry/engine/enginetest"
)

// The in-process target the engine's tests use behaves like every real
// kind: the engine's tests would prove nothing otherwise.
func TestMemoryConformance(t *testing.T) {
	t.Parallel()
	conformance.Run(t, conformance.Harness{Setup: func(t *testing.T) conformance.Env {
		m := enginetest.NewMemory()
		m.Validate = func(_ string, p map[string]any) string {
			if p["email"] == nil || p["email"] == "" {
				return "email is required"
			}
			return ""
		}
		return conformance.Env{
			Target:         m,
			Object:         "contacts",
			Invalid:        map[string]any{"name": "no email"},
			InvalidMessage: "email",
			MissingID:      "987654321",
			Read: func(_ context.Context, id string) (map[string]any, error) {
				r, ok := m.Records("contacts")[id]
				if !ok {
					return nil, nil
				}
				return r, nil
			},
			Count: func(context.Context) (int, error) { return len(m.Records("contacts")), nil },
			BadAuth: func(t *testing.T) connector.Target {
				bad := enginetest.NewMemory()
				bad.AuthFail = true
				return bad
			},
		}
	}})
}
