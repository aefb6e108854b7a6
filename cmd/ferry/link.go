package main

import (
	"context"
	"fmt"
	"strings"

	"github.com/ferry-sync/ferry/engine/project"
)

type linkCmd struct {
	Init linkInitCmd `cmd:"" help:"Create a sync's link table, to seed it before the first run."`
	Seed linkSeedCmd `cmd:"" help:"Link records the target already has to their source records."`
}

func (linkCmd) Help() string {
	return `Every sync has a link table, link_tables.<sync>, pairing source ids with target ids. Seed it before the first run with the records the target already has: runs then update them instead of inserting them again.

Examples:

    ferry link init companies
    ferry link seed companies --dry-run --query "SELECT s.id AS source_id, t.id AS target_id FROM crm.companies s JOIN erp_elt.partners t ON t.vat = s.vat"`
}

type linkInitCmd struct {
	Sync string `arg:"" help:"The sync."`
}

func (linkInitCmd) Help() string {
	return `The table gets the id types the scope and the target have; creating it twice is harmless.

Example:

    ferry link init companies`
}

func (l *linkInitCmd) Run(ctx context.Context, c *cli) error {
	ss, err := c.start(ctx)
	if err != nil {
		return err
	}
	defer ss.close()
	created, err := ss.eng.LinkInit(ctx, l.Sync)
	if err != nil {
		return err
	}
	table := "link_tables." + l.Sync
	if created {
		fmt.Fprintf(c.stdout, "%s created.\n", table)
	} else {
		fmt.Fprintf(c.stdout, "%s is already there.\n", table)
	}
	s, _ := ss.project.Sync(l.Sync)
	source, id := "(your scope query)", project.DefaultIDColumn
	if s != nil {
		if s.Source.Table != "" {
			source = s.Source.Table
		}
		if s.Source.IDColumn != "" {
			id = s.Source.IDColumn
		}
	}
	object := "<the target's " + l.Sync + " as loaded into the warehouse>"
	if s != nil && s.Target.Object != "" {
		object = "<the target's " + s.Target.Object + " as loaded into the warehouse>"
	}
	join := fmt.Sprintf("FROM %s s JOIN %s t ON t.<shared key> = s.<shared key>", source, object)
	fmt.Fprintf(c.stdout, `
To link the records the target already has, pair source ids with target ids
on a key both share (a VAT number, an e-mail), then check and write:

  ferry link seed %s --dry-run --query "SELECT s.%s AS source_id, t.id AS target_id %s"

or in SQL (status defaults to 'matched'):

  INSERT INTO %s (source_id, target_id)
  SELECT s.%s, t.id %s;
`, l.Sync, id, join, table, id, join)
	return nil
}

type linkSeedCmd struct {
	Sync   string `arg:"" help:"The sync."`
	Query  string `required:"" help:"A query returning source_id and target_id columns: the pairs to link." placeholder:"SQL"`
	DryRun bool   `help:"Count what would be linked; write nothing."`
}

func (linkSeedCmd) Help() string {
	return `The query runs read-only (as the scope role, when one is set). A pair is written only when its source id and its target id each appear once; pairs whose source is linked already are left alone. Writing takes the sync's claim, like a run, so it never races one: while the sync runs, it says so and writes nothing.

Examples:

    ferry link seed companies --dry-run --query "SELECT s.id AS source_id, t.id AS target_id FROM crm.companies s JOIN erp_elt.partners t ON t.vat = s.vat"
    ferry link seed contacts --query "SELECT c.id AS source_id, p.id AS target_id FROM crm.contacts c JOIN erp_elt.people p USING (email)"`
}

func (l *linkSeedCmd) Run(ctx context.Context, c *cli) error {
	if strings.TrimSpace(l.Query) == "" {
		return usageError{"--query: give a query returning source_id and target_id"}
	}
	ss, err := c.start(ctx)
	if err != nil {
		return err
	}
	defer ss.close()
	rep, err := ss.eng.LinkSeed(ctx, l.Sync, l.Query, l.DryRun)
	if err != nil {
		return err
	}
	w := c.stdout
	fmt.Fprintf(w, "%s: the query returned %d pairs\n", rep.Sync, rep.Pairs)
	fmt.Fprintf(w, "  matched         %d  (source id and target id each in one pair)\n", rep.Matched)
	fmt.Fprintf(w, "  ambiguous       %d  (left out: a source or target id is in more than one pair)\n", rep.Ambiguous)
	for _, ex := range rep.AmbiguousExamples {
		fmt.Fprintf(w, "    %s\n", ex)
	}
	fmt.Fprintf(w, "  already linked  %d  (left alone)\n", rep.AlreadyLinked)
	fmt.Fprintf(w, "  unmatched       %d  (records no pair names: runs insert them)\n", rep.Unmatched)
	if l.DryRun {
		fmt.Fprintln(w, "dry run: nothing written")
		return nil
	}
	fmt.Fprintf(w, "written: %d link rows (status matched); runs update these records instead of inserting them\n", rep.Written)
	return nil
}
