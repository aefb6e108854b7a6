package templates

import (
	"fmt"
	"path"
	"sort"
	"strings"

	"github.com/pmezard/go-difflib/difflib"
	"go.yaml.in/yaml/v3"

	"github.com/ferry-sync/ferry/engine/project"
)

// Instance is one use of a template in a project: the files whose headers
// name it, with the version and values they were written with.
type Instance struct {
	Template string
	Version  int
	Values   Values
	// Files are the files it wrote (their headers) by path.
	Files map[string]Header
}

// Instances finds the template instances of a project's files (by path),
// from their headers: one per template and values.
func Instances(files map[string][]byte) []*Instance {
	byKey := map[string]*Instance{}
	var out []*Instance
	for _, p := range sortedPaths(files) {
		h, _, ok := ParseHeader(files[p])
		if !ok {
			continue
		}
		key := fmt.Sprintf("%s %d %v", h.Template, h.Version, ValuesText(h.Values))
		inst, ok := byKey[key]
		if !ok {
			inst = &Instance{Template: h.Template, Version: h.Version, Values: h.Values, Files: map[string]Header{}}
			byKey[key] = inst
			out = append(out, inst)
		}
		inst.Files[p] = h
	}
	return out
}

// File states of a diff.
const (
	DiffUpToDate = "up to date"       // the template writes it as it did
	DiffChanged  = "changed upstream" // the template writes it otherwise now
	DiffNew      = "new upstream"     // the template writes it now; the project lacks it
	DiffRemoved  = "removed upstream" // the template no longer writes it
	DiffMissing  = "missing"          // the template writes it as it did; the project lacks it
)

// FileDiff is one file of a template instance, compared with what the
// template writes now.
type FileDiff struct {
	Path  string `json:"path"`
	State string `json:"state"`
	// Edited says the project's file is no longer what the template wrote:
	// replacing it (new --force) would lose those edits.
	Edited bool `json:"edited"`
	// Diff is from the project's file to the template's, unified.
	Diff string `json:"diff,omitempty"`
}

// DiffReport compares a template instance with the template as it is now.
type DiffReport struct {
	Template string     `json:"template"`
	Was      int        `json:"was"` // the version the files were written by
	Now      int        `json:"now"`
	Values   Values     `json:"values"`
	Files    []FileDiff `json:"files"`
	// Entries are the template's ferry.yaml entries and whether the
	// project has them as the template writes them (same), otherwise
	// (differs), or not at all (missing).
	Entries []ProjectEntry `json:"entries,omitempty"`
}

// Upstream says whether the template changed anything since.
func (d *DiffReport) Upstream() bool {
	for _, f := range d.Files {
		if f.State == DiffChanged || f.State == DiffNew || f.State == DiffRemoved {
			return true
		}
	}
	return false
}

// Diff compares an instance found in a project (files by path) with the
// template t as it is now, rendered with the instance's values (new
// parameters take their defaults).
func Diff(inst *Instance, t *Template, files map[string][]byte) (*DiffReport, error) {
	vals, err := t.Resolve(knownValues(t, inst.Values))
	if err != nil {
		return nil, fmt.Errorf("template %s v%d needs values the files of v%d lack: %w", t.Manifest.Name, t.Manifest.Version, inst.Version, err)
	}
	r, err := t.Render(vals)
	if err != nil {
		return nil, err
	}
	rep := &DiffReport{Template: t.Manifest.Name, Was: inst.Version, Now: t.Manifest.Version, Values: vals}
	paths := map[string]bool{}
	for p := range inst.Files {
		paths[p] = true
	}
	for p := range r.Files {
		paths[p] = true
	}
	for _, p := range sortedPaths(paths) {
		recorded, had := inst.Files[p]
		now, has := r.Files[p]
		cur, exists := files[p]
		_, curBody, _ := ParseHeader(cur)
		_, nowBody, _ := ParseHeader(now)
		fd := FileDiff{Path: p}
		switch {
		case !had && !exists:
			fd.State = DiffNew
			fd.Diff = unified(p, nil, nowBody)
		case !had:
			// The project has a file by that name the instance did not write.
			fd.State, fd.Edited = DiffNew, true
			fd.Diff = unified(p, cur, now)
		case !has:
			fd.State = DiffRemoved
			fd.Edited = hashBody(curBody) != recorded.Hash
		case !exists:
			fd.State = DiffMissing
		default:
			fd.Edited = hashBody(curBody) != recorded.Hash
			fd.State = DiffUpToDate
			if hashBody(nowBody) != recorded.Hash {
				fd.State = DiffChanged
				fd.Diff = unified(p, curBody, nowBody)
			}
		}
		rep.Files = append(rep.Files, fd)
	}
	if len(r.ProjectYAML) > 0 {
		_, entries, err := mergeProjectYAML(orEmptyMapping(files[project.ProjectFile]), r.ProjectYAML, "", false)
		if err != nil {
			return nil, err
		}
		for i := range entries {
			// Said of a project, not of a merge.
			switch entries[i].Op {
			case EntryAdded:
				entries[i].Op = EntryMissing
			case EntryKept:
				entries[i].Op = EntryDiffers
			}
		}
		rep.Entries = entries
	}
	return rep, nil
}

// orEmptyMapping keeps a missing ferry.yaml from reading as a new project
// (whose entries would all be "added" verbatim).
func orEmptyMapping(b []byte) []byte {
	if len(strings.TrimSpace(string(b))) == 0 {
		out, _ := yaml.Marshal(map[string]any{})
		return out
	}
	return b
}

// knownValues keeps the values a template still takes, as text.
func knownValues(t *Template, vals Values) map[string]string {
	out := map[string]string{}
	for k, v := range ValuesText(vals) {
		if _, ok := t.Manifest.param(k); ok {
			out[k] = v
		}
	}
	return out
}

func unified(name string, a, b []byte) string {
	text, err := difflib.GetUnifiedDiffString(difflib.UnifiedDiff{
		A: difflib.SplitLines(string(a)), B: difflib.SplitLines(string(b)),
		FromFile: "project/" + name, ToFile: "template/" + name, Context: 2,
	})
	if err != nil {
		return ""
	}
	return text
}

// ReadProjectDir reads the files of a project folder templates may have
// written: ferry.yaml and every .yaml, .yml, .sql and .star file below it
// (hidden folders aside).
func ReadProjectDir(dir string) (map[string][]byte, error) {
	return project.ReadFiles(dir, func(p string) bool {
		switch path.Ext(p) {
		case ".yaml", ".yml", ".sql", ".star":
			return true
		}
		return false
	})
}

// SortReports orders diff reports by template.
func SortReports(reps []*DiffReport) {
	sort.Slice(reps, func(i, j int) bool { return reps[i].Template < reps[j].Template })
}
