package api

import (
	"context"
	"sort"

	"github.com/ferry-sync/ferry/api/projects"
)

// Files is a project folder: each file's content by its path.
type Files map[string]string

type exportOut struct {
	Body struct {
		Version int64 `json:"version"`
		Files   Files `json:"files" doc:"ferry.yaml and the files under syncs/, by path."`
	}
}

func (s *Server) export(ctx context.Context, _ *struct{}) (*exportOut, error) {
	v, err := s.opts.Projects.Version(ctx)
	if err != nil {
		return nil, fail(err)
	}
	files, err := s.opts.Projects.Files(ctx)
	if err != nil {
		return nil, fail(err)
	}
	out := &exportOut{}
	out.Body.Version, out.Body.Files = v, Files{}
	for p, c := range files {
		out.Body.Files[p] = string(c)
	}
	return out, nil
}

type importInput struct {
	Body struct {
		Files  Files `json:"files" required:"true"`
		DryRun bool  `json:"dry_run,omitempty" doc:"Show what would change; change nothing."`
	}
}

// importFiles replaces the configuration with a project folder's files,
// checked as a whole first; a dry run returns the diff only.
func (s *Server) importFiles(ctx context.Context, in *importInput) (*changedOut, error) {
	files := make(map[string][]byte, len(in.Body.Files))
	for p, c := range in.Body.Files {
		files[p] = []byte(c)
	}
	cs, err := s.opts.Projects.Replace(ctx, files, actor(ctx), "import", in.Body.DryRun)
	if err != nil {
		return nil, fail(err)
	}
	return changed(cs), nil
}

type historyInput struct {
	Path   string `query:"path" doc:"Only this file's changes."`
	Before int64  `query:"before" doc:"The cursor: changes older than this id."`
	Limit  int    `query:"limit" minimum:"1" maximum:"500" default:"50"`
}

// Change is one change of one file of the configuration.
type Change struct {
	ID      int64  `json:"id"`
	Version int64  `json:"version"`
	Path    string `json:"path"`
	Actor   string `json:"actor"`
	Reason  string `json:"reason"`
	At      string `json:"at"`
	Diff    string `json:"diff"`
}

type historyOut struct {
	Body struct {
		Changes []Change `json:"changes"`
		Next    int64    `json:"next,omitempty"`
	}
}

func (s *Server) history(ctx context.Context, in *historyInput) (*historyOut, error) {
	limit := in.Limit
	if limit == 0 {
		limit = 50
	}
	rows, err := s.opts.Projects.History(ctx, in.Path, in.Before, limit)
	if err != nil {
		return nil, fail(err)
	}
	out := &historyOut{}
	out.Body.Changes = []Change{}
	for _, r := range rows {
		out.Body.Changes = append(out.Body.Changes, Change{ID: r.ID, Version: r.Version, Path: r.Path, Actor: r.Actor, Reason: r.Reason,
			At: r.ChangedAt.UTC().Format("2006-01-02T15:04:05Z"), Diff: projects.Diff(r.Path, r.ContentBefore, r.ContentAfter)})
	}
	if len(rows) == limit {
		out.Body.Next = rows[len(rows)-1].ID
	}
	sort.SliceStable(out.Body.Changes, func(i, j int) bool { return out.Body.Changes[i].ID > out.Body.Changes[j].ID })
	return out, nil
}

type versionInput struct {
	Version int64 `path:"version"`
}

func (s *Server) revert(ctx context.Context, in *versionInput) (*changedOut, error) {
	cs, err := s.opts.Projects.Revert(ctx, in.Version, actor(ctx))
	if err != nil {
		return nil, fail(err)
	}
	return changed(cs), nil
}
