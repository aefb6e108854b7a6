package templates

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"go.yaml.in/yaml/v3"

	"github.com/ferry-sync/ferry/engine/project"
)

// File ops of an instantiation.
const (
	FileCreated     = "created"     // a new file
	FileOverwritten = "overwritten" // replaced (force)
	FileUnchanged   = "unchanged"   // the project has it already, byte for byte
)

// FileOp is what instantiating did (or would do) to one project file.
type FileOp struct {
	Path string `json:"path"`
	Op   string `json:"op"`
}

// Applied is what instantiating a template does to a project: the files to
// write (content by path) and a report of every file and ferry.yaml entry.
type Applied struct {
	Changes map[string][]byte
	Files   []FileOp
	Entries []ProjectEntry
	// Notes are what the user must do by hand.
	Notes []string
}

// ConflictError says which files a template would overwrite: a user's
// files are never replaced without force.
type ConflictError struct {
	Template string
	Paths    []string
}

func (e *ConflictError) Error() string {
	return fmt.Sprintf("template %s would overwrite %s, which the project has already (and which differ): move them away, or pass --force to replace them",
		e.Template, strings.Join(e.Paths, ", "))
}

// Apply says what instantiating r into a project whose files are existing
// (by path; only the files r writes and ferry.yaml are looked at) changes.
// Files the project has with other content are a *ConflictError unless
// force; ferry.yaml gets the entries it lacks (see mergeProjectYAML).
func (r *Rendered) Apply(existing map[string][]byte, force bool) (*Applied, error) {
	a := &Applied{Changes: map[string][]byte{}}
	var conflicts []string
	for _, p := range sortedPaths(r.Files) {
		content := r.Files[p]
		old, has := existing[p]
		switch {
		case !has:
			a.Files = append(a.Files, FileOp{Path: p, Op: FileCreated})
			a.Changes[p] = content
		case bytes.Equal(old, content):
			a.Files = append(a.Files, FileOp{Path: p, Op: FileUnchanged})
		case force:
			a.Files = append(a.Files, FileOp{Path: p, Op: FileOverwritten})
			a.Changes[p] = content
		default:
			conflicts = append(conflicts, p)
		}
	}
	if len(conflicts) > 0 {
		return nil, &ConflictError{Template: r.Template, Paths: conflicts}
	}
	if dir := syncsDir(existing[project.ProjectFile]); dir != "" && dir != "syncs" {
		for _, f := range a.Files {
			if strings.HasPrefix(f.Path, "syncs/") {
				a.Notes = append(a.Notes, fmt.Sprintf("%s reads sync files from %s/ (syncs_dir): move %s there", project.ProjectFile, dir, f.Path))
			}
		}
	}
	if len(r.ProjectYAML) > 0 {
		label := fmt.Sprintf("from template %s v%d", r.Template, r.Version)
		merged, entries, err := mergeProjectYAML(existing[project.ProjectFile], r.ProjectYAML, label, force)
		if err != nil {
			return nil, err
		}
		a.Entries = entries
		if merged != nil {
			a.Changes[project.ProjectFile] = merged
		}
	}
	return a, nil
}

// syncsDir is the syncs_dir a project's ferry.yaml sets ("" when none).
func syncsDir(projectYAML []byte) string {
	var p struct {
		SyncsDir string `yaml:"syncs_dir"`
	}
	if yaml.Unmarshal(projectYAML, &p) != nil {
		return ""
	}
	return strings.TrimSuffix(p.SyncsDir, "/")
}

// ReadProject reads the files of a project folder that a rendering would
// touch: ferry.yaml and the files it writes (missing ones are left out).
func (r *Rendered) ReadProject(dir string) (map[string][]byte, error) {
	out := map[string][]byte{}
	paths := append(sortedPaths(r.Files), project.ProjectFile)
	for _, p := range paths {
		b, err := os.ReadFile(filepath.Join(dir, filepath.FromSlash(p)))
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("reading %s: %w", p, err)
		}
		out[p] = b
	}
	return out, nil
}

// WriteDir writes files (content by slash path) into dir, making folders
// as needed.
func WriteDir(dir string, files map[string][]byte) error {
	for _, p := range sortedPaths(files) {
		if err := checkProjectPath(p); err != nil {
			return err
		}
		full := filepath.Join(dir, filepath.FromSlash(p))
		if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
			return fmt.Errorf("writing %s: %w", p, err)
		}
		if err := os.WriteFile(full, files[p], 0o644); err != nil {
			return fmt.Errorf("writing %s: %w", p, err)
		}
	}
	return nil
}

// Instantiate renders t with the values set and writes it into the
// project folder dir (made when missing): see Apply. Nothing is written
// when a parameter is wrong or a file would be overwritten.
func Instantiate(t *Template, set map[string]string, dir string, force bool) (*Rendered, *Applied, error) {
	vals, err := t.Resolve(set)
	if err != nil {
		return nil, nil, err
	}
	r, err := t.Render(vals)
	if err != nil {
		return nil, nil, err
	}
	existing, err := r.ReadProject(dir)
	if err != nil {
		return nil, nil, err
	}
	a, err := r.Apply(existing, force)
	if err != nil {
		return r, nil, err
	}
	if err := WriteDir(dir, a.Changes); err != nil {
		return r, nil, err
	}
	return r, a, nil
}
