package engine

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"

	"github.com/ferry-sync/ferry/engine/project"
	"github.com/ferry-sync/ferry/scripting"
)

// compileTransform compiles the sync's transform once for the run.
func (r *runner) compileTransform(ctx context.Context) error {
	s := r.s
	script, err := scripting.Compile(ctx, s.Transform, s.TransformSource, scripting.Options{
		Entry:     "transform",
		LoadDir:   loadDir(r.p, s),
		Isolation: r.e.isolation,
		Pool:      r.e.pool,
	})
	if err != nil {
		return fmt.Errorf("sync %s: transform %s: %w (fix the script; no record was touched)", s.Name, s.Transform, err)
	}
	r.xf = script
	return nil
}

// loadDir is where a sync's script may load() its project's .star files
// from: the folder of the sync's file.
func loadDir(p *project.Project, s *project.Sync) string {
	if p.Dir == "" || s.File == "" {
		return ""
	}
	return filepath.Join(p.Dir, filepath.Dir(s.File))
}

// transform runs the sync's transform on the page's records that will be
// written, in one batch, and applies what it decided: a payload, a skip, an
// update of a record it found, a forced insert, or an error.
func (r *runner) transform(ctx context.Context, items []*item) error {
	var todo []*item
	for _, it := range items {
		if it.decision == DecideInsert || it.decision == DecideUpdate {
			it.payload = it.mapped
			if r.xf != nil {
				todo = append(todo, it)
			}
		}
	}
	if len(todo) == 0 {
		return nil
	}
	// In batches, so that a transform failing every record (out of memory,
	// say) spends the error budget and stops the run within a page.
	const batch = 100
	for start := 0; start < len(todo); start += batch {
		if r.halted() {
			notSent(todo[start:], "not transformed: the run stopped")
			return nil
		}
		if err := r.transformBatch(ctx, todo[start:min(start+batch, len(todo))]); err != nil {
			return err
		}
	}
	return nil
}

// transformBatch runs the transform on items and applies what it decided.
func (r *runner) transformBatch(ctx context.Context, todo []*item) error {
	inputs := make([]scripting.TransformInput, len(todo))
	for i, it := range todo {
		inputs[i] = scripting.TransformInput{SourceID: it.id, Source: it.rec.values, Target: it.mapped, TargetID: it.targetID, Host: r.host}
	}
	results := r.xf.TransformBatch(ctx, inputs)
	for i, res := range results {
		it := todo[i]
		it.printed = res.Output.Printed
		if res.Err != nil {
			if err := ctx.Err(); err != nil {
				return err
			}
			it.payload = nil
			if strings.Contains(res.Err.Error(), noLookups) {
				it.decision, it.reason = DecideUnknown, noLookups
				continue
			}
			it.fail(DecideFail, "script", fmt.Sprintf("%v; fix the transform: the record is retried on every run", res.Err))
			if r.budget.observe(it.class, it.reason) {
				r.halt(r.budget.stopped())
			}
			continue
		}
		out := res.Output
		switch {
		case out.Payload == nil:
			reason := out.SkipReason
			if reason == "" {
				reason = "transform returned None"
			}
			it.payload = nil
			it.decision, it.class, it.reason = DecideSkip, "transform", reason
		case out.TargetID != "":
			// A lookup found the record: update it, and the link row will
			// remember the match so later runs update it directly.
			it.payload, it.decision, it.targetID = out.Payload, DecideUpdate, out.TargetID
		case out.Insert:
			it.payload, it.decision, it.targetID = out.Payload, DecideInsert, ""
		default:
			it.payload = out.Payload
		}
	}
	return nil
}
