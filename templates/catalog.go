package templates

import (
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
)

// shippedFiles are the templates Ferry ships, one folder each under
// shipped/ (template.yaml, README.md, project/, fixtures/).
//
//go:embed all:shipped
var shippedFiles embed.FS

// OriginShipped and OriginStored name where a template came from: the
// binary, or the server's warehouse (a folder's path otherwise).
const (
	OriginShipped = "shipped"
	OriginStored  = "stored"
)

// Shipped returns the shipped templates, by name.
func Shipped() ([]*Template, error) {
	entries, err := fs.ReadDir(shippedFiles, "shipped")
	if err != nil {
		return nil, fmt.Errorf("listing shipped templates: %w", err)
	}
	var out []*Template
	for _, e := range entries {
		if !e.IsDir() {
			continue
		}
		t, err := LoadShipped(e.Name())
		if err != nil {
			return nil, err
		}
		out = append(out, t)
	}
	return out, nil
}

// LoadShipped returns one shipped template; ErrNotFound when there is none
// by that name.
func LoadShipped(name string) (*Template, error) {
	sub, err := fs.Sub(shippedFiles, "shipped/"+name)
	if err != nil || !validTemplateName(name) {
		return nil, fmt.Errorf("%w: %q", ErrNotFound, name)
	}
	if _, err := fs.Stat(sub, ManifestFile); err != nil {
		return nil, fmt.Errorf("%w: %q", ErrNotFound, name)
	}
	files, err := ReadFS(sub)
	if err != nil {
		return nil, fmt.Errorf("shipped template %s: %w", name, err)
	}
	t, err := Parse(files, OriginShipped)
	if err != nil {
		return nil, fmt.Errorf("shipped template %s: %w", name, err)
	}
	if t.Manifest.Name != name {
		return nil, &Error{Template: name, File: ManifestFile, Field: "name", Message: fmt.Sprintf("%q: a template folder is named after its template", t.Manifest.Name)}
	}
	return t, nil
}

// ErrNotFound says no template has the name asked for.
var ErrNotFound = errors.New("no template")

// Catalog finds templates: the shipped ones and those in folders a team
// keeps (each folder a template, or a folder of template folders).
type Catalog struct {
	Dirs []string
}

// List returns every template the catalog knows, by name. A folder's
// template may not take a shipped template's name.
func (c Catalog) List() ([]*Template, error) {
	all, err := Shipped()
	if err != nil {
		return nil, err
	}
	seen := map[string]string{}
	for _, t := range all {
		seen[t.Manifest.Name] = t.Origin
	}
	for _, dir := range c.Dirs {
		found, err := loadFolder(dir)
		if err != nil {
			return nil, err
		}
		for _, t := range found {
			if prev, dup := seen[t.Manifest.Name]; dup {
				return nil, fmt.Errorf("template %s in %s: %s has a template of that name: rename one", t.Manifest.Name, t.Origin, prev)
			}
			seen[t.Manifest.Name] = t.Origin
			all = append(all, t)
		}
	}
	sort.Slice(all, func(i, j int) bool { return all[i].Manifest.Name < all[j].Manifest.Name })
	return all, nil
}

// Find returns the template named name: a path to a template folder
// (./team/deals), else one of the catalog's.
func (c Catalog) Find(name string) (*Template, error) {
	if strings.ContainsAny(name, `/\`) || name == "." || name == ".." {
		if !IsTemplateDir(name) {
			return nil, fmt.Errorf("%w in %s: a template folder holds %s", ErrNotFound, name, ManifestFile)
		}
		return LoadDir(name)
	}
	all, err := c.List()
	if err != nil {
		return nil, err
	}
	var names []string
	for _, t := range all {
		if t.Manifest.Name == name {
			return t, nil
		}
		names = append(names, t.Manifest.Name)
	}
	return nil, fmt.Errorf("%w named %q (there are: %s; ferry template list shows them)", ErrNotFound, name, strings.Join(names, ", "))
}

// loadFolder reads the templates of dir: dir itself when it is a template
// folder, else its subfolders that are.
func loadFolder(dir string) ([]*Template, error) {
	if IsTemplateDir(dir) {
		t, err := LoadDir(dir)
		if err != nil {
			return nil, err
		}
		return []*Template{t}, nil
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("reading the templates folder %s: %w", dir, err)
	}
	var out []*Template
	for _, e := range entries {
		sub := filepath.Join(dir, e.Name())
		if e.IsDir() && IsTemplateDir(sub) {
			t, err := LoadDir(sub)
			if err != nil {
				return nil, err
			}
			out = append(out, t)
		}
	}
	return out, nil
}

func validTemplateName(name string) bool {
	if name == "" || len(name) > 63 {
		return false
	}
	for _, r := range name {
		if !(r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '_') {
			return false
		}
	}
	return true
}
