package templates

import (
	"embed"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
)

//go:embed all:demo
var files embed.FS

// Names lists the shipped templates.
func Names() ([]string, error) {
	entries, err := fs.ReadDir(files, ".")
	if err != nil {
		return nil, fmt.Errorf("listing templates: %w", err)
	}
	var out []string
	for _, e := range entries {
		if e.IsDir() {
			out = append(out, e.Name())
		}
	}
	sort.Strings(out)
	return out, nil
}

// FS returns the files of one template.
func FS(name string) (fs.FS, error) {
	sub, err := fs.Sub(files, name)
	if err != nil {
		return nil, fmt.Errorf("template %s: %w", name, err)
	}
	if _, err := fs.Stat(sub, "ferry.yaml"); err != nil {
		return nil, fmt.Errorf("no template named %q", name)
	}
	return sub, nil
}

// ReadFile reads one file of a template.
func ReadFile(name, path string) ([]byte, error) {
	t, err := FS(name)
	if err != nil {
		return nil, err
	}
	return fs.ReadFile(t, path)
}

// CopyTo writes a template's files into dir (created if needed) and returns
// how many it wrote. Existing files are left alone unless overwrite is set,
// so a user's edits are never lost.
func CopyTo(name, dir string, overwrite bool) (int, error) {
	t, err := FS(name)
	if err != nil {
		return 0, err
	}
	n := 0
	err = fs.WalkDir(t, ".", func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		dst := filepath.Join(dir, filepath.FromSlash(path))
		if d.IsDir() {
			return os.MkdirAll(dst, 0o755)
		}
		if _, err := os.Stat(dst); err == nil && !overwrite {
			return nil
		}
		b, err := fs.ReadFile(t, path)
		if err != nil {
			return err
		}
		n++
		return os.WriteFile(dst, b, 0o644)
	})
	if err != nil {
		return n, fmt.Errorf("copying template %s to %s: %w", name, dir, err)
	}
	return n, nil
}
