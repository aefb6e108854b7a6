package api

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path"
	"sort"

	"github.com/danielgtaylor/huma/v2"
	"go.yaml.in/yaml/v3"

	"github.com/ferry-sync/ferry/api/auth"
	"github.com/ferry-sync/ferry/api/projects"
	"github.com/ferry-sync/ferry/engine"
	"github.com/ferry-sync/ferry/engine/project"
)

// SyncDef is a sync as the API shows it: its definition with defaults
// applied, and the file that holds it.
type SyncDef struct {
	project.Sync
	File string `json:"file" doc:"The project file that holds it."`
}

type syncList struct {
	Body struct {
		Syncs []SyncDef `json:"syncs"`
	}
}

type syncOut struct{ Body SyncDef }

func (s *Server) listSyncs(ctx context.Context, _ *struct{}) (*syncList, error) {
	p, err := s.opts.Engine.Project(ctx)
	if err != nil {
		return nil, fail(err)
	}
	out := &syncList{}
	out.Body.Syncs = []SyncDef{}
	for _, sy := range p.Syncs {
		out.Body.Syncs = append(out.Body.Syncs, SyncDef{Sync: *sy, File: sy.File})
	}
	return out, nil
}

func (s *Server) findSync(ctx context.Context, name string) (*project.Sync, error) {
	p, err := s.opts.Engine.Project(ctx)
	if err != nil {
		return nil, err
	}
	sy, ok := p.Sync(name)
	if !ok {
		return nil, fmt.Errorf("%w %q", engine.ErrUnknownSync, name)
	}
	return sy, nil
}

func (s *Server) getSync(ctx context.Context, in *nameInput) (*syncOut, error) {
	sy, err := s.findSync(ctx, in.Name)
	if err != nil {
		return nil, fail(err)
	}
	return &syncOut{Body: SyncDef{Sync: *sy, File: sy.File}}, nil
}

type putSyncInput struct {
	Name    string `path:"name"`
	RawBody []byte
	Body    project.Sync
}

// putSync writes a sync's file from the JSON it was sent as (YAML, keys in
// the order sent): the file it came from, or syncs/<name>.yaml.
func (s *Server) putSync(ctx context.Context, in *putSyncInput) (*changedOut, error) {
	sy, err := project.Parse(withName(in.RawBody, in.Name))
	if err != nil {
		return nil, fail(err)
	}
	if sy.Name != "" && sy.Name != in.Name {
		return nil, fail(fieldError("name", fmt.Sprintf("the body names sync %q, the path %q", sy.Name, in.Name)))
	}
	file := "syncs/" + in.Name + ".yaml"
	if existing, err := s.findSync(ctx, in.Name); err == nil && existing.File != "" {
		file = existing.File
	}
	doc, err := jsonToYAML(in.RawBody)
	if err != nil {
		return nil, fail(err)
	}
	return s.change(ctx, map[string][]byte{file: doc}, "sync "+in.Name, nil)
}

func (s *Server) deleteSync(ctx context.Context, in *nameInput) (*changedOut, error) {
	sy, err := s.findSync(ctx, in.Name)
	if err != nil {
		return nil, fail(err)
	}
	if sy.File == "" {
		return nil, fail(fmt.Errorf("sync %s is not defined in a file of its own", in.Name))
	}
	return s.change(ctx, map[string][]byte{sy.File: nil}, "delete sync "+in.Name, nil)
}

func (s *Server) checkSync(ctx context.Context, in *nameInput) (*checkOut, error) {
	out := &checkOut{}
	out.Body.Problems, out.Body.Warnings = []string{}, []string{}
	warnings, err := s.opts.Engine.Check(ctx, in.Name)
	if err != nil {
		if isNotFound(err) {
			return nil, fail(err)
		}
		for _, e := range flatten(err) {
			out.Body.Problems = append(out.Body.Problems, e.Error())
		}
	}
	out.Body.Warnings = append(out.Body.Warnings, warnings...)
	out.Body.OK = len(out.Body.Problems) == 0
	return out, nil
}

type planInput struct {
	Name string `path:"name"`
	Body *struct {
		Full    bool `json:"full,omitempty" doc:"Plan a read of the whole scope."`
		Samples int  `json:"samples,omitempty" minimum:"0" maximum:"100" doc:"Example records per decision (default 3)."`
		Lookups bool `json:"lookups,omitempty" doc:"Let transforms look records up in the target."`
	}
}

type runResultOut struct{ Body *engine.RunResult }

func (s *Server) planSync(ctx context.Context, in *planInput) (*runResultOut, error) {
	opts := engine.PlanOptions{Samples: 3}
	if b := in.Body; b != nil {
		opts.Full, opts.Lookups = b.Full, b.Lookups
		if b.Samples > 0 {
			opts.Samples = b.Samples
		}
	}
	res, err := s.opts.Engine.Plan(ctx, engine.Selection{Names: []string{in.Name}}, opts)
	if err != nil {
		return nil, fail(err)
	}
	return &runResultOut{Body: res[len(res)-1]}, nil
}

type testInput struct {
	Name string `path:"name"`
	Body struct {
		ID    string `json:"id" required:"true" doc:"The source id of the record."`
		Write bool   `json:"write,omitempty" doc:"Sync it for real (needs the editor role)."`
	}
}

func (s *Server) testSync(ctx context.Context, in *testInput) (*runResultOut, error) {
	if in.Body.Write {
		if tok, ok := ctx.Value(tokenKey{}).(auth.Token); !ok || !tok.Role.Allows(auth.Editor) {
			return nil, huma.Error403Forbidden("writing a record needs the editor role")
		}
	}
	res, err := s.opts.Engine.TestRecord(ctx, in.Name, in.Body.ID, in.Body.Write)
	if err != nil {
		return nil, fail(err)
	}
	return &runResultOut{Body: res}, nil
}

type explainInput struct {
	Name string `path:"name"`
	ID   string `path:"id" doc:"The source id of the record."`
}

type explainOut struct{ Body *engine.Explanation }

func (s *Server) explainRecord(ctx context.Context, in *explainInput) (*explainOut, error) {
	ex, err := s.opts.Engine.Explain(ctx, in.Name, in.ID)
	if err != nil {
		return nil, fail(err)
	}
	return &explainOut{Body: ex}, nil
}

type statusOut struct{ Body engine.SyncStatus }

func (s *Server) syncStatus(ctx context.Context, in *nameInput) (*statusOut, error) {
	st, err := s.opts.Engine.Status(ctx, []string{in.Name}, 10)
	if err != nil {
		return nil, fail(err)
	}
	return &statusOut{Body: st[0]}, nil
}

type statusListOut struct {
	Body struct {
		Syncs []engine.SyncStatus `json:"syncs"`
	}
}

func (s *Server) status(ctx context.Context, _ *struct{}) (*statusListOut, error) {
	st, err := s.opts.Engine.Status(ctx, nil, 5)
	if err != nil {
		return nil, fail(err)
	}
	out := &statusListOut{}
	out.Body.Syncs = append([]engine.SyncStatus{}, st...)
	return out, nil
}

// Group is a group of syncs.
type Group struct {
	Name      string   `json:"name"`
	Syncs     []string `json:"syncs"`
	KeepOrder bool     `json:"keep_order,omitempty"`
}

type groupList struct {
	Body struct {
		Groups []Group `json:"groups"`
	}
}

func (s *Server) listGroups(ctx context.Context, _ *struct{}) (*groupList, error) {
	p, err := s.opts.Engine.Project(ctx)
	if err != nil {
		return nil, fail(err)
	}
	out := &groupList{}
	out.Body.Groups = []Group{}
	names := make([]string, 0, len(p.Groups))
	for n := range p.Groups {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		g := p.Groups[n]
		out.Body.Groups = append(out.Body.Groups, Group{Name: n, Syncs: g.Syncs, KeepOrder: g.KeepOrder})
	}
	return out, nil
}

type putGroupInput struct {
	Name string `path:"name"`
	Body struct {
		Syncs     []string `json:"syncs" required:"true" minItems:"1"`
		KeepOrder bool     `json:"keep_order,omitempty" doc:"Run the syncs as listed instead of parents first."`
	}
}

func (s *Server) putGroup(ctx context.Context, in *putGroupInput) (*changedOut, error) {
	if !project.ValidName(in.Name) {
		return nil, fail(fieldError("name", fmt.Sprintf("%q is not a group name: use lower-case letters, digits and _", in.Name)))
	}
	g := map[string]any{"syncs": in.Body.Syncs}
	if in.Body.KeepOrder {
		g["keep_order"] = true
	}
	return s.editMapping(ctx, []string{"groups"}, in.Name, g, "group "+in.Name)
}

func (s *Server) deleteGroup(ctx context.Context, in *nameInput) (*changedOut, error) {
	p, err := s.opts.Engine.Project(ctx)
	if err != nil {
		return nil, fail(err)
	}
	if _, ok := p.Groups[in.Name]; !ok {
		return nil, fail(notFound("no group %q", in.Name))
	}
	return s.editMapping(ctx, []string{"groups"}, in.Name, nil, "delete group "+in.Name)
}

// change applies file changes to the stored project as the caller, after
// check (if any) accepts the folder they make.
func (s *Server) change(ctx context.Context, files map[string][]byte, reason string, check func(dir string) error) (*changedOut, error) {
	cs, err := s.opts.Projects.ChangeChecked(ctx, files, actor(ctx), reason, false, check)
	if err != nil {
		return nil, fail(err)
	}
	return changed(cs), nil
}

func changed(cs *projects.ChangeSet) *changedOut {
	out := &changedOut{}
	out.Body.Version = cs.Version
	out.Body.Files = []FileChange{}
	for _, f := range cs.Files {
		out.Body.Files = append(out.Body.Files, FileChange{Path: f.Path, Op: f.Op, Diff: f.Diff})
	}
	return out
}

// fieldError is a 422 about one field.
func fieldError(path, msg string) error {
	return newError(422, msg, &huma.ErrorDetail{Location: path, Message: msg})
}

func isNotFound(err error) bool {
	var e *Error
	return errors.Is(err, engine.ErrUnknownSync) || errors.Is(err, engine.ErrUnknownGroup) || errors.Is(err, errNotFound) ||
		(errors.As(err, &e) && e.status == 404)
}

// flatten lists the errors an errors.Join holds.
func flatten(err error) []error {
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		var out []error
		for _, e := range j.Unwrap() {
			out = append(out, flatten(e)...)
		}
		return out
	}
	return []error{err}
}

func lookupEnv(name string) (string, bool) { return os.LookupEnv(name) }

// setInMappingAny is setInMapping with a node built by jsonNode (or nil).
func setInMappingAny(doc []byte, p []string, key string, node any) ([]byte, error) {
	n, _ := node.(*yaml.Node)
	return setInMapping(doc, p, key, n)
}

// scriptPath is where a script lives in the project: under syncs/.
func scriptPath(name string) string { return path.Join("syncs", name) }

// withName gives a sync's JSON the name of its path when it names none
// (its file, syncs/<name>.yaml, names it then).
func withName(raw []byte, name string) []byte {
	var fields map[string]json.RawMessage
	if json.Unmarshal(raw, &fields) != nil {
		return raw // Parse says what is wrong with it
	}
	if _, ok := fields["name"]; ok {
		return raw
	}
	quoted, _ := json.Marshal(name)
	body := bytes.TrimSpace(raw)
	if len(fields) == 0 {
		return []byte(`{"name":` + string(quoted) + `}`)
	}
	return append([]byte(`{"name":`+string(quoted)+`,`), body[1:]...)
}
