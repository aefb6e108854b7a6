package scripting

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"

	"go.starlark.net/starlark"
	"go.starlark.net/starlarkstruct"
	"go.starlark.net/syntax"
)

// TestReport is the outcome of RunTests.
type TestReport struct {
	Files          []TestFile
	Passed, Failed int
}

// TestFile is one *_test.star file. Err is set when the file itself does
// not compile or load; its tests then did not run (and count as one
// failure).
type TestFile struct {
	Name  string // relative to the project folder
	Err   error
	Tests []TestCase
}

// TestCase is one test_* function.
type TestCase struct {
	Name    string
	Err     error // nil when it passed
	Printed []string
}

// OK reports whether every test passed.
func (r *TestReport) OK() bool { return r.Failed == 0 }

// WriteTo writes the report for a terminal: one line per test, failures
// with their message and printed output, and a closing count line.
func (r *TestReport) WriteTo(w io.Writer) (int64, error) {
	var b strings.Builder
	for _, f := range r.Files {
		b.WriteString(f.Name + "\n")
		if f.Err != nil {
			b.WriteString("  FAIL  (file did not load)\n")
			b.WriteString(indent(f.Err.Error(), "        "))
			continue
		}
		for _, tc := range f.Tests {
			if tc.Err == nil {
				b.WriteString("  ok    " + tc.Name + "\n")
				continue
			}
			b.WriteString("  FAIL  " + tc.Name + "\n")
			b.WriteString(indent(tc.Err.Error(), "        "))
			for _, line := range tc.Printed {
				b.WriteString(indent(line, "        | "))
			}
		}
	}
	fmt.Fprintf(&b, "%d passed, %d failed\n", r.Passed, r.Failed)
	n, err := io.WriteString(w, b.String())
	return int64(n), err
}

func indent(s, prefix string) string {
	var b strings.Builder
	for line := range strings.SplitSeq(strings.TrimRight(s, "\n"), "\n") {
		b.WriteString(prefix + line + "\n")
	}
	return b.String()
}

// RunTests runs the *_test.star files under dir (the project folder), in
// this process. Each test file may load the project's scripts and
// libraries; every top-level function named test_* is a test, called with
// no arguments, in name order. Test files have, besides Ferry's modules:
//
//	assert.eq(got, want), assert.ne(a, b), assert.true(x), assert.false(x),
//	assert.contains(container, x), assert.fails(fn, pattern)
//	run_transform(transform, source, target={}, target_id=None,
//	              records={}, links={}, rows={})
//	    -> struct(payload, skip_reason, target_id, insert, printed, writes)
//	run_main(main, records={}, links={}, rows={}, state=None)
//	    -> struct(writes, records, state, printed)
//
// run_* give the function a fake pq backed by a MemoryHost holding the
// fixtures: records by "object" or "connection/object", links by sync then
// source id, warehouse rows by exact SQL text. A file that fails to load
// counts as one failure; err is for problems outside the tests (dir
// unreadable).
func RunTests(ctx context.Context, dir string) (*TestReport, error) {
	var files []string
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !d.IsDir() && strings.HasSuffix(d.Name(), "_test.star") {
			rel, err := filepath.Rel(dir, path)
			if err != nil {
				return err
			}
			files = append(files, filepath.ToSlash(rel))
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("find tests in %s: %w", dir, err)
	}
	slices.Sort(files)
	report := &TestReport{}
	for _, name := range files {
		f := runTestFile(ctx, dir, name)
		if f.Err != nil {
			report.Failed++
		}
		for _, tc := range f.Tests {
			if tc.Err == nil {
				report.Passed++
			} else {
				report.Failed++
			}
		}
		report.Files = append(report.Files, f)
	}
	return report, nil
}

func runTestFile(ctx context.Context, dir, name string) TestFile {
	f := TestFile{Name: name}
	src, err := os.ReadFile(filepath.Join(dir, filepath.FromSlash(name)))
	if err != nil {
		f.Err = err
		return f
	}
	sources, err := collectSources(name, src, dir)
	if err != nil {
		f.Err = err
		return f
	}
	p, err := loadProgram(ctx, name, sources, "", DefaultMainSteps, DefaultTransformTimeout*12, testHelpers())
	if err != nil {
		f.Err = err
		return f
	}
	var names []string
	for n, v := range p.globals {
		if _, ok := v.(*starlark.Function); ok && strings.HasPrefix(n, "test_") {
			names = append(names, n)
		}
	}
	slices.Sort(names)
	for _, n := range names {
		fn := p.globals[n].(*starlark.Function)
		c := newCall(ctx, p, nil, nil, "")
		_, err := c.run(func() (starlark.Value, error) {
			return starlark.Call(&c.thread, fn, nil, nil)
		})
		c.end()
		tc := TestCase{Name: n, Printed: c.printed}
		if err != nil {
			var se *ScriptError
			if errors.As(err, &se) {
				se.Script = "" // the file is the test file; say it once
			}
			tc.Err = err
		}
		f.Tests = append(f.Tests, tc)
	}
	return f
}

// testHelpers are the predeclared names of *_test.star files.
func testHelpers() starlark.StringDict {
	return starlark.StringDict{
		"assert": newModule("assert", map[string]builtinFunc{
			"eq":       assertEq,
			"ne":       assertNe,
			"true":     assertTruth(true),
			"false":    assertTruth(false),
			"contains": assertContains,
			"fails":    assertFails,
		}),
		"run_transform": safeBuiltin(starlark.NewBuiltin("run_transform", runTransformBuiltin)),
		"run_main":      safeBuiltin(starlark.NewBuiltin("run_main", runMainBuiltin)),
	}
}

func assertEq(_ *starlark.Thread, b *starlark.Builtin, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
	var got, want starlark.Value
	msg := ""
	if err := starlark.UnpackArgs(b.Name(), args, kwargs, "got", &got, "want", &want, "msg?", &msg); err != nil {
		return nil, err
	}
	eq, err := starlark.Equal(got, want)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", b.Name(), err)
	}
	if !eq {
		return nil, fmt.Errorf("%s: got %s, want %s%s", b.Name(), got.String(), want.String(), suffix(msg))
	}
	return starlark.None, nil
}

func assertNe(_ *starlark.Thread, b *starlark.Builtin, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
	var x, y starlark.Value
	msg := ""
	if err := starlark.UnpackArgs(b.Name(), args, kwargs, "x", &x, "y", &y, "msg?", &msg); err != nil {
		return nil, err
	}
	eq, err := starlark.Equal(x, y)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", b.Name(), err)
	}
	if eq {
		return nil, fmt.Errorf("%s: both are %s%s", b.Name(), x.String(), suffix(msg))
	}
	return starlark.None, nil
}

func assertTruth(want bool) builtinFunc {
	return func(_ *starlark.Thread, b *starlark.Builtin, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
		var x starlark.Value
		msg := ""
		if err := starlark.UnpackArgs(b.Name(), args, kwargs, "x", &x, "msg?", &msg); err != nil {
			return nil, err
		}
		if bool(x.Truth()) != want {
			return nil, fmt.Errorf("%s: got %s%s", b.Name(), x.String(), suffix(msg))
		}
		return starlark.None, nil
	}
}

func assertContains(_ *starlark.Thread, b *starlark.Builtin, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
	var container, x starlark.Value
	msg := ""
	if err := starlark.UnpackArgs(b.Name(), args, kwargs, "container", &container, "x", &x, "msg?", &msg); err != nil {
		return nil, err
	}
	in, err := starlark.Binary(syntax.IN, x, container)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", b.Name(), err)
	}
	if !in.Truth() {
		return nil, fmt.Errorf("%s: %s not in %s%s", b.Name(), x.String(), container.String(), suffix(msg))
	}
	return starlark.None, nil
}

// assertFails calls fn and checks that it fails with an error matching
// pattern; it returns the error message.
func assertFails(thread *starlark.Thread, b *starlark.Builtin, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
	var fn starlark.Callable
	var pattern string
	if err := starlark.UnpackArgs(b.Name(), args, kwargs, "fn", &fn, "pattern", &pattern); err != nil {
		return nil, err
	}
	re, err := regexp.Compile(pattern)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", b.Name(), err)
	}
	_, err = starlark.Call(thread, fn, nil, nil)
	if err == nil {
		return nil, fmt.Errorf("%s: %s did not fail", b.Name(), fn.Name())
	}
	msg := err.Error()
	var ee *starlark.EvalError
	if errors.As(err, &ee) {
		msg = ee.Msg
	}
	if !re.MatchString(msg) {
		return nil, fmt.Errorf("%s: error %q does not match %q", b.Name(), msg, pattern)
	}
	return starlark.String(msg), nil
}

func suffix(msg string) string {
	if msg == "" {
		return ""
	}
	return " (" + msg + ")"
}

// fixtureHost builds a MemoryHost from run_* keyword arguments.
func fixtureHost(fn string, records, links, rows, state starlark.Value) (*MemoryHost, error) {
	h := &MemoryHost{Records: map[string][]map[string]any{}, Links: map[string]map[string]string{}, Rows: map[string][]map[string]any{}}
	recs, err := fixtureMap(fn, "records", records)
	if err != nil {
		return nil, err
	}
	for k, v := range recs {
		list, err := fixtureRows(fn, "records["+k+"]", v)
		if err != nil {
			return nil, err
		}
		h.Records[k] = list
	}
	lm, err := fixtureMap(fn, "links", links)
	if err != nil {
		return nil, err
	}
	for sync, v := range lm {
		m, ok := v.(map[string]any)
		if !ok {
			return nil, fmt.Errorf("%s: links[%q] must be a dict of source id to target id", fn, sync)
		}
		h.Links[sync] = map[string]string{}
		for sid, tid := range m {
			h.Links[sync][sid] = fmt.Sprint(tid)
		}
	}
	rm, err := fixtureMap(fn, "rows", rows)
	if err != nil {
		return nil, err
	}
	for sql, v := range rm {
		list, err := fixtureRows(fn, "rows", v)
		if err != nil {
			return nil, err
		}
		h.Rows[sql] = list
	}
	if state != nil && state != starlark.None {
		st, cerr := fromStarlark(state, 0)
		if cerr != nil {
			return nil, fmt.Errorf("%s: %w", fn, cerr.at("state"))
		}
		h.State = st
	}
	return h, nil
}

func fixtureMap(fn, name string, v starlark.Value) (map[string]any, error) {
	if v == nil || v == starlark.None {
		return nil, nil
	}
	m, err := mapFromValue(v, name)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", fn, err)
	}
	return m, nil
}

func fixtureRows(fn, name string, v any) ([]map[string]any, error) {
	list, ok := v.([]any)
	if !ok {
		return nil, fmt.Errorf("%s: %s must be a list of dicts", fn, name)
	}
	out := make([]map[string]any, len(list))
	for i, r := range list {
		m, ok := r.(map[string]any)
		if !ok {
			return nil, fmt.Errorf("%s: %s[%d] must be a dict", fn, name, i)
		}
		out[i] = m
	}
	return out, nil
}

func writesValue(ws []Write) (starlark.Value, error) {
	out := make([]starlark.Value, len(ws))
	for i, w := range ws {
		rec := map[string]any{"op": string(w.Op), "connection": w.Connection, "object": w.Object, "id": w.ID, "source_id": w.SourceID, "record": w.Record}
		v, err := ToStarlark(rec)
		if err != nil {
			return nil, err
		}
		out[i] = v
	}
	return starlark.NewList(out), nil
}

func runTransformBuiltin(thread *starlark.Thread, b *starlark.Builtin, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
	var fn *starlark.Function
	var source starlark.Value
	var target, targetID, records, links, rows starlark.Value = starlark.None, starlark.None, starlark.None, starlark.None, starlark.None
	if err := starlark.UnpackArgs(b.Name(), args, kwargs, "transform", &fn, "source", &source,
		"target?", &target, "target_id?", &targetID, "records?", &records, "links?", &links, "rows?", &rows); err != nil {
		return nil, err
	}
	host, err := fixtureHost(b.Name(), records, links, rows, nil)
	if err != nil {
		return nil, err
	}
	src, err := mapFromValue(source, "source")
	if err != nil {
		return nil, fmt.Errorf("%s: %w", b.Name(), err)
	}
	tgt := map[string]any{}
	if target != starlark.None {
		if tgt, err = mapFromValue(target, "target"); err != nil {
			return nil, fmt.Errorf("%s: %w", b.Name(), err)
		}
	}
	tid := ""
	if targetID != starlark.None {
		if tid, err = idString(b.Name(), targetID); err != nil {
			return nil, err
		}
	}
	// A call of its own holds the fake pq's state; the transform runs on
	// the test's thread, under the test's limits.
	p := &program{script: fn.Position().Filename(), entryName: EntryTransform, maxSteps: DefaultMainSteps}
	if err := p.setEntry(fn); err != nil {
		return nil, fmt.Errorf("%s: %w", b.Name(), err)
	}
	c := newCall(context.Background(), p, host, newLookupCache(), "")
	defer c.end()
	prevPrint := thread.Print
	thread.Print = func(_ *starlark.Thread, msg string) { c.emit(msg) }
	defer func() { thread.Print = prevPrint }()
	tdict, err := dictFromMap(tgt, "target_record", nil)
	if err != nil {
		return nil, err
	}
	var tv starlark.Value = starlark.None
	if tid != "" {
		tv = starlark.String(tid)
	}
	callArgs := starlark.Tuple{newSourceRecord(src), tdict, &c.pq}
	var callKwargs []starlark.Tuple
	switch p.passTargetID {
	case 1:
		callArgs = append(callArgs, tv)
	case 2:
		callKwargs = []starlark.Tuple{{starlark.String("target_id"), tv}}
	}
	v, err := starlark.Call(thread, fn, callArgs, callKwargs)
	if err != nil {
		return nil, err
	}
	var out TransformOutput
	if err := c.decide(v, tgt, &out); err != nil {
		return nil, err
	}
	payload, err := ToStarlark(anyMap(out.Payload))
	if err != nil {
		return nil, err
	}
	writes, err := writesValue(host.Writes)
	if err != nil {
		return nil, err
	}
	return starlarkstruct.FromStringDict(starlark.String("transform_result"), starlark.StringDict{
		"payload":     payload,
		"skip_reason": noneIfEmpty(out.SkipReason),
		"target_id":   noneIfEmpty(out.TargetID),
		"insert":      starlark.Bool(out.Insert),
		"printed":     stringList(c.printed),
		"writes":      writes,
	}), nil
}

func runMainBuiltin(thread *starlark.Thread, b *starlark.Builtin, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
	var fn *starlark.Function
	var records, links, rows, state starlark.Value = starlark.None, starlark.None, starlark.None, starlark.None
	if err := starlark.UnpackArgs(b.Name(), args, kwargs, "main", &fn,
		"records?", &records, "links?", &links, "rows?", &rows, "state?", &state); err != nil {
		return nil, err
	}
	host, err := fixtureHost(b.Name(), records, links, rows, state)
	if err != nil {
		return nil, err
	}
	p := &program{script: fn.Position().Filename(), entryName: EntryMain, maxSteps: DefaultMainSteps}
	if err := p.setEntry(fn); err != nil {
		return nil, fmt.Errorf("%s: %w", b.Name(), err)
	}
	c := newCall(context.Background(), p, host, newLookupCache(), "")
	defer c.end()
	prevPrint := thread.Print
	thread.Print = func(_ *starlark.Thread, msg string) { c.emit(msg) }
	defer func() { thread.Print = prevPrint }()
	var callArgs starlark.Tuple
	if p.passPQ {
		c.pq.standalone = true
		callArgs = starlark.Tuple{&c.pq}
	}
	if _, err := starlark.Call(thread, fn, callArgs, nil); err != nil {
		return nil, err
	}
	writes, err := writesValue(host.Writes)
	if err != nil {
		return nil, err
	}
	recs := map[string]any{}
	for k, v := range host.Records {
		list := make([]any, len(v))
		for i, r := range v {
			list[i] = r
		}
		recs[k] = list
	}
	recsV, err := ToStarlark(recs)
	if err != nil {
		return nil, err
	}
	stateV, err := ToStarlark(host.State)
	if err != nil {
		return nil, err
	}
	return starlarkstruct.FromStringDict(starlark.String("main_result"), starlark.StringDict{
		"writes":  writes,
		"records": recsV,
		"state":   stateV,
		"printed": stringList(c.printed),
	}), nil
}

// anyMap keeps a nil payload nil (None) through ToStarlark.
func anyMap(m map[string]any) any {
	if m == nil {
		return nil
	}
	return m
}

func noneIfEmpty(s string) starlark.Value {
	if s == "" {
		return starlark.None
	}
	return starlark.String(s)
}

func stringList(ss []string) starlark.Value {
	out := make([]starlark.Value, len(ss))
	for i, s := range ss {
		out[i] = starlark.String(s)
	}
	return starlark.NewList(out)
}
