package api

import (
	"errors"
	"fmt"
	"net/http"
	"strings"

	"github.com/danielgtaylor/huma/v2"

	"github.com/ferry-sync/ferry/api/projects"
	"github.com/ferry-sync/ferry/engine"
	"github.com/ferry-sync/ferry/engine/project"
	"github.com/ferry-sync/ferry/internal/runqueue"
	"github.com/ferry-sync/ferry/internal/secrets"
	"github.com/ferry-sync/ferry/scripting"
)

// Error is the one shape every error of the API has:
//
//	{"error": {"code": "invalid", "message": "…", "fields": [{"path": "source.table", "message": "…"}]}}
type Error struct {
	status int
	Body   ErrorBody `json:"error"`
}

// ErrorBody says what went wrong: a code to switch on, a message for a
// person, and the fields (JSON paths) it is about.
type ErrorBody struct {
	Code    string       `json:"code" doc:"not_found, invalid, conflict, busy, unauthorized, forbidden, too_large, internal …"`
	Message string       `json:"message"`
	Fields  []FieldError `json:"fields,omitempty"`
	RunID   int64        `json:"run_id,omitempty" doc:"For busy: the run that holds the sync."`
	JobID   int64        `json:"job_id,omitempty" doc:"For queued: the run already waiting in the queue."`
}

// FieldError is a problem with one field of the request, by JSON path.
type FieldError struct {
	Path    string `json:"path"`
	Message string `json:"message"`
}

func (e *Error) Error() string  { return e.Body.Message }
func (e *Error) GetStatus() int { return e.status }

// codes names each status's code.
func code(status int) string {
	switch status {
	case http.StatusBadRequest:
		return "bad_request"
	case http.StatusUnauthorized:
		return "unauthorized"
	case http.StatusForbidden:
		return "forbidden"
	case http.StatusNotFound:
		return "not_found"
	case http.StatusConflict:
		return "conflict"
	case http.StatusRequestEntityTooLarge:
		return "too_large"
	case http.StatusUnprocessableEntity:
		return "invalid"
	case http.StatusServiceUnavailable:
		return "unavailable"
	}
	if status >= 500 {
		return "internal"
	}
	return "error"
}

// newError is Huma's error factory (huma.NewError), set to this shape:
// Huma's own validation problems become fields with JSON paths.
func newError(status int, msg string, errs ...error) huma.StatusError {
	e := &Error{status: status, Body: ErrorBody{Code: code(status), Message: msg}}
	for _, err := range errs {
		if err == nil {
			continue
		}
		var d *huma.ErrorDetail
		if errors.As(err, &d) {
			path := strings.TrimPrefix(d.Location, "body.")
			if path == "body" {
				path = ""
			}
			e.Body.Fields = append(e.Body.Fields, FieldError{Path: path, Message: d.Message})
			continue
		}
		e.Body.Fields = append(e.Body.Fields, FieldError{Message: err.Error()})
	}
	if status == http.StatusUnprocessableEntity && len(e.Body.Fields) > 0 && msg == "validation failed" {
		e.Body.Message = "the request is not valid: see fields"
	}
	return e
}

// fail maps a domain error to the API's error: what a caller can switch on
// becomes a status and a code, never text matching.
func fail(err error) error {
	var apiErr *Error
	if errors.As(err, &apiErr) {
		return apiErr
	}
	var busy *engine.BusyError
	var queued *runqueue.ErrQueued
	var nf *engine.NotFoundError
	var ce *project.ConfigError
	var se *scripting.ScriptError
	switch {
	case errors.As(err, &busy):
		e := newError(http.StatusConflict, err.Error()).(*Error)
		e.Body.Code, e.Body.RunID = "busy", busy.RunID
		return e
	case errors.As(err, &queued):
		e := newError(http.StatusConflict, err.Error()).(*Error)
		e.Body.Code, e.Body.JobID, e.Body.RunID = "queued", queued.JobID, queued.RunID
		if queued.RunID != 0 {
			e.Body.Code = "busy"
		}
		return e
	case errors.Is(err, engine.ErrUnknownSync), errors.Is(err, engine.ErrUnknownGroup), errors.Is(err, projects.ErrNotFound), errors.Is(err, errNotFound), errors.As(err, &nf):
		return newError(http.StatusNotFound, err.Error())
	case errors.As(err, &ce):
		return configError(err)
	case errors.As(err, &se):
		return newError(http.StatusUnprocessableEntity, err.Error(), &huma.ErrorDetail{Location: scriptLocation(se), Message: se.Message})
	case errors.Is(err, secrets.ErrNoKey):
		return newError(http.StatusServiceUnavailable, err.Error())
	}
	return newError(http.StatusInternalServerError, err.Error())
}

// configError reports every problem of a configuration error (errors.Join
// of *project.ConfigError), each as a field: "file: field" becomes the
// field's path.
func configError(err error) error {
	var fields []error
	var walk func(error)
	walk = func(err error) {
		if j, ok := err.(interface{ Unwrap() []error }); ok {
			for _, e := range j.Unwrap() {
				walk(e)
			}
			return
		}
		var ce *project.ConfigError
		if errors.As(err, &ce) {
			path := ce.Field
			if path == "" {
				path = ce.File
			}
			fields = append(fields, &huma.ErrorDetail{Location: path, Message: ce.Message})
			return
		}
		fields = append(fields, err)
	}
	walk(err)
	msg := "the configuration is not valid"
	if len(fields) == 1 {
		msg = err.Error()
	}
	return newError(http.StatusUnprocessableEntity, msg, fields...)
}

func scriptLocation(se *scripting.ScriptError) string {
	if se.Line > 0 {
		return fmt.Sprintf("%s:%d:%d", se.File, se.Line, se.Col)
	}
	return se.File
}

// errNotFound is what handlers return for a resource that is not there.
var errNotFound = errors.New("not found")

func notFound(format string, args ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{errNotFound}, args...)...)
}
