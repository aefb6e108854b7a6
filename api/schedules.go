package api

import (
	"context"
	"time"

	"github.com/ferry-sync/ferry/internal/scheduler"
)

// Schedules lists the schedules this server ticks (internal/scheduler).
type Schedules interface {
	Entries(ctx context.Context) ([]scheduler.Entry, error)
}

type scheduleList struct {
	Body struct {
		Schedules []scheduler.Entry `json:"schedules"`
	}
}

// listSchedules lists every schedule with its next tick. A schedule is
// part of its sync, group or script: PUT /syncs/{name} with schedule (or
// schedule.paused) changes it, and every replica picks the change up on
// its next reload.
func (s *Server) listSchedules(ctx context.Context, _ *struct{}) (*scheduleList, error) {
	out := &scheduleList{}
	out.Body.Schedules = []scheduler.Entry{}
	if s.opts.Schedules == nil {
		p, err := s.opts.Engine.Project(ctx)
		if err != nil {
			return nil, fail(err)
		}
		out.Body.Schedules = append(out.Body.Schedules, scheduler.List(p, time.Now())...)
		return out, nil
	}
	entries, err := s.opts.Schedules.Entries(ctx)
	if err != nil {
		return nil, fail(err)
	}
	out.Body.Schedules = append(out.Body.Schedules, entries...)
	return out, nil
}
