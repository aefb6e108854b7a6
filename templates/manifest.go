package templates

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"sort"
	"strings"

	"sigs.k8s.io/yaml"

	"github.com/ferry-sync/ferry/engine/project"
)

// ManifestFile is the file at the root of a template folder.
const ManifestFile = "template.yaml"

// ReadmeFile says what a template does, for people (ferry template show).
const ReadmeFile = "README.md"

// ProjectDir holds the files a template writes into a project, rendered;
// their paths under it are their paths in the project.
const ProjectDir = "project"

// Template is one template: its manifest and every file of its folder.
type Template struct {
	Manifest Manifest
	// Origin says where it came from: "shipped", "stored" (the server's
	// warehouse) or the folder it was read from.
	Origin string
	// Files are the template's files by slash path relative to its folder
	// (template.yaml, README.md, project/…, fixtures/…).
	Files map[string][]byte
}

// Manifest is template.yaml.
type Manifest struct {
	// Name names the template; a template folder is named after it.
	Name string `json:"name"`
	// Version goes up whenever the files it writes change: it is recorded in
	// every file it writes, so ferry template diff can tell what changed.
	Version int `json:"version"`
	// Title is one line for lists.
	Title string `json:"title"`
	// Description is a paragraph: what it syncs and when to choose it.
	Description string `json:"description"`
	// Pattern names the spec's pattern the template implements.
	Pattern    string  `json:"pattern,omitempty"`
	Parameters []Param `json:"parameters,omitempty"`
	// Next are the commands to run once it is instantiated, one a line,
	// with placeholders (shown as text).
	Next string `json:"next,omitempty"`
	// Test says how the template's own test runs it against the demo
	// warehouse and ERP (templates' Go test; see TestSpec).
	Test *TestSpec `json:"test,omitempty"`
}

// ParamType is the type of a parameter: it decides what values are
// accepted and how a value is written into each kind of file.
type ParamType string

// The parameter types.
const (
	TypeString     ParamType = "string"     // one line of text; SQL: a literal
	TypeInteger    ParamType = "integer"    // a whole number, within min/max
	TypeBoolean    ParamType = "boolean"    // true or false; SQL: TRUE/FALSE
	TypeEnum       ParamType = "enum"       // one of values; SQL: a literal
	TypeDuration   ParamType = "duration"   // "90s", "5m", "1h"
	TypeConnection ParamType = "connection" // a connection's name in ferry.yaml
	TypeName       ParamType = "name"       // a sync or group name (lower-case letters, digits, _); SQL: a quoted identifier
	TypeEnv        ParamType = "env"        // an environment variable's name (secrets stay there)
	TypeSchema     ParamType = "schema"     // a schema; SQL: a quoted identifier
	TypeColumn     ParamType = "column"     // a column; SQL: a quoted identifier
	TypeTable      ParamType = "table"      // schema.table; SQL: two quoted identifiers
)

// ParamTypes lists the types, for messages and documentation.
func ParamTypes() []ParamType {
	return []ParamType{TypeString, TypeInteger, TypeBoolean, TypeEnum, TypeDuration, TypeConnection, TypeName, TypeEnv, TypeSchema, TypeColumn, TypeTable}
}

// Param is one parameter of a template.
type Param struct {
	Name        string    `json:"name"`
	Type        ParamType `json:"type"`
	Description string    `json:"description"`
	// Default is used when the parameter is not set; without one the
	// parameter is required.
	Default any `json:"default,omitempty"`
	// Values are an enum's options.
	Values []string `json:"values,omitempty"`
	// Min and Max bound an integer.
	Min *int64 `json:"min,omitempty"`
	Max *int64 `json:"max,omitempty"`
}

// Required reports whether the parameter has no default.
func (p Param) Required() bool { return p.Default == nil }

// TestSpec is how the template's test runs it: the demo warehouse and ERP
// are loaded, then its fixtures (fixtures/warehouse.sql, fixtures/target.sql),
// the template is instantiated with its defaults into a project folder, the
// project is loaded and checked, its *_test.star tests run, and then Steps,
// in order.
type TestSpec struct {
	// With are shipped templates instantiated first, with their defaults
	// (a template that works on another's syncs).
	With []string `json:"with,omitempty"`
	// Env says which database each environment variable the project names
	// points at: "warehouse" or "target". Variables not listed point at the
	// target database.
	Env map[string]string `json:"env,omitempty"`
	// Mirror are schemas of the target database copied into the warehouse
	// (as <schema>_elt) before the project is checked: the target's own
	// ELT pipeline has run.
	Mirror []string   `json:"mirror,omitempty"`
	Steps  []TestStep `json:"steps"`
}

// TestStep is one step of a template's test: exactly one of Run, Group,
// Seed, Script, Mirror, SQL, SQLFile and Check.
type TestStep struct {
	// Run runs these syncs, parents first; Group runs a group.
	Run   []string `json:"run,omitempty"`
	Group string   `json:"group,omitempty"`
	Full  bool     `json:"full,omitempty"`
	// Want are counts a run must end with, by sync then counter (read,
	// inserted, updated, unchanged, skipped, failed, lookups, written_back).
	Want map[string]map[string]int64 `json:"want,omitempty"`
	// Seed seeds a sync's link table with a query file of the project.
	Seed *SeedStep `json:"seed,omitempty"`
	// Script runs a data-sync script of the project (def main(pq)).
	Script string `json:"script,omitempty"`
	// Mirror copies a schema of the target database into the warehouse as
	// <schema>_elt, as the target's own ELT pipeline would.
	Mirror string `json:"mirror,omitempty"`
	// SQL runs a statement, SQLFile a file of the project, on DB.
	SQL     string `json:"sql,omitempty"`
	SQLFile string `json:"sql_file,omitempty"`
	// Check runs a query on DB whose rows, one line each with columns
	// joined by "|", must be Expect.
	Check  string `json:"check,omitempty"`
	Expect string `json:"expect,omitempty"`
	// DB is "warehouse" (the default) or "target".
	DB string `json:"db,omitempty"`
}

// SeedStep names a sync and the query (a file of the project) that seeds
// its link table.
type SeedStep struct {
	Sync      string `json:"sync"`
	QueryFile string `json:"query_file"`
}

// Error is one problem of a template, naming its file and field.
type Error struct {
	Template string
	File     string
	Field    string
	Message  string
}

func (e *Error) Error() string {
	where := e.Template
	if e.File != "" {
		where += "/" + e.File
	}
	if e.Field != "" {
		where += ": " + e.Field
	}
	return fmt.Sprintf("template %s: %s", where, e.Message)
}

// Parse reads a template from its files (paths relative to its folder) and
// checks it: the manifest, its parameters and their defaults, and that
// every placeholder of its project files names a parameter. Every problem
// is reported at once (errors.Join of *Error).
func Parse(files map[string][]byte, origin string) (*Template, error) {
	raw, ok := files[ManifestFile]
	if !ok {
		return nil, &Error{Template: origin, File: ManifestFile, Message: "not found: a template folder holds " + ManifestFile + " and a " + ProjectDir + "/ folder"}
	}
	t := &Template{Origin: origin, Files: files}
	if err := decodeStrict(raw, &t.Manifest); err != nil {
		return nil, &Error{Template: origin, File: ManifestFile, Message: err.Error()}
	}
	if errs := t.check(); len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return t, nil
}

// decodeStrict decodes YAML into v, refusing unknown fields (a typo in a
// manifest is an error, not a silently ignored setting) and keeping
// numbers exact.
func decodeStrict(raw []byte, v any) error {
	js, err := yaml.YAMLToJSON(raw)
	if err != nil {
		return fmt.Errorf("not valid YAML: %w", err)
	}
	dec := json.NewDecoder(bytes.NewReader(js))
	dec.DisallowUnknownFields()
	dec.UseNumber()
	if err := dec.Decode(v); err != nil {
		return fmt.Errorf("%s", strings.TrimPrefix(err.Error(), "json: "))
	}
	return nil
}

func (t *Template) check() []error {
	m := &t.Manifest
	name := m.Name
	if name == "" {
		name = t.Origin
	}
	var errs []error
	bad := func(file, field, format string, args ...any) {
		errs = append(errs, &Error{Template: name, File: file, Field: field, Message: fmt.Sprintf(format, args...)})
	}
	if !project.ValidName(m.Name) {
		bad(ManifestFile, "name", "%q is not a template name: use lower-case letters, digits and _", m.Name)
	}
	if m.Version < 1 {
		bad(ManifestFile, "version", "must be 1 or more (raise it whenever the files it writes change)")
	}
	if strings.TrimSpace(m.Title) == "" {
		bad(ManifestFile, "title", "required: one line for lists")
	}
	if strings.TrimSpace(m.Description) == "" {
		bad(ManifestFile, "description", "required: what it syncs and when to choose it")
	}
	params := map[string]bool{}
	for i, p := range m.Parameters {
		field := fmt.Sprintf("parameters[%d]", i)
		if !project.ValidName(p.Name) {
			bad(ManifestFile, field+".name", "%q is not a parameter name: use lower-case letters, digits and _", p.Name)
		}
		if params[p.Name] {
			bad(ManifestFile, field+".name", "parameter %q is declared twice", p.Name)
		}
		params[p.Name] = true
		if !knownType(p.Type) {
			bad(ManifestFile, field+".type", "%q is not a type: use one of %s", p.Type, typeList())
			continue
		}
		if strings.TrimSpace(p.Description) == "" {
			bad(ManifestFile, field+".description", "required: say what the parameter is for")
		}
		if p.Type == TypeEnum && len(p.Values) == 0 {
			bad(ManifestFile, field+".values", "an enum lists its values")
		}
		if p.Type != TypeEnum && len(p.Values) > 0 {
			bad(ManifestFile, field+".values", "only an enum has values")
		}
		if p.Type != TypeInteger && (p.Min != nil || p.Max != nil) {
			bad(ManifestFile, field, "only an integer has min and max")
		}
		if p.Default != nil {
			if _, err := p.parse(defaultText(p.Default)); err != nil {
				bad(ManifestFile, field+".default", "%v", err)
			}
		}
	}
	projectFiles := 0
	used := map[string]bool{}
	for _, file := range sortedPaths(t.Files) {
		rel, ok := strings.CutPrefix(file, ProjectDir+"/")
		if !ok {
			continue
		}
		if err := checkProjectPath(rel); err != nil {
			bad(file, "", "%v", err)
			continue
		}
		if rel != project.ProjectFile {
			projectFiles++
		}
		refs, err := placeholders(t.Files[file])
		if err != nil {
			bad(file, "", "%v", err)
			continue
		}
		for _, r := range refs {
			p, ok := m.param(r.name)
			switch {
			case !ok:
				bad(file, "", "line %d: {{%s}} names no parameter (declared: %s)", r.line, r.text, strings.Join(m.paramNames(), ", "))
			case r.part != "" && r.part != partSQL && p.Type != TypeTable:
				bad(file, "", "line %d: {{%s}}: .%s is for table parameters only", r.line, r.text, r.part)
			default:
				used[r.name] = true
			}
		}
	}
	if projectFiles == 0 {
		bad("", "", "writes no file: put the files it writes under %s/ (syncs/*.yaml, .sql, .star)", ProjectDir)
	}
	for _, p := range m.Parameters {
		if params[p.Name] && !used[p.Name] && !nextUses(m.Next, p.Name) {
			bad(ManifestFile, "parameters", "parameter %q is used by no file", p.Name)
		}
	}
	if m.Test != nil {
		errs = append(errs, t.checkTest(name)...)
	}
	return errs
}

func (t *Template) checkTest(name string) []error {
	var errs []error
	bad := func(field, format string, args ...any) {
		errs = append(errs, &Error{Template: name, File: ManifestFile, Field: field, Message: fmt.Sprintf(format, args...)})
	}
	for k, v := range t.Manifest.Test.Env {
		if v != "warehouse" && v != "target" {
			bad("test.env."+k, "%q: use warehouse or target", v)
		}
	}
	if len(t.Manifest.Test.Steps) == 0 {
		bad("test.steps", "a test has steps: runs, and checks of what they wrote")
	}
	for i, s := range t.Manifest.Test.Steps {
		field := fmt.Sprintf("test.steps[%d]", i)
		actions := 0
		for _, set := range []bool{len(s.Run) > 0, s.Group != "", s.Seed != nil, s.Script != "", s.Mirror != "", s.SQL != "", s.SQLFile != "", s.Check != ""} {
			if set {
				actions++
			}
		}
		if actions != 1 {
			bad(field, "a step does exactly one of run, group, seed, script, mirror, sql, sql_file and check")
		}
		if s.DB != "" && s.DB != "warehouse" && s.DB != "target" {
			bad(field+".db", "%q: use warehouse or target", s.DB)
		}
		for _, f := range []string{s.Script, s.SQLFile} {
			if f != "" {
				if _, ok := t.Files[ProjectDir+"/"+f]; !ok {
					bad(field, "%s is not a file the template writes", f)
				}
			}
		}
		if s.Seed != nil {
			if _, ok := t.Files[ProjectDir+"/"+s.Seed.QueryFile]; !ok {
				bad(field+".seed.query_file", "%s is not a file the template writes", s.Seed.QueryFile)
			}
		}
	}
	return errs
}

// nextUses reports whether Next names the parameter.
func nextUses(next, name string) bool {
	refs, _ := placeholders([]byte(next))
	for _, r := range refs {
		if r.name == name {
			return true
		}
	}
	return false
}

func (m *Manifest) param(name string) (Param, bool) {
	for _, p := range m.Parameters {
		if p.Name == name {
			return p, true
		}
	}
	return Param{}, false
}

func (m *Manifest) paramNames() []string {
	names := make([]string, 0, len(m.Parameters))
	for _, p := range m.Parameters {
		names = append(names, p.Name)
	}
	if len(names) == 0 {
		return []string{"none"}
	}
	return names
}

func knownType(t ParamType) bool {
	for _, k := range ParamTypes() {
		if k == t {
			return true
		}
	}
	return false
}

func typeList() string {
	var names []string
	for _, k := range ParamTypes() {
		names = append(names, string(k))
	}
	return strings.Join(names, ", ")
}

// defaultText is a default as --set would give it.
func defaultText(v any) string {
	if s, ok := v.(string); ok {
		return s
	}
	return fmt.Sprint(v)
}

// checkProjectPath refuses paths a project folder (and the server's
// store) does not keep: absolute, escaping, hidden, or of another kind.
func checkProjectPath(p string) error {
	if path.Clean(p) != p || strings.HasPrefix(p, "/") || strings.HasPrefix(p, "../") || strings.HasPrefix(p, ".") || strings.Contains(p, "/.") {
		return fmt.Errorf("%q: a project file's path is relative, clean and not hidden", p)
	}
	if p == project.ProjectFile {
		return nil
	}
	switch path.Ext(p) {
	case ".yaml", ".yml", ".sql", ".star":
		if strings.Contains(p, "/") {
			return nil
		}
	}
	return fmt.Errorf("%q: a template writes %s and files in folders ending in .yaml, .yml, .sql or .star", p, project.ProjectFile)
}

// ReadFS reads every file of a template folder.
func ReadFS(fsys fs.FS) (map[string][]byte, error) {
	files := map[string][]byte{}
	err := fs.WalkDir(fsys, ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			return nil
		}
		b, err := fs.ReadFile(fsys, p)
		if err != nil {
			return err
		}
		files[p] = b
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("reading template files: %w", err)
	}
	return files, nil
}

// LoadDir reads a template from a folder holding template.yaml.
func LoadDir(dir string) (*Template, error) {
	files, err := ReadFS(os.DirFS(dir))
	if err != nil {
		return nil, fmt.Errorf("template folder %s: %w", dir, err)
	}
	t, err := Parse(files, dir)
	if err != nil {
		return nil, err
	}
	if base := filepath.Base(filepath.Clean(dir)); base != t.Manifest.Name {
		return nil, &Error{Template: dir, File: ManifestFile, Field: "name", Message: fmt.Sprintf("%q: a template folder is named after its template (%s)", t.Manifest.Name, base)}
	}
	return t, nil
}

// IsTemplateDir reports whether dir is a template folder.
func IsTemplateDir(dir string) bool {
	fi, err := os.Stat(filepath.Join(dir, ManifestFile))
	return err == nil && !fi.IsDir()
}

// Creates lists the project files the template writes, ferry.yaml aside.
func (t *Template) Creates() []string {
	var out []string
	for _, p := range sortedPaths(t.Files) {
		if rel, ok := strings.CutPrefix(p, ProjectDir+"/"); ok && rel != project.ProjectFile {
			out = append(out, rel)
		}
	}
	return out
}

// Readme is the template's README.md ("" when it has none).
func (t *Template) Readme() string { return string(t.Files[ReadmeFile]) }

func sortedPaths[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for p := range m {
		out = append(out, p)
	}
	sort.Strings(out)
	return out
}

// envPattern and identPattern are what env, schema and column parameters
// (and each half of a table) must look like.
var (
	envPattern   = regexp.MustCompile(`^[A-Z_][A-Z0-9_]{0,127}$`)
	identPattern = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_$]{0,62}$`)
)
