package connector_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/ferry-sync/ferry/engine/connector"
)

func TestSecretNeverPrints(t *testing.T) {
	t.Parallel()
	s := connector.NewSecret("hunter2")
	holder := struct {
		Token connector.Secret
	}{s}
	hidden := struct {
		token connector.Secret // fmt cannot call methods on unexported fields
	}{s}

	for _, format := range []string{"%v", "%s", "%q", "%x", "%+v", "%#v", "%d"} {
		require.NotContains(t, fmt.Sprintf(format, s), "hunter2", format)
		require.NotContains(t, fmt.Sprintf(format, holder), "hunter2", format)
		require.NotContains(t, fmt.Sprintf(format, hidden), "hunter2", format)
	}
	b, err := json.Marshal(holder)
	require.NoError(t, err)
	require.JSONEq(t, `{"Token":"***"}`, string(b))

	var buf bytes.Buffer
	slog.New(slog.NewTextHandler(&buf, nil)).Info("connecting", "token", s)
	require.Contains(t, buf.String(), "token=***")
	require.Equal(t, "hunter2", s.Reveal())
	require.True(t, connector.Secret{}.IsZero())
}

func TestSecretFromEnv(t *testing.T) {
	t.Parallel()
	env := func(name string) (string, bool) {
		v, ok := map[string]string{"SET": "v", "EMPTY": ""}[name]
		return v, ok
	}
	tests := []struct {
		name string
		want string
		err  string
	}{
		{"SET", "v", ""},
		{"EMPTY", "", "auth.token_env: environment variable EMPTY is not set"},
		{"UNSET", "", "auth.token_env: environment variable UNSET is not set"},
		{"", "", "auth.token_env is required: name the environment variable that holds the secret"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			s, err := connector.SecretFromEnv(env, "auth.token_env", tc.name)
			if tc.err != "" {
				require.EqualError(t, err, tc.err)
				return
			}
			require.NoError(t, err)
			require.Equal(t, tc.want, s.Reveal())
		})
	}
}

func TestErrorClass(t *testing.T) {
	t.Parallel()
	base := errors.New("connection reset")
	e := &connector.Error{Class: connector.Retryable, Status: 503, Message: "POST /contacts: down", Err: base}
	wrapped := fmt.Errorf("writing: %w", e)
	require.Equal(t, connector.Retryable, connector.ClassOf(wrapped))
	require.ErrorIs(t, wrapped, base)
	require.Equal(t, "retryable (HTTP 503): POST /contacts: down", e.Error())
	require.Equal(t, "ambiguous: connection reset", (&connector.Error{Class: connector.Ambiguous, Err: base}).Error())
	require.Equal(t, connector.Class(""), connector.ClassOf(base))
}
