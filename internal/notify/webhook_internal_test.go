package notify

import (
	"net/http"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
)

func TestRetryAfter(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	assert.Equal(t, time.Duration(0), retryAfter("", now))
	assert.Equal(t, time.Duration(0), retryAfter("soon", now))
	assert.Equal(t, time.Duration(0), retryAfter("-5", now))
	assert.Equal(t, 7*time.Second, retryAfter(" 7 ", now))
	assert.Equal(t, 30*time.Second, retryAfter(now.Add(30*time.Second).Format(http.TimeFormat), now))
	assert.Equal(t, maxRetryAfter, retryAfter("86400", now), "a receiver cannot park a delivery for a day")
}

func TestRetryable(t *testing.T) {
	t.Parallel()
	for code, want := range map[int]bool{0: true, 500: true, 502: true, 503: true, 408: true, 429: true,
		400: false, 401: false, 403: false, 404: false, 410: false, 301: false} {
		assert.Equal(t, want, retryable(code), "HTTP %d", code)
	}
}

// The waits double, with up to half of each random.
func TestBackoff(t *testing.T) {
	t.Parallel()
	n := &Notifier{retryBase: time.Second}
	for attempt := 1; attempt < maxAttempts; attempt++ {
		full := time.Second << (attempt - 1)
		for range 50 {
			d := n.backoff(attempt)
			assert.GreaterOrEqual(t, d, full/2)
			assert.LessOrEqual(t, d, full)
		}
	}
}

func TestSafeURL(t *testing.T) {
	t.Parallel()
	assert.Equal(t, "https://hooks.example.com/ferry", safeURL("https://bob:pw@hooks.example.com/ferry?token=abc#frag"))
	assert.Equal(t, "http://127.0.0.1:8080/x", safeURL("http://127.0.0.1:8080/x?"))
}

func TestParseSMTPURL(t *testing.T) {
	t.Parallel()
	s, err := parseSMTPURL("smtp://bob:p%40ss@mail.example.com")
	assert.NoError(t, err)
	assert.Equal(t, smtpServer{host: "mail.example.com", port: "587", user: "bob", pass: "p@ss"}, s)
	s, err = parseSMTPURL("smtps://mail.example.com")
	assert.NoError(t, err)
	assert.Equal(t, smtpServer{host: "mail.example.com", port: "465", implicitTLS: true}, s)
	for _, bad := range []string{"http://bob:hunter22@mail.example.com", "smtp://bob:hunter22@", "::bob:hunter22"} {
		_, err := parseSMTPURL(bad)
		if assert.Error(t, err, bad) {
			assert.NotContains(t, err.Error(), "hunter22")
		}
	}
}
