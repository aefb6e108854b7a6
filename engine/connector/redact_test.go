package connector_test

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/ferry-sync/ferry/engine/connector"
)

// The renderings below are written out by hand, as each encoder writes
// them, rather than computed by the code under test.
func TestRedactorEncodings(t *testing.T) {
	t.Parallel()
	const secret = `p@ss/wörd+<1>"x` // a slash, a quote, HTML characters, non-ASCII
	const b64Secret = "ab?>c~d"      // its base64 has both a / and a +: YWI/PmN+ZA==
	const astral = "tok🚢en"
	r := connector.NewRedactor(secret, b64Secret, astral)

	tests := []struct {
		name string
		text string // how the secret appears in what a target sends back
	}{
		{"as is", secret},
		{"query-escaped", url.QueryEscape(secret)},
		{"path-escaped", url.PathEscape(secret)},
		{"query-escaped, lower-case hex", "p%40ss%2fw%c3%b6rd%2b%3c1%3e%22x"},
		{"JSON, minimal (JavaScript, Jackson)", `p@ss/wörd+<1>\"x`},
		{"JSON, Go (HTML-escaped)", `p@ss/wörd+\u003c1\u003e\"x`},
		{"JSON, Python (ensure_ascii)", `p@ss/w\u00f6rd+<1>\"x`},
		{"JSON, PHP (json_encode)", `p@ss\/w\u00f6rd+<1>\"x`},
		{"JSON, PHP (unescaped unicode)", `p@ss\/wörd+<1>\"x`},
		{"JSON, .NET", `p@ss/w\u00F6rd\u002B\u003C1\u003E\u0022x`},
		{"JSON, astral as a surrogate pair", `tok\ud83d\udea2en`},
		{"base64 std", base64.StdEncoding.EncodeToString([]byte(secret))},
		{"base64 std, no padding", base64.RawStdEncoding.EncodeToString([]byte(secret))},
		{"base64 with / and +", "YWI/PmN+ZA=="},
		{"base64 std without padding, with / and +", "YWI/PmN+ZA"},
		{"base64 URL with - and _", "YWI_PmN-ZA=="},
		{"base64 URL without padding", "YWI_PmN-ZA"},
		{"base64 in PHP JSON", `YWI\/PmN+ZA==`},
		{"base64 in .NET JSON", `YWI/PmN\u002BZA==`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			text := `{"debug": "got ` + tc.text + ` from you"}`
			got := r.Redact(text)
			require.Equal(t, `{"debug": "got *** from you"}`, got)
		})
	}
}

func TestRedactorCredentials(t *testing.T) {
	t.Parallel()
	const token = "s3cret-T0ken/with+base64=="
	const user, pass = "svc-user", `p@ss:wörd"`
	req := http.Request{Header: http.Header{}}
	req.SetBasicAuth(user, pass)
	basic := req.Header.Get("Authorization") // Basic base64(user:pass)

	tests := []struct {
		name    string
		secrets []string // as the http kind reports them
		text    string
		want    string
	}{
		{"bearer header", []string{token, "Bearer " + token},
			"Authorization: Bearer " + token, "Authorization: ***"},
		{"bearer token alone", []string{token, "Bearer " + token},
			"token " + token + " is expired", "token *** is expired"},
		{"bearer echoed as JSON", []string{token, "Bearer " + token},
			mustJSON(t, map[string]any{"Authorization": "Bearer " + token}), `{"Authorization":"***"}`},
		{"bearer in a query", []string{token, "Bearer " + token},
			"GET /x?access_token=" + url.QueryEscape(token), "GET /x?access_token=***"},
		{"basic header", []string{user, pass, user + ":" + pass, basic},
			"Authorization: " + basic, "Authorization: ***"},
		{"basic credentials without the scheme", []string{user, pass, user + ":" + pass, basic},
			"creds=" + strings.TrimPrefix(basic, "Basic "), "creds=***"},
		{"basic parts", []string{user, pass, user + ":" + pass, basic},
			"user " + user + " password " + pass, "user *** password ***"},
		{"basic password in base64 alone", []string{user, pass, user + ":" + pass, basic},
			"pw=" + base64.StdEncoding.EncodeToString([]byte(pass)), "pw=***"},
		{"no secret in the text", []string{token}, "nothing to see", "nothing to see"},
		{"overlapping secrets: the longest wins", []string{"abcd", "abcdefgh"}, "abcdefgh abcd", "*** ***"},
		{"short secrets are ignored", []string{"abc", "42"}, "abc is 42", "abc is 42"},
		{"four characters are redacted", []string{"abcd"}, "abcd", "***"},
		{"four runes, more bytes", []string{"ééé!"}, "x ééé! y", "x *** y"},
		{"empty secret", []string{""}, "text", "text"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			require.Equal(t, tc.want, connector.NewRedactor(tc.secrets...).Redact(tc.text))
		})
	}
}

func mustJSON(t *testing.T, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	require.NoError(t, err)
	return string(b)
}

func TestRedactorNilAndEmpty(t *testing.T) {
	t.Parallel()
	base := errors.New("boom")
	ce := &connector.Error{Class: connector.Rejected, Message: "bad", Err: base}
	for name, r := range map[string]*connector.Redactor{
		"nil":         nil,
		"no secrets":  connector.NewRedactor(),
		"short only":  connector.NewRedactor("abc"),
		"zero value":  new(connector.Redactor),
		"unused here": connector.NewRedactor("not-in-the-text"),
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			require.Equal(t, "abc boom", r.Redact("abc boom"))
			require.Equal(t, "", r.Redact(""))
			require.Nil(t, r.RedactError(nil))
			require.True(t, base == r.RedactError(base), "a clean error comes back as it is")
			require.Same(t, ce, r.RedactClassified(ce))
			require.Nil(t, r.RedactClassified(nil))
		})
	}
}

// pathError is an error type that errors.As must still find.
type pathError struct{ path string }

func (e *pathError) Error() string { return "cannot open " + e.path }

func TestRedactError(t *testing.T) {
	t.Parallel()
	const secret = "hunter22"
	r := connector.NewRedactor(secret)

	inner := &pathError{path: "/home/" + secret}
	err := fmt.Errorf("connecting with %s: %w: %w", secret, inner, fs.ErrNotExist)
	red := r.RedactError(err)
	require.EqualError(t, red, "connecting with ***: cannot open /home/***: file does not exist")
	require.ErrorIs(t, red, fs.ErrNotExist, "errors.Is sees through the redaction")
	var pe *pathError
	require.ErrorAs(t, red, &pe, "errors.As sees through the redaction")
	require.Same(t, inner, pe)

	// An *Error stays an *Error: class, status and retry kept, texts redacted.
	ce := &connector.Error{Class: connector.Auth, Status: 401, Message: "token " + secret + " refused", Err: err}
	redCE := r.RedactClassified(ce)
	require.NotSame(t, ce, redCE)
	require.Equal(t, "auth (HTTP 401): token *** refused", redCE.Error())
	require.Equal(t, "connecting with ***: cannot open /home/***: file does not exist", redCE.Err.Error())
	require.ErrorIs(t, redCE, fs.ErrNotExist)
	require.Equal(t, "token "+secret+" refused", ce.Message, "the original is not changed")

	asError := r.RedactError(ce)
	got, ok := asError.(*connector.Error)
	require.True(t, ok, "RedactError returns an *Error for an *Error")
	require.Equal(t, connector.Auth, got.Class)
	require.Equal(t, "auth (HTTP 401): token *** refused", got.Error())

	// Message empty: Error() falls back to the underlying error, redacted too.
	bare := r.RedactClassified(&connector.Error{Class: connector.Retryable, Err: err})
	require.Equal(t, "retryable: connecting with ***: cannot open /home/***: file does not exist", bare.Error())

	clean := &connector.Error{Class: connector.Rejected, Message: "email is required", Err: fs.ErrNotExist}
	require.Same(t, clean, r.RedactClassified(clean), "a clean *Error comes back as it is")
	require.Same(t, clean, r.RedactError(clean).(*connector.Error))
}

// Add may be called while other goroutines redact (go test -race).
func TestRedactorConcurrentAdd(t *testing.T) {
	t.Parallel()
	r := connector.NewRedactor("first-secret")
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 200 {
				require.NotContains(t, r.Redact("a first-secret b"), "first-secret")
			}
			r.Add(fmt.Sprintf("secret-number-%d", i))
		}()
	}
	wg.Wait()
	for i := range 8 {
		require.Equal(t, "x *** y", r.Redact(fmt.Sprintf("x secret-number-%d y", i)))
	}
}

func BenchmarkRedact(b *testing.B) {
	msg := `POST /contacts: contact with email person42@example.com already exists (request 7f3a9c)`
	b.Run("none", func(b *testing.B) {
		var r *connector.Redactor
		for b.Loop() {
			_ = r.Redact(msg)
		}
	})
	b.Run("basic auth", func(b *testing.B) {
		r := connector.NewRedactor("svc-user", "p@ss/wörd", "svc-user:p@ss/wörd", "Basic c3ZjLXVzZXI6cEBzcy93w7ZyZA==")
		for b.Loop() {
			_ = r.Redact(msg)
		}
	})
}
