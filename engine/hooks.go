package engine

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/ferry-sync/ferry/engine/project"
)

// Hooks are steps run around a run (project.Hooks): before it reads, one
// that refreshes what the scope reads ("run the dbt job first"); after it,
// one that refreshes what reads the target. A sync's hooks run inside its
// run, under its claim: before hooks once the run row exists and before
// the scope is described, after hooks once the records are recorded and
// before the run row is finished. A group's hooks run once around a group
// run (RunMany). Dry runs never run them: a plan must not start a pipeline.

const (
	// defaultHookTimeout bounds a hook that names no timeout, polling
	// included: long enough for an ELT job, short enough that a hung one
	// does not hold the sync's claim for ever.
	defaultHookTimeout = 10 * time.Minute
	// defaultPollEvery is how often a job's state is asked for.
	defaultPollEvery = 5 * time.Second
	// hookAnswerLimit bounds what is read of an answer: errors quote only
	// its start, and a state field sits near the top of any sane answer.
	hookAnswerLimit = 1 << 20
	// hookExcerpt is how many characters of an answer an error quotes.
	hookExcerpt = 200
)

// errHookTimeout is the cause of a hook's context ending at its timeout, so
// that it is told apart from the run being cancelled.
var errHookTimeout = errors.New("the hook's timeout passed")

// hookTimeoutError is a hook that was still running at its timeout.
type hookTimeoutError struct {
	after time.Duration
	last  string // what the last poll said, when it polled
}

func (e *hookTimeoutError) Error() string {
	msg := fmt.Sprintf("still not done after %s (timeout)", shortDuration(e.after))
	if e.last != "" {
		msg += "; the last poll said " + e.last
	}
	return msg
}

// Unwrap makes errors.Is(err, context.DeadlineExceeded) true.
func (e *hookTimeoutError) Unwrap() error { return context.DeadlineExceeded }

// pollWaitError is a poll that ended before the job did; runHook turns it
// into a *hookTimeoutError when the hook's timeout ended it.
type pollWaitError struct {
	last string
	err  error
}

func (e *pollWaitError) Error() string {
	if e.last == "" {
		return fmt.Sprintf("waiting for the job: %v", e.err)
	}
	return fmt.Sprintf("waiting for the job (the last poll said %s): %v", e.last, e.err)
}

func (e *pollWaitError) Unwrap() error { return e.err }

// runHooks runs hooks in order, side ("before", "after") naming them in
// errors. The first that fails stops the ones after it: a step usually
// needs the one before it (the dbt job after the extract). The error says
// which hook failed and why ("before hook 2 (http POST https://…): HTTP
// 500: …"), with every secret redacted. file and field say where the hooks
// are written ("syncs/contacts.yaml", "hooks"), for a secret that is not
// set.
func (e *Engine) runHooks(ctx context.Context, side string, hooks []project.Hook, file, field string) error {
	for i, h := range hooks {
		label := hookLabel(side, i, h)
		started := time.Now()
		e.log.Info("running a hook", "hook", e.redact.Redact(label))
		at := &project.ConfigError{File: file, Field: fmt.Sprintf("%s.%s[%d]", field, side, i)}
		if err := e.runHook(ctx, h, at); err != nil {
			return e.redact.RedactError(fmt.Errorf("%s: %w", label, err))
		}
		e.log.Info("hook done", "hook", e.redact.Redact(label), "took", time.Since(started).Round(time.Millisecond))
	}
	return nil
}

// hookLabel names a hook the way a user finds it in the project: "before
// hook 1 (sql)", "after hook 2 (http POST https://…)".
func hookLabel(side string, i int, h project.Hook) string {
	if h.HTTP == nil {
		return fmt.Sprintf("%s hook %d (sql)", side, i+1)
	}
	return fmt.Sprintf("%s hook %d (http %s %s)", side, i+1, hookMethod(h.HTTP), h.HTTP.URL)
}

func hookMethod(h *project.HTTPHook) string {
	if h.Method == "" {
		return http.MethodPost
	}
	return strings.ToUpper(h.Method)
}

// runHook runs one hook under its timeout; at is where it is written.
func (e *Engine) runHook(ctx context.Context, h project.Hook, at *project.ConfigError) error {
	timeout := h.Timeout.Duration
	if timeout <= 0 {
		timeout = defaultHookTimeout
	}
	ctx, cancel := context.WithTimeoutCause(ctx, timeout, errHookTimeout)
	defer cancel()
	var err error
	if h.HTTP != nil {
		err = e.httpHook(ctx, h.HTTP, at)
	} else {
		err = e.sqlHook(ctx, h.SQL, timeout)
	}
	if err == nil {
		return nil
	}
	if errors.Is(context.Cause(ctx), errHookTimeout) || isStatementTimeout(err) {
		te := &hookTimeoutError{after: timeout}
		var pw *pollWaitError
		if errors.As(err, &pw) {
			te.last = pw.last
		}
		return te
	}
	return err
}

// sqlHook runs a statement (or several, separated by ";") on the warehouse
// with Ferry's own login, not under the scope role: REFRESH MATERIALIZED
// VIEW and CALL need rights the scope role must not have. It runs outside
// any transaction Ferry opens, so that statements that refuse one (VACUUM,
// a procedure that commits) work.
func (e *Engine) sqlHook(ctx context.Context, sql string, timeout time.Duration) error {
	pc, err := e.db.Acquire(ctx)
	if err != nil {
		return fmt.Errorf("connecting to the warehouse: %w", err)
	}
	// The statement may change its session (SET ROLE, search_path, a
	// transaction left open): the connection is closed afterwards rather
	// than handed back to the pool, where a scope read would inherit it.
	conn := pc.Hijack()
	defer func() {
		closeCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		conn.Close(closeCtx)
	}()
	// The context's deadline cancels the statement from here; the server's
	// own timeout ends it even when that cancel request cannot reach it.
	if _, err := conn.Exec(ctx, "SELECT set_config('statement_timeout', $1, false)", strconv.FormatInt(timeout.Milliseconds(), 10)); err != nil {
		return fmt.Errorf("setting the statement timeout: %w", err)
	}
	// No arguments: pgx sends it with the simple protocol, so that a hook
	// may hold several statements.
	if _, err := conn.Exec(ctx, sql); err != nil {
		return err
	}
	return nil
}

// isStatementTimeout says whether err is PostgreSQL ending a statement at
// its statement_timeout.
func isStatementTimeout(err error) bool {
	var pgErr *pgconn.PgError
	return errors.As(err, &pgErr) && pgErr.Code == "57014" && strings.Contains(pgErr.Message, "statement timeout")
}

// httpHook calls the hook's URL and, with a poll, waits for the job it
// started.
func (e *Engine) httpHook(ctx context.Context, h *project.HTTPHook, at *project.ConfigError) error {
	headers, err := e.hookHeaders(h.Headers, at)
	if err != nil {
		return err
	}
	var body []byte
	if h.Body != nil {
		if body, err = json.Marshal(h.Body); err != nil {
			return fmt.Errorf("encoding the body: %w", err)
		}
	}
	client := &http.Client{}
	ans, err := e.hookCall(ctx, client, hookMethod(h), h.URL, headers, body)
	if err != nil {
		return err
	}
	if !ans.ok() {
		return fmt.Errorf("HTTP %d: %s", ans.status, e.excerpt(ans.body))
	}
	if h.Poll == nil {
		return nil
	}
	pollURL, err := e.pollURL(h, ans.body)
	if err != nil {
		return err
	}
	return e.poll(ctx, client, h.Poll, pollURL, headers)
}

// hookHeaders resolves the "env:NAME" values of headers and adds them to
// what the engine redacts before any request is made: an API that answers
// "invalid token <token>" must not put it in a run's error. A secret that
// is not set is a *project.ConfigError at the header, like a connection's.
func (e *Engine) hookHeaders(in map[string]string, at *project.ConfigError) (map[string]string, error) {
	out := make(map[string]string, len(in))
	names := make([]string, 0, len(in))
	for k := range in {
		names = append(names, k)
	}
	slices.Sort(names) // the same header is reported missing every time
	for _, k := range names {
		v := in[k]
		name, ok := strings.CutPrefix(v, "env:")
		if !ok {
			out[k] = v
			continue
		}
		val, found := e.env(name)
		if !found || val == "" {
			return nil, &project.ConfigError{File: at.File, Field: at.Field + ".http.headers." + k,
				Message: fmt.Sprintf("%s is not set (set the environment variable, or the server's secret of that name)", name)}
		}
		e.redact.Add(headerSecrets(val)...)
		out[k] = val
	}
	return out, nil
}

// headerSecrets are the forms of a header value an API could echo: the
// value, its credentials without the scheme ("Bearer xyz": xyz), and for
// basic auth the decoded user:password and the password.
func headerSecrets(v string) []string {
	out := []string{v}
	scheme, cred, ok := strings.Cut(strings.TrimSpace(v), " ")
	if !ok {
		return out
	}
	cred = strings.TrimSpace(cred)
	out = append(out, cred)
	if strings.EqualFold(scheme, "basic") {
		if dec, err := base64.StdEncoding.DecodeString(cred); err == nil {
			out = append(out, string(dec))
			if _, pass, ok := strings.Cut(string(dec), ":"); ok {
				out = append(out, pass)
			}
		}
	}
	return out
}

// hookAnswer is an answer to a hook's request, its body cut at
// hookAnswerLimit.
type hookAnswer struct {
	status     int
	body       []byte
	retryAfter time.Duration // 0 when not said
}

func (a *hookAnswer) ok() bool { return a.status >= 200 && a.status <= 299 }

// hookCall makes one request. Its errors are the transport's; an answer of
// any status is not an error here.
func (e *Engine) hookCall(ctx context.Context, client *http.Client, method, u string, headers map[string]string, body []byte) (*hookAnswer, error) {
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, u, rd)
	if err != nil {
		return nil, fmt.Errorf("building the request: %w", err)
	}
	req.Header.Set("Accept", "application/json")
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	for k, v := range headers {
		req.Header.Set(k, v)
	}
	resp, err := client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("calling %s: %w", u, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, hookAnswerLimit))
	if err != nil {
		return nil, fmt.Errorf("reading the answer of %s: %w", u, err)
	}
	return &hookAnswer{status: resp.StatusCode, body: b, retryAfter: retryAfter(resp.Header.Get("Retry-After"))}, nil
}

// retryAfter reads a Retry-After header: seconds or an HTTP date.
func retryAfter(v string) time.Duration {
	if v == "" {
		return 0
	}
	if secs, err := strconv.Atoi(v); err == nil && secs > 0 {
		return time.Duration(secs) * time.Second
	}
	if t, err := http.ParseTime(v); err == nil {
		return max(time.Until(t), 0)
	}
	return 0
}

// pollURL is the poll's URL with {id} replaced by the id the start call
// answered (poll.id_field, a dotted path like data.id). A relative URL is
// read against the start call's.
func (e *Engine) pollURL(h *project.HTTPHook, answer []byte) (string, error) {
	p := h.Poll
	u := p.URL
	if p.IDField != "" {
		v, err := decodeAnswer(answer)
		if err != nil {
			return "", fmt.Errorf("reading the job id (id_field %s) from the answer: %w: %s", p.IDField, err, e.excerpt(answer))
		}
		id, ok := jsonPath(v, p.IDField)
		if !ok || id == nil {
			return "", fmt.Errorf("the answer has no %s (id_field) to poll the job with: %s", p.IDField, e.excerpt(answer))
		}
		u = strings.ReplaceAll(u, "{id}", url.PathEscape(jsonText(id)))
	}
	base, err := url.Parse(h.URL)
	if err != nil {
		return "", fmt.Errorf("reading the URL: %w", err)
	}
	ref, err := url.Parse(u)
	if err != nil {
		return "", fmt.Errorf("reading the poll URL %q: %w", u, err)
	}
	return base.ResolveReference(ref).String(), nil
}

// poll asks u every poll.every until poll.field says the job is done or
// failed. An answer that says nothing yet (429, 5xx, a network error, no
// state field) is asked again at the next poll: ELT APIs are busy and
// flaky while their jobs run. Any other non-2xx answer fails the hook.
func (e *Engine) poll(ctx context.Context, client *http.Client, p *project.Poll, u string, headers map[string]string) error {
	every := p.Every.Duration
	if every <= 0 {
		every = defaultPollEvery
	}
	last := ""
	// The first poll waits too: right after a start, some APIs still
	// report the previous job's state, which may well be "done".
	timer := time.NewTimer(every)
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			return &pollWaitError{last: last, err: context.Cause(ctx)}
		case <-timer.C:
		}
		wait := every
		ans, err := e.hookCall(ctx, client, http.MethodGet, u, headers, nil)
		switch {
		case err != nil && ctx.Err() != nil:
			return &pollWaitError{last: last, err: context.Cause(ctx)}
		case err != nil:
			last = e.redact.Redact(err.Error())
		case ans.status == http.StatusTooManyRequests || ans.status >= 500:
			last = fmt.Sprintf("HTTP %d", ans.status)
			wait = max(wait, ans.retryAfter)
		case !ans.ok():
			return fmt.Errorf("polling %s: HTTP %d: %s", u, ans.status, e.excerpt(ans.body))
		default:
			v, err := decodeAnswer(ans.body)
			if err != nil {
				return fmt.Errorf("polling %s: %w: %s", u, err, e.excerpt(ans.body))
			}
			state, ok := jsonPath(v, p.Field)
			if !ok {
				last = fmt.Sprintf("no %s (field): %s", p.Field, e.excerpt(ans.body))
				break
			}
			s := jsonText(state)
			if containsFold(p.Done, s) {
				return nil
			}
			if containsFold(p.Failed, s) {
				return fmt.Errorf("the job reported %q (field %s)", s, p.Field)
			}
			last = strconv.Quote(s)
		}
		e.log.Debug("a hook's job is not done yet", "url", e.redact.Redact(u), "state", last)
		timer.Reset(wait)
	}
}

// decodeAnswer reads a JSON answer, numbers kept exact (a job id of 20
// digits must not become a float).
func decodeAnswer(b []byte) (any, error) {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return nil, errors.New("the answer is not JSON")
	}
	return v, nil
}

// jsonPath finds a dotted path ("data.status", "jobs.0.id") in a decoded
// JSON value.
func jsonPath(v any, path string) (any, bool) {
	for part := range strings.SplitSeq(path, ".") {
		switch x := v.(type) {
		case map[string]any:
			var ok bool
			if v, ok = x[part]; !ok {
				return nil, false
			}
		case []any:
			i, err := strconv.Atoi(part)
			if err != nil || i < 0 || i >= len(x) {
				return nil, false
			}
			v = x[i]
		default:
			return nil, false
		}
	}
	return v, true
}

// jsonText is a JSON value as it is compared and put in URLs: strings as
// they are, numbers as written, anything else as compact JSON.
func jsonText(v any) string {
	switch x := v.(type) {
	case string:
		return x
	case json.Number:
		return x.String()
	default:
		b, _ := json.Marshal(x)
		return string(b)
	}
}

// containsFold says whether list holds s, ignoring case ("SUCCESS" is
// "success").
func containsFold(list []string, s string) bool {
	return slices.ContainsFunc(list, func(v string) bool { return strings.EqualFold(v, s) })
}

// excerpt is the start of an answer for an error message, on one line.
// Secrets are redacted from the whole answer before it is cut: cut first,
// half a secret would no longer match and would be kept.
func (e *Engine) excerpt(b []byte) string {
	s := strings.Join(strings.Fields(e.redact.Redact(string(b))), " ")
	if s == "" {
		return "(empty answer)"
	}
	if utf8.RuneCountInString(s) <= hookExcerpt {
		return s
	}
	return string([]rune(s)[:hookExcerpt]) + "…"
}

// shortDuration writes a duration the way a user writes it: "10m", not
// "10m0s".
func shortDuration(d time.Duration) string {
	s := d.String()
	if strings.HasSuffix(s, "m0s") {
		s = strings.TrimSuffix(s, "0s")
	}
	if strings.HasSuffix(s, "h0m") {
		s = strings.TrimSuffix(s, "0m")
	}
	return s
}

// groupHooks are a group's hooks, for RunMany and the last run of a group.
type groupHooks struct {
	name  string
	hooks *project.Hooks
}

// beforeHooks runs the sync's before hooks, once the run holds the sync
// and before anything is read.
func (r *runner) beforeHooks(ctx context.Context) error {
	if !r.hooksRun() || r.s.Hooks == nil || len(r.s.Hooks.Before) == 0 {
		return nil
	}
	if err := r.e.runHooks(ctx, "before", r.s.Hooks.Before, r.s.FileOrName(), "hooks"); err != nil {
		return fmt.Errorf("sync %s: %w", r.s.Name, err)
	}
	return nil
}

// afterHooks runs, after a run whose records are all recorded, the sync's
// after hooks and then (for the last sync of a group run) the group's.
//
// A failing after hook undoes nothing, and it does not fail the run:
// "failed" means the sync did not happen (children are not started, users
// re-run and get alerted that the sync is broken), but the records are
// written and recorded, and a new run would have nothing to do. Nor does
// the run stay "succeeded", which would hide that what reads the target
// was not refreshed: it ends succeeded_with_errors, the status that says
// "done, but look", with the hook's error as the run's error and as a run
// error of class "hook".
func (r *runner) afterHooks(ctx context.Context) {
	if !r.hooksRun() {
		return
	}
	var err error
	if r.s.Hooks != nil && len(r.s.Hooks.After) > 0 {
		err = r.e.runHooks(ctx, "after", r.s.Hooks.After, r.s.FileOrName(), "hooks")
	}
	if g := r.opts.groupAfter; err == nil && g != nil {
		if err = r.e.runHooks(ctx, "after", g.hooks.After, project.ProjectFile, "groups."+g.name+".hooks"); err != nil {
			err = fmt.Errorf("group %s: %w", g.name, err)
		}
	}
	if err == nil {
		return
	}
	msg := r.e.redact.Redact(err.Error()) + " (the records are written: only the hook failed)"
	r.e.log.Warn("an after hook failed", "sync", r.s.Name, "run", r.runID, "err", msg)
	r.runError(ctx, nil, "hook", msg)
	r.res.Status = RunSucceededWithErrors
	r.res.Error = msg
}

// hooksRun says whether this run runs hooks: not a dry run (plan, test,
// explain), and not a run of chosen records (ferry test --write), which
// checks records rather than syncing the scope, and should not start a
// pipeline for it.
func (r *runner) hooksRun() bool {
	return !r.opts.DryRun && r.opts.IDs == nil
}
