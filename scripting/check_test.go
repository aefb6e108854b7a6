package scripting

import (
	"context"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// checkProject writes a project folder for the Check tests: good
// libraries, broken ones, a cycle of loads and a file that is not .star.
func checkProject(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	files := map[string]string{
		"lib/phone.star":     "load(\"lib/countries.star\", \"PREFIX\")\n\ndef normalize(phone):\n    return \"+\" + PREFIX[\"BE\"] + strings.digits(phone)\n",
		"lib/countries.star": "PREFIX = {\"BE\": \"32\"}\n",
		"lib/broken.star":    "def f(:\n",
		"lib/undefined.star": "def f(x):\n    return y\n",
		"lib/entry.star":     "def transform(source_record, target_record, pq):\n    return target_record\n",
		"lib/a.star":         "load(\"lib/b.star\", \"B\")\nA = 1\n",
		"lib/b.star":         "load(\"lib/a.star\", \"A\")\nB = 1\n",
		"secret.txt":         "x",
	}
	for name, src := range files {
		path := filepath.Join(dir, filepath.FromSlash(name))
		require.NoError(t, os.MkdirAll(filepath.Dir(path), 0o755))
		require.NoError(t, os.WriteFile(path, []byte(src), 0o644))
	}
	return dir
}

const goodTransform = "def transform(source_record, target_record, pq, target_id=None):\n    return target_record\n"

// checkCase is one script for Check. want is Check's error, "" when the
// script passes. compile is what Compile says when it differs from want
// (Check can be more precise); unsafe marks a script whose top-level code
// must not run in the test process, so Compile is not asked about it.
type checkCase struct {
	name    string
	file    string // the script's name; "contacts.star" when empty
	src     string
	entry   string
	noDir   bool // no project folder
	want    string
	compile string
	unsafe  bool
}

func checkCases() []checkCase {
	return []checkCase{
		{name: "good transform", src: goodTransform},
		{
			name: "good transform loading a library and a module",
			src:  "load(\"lib/phone.star\", \"normalize\")\nload(\"re\", \"sub\")\n\ndef transform(source_record, target_record, pq, target_id=None):\n    target_record[\"phone\"] = normalize(sub(\" \", \"\", source_record[\"phone\"]))\n    return target_record\n",
		},
		{name: "good main", entry: EntryMain, src: "def main(pq):\n    print(json.encode(pq.get_state()))\n"},
		{name: "main without pq", entry: EntryMain, src: "def main():\n    pass\n"},
		{
			name:   "top-level memory bomb is not run",
			src:    "x = \"x\" * (1 << 30)\n" + goodTransform,
			unsafe: true,
		},
		{
			name:   "top-level infinite loop is not run",
			src:    "while True:\n    pass\n" + goodTransform,
			unsafe: true,
		},
		{
			name: "syntax error",
			src:  "def transform(source_record, target_record, pq, target_id=None):\n    return {\"a\": 1\n",
			want: "contacts.star:3:1: got outdent, want '}'",
		},
		{
			name: "undefined name",
			src:  "def transform(source_record, target_record, pq, target_id=None):\n    return final_payload\n",
			want: "contacts.star:2:12: undefined: final_payload",
		},
		{
			name: "test helper outside a test file",
			src:  "assert.eq(1, 1)\n" + goodTransform,
			want: "contacts.star:1:1: undefined: assert",
		},
		{
			name: "load of a module that is not allowed",
			src:  "load(\"os\", \"getenv\")\n" + goodTransform,
			want: "contacts.star:1:6: load(\"os\") is not allowed: load Ferry's modules (json, math, re, strings, time) or .star files of the project folder",
		},
		{
			name: "load nested in an if",
			src:  "if True:\n    load(\"json\", \"encode\")\n" + goodTransform,
			want: "contacts.star:2:5: load statement within a conditional",
		},
		{
			name:    "load of a name a module does not have",
			src:     "load(\"json\", \"nope\")\n" + goodTransform,
			want:    "contacts.star:1:15: load: name nope not found in module json",
			compile: "contacts.star:1:1: while loading: load: name nope not found in module json",
		},
		{
			name: "load of a library with a syntax error",
			src:  "load(\"lib/broken.star\", \"f\")\n" + goodTransform,
			want: "contacts.star: lib/broken.star:1:8: got ':', want ')'",
		},
		{
			name: "load of a library with an undefined name",
			src:  "load(\"lib/undefined.star\", \"f\")\n" + goodTransform,
			want: "contacts.star: lib/undefined.star:2:12: undefined: y",
		},
		{
			name:    "load of a name a library does not define",
			src:     "load(\"lib/phone.star\", \"format\")\n" + goodTransform,
			want:    "contacts.star:1:25: load: name format not found in module lib/phone.star",
			compile: "contacts.star:1:1: while loading: load: name format not found in module lib/phone.star",
		},
		{
			name:    "load of a name a library only loads",
			src:     "load(\"lib/phone.star\", \"PREFIX\")\n" + goodTransform,
			want:    "contacts.star:1:25: load: name PREFIX not found in module lib/phone.star",
			compile: "contacts.star:1:1: while loading: load: name PREFIX not found in module lib/phone.star",
		},
		{
			name:    "cycle of loads",
			src:     "load(\"lib/a.star\", \"A\")\n" + goodTransform,
			want:    "contacts.star: lib/b.star:1:6: cannot load \"lib/a.star\": cycle in load graph: lib/a.star loads lib/b.star loads lib/a.star",
			compile: "contacts.star:1:1: while loading: cannot load lib/a.star: cannot load lib/b.star: cannot load lib/a.star: cycle in load graph: lib/a.star loads itself",
		},
		{
			name: "load escaping the project folder",
			src:  "load(\"../../etc/x.star\", \"f\")\n" + goodTransform,
			want: "contacts.star:1:6: load(\"../../etc/x.star\") is not allowed: the path leaves the project folder",
		},
		{
			name: "load escaping the project folder from the middle",
			src:  "load(\"lib/../../x.star\", \"f\")\n" + goodTransform,
			want: "contacts.star:1:6: load(\"lib/../../x.star\") is not allowed: the path leaves the project folder",
		},
		{
			name: "load of an absolute path",
			src:  "load(\"/etc/x.star\", \"f\")\n" + goodTransform,
			want: "contacts.star:1:6: load(\"/etc/x.star\") is not allowed: use a path relative to the project folder",
		},
		{
			name: "load of a file that is not .star",
			src:  "load(\"secret.txt\", \"f\")\n" + goodTransform,
			want: "contacts.star:1:6: load(\"secret.txt\") is not allowed: load Ferry's modules (json, math, re, strings, time) or .star files of the project folder",
		},
		{
			name: "load of a missing library",
			src:  "load(\"lib/missing.star\", \"f\")\n" + goodTransform,
			want: "contacts.star:1:6: cannot load \"lib/missing.star\": no such file in the project folder",
		},
		{
			name:  "load without a project folder",
			src:   "load(\"lib/phone.star\", \"normalize\")\n" + goodTransform,
			noDir: true,
			want:  "contacts.star:1:6: cannot load \"lib/phone.star\": this script has no project folder to load .star files from",
		},
		{
			name: "no transform",
			src:  "def transfrom(source_record, target_record, pq, target_id=None):\n    return None\n",
			want: "contacts.star: no transform function: define def transform(source_record, target_record, pq, target_id=None)",
		},
		{
			name: "transform only loaded from a library stays local",
			src:  "load(\"lib/entry.star\", \"transform\")\n",
			want: "contacts.star: no transform function: define def transform(source_record, target_record, pq, target_id=None)",
		},
		{
			name: "no main",
			src:  goodTransform, entry: EntryMain,
			want: "contacts.star: no main function: define def main(pq)",
		},
		{
			name: "transform with too few parameters",
			src:  "def transform(record):\n    return record\n",
			want: "contacts.star:1:1: transform takes the wrong parameters: define def transform(source_record, target_record, pq, target_id=None)",
		},
		{
			name: "transform with keyword-only parameters too few",
			src:  "X = 1\n\ndef transform(source_record, *, pq):\n    return None\n",
			want: "contacts.star:3:1: transform takes the wrong parameters: define def transform(source_record, target_record, pq, target_id=None)",
		},
		{
			name: "main with two parameters",
			src:  "def main(pq, state):\n    pass\n", entry: EntryMain,
			want: "contacts.star:1:1: main takes the wrong parameters: define def main(pq)",
		},
		{name: "transform with *args", src: "def transform(*args):\n    return args[1]\n"},
		{name: "transform with **kwargs", src: "def transform(s, t, pq, **kw):\n    return t\n"},
		{
			name: "the last of two top-level defs wins",
			src:  "def transform(record):\n    return record\n\n" + goodTransform,
		},
		{
			name: "a bad def reassigned later is left to Compile",
			src:  goodTransform + "_good = transform\n\ndef transform(record):\n    return record\n\ntransform = _good\n",
		},
		{
			name: "transform made by a function is left to Compile",
			src:  "def _make():\n    def t(source_record, target_record, pq):\n        return target_record\n    return t\n\ntransform = _make()\n",
		},
		{
			name: "transform defined under an if is left to Compile",
			src:  "if True:\n    def transform(source_record, target_record, pq):\n        return target_record\n",
		},
		{
			name: "test file with test helpers and no entry",
			file: "contacts_test.star",
			src:  "load(\"lib/entry.star\", \"transform\")\n\ndef test_passthrough():\n    assert.eq(run_transform(transform, {}, target={\"a\": 1}).payload, {\"a\": 1})\n",
		},
	}
}

func TestCheck(t *testing.T) {
	t.Parallel()
	dir := checkProject(t)
	for _, tt := range checkCases() {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			file, opts := tt.file, Options{Entry: tt.entry, LoadDir: dir}
			if file == "" {
				file = "contacts.star"
			}
			if tt.noDir {
				opts.LoadDir = ""
			}
			err := Check(file, []byte(tt.src), opts)
			if tt.want == "" {
				require.NoError(t, err)
				return
			}
			var se *ScriptError
			require.ErrorAs(t, err, &se)
			require.Equal(t, KindCompile, se.Kind)
			require.Equal(t, tt.want, se.Error())
		})
	}
}

// Check must refuse nothing Compile accepts and accept nothing Compile
// refuses statically; this runs both on every case whose top-level code is
// safe to run here.
func TestCheckAgreesWithCompile(t *testing.T) {
	t.Parallel()
	dir := checkProject(t)
	for _, tt := range checkCases() {
		if tt.unsafe || strings.HasSuffix(tt.file, "_test.star") {
			continue // test files are not compiled: RunTests loads them
		}
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			opts := Options{Entry: tt.entry, LoadDir: dir, Isolation: IsolationNone}
			if tt.noDir {
				opts.LoadDir = ""
			}
			s, err := Compile(context.Background(), "contacts.star", []byte(tt.src), opts)
			want := tt.want
			if tt.compile != "" {
				want = tt.compile
			}
			if want == "" {
				require.NoError(t, err)
				require.NoError(t, s.Close())
				return
			}
			require.EqualError(t, err, want)
		})
	}
}

// Check runs no top-level code: a script that would allocate a gigabyte or
// loop forever when loaded is checked at once, and costs next to nothing.
// Not parallel, so the allocation count is this test's own.
func TestCheckRunsNoCode(t *testing.T) {
	tests := []struct {
		name, src string
	}{
		// starlark-go refuses a repeat of 1 << 30 bytes or more when it
		// runs, so only the second of these would allocate a gigabyte.
		{"string of 2^30 bytes", "x = \"x\" * (1 << 30)\n"},
		{"string just under a gigabyte", "x = \"x\" * ((1 << 30) - 1)\n"},
		{"list of a gigabyte", "x = [0] * (1 << 27)\n"},
		{"infinite while loop", "while True:\n    pass\n"},
		{"loop of 2^62 steps", "for i in range(1 << 62):\n    pass\n"},
		{"infinite recursion", "def f(n):\n    return f(n + 1)\n\nf(0)\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			src := []byte(tt.src + goodTransform)
			var before, after runtime.MemStats
			runtime.ReadMemStats(&before)
			start := time.Now()
			done := make(chan error, 1)
			go func() { done <- Check("bomb.star", src, Options{Isolation: IsolationNone}) }()
			select {
			case err := <-done:
				require.NoError(t, err)
			case <-time.After(10 * time.Second):
				t.Fatal("Check did not return: it ran the script")
			}
			elapsed := time.Since(start)
			runtime.ReadMemStats(&after)
			require.Less(t, elapsed, time.Second, "Check took %v", elapsed)
			allocated := after.TotalAlloc - before.TotalAlloc
			require.Less(t, allocated, uint64(16<<20), "Check allocated %d bytes", allocated)
		})
	}
}

// Every script the templates ship passes Check: a sync's transform with its
// folder as the project folder, as the engine loads it, and a test file as
// RunTests loads it.
func TestCheckTemplates(t *testing.T) {
	t.Parallel()
	root := filepath.Join("..", "templates")
	var checked int
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err == nil && d.IsDir() && d.Name() == "shipped" {
			// Shipped templates hold {{parameters}}: templates' own tests
			// render them, then check what they wrote.
			return filepath.SkipDir
		}
		if err != nil || d.IsDir() || !strings.HasSuffix(path, ".star") {
			return err
		}
		src, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		// The templates hold transforms and their tests; a template of a
		// standalone script would need Entry: EntryMain here.
		require.NoError(t, Check(filepath.Base(path), src, Options{Entry: EntryTransform, LoadDir: filepath.Dir(path)}), path)
		checked++
		return nil
	})
	require.NoError(t, err)
	require.NotZero(t, checked, "no .star file under %s", root)
}

func TestCheckUnknownEntry(t *testing.T) {
	t.Parallel()
	err := Check("contacts.star", []byte(goodTransform), Options{Entry: "handler"})
	require.EqualError(t, err, `check contacts.star: unknown entry "handler" (want "transform", "main" or "library")`)
}

// A library (a file other scripts load) is checked without an entry.
func TestCheckLibrary(t *testing.T) {
	t.Parallel()
	require.NoError(t, Check("helpers.star", []byte("def full_name(r):\n    return r[\"first\"] + \" \" + r[\"last\"]\n"), Options{Entry: EntryLibrary}))
	err := Check("helpers.star", []byte("def f(:\n"), Options{Entry: EntryLibrary})
	require.ErrorContains(t, err, "helpers.star:1:")
}
