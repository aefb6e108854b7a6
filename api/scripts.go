package api

import (
	"context"
	"fmt"
	"path"
	"path/filepath"
	"sort"
	"strings"

	"github.com/ferry-sync/ferry/internal/runqueue"
	"github.com/ferry-sync/ferry/scripting"
)

// Script is a Starlark file of the project, named by its path under syncs/.
type Script struct {
	Name   string `json:"name" doc:"Its path under syncs/, e.g. contacts.star or lib/helpers.star."`
	Kind   string `json:"kind" enum:"transform,main,library,test" doc:"How it is used: a sync's transform, a data-sync script (def main), a library others load, or tests."`
	Source string `json:"source,omitempty"`
}

type scriptInput struct {
	Name string `path:"name" doc:"Its path under syncs/, e.g. contacts.star (a / is written %2F)."`
}

type scriptList struct {
	Body struct {
		Scripts []Script `json:"scripts"`
	}
}

type scriptOut struct{ Body Script }

// scriptKind says how a script is used, from the project and its source.
func scriptKind(name string, src []byte, transforms map[string]bool) string {
	switch {
	case strings.HasSuffix(name, "_test.star"):
		return "test"
	case transforms[name]:
		return "transform"
	case strings.Contains(string(src), "def main("):
		return "main"
	}
	return "library"
}

func (s *Server) transforms(ctx context.Context) (map[string]bool, error) {
	p, err := s.opts.Engine.Project(ctx)
	if err != nil {
		return nil, err
	}
	out := map[string]bool{}
	for _, sy := range p.Syncs {
		if sy.Transform != "" {
			out[filepath.ToSlash(filepath.Join(filepath.Dir(strings.TrimPrefix(sy.File, "syncs/")), sy.Transform))] = true
		}
	}
	return out, nil
}

func (s *Server) listScripts(ctx context.Context, _ *struct{}) (*scriptList, error) {
	files, err := s.opts.Projects.Files(ctx)
	if err != nil {
		return nil, fail(err)
	}
	transforms, err := s.transforms(ctx)
	if err != nil {
		return nil, fail(err)
	}
	out := &scriptList{}
	out.Body.Scripts = []Script{}
	for path, src := range files {
		name, ok := strings.CutPrefix(path, "syncs/")
		if !ok || !strings.HasSuffix(name, ".star") {
			continue
		}
		out.Body.Scripts = append(out.Body.Scripts, Script{Name: name, Kind: scriptKind(name, src, transforms)})
	}
	sort.Slice(out.Body.Scripts, func(i, j int) bool { return out.Body.Scripts[i].Name < out.Body.Scripts[j].Name })
	return out, nil
}

func (s *Server) getScript(ctx context.Context, in *scriptInput) (*scriptOut, error) {
	files, err := s.opts.Projects.Files(ctx)
	if err != nil {
		return nil, fail(err)
	}
	src, ok := files[scriptPath(in.Name)]
	if !ok || !strings.HasSuffix(in.Name, ".star") {
		return nil, fail(notFound("no script %q", in.Name))
	}
	transforms, err := s.transforms(ctx)
	if err != nil {
		return nil, fail(err)
	}
	return &scriptOut{Body: Script{Name: in.Name, Kind: scriptKind(in.Name, src, transforms), Source: string(src)}}, nil
}

type putScriptInput struct {
	Name string `path:"name"`
	Body struct {
		Source string `json:"source" required:"true" doc:"The Starlark source."`
	}
}

// putScript saves a script once it is checked without running any of it:
// syntax, names, load()s and, for a transform or a data-sync script, its
// entry function. Errors name file, line and column.
func (s *Server) putScript(ctx context.Context, in *putScriptInput) (*changedOut, error) {
	if !strings.HasSuffix(in.Name, ".star") {
		return nil, fail(fieldError("name", "a script's name ends in .star"))
	}
	transforms, err := s.transforms(ctx)
	if err != nil {
		return nil, fail(err)
	}
	src := []byte(in.Body.Source)
	entry := scripting.EntryLibrary
	switch scriptKind(in.Name, src, transforms) {
	case "transform":
		entry = scripting.EntryTransform
	case "main":
		entry = scripting.EntryMain
	}
	path := scriptPath(in.Name)
	check := func(dir string) error {
		full := filepath.Join(dir, filepath.FromSlash(path))
		return scripting.Check(in.Name, src, scripting.Options{Entry: entry, LoadDir: filepath.Dir(full)})
	}
	return s.change(ctx, map[string][]byte{path: src}, "script "+in.Name, check)
}

func (s *Server) deleteScript(ctx context.Context, in *scriptInput) (*changedOut, error) {
	files, err := s.opts.Projects.Files(ctx)
	if err != nil {
		return nil, fail(err)
	}
	if _, ok := files[scriptPath(in.Name)]; !ok || !strings.HasSuffix(in.Name, ".star") {
		return nil, fail(notFound("no script %q", in.Name))
	}
	return s.change(ctx, map[string][]byte{scriptPath(in.Name): nil}, "delete script "+in.Name, nil)
}

type testReportOut struct{ Body *scripting.TestReport }

func (s *Server) testScripts(ctx context.Context, _ *struct{}) (*testReportOut, error) {
	p, err := s.opts.Engine.Project(ctx)
	if err != nil {
		return nil, fail(err)
	}
	if p.Dir == "" {
		return &testReportOut{Body: &scripting.TestReport{}}, nil
	}
	rep, err := scripting.RunTests(ctx, filepath.Join(p.Dir, p.SyncsDir))
	if err != nil {
		return nil, fail(err)
	}
	return &testReportOut{Body: rep}, nil
}

type startedOut struct {
	Status int
	Body   struct {
		JobID int64  `json:"job_id" doc:"The queued run."`
		RunID int64  `json:"run_id,omitempty" doc:"The run, once a worker started it (absent while every worker is busy: GET /runs?job_id=… finds it later)."`
		Sync  string `json:"sync,omitempty"`
		URL   string `json:"url,omitempty" doc:"Where to follow the run."`
	}
}

func (s *Server) startScriptRun(ctx context.Context, in *scriptInput) (*startedOut, error) {
	files, err := s.opts.Projects.Files(ctx)
	if err != nil {
		return nil, fail(err)
	}
	src, ok := files[scriptPath(in.Name)]
	if !ok {
		return nil, fail(notFound("no script %q", in.Name))
	}
	if !strings.Contains(string(src), "def main(") {
		return nil, fail(fieldError("name", "this script has no main(pq): only data-sync scripts run on their own (transforms run with their sync)"))
	}
	name := strings.TrimSuffix(path.Base(in.Name), ".star")
	return s.enqueue(ctx, runqueue.Args{What: runqueue.WhatScript, Name: scriptPath(in.Name), Trigger: runqueue.TriggerAPI}, "script:"+name)
}

func started(runID, jobID int64, a runqueue.Args) *startedOut {
	out := &startedOut{Status: 202}
	out.Body.JobID, out.Body.RunID = jobID, runID
	if a.What == runqueue.WhatSync {
		out.Body.Sync = a.Name
	}
	if runID != 0 {
		out.Body.URL = fmt.Sprintf("%s/runs/%d", Prefix, runID)
	}
	return out
}
