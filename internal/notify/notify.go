package notify

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"slices"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/ferry-sync/ferry/engine/project"
	"github.com/ferry-sync/ferry/queries"
)

// What an event is about.
const (
	KindSync   = "sync"
	KindGroup  = "group"
	KindScript = "script"
)

// What started a run. Failure e-mails are for the runs nobody watched:
// scheduled ones and the catch-up of ticks a stopped server missed.
const (
	TriggerSchedule = "schedule"
	TriggerCatchup  = "catchup"
	TriggerAPI      = "api"
	TriggerCLI      = "cli"
)

// Run statuses, as ferry.runs.status (and engine.RunStatus) spell them.
const (
	statusRunning             = "running"
	statusSucceeded           = "succeeded"
	statusSucceededWithErrors = "succeeded_with_errors"
	statusFailed              = "failed"
	statusStopped             = "stopped"
)

// DefaultFailedShare is the share of a run's records that may fail before
// the run is worth an e-mail (and before its success counts as a recovery).
const DefaultFailedShare = 0.05

// Event is a run as its alerts describe it: the "run" object of a webhook's
// body and the facts of an e-mail.
type Event struct {
	// RunID is the run's row in ferry.runs (0 for a group, which has none
	// of its own: each of its syncs reports its own run).
	RunID int64 `json:"run_id,omitempty"`
	// Sync names what ran: a sync, a group or a script, as Kind says.
	Sync    string `json:"sync"`
	Kind    string `json:"kind"`
	Status  string `json:"status"`
	Trigger string `json:"trigger,omitempty"`

	Read      int64 `json:"read"`
	Inserted  int64 `json:"inserted"`
	Updated   int64 `json:"updated"`
	Unchanged int64 `json:"unchanged"`
	Skipped   int64 `json:"skipped"`
	Invalid   int64 `json:"invalid"`
	Failed    int64 `json:"failed"`

	// Error is the run's error, already redacted by the engine.
	Error      string    `json:"error,omitempty"`
	StartedAt  time.Time `json:"started_at"`
	FinishedAt time.Time `json:"finished_at,omitzero"`
	// Replica is the server that ran it (its host name).
	Replica string `json:"replica,omitempty"`
}

// failedShare is the share of the run's records that failed: of those read,
// or of the outcomes when the run counted no reads (a script).
func (ev *Event) failedShare() float64 {
	total := ev.Read
	if total <= 0 {
		total = ev.Inserted + ev.Updated + ev.Unchanged + ev.Skipped + ev.Invalid + ev.Failed
	}
	if total <= 0 || ev.Failed <= 0 {
		return 0
	}
	return float64(ev.Failed) / float64(total)
}

// Options configure a Notifier; every field has a default.
type Options struct {
	// Env looks up the secrets alerts name (webhook keys, the SMTP URL):
	// the server's secret store, falling back to the environment. Default:
	// the process environment.
	Env func(string) (string, bool)
	// Logger receives what happened to deliveries; never a secret.
	Logger *slog.Logger
	// Client sends webhooks. Default: a client with a timeout that does not
	// follow redirects (a signed body is not re-sent to another address).
	Client *http.Client
	// Now is the clock (tests).
	Now func() time.Time
	// RetryBase is the first retry's delay, doubled for each next one, with
	// jitter (default 1s).
	RetryBase time.Duration
	// CloseWait bounds how long Close waits for deliveries in flight
	// (default 10s); the ones still going are then cancelled.
	CloseWait time.Duration
}

// Delivery limits.
const (
	maxAttempts      = 5
	emailAttempts    = 3
	attemptTimeout   = 15 * time.Second
	smtpTimeout      = 60 * time.Second
	logWriteTimeout  = 5 * time.Second
	defaultCloseWait = 10 * time.Second
	// maxRetryAfter caps a receiver's Retry-After, so that one receiver
	// cannot park a delivery for hours.
	maxRetryAfter = 5 * time.Minute
)

// Notifier sends the alerts a project configures. It is safe for concurrent
// use; Close it on shutdown.
type Notifier struct {
	q         *queries.Queries // nil: no delivery log, no recoveries
	env       func(string) (string, bool)
	log       *slog.Logger
	client    *http.Client
	now       func() time.Time
	retryBase time.Duration
	closeWait time.Duration

	// ctx outlives the runs that report (their contexts end with them) and
	// is cancelled by Close once its wait is over.
	ctx    context.Context
	cancel context.CancelFunc

	mu     sync.Mutex
	closed bool
	wg     sync.WaitGroup
}

// New returns a Notifier that logs deliveries and reads runs in db.
func New(db *pgxpool.Pool, opts Options) *Notifier {
	n := &Notifier{
		env:       opts.Env,
		log:       opts.Logger,
		client:    opts.Client,
		now:       opts.Now,
		retryBase: opts.RetryBase,
		closeWait: opts.CloseWait,
	}
	if db != nil {
		n.q = queries.New(db)
	}
	if n.env == nil {
		n.env = os.LookupEnv
	}
	if n.log == nil {
		n.log = slog.New(slog.DiscardHandler)
	}
	if n.client == nil {
		n.client = &http.Client{
			Timeout: attemptTimeout,
			CheckRedirect: func(*http.Request, []*http.Request) error {
				return http.ErrUseLastResponse
			},
		}
	}
	if n.now == nil {
		n.now = time.Now
	}
	if n.retryBase <= 0 {
		n.retryBase = time.Second
	}
	if n.closeWait <= 0 {
		n.closeWait = defaultCloseWait
	}
	n.ctx, n.cancel = context.WithCancel(context.Background())
	return n
}

// RunStarted sends run.started to the webhooks that asked for it. It
// returns at once.
func (n *Notifier) RunStarted(ctx context.Context, alerts *project.Alerts, ev Event) {
	if alerts == nil || len(alerts.Webhooks) == 0 {
		return
	}
	if ev.Status == "" {
		ev.Status = statusRunning
	}
	n.spawn(ctx, func(ctx context.Context) {
		n.sendWebhooks(ctx, alerts.Webhooks, []string{project.EventStarted}, ev)
	})
}

// RunEnded sends what a finished run is worth: its event to the webhooks,
// run.recovered too when it is the first good run after a failed one, and
// an e-mail when it failed unwatched, failed too many records or
// recovered. It returns at once.
func (n *Notifier) RunEnded(ctx context.Context, alerts *project.Alerts, ev Event) {
	if alerts == nil || (len(alerts.Webhooks) == 0 && alerts.Email == nil) {
		return
	}
	n.spawn(ctx, func(ctx context.Context) { n.runEnded(ctx, alerts, ev) })
}

func (n *Notifier) runEnded(ctx context.Context, alerts *project.Alerts, ev Event) {
	var event string
	switch ev.Status {
	case statusSucceeded:
		event = project.EventSucceeded
	case statusSucceededWithErrors:
		event = project.EventSucceededWithErrors
	case statusFailed, statusStopped:
		// A stopped run ended early (on_error: stop, the error budget): to
		// whoever is alerted it failed; its status says how.
		event = project.EventFailed
	default:
		n.log.WarnContext(ctx, "alerts: a run that has not ended was reported as ended; nothing sent",
			"sync", ev.Sync, "run_id", ev.RunID, "status", ev.Status)
		return
	}
	threshold := DefaultFailedShare
	if alerts.Email != nil && alerts.Email.FailedShare > 0 {
		threshold = alerts.Email.FailedShare
	}
	share := ev.failedShare()
	events := []string{event}
	recovered := false
	if good := ev.Status == statusSucceeded || (ev.Status == statusSucceededWithErrors && share <= threshold); good {
		var err error
		if recovered, err = n.recovered(ctx, ev); err != nil {
			n.log.WarnContext(ctx, "alerts: cannot tell whether the run recovered from a failure; no recovery sent",
				"sync", ev.Sync, "run_id", ev.RunID, "error", err)
		}
		if recovered {
			events = append(events, project.EventRecovered)
		}
	}

	var wg sync.WaitGroup
	wg.Go(func() { n.sendWebhooks(ctx, alerts.Webhooks, events, ev) })
	if alerts.Email != nil {
		var reason string
		switch {
		case (ev.Status == statusFailed || ev.Status == statusStopped) &&
			(ev.Trigger == TriggerSchedule || ev.Trigger == TriggerCatchup):
			reason = ev.Status
		case share > threshold:
			reason = fmt.Sprintf("failed %d of its records (%.1f%%)", ev.Failed, 100*share)
		case recovered:
			reason = "recovered"
		}
		if reason != "" {
			wg.Go(func() { n.sendEmail(ctx, alerts.Email, reason, ev) })
		}
	}
	wg.Wait()
}

// recovered reports whether the run before ev's, of the same sync, failed
// or stopped. It reads ferry.runs rather than remembering, so a recovery is
// told once, by the replica that ran the good run, even after a restart.
func (n *Notifier) recovered(ctx context.Context, ev Event) (bool, error) {
	if n.q == nil || ev.RunID <= 0 {
		return false, nil
	}
	prev, err := n.q.RunPreviousStatus(ctx, ev.RunID)
	if errors.Is(err, pgx.ErrNoRows) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("reading how the run before run %d ended: %w", ev.RunID, err)
	}
	return prev == statusFailed || prev == statusStopped, nil
}

// sendWebhooks delivers each event to each webhook that receives it, all at
// once.
func (n *Notifier) sendWebhooks(ctx context.Context, hooks []project.Webhook, events []string, ev Event) {
	var wg sync.WaitGroup
	for _, w := range hooks {
		for _, event := range events {
			if !receives(w, event) {
				continue
			}
			wg.Go(func() { n.deliver(ctx, w, event, ev) })
		}
	}
	wg.Wait()
}

// receives reports whether w asked for event: by default every event but
// run.started, which would double the traffic for little news.
func receives(w project.Webhook, event string) bool {
	if len(w.Events) == 0 {
		return event != project.EventStarted
	}
	return slices.Contains(w.Events, event)
}

// spawn runs f in the background under the Notifier's context (the
// caller's ends with its run), unless the Notifier is closed.
func (n *Notifier) spawn(ctx context.Context, f func(context.Context)) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.closed {
		n.log.WarnContext(ctx, "alerts: the notifier is closed; event dropped")
		return
	}
	n.wg.Go(func() { f(n.ctx) })
}

// Close waits for the deliveries in flight, retries included, for at most
// CloseWait, then cancels the rest. Events reported after Close are
// dropped.
func (n *Notifier) Close() {
	n.mu.Lock()
	if n.closed {
		n.mu.Unlock()
		return
	}
	n.closed = true
	n.mu.Unlock()

	done := make(chan struct{})
	go func() {
		n.wg.Wait()
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(n.closeWait):
		n.log.Warn("alerts: shutting down with deliveries still in flight; they are cancelled", "waited", n.closeWait)
		n.cancel()
		<-done
	}
	n.cancel()
}

// sleep waits d, or less when ctx ends (false).
func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}
