package scripting

import (
	"errors"
	"fmt"
	"strconv"
	"strings"

	"go.starlark.net/resolve"
	"go.starlark.net/starlark"
	"go.starlark.net/syntax"
)

// ErrorKind classifies a ScriptError so the engine and the CLI can react
// (a memory error is worth a different hint than a typo).
type ErrorKind string

const (
	// KindCompile: the script does not parse, a name is undefined, a load()
	// is refused, or the hook function is missing. Found before any record.
	KindCompile ErrorKind = "compile"
	// KindRuntime: the script failed while running (a missing key, a type
	// error, fail(), a value that cannot leave the script).
	KindRuntime ErrorKind = "runtime"
	// KindSteps: the call ran more than Options.MaxSteps steps.
	KindSteps ErrorKind = "steps"
	// KindTimeout: the call ran past Options.Timeout.
	KindTimeout ErrorKind = "timeout"
	// KindCancelled: the caller's context was cancelled.
	KindCancelled ErrorKind = "cancelled"
	// KindMemory: the worker process ran out of memory on this record.
	KindMemory ErrorKind = "memory"
	// KindCrash: the worker process died for another reason.
	KindCrash ErrorKind = "crash"
	// KindHost: a pq call failed in the engine (a lookup's API call, a
	// query). The engine's error is kept: errors.Unwrap reaches it when the
	// script ran in-process.
	KindHost ErrorKind = "host"
)

// ScriptError is a script failure that names where it happened: the script,
// the file and line inside it (which may be a loaded library) and the
// source record. Its Error() reads like
//
//	contacts.star:12: key "email" not in source_record (source id 42)
type ScriptError struct {
	Kind      ErrorKind
	Script    string // the script the engine compiled, e.g. "contacts.star"
	File      string // the file holding Line; differs from Script inside a loaded library
	Line, Col int    // 0 when unknown
	SourceID  string // "" outside a record (compile errors, main scripts)
	Message   string
	Backtrace string // Starlark call stack, outermost first; "" for compile errors
	cause     error
}

// Error formats the error as file:line: message (source id X).
func (e *ScriptError) Error() string {
	var b strings.Builder
	file := e.File
	if file == "" {
		file = e.Script
	}
	if e.Script != "" && file != e.Script {
		b.WriteString(e.Script)
		b.WriteString(": ")
	}
	b.WriteString(file)
	if e.Line > 0 {
		b.WriteString(":")
		b.WriteString(strconv.Itoa(e.Line))
		if e.Kind == KindCompile && e.Col > 0 {
			b.WriteString(":")
			b.WriteString(strconv.Itoa(e.Col))
		}
	}
	b.WriteString(": ")
	b.WriteString(e.Message)
	if e.SourceID != "" {
		b.WriteString(" (source id ")
		b.WriteString(e.SourceID)
		b.WriteString(")")
	}
	return b.String()
}

// Unwrap returns the engine error behind a KindHost error, if any.
func (e *ScriptError) Unwrap() error { return e.cause }

// compileError turns a parse, resolve or load error into a ScriptError.
func compileError(script string, err error) *ScriptError {
	var se *ScriptError
	if errors.As(err, &se) {
		return se
	}
	var serr syntax.Error
	if errors.As(err, &serr) {
		return &ScriptError{Kind: KindCompile, Script: script, File: serr.Pos.Filename(),
			Line: int(serr.Pos.Line), Col: int(serr.Pos.Col), Message: serr.Msg}
	}
	var rerrs resolve.ErrorList
	if errors.As(err, &rerrs) && len(rerrs) > 0 {
		first := rerrs[0]
		msg := first.Msg
		if len(rerrs) > 1 {
			msg = fmt.Sprintf("%s (and %d more)", msg, len(rerrs)-1)
		}
		return &ScriptError{Kind: KindCompile, Script: script, File: first.Pos.Filename(),
			Line: int(first.Pos.Line), Col: int(first.Pos.Col), Message: msg}
	}
	var eerr *starlark.EvalError
	if errors.As(err, &eerr) {
		se := evalError(script, "", eerr)
		se.Kind = KindCompile
		return se
	}
	return &ScriptError{Kind: KindCompile, Script: script, File: script, Message: err.Error()}
}

// evalError turns a Starlark evaluation error into a ScriptError located at
// the innermost frame of the user's code.
func evalError(script, sourceID string, err *starlark.EvalError) *ScriptError {
	se := &ScriptError{Kind: KindRuntime, Script: script, SourceID: sourceID,
		Message: err.Msg, Backtrace: err.CallStack.String(), cause: errors.Unwrap(err)}
	for i := len(err.CallStack) - 1; i >= 0; i-- {
		pos := err.CallStack[i].Pos
		if pos.Filename() == "<builtin>" || pos.Filename() == "" {
			continue
		}
		se.File, se.Line, se.Col = pos.Filename(), int(pos.Line), int(pos.Col)
		break
	}
	// A pq builtin that failed in the engine marks its error so the kind
	// survives the trip through the interpreter.
	var he *hostError
	if errors.As(err, &he) {
		se.Kind = KindHost
		se.cause = he.err
	}
	se.Message = strings.TrimPrefix(se.Message, "Starlark computation cancelled: ")
	return se
}

// hostError wraps an error returned by the Host so a ScriptError can say the
// engine, not the script, failed.
type hostError struct {
	call string
	err  error
}

func (e *hostError) Error() string { return e.call + ": " + e.err.Error() }
func (e *hostError) Unwrap() error { return e.err }
