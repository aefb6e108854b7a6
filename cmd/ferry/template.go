package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"

	"github.com/ferry-sync/ferry/engine/project"
	"github.com/ferry-sync/ferry/templates"
)

// templateCmd lists, shows, instantiates and compares templates: bundles
// of sync files, scope queries and scripts with typed parameters, which a
// project starts from and then owns.
type templateCmd struct {
	List templateListCmd `cmd:"" help:"List the templates: Ferry's own and those of --templates folders."`
	Show templateShowCmd `cmd:"" help:"Show a template's parameters, the files it writes and what it does."`
	New  templateNewCmd  `cmd:"" help:"Write a template's files into a project folder, its parameters set."`
	Diff templateDiffCmd `cmd:"" help:"Show what changed in the templates a project's files came from."`
}

func (templateCmd) Help() string {
	return `A template is a folder: template.yaml (typed parameters), the sync files, scope queries and scripts it writes, their tests, and a README. Ferry ships templates for the spec's patterns; a team keeps its own in folders (--templates DIR, or FERRY_TEMPLATES) or on the server (the API's /templates).

Examples:

    ferry template list
    ferry template show contacts_people
    ferry template new contacts_people ./my-project --set vip_stage=customer
    ferry template diff ./my-project`
}

// templateDirs names the folders of a team's templates.
type templateDirs struct {
	Templates []string `name:"templates" env:"FERRY_TEMPLATES" sep:":" help:"Folders of a team's templates: a template folder, or a folder of them (several: separated by :)." placeholder:"DIR"`
}

func (d templateDirs) catalog() templates.Catalog { return templates.Catalog{Dirs: d.Templates} }

// find returns a template; one that does not exist or does not load is a
// usage error.
func (d templateDirs) find(name string) (*templates.Template, error) {
	t, err := d.catalog().Find(name)
	if err != nil {
		return nil, templateError(err)
	}
	return t, nil
}

// templateError makes the errors a user fixes on the command line (a
// name, a value, a file in the way) usage errors: exit 2.
func templateError(err error) error {
	var pe *templates.ParamError
	var ce *templates.ConflictError
	var te *templates.Error
	if errors.Is(err, templates.ErrNotFound) || errors.As(err, &pe) || errors.As(err, &ce) || errors.As(err, &te) {
		return usageError{err.Error()}
	}
	return err
}

// ---- template list

type templateListCmd struct {
	templateDirs
}

func (templateListCmd) Help() string {
	return `Examples:

    ferry template list
    ferry template list --templates ./team-templates`
}

func (cmd *templateListCmd) Run(c *cli) error {
	all, err := cmd.catalog().List()
	if err != nil {
		return templateError(err)
	}
	tw := tabwriter.NewWriter(c.stdout, 2, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "NAME\tVERSION\tWHAT IT DOES")
	for _, t := range all {
		title := t.Manifest.Title
		if t.Origin != templates.OriginShipped {
			title += " (" + t.Origin + ")"
		}
		fmt.Fprintf(tw, "%s\tv%d\t%s\n", t.Manifest.Name, t.Manifest.Version, title)
	}
	tw.Flush()
	fmt.Fprintf(c.stdout, "\n%d templates. ferry template show NAME says what one writes; ferry template new NAME DIR writes it.\n", len(all))
	return nil
}

// ---- template show

type templateShowCmd struct {
	templateDirs
	Name string `arg:"" help:"The template: a name from ferry template list, or a template folder's path."`
}

func (templateShowCmd) Help() string {
	return `Examples:

    ferry template show contacts_people
    ferry template show ./team-templates/hubspot_deals`
}

func (cmd *templateShowCmd) Run(c *cli) error {
	t, err := cmd.find(cmd.Name)
	if err != nil {
		return err
	}
	printTemplate(c.stdout, t)
	return nil
}

func printTemplate(w io.Writer, t *templates.Template) {
	m := t.Manifest
	fmt.Fprintf(w, "%s v%d (%s): %s\n\n", m.Name, m.Version, t.Origin, m.Title)
	fmt.Fprintln(w, wrap(m.Description, 78, ""))
	if m.Pattern != "" {
		fmt.Fprintf(w, "\nThe spec's pattern: %s\n", m.Pattern)
	}
	fmt.Fprintln(w, "\nParameters (--set name=value):")
	tw := tabwriter.NewWriter(w, 2, 4, 2, ' ', 0)
	for _, p := range m.Parameters {
		def := "(required)"
		if !p.Required() {
			def = "default " + fmt.Sprint(p.Default)
		}
		typ := string(p.Type)
		if p.Type == templates.TypeEnum {
			typ += " " + strings.Join(p.Values, "|")
		}
		fmt.Fprintf(tw, "  %s\t%s\t%s\t%s\n", p.Name, typ, def, p.Description)
	}
	tw.Flush()
	fmt.Fprintln(w, "\nWrites (each file starts with a line naming the template, its version and values):")
	for _, p := range t.Creates() {
		fmt.Fprintf(w, "  %s\n", p)
	}
	if vals, err := t.Resolve(nil); err == nil {
		if r, err := t.Render(vals); err == nil {
			if a, err := r.Apply(nil, false); err == nil && len(a.Entries) > 0 {
				fmt.Fprintln(w, "Adds to ferry.yaml (entries the project lacks; its own are kept):")
				for _, e := range a.Entries {
					fmt.Fprintf(w, "  %s\n", e.Key)
				}
			}
		}
	}
	if readme := strings.TrimSpace(t.Readme()); readme != "" {
		fmt.Fprintf(w, "\n%s\n", readme)
	}
	fmt.Fprintf(w, "\nWrite it into a project folder:\n\n    ferry template new %s ./my-project", m.Name)
	for _, p := range m.Parameters {
		if p.Required() {
			fmt.Fprintf(w, " --set %s=…", p.Name)
		}
	}
	fmt.Fprintln(w)
}

// wrap folds text at width, each line after the first indented.
func wrap(text string, width int, indent string) string {
	var b strings.Builder
	n := 0
	for _, word := range strings.Fields(text) {
		if n > 0 && n+1+len(word) > width {
			b.WriteString("\n" + indent)
			n = len(indent)
		} else if n > 0 {
			b.WriteByte(' ')
			n++
		}
		b.WriteString(word)
		n += len(word)
	}
	return b.String()
}

// ---- template new

type templateNewCmd struct {
	templateDirs
	Name   string   `arg:"" help:"The template: a name from ferry template list, or a template folder's path."`
	Dir    string   `arg:"" optional:"" help:"The project folder to write into, made when missing (default: --project)."`
	Set    []string `short:"s" sep:"none" help:"A parameter's value, name=value (repeat for more; ferry template show lists them)." placeholder:"NAME=VALUE"`
	Force  bool     `help:"Replace files the project has already, and ferry.yaml entries that differ from the template's."`
	DryRun bool     `name:"dry-run" help:"Say what would be written; write nothing."`
}

func (templateNewCmd) Help() string {
	return `The files are yours from then on: edit them, keep them in git. A file the project has already is never replaced without --force; ferry.yaml gets the connections, groups and scripts it lacks, comments and all, and a connection you have otherwise is kept. Every file starts with a line naming the template, its version and the values, which ferry template diff reads.

Examples:

    ferry template new contacts_people ./my-project
    ferry template new companies_contacts . --set every=15m --set erp_url_env=MY_ERP_URL
    ferry template new ./team-templates/hubspot_deals ./my-project --dry-run`
}

func (cmd *templateNewCmd) Run(c *cli) error {
	t, err := cmd.find(cmd.Name)
	if err != nil {
		return err
	}
	set := map[string]string{}
	for _, kv := range cmd.Set {
		k, v, ok := strings.Cut(kv, "=")
		if !ok || k == "" {
			return usageError{fmt.Sprintf("--set %q: write name=value", kv)}
		}
		if _, dup := set[k]; dup {
			return usageError{fmt.Sprintf("--set %s is given twice", k)}
		}
		set[k] = v
	}
	dir := cmd.Dir
	if dir == "" {
		dir = c.projectDir
	}
	vals, err := t.Resolve(set)
	if err != nil {
		return templateError(err)
	}
	r, err := t.Render(vals)
	if err != nil {
		return templateError(err)
	}
	existing, err := r.ReadProject(dir)
	if err != nil {
		return err
	}
	a, err := r.Apply(existing, cmd.Force)
	if err != nil {
		return templateError(err)
	}
	if !cmd.DryRun {
		if err := templates.WriteDir(dir, a.Changes); err != nil {
			return err
		}
	}
	printApplied(c.stdout, t, r, a, dir, cmd.DryRun)
	return nil
}

func printApplied(w io.Writer, t *templates.Template, r *templates.Rendered, a *templates.Applied, dir string, dry bool) {
	verb := "wrote"
	if dry {
		verb = "would write (dry run: nothing written)"
	}
	fmt.Fprintf(w, "template %s v%d %s into %s:\n", t.Manifest.Name, t.Manifest.Version, verb, dir)
	for _, f := range a.Files {
		fmt.Fprintf(w, "  %-12s %s\n", f.Op, f.Path)
	}
	for _, e := range a.Entries {
		switch e.Op {
		case templates.EntryKept:
			fmt.Fprintf(w, "  %-12s %s: %s: yours differs from the template's, which is (--force replaces yours):\n%s",
				"kept", project.ProjectFile, e.Key, indentLines(e.YAML, "      "))
		default:
			fmt.Fprintf(w, "  %-12s %s: %s\n", e.Op, project.ProjectFile, e.Key)
		}
	}
	for _, n := range a.Notes {
		fmt.Fprintf(w, "  NOTE: %s\n", n)
	}
	if len(r.Next) > 0 {
		fmt.Fprintf(w, "\nNext, in %s:\n", dir)
		for _, line := range r.Next {
			fmt.Fprintf(w, "  %s\n", line)
		}
	}
	fmt.Fprintln(w, "\nThe files are yours: edit them and keep them in git. `ferry template diff` shows what a newer version of the template changes.")
}

func indentLines(s, prefix string) string {
	var b strings.Builder
	for _, line := range strings.Split(strings.TrimRight(s, "\n"), "\n") {
		b.WriteString(prefix + line + "\n")
	}
	return b.String()
}

// ---- template diff

type templateDiffCmd struct {
	templateDirs
	Dir string `arg:"" optional:"" help:"The project folder (default: --project)."`
}

func (templateDiffCmd) Help() string {
	return `For every template a project's files came from (their first line names it), it compares the files with what the template writes now, with the same values: which changed upstream, which are new or gone, and which you edited (taking the template's version with ferry template new --force would lose those edits).

Examples:

    ferry template diff
    ferry template diff ./my-project --templates ./team-templates`
}

func (cmd *templateDiffCmd) Run(ctx context.Context, c *cli) error {
	dir := cmd.Dir
	if dir == "" {
		dir = c.projectDir
	}
	files, err := templates.ReadProjectDir(dir)
	if err != nil {
		return err
	}
	insts := templates.Instances(files)
	if len(insts) == 0 {
		fmt.Fprintf(c.stdout, "no file of %s came from a template (their first line would say so)\n", dir)
		return nil
	}
	for i, inst := range insts {
		if i > 0 {
			fmt.Fprintln(c.stdout)
		}
		vals, _ := json.Marshal(inst.Values)
		t, err := cmd.catalog().Find(inst.Template)
		if err != nil {
			fmt.Fprintf(c.stdout, "%s v%d with %s: %v (a team's template? pass --templates DIR)\n", inst.Template, inst.Version, vals, err)
			continue
		}
		rep, err := templates.Diff(inst, t, files)
		if err != nil {
			fmt.Fprintf(c.stdout, "%s v%d with %s: %v\n", inst.Template, inst.Version, vals, err)
			continue
		}
		printDiff(c.stdout, rep, vals)
	}
	return nil
}

func printDiff(w io.Writer, rep *templates.DiffReport, vals []byte) {
	status := "up to date"
	if rep.Upstream() {
		status = "changed upstream"
	}
	fmt.Fprintf(w, "%s: written by v%d, now v%d, with %s: %s\n", rep.Template, rep.Was, rep.Now, vals, status)
	for _, f := range rep.Files {
		note := ""
		switch {
		case f.Edited && f.State == templates.DiffChanged:
			note = " (you edited it too: merge by hand, --force would lose your edits)"
		case f.State == templates.DiffChanged:
			note = " (you did not edit it: ferry template new --force takes the new version)"
		case f.Edited:
			note = " (edited by you)"
		}
		fmt.Fprintf(w, "  %-16s %s%s\n", f.State, f.Path, note)
		if f.Diff != "" {
			fmt.Fprint(w, indentLines(f.Diff, "    "))
		}
	}
	for _, e := range rep.Entries {
		if e.Op == templates.EntrySame {
			continue
		}
		fmt.Fprintf(w, "  %-16s %s: %s; the template's is:\n%s", e.Op, project.ProjectFile, e.Key, indentLines(e.YAML, "    "))
	}
}
