package scripting

import (
	"fmt"
	"maps"
	"slices"
	"strings"

	"go.starlark.net/resolve"
	"go.starlark.net/starlark"
	"go.starlark.net/syntax"
)

// Check reports what is wrong with a script without running any of it:
// syntax, undefined names, load() of modules or files that are not
// allowed or do not exist (following the project's own .star files
// with the same rules), and a missing or mis-shaped entry function
// when it can tell statically (a top-level `def <entry>(...)` with the
// right parameters). Errors name file, line and column like Compile's.
//
// Check only parses and resolves, so a script's top-level code cannot
// allocate, loop or read the clock in the caller's process: use it where a
// project is loaded, and leave running the script to Compile under the
// isolation and limits of its calls. It also refuses a name that a load()
// asks of a file or module which does not define it, and a cycle of
// loads. What only running can tell (an error in top-level code, an entry
// bound by an assignment or under an if) is left to Compile.
//
// A *_test.star file is checked the way RunTests runs it: with the test
// helpers (assert, run_transform, run_main) predeclared and no entry
// function. opts.Isolation, Pool, MemoryLimit, MaxSteps and Timeout do not
// matter here: nothing runs.
func Check(name string, src []byte, opts Options) error {
	opts = opts.withDefaults()
	if opts.Entry != EntryTransform && opts.Entry != EntryMain && opts.Entry != EntryLibrary {
		return fmt.Errorf("check %s: unknown entry %q (want %q, %q or %q)", name, opts.Entry, EntryTransform, EntryMain, EntryLibrary)
	}
	// collectSources parses every file the script loads, directly or not,
	// with the load() rules Compile applies, and reads nothing else.
	sources, err := collectSources(name, src, opts.LoadDir)
	if err != nil {
		return err
	}
	predeclared := stdlib()
	entry := opts.Entry
	if entry == EntryLibrary {
		entry = ""
	}
	if isTestFile(name) {
		maps.Copy(predeclared, testHelpers())
		entry = ""
	}
	c := &checker{script: name, sources: sources, predeclared: predeclared, resolved: map[string]*syntax.File{}}
	f, err := c.file(name)
	if err != nil {
		return err
	}
	if entry == "" {
		return nil
	}
	return checkEntry(name, f, entry)
}

// isTestFile says whether name is a test file, by RunTests' rule.
func isTestFile(name string) bool { return strings.HasSuffix(name, "_test.star") }

// checker resolves a script and the project files it loads, once each.
type checker struct {
	script      string
	sources     map[string][]byte // from collectSources: the script and every file it loads
	predeclared starlark.StringDict
	// resolved holds the files resolved so far by path; a file whose loads
	// are still being followed is present with a nil value, which is how
	// a cycle of loads shows.
	resolved map[string]*syntax.File
	loading  []string // the files whose loads are being followed, outermost first
}

// file parses and resolves one file the way loadProgram does (same
// dialect, same predeclared names), then follows its loads.
func (c *checker) file(file string) (*syntax.File, error) {
	src, ok := c.sources[file]
	if !ok {
		// collectSources read every file a load() names; a miss is a bug here.
		return nil, fmt.Errorf("check %s: %s was not read", c.script, file)
	}
	f, err := fileOptions().Parse(file, src, 0)
	if err != nil {
		return nil, compileError(c.script, err)
	}
	// resolve.File is what starlark.FileProgram runs before compiling:
	// it finds undefined names and misplaced statements, and runs nothing.
	if err := resolve.File(f, c.predeclared.Has, starlark.Universe.Has); err != nil {
		return nil, compileError(c.script, err)
	}
	c.resolved[file] = nil
	c.loading = append(c.loading, file)
	for _, stmt := range f.Stmts {
		// The resolver refuses a load() nested in another statement, so
		// the top level holds them all.
		if load, ok := stmt.(*syntax.LoadStmt); ok {
			if err := c.load(load); err != nil {
				return nil, err
			}
		}
	}
	c.loading = c.loading[:len(c.loading)-1]
	c.resolved[file] = f
	return f, nil
}

// load checks one load(): the module or file is allowed and exists, is not
// part of a cycle, and defines every name asked of it.
func (c *checker) load(load *syntax.LoadStmt) error {
	module, _ := load.Module.Value.(string)
	pos := load.Module.TokenPos
	var defines func(string) bool
	if isShippedModule(module) {
		defines = moduleGlobals(c.predeclared, module).Has
	} else {
		// collectSources has refused a bad path already; checking again
		// costs nothing and keeps this function safe on its own.
		lib, err := checkLoadPath(module)
		if err != nil {
			return loadRefused(c.script, pos, err.Error())
		}
		f, seen := c.resolved[lib]
		if seen && f == nil {
			chain := append(slices.Clone(c.loading[slices.Index(c.loading, lib):]), lib)
			return loadRefused(c.script, pos, fmt.Sprintf("cannot load %q: cycle in load graph: %s", module, strings.Join(chain, " loads ")))
		}
		if !seen {
			if f, err = c.file(lib); err != nil {
				return err
			}
		}
		defines = globalsOf(f)
	}
	for _, from := range load.From {
		if !defines(from.Name) {
			return loadRefused(c.script, from.NamePos, fmt.Sprintf("load: name %s not found in module %s", from.Name, module))
		}
	}
	return nil
}

// globalsOf reports whether a resolved file has a global of that name:
// what load() can take from it. Names a file load()s itself stay local to
// it, as at run time. A global bound only in a branch that does not run is
// accepted here and fails at Compile.
func globalsOf(f *syntax.File) func(string) bool {
	names := map[string]bool{}
	for _, b := range f.Module.(*resolve.Module).Globals {
		names[b.First.Name] = true
	}
	return func(name string) bool { return names[name] }
}

// checkEntry checks the entry function of a resolved script as far as the
// syntax tree tells: a script with no global of that name has none (a name
// it only load()s stays local to it, so Compile would not find it either);
// one bound only by top-level defs gets the parameters of the last def
// checked as Compile checks them; any other binding is left to Compile.
func checkEntry(script string, f *syntax.File, entry string) error {
	if !globalsOf(f)(entry) {
		return missingEntry(script, entry)
	}
	def := entryDef(f.Stmts, entry)
	if def == nil {
		return nil
	}
	fn := def.Function.(*resolve.Function)
	if _, _, ok := entryCall(entry, numParams(fn), fn.HasVarargs, fn.HasKwargs); !ok {
		return badEntryParams(script, entry, fn.Pos)
	}
	return nil
}

// numParams counts a function's parameters as the compiler does for
// starlark.Function.NumParams: *args and **kwargs count, a bare * that only
// starts keyword-only parameters does not.
func numParams(fn *resolve.Function) int {
	n := len(fn.Params)
	if fn.NumKwonlyParams > 0 && !fn.HasVarargs {
		n--
	}
	return n
}

// entryDef returns the def that binds name when only unconditional
// top-level defs bind it (with reassignable globals the last one wins),
// and nil when anything else may bind it too: an assignment, a for loop,
// a def under an if or a loop. Which of those wins only running can tell.
// Functions cannot bind globals (Starlark has no global statement), so the
// top-level statements and the blocks of top-level if/for/while are all
// there is to look at.
func entryDef(stmts []syntax.Stmt, name string) *syntax.DefStmt {
	var last *syntax.DefStmt
	for _, stmt := range stmts {
		if def, ok := stmt.(*syntax.DefStmt); ok && def.Name.Name == name {
			last = def
			continue
		}
		if binds(stmt, name) {
			return nil
		}
	}
	return last
}

// binds reports whether stmt, or a statement in its blocks, may bind name.
func binds(stmt syntax.Stmt, name string) bool {
	switch s := stmt.(type) {
	case *syntax.AssignStmt:
		return assigns(s.LHS, name)
	case *syntax.DefStmt:
		return s.Name.Name == name
	case *syntax.ForStmt:
		return assigns(s.Vars, name) || anyBinds(s.Body, name)
	case *syntax.WhileStmt:
		return anyBinds(s.Body, name)
	case *syntax.IfStmt:
		return anyBinds(s.True, name) || anyBinds(s.False, name)
	}
	return false
}

func anyBinds(stmts []syntax.Stmt, name string) bool {
	for _, stmt := range stmts {
		if binds(stmt, name) {
			return true
		}
	}
	return false
}

// assigns reports whether the target of an assignment or a for loop binds
// name. x[i] = ... and x.f = ... bind nothing.
func assigns(lhs syntax.Expr, name string) bool {
	switch x := lhs.(type) {
	case *syntax.Ident:
		return x.Name == name
	case *syntax.ParenExpr:
		return assigns(x.X, name)
	case *syntax.TupleExpr:
		for _, e := range x.List {
			if assigns(e, name) {
				return true
			}
		}
	case *syntax.ListExpr:
		for _, e := range x.List {
			if assigns(e, name) {
				return true
			}
		}
	}
	return false
}
