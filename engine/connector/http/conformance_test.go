package httptarget_test

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/ferry-sync/ferry/engine/connector"
	"github.com/ferry-sync/ferry/engine/connector/conformance"
	"github.com/ferry-sync/ferry/engine/connector/crmtest"
	httptarget "github.com/ferry-sync/ferry/engine/connector/http"
)

// Compile-time checks of the capabilities the kind offers.
var (
	_ connector.Target = (*httptarget.Target)(nil)
	_ connector.Finder = (*httptarget.Target)(nil)
)

const token = "s3cret-token"

// contactsCRM is a CRM whose contacts need a unique email.
func contactsCRM(t testing.TB) *crmtest.Server {
	return crmtest.New(t, crmtest.Options{
		Token:   token,
		Objects: map[string]crmtest.Object{"contacts": {Required: []string{"email"}, Unique: []string{"email"}}},
	})
}

// config returns a target config for srv's contacts, authenticating with
// tokenValue. Backoff is short so that retries keep tests fast.
func config(srv *crmtest.Server, tokenValue string) httptarget.Config {
	return configAt(srv.URL, tokenValue)
}

// configAt is config for a server at baseURL (one in a child process).
func configAt(baseURL, tokenValue string) httptarget.Config {
	return httptarget.Config{
		BaseURL: baseURL,
		Auth:    httptarget.Auth{Type: "bearer", TokenEnv: "CRM_TOKEN"},
		Env: func(name string) (string, bool) {
			if name == "CRM_TOKEN" {
				return tokenValue, true
			}
			return "", false
		},
		BackoffBase: httptarget.Duration(time.Millisecond),
		BackoffMax:  httptarget.Duration(5 * time.Millisecond),
		Objects: map[string]httptarget.Object{
			"contacts": {Lookup: &httptarget.Lookup{Path: "/contacts/search"}},
		},
	}
}

func newTarget(t testing.TB, cfg httptarget.Config) *httptarget.Target {
	t.Helper()
	target, err := httptarget.New(context.Background(), cfg)
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, target.Close()) })
	return target
}

func TestConformance(t *testing.T) {
	t.Parallel()
	harness(t, func(srv *crmtest.Server, tokenValue string) httptarget.Config { return config(srv, tokenValue) })
}

// TestConformanceBatch runs the suite with inserts and updates sent in
// batches of 8 through crmtest's all-or-nothing batch endpoints: a bad
// record is found by splitting, and each result still lands in its place.
func TestConformanceBatch(t *testing.T) {
	t.Parallel()
	harness(t, func(srv *crmtest.Server, tokenValue string) httptarget.Config {
		cfg := batchConfig(srv, 8)
		cfg.Env = config(srv, tokenValue).Env
		return cfg
	})
}

func harness(t *testing.T, configure func(srv *crmtest.Server, tokenValue string) httptarget.Config) {
	conformance.Run(t, conformance.Harness{Setup: func(t *testing.T) conformance.Env {
		srv := contactsCRM(t)
		return conformance.Env{
			Target:         newTarget(t, configure(srv, token)),
			Object:         "contacts",
			Invalid:        map[string]any{"name": "no email"},
			InvalidMessage: "email: is required",
			MissingID:      "c_999999",
			Read: func(_ context.Context, id string) (map[string]any, error) {
				rec, ok := srv.Record("contacts", id)
				if !ok {
					return nil, nil
				}
				return rec, nil
			},
			Count: func(context.Context) (int, error) { return srv.Count("contacts"), nil },
			BadAuth: func(t *testing.T) connector.Target {
				return newTarget(t, configure(srv, "wrong-token"))
			},
		}
	}})
}
