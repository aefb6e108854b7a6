package api

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"sort"
	"strings"

	"github.com/danielgtaylor/huma/v2"
	"github.com/jackc/pgx/v5"

	"github.com/ferry-sync/ferry/api/auth"
	"github.com/ferry-sync/ferry/engine/project"
	"github.com/ferry-sync/ferry/queries"
	"github.com/ferry-sync/ferry/templates"
)

// templateRoutes registers the operations on templates: Ferry's own (in
// the binary) and a team's, stored in the warehouse (ferry.templates).
func (s *Server) templateRoutes() {
	a := s.api
	huma.Register(a, op("list-templates", http.MethodGet, "/templates", "List the templates: Ferry's own and those stored on this server", auth.Viewer), s.listTemplates)
	huma.Register(a, op("get-template", http.MethodGet, "/templates/{name}", "One template: its parameters, what it writes, its README and files", auth.Viewer, 404), s.getTemplate)
	huma.Register(a, op("put-template", http.MethodPut, "/templates/{name}", "Store a team's template (its files); its version must rise when they change", auth.Editor, 409, 422), s.putTemplate)
	huma.Register(a, op("delete-template", http.MethodDelete, "/templates/{name}", "Delete a stored template (what it wrote stays)", auth.Editor, 404, 422), s.deleteTemplate)
	huma.Register(a, op("instantiate-template", http.MethodPost, "/templates/{name}/instantiate", "Write a template's files into the configuration, its parameters set (a new connection needs admin)", auth.Editor, 404, 409, 422), s.instantiateTemplate)
	huma.Register(a, op("diff-template", http.MethodGet, "/templates/{name}/diff", "What the template writes now that the configuration's files from it lack, and which of them were edited", auth.Viewer, 404), s.diffTemplate)
}

// TemplateParam is one parameter of a template.
type TemplateParam struct {
	Name        string   `json:"name"`
	Type        string   `json:"type" enum:"string,integer,boolean,enum,duration,connection,name,env,schema,column,table"`
	Description string   `json:"description"`
	Required    bool     `json:"required" doc:"No default: instantiating needs a value."`
	Default     any      `json:"default,omitempty"`
	Values      []string `json:"values,omitempty" doc:"An enum's values."`
	Min         *int64   `json:"min,omitempty"`
	Max         *int64   `json:"max,omitempty"`
}

// TemplateInfo is a template as lists show it.
type TemplateInfo struct {
	Name        string          `json:"name"`
	Version     int             `json:"version"`
	Origin      string          `json:"origin" enum:"shipped,stored" doc:"shipped: Ferry's own; stored: a team's, on this server."`
	Title       string          `json:"title"`
	Description string          `json:"description"`
	Pattern     string          `json:"pattern,omitempty" doc:"The pattern of the spec it implements."`
	Parameters  []TemplateParam `json:"parameters"`
}

// TemplateDetail is one template in full.
type TemplateDetail struct {
	TemplateInfo
	Readme  string   `json:"readme,omitempty"`
	Creates []string `json:"creates" doc:"The project files it writes."`
	Entries []string `json:"project_entries,omitempty" doc:"The ferry.yaml entries it adds (with its defaults)."`
	Next    []string `json:"next,omitempty" doc:"Commands to run once it is instantiated (with its defaults)."`
	Files   Files    `json:"files" doc:"Every file of the template, by path: template.yaml, README.md, project/…, fixtures/…"`
}

type templateList struct {
	Body struct {
		Templates []TemplateInfo `json:"templates"`
	}
}

type templateOut struct{ Body TemplateDetail }

func templateInfo(t *templates.Template) TemplateInfo {
	m := t.Manifest
	info := TemplateInfo{Name: m.Name, Version: m.Version, Origin: t.Origin, Title: m.Title, Description: m.Description, Pattern: m.Pattern, Parameters: []TemplateParam{}}
	for _, p := range m.Parameters {
		info.Parameters = append(info.Parameters, TemplateParam{Name: p.Name, Type: string(p.Type), Description: p.Description,
			Required: p.Required(), Default: p.Default, Values: p.Values, Min: p.Min, Max: p.Max})
	}
	return info
}

func templateDetail(t *templates.Template) TemplateDetail {
	d := TemplateDetail{TemplateInfo: templateInfo(t), Readme: t.Readme(), Creates: t.Creates(), Files: Files{}}
	for p, c := range t.Files {
		d.Files[p] = string(c)
	}
	if vals, err := t.Resolve(nil); err == nil {
		if r, err := t.Render(vals); err == nil {
			d.Next = r.Next
			if a, err := r.Apply(nil, false); err == nil {
				for _, e := range a.Entries {
					d.Entries = append(d.Entries, e.Key)
				}
			}
		}
	}
	return d
}

// storedTemplate reads a stored template; nil when there is none.
func (s *Server) storedTemplate(ctx context.Context, name string) (*templates.Template, *queries.FerryTemplate, error) {
	row, err := s.q.TemplateGet(ctx, name)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, nil, nil
	}
	if err != nil {
		return nil, nil, fmt.Errorf("reading template %s: %w", name, err)
	}
	t, err := parseStored(row)
	if err != nil {
		return nil, nil, err
	}
	return t, &row, nil
}

func parseStored(row queries.FerryTemplate) (*templates.Template, error) {
	var files map[string]string
	if err := json.Unmarshal(row.Files, &files); err != nil {
		return nil, fmt.Errorf("reading the files of template %s: %w", row.Name, err)
	}
	t, err := templates.Parse(bytesFiles(files), templates.OriginStored)
	if err != nil {
		return nil, fmt.Errorf("stored template %s: %w", row.Name, err)
	}
	return t, nil
}

func bytesFiles(files map[string]string) map[string][]byte {
	out := make(map[string][]byte, len(files))
	for p, c := range files {
		out[p] = []byte(c)
	}
	return out
}

// findTemplate returns a shipped template, else a stored one.
func (s *Server) findTemplate(ctx context.Context, name string) (*templates.Template, error) {
	t, err := templates.LoadShipped(name)
	if err == nil || !errors.Is(err, templates.ErrNotFound) {
		return t, err
	}
	t, _, err = s.storedTemplate(ctx, name)
	if err != nil {
		return nil, err
	}
	if t == nil {
		return nil, notFound("no template %q (GET /templates lists them)", name)
	}
	return t, nil
}

func (s *Server) listTemplates(ctx context.Context, _ *struct{}) (*templateList, error) {
	shipped, err := templates.Shipped()
	if err != nil {
		return nil, fail(err)
	}
	rows, err := s.q.TemplateList(ctx)
	if err != nil {
		return nil, fail(fmt.Errorf("listing the stored templates: %w", err))
	}
	out := &templateList{}
	out.Body.Templates = []TemplateInfo{}
	for _, t := range shipped {
		out.Body.Templates = append(out.Body.Templates, templateInfo(t))
	}
	for _, row := range rows {
		t, err := parseStored(row)
		if err != nil {
			// One broken template must not hide the others.
			s.log.Warn("a stored template does not load", "template", row.Name, "err", err)
			continue
		}
		out.Body.Templates = append(out.Body.Templates, templateInfo(t))
	}
	sort.Slice(out.Body.Templates, func(i, j int) bool { return out.Body.Templates[i].Name < out.Body.Templates[j].Name })
	return out, nil
}

func (s *Server) getTemplate(ctx context.Context, in *nameInput) (*templateOut, error) {
	t, err := s.findTemplate(ctx, in.Name)
	if err != nil {
		return nil, templateFail(err)
	}
	return &templateOut{Body: templateDetail(t)}, nil
}

type putTemplateInput struct {
	Name string `path:"name"`
	Body struct {
		Files Files `json:"files" required:"true" doc:"The template folder's files by path: template.yaml, README.md, project/… (what it writes, with {{placeholders}}), fixtures/…"`
	}
}

// putTemplate stores a team's template once it parses and its
// placeholders name its parameters. A changed template must raise its
// version: the version in the files it wrote is how ferry template diff
// tells projects what changed.
func (s *Server) putTemplate(ctx context.Context, in *putTemplateInput) (*templateOut, error) {
	if !project.ValidName(in.Name) {
		return nil, fail(fieldError("name", fmt.Sprintf("%q is not a template name: use lower-case letters, digits and _", in.Name)))
	}
	if _, err := templates.LoadShipped(in.Name); err == nil {
		return nil, fail(fieldError("name", fmt.Sprintf("Ferry ships a template named %s: give yours another name", in.Name)))
	}
	t, err := templates.Parse(bytesFiles(in.Body.Files), templates.OriginStored)
	if err != nil {
		return nil, templateFail(err)
	}
	if t.Manifest.Name != in.Name {
		return nil, fail(fieldError("files.template.yaml", fmt.Sprintf("the manifest names template %q, the path %q", t.Manifest.Name, in.Name)))
	}
	old, row, err := s.storedTemplate(ctx, in.Name)
	if err != nil {
		return nil, fail(err)
	}
	if old != nil {
		switch v := int(row.Version); {
		case t.Manifest.Version < v:
			return nil, fail(fieldError("files.template.yaml", fmt.Sprintf("version %d is older than the stored template's (%d)", t.Manifest.Version, v)))
		case t.Manifest.Version == v && !sameFiles(old.Files, t.Files):
			e := newError(http.StatusConflict, fmt.Sprintf("template %s v%d is stored with other files: raise version in template.yaml (to %d) so that projects made from v%d can see what changed", in.Name, v, v+1, v)).(*Error)
			return nil, e
		}
	}
	raw, err := json.Marshal(in.Body.Files)
	if err != nil {
		return nil, fail(err)
	}
	if err := s.q.TemplatePut(ctx, queries.TemplatePutParams{Name: in.Name, Version: int32(t.Manifest.Version), Files: raw, Actor: actor(ctx)}); err != nil {
		return nil, fail(fmt.Errorf("storing template %s: %w", in.Name, err))
	}
	return &templateOut{Body: templateDetail(t)}, nil
}

func sameFiles(a, b map[string][]byte) bool {
	if len(a) != len(b) {
		return false
	}
	for p, c := range a {
		if !bytes.Equal(c, b[p]) {
			return false
		}
	}
	return true
}

func (s *Server) deleteTemplate(ctx context.Context, in *nameInput) (*struct{}, error) {
	if _, err := templates.LoadShipped(in.Name); err == nil {
		return nil, fail(fieldError("name", fmt.Sprintf("%s is one of Ferry's own templates: they cannot be deleted", in.Name)))
	}
	n, err := s.q.TemplateDelete(ctx, in.Name)
	if err != nil {
		return nil, fail(fmt.Errorf("deleting template %s: %w", in.Name, err))
	}
	if n == 0 {
		return nil, fail(notFound("no stored template %q", in.Name))
	}
	return nil, nil
}

type instantiateInput struct {
	Name string `path:"name"`
	Body struct {
		Parameters map[string]any `json:"parameters,omitempty" doc:"Values by parameter name (text, numbers, booleans); the others take their defaults."`
		Force      bool           `json:"force,omitempty" doc:"Replace files the configuration has already, and ferry.yaml entries that differ from the template's."`
		DryRun     bool           `json:"dry_run,omitempty" doc:"Say what would change; change nothing."`
	}
}

type instantiateOut struct {
	Body struct {
		Version int64                    `json:"version" doc:"The configuration's version after the change."`
		Files   []FileChange             `json:"files" doc:"The files the change touched, with their diffs."`
		Written []templates.FileOp       `json:"written" doc:"Every file the template writes: created, overwritten (force) or unchanged."`
		Entries []templates.ProjectEntry `json:"project_entries" doc:"What became of each of its ferry.yaml entries: added, same, replaced (force) or kept (yours differs; its YAML is the template's)."`
		Next    []string                 `json:"next,omitempty" doc:"Commands to run next."`
		Notes   []string                 `json:"notes,omitempty" doc:"What to do by hand (a sync file in a folder the configuration does not read)."`
	}
}

// instantiateTemplate writes a template's files into the stored
// configuration, as one version that must load (Store.ChangeChecked). A
// file the configuration has otherwise is a conflict unless force; a new
// or replaced connection needs the admin role, as connections do.
func (s *Server) instantiateTemplate(ctx context.Context, in *instantiateInput) (*instantiateOut, error) {
	t, err := s.findTemplate(ctx, in.Name)
	if err != nil {
		return nil, templateFail(err)
	}
	vals, err := t.Resolve(templates.ValuesText(in.Body.Parameters))
	if err != nil {
		return nil, templateFail(err)
	}
	r, err := t.Render(vals)
	if err != nil {
		return nil, templateFail(err)
	}
	existing, err := s.opts.Projects.Files(ctx)
	if err != nil {
		return nil, fail(err)
	}
	a, err := r.Apply(existing, in.Body.Force)
	if err != nil {
		return nil, templateFail(err)
	}
	if !in.Body.DryRun {
		for _, e := range a.Entries {
			if strings.HasPrefix(e.Key, "connections.") && (e.Op == templates.EntryAdded || e.Op == templates.EntryReplaced) {
				if tok, ok := ctx.Value(tokenKey{}).(auth.Token); !ok || !tok.Role.Allows(auth.Admin) {
					return nil, huma.Error403Forbidden(fmt.Sprintf("template %s adds %s: connections need the admin role (add it with PUT /connections/%s first, or ask an admin)",
						in.Name, e.Key, strings.TrimPrefix(e.Key, "connections.")))
				}
			}
		}
	}
	cs, err := s.opts.Projects.ChangeChecked(ctx, a.Changes, actor(ctx), fmt.Sprintf("template %s v%d", t.Manifest.Name, t.Manifest.Version), in.Body.DryRun, nil)
	if err != nil {
		return nil, fail(err)
	}
	out := &instantiateOut{}
	changes := changed(cs)
	out.Body.Version, out.Body.Files = changes.Body.Version, changes.Body.Files
	out.Body.Written, out.Body.Entries, out.Body.Next, out.Body.Notes = a.Files, a.Entries, r.Next, a.Notes
	if out.Body.Entries == nil {
		out.Body.Entries = []templates.ProjectEntry{}
	}
	return out, nil
}

type templateDiffOut struct {
	Body struct {
		Reports []*templates.DiffReport `json:"reports" doc:"One per use of the template in the configuration (its files' headers say which version wrote them, with which values)."`
	}
}

func (s *Server) diffTemplate(ctx context.Context, in *nameInput) (*templateDiffOut, error) {
	t, err := s.findTemplate(ctx, in.Name)
	if err != nil {
		return nil, templateFail(err)
	}
	files, err := s.opts.Projects.Files(ctx)
	if err != nil {
		return nil, fail(err)
	}
	out := &templateDiffOut{}
	out.Body.Reports = []*templates.DiffReport{}
	for _, inst := range templates.Instances(files) {
		if inst.Template != in.Name {
			continue
		}
		rep, err := templates.Diff(inst, t, files)
		if err != nil {
			return nil, templateFail(err)
		}
		out.Body.Reports = append(out.Body.Reports, rep)
	}
	return out, nil
}

// templateFail maps the templates package's errors to the API's: a
// missing template is 404, a bad value or template 422 (one field each), a
// file in the way 409.
func templateFail(err error) error {
	if errors.Is(err, templates.ErrNotFound) {
		return newError(http.StatusNotFound, err.Error())
	}
	var conflict *templates.ConflictError
	if errors.As(err, &conflict) {
		var fields []error
		for _, p := range conflict.Paths {
			fields = append(fields, &huma.ErrorDetail{Location: p, Message: "the configuration has this file already, otherwise: set force to replace it"})
		}
		return newError(http.StatusConflict, err.Error(), fields...)
	}
	var fields []error
	for _, e := range flatten(err) {
		var pe *templates.ParamError
		var te *templates.Error
		switch {
		case errors.As(e, &pe):
			fields = append(fields, &huma.ErrorDetail{Location: "parameters." + pe.Param, Message: pe.Message})
		case errors.As(e, &te):
			loc := "files." + te.File
			if te.Field != "" {
				loc += "." + te.Field
			}
			fields = append(fields, &huma.ErrorDetail{Location: loc, Message: te.Message})
		}
	}
	if len(fields) == 0 {
		return fail(err)
	}
	msg := "the template or its values are not valid: see fields"
	if len(fields) == 1 {
		msg = err.Error()
	}
	return newError(http.StatusUnprocessableEntity, msg, fields...)
}
