package notify

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"mime"
	"mime/quotedprintable"
	"net"
	"net/mail"
	"net/smtp"
	"net/textproto"
	"net/url"
	"strings"
	"time"

	"github.com/ferry-sync/ferry/engine/project"
)

// smtpServer is where e-mail goes, read from the URL smtp_url_env names.
type smtpServer struct {
	host, port  string
	implicitTLS bool // smtps://: TLS from the first byte
	user, pass  string
}

// parseSMTPURL reads smtp://user:password@host:port (port 587, STARTTLS
// when the server offers it) or smtps://… (port 465, implicit TLS). Its
// errors never quote the URL: it holds a password.
func parseSMTPURL(raw string) (smtpServer, error) {
	const want = "want smtp://user:password@host:587 or smtps://user:password@host:465"
	u, err := url.Parse(raw)
	if err != nil {
		return smtpServer{}, errors.New("the SMTP URL does not parse: " + want)
	}
	s := smtpServer{host: u.Hostname(), port: u.Port()}
	switch u.Scheme {
	case "smtp":
		if s.port == "" {
			s.port = "587"
		}
	case "smtps":
		s.implicitTLS = true
		if s.port == "" {
			s.port = "465"
		}
	default:
		return smtpServer{}, fmt.Errorf("the SMTP URL's scheme is %q: %s", u.Scheme, want)
	}
	if s.host == "" {
		return smtpServer{}, errors.New("the SMTP URL has no host: " + want)
	}
	if u.User != nil {
		s.user = u.User.Username()
		s.pass, _ = u.User.Password()
	}
	return s, nil
}

// permanentError is a failure that the same message would meet again (a
// refused recipient, refused credentials): not retried.
type permanentError struct{ err error }

func (e *permanentError) Error() string { return e.err.Error() }
func (e *permanentError) Unwrap() error { return e.err }

// permanent marks err as not worth retrying unless the server said to try
// again later (a 4xx reply).
func permanent(err error) error {
	var tp *textproto.Error
	if errors.As(err, &tp) && tp.Code < 500 {
		return err
	}
	return &permanentError{err}
}

// sendEmail sends one alert e-mail, retrying what may pass later.
func (n *Notifier) sendEmail(ctx context.Context, cfg *project.Email, reason string, ev Event) {
	logger := n.log.With("sync", ev.Sync, "run_id", ev.RunID, "reason", reason)
	raw, ok := n.env(cfg.SMTPURLEnv)
	if !ok || raw == "" {
		logger.ErrorContext(ctx, "alerts: the SMTP URL is not set; no e-mail sent", "variable", cfg.SMTPURLEnv)
		return
	}
	srv, err := parseSMTPURL(raw)
	if err != nil {
		logger.ErrorContext(ctx, "alerts: no e-mail sent", "variable", cfg.SMTPURLEnv, "error", err)
		return
	}
	from, to, msg, err := n.message(cfg, reason, ev)
	if err != nil {
		logger.ErrorContext(ctx, "alerts: no e-mail sent", "error", err)
		return
	}
	clean := redactor(raw, srv.pass)
	for attempt := 1; ; attempt++ {
		err := n.smtpSend(ctx, srv, from, to, msg)
		if err == nil {
			logger.InfoContext(ctx, "alerts: e-mail sent", "to", to, "attempt", attempt)
			return
		}
		var perm *permanentError
		if errors.As(err, &perm) || attempt == emailAttempts || ctx.Err() != nil {
			logger.WarnContext(ctx, "alerts: e-mail not sent", "to", to, "attempt", attempt, "error", clean(err.Error()))
			return
		}
		logger.DebugContext(ctx, "alerts: e-mail attempt failed; retrying", "attempt", attempt, "error", clean(err.Error()))
		if !sleep(ctx, n.backoff(attempt)) {
			return
		}
	}
}

// smtpSend delivers msg in one SMTP session.
func (n *Notifier) smtpSend(ctx context.Context, s smtpServer, from string, to []string, msg []byte) error {
	ctx, cancel := context.WithTimeout(ctx, smtpTimeout)
	defer cancel()
	addr := net.JoinHostPort(s.host, s.port)
	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return fmt.Errorf("connecting to %s: %w", addr, err)
	}
	// net/smtp takes no context: the deadline bounds a silent server, and
	// closing the connection ends the session when ctx does (shutdown).
	stop := context.AfterFunc(ctx, func() { _ = conn.Close() })
	defer stop()
	if dl, ok := ctx.Deadline(); ok {
		_ = conn.SetDeadline(dl)
	}
	if s.implicitTLS {
		tc := tls.Client(conn, &tls.Config{ServerName: s.host, MinVersion: tls.VersionTLS12})
		if err := tc.HandshakeContext(ctx); err != nil {
			_ = conn.Close()
			return fmt.Errorf("TLS with %s: %w", addr, err)
		}
		conn = tc
	}
	c, err := smtp.NewClient(conn, s.host)
	if err != nil {
		_ = conn.Close()
		return fmt.Errorf("greeting %s: %w", addr, err)
	}
	defer c.Close()
	if !s.implicitTLS {
		if ok, _ := c.Extension("STARTTLS"); ok {
			if err := c.StartTLS(&tls.Config{ServerName: s.host, MinVersion: tls.VersionTLS12}); err != nil {
				return fmt.Errorf("STARTTLS with %s: %w", addr, err)
			}
		}
	}
	if s.user != "" {
		if ok, _ := c.Extension("AUTH"); !ok {
			return permanent(fmt.Errorf("%s does not offer AUTH, and the SMTP URL has a user", addr))
		}
		// PlainAuth refuses to send the password over a connection that is
		// neither TLS nor to localhost.
		if err := c.Auth(smtp.PlainAuth("", s.user, s.pass, s.host)); err != nil {
			return permanent(fmt.Errorf("authenticating as %s with %s: %w", s.user, addr, err))
		}
	}
	if err := c.Mail(from); err != nil {
		return permanent(fmt.Errorf("MAIL FROM %s: %w", from, err))
	}
	for _, rcpt := range to {
		if err := c.Rcpt(rcpt); err != nil {
			return permanent(fmt.Errorf("RCPT TO %s: %w", rcpt, err))
		}
	}
	w, err := c.Data()
	if err != nil {
		return permanent(fmt.Errorf("DATA: %w", err))
	}
	if _, err := w.Write(msg); err != nil {
		return fmt.Errorf("sending the message: %w", err)
	}
	if err := w.Close(); err != nil {
		return permanent(fmt.Errorf("sending the message: %w", err))
	}
	// The message is accepted; a failed QUIT changes nothing.
	_ = c.Quit()
	return nil
}

// message builds the e-mail: the envelope's sender and recipients and a
// plain-text message (quoted-printable, so any error text travels).
func (n *Notifier) message(cfg *project.Email, reason string, ev Event) (string, []string, []byte, error) {
	fromAddr, err := mail.ParseAddress(cfg.From)
	if err != nil {
		return "", nil, nil, fmt.Errorf("reading the e-mail's from %q: %w", cfg.From, err)
	}
	var to []string
	var toHeader []string
	for _, t := range cfg.To {
		a, err := mail.ParseAddress(t)
		if err != nil {
			return "", nil, nil, fmt.Errorf("reading the e-mail's recipient %q: %w", t, err)
		}
		to = append(to, a.Address)
		toHeader = append(toHeader, a.String())
	}
	now := n.now()
	var b bytes.Buffer
	header := func(k, v string) { b.WriteString(k + ": " + v + "\r\n") }
	header("From", fromAddr.String())
	header("To", strings.Join(toHeader, ", "))
	header("Subject", mime.QEncoding.Encode("utf-8", subject(reason, ev)))
	header("Date", now.Format(time.RFC1123Z))
	header("Message-ID", "<"+newID()+"@ferry>")
	// RFC 3834: out-of-office replies must not answer an alert.
	header("Auto-Submitted", "auto-generated")
	header("MIME-Version", "1.0")
	header("Content-Type", "text/plain; charset=utf-8")
	header("Content-Transfer-Encoding", "quoted-printable")
	b.WriteString("\r\n")
	qp := quotedprintable.NewWriter(&b)
	if _, err := qp.Write([]byte(strings.ReplaceAll(body(reason, ev), "\n", "\r\n"))); err != nil {
		return "", nil, nil, fmt.Errorf("encoding the e-mail: %w", err)
	}
	if err := qp.Close(); err != nil {
		return "", nil, nil, fmt.Errorf("encoding the e-mail: %w", err)
	}
	return fromAddr.Address, to, b.Bytes(), nil
}

// what names what ran: "contacts", "group nightly", "script enrich.star".
func what(ev Event) string {
	if ev.Kind == KindGroup || ev.Kind == KindScript {
		return ev.Kind + " " + ev.Sync
	}
	return ev.Sync
}

// subject is an alert e-mail's subject: "[Ferry] contacts: run 42 failed".
func subject(reason string, ev Event) string {
	run := "run"
	if ev.RunID > 0 {
		run = fmt.Sprintf("run %d", ev.RunID)
	}
	return fmt.Sprintf("[Ferry] %s: %s %s", what(ev), run, reason)
}

// body is the e-mail's text: what ran, how it ended, its counts and error,
// and where to look next.
func body(reason string, ev Event) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s\n\n", strings.TrimPrefix(subject(reason, ev), "[Ferry] "))
	line := func(k, v string) {
		if v != "" {
			fmt.Fprintf(&b, "%-10s %s\n", k+":", v)
		}
	}
	line("Status", ev.Status)
	line("Trigger", ev.Trigger)
	if !ev.StartedAt.IsZero() {
		line("Started", ev.StartedAt.UTC().Format("2006-01-02 15:04:05 MST"))
	}
	if !ev.FinishedAt.IsZero() {
		line("Finished", ev.FinishedAt.UTC().Format("2006-01-02 15:04:05 MST"))
	}
	line("Replica", ev.Replica)
	line("Records", fmt.Sprintf("read %d, inserted %d, updated %d, unchanged %d, skipped %d, invalid %d, failed %d",
		ev.Read, ev.Inserted, ev.Updated, ev.Unchanged, ev.Skipped, ev.Invalid, ev.Failed))
	if share := ev.failedShare(); share > 0 {
		line("Failed", fmt.Sprintf("%.1f%% of the records", 100*share))
	}
	line("Error", ev.Error)
	b.WriteString("\n")
	switch ev.Kind {
	case KindGroup:
		b.WriteString("See what happened: ferry status (each sync of the group reports its own run)\n")
	case KindScript:
		fmt.Fprintf(&b, "See what happened: SELECT * FROM ferry.runs WHERE sync = 'script:%s' ORDER BY id DESC\n", ev.Sync)
	default:
		fmt.Fprintf(&b, "See what happened: ferry status %s\n", ev.Sync)
	}
	return b.String()
}
