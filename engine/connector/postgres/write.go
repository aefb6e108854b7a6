package postgres

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/ferry-sync/ferry/engine/connector"
)

// Retries of a statement that failed without running (a lost connection
// before sending, a serialization failure, a deadlock): how many, and the
// backoff between them.
const (
	maxRetries  = 3
	backoffBase = 50 * time.Millisecond
	backoffMax  = 2 * time.Second
)

// call is the shared state of one Write call.
type call struct {
	object string

	mu       sync.Mutex
	tbl      *table
	reloaded bool

	connector.Halt
}

func (c *call) table() *table {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.tbl
}

// reload reads the table's columns again, once per call: a payload key the
// cache does not know may be a column added since.
func (c *call) reload(ctx context.Context, t *Target) (*table, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.reloaded {
		return c.tbl, nil
	}
	tbl, err := t.table(ctx, c.object, true)
	if err != nil {
		return nil, err
	}
	c.tbl, c.reloaded = tbl, true
	return tbl, nil
}

// Write inserts or updates one row per change, up to Concurrency at once,
// and reports the results in input order. No error it returns holds a
// secret of the connection.
func (t *Target) Write(ctx context.Context, object string, changes []connector.Change) ([]connector.Result, error) {
	results, err := t.write(ctx, object, changes)
	return results, t.redactor.RedactError(err)
}

func (t *Target) write(ctx context.Context, object string, changes []connector.Change) ([]connector.Result, error) {
	results := make([]connector.Result, len(changes))
	if err := ctx.Err(); err != nil {
		return results, fmt.Errorf("writing %d changes to %s: %w", len(changes), object, err)
	}
	if len(changes) == 0 {
		return results, nil
	}
	tbl, err := t.table(ctx, object, false)
	if err != nil {
		return results, err
	}
	c := &call{object: object, tbl: tbl}
	sem := make(chan struct{}, t.concurrency)
	var wg sync.WaitGroup
dispatch:
	for i := range changes {
		if ctx.Err() != nil || c.Stopped() {
			break
		}
		select {
		case sem <- struct{}{}:
		case <-ctx.Done():
			break dispatch
		}
		if c.Stopped() {
			break
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			results[i] = t.writeOne(ctx, c, changes[i])
		}()
	}
	wg.Wait()
	if err := c.Err(); err != nil {
		return results, err
	}
	if err := ctx.Err(); err != nil {
		return results, fmt.Errorf("writing %d changes to %s: %w", len(changes), object, err)
	}
	return results, nil
}

// writeOne writes one change; its error, if any, has the connection's
// secrets redacted (PostgreSQL quotes the values it refuses).
func (t *Target) writeOne(ctx context.Context, c *call, ch connector.Change) connector.Result {
	r := t.writeChange(ctx, c, ch)
	r.Err = t.redactor.RedactClassified(r.Err)
	return r
}

func (t *Target) writeChange(ctx context.Context, c *call, ch connector.Change) connector.Result {
	tbl := c.table()
	var where string
	switch ch.Op {
	case connector.OpInsert:
		where = "insert into " + tbl.name
	case connector.OpUpdate:
		where = fmt.Sprintf("update of %s id %s", tbl.name, ch.TargetID)
		if ch.TargetID == "" {
			return rejected(where, "an update needs a target id")
		}
	default:
		return rejected(tbl.name, fmt.Sprintf("unknown operation %q", ch.Op))
	}

	if unknown := tbl.unknownColumns(ch.Payload); len(unknown) > 0 {
		var err error
		if tbl, err = c.reload(ctx, t); err != nil {
			if ctx.Err() != nil {
				return connector.Result{}
			}
			return connector.Result{Done: true, TargetID: ch.TargetID, Err: &connector.Error{
				Class: connector.Retryable, Message: where + ": " + err.Error(), Err: err}}
		}
		if unknown = tbl.unknownColumns(ch.Payload); len(unknown) > 0 {
			return rejected(where, unknownMessage(unknown, tbl.name))
		}
	}
	cols := make([]string, 0, len(ch.Payload))
	for k := range ch.Payload {
		cols = append(cols, k)
	}
	sort.Strings(cols) // the same statement text for the same keys: prepared once
	doc, err := encodePayload(ch.Payload)
	if err != nil {
		return rejected(where, "encoding the payload: "+err.Error())
	}

	var sql string
	var args []any
	switch {
	case ch.Op == connector.OpInsert && len(cols) == 0:
		sql = tbl.insertSQL(cols)
	case ch.Op == connector.OpInsert:
		sql, args = tbl.insertSQL(cols), []any{doc}
	case len(cols) == 0:
		sql, args = tbl.updateSQL(cols), []any{ch.TargetID}
	default:
		sql, args = tbl.updateSQL(cols), []any{doc, ch.TargetID}
	}

	for attempt := 0; ; attempt++ {
		if !c.Pass(ctx) {
			return connector.Result{}
		}
		id, sent, err := t.exec(ctx, sql, args)
		if err == nil {
			return connector.Result{Done: true, TargetID: id}
		}
		o := classify(ctx, err, sent, ch.Op, where)
		// Redacted before c.Stop, so that the call's error is the very *Error
		// of the result, as Target.Write promises.
		o.err = t.redactor.RedactClassified(o.err)
		if o.forget {
			t.forget(c.object)
		}
		switch {
		case o.undone:
			return connector.Result{}
		case o.retry && attempt < maxRetries:
			if !connector.Sleep(ctx, connector.Backoff(attempt, backoffBase, backoffMax)) {
				return connector.Result{}
			}
			continue
		case o.err.Class == connector.Auth:
			c.Stop(o.err)
		case !sent && o.err.Class == connector.Retryable && isConnectError(err):
			// No connection after every retry: the others would fail alike.
			o.err.Class = connector.Unreachable
			c.Stop(o.err)
		}
		return connector.Result{Done: true, TargetID: ch.TargetID, Err: o.err}
	}
}

// exec runs one statement returning the row's id. sent is false when it
// failed before anything reached the server (no connection).
func (t *Target) exec(ctx context.Context, sql string, args []any) (id string, sent bool, err error) {
	conn, err := t.pool.Acquire(ctx)
	if err != nil {
		return "", false, err
	}
	defer conn.Release()
	err = conn.QueryRow(ctx, sql, args...).Scan(&id)
	return id, true, err
}

func rejected(where, msg string) connector.Result {
	return connector.Result{Done: true, Err: &connector.Error{Class: connector.Rejected, Message: where + ": " + msg}}
}

func unknownMessage(unknown []string, table string) string {
	quoted := make([]string, len(unknown))
	for i, c := range unknown {
		quoted[i] = fmt.Sprintf("%q", c)
	}
	if len(unknown) == 1 {
		return fmt.Sprintf("column %s does not exist in table %s", quoted[0], table)
	}
	return fmt.Sprintf("columns %s do not exist in table %s", strings.Join(quoted, ", "), table)
}

// outcome is what a failed statement means.
type outcome struct {
	err    *connector.Error
	retry  bool // the statement did not run: try again
	undone bool // cancelled before anything ran: leave the change untouched
	forget bool // the table changed: read its columns again next time
}

// classify turns a statement's error into an outcome. A *pgconn.PgError
// means the server refused the statement, so nothing was written; any other
// error after sending leaves an insert's outcome unknown.
func classify(ctx context.Context, err error, sent bool, op connector.Op, where string) outcome {
	var pgErr *pgconn.PgError
	switch {
	case errors.Is(err, pgx.ErrNoRows):
		return outcome{err: &connector.Error{Class: connector.NotFound, Message: where + ": no such row", Err: err}}
	case errors.As(err, &pgErr):
		return classifyPg(ctx, pgErr, where)
	case ctx.Err() != nil && (!sent || pgconn.SafeToRetry(err)):
		return outcome{undone: true}
	case ctx.Err() != nil && op == connector.OpInsert:
		return outcome{err: &connector.Error{Class: connector.Ambiguous, Err: err,
			Message: where + ": cancelled while the statement ran: the row may have been inserted"}}
	case ctx.Err() != nil:
		return outcome{err: &connector.Error{Class: connector.Retryable, Err: err,
			Message: where + ": cancelled while the statement ran"}}
	case !sent || pgconn.SafeToRetry(err):
		return outcome{retry: true, err: &connector.Error{Class: connector.Retryable, Err: err,
			Message: where + ": " + err.Error()}}
	case op == connector.OpInsert:
		return outcome{err: &connector.Error{Class: connector.Ambiguous, Err: err,
			Message: where + ": " + err.Error() + " while the statement ran: the row may have been inserted"}}
	default:
		// An update sets columns to values: running it twice is harmless.
		return outcome{retry: true, err: &connector.Error{Class: connector.Retryable, Err: err,
			Message: where + ": " + err.Error()}}
	}
}

func classifyPg(ctx context.Context, pgErr *pgconn.PgError, where string) outcome {
	msg := where + ": " + pgErr.Message
	if pgErr.Detail != "" {
		msg += " (" + pgErr.Detail + ")"
	}
	msg += " [SQLSTATE " + pgErr.Code + "]"
	e := func(class connector.Class) *connector.Error {
		return &connector.Error{Class: class, Message: msg, Err: pgErr}
	}
	code := pgErr.Code
	switch {
	case strings.HasPrefix(code, "28") || code == "42501":
		return outcome{err: e(connector.Auth)}
	case strings.HasPrefix(code, "22") || strings.HasPrefix(code, "23"):
		return outcome{err: e(connector.Rejected)}
	case code == "57014" && ctx.Err() != nil:
		return outcome{undone: true}
	case code == "40001" || code == "40P01" || strings.HasPrefix(code, "08") || strings.HasPrefix(code, "53") ||
		code == "57P01" || code == "57P02" || code == "57P03":
		return outcome{retry: true, err: e(connector.Retryable)}
	case code == "0A000":
		// "cached plan must not change result type": the table changed.
		return outcome{retry: true, forget: true, err: e(connector.Retryable)}
	case code == "57014":
		return outcome{err: e(connector.Retryable)} // statement_timeout
	case code == "42703" || code == "42P01":
		return outcome{forget: true, err: e(connector.Rejected)}
	default:
		return outcome{err: e(connector.Rejected)}
	}
}

// classifyWhole gives an error that stops a whole call its class when it
// has one (a refused login, an unreachable server).
func classifyWhole(err error) error {
	ce := classifyConnect(err)
	if ce == nil {
		return err
	}
	ce.Message = err.Error()
	return ce
}

// encodePayload encodes the payload as the JSON document the statement
// reads. Times are written in UTC, so that a timestamp-without-time-zone
// column stores UTC rather than the time's local wall clock.
func encodePayload(payload map[string]any) (string, error) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(inUTC(payload)); err != nil {
		return "", err
	}
	return strings.TrimSuffix(buf.String(), "\n"), nil
}

func inUTC(v any) any {
	switch v := v.(type) {
	case time.Time:
		return v.UTC()
	case map[string]any:
		out := make(map[string]any, len(v))
		for k, x := range v {
			out[k] = inUTC(x)
		}
		return out
	case []any:
		out := make([]any, len(v))
		for i, x := range v {
			out[i] = inUTC(x)
		}
		return out
	default:
		return v
	}
}

// isConnectError reports a failure to connect to the database at all.
func isConnectError(err error) bool {
	var ce *pgconn.ConnectError
	return errors.As(err, &ce) || connector.Unreached(err)
}

// Delete deletes rows by id in one statement (a sync's deletes, ferry
// rollback). A row already gone counts as deleted.
func (t *Target) Delete(ctx context.Context, object string, ids []string) ([]connector.Result, error) {
	results := make([]connector.Result, len(ids))
	if len(ids) == 0 {
		return results, nil
	}
	tbl, err := t.table(ctx, object, false)
	if err != nil {
		return results, t.redactor.RedactError(err)
	}
	if err := connector.CheckGate(ctx); err != nil {
		return results, err
	}
	sql := fmt.Sprintf("DELETE FROM %s WHERE %s::text = ANY($1::text[])", tbl.quoted, pgx.Identifier{tbl.idColumn}.Sanitize())
	if _, err := t.pool.Exec(ctx, sql, ids); err != nil {
		e := t.redactor.RedactClassified(classify(ctx, err, true, connector.OpUpdate, "delete from "+tbl.name).err)
		for i := range results {
			results[i] = connector.Result{Done: true, TargetID: ids[i], Err: e}
		}
		return results, nil
	}
	for i, id := range ids {
		results[i] = connector.Result{Done: true, TargetID: id}
	}
	return results, nil
}
