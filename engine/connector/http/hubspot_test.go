package httptarget_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/ferry-sync/ferry/engine/connector"
	"github.com/ferry-sync/ferry/engine/connector/conformance"
	httptarget "github.com/ferry-sync/ferry/engine/connector/http"
	"github.com/ferry-sync/ferry/engine/connector/hubtest"
)

const (
	hubToken        = "pat-eu1-0000-hub-token"
	hubClientID     = "client-id-123"
	hubClientSecret = "client-s3cret-456"
	hubRefresh      = "refresh-t0ken-789"
)

func hubSpot(t testing.TB, opts hubtest.Options) *hubtest.Server {
	if opts.Objects == nil {
		opts.Objects = map[string]hubtest.Object{"contacts": {
			Unique: []string{"email"}, Email: []string{"email"}, Defaults: []string{"email", "firstname", "lastname"},
		}}
	}
	return hubtest.New(t, opts)
}

func hubEnv(name string) (string, bool) {
	v, ok := map[string]string{"HUBSPOT_TOKEN": hubToken, "HUBSPOT_CLIENT_ID": hubClientID,
		"HUBSPOT_CLIENT_SECRET": hubClientSecret, "HUBSPOT_REFRESH_TOKEN": hubRefresh}[name]
	return v, ok
}

// hubConfig is the HubSpot example of the README: properties under
// "properties", field errors in "errors", a search lookup, and partial
// batches matched by objectWriteTraceId (creates) and id (updates).
func hubConfig(srv *hubtest.Server, batchSize int) httptarget.Config {
	obj := httptarget.Object{
		Insert:  httptarget.Endpoint{Path: "/crm/v3/objects/contacts"},
		Update:  httptarget.Endpoint{Path: "/crm/v3/objects/contacts/{id}"},
		BodyKey: "properties",
		Lookup: &httptarget.Lookup{
			Method: "POST",
			Path:   "/crm/v3/objects/contacts/search",
			Body: map[string]any{
				"filterGroups": []any{map[string]any{"filters": []any{
					map[string]any{"$each_match": map[string]any{"propertyName": "{{field}}", "operator": "EQ", "value": "{{value}}"}},
				}}},
				"properties": "{{fields}}",
				"limit":      10,
			},
		},
	}
	if batchSize > 0 {
		obj.Batch = &httptarget.Batch{
			Size: batchSize,
			Mode: "partial",
			Insert: &httptarget.BatchEndpoint{
				Path:      "/crm/v3/objects/contacts/batch/create",
				Body:      map[string]any{"inputs": "{{items}}"},
				Item:      map[string]any{"properties": "{{record}}", "objectWriteTraceId": "{{correlation_id}}"},
				Correlate: &httptarget.Correlate{Result: "objectWriteTraceId", Failure: "context.objectWriteTraceId"},
			},
			Update: &httptarget.BatchEndpoint{
				Path:      "/crm/v3/objects/contacts/batch/update",
				Body:      map[string]any{"inputs": "{{items}}"},
				Item:      map[string]any{"id": "{{id}}", "properties": "{{record}}"},
				Correlate: &httptarget.Correlate{Result: "id", Failure: "context.ids"},
			},
			Failures: &httptarget.BatchFailures{Path: "errors", NotFound: &httptarget.Answer{MessageContains: "not exist"}},
		}
	}
	return httptarget.Config{
		BaseURL:     srv.URL,
		Auth:        httptarget.Auth{Type: "bearer", TokenEnv: "HUBSPOT_TOKEN"},
		Errors:      &httptarget.FieldErrors{Path: "errors", Field: "context.propertyName"},
		Env:         hubEnv,
		BackoffBase: httptarget.Duration(5 * time.Millisecond),
		BackoffMax:  httptarget.Duration(200 * time.Millisecond),
		Objects:     map[string]httptarget.Object{"contacts": obj},
	}
}

// HubSpot writes the good records of a batch and answers 207 with the
// others; results come in no order and are matched by objectWriteTraceId.
func TestHubSpotPartialBatch(t *testing.T) {
	t.Parallel()
	srv := hubSpot(t, hubtest.Options{Token: hubToken})
	existing := srv.Put(t, "contacts", map[string]any{"email": "taken@example.com"})
	target := newTarget(t, hubConfig(srv, 100))
	ctx := context.Background()

	changes := make([]connector.Change, 12)
	for i := range changes {
		changes[i] = connector.Change{Op: connector.OpInsert, SourceID: fmt.Sprint(i),
			Payload: map[string]any{"email": fmt.Sprintf("person%d@example.com", i), "firstname": fmt.Sprintf("P%d", i)}}
	}
	changes[3].Payload["email"] = "not-an-email"
	changes[7].Payload["email"] = "taken@example.com"
	res, err := target.Write(ctx, "contacts", changes)
	require.NoError(t, err)
	require.Equal(t, 1, srv.Requests(), "one request; the failures are not re-sent")
	for i, r := range res {
		require.True(t, r.Done)
		switch i {
		case 3:
			require.Equal(t, connector.Rejected, r.Err.Class)
			require.Contains(t, r.Err.Message, "email: Email address not-an-email is invalid (INVALID_EMAIL)")
		case 7:
			require.Equal(t, connector.Rejected, r.Err.Class)
			require.Contains(t, r.Err.Message, "Contact already exists. Existing ID: "+existing)
		default:
			require.Nil(t, r.Err, "change %d", i)
			props, ok := srv.Properties("contacts", r.TargetID)
			require.True(t, ok)
			require.Equal(t, changes[i].Payload["email"], props["email"], "change %d is linked to its own record", i)
		}
	}
	require.Equal(t, 1+10, srv.Count("contacts"))

	// Updates: matched by id; one whose record is gone is NotFound.
	updates := []connector.Change{
		{Op: connector.OpUpdate, SourceID: "0", TargetID: res[0].TargetID, Payload: map[string]any{"firstname": "Zero"}},
		{Op: connector.OpUpdate, SourceID: "x", TargetID: "99999", Payload: map[string]any{"firstname": "Nobody"}},
		{Op: connector.OpUpdate, SourceID: "1", TargetID: res[1].TargetID, Payload: map[string]any{"email": "bad email"}},
		{Op: connector.OpUpdate, SourceID: "2", TargetID: res[2].TargetID, Payload: map[string]any{"firstname": "Two"}},
	}
	up, err := target.Write(ctx, "contacts", updates)
	require.NoError(t, err)
	require.Nil(t, up[0].Err)
	require.Equal(t, connector.NotFound, up[1].Err.Class, "%v", up[1].Err)
	require.Equal(t, connector.Rejected, up[2].Err.Class)
	require.Contains(t, up[2].Err.Message, "email: Email address bad email is invalid (INVALID_EMAIL)")
	require.Nil(t, up[3].Err)
	props, _ := srv.Properties("contacts", res[2].TargetID)
	require.Equal(t, "Two", props["firstname"])
	require.Equal(t, 2, srv.Requests())
}

func TestHubSpotSearchLookup(t *testing.T) {
	t.Parallel()
	srv := hubSpot(t, hubtest.Options{Token: hubToken})
	id := srv.Put(t, "contacts", map[string]any{"email": "ann@example.com", "firstname": "Ann"})
	srv.Put(t, "contacts", map[string]any{"email": "ann@example.com.au", "firstname": "Ann AU"})
	target := newTarget(t, hubConfig(srv, 0))
	ctx := context.Background()

	found, err := target.Find(ctx, "contacts", map[string]any{"email": "ANN@example.com"})
	require.NoError(t, err)
	require.Len(t, found, 1)
	require.Equal(t, id, found[0]["id"])
	require.Equal(t, "ann@example.com", found[0]["email"], "the properties are at the top of what is found")

	found, err = target.Find(ctx, "contacts", map[string]any{"email": "ann@example.com", "firstname": "Ann"})
	require.NoError(t, err)
	require.Len(t, found, 1, "one filter per field, ANDed")

	found, err = target.Find(ctx, "contacts", map[string]any{"email": "bob@example.com"})
	require.NoError(t, err)
	require.Empty(t, found)

	// CONTAINS_TOKEN finds ann@example.com.au for ann@example.co: refused.
	loose := hubConfig(srv, 0)
	obj := loose.Objects["contacts"]
	obj.Lookup = &httptarget.Lookup{Method: "POST", Path: "/crm/v3/objects/contacts/search", Body: map[string]any{
		"filterGroups": []any{map[string]any{"filters": []any{
			map[string]any{"propertyName": "email", "operator": "CONTAINS_TOKEN", "value": `{{value "email"}}`},
		}}},
		"properties": []any{"email"},
	}}
	loose.Objects = map[string]httptarget.Object{"contacts": obj}
	_, err = newTarget(t, loose).Find(ctx, "contacts", map[string]any{"email": "ann@example.co"})
	var mismatch *connector.LookupMismatchError
	require.ErrorAs(t, err, &mismatch)
}

func oauthConfig(srv *hubtest.Server, refresh bool) httptarget.Config {
	cfg := hubConfig(srv, 0)
	cfg.Auth = httptarget.Auth{Type: "oauth2", TokenURL: srv.URL + "/oauth/v1/token",
		ClientIDEnv: "HUBSPOT_CLIENT_ID", ClientSecretEnv: "HUBSPOT_CLIENT_SECRET", AuthStyle: "params"}
	if refresh {
		cfg.Auth.RefreshTokenEnv = "HUBSPOT_REFRESH_TOKEN"
	}
	return cfg
}

func TestOAuth2(t *testing.T) {
	t.Parallel()
	write := func(t *testing.T, target *httptarget.Target, n int) {
		t.Helper()
		res, err := target.Write(context.Background(), "contacts", []connector.Change{{Op: connector.OpInsert, SourceID: fmt.Sprint(n),
			Payload: map[string]any{"email": fmt.Sprintf("p%d@example.com", n)}}})
		require.NoError(t, err)
		require.Nil(t, res[0].Err)
	}

	t.Run("client credentials", func(t *testing.T) {
		t.Parallel()
		srv := hubSpot(t, hubtest.Options{OAuth: &hubtest.OAuth{ClientID: hubClientID, ClientSecret: hubClientSecret, ClientCredentials: true}})
		target := newTarget(t, oauthConfig(srv, false))
		for i := range 5 {
			write(t, target, i)
		}
		require.Equal(t, 1, srv.TokensIssued(), "the token is reused while it lives")
		require.Equal(t, 5, srv.Count("contacts"))

		// A revoked token is answered 401: a new one is got, once, and the
		// request sent again.
		srv.RevokeTokens()
		write(t, target, 5)
		require.Equal(t, 2, srv.TokensIssued())
	})

	t.Run("refresh token, renewed before it expires", func(t *testing.T) {
		t.Parallel()
		srv := hubSpot(t, hubtest.Options{OAuth: &hubtest.OAuth{ClientID: hubClientID, ClientSecret: hubClientSecret,
			RefreshToken: hubRefresh, TokenTTL: time.Second}})
		target := newTarget(t, oauthConfig(srv, true))
		start := time.Now()
		for i := 0; time.Since(start) < 2500*time.Millisecond; i++ {
			write(t, target, i)
			time.Sleep(50 * time.Millisecond)
		}
		require.GreaterOrEqual(t, srv.TokensIssued(), 3, "a token lives one second")
	})

	t.Run("a refused client secret stops the call and is never quoted", func(t *testing.T) {
		t.Parallel()
		srv := hubSpot(t, hubtest.Options{OAuth: &hubtest.OAuth{ClientID: hubClientID, ClientSecret: "another-secret", ClientCredentials: true}})
		target := newTarget(t, oauthConfig(srv, false))
		res, err := target.Write(context.Background(), "contacts", []connector.Change{{Op: connector.OpInsert, SourceID: "1", Payload: map[string]any{"email": "a@example.com"}}})
		require.Error(t, err)
		require.Equal(t, connector.Auth, connector.ClassOf(err))
		require.Contains(t, err.Error(), "missing or invalid client secret")
		require.False(t, res[0].Done && res[0].Err == nil)
		conformance.RequireNoSecret(t, err.Error(), target.Secrets())
		require.Contains(t, target.Secrets(), hubClientSecret)
	})

	t.Run("401 after a renewal stops the call", func(t *testing.T) {
		t.Parallel()
		srv := hubSpot(t, hubtest.Options{OAuth: &hubtest.OAuth{ClientID: hubClientID, ClientSecret: hubClientSecret,
			ClientCredentials: true, TokenTTL: -time.Second}}) // every token it gives out has expired
		target := newTarget(t, oauthConfig(srv, false))
		_, err := target.Write(context.Background(), "contacts", []connector.Change{{Op: connector.OpInsert, SourceID: "1", Payload: map[string]any{"email": "a@example.com"}}})
		require.Error(t, err)
		require.Equal(t, connector.Auth, connector.ClassOf(err))
		require.True(t, strings.Contains(err.Error(), "expired"), err.Error())
		require.Equal(t, 2, srv.TokensIssued(), "one renewal, then the refusal stands")
	})
}
