// Package scheduler turns the schedules of a project (syncs, groups,
// data-sync scripts) into queued runs. Every replica ticks (gocron); a
// tick stands for the schedule time it is due at, so replicas that tick the
// same time enqueue the same job, which the run queue keeps once. A tick
// that finds a run of the same thing still waiting adds nothing, so a sync
// slower than its schedule runs once right after, not once per tick; a
// server that was down enqueues one catch-up run for the ticks it missed.
package scheduler

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"sync"
	"time"

	"github.com/go-co-op/gocron/v2"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/riverqueue/river/rivertype"

	"github.com/ferry-sync/ferry/engine/project"
	"github.com/ferry-sync/ferry/internal/runqueue"
	"github.com/ferry-sync/ferry/queries"
)

// Queue is what the scheduler needs of the run queue.
type Queue interface {
	Enqueue(ctx context.Context, a runqueue.Args) (job *rivertype.JobRow, dup bool, err error)
	Waiting(ctx context.Context, what, name string) (bool, error)
}

// Options configure a Scheduler.
type Options struct {
	DB *pgxpool.Pool
	// Project returns the current project; it is read again every
	// ReloadEvery, so an edited schedule takes effect without a restart.
	Project     func(ctx context.Context) (*project.Project, error)
	Queue       Queue
	ReloadEvery time.Duration // default 2s
	Logger      *slog.Logger
	// OnTick is told of every tick this replica enqueued (metrics).
	OnTick func(what, name string, tick time.Time, enqueued bool)
}

// Entry is one schedule as the scheduler holds it.
type Entry struct {
	What     string           `json:"what" doc:"sync, group or script"`
	Name     string           `json:"name"`
	Schedule project.Schedule `json:"schedule"`
	Spec     string           `json:"spec" doc:"The schedule in words: every 5m, daily at 06:30 Europe/Brussels, cron 0 */6 * * *"`
	Next     *time.Time       `json:"next,omitempty" doc:"The next tick; absent while paused."`
	LastTick *time.Time       `json:"last_tick,omitempty" doc:"The last tick any replica queued."`
}

type key struct{ what, name string }

type entry struct {
	sched project.Schedule
	spec  string
	job   gocron.Job // nil while paused
}

// Scheduler ticks schedules into the run queue.
type Scheduler struct {
	opts Options
	cron gocron.Scheduler
	q    *queries.Queries
	log  *slog.Logger

	mu      sync.Mutex
	entries map[key]*entry

	stop    context.CancelFunc
	stopped chan struct{}
}

// New makes a scheduler; Start starts it.
func New(opts Options) (*Scheduler, error) {
	if opts.ReloadEvery <= 0 {
		opts.ReloadEvery = 2 * time.Second
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	cron, err := gocron.NewScheduler(gocron.WithLocation(time.UTC))
	if err != nil {
		return nil, fmt.Errorf("scheduler: %w", err)
	}
	return &Scheduler{opts: opts, cron: cron, q: queries.New(opts.DB), log: opts.Logger, entries: map[key]*entry{}}, nil
}

// Start loads the schedules (catching up on ticks missed while no server
// ran), starts ticking, and reloads them every ReloadEvery.
func (s *Scheduler) Start(ctx context.Context) error {
	ctx, s.stop = context.WithCancel(context.WithoutCancel(ctx))
	s.stopped = make(chan struct{})
	if err := s.reload(ctx); err != nil {
		s.log.Warn("scheduler: loading the schedules", "err", err)
	}
	s.cron.Start()
	go func() {
		defer close(s.stopped)
		t := time.NewTicker(s.opts.ReloadEvery)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
			if err := s.reload(ctx); err != nil && ctx.Err() == nil {
				s.log.Warn("scheduler: reloading the schedules", "err", err)
			}
		}
	}()
	return nil
}

// Stop stops ticking.
func (s *Scheduler) Stop() error {
	if s.stop == nil {
		return nil
	}
	s.stop()
	<-s.stopped
	return s.cron.Shutdown()
}

// schedules lists the project's schedules.
func schedules(p *project.Project) map[key]project.Schedule {
	out := map[key]project.Schedule{}
	for _, sy := range p.Syncs {
		if sy.Schedule != nil {
			out[key{runqueue.WhatSync, sy.Name}] = *sy.Schedule
		}
	}
	for name, g := range p.Groups {
		if g.Schedule != nil {
			out[key{runqueue.WhatGroup, name}] = *g.Schedule
		}
	}
	for name, sc := range p.Scripts {
		if sc.Schedule != nil {
			out[key{runqueue.WhatScript, name}] = *sc.Schedule
		}
	}
	return out
}

// reload brings the ticking jobs in line with the project's schedules.
func (s *Scheduler) reload(ctx context.Context) error {
	p, err := s.opts.Project(ctx)
	if err != nil {
		return err
	}
	want := schedules(p)
	s.mu.Lock()
	defer s.mu.Unlock()
	changed := map[key]bool{}
	for k, e := range s.entries {
		if w, ok := want[k]; !ok || w.String() != e.spec {
			if e.job != nil {
				_ = s.cron.RemoveJob(e.job.ID())
			}
			delete(s.entries, k)
			changed[k] = ok
		}
	}
	var errs []error
	for k, sched := range want {
		if _, ok := s.entries[k]; ok {
			continue
		}
		e := &entry{sched: sched, spec: sched.String()}
		if !sched.Paused {
			// An edited schedule starts from now: the ticks of the old
			// one were not missed.
			if changed[k] {
				err = s.q.ScheduleTickAdvance(ctx, queries.ScheduleTickAdvanceParams{Kind: k.what, Name: k.name, Tick: time.Now()})
			} else {
				err = s.catchUp(ctx, k, sched)
			}
			if err != nil {
				errs = append(errs, err)
			}
			if e.job, err = s.add(ctx, k, sched); err != nil {
				errs = append(errs, fmt.Errorf("%s %s: %w", k.what, k.name, err))
				continue
			}
		}
		s.entries[k] = e
	}
	return errors.Join(errs...)
}

// add starts ticking one schedule.
func (s *Scheduler) add(ctx context.Context, k key, sched project.Schedule) (gocron.Job, error) {
	task := gocron.NewTask(func() { s.tick(ctx, k, sched) })
	name := gocron.WithName(k.what + ":" + k.name)
	if d := sched.Every.Duration; d > 0 {
		// Start on a multiple of the period, as every replica does.
		first := sched.Next(time.Now())
		return s.cron.NewJob(gocron.DurationJob(d), task, name, gocron.WithStartAt(gocron.WithStartDateTime(first)))
	}
	return s.cron.NewJob(gocron.CronJob(sched.CronSpec(), false), task, name)
}

// dueAt is the tick a firing at now stands for: the latest schedule time
// not after it, whichever replica fires and however late (a busy machine
// fires timers late; a firing a whole period late still names its own
// tick, not the next one, which the next firing would then name again).
// A few milliseconds of grace cover a wall clock stepped back a little.
func dueAt(sched project.Schedule, now time.Time) time.Time {
	now = now.Add(50 * time.Millisecond)
	if d := sched.Every.Duration; d > 0 {
		return now.Truncate(d)
	}
	// Walk back in growing steps until a tick is found before now, then
	// forward to the last one.
	for _, back := range []time.Duration{2 * time.Minute, 2 * time.Hour, 50 * time.Hour, 32 * 24 * time.Hour, 367 * 24 * time.Hour} {
		t := sched.Next(now.Add(-back))
		if t.IsZero() || t.After(now) {
			continue
		}
		for {
			next := sched.Next(t)
			if next.IsZero() || next.After(now) {
				return t
			}
			t = next
		}
	}
	return sched.Next(now.Add(-time.Second))
}

// tick queues the run a schedule time stands for, unless one waits.
func (s *Scheduler) tick(ctx context.Context, k key, sched project.Schedule) {
	tick := dueAt(sched, time.Now())
	enqueued, err := s.enqueue(ctx, k, tick, runqueue.TriggerSchedule)
	if err != nil && ctx.Err() == nil {
		s.log.Warn("scheduler: queueing a scheduled run", "what", k.what, "name", k.name, "tick", tick, "err", err)
	}
	if s.opts.OnTick != nil {
		s.opts.OnTick(k.what, k.name, tick, enqueued)
	}
}

func (s *Scheduler) enqueue(ctx context.Context, k key, tick time.Time, trigger string) (bool, error) {
	if err := s.q.ScheduleTickAdvance(ctx, queries.ScheduleTickAdvanceParams{Kind: k.what, Name: k.name, Tick: tick}); err != nil {
		return false, fmt.Errorf("recording the tick: %w", err)
	}
	waiting, err := s.opts.Queue.Waiting(ctx, k.what, k.name)
	if err != nil || waiting {
		return false, err
	}
	_, dup, err := s.opts.Queue.Enqueue(ctx, runqueue.Args{What: k.what, Name: k.name, Tick: tick, Trigger: trigger})
	return err == nil && !dup, err
}

// catchUp queues one run when ticks were missed since the last one any
// replica queued (the servers were down); a schedule seen for the first
// time starts from now.
func (s *Scheduler) catchUp(ctx context.Context, k key, sched project.Schedule) error {
	now := time.Now()
	last, err := s.q.ScheduleTickGet(ctx, queries.ScheduleTickGetParams{Kind: k.what, Name: k.name})
	if errors.Is(err, pgx.ErrNoRows) {
		return s.q.ScheduleTickAdvance(ctx, queries.ScheduleTickAdvanceParams{Kind: k.what, Name: k.name, Tick: now})
	}
	if err != nil {
		return fmt.Errorf("%s %s: reading its last tick: %w", k.what, k.name, err)
	}
	// The first missed tick names the catch-up, so replicas starting
	// together queue the same job; a tick due this very moment is left to
	// the ticker.
	missed := sched.Next(last)
	if missed.IsZero() || missed.After(now.Add(-2*time.Second)) {
		return nil
	}
	if _, err := s.enqueue(ctx, k, missed, runqueue.TriggerCatchUp); err != nil {
		return fmt.Errorf("%s %s: queueing a catch-up run: %w", k.what, k.name, err)
	}
	s.log.Info("scheduler: ticks were missed while no server ran; one catch-up run queued", "what", k.what, "name", k.name, "since", last)
	return s.q.ScheduleTickAdvance(ctx, queries.ScheduleTickAdvanceParams{Kind: k.what, Name: k.name, Tick: dueAt(sched, now)})
}

// Entries lists the schedules with their next and last ticks.
func (s *Scheduler) Entries(ctx context.Context) ([]Entry, error) {
	ticks, err := s.q.ScheduleTickList(ctx)
	if err != nil {
		return nil, fmt.Errorf("reading the last ticks: %w", err)
	}
	last := map[key]time.Time{}
	for _, t := range ticks {
		last[key{t.Kind, t.Name}] = t.LastTick
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]Entry, 0, len(s.entries))
	for k, e := range s.entries {
		en := Entry{What: k.what, Name: k.name, Schedule: e.sched, Spec: e.spec}
		if e.job != nil {
			if next, err := e.job.NextRun(); err == nil && !next.IsZero() {
				en.Next = &next
			}
		}
		if t, ok := last[k]; ok {
			en.LastTick = &t
		}
		out = append(out, en)
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].What != out[j].What {
			return out[i].What > out[j].What // syncs, then scripts, then groups
		}
		return out[i].Name < out[j].Name
	})
	return out, nil
}

// List is the schedules of a project without a running scheduler (ferry
// schedule list, ferry status): the next tick from now.
func List(p *project.Project, now time.Time) []Entry {
	var out []Entry
	for k, sched := range schedules(p) {
		en := Entry{What: k.what, Name: k.name, Schedule: sched, Spec: sched.String()}
		if !sched.Paused {
			next := sched.Next(now)
			en.Next = &next
		}
		out = append(out, en)
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].What != out[j].What {
			return out[i].What > out[j].What
		}
		return out[i].Name < out[j].Name
	})
	return out
}
