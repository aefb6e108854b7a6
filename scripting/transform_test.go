package scripting

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// The spec's "Write nested JSON to target API" example, in Starlark (the
// spec's final_payload typo fixed to target_record).
const nestedAddress = `
def transform(source_record, target_record, pq, target_id=None):

    # Add nested data
    target_record["address"] = {
        "street": source_record["address_street"],
        "city":   source_record["address_city"],
    }

    # For updates
    if target_id:
        target_record["id"] = target_id

    return target_record
`

// The spec's "Conditional updates" example.
const conditionalUpdate = `
def transform(source_record, target_record, pq, target_id=None):
    final_payload = target_record

    if target_id: # meaning an update (not an insert)
        if source_record["status"] == "deleted":
            return None # returning None makes sure the record is skipped
        else:
            final_payload["id"] = target_id
    return final_payload
`

func TestSpecExamples(t *testing.T) {
	t.Parallel()
	mapped := func() map[string]any {
		return map[string]any{"name": "John Doe", "email": "john@doe.com", "phone": "+1 555 6666"}
	}
	tests := []struct {
		name   string
		script string
		in     TransformInput
		want   TransformOutput
	}{
		{
			name:   "nested address on insert",
			script: nestedAddress,
			in: TransformInput{SourceID: "100", Target: mapped(),
				Source: map[string]any{"id": int64(100), "address_street": "1 Somestreet", "address_city": "NY"}},
			want: TransformOutput{Payload: map[string]any{
				"name": "John Doe", "email": "john@doe.com", "phone": "+1 555 6666",
				"address": map[string]any{"street": "1 Somestreet", "city": "NY"},
			}},
		},
		{
			name:   "nested address on update carries the id",
			script: nestedAddress,
			in: TransformInput{SourceID: "100", TargetID: "567", Target: mapped(),
				Source: map[string]any{"address_street": "1 Somestreet", "address_city": "NY"}},
			want: TransformOutput{Payload: map[string]any{
				"name": "John Doe", "email": "john@doe.com", "phone": "+1 555 6666", "id": "567",
				"address": map[string]any{"street": "1 Somestreet", "city": "NY"},
			}},
		},
		{
			name:   "conditional update skips a deleted record",
			script: conditionalUpdate,
			in:     TransformInput{SourceID: "200", TargetID: "890", Target: mapped(), Source: map[string]any{"status": "deleted"}},
			want:   TransformOutput{SkipReason: SkipReturnedNone},
		},
		{
			name:   "conditional update updates a live record",
			script: conditionalUpdate,
			in:     TransformInput{SourceID: "200", TargetID: "890", Target: mapped(), Source: map[string]any{"status": "active"}},
			want: TransformOutput{Payload: map[string]any{
				"name": "John Doe", "email": "john@doe.com", "phone": "+1 555 6666", "id": "890"}},
		},
		{
			name:   "conditional update inserts a deleted record that was never synced",
			script: conditionalUpdate,
			in:     TransformInput{SourceID: "300", Target: mapped(), Source: map[string]any{"status": "deleted"}},
			want:   TransformOutput{Payload: mapped()},
		},
	}
	for iso, opts := range isolations(t) {
		for _, tt := range tests {
			t.Run(iso+"/"+tt.name, func(t *testing.T) {
				s := compile(t, "contacts.star", tt.script, opts)
				out, err := s.Transform(context.Background(), tt.in)
				require.NoError(t, err)
				require.Equal(t, tt.want, out)
			})
		}
	}
}

// The spec's "Lookup in target before upsert", as Ferry users write it.
const lookupBeforeUpsert = `
def transform(source_record, target_record, pq, target_id=None):
    if not target_id:
        existing = pq.lookup("contacts", email=source_record["email"])
        if existing:
            pq.log("matched", source_record["email"], "to", existing["id"])
            pq.update_id(existing["id"])
    return target_record
`

func TestLookupBeforeUpsertTurnsInsertIntoUpdate(t *testing.T) {
	t.Parallel()
	for iso, opts := range isolations(t) {
		t.Run(iso, func(t *testing.T) {
			host := &MemoryHost{Records: map[string][]map[string]any{
				"contacts": {{"id": int64(7), "email": "ann@example.com", "name": "Ann (manual)"}},
			}}
			s := compile(t, "contacts.star", lookupBeforeUpsert, opts)
			ins := []TransformInput{
				{SourceID: "1", Source: map[string]any{"email": "ann@example.com"}, Target: map[string]any{"name": "Ann"}, Host: host},
				{SourceID: "2", Source: map[string]any{"email": "bob@example.com"}, Target: map[string]any{"name": "Bob"}, Host: host},
				{SourceID: "3", TargetID: "9", Source: map[string]any{"email": "cy@example.com"}, Target: map[string]any{"name": "Cy"}, Host: host},
			}
			results := s.TransformBatch(context.Background(), ins)
			want := []TransformOutput{
				{Payload: map[string]any{"name": "Ann"}, TargetID: "7", Printed: []string{"matched ann@example.com to 7"}},
				{Payload: map[string]any{"name": "Bob"}}, // not found: the engine inserts
				{Payload: map[string]any{"name": "Cy"}},  // already linked: no lookup
			}
			for i, r := range results {
				require.NoError(t, r.Err)
				require.Equal(t, want[i], r.Output, "record %d", i)
			}
			require.Equal(t, []string{"matched ann@example.com to 7"}, host.Logs)
			require.Equal(t, Stats{Finds: 2}, s.Stats())
		})
	}
}

func TestSkip(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name, body string
		want       TransformOutput
	}{
		{"return None", `return None`, TransformOutput{SkipReason: "transform returned None"}},
		{"fall off the end", `pass`, TransformOutput{SkipReason: "transform returned None"}},
		{"pq.skip with a reason", `return pq.skip("deleted upstream")`, TransformOutput{SkipReason: "deleted upstream"}},
		{"pq.skip wins over a payload", `pq.skip("test account")
    return target_record`, TransformOutput{SkipReason: "test account"}},
		{"pq.insert", `pq.insert()
    return target_record`, TransformOutput{Payload: map[string]any{}, Insert: true}},
	}
	for iso, opts := range isolations(t) {
		for _, tt := range tests {
			t.Run(iso+"/"+tt.name, func(t *testing.T) {
				s := compile(t, "x.star", "def transform(source_record, target_record, pq, target_id=None):\n    "+tt.body+"\n", opts)
				out, err := s.Transform(context.Background(), TransformInput{SourceID: "1", TargetID: "5"})
				require.NoError(t, err)
				require.Equal(t, tt.want, out)
			})
		}
	}
}

func TestRuntimeErrors(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name, script string
		kind         ErrorKind
		want         string
		noBacktrace  bool // the failure is in what transform returned
	}{
		{
			name: "missing key",
			script: `def transform(source_record, target_record, pq, target_id=None):
    target_record["email"] = source_record["email"]
    return target_record
`,
			kind: KindRuntime,
			want: `contacts.star:2: key "email" not in source_record (source id 42)`,
		},
		{
			name: "source record is read-only",
			script: `def transform(source_record, target_record, pq, target_id=None):
    source_record["name"] = "x"
    return target_record
`,
			kind: KindRuntime,
			want: `contacts.star:2: source_record is read-only (setting "name"): write to target_record, or copy it first with dict(source_record) (source id 42)`,
		},
		{
			name: "fail()",
			script: `def transform(source_record, target_record, pq, target_id=None):
    fail("no country for", source_record["name"])
`,
			kind: KindRuntime,
			want: `contacts.star:2: fail: no country for Ann (source id 42)`,
		},
		{
			name: "payload that cannot leave",
			script: `def transform(source_record, target_record, pq, target_id=None):
    target_record["f"] = len
    return target_record
`,
			kind:        KindRuntime,
			want:        `contacts.star:1: returned payload: payload["f"]: a builtin_function_or_method cannot leave the script (want None, bool, int, float, decimal, string, bytes, time, list or dict) (source id 42)`,
			noBacktrace: true,
		},
		{
			name: "wrong return type",
			script: `def transform(source_record, target_record, pq, target_id=None):
    return [target_record]
`,
			kind:        KindRuntime,
			want:        `contacts.star:1: transform returned a list: return a dict (the payload) or None (skip the record) (source id 42)`,
			noBacktrace: true,
		},
		{
			name: "endless loop hits the step limit",
			script: `def transform(source_record, target_record, pq, target_id=None):
    n = 0
    while True:
        n += 1
`,
			kind: KindSteps,
			want: `contacts.star:4: stopped after 1000000 steps, the limit (an endless loop?) (source id 42)`,
		},
		{
			name: "no lookup without an engine",
			script: `def transform(source_record, target_record, pq, target_id=None):
    return pq.lookup("contacts", email="a")
`,
			kind: KindHost,
			want: `contacts.star:2: pq.lookup: not available here: this call has no engine behind it (source id 42)`,
		},
	}
	for iso, opts := range isolations(t) {
		for _, tt := range tests {
			t.Run(iso+"/"+tt.name, func(t *testing.T) {
				s := compile(t, "contacts.star", tt.script, opts)
				_, err := s.Transform(context.Background(), TransformInput{SourceID: "42", Source: map[string]any{"name": "Ann"}})
				var se *ScriptError
				require.ErrorAs(t, err, &se)
				require.Equal(t, tt.kind, se.Kind)
				require.Equal(t, tt.want, se.Error())
				require.Equal(t, tt.noBacktrace, se.Backtrace == "")
			})
		}
	}
}

func TestStepLimitThenNextRecordWorks(t *testing.T) {
	t.Parallel()
	src := `def transform(source_record, target_record, pq, target_id=None):
    if source_record["loop"]:
        for i in range(1 << 60):
            pass
    return {"ok": True}
`
	for iso, opts := range isolations(t) {
		t.Run(iso, func(t *testing.T) {
			opts.MaxSteps = 50_000
			s := compile(t, "loop.star", src, opts)
			results := s.TransformBatch(context.Background(), []TransformInput{
				{SourceID: "1", Source: map[string]any{"loop": true}},
				{SourceID: "2", Source: map[string]any{"loop": false}},
			})
			var se *ScriptError
			require.ErrorAs(t, results[0].Err, &se)
			require.Equal(t, KindSteps, se.Kind)
			require.Equal(t, "loop.star:3: stopped after 50000 steps, the limit (an endless loop?) (source id 1)", se.Error())
			require.NoError(t, results[1].Err)
			require.Equal(t, map[string]any{"ok": true}, results[1].Output.Payload)
		})
	}
}

func TestDeadlineAndCancel(t *testing.T) {
	t.Parallel()
	src := `def transform(source_record, target_record, pq, target_id=None):
    n = 0
    while True:
        n += 1
`
	for iso, opts := range isolations(t) {
		t.Run(iso+"/deadline", func(t *testing.T) {
			opts.MaxSteps = 1 << 62
			opts.Timeout = 100 * time.Millisecond
			s := compile(t, "slow.star", src, opts)
			start := time.Now()
			_, err := s.Transform(context.Background(), TransformInput{SourceID: "7"})
			var se *ScriptError
			require.ErrorAs(t, err, &se)
			require.Equal(t, KindTimeout, se.Kind)
			require.Regexp(t, `^slow\.star:\d+: stopped after running longer than 100ms \(source id 7\)$`, se.Error())
			require.Less(t, time.Since(start), 2*time.Second)
		})
		t.Run(iso+"/cancel", func(t *testing.T) {
			opts.MaxSteps = 1 << 62
			opts.Timeout = time.Minute
			s := compile(t, "slow.star", src, opts)
			ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
			defer cancel()
			_, err := s.Transform(ctx, TransformInput{SourceID: "7"})
			var se *ScriptError
			require.ErrorAs(t, err, &se)
			require.Contains(t, []ErrorKind{KindCancelled, KindTimeout}, se.Kind, se.Error())
		})
	}
}

func TestBatchRuntimeErrorFailsOnlyThatRecord(t *testing.T) {
	t.Parallel()
	src := `def transform(source_record, target_record, pq, target_id=None):
    target_record["email"] = source_record["email"].lower()
    return target_record
`
	for iso, opts := range isolations(t) {
		t.Run(iso, func(t *testing.T) {
			s := compile(t, "contacts.star", src, opts)
			var ins []TransformInput
			for i := range 10 {
				rec := map[string]any{"email": "A@X.COM"}
				if i == 6 {
					rec["email"] = nil
				}
				ins = append(ins, TransformInput{SourceID: string(rune('a' + i)), Source: rec})
			}
			results := s.TransformBatch(context.Background(), ins)
			for i, r := range results {
				if i == 6 {
					require.EqualError(t, r.Err, `contacts.star:2: NoneType has no .lower field or method (source id g)`)
					continue
				}
				require.NoError(t, r.Err)
				require.Equal(t, map[string]any{"email": "a@x.com"}, r.Output.Payload)
			}
		})
	}
}

func TestCompileErrors(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	require.NoError(t, os.MkdirAll(filepath.Join(dir, "lib"), 0o755))
	require.NoError(t, os.WriteFile(filepath.Join(dir, "lib", "broken.star"), []byte("def f(:\n"), 0o644))
	require.NoError(t, os.WriteFile(filepath.Join(dir, "secret.txt"), []byte("x"), 0o644))
	tests := []struct {
		name, src string
		opts      Options
		want      string
	}{
		{
			name: "syntax error",
			src:  "def transform(source_record, target_record, pq, target_id=None):\n    return {\"a\": 1\n",
			want: "contacts.star:3:1: got outdent, want '}'",
		},
		{
			name: "spec typo: missing comma",
			src:  "def transform(source_record, target_record, pq, target_id=None):\n    target_record[\"address\"] = {\n        \"street\": source_record[\"address_street\"]\n        \"city\": 1,\n    }\n",
			want: "contacts.star:4:15: got string literal, want '}'",
		},
		{
			name: "undefined name",
			src:  "def transform(source_record, target_record, pq, target_id=None):\n    return final_payload\n",
			want: "contacts.star:2:12: undefined: final_payload",
		},
		{
			name: "no transform",
			src:  "def transfrom(source_record, target_record, pq, target_id=None):\n    return None\n",
			want: "contacts.star: no transform function: define def transform(source_record, target_record, pq, target_id=None)",
		},
		{
			name: "transform with too few parameters",
			src:  "def transform(record):\n    return record\n",
			want: "contacts.star:1:1: transform takes the wrong parameters: define def transform(source_record, target_record, pq, target_id=None)",
		},
		{
			name: "error in top-level code",
			src:  "X = {}[\"a\"]\ndef transform(s, t, pq):\n    return t\n",
			want: "contacts.star:1:7: while loading: key \"a\" not in dict",
		},
		{
			name: "load of a module that is not allowed",
			src:  "load(\"os\", \"getenv\")\ndef transform(s, t, pq):\n    return t\n",
			want: "contacts.star:1:6: load(\"os\") is not allowed: load Ferry's modules (json, math, re, strings, time) or .star files of the project folder",
		},
		{
			name: "load escaping the project folder",
			src:  "load(\"../../etc/x.star\", \"f\")\ndef transform(s, t, pq):\n    return t\n",
			opts: Options{LoadDir: dir},
			want: "contacts.star:1:6: load(\"../../etc/x.star\") is not allowed: the path leaves the project folder",
		},
		{
			name: "load of an absolute path",
			src:  "load(\"/etc/x.star\", \"f\")\ndef transform(s, t, pq):\n    return t\n",
			opts: Options{LoadDir: dir},
			want: "contacts.star:1:6: load(\"/etc/x.star\") is not allowed: use a path relative to the project folder",
		},
		{
			name: "load of a file that is not .star",
			src:  "load(\"secret.txt\", \"f\")\ndef transform(s, t, pq):\n    return t\n",
			opts: Options{LoadDir: dir},
			want: "contacts.star:1:6: load(\"secret.txt\") is not allowed: load Ferry's modules (json, math, re, strings, time) or .star files of the project folder",
		},
		{
			name: "load without a project folder",
			src:  "load(\"lib/x.star\", \"f\")\ndef transform(s, t, pq):\n    return t\n",
			want: "contacts.star:1:6: cannot load \"lib/x.star\": this script has no project folder to load .star files from",
		},
		{
			name: "load of a missing library",
			src:  "load(\"lib/missing.star\", \"f\")\ndef transform(s, t, pq):\n    return t\n",
			opts: Options{LoadDir: dir},
			want: "contacts.star:1:6: cannot load \"lib/missing.star\": no such file in the project folder",
		},
		{
			name: "syntax error in a library",
			src:  "load(\"lib/broken.star\", \"f\")\ndef transform(s, t, pq):\n    return t\n",
			opts: Options{LoadDir: dir},
			want: "contacts.star: lib/broken.star:1:8: got ':', want ')'",
		},
	}
	for iso, base := range isolations(t) {
		for _, tt := range tests {
			t.Run(iso+"/"+tt.name, func(t *testing.T) {
				opts := tt.opts
				opts.Isolation, opts.Pool = base.Isolation, base.Pool
				_, err := Compile(context.Background(), "contacts.star", []byte(tt.src), opts)
				var se *ScriptError
				require.ErrorAs(t, err, &se)
				require.Equal(t, KindCompile, se.Kind)
				require.Equal(t, tt.want, se.Error())
			})
		}
	}
}

func TestLoadProjectLibrary(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	require.NoError(t, os.MkdirAll(filepath.Join(dir, "lib"), 0o755))
	require.NoError(t, os.WriteFile(filepath.Join(dir, "lib", "phone.star"), []byte(`
load("lib/countries.star", "PREFIX")

def normalize(phone, country):
    digits = strings.digits(phone)
    if digits.startswith("0"):
        digits = PREFIX[country] + digits[1:]
    return "+" + digits
`), 0o644))
	require.NoError(t, os.WriteFile(filepath.Join(dir, "lib", "countries.star"), []byte(`PREFIX = {"BE": "32", "NL": "31"}`), 0o644))
	src := `
load("lib/phone.star", "normalize")
load("re", "sub")

def transform(source_record, target_record, pq, target_id=None):
    target_record["phone"] = normalize(source_record["phone"], source_record["country"])
    target_record["name"] = sub(r"\s+", " ", source_record["name"])
    return target_record
`
	for iso, opts := range isolations(t) {
		t.Run(iso, func(t *testing.T) {
			opts.LoadDir = dir
			s := compile(t, "contacts.star", src, opts)
			out, err := s.Transform(context.Background(), TransformInput{SourceID: "1",
				Source: map[string]any{"phone": "0475 12.34.56", "country": "BE", "name": "Ann   Lee"}})
			require.NoError(t, err)
			require.Equal(t, map[string]any{"phone": "+32475123456", "name": "Ann Lee"}, out.Payload)
		})
	}
}

func TestGlobalsAreFrozen(t *testing.T) {
	t.Parallel()
	src := `
SEEN = []
def transform(source_record, target_record, pq, target_id=None):
    SEEN.append(1)
    return target_record
`
	for iso, opts := range isolations(t) {
		t.Run(iso, func(t *testing.T) {
			s := compile(t, "x.star", src, opts)
			_, err := s.Transform(context.Background(), TransformInput{SourceID: "1"})
			require.EqualError(t, err, "x.star:4: append: cannot append to frozen list (source id 1)")
		})
	}
}

func TestPrintCaptured(t *testing.T) {
	t.Parallel()
	src := `
def transform(source_record, target_record, pq, target_id=None):
    print("mapping", source_record["id"])
    pq.log("target id is", target_id)
    for i in range(2000):
        print(i)
    return target_record
`
	for iso, opts := range isolations(t) {
		t.Run(iso, func(t *testing.T) {
			host := &MemoryHost{}
			s := compile(t, "x.star", src, opts)
			out, err := s.Transform(context.Background(), TransformInput{SourceID: "1", Source: map[string]any{"id": int64(1)}, Host: host})
			require.NoError(t, err)
			require.Len(t, out.Printed, maxPrintedLines+1)
			require.Equal(t, []string{"mapping 1", "target id is None", "0"}, out.Printed[:3])
			require.Equal(t, "… (more output dropped)", out.Printed[maxPrintedLines])
			require.Equal(t, out.Printed, host.Logs)
		})
	}
}

func TestTransformSignatures(t *testing.T) {
	t.Parallel()
	tests := []struct{ name, def string }{
		{"three parameters", "def transform(source_record, target_record, pq):\n    target_record['tid'] = 'none'\n    return target_record"},
		{"keyword", "def transform(source_record, target_record, pq, **kw):\n    target_record['tid'] = kw['target_id']\n    return target_record"},
		{"positional", "def transform(s, t, pq, target_id=None):\n    t['tid'] = target_id\n    return t"},
	}
	want := map[string]string{"three parameters": "none", "keyword": "9", "positional": "9"}
	for iso, opts := range isolations(t) {
		for _, tt := range tests {
			t.Run(iso+"/"+tt.name, func(t *testing.T) {
				s := compile(t, "x.star", tt.def+"\n", opts)
				out, err := s.Transform(context.Background(), TransformInput{SourceID: "1", TargetID: "9"})
				require.NoError(t, err)
				require.Equal(t, want[tt.name], out.Payload["tid"])
			})
		}
	}
}

func TestMainScriptIsNotATransform(t *testing.T) {
	t.Parallel()
	s := compile(t, "job.star", "def main(pq):\n    pass\n", Options{Entry: EntryMain, Isolation: IsolationNone})
	_, err := s.Transform(context.Background(), TransformInput{})
	require.Error(t, err)
	require.True(t, strings.Contains(err.Error(), "no transform"))
}
