package notify_test

import (
	"context"
	"io"
	"mime"
	"mime/quotedprintable"
	"net"
	"net/mail"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/ferry-sync/ferry/engine/project"
	"github.com/ferry-sync/ferry/internal/notify"
)

// mailbox is an SMTP server that keeps what it receives in memory. It asks
// for AUTH PLAIN as alerts / smtpPass (over plain TCP: a test).
type mailbox struct {
	addr string
	mu   sync.Mutex
	msgs []letter
}

type letter struct {
	from    string
	to      []string
	subject string
	body    string
	header  mail.Header
}

func newMailbox(t *testing.T) *mailbox {
	t.Helper()
	mb := &mailbox{}
	srv := smtp.NewServer(smtp.BackendFunc(func(*smtp.Conn) (smtp.Session, error) {
		return &session{mb: mb}, nil
	}))
	srv.Domain = "localhost"
	srv.AllowInsecureAuth = true
	srv.ReadTimeout = 10 * time.Second
	srv.WriteTimeout = 10 * time.Second
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	mb.addr = l.Addr().String()
	go func() { _ = srv.Serve(l) }()
	t.Cleanup(func() { _ = srv.Close() })
	return mb
}

func (mb *mailbox) letters() []letter {
	mb.mu.Lock()
	defer mb.mu.Unlock()
	out := append([]letter(nil), mb.msgs...)
	sort.Slice(out, func(i, j int) bool { return out[i].subject < out[j].subject })
	return out
}

type session struct {
	mb     *mailbox
	authed bool
	from   string
	to     []string
}

func (s *session) AuthMechanisms() []string { return []string{sasl.Plain} }

func (s *session) Auth(string) (sasl.Server, error) {
	return sasl.NewPlainServer(func(_, user, pass string) error {
		if user != "alerts" || pass != smtpPass {
			return smtp.ErrAuthFailed
		}
		s.authed = true
		return nil
	}), nil
}

func (s *session) Mail(from string, _ *smtp.MailOptions) error {
	if !s.authed {
		return smtp.ErrAuthRequired
	}
	s.from = from
	return nil
}

func (s *session) Rcpt(to string, _ *smtp.RcptOptions) error {
	s.to = append(s.to, to)
	return nil
}

func (s *session) Data(r io.Reader) error {
	m, err := mail.ReadMessage(r)
	if err != nil {
		return err
	}
	subject, err := new(mime.WordDecoder).DecodeHeader(m.Header.Get("Subject"))
	if err != nil {
		return err
	}
	body, err := io.ReadAll(quotedprintable.NewReader(m.Body))
	if err != nil {
		return err
	}
	s.mb.mu.Lock()
	defer s.mb.mu.Unlock()
	s.mb.msgs = append(s.mb.msgs, letter{from: s.from, to: s.to, subject: subject, body: string(body), header: m.Header})
	return nil
}

func (s *session) Reset()        { s.from, s.to = "", nil }
func (s *session) Logout() error { return nil }

func emailAlerts(share float64) *project.Alerts {
	return &project.Alerts{Email: &project.Email{
		SMTPURLEnv:  "SMTP_URL",
		From:        "Ferry <ferry@example.com>",
		To:          []string{"ops@example.com", "Data Team <data@example.com>"},
		FailedShare: share,
	}}
}

func (tb *testBundle) withMailbox(t *testing.T) *mailbox {
	t.Helper()
	mb := newMailbox(t)
	tb.env["SMTP_URL"] = "smtp://alerts:" + smtpPass + "@" + mb.addr
	return mb
}

// A scheduled run that fails is mailed; one started through the API is not
// (its caller sees the answer); the next good run is mailed as a recovery,
// once; runs after it are not mailed.
func TestEmailOnScheduledFailureAndRecovery(t *testing.T) {
	t.Parallel()
	tb := setup(t)
	mb := tb.withMailbox(t)
	n := tb.notifier(t)
	alerts := emailAlerts(0)

	scheduled := tb.insertRun(t, "contacts", "failed")
	viaAPI := tb.insertRun(t, "contacts", "failed")
	recovered := tb.insertRun(t, "contacts", "succeeded")
	next := tb.insertRun(t, "contacts", "succeeded")

	n.RunEnded(context.Background(), alerts, failedRun(scheduled))
	ev := failedRun(viaAPI)
	ev.Trigger = notify.TriggerAPI
	n.RunEnded(context.Background(), alerts, ev)
	n.RunEnded(context.Background(), alerts, succeededRun(recovered))
	n.RunEnded(context.Background(), alerts, succeededRun(next))
	n.Close()

	got := mb.letters()
	require.Len(t, got, 2)
	failed, rec := got[0], got[1]
	if strings.HasSuffix(failed.subject, "recovered") {
		failed, rec = rec, failed
	}
	assert.Equal(t, "[Ferry] contacts: run "+itoa(scheduled)+" failed", failed.subject)
	assert.Equal(t, "[Ferry] contacts: run "+itoa(recovered)+" recovered", rec.subject)

	assert.Equal(t, "ferry@example.com", failed.from)
	assert.Equal(t, []string{"ops@example.com", "data@example.com"}, failed.to)
	assert.Equal(t, `"Ferry" <ferry@example.com>`, failed.header.Get("From"))
	assert.Equal(t, "auto-generated", failed.header.Get("Auto-Submitted"))
	assert.Contains(t, failed.header.Get("Content-Type"), "text/plain")
	for _, want := range []string{
		"Status:    failed", "Trigger:   schedule", "Replica:   ferry-1",
		"Error:     target refused the credentials (401)",
		"ferry status contacts",
	} {
		assert.Contains(t, failed.body, want)
	}
	assert.Contains(t, rec.body, "read 100, inserted 10, updated 5, unchanged 85")
	tb.assertNoSecret(t)
}

// A run that failed more of its records than the share allows is mailed,
// whoever started it; below the share it is not.
func TestEmailFailedShare(t *testing.T) {
	t.Parallel()
	tb := setup(t)
	mb := tb.withMailbox(t)
	n := tb.notifier(t)

	withErrors := func(sync string, failed int64) notify.Event {
		ev := succeededRun(tb.insertRun(t, sync, "succeeded_with_errors"))
		ev.Sync, ev.Status, ev.Trigger, ev.Failed, ev.Unchanged = sync, "succeeded_with_errors", notify.TriggerAPI, failed, 85-failed
		return ev
	}
	n.RunEnded(context.Background(), emailAlerts(0), withErrors("many", 10))     // 10% > 5%
	n.RunEnded(context.Background(), emailAlerts(0), withErrors("few", 3))       // 3% ≤ 5%
	n.RunEnded(context.Background(), emailAlerts(0.2), withErrors("lax", 10))    // 10% ≤ 20%
	n.RunEnded(context.Background(), emailAlerts(0.01), withErrors("strict", 2)) // 2% > 1%
	n.Close()

	got := mb.letters()
	require.Len(t, got, 2)
	assert.Regexp(t, `^\[Ferry\] many: run \d+ failed 10 of its records \(10\.0%\)$`, got[0].subject)
	assert.Regexp(t, `^\[Ferry\] strict: run \d+ failed 2 of its records \(2\.0%\)$`, got[1].subject)
	assert.Contains(t, got[0].body, "Failed:    10.0% of the records")
}

// Wrong SMTP credentials are not retried, and the password is in no log
// line.
func TestEmailRefusedCredentials(t *testing.T) {
	t.Parallel()
	tb := setup(t)
	mb := newMailbox(t)
	tb.env["SMTP_URL"] = "smtp://alerts:wrong-" + smtpPass + "@" + mb.addr
	n := tb.notifier(t)

	n.RunEnded(context.Background(), emailAlerts(0), failedRun(tb.insertRun(t, "contacts", "failed")))
	n.Close()

	assert.Empty(t, mb.letters())
	assert.Contains(t, tb.logs.String(), "e-mail not sent")
	assert.Contains(t, tb.logs.String(), "attempt=1 ")
	tb.assertNoSecret(t)
}

func itoa(i int64) string { return strconv.FormatInt(i, 10) }
