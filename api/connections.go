package api

import (
	"context"
	"encoding/json"
	"fmt"
	"sort"
	"strings"

	"github.com/ferry-sync/ferry/engine/project"
	"github.com/ferry-sync/ferry/internal/secrets"
)

type nameInput struct {
	Name string `path:"name" doc:"A name: lower-case letters, digits and _."`
}

// Connection is a connection as the API shows it.
type Connection struct {
	Name     string          `json:"name"`
	Kind     string          `json:"kind"`
	Settings json.RawMessage `json:"settings,omitempty"`
	// Secrets are the secrets the settings name (*_env settings): whether
	// each is stored, or found in the server's environment. Never a value.
	Secrets []SecretState `json:"secrets"`
}

// SecretState says where a secret a connection names comes from.
type SecretState struct {
	Name          string `json:"name"`
	Stored        bool   `json:"stored" doc:"Set through the API (encrypted at rest)."`
	InEnvironment bool   `json:"in_environment" doc:"Set in the server's environment."`
}

type connectionList struct {
	Body struct {
		Connections []Connection `json:"connections"`
	}
}

type connectionOut struct{ Body Connection }

func (s *Server) listConnections(ctx context.Context, _ *struct{}) (*connectionList, error) {
	p, err := s.opts.Engine.Project(ctx)
	if err != nil {
		return nil, fail(err)
	}
	out := &connectionList{}
	out.Body.Connections = []Connection{}
	names := make([]string, 0, len(p.Connections))
	for n := range p.Connections {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		c, err := s.connectionOf(ctx, p.Connections[n])
		if err != nil {
			return nil, fail(err)
		}
		out.Body.Connections = append(out.Body.Connections, c)
	}
	return out, nil
}

func (s *Server) getConnection(ctx context.Context, in *nameInput) (*connectionOut, error) {
	p, err := s.opts.Engine.Project(ctx)
	if err != nil {
		return nil, fail(err)
	}
	c, ok := p.Connections[in.Name]
	if !ok {
		return nil, fail(notFound("no connection %q", in.Name))
	}
	out, err := s.connectionOf(ctx, c)
	if err != nil {
		return nil, fail(err)
	}
	return &connectionOut{Body: out}, nil
}

func (s *Server) connectionOf(ctx context.Context, c project.Connection) (Connection, error) {
	stored := map[string]bool{}
	infos, err := s.opts.Secrets.List(ctx)
	if err != nil {
		return Connection{}, err
	}
	for _, i := range infos {
		stored[i.Name] = true
	}
	out := Connection{Name: c.Name, Kind: c.Kind, Settings: c.Settings, Secrets: []SecretState{}}
	for _, name := range secretNames(c.Settings) {
		_, inEnv := lookupEnv(name)
		out.Secrets = append(out.Secrets, SecretState{Name: name, Stored: stored[name], InEnvironment: inEnv})
	}
	return out, nil
}

// secretNames finds the secrets a connection's settings name: the values
// of settings whose key ends in _env, at any depth.
func secretNames(settings json.RawMessage) []string {
	var v any
	if json.Unmarshal(settings, &v) != nil {
		return nil
	}
	set := map[string]bool{}
	var walk func(any)
	walk = func(v any) {
		switch x := v.(type) {
		case map[string]any:
			for k, e := range x {
				if s, ok := e.(string); ok && strings.HasSuffix(k, "_env") && s != "" {
					set[s] = true
				}
				walk(e)
			}
		case []any:
			for _, e := range x {
				walk(e)
			}
		}
	}
	walk(v)
	out := make([]string, 0, len(set))
	for n := range set {
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}

type putConnectionInput struct {
	Name string `path:"name"`
	Body struct {
		Kind     string            `json:"kind" required:"true" doc:"A kind this server opens (GET /kinds)."`
		Settings json.RawMessage   `json:"settings,omitempty" doc:"The kind's settings; secrets are named (token_env: CRM_TOKEN), never written."`
		Secrets  map[string]string `json:"secrets,omitempty" doc:"Values of secrets the settings name, by name. Stored encrypted; never returned."`
	}
}

type changedOut struct {
	Body struct {
		Version int64        `json:"version" doc:"The configuration's version after the change."`
		Files   []FileChange `json:"files"`
	}
}

// FileChange is one file a change touched.
type FileChange struct {
	Path string `json:"path"`
	Op   string `json:"op" enum:"added,changed,deleted"`
	Diff string `json:"diff,omitempty"`
}

func (s *Server) putConnection(ctx context.Context, in *putConnectionInput) (*changedOut, error) {
	if !project.ValidName(in.Name) {
		return nil, fail(fieldError("name", fmt.Sprintf("%q is not a connection name: use lower-case letters, digits and _", in.Name)))
	}
	if err := s.opts.Kinds.CheckSettings(in.Body.Kind, in.Body.Settings); err != nil {
		path := "settings"
		if strings.HasPrefix(err.Error(), "unknown kind") || in.Body.Kind == "" {
			path = "kind"
		}
		return nil, fail(fieldError(path, err.Error()))
	}
	named := map[string]bool{}
	for _, n := range secretNames(in.Body.Settings) {
		named[n] = true
	}
	for name := range in.Body.Secrets {
		if !named[name] {
			return nil, fail(fieldError("secrets."+name, "the settings do not name this secret (as a *_env setting)"))
		}
		if !secrets.ValidName(name) {
			return nil, fail(fieldError("secrets."+name, "a secret's name has the form of an environment variable (A-Z, 0-9, _)"))
		}
	}
	// Secrets first: a connection that names a secret not stored yet would
	// fail its next run.
	for name, value := range in.Body.Secrets {
		if err := s.opts.Secrets.Put(ctx, name, value, actor(ctx)); err != nil {
			return nil, fail(err)
		}
	}
	conn := map[string]any{"kind": in.Body.Kind}
	if len(in.Body.Settings) > 0 {
		conn["settings"] = in.Body.Settings
	}
	return s.editMapping(ctx, []string{"connections"}, in.Name, conn, "connection "+in.Name)
}

func (s *Server) deleteConnection(ctx context.Context, in *nameInput) (*changedOut, error) {
	p, err := s.opts.Engine.Project(ctx)
	if err != nil {
		return nil, fail(err)
	}
	if _, ok := p.Connections[in.Name]; !ok {
		return nil, fail(notFound("no connection %q", in.Name))
	}
	return s.editMapping(ctx, []string{"connections"}, in.Name, nil, "delete connection "+in.Name)
}

// editMapping sets or deletes one entry of a mapping in ferry.yaml (a
// connection, a group), keeping the rest of the file as written.
func (s *Server) editMapping(ctx context.Context, path []string, key string, value any, reason string) (*changedOut, error) {
	files, err := s.opts.Projects.Files(ctx)
	if err != nil {
		return nil, fail(err)
	}
	var node any
	if value != nil {
		n, err := jsonNode(value)
		if err != nil {
			return nil, fail(err)
		}
		node = n
	}
	doc, err := setInMappingAny(files[project.ProjectFile], path, key, node)
	if err != nil {
		return nil, fail(err)
	}
	return s.change(ctx, map[string][]byte{project.ProjectFile: doc}, reason, nil)
}

type checkOut struct {
	Body struct {
		OK       bool     `json:"ok"`
		Problems []string `json:"problems"`
		Warnings []string `json:"warnings"`
	}
}

func (s *Server) checkConnection(ctx context.Context, in *nameInput) (*checkOut, error) {
	out := &checkOut{}
	out.Body.Problems, out.Body.Warnings = []string{}, []string{}
	if err := s.opts.Engine.CheckConnection(ctx, in.Name); err != nil {
		if isNotFound(err) {
			return nil, fail(err)
		}
		out.Body.Problems = append(out.Body.Problems, err.Error())
	}
	out.Body.OK = len(out.Body.Problems) == 0
	return out, nil
}

type kindsOut struct {
	Body struct {
		Kinds []string `json:"kinds"`
	}
}

func (s *Server) listKinds(context.Context, *struct{}) (*kindsOut, error) {
	out := &kindsOut{}
	out.Body.Kinds = s.opts.Kinds.Names()
	return out, nil
}
