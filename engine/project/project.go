package project

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"sort"
	"strings"

	"sigs.k8s.io/yaml"

	"github.com/ferry-sync/ferry/internal/sqlident"
	"github.com/ferry-sync/ferry/scripting"
)

// ProjectFile is the file at the root of a project folder.
const ProjectFile = "ferry.yaml"

// Project is a folder a user keeps in git: ferry.yaml (warehouse,
// connections, groups) and one file per sync under syncs/ (YAML, with .sql
// files for long scope queries and .star files for transforms).
type Project struct {
	Dir         string
	Warehouse   Warehouse             `json:"warehouse"`
	Connections map[string]Connection `json:"connections"`
	Groups      map[string]Group      `json:"groups,omitempty"`
	SyncsDir    string                `json:"syncs_dir,omitempty"`
	// Scripts are data-sync scripts the server runs on a schedule, by
	// file name relative to the project folder.
	Scripts map[string]Script `json:"scripts,omitempty"`
	// Alerts say where run events go (webhooks, e-mail).
	Alerts *Alerts `json:"alerts,omitempty"`
	// Syncs in the order their files sort in.
	Syncs []*Sync `json:"-"`
}

// Warehouse says how to reach the warehouse database.
type Warehouse struct {
	// URLEnv names the environment variable holding the warehouse URL
	// (default DATABASE_URL). URLs carry passwords, so files never do.
	URLEnv string `json:"url_env,omitempty"`
	// ScopeRole is the role scope queries and pq.query run as (SET LOCAL
	// ROLE inside their read-only transaction): one that can only SELECT
	// what an analyst granted it (`ferry setup` makes one). Without it they
	// run with every right of the warehouse login.
	ScopeRole string `json:"scope_role,omitempty"`
}

// Connection is a named system Ferry writes to.
type Connection struct {
	Name     string          `json:"-"`
	Kind     string          `json:"kind"`
	Settings json.RawMessage `json:"settings,omitempty"`
}

// Group is a set of syncs run together, parents before children.
type Group struct {
	Syncs []string `json:"syncs"`
	// KeepOrder runs the syncs as listed instead of ordering them by their
	// relations.
	KeepOrder bool      `json:"keep_order,omitempty"`
	Schedule  *Schedule `json:"schedule,omitempty"`
	// Hooks run once around the whole group (the syncs' own hooks run
	// around each sync).
	Hooks *Hooks `json:"hooks,omitempty"`
}

// ConfigError is one problem in a project's files.
type ConfigError struct {
	File    string
	Field   string
	Message string
}

func (e *ConfigError) Error() string {
	if e.Field == "" {
		return fmt.Sprintf("%s: %s", e.File, e.Message)
	}
	return fmt.Sprintf("%s: %s: %s", e.File, e.Field, e.Message)
}

// Kinds checks a connection's settings for its kind without opening it
// (a connector.Registry does).
type Kinds interface {
	CheckSettings(kind string, settings json.RawMessage) error
}

// Load reads and checks a project folder. It reports every problem it finds
// at once (errors.Join of *ConfigError), each naming file and field.
// Connection settings are checked by kinds (nil: not checked). Checks that
// need the warehouse or the targets are the engine's (Engine.Check).
func Load(dir string, kinds Kinds) (*Project, error) {
	p := &Project{Dir: dir}
	path := filepath.Join(dir, ProjectFile)
	raw, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, &ConfigError{File: path, Message: "not found: a project folder holds " + ProjectFile + " and a syncs/ folder (point --project or FERRY_PROJECT at it)"}
	}
	if err != nil {
		return nil, fmt.Errorf("reading project file: %w", err)
	}
	if err := decodeStrict(raw, p); err != nil {
		return nil, &ConfigError{File: ProjectFile, Message: err.Error()}
	}
	var errs []error
	for name, c := range p.Connections {
		c.Name = name
		p.Connections[name] = c
		errs = append(errs, checkConnection(c, kinds)...)
	}
	if p.SyncsDir == "" {
		p.SyncsDir = "syncs"
	}
	files, err := filepath.Glob(filepath.Join(dir, p.SyncsDir, "*.yaml"))
	if err != nil {
		return nil, fmt.Errorf("listing sync files: %w", err)
	}
	more, _ := filepath.Glob(filepath.Join(dir, p.SyncsDir, "*.yml"))
	files = append(files, more...)
	sort.Strings(files)
	for _, f := range files {
		s, err := loadSyncFile(dir, f)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		p.Syncs = append(p.Syncs, s)
	}
	errs = append(errs, p.check()...)
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return p, nil
}

func loadSyncFile(dir, path string) (*Sync, error) {
	rel, _ := filepath.Rel(dir, path)
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, &ConfigError{File: rel, Message: err.Error()}
	}
	s := &Sync{}
	if err := decodeStrict(raw, s); err != nil {
		return nil, &ConfigError{File: rel, Message: err.Error()}
	}
	s.File = rel
	if s.Name == "" {
		s.Name = strings.TrimSuffix(strings.TrimSuffix(filepath.Base(path), ".yaml"), ".yml")
	}
	base := filepath.Dir(path)
	if s.Source.QueryFile != "" {
		q, err := os.ReadFile(filepath.Join(base, s.Source.QueryFile))
		if err != nil {
			return nil, &ConfigError{File: rel, Field: "source.query_file", Message: fmt.Sprintf("cannot read %s: %v", s.Source.QueryFile, err)}
		}
		s.Source.Query = string(q)
	}
	if s.Transform != "" {
		code, err := os.ReadFile(filepath.Join(base, s.Transform))
		if err != nil {
			return nil, &ConfigError{File: rel, Field: "transform", Message: fmt.Sprintf("cannot read %s: %v", s.Transform, err)}
		}
		s.TransformSource = code
		// A broken script is refused now, with its file and line, before
		// any record is touched, without running any of its code: that
		// happens in a worker process, under its limits, when a run calls it.
		if err := scripting.Check(s.Transform, code, scripting.Options{Entry: "transform", LoadDir: base}); err != nil {
			return nil, &ConfigError{File: rel, Field: "transform", Message: err.Error()}
		}
	}
	return s, nil
}

// Parse decodes one sync from its JSON (or YAML) shape, as the REST API
// receives it, and applies defaults. Cross-sync checks need a Project.
func Parse(raw []byte) (*Sync, error) {
	s := &Sync{}
	if err := decodeStrict(raw, s); err != nil {
		return nil, err
	}
	if errs := s.check(); len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	s.ApplyDefaults()
	return s, nil
}

// decodeStrict decodes YAML or JSON into v, refusing unknown fields so that
// a typo in a file is an error instead of a silently ignored setting.
func decodeStrict(raw []byte, v any) error {
	js, err := yaml.YAMLToJSON(raw)
	if err != nil {
		return fmt.Errorf("not valid YAML: %w", err)
	}
	dec := json.NewDecoder(bytes.NewReader(js))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return fmt.Errorf("%s", strings.TrimPrefix(err.Error(), "json: "))
	}
	return nil
}

// Sync returns the sync named name.
func (p *Project) Sync(name string) (*Sync, bool) {
	for _, s := range p.Syncs {
		if s.Name == name {
			return s, true
		}
	}
	return nil, false
}

func (p *Project) check() []error {
	var errs []error
	seen := map[string]string{}
	for _, s := range p.Syncs {
		if prev, dup := seen[s.Name]; dup {
			errs = append(errs, &ConfigError{File: s.File, Field: "name", Message: fmt.Sprintf("sync %q is also defined in %s", s.Name, prev)})
		}
		seen[s.Name] = s.File
		errs = append(errs, s.check()...)
		if s.Target.Connection != "" {
			if _, ok := p.Connections[s.Target.Connection]; !ok {
				errs = append(errs, &ConfigError{File: s.File, Field: "target.connection",
					Message: fmt.Sprintf("unknown connection %q (defined in %s: %s)", s.Target.Connection, ProjectFile, strings.Join(sortedKeys(p.Connections), ", "))})
			}
		}
		if wb := s.WriteBack; wb != nil && wb.Connection != "" {
			if _, ok := p.Connections[wb.Connection]; !ok {
				errs = append(errs, &ConfigError{File: s.File, Field: "write_back.connection",
					Message: fmt.Sprintf("unknown connection %q (defined in %s: %s)", wb.Connection, ProjectFile, strings.Join(sortedKeys(p.Connections), ", "))})
			}
		}
		for i, r := range s.Relations {
			if r.Sync == "" {
				continue
			}
			if _, ok := p.Sync(r.Sync); !ok {
				errs = append(errs, &ConfigError{File: s.File, Field: fmt.Sprintf("relations[%d].sync", i),
					Message: fmt.Sprintf("unknown sync %q", r.Sync)})
			}
		}
		s.ApplyDefaults()
	}
	errs = append(errs, p.pairSyncs()...)
	if cycle := p.findCycle(); cycle != nil {
		first, _ := p.Sync(cycle[0])
		errs = append(errs, &ConfigError{File: first.File, Field: "relations",
			Message: fmt.Sprintf("relations form a cycle: %s (a parent must sync before its children)", strings.Join(cycle, " → "))})
	}
	for name, g := range p.Groups {
		for i, sn := range g.Syncs {
			if _, ok := p.Sync(sn); !ok {
				errs = append(errs, &ConfigError{File: ProjectFile, Field: fmt.Sprintf("groups.%s.syncs[%d]", name, i), Message: fmt.Sprintf("unknown sync %q", sn)})
			}
		}
		if g.Schedule != nil {
			errs = append(errs, g.Schedule.check(ProjectFile, "groups."+name+".schedule")...)
		}
		if g.Hooks != nil {
			errs = append(errs, g.Hooks.check(ProjectFile, "groups."+name+".hooks")...)
		}
	}
	for name, sc := range p.Scripts {
		field := "scripts." + name
		if !strings.HasSuffix(name, ".star") || strings.Contains(name, "..") || filepath.IsAbs(name) {
			errs = append(errs, &ConfigError{File: ProjectFile, Field: field, Message: "name a .star file inside the project folder"})
		} else if p.Dir != "" {
			if _, err := os.Stat(filepath.Join(p.Dir, name)); err != nil {
				errs = append(errs, &ConfigError{File: ProjectFile, Field: field, Message: fmt.Sprintf("%s does not exist in the project folder", name)})
			}
		}
		if sc.Schedule == nil {
			errs = append(errs, &ConfigError{File: ProjectFile, Field: field + ".schedule", Message: "a script listed here needs a schedule"})
		} else {
			errs = append(errs, sc.Schedule.check(ProjectFile, field+".schedule")...)
		}
	}
	if p.Alerts != nil {
		errs = append(errs, p.Alerts.check()...)
	}
	return errs
}

// pairSyncs checks every two_way declaration and sets Pair on both syncs
// of each pair.
func (p *Project) pairSyncs() []error {
	var errs []error
	for _, s := range p.Syncs {
		s.Pair = nil
	}
	for _, s := range p.Syncs {
		tw := s.TwoWay
		if tw == nil {
			continue
		}
		bad := func(field, format string, args ...any) {
			errs = append(errs, &ConfigError{File: s.FileOrName(), Field: "two_way." + field, Message: fmt.Sprintf(format, args...)})
		}
		partner, ok := p.Sync(tw.With)
		switch {
		case tw.With == "":
			bad("with", "name the sync that writes the other way")
			continue
		case tw.With == s.Name:
			bad("with", "a sync cannot be its own other direction")
			continue
		case !ok:
			bad("with", "unknown sync %q", tw.With)
			continue
		case s.Pair != nil && s.Pair.Partner != partner.Name:
			bad("with", "sync %s is already paired with %s", s.Name, s.Pair.Partner)
			continue
		case partner.Pair != nil && partner.Pair.Partner != s.Name:
			bad("with", "sync %s is already paired with %s", partner.Name, partner.Pair.Partner)
			continue
		case partner.TwoWay != nil && partner.TwoWay.With == s.Name && s.Name > partner.Name && !reflect.DeepEqual(*partner.TwoWay, TwoWay{With: s.Name, Conflict: tw.Conflict}):
			bad("conflict", "differs from the one %s declares for the same pair: declare the pair once", partner.Name)
			continue
		}
		wins := ""
		switch c := tw.Conflict.Wins; {
		case c == s.Name || c == partner.Name:
			wins = c
		case c == "":
			bad("conflict.wins", "say whose change wins when both sides changed a record: a connection (%s or %s) or a sync (%s or %s)",
				partner.Target.Connection, s.Target.Connection, partner.Name, s.Name)
			continue
		case s.Target.Connection == partner.Target.Connection && c == s.Target.Connection:
			bad("conflict.wins", "both syncs write to connection %s: name the winning side by its sync (%s or %s)", c, s.Name, partner.Name)
			continue
		case c == partner.Target.Connection:
			// The application the partner writes to is this sync's source.
			wins = s.Name
		case c == s.Target.Connection:
			wins = partner.Name
		default:
			bad("conflict.wins", "%q is neither side of the pair: name a connection (%s or %s) or a sync (%s or %s)",
				c, partner.Target.Connection, s.Target.Connection, partner.Name, s.Name)
			continue
		}
		s.Pair = &Pair{Partner: partner.Name, Wins: wins, Newer: tw.Conflict.Newer}
		partner.Pair = &Pair{Partner: s.Name, Wins: wins, Newer: tw.Conflict.Newer}
	}
	return errs
}

func (s *Sync) check() []error {
	var errs []error
	bad := func(field, format string, args ...any) {
		errs = append(errs, &ConfigError{File: s.FileOrName(), Field: field, Message: fmt.Sprintf(format, args...)})
	}
	if !namePattern.MatchString(s.Name) {
		bad("name", "%q is not a valid sync name: use lower-case letters, digits and _ (it names the link table link_tables.<name>)", s.Name)
	}
	if s.Schedule != nil {
		errs = append(errs, s.Schedule.check(s.FileOrName(), "schedule")...)
	}
	if (s.Target.LookupBeforeInsert || s.Target.LookupIn != nil) && len(s.Target.MatchOn) == 0 {
		bad("target.match_on", "lookup_before_insert and lookup_in look records up by match_on: name the target fields that identify a record (e.g. [email])")
	}
	if d := s.Delete; d != nil {
		switch d.Mode {
		case "", DeleteModeDelete:
			if len(d.Archive) > 0 {
				bad("delete.archive", "archive fields go with mode: archive")
			}
		case DeleteModeArchive:
			if len(d.Archive) == 0 {
				bad("delete.archive", "say which fields archive a record, e.g. {active: false}")
			}
		default:
			bad("delete.mode", "%q: use delete or archive", d.Mode)
		}
		if d.MaxShare < 0 || d.MaxShare > 1 {
			bad("delete.max_share", "%v: a share of the linked records between 0 and 1, e.g. 0.1", d.MaxShare)
		}
		if d.Flag != "" && !namePattern.MatchString(d.Flag) {
			bad("delete.flag", "%q is not a column name", d.Flag)
		}
	}
	if li := s.Target.LookupIn; li != nil {
		if !sqlident.IsTable(li.Table) {
			bad("target.lookup_in.table", "%q is not a table name: write schema.table, the table the target's ELT pipeline loads", li.Table)
		}
		if li.ID != "" && !namePattern.MatchString(li.ID) {
			bad("target.lookup_in.id", "%q is not a column name", li.ID)
		}
	}
	if s.Hooks != nil {
		errs = append(errs, s.Hooks.check(s.FileOrName(), "hooks")...)
	}
	sources := 0
	for _, v := range []string{s.Source.Table, s.Source.Query} {
		if strings.TrimSpace(v) != "" {
			sources++
		}
	}
	switch {
	case sources == 0:
		bad("source", "set source.table, source.query or source.query_file")
	case sources > 1:
		bad("source", "set only one of source.table and source.query/query_file")
	}
	if s.Source.Table != "" && !sqlident.IsTable(s.Source.Table) {
		bad("source.table", "%q is not a table name (schema.table)", s.Source.Table)
	}
	if s.Source.PageSize < 0 || s.Source.PageSize > 100000 {
		bad("source.page_size", "must be between 1 and 100000")
	}
	if s.Target.Connection == "" {
		bad("target.connection", "required: the connection to write to")
	}
	if s.Target.Object == "" {
		bad("target.object", "required: the object (table, API resource) to write to")
	}
	switch s.Mode {
	case "", ModeUpsert, ModeInsert, ModeUpdate:
	default:
		bad("mode", "%q is not a mode: use upsert (insert & update), insert (insert only) or update (update only)", s.Mode)
	}
	switch s.OnError {
	case "", OnErrorContinue, OnErrorStop:
	default:
		bad("on_error", "%q: use continue or stop", s.OnError)
	}
	targets := map[string]string{}
	claim := func(target, where string) {
		if prev, dup := targets[target]; dup {
			bad(where, "target field %q is already written by %s", target, prev)
		}
		targets[target] = where
	}
	for i, f := range s.Mapping {
		where := fmt.Sprintf("mapping[%d]", i)
		if f.Target == "" {
			bad(where+".target", "required: the target field to write")
		}
		hasSource, hasValue := f.Source != "", len(f.Value) > 0
		if hasSource == hasValue {
			bad(where, "set exactly one of source (a scope column) and value (a static value)")
		}
		if f.Target != "" {
			claim(f.Target, where)
		}
	}
	if b := s.ErrorBudget; b != nil && (b.Window < 0 || b.Share < 0 || b.Share > 1) {
		bad("error_budget", "window must be 0 (off) or more, share between 0 and 1 (e.g. {window: 50, share: 0.9})")
	}
	if wb := s.WriteBack; wb != nil && (wb.Connection == "" || wb.Object == "" || wb.Field == "") {
		bad("write_back", "write_back needs connection (the source application), object and field (which receives the new id)")
	}
	for i, r := range s.Relations {
		where := fmt.Sprintf("relations[%d]", i)
		if r.Source == "" || r.Sync == "" || r.Target == "" {
			bad(where, "a relation needs source (the FK column), sync (the parent sync) and target (the FK field in the target)")
		}
		if r.Sync == s.Name {
			bad(where+".sync", "a sync cannot be its own parent")
		}
		if r.Target != "" {
			claim(r.Target, where)
		}
	}
	return errs
}

// FileOrName names where a sync was defined, for messages: its file, or
// "sync <name>" for one that came from the API.
func (s *Sync) FileOrName() string {
	if s.File != "" {
		return s.File
	}
	return "sync " + s.Name
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// New builds a project from definitions held in memory (the REST API's, or
// a test's) and checks it as Load would.
func New(kinds Kinds, conns map[string]Connection, syncs ...*Sync) (*Project, error) {
	p := &Project{Connections: map[string]Connection{}, Syncs: syncs}
	var errs []error
	for name, c := range conns {
		c.Name = name
		p.Connections[name] = c
		errs = append(errs, checkConnection(c, kinds)...)
	}
	errs = append(errs, p.check()...)
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return p, nil
}

// checkConnection checks a connection's name, and its kind and settings
// when kinds are known, without opening it or reading its secrets.
func checkConnection(c Connection, kinds Kinds) []error {
	field := "connections." + c.Name
	bad := func(f, msg string) []error {
		return []error{&ConfigError{File: ProjectFile, Field: f, Message: msg}}
	}
	if !namePattern.MatchString(c.Name) {
		return bad(field, "connection names use lower-case letters, digits and _")
	}
	if kinds == nil {
		return nil
	}
	if err := kinds.CheckSettings(c.Kind, c.Settings); err != nil {
		if c.Kind == "" || strings.HasPrefix(err.Error(), "unknown kind") {
			return bad(field+".kind", err.Error())
		}
		return bad(field+".settings", err.Error())
	}
	return nil
}
