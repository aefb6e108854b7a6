package project

import (
	"fmt"
	"net/url"
	"strings"
	"time"

	"github.com/robfig/cron/v3"
)

// Schedule says when the server runs a sync, a group or a data-sync
// script: exactly one of Every, Cron and Daily.
type Schedule struct {
	// Every runs it every so often ("5m", "1h"), on multiples of the
	// period since the Unix epoch, so every replica ticks at the same times.
	Every Duration `json:"every,omitempty"`
	// Cron is a five-field cron expression ("0 */6 * * *").
	Cron string `json:"cron,omitempty"`
	// Daily is a time of day, "06:30".
	Daily string `json:"daily,omitempty"`
	// Timezone is the IANA zone Cron and Daily are read in (default UTC).
	Timezone string `json:"timezone,omitempty"`
	// Paused keeps the schedule without running it.
	Paused bool `json:"paused,omitempty"`
}

// minEvery is the shortest period: ticks are deduplicated by the time they
// stand for, to the second.
const minEvery = time.Second

// CronSpec is the schedule as a cron expression with its zone
// ("CRON_TZ=Europe/Brussels 30 6 * * *"), for Cron and Daily schedules.
func (s *Schedule) CronSpec() string {
	spec := s.Cron
	if s.Daily != "" {
		t, _ := time.Parse("15:04", s.Daily)
		spec = fmt.Sprintf("%d %d * * *", t.Minute(), t.Hour())
	}
	if s.Timezone != "" {
		spec = "CRON_TZ=" + s.Timezone + " " + spec
	}
	return spec
}

// Next is the first tick after t (for Every: the next multiple of the
// period).
func (s *Schedule) Next(t time.Time) time.Time {
	if d := s.Every.Duration; d > 0 {
		return t.Truncate(d).Add(d)
	}
	sched, err := cron.ParseStandard(s.CronSpec())
	if err != nil {
		return time.Time{}
	}
	return sched.Next(t)
}

// String says the schedule the way a user wrote it.
func (s *Schedule) String() string {
	var out string
	switch {
	case s.Every.Duration > 0:
		out = "every " + s.Every.String()
	case s.Daily != "":
		out = "daily at " + s.Daily
	default:
		out = "cron " + s.Cron
	}
	if s.Timezone != "" && s.Every.Duration == 0 {
		out += " " + s.Timezone
	}
	if s.Paused {
		out += " (paused)"
	}
	return out
}

func (s *Schedule) check(file, field string) []error {
	var errs []error
	bad := func(sub, format string, args ...any) {
		errs = append(errs, &ConfigError{File: file, Field: field + sub, Message: fmt.Sprintf(format, args...)})
	}
	set := 0
	for _, v := range []bool{s.Every.Duration != 0, s.Cron != "", s.Daily != ""} {
		if v {
			set++
		}
	}
	if set != 1 {
		bad("", "set exactly one of every (\"5m\"), cron (\"0 */6 * * *\") or daily (\"06:30\")")
		return errs
	}
	if s.Every.Duration != 0 && s.Every.Duration < minEvery {
		bad(".every", "%s is shorter than the shortest period, %s", s.Every, minEvery)
	}
	if s.Every.Duration != 0 && s.Timezone != "" {
		bad(".timezone", "an every schedule ticks on multiples of its period and has no time zone; use daily or cron")
	}
	if s.Daily != "" {
		if _, err := time.Parse("15:04", s.Daily); err != nil {
			bad(".daily", "%q is not a time of day like \"06:30\"", s.Daily)
		}
	}
	if s.Timezone != "" {
		if _, err := time.LoadLocation(s.Timezone); err != nil {
			bad(".timezone", "%q is not an IANA time zone like \"Europe/Brussels\"", s.Timezone)
			return errs
		}
	}
	if s.Cron != "" {
		if strings.HasPrefix(s.Cron, "CRON_TZ=") || strings.HasPrefix(s.Cron, "TZ=") {
			bad(".cron", "put the zone in timezone, not in the expression")
		} else if _, err := cron.ParseStandard(s.CronSpec()); err != nil {
			bad(".cron", "%q is not a five-field cron expression (minute hour day-of-month month day-of-week): %v", s.Cron, err)
		}
	}
	return errs
}

// Hooks run around a sync's or a group's run: Before ("run pipeline
// first": refresh what the scope reads) and After ("refresh the target's
// pipeline", so QA joins see fresh data).
type Hooks struct {
	Before []Hook `json:"before,omitempty"`
	After  []Hook `json:"after,omitempty"`
}

// Hook is one step: a SQL statement on the warehouse or an HTTP call.
type Hook struct {
	SQL  string    `json:"sql,omitempty"`
	HTTP *HTTPHook `json:"http,omitempty"`
	// Timeout bounds the step, polling included (default 10m).
	Timeout Duration `json:"timeout,omitempty"`
}

// HTTPHook calls a URL (an ELT tool's "start a sync" endpoint) and, with
// Poll, waits until another URL says the job is done.
type HTTPHook struct {
	URL    string `json:"url"`
	Method string `json:"method,omitempty"` // default POST
	// Headers are sent as they are, except values of the form
	// "env:NAME", read from the environment (or the server's secrets).
	Headers map[string]string `json:"headers,omitempty"`
	Body    any               `json:"body,omitempty"`
	Poll    *Poll             `json:"poll,omitempty"`
}

// Poll asks URL every Every until the JSON field Field of its answer is
// one of Done (the step succeeds) or Failed (it fails).
type Poll struct {
	// URL may use {id}: replaced by the value of IDField in the start
	// call's answer.
	URL     string   `json:"url"`
	IDField string   `json:"id_field,omitempty"`
	Every   Duration `json:"every,omitempty"` // default 5s
	Field   string   `json:"field"`
	Done    []string `json:"done"`
	Failed  []string `json:"failed,omitempty"`
}

func (h *Hooks) check(file, field string) []error {
	var errs []error
	for _, side := range []struct {
		name  string
		hooks []Hook
	}{{"before", h.Before}, {"after", h.After}} {
		for i, hook := range side.hooks {
			errs = append(errs, hook.check(file, fmt.Sprintf("%s.%s[%d]", field, side.name, i))...)
		}
	}
	return errs
}

func (h *Hook) check(file, field string) []error {
	var errs []error
	bad := func(sub, format string, args ...any) {
		errs = append(errs, &ConfigError{File: file, Field: field + sub, Message: fmt.Sprintf(format, args...)})
	}
	if (h.SQL == "") == (h.HTTP == nil) {
		bad("", "set one of sql (a statement run on the warehouse) or http (a call)")
		return errs
	}
	if h.HTTP == nil {
		return errs
	}
	if u, err := url.Parse(h.HTTP.URL); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		bad(".http.url", "%q is not an http(s) URL", h.HTTP.URL)
	}
	switch strings.ToUpper(h.HTTP.Method) {
	case "", "GET", "POST", "PUT", "PATCH":
	default:
		bad(".http.method", "%q: use GET, POST, PUT or PATCH", h.HTTP.Method)
	}
	for k, v := range h.HTTP.Headers {
		if name, ok := strings.CutPrefix(v, "env:"); ok && name == "" {
			bad(".http.headers."+k, "env: needs the name of a variable, e.g. env:FIVETRAN_TOKEN")
		}
	}
	if p := h.HTTP.Poll; p != nil {
		if p.URL == "" {
			bad(".http.poll.url", "the URL that reports the job's state is missing")
		}
		if strings.Contains(p.URL, "{id}") && p.IDField == "" {
			bad(".http.poll.id_field", "the poll URL uses {id}: say which field of the start call's answer holds it")
		}
		if p.Field == "" || len(p.Done) == 0 {
			bad(".http.poll", "say which field of the answer holds the state (field) and which values mean done (done)")
		}
	}
	return errs
}

// Script is a data-sync script (def main(pq)) the server runs on a
// schedule.
type Script struct {
	Schedule *Schedule `json:"schedule,omitempty"`
}

// Alerts say where run events go.
type Alerts struct {
	Webhooks []Webhook `json:"webhooks,omitempty"`
	Email    *Email    `json:"email,omitempty"`
}

// Events a run emits.
const (
	EventStarted             = "run.started"
	EventSucceeded           = "run.succeeded"
	EventSucceededWithErrors = "run.succeeded_with_errors"
	EventFailed              = "run.failed"
	EventRecovered           = "run.recovered"
)

// Webhook receives run events as signed JSON POSTs.
type Webhook struct {
	URL string `json:"url"`
	// SecretEnv names the variable (or server secret) holding the HMAC
	// key the body is signed with.
	SecretEnv string `json:"secret_env"`
	// Events it receives (default: every event but run.started).
	Events []string `json:"events,omitempty"`
}

// Email sends alerts over SMTP: a failed scheduled run, a run whose share
// of failed records is above FailedShare, and a recovery, once.
type Email struct {
	// SMTPURLEnv names the variable holding smtp://user:pass@host:port.
	SMTPURLEnv  string   `json:"smtp_url_env"`
	From        string   `json:"from"`
	To          []string `json:"to"`
	FailedShare float64  `json:"failed_share,omitempty"` // default 0.05
}

func (a *Alerts) check() []error {
	var errs []error
	bad := func(field, format string, args ...any) {
		errs = append(errs, &ConfigError{File: ProjectFile, Field: "alerts." + field, Message: fmt.Sprintf(format, args...)})
	}
	known := map[string]bool{EventStarted: true, EventSucceeded: true, EventSucceededWithErrors: true, EventFailed: true, EventRecovered: true}
	for i, w := range a.Webhooks {
		if u, err := url.Parse(w.URL); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			bad(fmt.Sprintf("webhooks[%d].url", i), "%q is not an http(s) URL", w.URL)
		}
		if w.SecretEnv == "" {
			bad(fmt.Sprintf("webhooks[%d].secret_env", i), "name the secret the body is signed with, so the receiver can check it came from Ferry")
		}
		for j, e := range w.Events {
			if !known[e] {
				bad(fmt.Sprintf("webhooks[%d].events[%d]", i, j), "unknown event %q (run.started, run.succeeded, run.succeeded_with_errors, run.failed, run.recovered)", e)
			}
		}
	}
	if e := a.Email; e != nil {
		if e.SMTPURLEnv == "" {
			bad("email.smtp_url_env", "name the variable holding smtp://user:password@host:port")
		}
		if e.From == "" || len(e.To) == 0 {
			bad("email", "set from and to")
		}
		if e.FailedShare < 0 || e.FailedShare > 1 {
			bad("email.failed_share", "a share of records between 0 and 1, e.g. 0.05")
		}
	}
	return errs
}
