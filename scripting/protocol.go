package scripting

import (
	"fmt"
	"time"
)

// Message types of the worker protocol. The parent sends hello, load,
// batch, main and host replies; the worker answers with ready, loaded,
// log lines, host calls, results, done, and fatal just before it gives up
// on a call stuck past its deadline.
const (
	msgHello byte = iota + 1
	msgLoad
	msgBatch
	msgMain
	msgHostReply

	msgReady
	msgLoaded
	msgLog
	msgHostCall
	msgResult
	msgDone
	msgFatal
)

// Host methods as named on the wire.
const (
	hostQuery    = "query"
	hostFind     = "find"
	hostWrite    = "write"
	hostLink     = "link"
	hostGetState = "get_state"
	hostSetState = "set_state"
)

// loadRequest asks a worker to compile and initialise a script.
type loadRequest struct {
	key      string
	script   string
	entry    string
	maxSteps uint64
	timeout  time.Duration
	sources  map[string][]byte
}

func (l *loadRequest) encode(e *encoder) {
	e.byte(msgLoad)
	e.string(l.key)
	e.string(l.script)
	e.string(l.entry)
	e.uvarint(l.maxSteps)
	e.varint(int64(l.timeout))
	e.uvarint(uint64(len(l.sources)))
	for name, src := range l.sources {
		e.string(name)
		e.string(string(src))
	}
}

func (l *loadRequest) decode(d *decoder) {
	l.key = d.string()
	l.script = d.string()
	l.entry = d.string()
	l.maxSteps = d.uvarint()
	l.timeout = time.Duration(d.varint())
	n := d.uvarint()
	l.sources = make(map[string][]byte, min(n, 1024))
	for range n {
		name := d.string()
		l.sources[name] = []byte(d.string())
	}
}

func encodeScriptError(e *encoder, se *ScriptError) {
	e.string(string(se.Kind))
	e.string(se.Script)
	e.string(se.File)
	e.varint(int64(se.Line))
	e.varint(int64(se.Col))
	e.string(se.SourceID)
	e.string(se.Message)
	e.string(se.Backtrace)
}

func decodeScriptError(d *decoder) *ScriptError {
	return &ScriptError{
		Kind:      ErrorKind(d.string()),
		Script:    d.string(),
		File:      d.string(),
		Line:      d.int(),
		Col:       d.int(),
		SourceID:  d.string(),
		Message:   d.string(),
		Backtrace: d.string(),
	}
}

// asScriptError makes any error a ScriptError for the wire.
func asScriptError(script, sourceID string, err error) *ScriptError {
	if se, ok := err.(*ScriptError); ok {
		return se
	}
	return &ScriptError{Kind: KindRuntime, Script: script, File: script, SourceID: sourceID, Message: err.Error()}
}

// encodeHostCall writes a Host call's arguments.
func encodeHostCall(e *encoder, method string, args ...any) error {
	e.string(method)
	for i, a := range args {
		if err := e.value(a, fmt.Sprintf("%s argument %d", method, i+1)); err != nil {
			return err
		}
	}
	return nil
}
