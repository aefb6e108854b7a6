package engine

import (
	"context"
	"errors"
	"fmt"

	"github.com/ferry-sync/ferry/engine/connector"
	"github.com/ferry-sync/ferry/engine/internal/linktable"
	"github.com/ferry-sync/ferry/queries"
	"github.com/jackc/pgx/v5"
)

// LinkFilter narrows a page of link rows: "" for any.
type LinkFilter struct {
	Status     LinkStatus
	ErrorClass string
}

// Links returns a page of a sync's link rows in source id order, after the
// cursor after ("" for the first page), and the next page's cursor ("" on
// the last). A sync that has not run has none.
func (e *Engine) Links(ctx context.Context, sync string, f LinkFilter, after string, limit int) ([]LinkRow, string, error) {
	if _, _, err := e.sync(ctx, sync); err != nil {
		return nil, "", err
	}
	return linktable.Page(ctx, e.db, sync, f.Status, f.ErrorClass, after, limit)
}

// LinkHistory is one record's link row and what runs noted about it.
type LinkHistory struct {
	Sync     string                  `json:"sync"`
	SourceID string                  `json:"source_id"`
	Link     *LinkRow                `json:"link,omitempty"`
	Notes    []queries.FerryRunError `json:"notes" doc:"What runs recorded about it (errors, write-backs), newest first."`
}

// LinkHistory returns one record's link row and its history.
func (e *Engine) LinkHistory(ctx context.Context, sync, sourceID string) (*LinkHistory, error) {
	if _, _, err := e.sync(ctx, sync); err != nil {
		return nil, err
	}
	h := &LinkHistory{Sync: sync, SourceID: sourceID}
	var err error
	if h.Link, err = linktable.RowOf(ctx, e.db, sync, sourceID); err != nil {
		return nil, err
	}
	id := sourceID
	notes, err := e.q.RunErrorsBySource(ctx, queries.RunErrorsBySourceParams{Sync: sync, SourceID: &id, MaxRows: 100})
	if err != nil {
		return nil, err
	}
	h.Notes = append([]queries.FerryRunError{}, notes...)
	return h, nil
}

// CheckConnection opens a connection and checks, where its kind can, that
// it answers (connector.Checker), writing nothing.
func (e *Engine) CheckConnection(ctx context.Context, name string) error {
	p, err := e.Project(ctx)
	if err != nil {
		return err
	}
	if _, ok := p.Connections[name]; !ok {
		return &NotFoundError{What: "connection " + name}
	}
	targets := map[string]connector.Target{}
	defer func() {
		for _, t := range targets {
			t.Close()
		}
	}()
	return e.redact.RedactError(e.checkTarget(ctx, p, targets, name, connector.Use{}))
}

// NotFoundError says a thing a caller named does not exist.
type NotFoundError struct{ What string }

func (e *NotFoundError) Error() string { return e.What + " does not exist" }

// Running returns the id of the run that holds a sync's claim now (what
// "sync" or "script"), or 0 when none does.
func (e *Engine) Running(ctx context.Context, what, name string) (int64, error) {
	id, err := e.q.LeaseRunning(ctx, what+":"+name)
	if errors.Is(err, pgx.ErrNoRows) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("%s %s: reading its claim: %w", what, name, err)
	}
	return id, nil
}
