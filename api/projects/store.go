// Package projects owns the project a Ferry server keeps: the same files a
// project folder holds (ferry.yaml, syncs/*.yaml, .sql, .star), stored in
// ferry.project_files, so that one source of truth serves the API, every
// replica and git alike. Every change is one version with its history (who,
// when, before and after, why), checked as a whole before it is committed,
// and revertible. ferry import and ferry export move the files between a
// folder and the store byte for byte.
//
// The one thing to know: the store never holds a project that does not
// load. A change is applied to a copy of the files, loaded and checked like
// a folder, and committed only then.
package projects

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strings"
	"sync"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/pmezard/go-difflib/difflib"

	"github.com/ferry-sync/ferry/engine/project"
	"github.com/ferry-sync/ferry/queries"
)

// Store keeps a project's files in the warehouse and serves the project to
// the engine (engine.Projects), reloading it when its version moves.
type Store struct {
	db    *pgxpool.Pool
	q     *queries.Queries
	kinds project.Kinds
	dir   string // where versions are written out to be loaded

	mu      sync.Mutex
	version int64
	current *project.Project
}

// NewStore returns the store over db. kinds checks connection settings;
// cacheDir is where it writes versions out to load them ("" for a
// temporary folder).
func NewStore(db *pgxpool.Pool, kinds project.Kinds, cacheDir string) (*Store, error) {
	if cacheDir == "" {
		var err error
		if cacheDir, err = os.MkdirTemp("", "ferry-project-"); err != nil {
			return nil, fmt.Errorf("making a folder for the project: %w", err)
		}
	}
	return &Store{db: db, q: queries.New(db), kinds: kinds, dir: cacheDir, version: -1}, nil
}

// Close removes the versions written out.
func (s *Store) Close() error { return os.RemoveAll(s.dir) }

// Project returns the project as it is now, loading it again only when its
// version moved (one small query per call).
func (s *Store) Project(ctx context.Context) (*project.Project, error) {
	v, err := s.q.ProjectVersionGet(ctx)
	if err != nil {
		return nil, fmt.Errorf("reading the project's version: %w", err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if v == s.version && s.current != nil {
		return s.current, nil
	}
	files, err := s.files(ctx, s.q)
	if err != nil {
		return nil, err
	}
	p, err := s.load(v, files)
	if err != nil {
		return nil, fmt.Errorf("the stored project (version %d) does not load: %w", v, err)
	}
	s.version, s.current = v, p
	return p, nil
}

// Version is the project's current version.
func (s *Store) Version(ctx context.Context) (int64, error) {
	return s.q.ProjectVersionGet(ctx)
}

// Files returns the project's files by path.
func (s *Store) Files(ctx context.Context) (map[string][]byte, error) {
	return s.files(ctx, s.q)
}

func (s *Store) files(ctx context.Context, q *queries.Queries) (map[string][]byte, error) {
	rows, err := q.ProjectFileList(ctx)
	if err != nil {
		return nil, fmt.Errorf("reading the project's files: %w", err)
	}
	out := make(map[string][]byte, len(rows))
	for _, r := range rows {
		out[r.Path] = r.Content
	}
	return out, nil
}

// load writes files out to a folder of their own and loads it as a project.
func (s *Store) load(version int64, files map[string][]byte) (*project.Project, error) {
	if len(files) == 0 {
		// A server that nothing was imported into yet: an empty project.
		return project.New(s.kinds, nil)
	}
	dir, err := os.MkdirTemp(s.dir, fmt.Sprintf("v%d-", version))
	if err != nil {
		return nil, fmt.Errorf("writing the project out: %w", err)
	}
	if err := WriteDir(dir, files); err != nil {
		return nil, err
	}
	return project.Load(dir, s.kinds)
}

// FileChange is what a change does to one file.
type FileChange struct {
	Path string `json:"path"`
	Op   string `json:"op"`             // added, changed, deleted
	Diff string `json:"diff,omitempty"` // a unified diff of a text file
}

// ChangeSet is what a change did (or, dry, would do).
type ChangeSet struct {
	Version int64        `json:"version"` // the new version (the current one for a dry run or no change)
	Files   []FileChange `json:"files"`
}

// Change applies file changes (content nil deletes the file) as one
// version: the project they make must load, or nothing is changed and the
// error (errors.Join of *project.ConfigError) says why. A dry run checks and
// reports without writing. actor and reason go to the history.
func (s *Store) Change(ctx context.Context, changes map[string][]byte, actor, reason string, dryRun bool) (*ChangeSet, error) {
	return s.ChangeChecked(ctx, changes, actor, reason, dryRun, nil)
}

// ChangeChecked is Change with one more check: check (when not nil) gets
// the folder the change makes, written out, and may refuse it (a script
// that loads, a library no sync names).
func (s *Store) ChangeChecked(ctx context.Context, changes map[string][]byte, actor, reason string, dryRun bool, check func(dir string) error) (*ChangeSet, error) {
	for p := range changes {
		if err := checkPath(p); err != nil {
			return nil, err
		}
	}
	var cs *ChangeSet
	err := pgx.BeginFunc(ctx, s.db, func(tx pgx.Tx) error {
		q := s.q.WithTx(tx)
		// The version row is the project's write lock: changes queue.
		version, err := q.ProjectVersionBump(ctx)
		if err != nil {
			return fmt.Errorf("locking the project: %w", err)
		}
		before, err := s.files(ctx, q)
		if err != nil {
			return err
		}
		after := make(map[string][]byte, len(before))
		for p, c := range before {
			after[p] = c
		}
		for p, c := range changes {
			if c == nil {
				delete(after, p)
			} else {
				after[p] = c
			}
		}
		cs = &ChangeSet{Version: version - 1, Files: diff(before, after)}
		if len(cs.Files) == 0 {
			return errNoChange
		}
		p, err := s.load(version, after)
		if err != nil {
			return err
		}
		if check != nil && p.Dir != "" {
			if err := check(p.Dir); err != nil {
				return err
			}
		}
		if dryRun {
			return errNoChange
		}
		cs.Version = version
		for _, fc := range cs.Files {
			var old, new []byte
			if b, ok := before[fc.Path]; ok {
				old = b
			}
			if a, ok := after[fc.Path]; ok {
				new = a
			}
			if new == nil {
				if _, err := q.ProjectFileDelete(ctx, fc.Path); err != nil {
					return fmt.Errorf("deleting %s: %w", fc.Path, err)
				}
			} else if err := q.ProjectFilePut(ctx, queries.ProjectFilePutParams{Path: fc.Path, Content: new, Actor: actor}); err != nil {
				return fmt.Errorf("writing %s: %w", fc.Path, err)
			}
			if err := q.ProjectHistoryAdd(ctx, queries.ProjectHistoryAddParams{
				Version: version, Path: fc.Path, ContentBefore: old, ContentAfter: new, Actor: actor, Reason: reason,
			}); err != nil {
				return fmt.Errorf("recording the change of %s: %w", fc.Path, err)
			}
		}
		return nil
	})
	if errors.Is(err, errNoChange) {
		return cs, nil
	}
	if err != nil {
		return nil, err
	}
	return cs, nil
}

// errNoChange rolls a change back that wrote nothing (dry, or no change).
var errNoChange = errors.New("no change")

// Replace makes the project exactly files (an import): files it lacks are
// deleted.
func (s *Store) Replace(ctx context.Context, files map[string][]byte, actor, reason string, dryRun bool) (*ChangeSet, error) {
	current, err := s.Files(ctx)
	if err != nil {
		return nil, err
	}
	changes := make(map[string][]byte, len(files))
	for p := range current {
		if _, keep := files[p]; !keep {
			changes[p] = nil
		}
	}
	for p, c := range files {
		changes[p] = c
	}
	return s.Change(ctx, changes, actor, reason, dryRun)
}

// Revert undoes one version: every file it touched goes back to what it was
// before, as a new version.
func (s *Store) Revert(ctx context.Context, version int64, actor string) (*ChangeSet, error) {
	rows, err := s.q.ProjectHistoryVersion(ctx, version)
	if err != nil {
		return nil, fmt.Errorf("reading version %d: %w", version, err)
	}
	if len(rows) == 0 {
		return nil, fmt.Errorf("%w: no version %d in the project's history", ErrNotFound, version)
	}
	changes := make(map[string][]byte, len(rows))
	for _, r := range rows {
		changes[r.Path] = r.ContentBefore
	}
	return s.Change(ctx, changes, actor, fmt.Sprintf("revert version %d", version), false)
}

// ErrNotFound says a version or file does not exist.
var ErrNotFound = errors.New("not found")

// History is one change of one file.
type History = queries.FerryProjectHistory

// History lists changes newest first: of one file (path) or all (""),
// before the change with id before (0: from the newest), at most limit.
func (s *Store) History(ctx context.Context, path string, before int64, limit int) ([]History, error) {
	rows, err := s.q.ProjectHistoryList(ctx, queries.ProjectHistoryListParams{Path: path, BeforeID: before, MaxRows: int32(limit)})
	if err != nil {
		return nil, fmt.Errorf("reading the project's history: %w", err)
	}
	return rows, nil
}

// diff says which files differ between two sets, in path order.
func diff(before, after map[string][]byte) []FileChange {
	paths := map[string]bool{}
	for p := range before {
		paths[p] = true
	}
	for p := range after {
		paths[p] = true
	}
	sorted := make([]string, 0, len(paths))
	for p := range paths {
		sorted = append(sorted, p)
	}
	sort.Strings(sorted)
	var out []FileChange
	for _, p := range sorted {
		b, had := before[p]
		a, has := after[p]
		switch {
		case !had:
			out = append(out, FileChange{Path: p, Op: "added", Diff: unified(p, nil, a)})
		case !has:
			out = append(out, FileChange{Path: p, Op: "deleted", Diff: unified(p, b, nil)})
		case !bytes.Equal(a, b):
			out = append(out, FileChange{Path: p, Op: "changed", Diff: unified(p, b, a)})
		}
	}
	return out
}

// Diff is a unified diff of one file's change (nil: absent).
func Diff(name string, before, after []byte) string { return unified(name, before, after) }

func unified(name string, a, b []byte) string {
	text, err := difflib.GetUnifiedDiffString(difflib.UnifiedDiff{
		A: difflib.SplitLines(string(a)), B: difflib.SplitLines(string(b)),
		FromFile: "a/" + name, ToFile: "b/" + name, Context: 2,
	})
	if err != nil {
		return ""
	}
	return text
}

// checkPath refuses paths that are not a project's: absolute, escaping,
// hidden, or of a kind a project does not hold.
func checkPath(p string) error {
	clean := path.Clean(p)
	if clean != p || strings.HasPrefix(p, "/") || strings.HasPrefix(p, "../") || p == ".." || strings.Contains(p, "/.") || strings.HasPrefix(p, ".") {
		return fmt.Errorf("file %q: a project file's path is relative, clean and not hidden (like syncs/contacts.yaml)", p)
	}
	if !projectFile(p) {
		return fmt.Errorf("file %q: a project holds %s and files under its syncs folder ending in .yaml, .yml, .sql or .star", p, project.ProjectFile)
	}
	return nil
}

// projectFile says whether a path is one a project folder keeps.
func projectFile(p string) bool {
	if p == project.ProjectFile {
		return true
	}
	switch path.Ext(p) {
	case ".yaml", ".yml", ".sql", ".star":
		return strings.Contains(p, "/")
	}
	return false
}

// ReadDir reads a project folder's files: ferry.yaml and every .yaml,
// .yml, .sql and .star file below the folder (hidden ones and .git aside).
func ReadDir(dir string) (map[string][]byte, error) {
	files, err := project.ReadFiles(dir, projectFile)
	if err != nil {
		return nil, err
	}
	if _, ok := files[project.ProjectFile]; !ok {
		return nil, &project.ConfigError{File: filepath.Join(dir, project.ProjectFile), Message: "not found: a project folder holds " + project.ProjectFile + " and a syncs/ folder"}
	}
	return files, nil
}

// WriteDir writes files into dir, making folders as needed.
func WriteDir(dir string, files map[string][]byte) error {
	for p, c := range files {
		if err := checkPath(p); err != nil {
			return err
		}
		full := filepath.Join(dir, filepath.FromSlash(p))
		if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
			return fmt.Errorf("writing %s: %w", p, err)
		}
		if err := os.WriteFile(full, c, 0o644); err != nil {
			return fmt.Errorf("writing %s: %w", p, err)
		}
	}
	return nil
}
