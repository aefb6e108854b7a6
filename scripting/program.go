package scripting

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"strings"
	"time"

	"go.starlark.net/starlark"
	"go.starlark.net/syntax"
)

// fileOptions are the Starlark dialect Ferry accepts: Python-like (while
// loops, top-level if/for, sets, recursion, reassigned globals); the step
// limit and the deadline bound what they could cost.
func fileOptions() *syntax.FileOptions {
	return &syntax.FileOptions{Set: true, While: true, TopLevelControl: true, GlobalReassign: true, Recursion: true}
}

// collectSources parses a script and every project file it loads, directly
// or not, checking each load() on the way. It returns the sources by name
// (the script under its own name, libraries under their project-relative
// path), which is all a worker process needs: workers never touch files.
func collectSources(name string, src []byte, loadDir string) (map[string][]byte, error) {
	sources := map[string][]byte{name: src}
	var root *os.Root
	if loadDir != "" {
		r, err := os.OpenRoot(loadDir)
		if err != nil {
			return nil, fmt.Errorf("open project folder: %w", err)
		}
		defer r.Close()
		root = r
	}
	var visit func(file string, src []byte) error
	visit = func(file string, src []byte) error {
		f, err := fileOptions().Parse(file, src, 0)
		if err != nil {
			return compileError(name, err)
		}
		for _, stmt := range f.Stmts {
			load, ok := stmt.(*syntax.LoadStmt)
			if !ok {
				continue
			}
			module, _ := load.Module.Value.(string)
			pos := load.Module.TokenPos
			if isShippedModule(module) {
				continue
			}
			lib, err := checkLoadPath(module)
			if err != nil {
				return loadRefused(name, pos, err.Error())
			}
			if _, seen := sources[lib]; seen {
				continue
			}
			if root == nil {
				return loadRefused(name, pos, fmt.Sprintf("cannot load %q: this script has no project folder to load .star files from", module))
			}
			libSrc, err := root.ReadFile(lib)
			if err != nil {
				if errors.Is(err, fs.ErrNotExist) {
					return loadRefused(name, pos, fmt.Sprintf("cannot load %q: no such file in the project folder", module))
				}
				return loadRefused(name, pos, fmt.Sprintf("cannot load %q: %v", module, err))
			}
			sources[lib] = libSrc
			if err := visit(lib, libSrc); err != nil {
				return err
			}
		}
		return nil
	}
	if err := visit(name, src); err != nil {
		return nil, err
	}
	return sources, nil
}

// checkLoadPath accepts a project-relative .star path and returns it clean.
func checkLoadPath(module string) (string, error) {
	if !strings.HasSuffix(module, ".star") {
		return "", fmt.Errorf("load(%q) is not allowed: load Ferry's modules (%s) or .star files of the project folder", module, strings.Join(moduleNames, ", "))
	}
	if strings.Contains(module, `\`) || path.IsAbs(module) || strings.HasPrefix(module, "@") {
		return "", fmt.Errorf("load(%q) is not allowed: use a path relative to the project folder", module)
	}
	clean := path.Clean(module)
	if clean == ".." || strings.HasPrefix(clean, "../") {
		return "", fmt.Errorf("load(%q) is not allowed: the path leaves the project folder", module)
	}
	return clean, nil
}

func loadRefused(script string, pos syntax.Position, msg string) *ScriptError {
	return &ScriptError{Kind: KindCompile, Script: script, File: pos.Filename(),
		Line: int(pos.Line), Col: int(pos.Col), Message: msg}
}

// program is a script compiled and initialised: its globals are frozen and
// its entry function found. It is safe for concurrent calls: each call has
// its own thread.
type program struct {
	script       string
	globals      starlark.StringDict // the script's frozen globals
	entryName    string
	entry        *starlark.Function
	passTargetID int  // 0: no, 1: as 4th positional argument, 2: as keyword
	passPQ       bool // main takes pq
	keys         keyCache
	maxSteps     uint64
	timeout      time.Duration
}

// loadProgram compiles the script and the libraries it loads from sources,
// runs their top-level code once under the step limit and the deadline,
// freezes the globals and checks the entry function.
//
// extra adds predeclared names (the test helpers of *_test.star files);
// entry "" asks for no entry function.
func loadProgram(ctx context.Context, script string, sources map[string][]byte, entry string, maxSteps uint64, timeout time.Duration, extra starlark.StringDict) (*program, error) {
	predeclared := stdlib()
	for k, v := range extra {
		predeclared[k] = v
	}
	type loaded struct {
		globals starlark.StringDict
		err     error
	}
	modules := map[string]*loaded{}
	p := &program{script: script, entryName: entry, maxSteps: maxSteps, timeout: timeout}
	c := newCall(ctx, p, nil, nil, "")
	defer c.end()

	// exec runs a file once; the thread's Load calls it back for the
	// project files the script loads.
	exec := func(file string) (starlark.StringDict, error) {
		if m, ok := modules[file]; ok {
			if m == nil {
				return nil, fmt.Errorf("cycle in load graph: %s loads itself", file)
			}
			return m.globals, m.err
		}
		modules[file] = nil // in progress
		src, ok := sources[file]
		if !ok {
			return nil, fmt.Errorf("no such file %q", file)
		}
		_, prog, err := starlark.SourceProgramOptions(fileOptions(), file, src, predeclared.Has)
		if err != nil {
			err = compileError(script, err)
			modules[file] = &loaded{err: err}
			return nil, err
		}
		globals, err := prog.Init(&c.thread, predeclared)
		if err == nil {
			globals.Freeze()
		}
		modules[file] = &loaded{globals: globals, err: err}
		return globals, err
	}
	c.thread.Load = func(_ *starlark.Thread, module string) (starlark.StringDict, error) {
		if isShippedModule(module) {
			return moduleGlobals(predeclared, module), nil
		}
		lib, err := checkLoadPath(module)
		if err != nil {
			return nil, err
		}
		return exec(lib)
	}

	_, err := c.run(func() (starlark.Value, error) {
		_, err := exec(script)
		return starlark.None, err
	})
	if err != nil {
		var se *ScriptError
		if errors.As(err, &se) {
			if se.Kind == KindRuntime {
				se.Kind = KindCompile
				se.Message = "while loading: " + se.Message
			}
			return nil, se
		}
		return nil, compileError(script, err)
	}
	p.globals = modules[script].globals
	if entry == "" {
		return p, nil
	}
	return p, p.findEntry(p.globals)
}

func (p *program) findEntry(globals starlark.StringDict) error {
	v, ok := globals[p.entryName]
	if !ok {
		return missingEntry(p.script, p.entryName)
	}
	fn, ok := v.(*starlark.Function)
	if !ok {
		return &ScriptError{Kind: KindCompile, Script: p.script, File: p.script,
			Message: fmt.Sprintf("%s is a %s, want a function: define %s", p.entryName, v.Type(), entrySignature(p.entryName))}
	}
	return p.setEntry(fn)
}

// setEntry checks the entry function's parameters and how to pass
// target_id to a transform.
func (p *program) setEntry(fn *starlark.Function) error {
	passTargetID, passPQ, ok := entryCall(p.entryName, fn.NumParams(), fn.HasVarargs(), fn.HasKwargs())
	if !ok {
		return badEntryParams(p.script, p.entryName, fn.Position())
	}
	p.passTargetID, p.passPQ = passTargetID, passPQ
	p.entry = fn
	return nil
}

// entryCall says how Ferry calls an entry function with these parameters,
// or !ok when the function cannot take what Ferry passes. numParams counts
// *args and **kwargs too, as starlark.Function.NumParams does. Compile
// (through setEntry) and Check both decide here, so they cannot disagree.
func entryCall(entry string, numParams int, varargs, kwargs bool) (passTargetID int, passPQ bool, ok bool) {
	named := numParams
	if varargs {
		named--
	}
	if kwargs {
		named--
	}
	switch entry {
	case EntryTransform:
		if named < 3 && !varargs {
			return 0, false, false
		}
		switch {
		case named >= 4 || varargs:
			passTargetID = 1
		case kwargs:
			passTargetID = 2
		}
	case EntryMain:
		if named > 1 {
			return 0, false, false
		}
		passPQ = named == 1 || varargs
	}
	return passTargetID, passPQ, true
}

// badEntryParams is the error for an entry function defined at pos whose
// parameters do not fit.
func badEntryParams(script, entry string, pos syntax.Position) *ScriptError {
	return &ScriptError{Kind: KindCompile, Script: script, File: pos.Filename(), Line: int(pos.Line), Col: int(pos.Col),
		Message: fmt.Sprintf("%s takes the wrong parameters: define %s", entry, entrySignature(entry))}
}

// missingEntry is the error for a script that defines no entry function.
func missingEntry(script, entry string) *ScriptError {
	return &ScriptError{Kind: KindCompile, Script: script, File: script,
		Message: fmt.Sprintf("no %s function: define %s", entry, entrySignature(entry))}
}

func entrySignature(entry string) string {
	if entry == EntryMain {
		return "def main(pq)"
	}
	return "def transform(source_record, target_record, pq, target_id=None)"
}
