package main

import (
	"context"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/alecthomas/kong"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// parse parses args as ferry would, without running anything.
func parse(t *testing.T, args ...string) (*CLI, *kong.Context, error) {
	t.Helper()
	var root CLI
	c := &cli{stdout: io.Discard, stderr: io.Discard, env: os.LookupEnv}
	p, err := newParser(context.Background(), &root, c, io.Discard, io.Discard)
	require.NoError(t, err)
	kctx, err := p.Parse(args)
	return &root, kctx, err
}

// commandPaths lists every command of the grammar ("run", "link", "link
// seed" …), hidden ones left out, so that a new command is tested as soon
// as it is declared.
func commandPaths(t *testing.T) [][]string {
	t.Helper()
	var root CLI
	p, err := newParser(context.Background(), &root, &cli{}, io.Discard, io.Discard)
	require.NoError(t, err)
	var out [][]string
	var walk func(n *kong.Node, path []string)
	walk = func(n *kong.Node, path []string) {
		for _, child := range n.Children {
			if child.Type != kong.CommandNode || child.Hidden {
				continue
			}
			p := append(append([]string{}, path...), child.Name)
			out = append(out, p)
			walk(child, p)
		}
	}
	walk(p.Model.Node, nil)
	require.GreaterOrEqual(t, len(out), 15)
	return out
}

// brokenProject is a project folder whose ferry.yaml does not parse and a
// warehouse URL nothing answers: a command that loaded either would fail.
func brokenProject(t *testing.T) []string {
	dir := t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(dir, "ferry.yaml"), []byte("connections: [not: a map\n"), 0o644))
	return []string{"--project", dir, "--db", "postgres://nobody@127.0.0.1:1/none?connect_timeout=1"}
}

// Help goes to stdout with exit 0, for ferry and every command, whichever
// way it is asked for, and loads no project and touches no database.
func TestHelpGoesToStdoutAndTouchesNothing(t *testing.T) {
	global := brokenProject(t)
	type tc struct {
		name string
		args []string
		want string
	}
	cases := []tc{
		{"--help", []string{"--help"}, "Usage: ferry <command>"},
		{"-h", []string{"-h"}, "Usage: ferry <command>"},
		{"help", []string{"help"}, "Usage: ferry <command>"},
		{"global flags then --help", append(append([]string{}, global...), "--help"), "Usage: ferry <command>"},
	}
	for _, path := range commandPaths(t) {
		usage := "Usage: ferry " + strings.Join(path, " ")
		name := strings.Join(path, " ")
		cases = append(cases,
			tc{name + " --help", append(append(append([]string{}, global...), path...), "--help"), usage},
			tc{name + " -h", append(append([]string{}, path...), "-h"), usage},
			tc{"help " + name, append(append(append([]string{}, global...), "help"), path...), usage},
		)
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			code, out, errOut := ferry(t, c.args...)
			assert.Equal(t, exitOK, code, errOut)
			assert.Contains(t, out, c.want)
			assert.Empty(t, errOut, "nothing on stderr")
		})
	}
}

// Every command has a one-sentence summary, and its help an example.
func TestEveryCommandHasASummaryAndAnExample(t *testing.T) {
	for _, path := range commandPaths(t) {
		name := strings.Join(path, " ")
		t.Run(name, func(t *testing.T) {
			code, out, _ := ferry(t, append(path, "--help")...)
			require.Equal(t, exitOK, code)
			var root CLI
			p, err := newParser(context.Background(), &root, &cli{}, io.Discard, io.Discard)
			require.NoError(t, err)
			node := findCommand(p.Model.Node, path)
			require.NotNil(t, node)
			assert.Regexp(t, `^[A-Z][^\n]*\.$`, node.Help, "a one-sentence summary")
			assert.NotContains(t, node.Help, ". ", "one sentence")
			assert.Contains(t, out, "Example")
			assert.Contains(t, out, "    ferry "+path[0], "an example of the command itself")
		})
	}
	code, out, _ := ferry(t, "--help")
	require.Equal(t, exitOK, code)
	for _, path := range commandPaths(t) {
		assert.Contains(t, out, strings.Join(path, " "), "ferry --help lists every command")
	}
	assert.NotContains(t, out, "__script-worker")
}

func findCommand(n *kong.Node, path []string) *kong.Node {
	for _, name := range path {
		var next *kong.Node
		for _, child := range n.Children {
			if child.Name == name {
				next = child
			}
		}
		if next == nil {
			return nil
		}
		n = next
	}
	return n
}

func TestVersion(t *testing.T) {
	for _, args := range [][]string{{"--version"}, {"version"}, {"--project", "/nowhere", "version"}, {"run", "--version"}} {
		code, out, errOut := ferry(t, args...)
		assert.Equal(t, exitOK, code, args)
		assert.Equal(t, "ferry "+version()+"\n", out, args)
		assert.Empty(t, errOut)
	}
}

// Flags go anywhere: before or after the command and its arguments; a flag
// after a sync name is a flag, not a sync.
func TestFlagsInAnyPosition(t *testing.T) {
	for _, c := range []struct {
		args    []string
		syncs   []string
		full    bool
		project string
	}{
		{[]string{"run", "contacts", "--full"}, []string{"contacts"}, true, "."},
		{[]string{"run", "--full", "contacts"}, []string{"contacts"}, true, "."},
		{[]string{"run", "companies", "contacts", "--full"}, []string{"companies", "contacts"}, true, "."},
		{[]string{"--project", "p", "run", "contacts"}, []string{"contacts"}, false, "p"},
		{[]string{"run", "contacts", "--project", "p", "--full"}, []string{"contacts"}, true, "p"},
		{[]string{"run", "--project=p", "contacts", "-v"}, []string{"contacts"}, false, "p"},
		{[]string{"run"}, nil, false, "."},
		{[]string{"run", "--", "--full"}, []string{"--full"}, false, "."},
	} {
		root, kctx, err := parse(t, c.args...)
		require.NoError(t, err, c.args)
		assert.Equal(t, "run", kctx.Command()[:3], c.args)
		assert.Equal(t, c.syncs, root.Run.Syncs, c.args)
		assert.Equal(t, c.full, root.Run.Full, c.args)
		assert.Equal(t, c.project, root.Project, c.args)
	}

	root, _, err := parse(t, "test", "--id", "7", "companies", "--write", "--id", "8,9")
	require.NoError(t, err)
	assert.Equal(t, "companies", root.Test.Sync)
	assert.Equal(t, []string{"7", "8,9"}, root.Test.ID, "ids are taken whole")
	assert.True(t, root.Test.Write)

	root, _, err = parse(t, "link", "seed", "--dry-run", "companies", "--query", "SELECT 1")
	require.NoError(t, err)
	assert.Equal(t, "companies", root.Link.Seed.Sync)
	assert.True(t, root.Link.Seed.DryRun)

	root, _, err = parse(t, "setup", "--schemas", "crm,hubspot")
	require.NoError(t, err)
	assert.Equal(t, []string{"crm", "hubspot"}, root.Setup.Schemas)
	assert.Equal(t, "ferry_scope", root.Setup.ScopeRole)
}

func TestEnvironmentDefaults(t *testing.T) {
	t.Setenv("FERRY_PROJECT", "/from/env")
	t.Setenv("FERRY_DEMO_DB", "my_demo")
	root, _, err := parse(t, "demo")
	require.NoError(t, err)
	assert.Equal(t, "/from/env", root.Project)
	assert.Equal(t, "my_demo", root.Demo.DBPrefix)

	root, _, err = parse(t, "--project", "flag", "demo", "--db-prefix", "other")
	require.NoError(t, err)
	assert.Equal(t, "flag", root.Project, "a flag beats the environment")
	assert.Equal(t, "other", root.Demo.DBPrefix)
}

// A command line ferry cannot take says why on stderr, and exits 2 without
// loading the project.
func TestUsageErrors(t *testing.T) {
	global := brokenProject(t)
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"nope"}, `unknown command "nope"`},
		{[]string{"rnu"}, `unknown command "rnu", did you mean "run"?`},
		{[]string{"help", "nope"}, `unknown command "nope"`},
		{[]string{"script", "nope"}, `unknown command "script nope"`},
		{[]string{"script"}, `ferry script needs a command: "run", "test"`},
		{[]string{"link"}, `ferry link needs a command: "init", "seed"`},
		{[]string{"--bogus", "run"}, "unknown flag --bogus"},
		{[]string{"run", "--bogus"}, "unknown flag --bogus"},
		{[]string{"run", "contacts", "--ful"}, `unknown flag --ful, did you mean "--full"?`},
		{[]string{"run", "a", "--full", "b"}, `unexpected argument "b": give every <sync> together`},
		{[]string{"run", "a", "--group", "g"}, "run: name syncs or a --group, not both"},
		{[]string{"plan", "--samples", "many"}, "--samples"},
		{[]string{"test", "companies"}, "missing flags: --id=ID"},
		{[]string{"test", "--id", "1"}, `expected "<sync>"`},
		{[]string{"explain", "companies"}, `expected "<id>"`},
		{[]string{"explain", "companies", "1", "2"}, "unexpected argument"},
		{[]string{"link", "seed", "companies"}, "missing flags: --query=SQL"},
		{[]string{"setup"}, "missing flags: --schemas"},
		{[]string{"script", "run"}, `expected "<file>"`},
	} {
		t.Run(strings.Join(c.args, " "), func(t *testing.T) {
			code, out, errOut := ferry(t, append(append([]string{}, global...), c.args...)...)
			assert.Equal(t, exitUsage, code)
			assert.Empty(t, out)
			assert.Contains(t, errOut, "ferry: "+c.want)
			assert.Contains(t, errOut, "--help` for usage")
			assert.NotContains(t, errOut, "ferry.yaml", "the project is not loaded")
		})
	}

	// No command at all: the help, on stderr.
	code, out, errOut := ferry(t)
	assert.Equal(t, exitUsage, code)
	assert.Empty(t, out)
	assert.Contains(t, errOut, "Usage: ferry <command>")
}

// The demo replaces its --dir: never a folder that holds something else.
func TestDemoRefusesAFolderItDidNotWrite(t *testing.T) {
	dir := t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(dir, "notes.txt"), []byte("mine"), 0o644))
	code, out, errOut := ferry(t, "--db", "postgres://nobody@127.0.0.1:1/none?connect_timeout=1", "demo", "--dir", dir)
	assert.Equal(t, exitUsage, code)
	assert.Empty(t, out)
	assert.Contains(t, errOut, "the demo replaces this folder, which is not empty and holds no earlier demo")
	assert.FileExists(t, filepath.Join(dir, "notes.txt"))
}
