package project

import (
	"errors"
	"fmt"
)

// Errors a caller can tell apart (an API answers them with 404).
var (
	ErrUnknownSync  = errors.New("unknown sync")
	ErrUnknownGroup = errors.New("unknown group")
)

// Order returns the named syncs (all syncs when names is empty) in an order
// where every parent runs before its children; among syncs that do not
// depend on each other, the given order is kept.
func (p *Project) Order(names []string) ([]*Sync, error) {
	if len(names) == 0 {
		for _, s := range p.Syncs {
			names = append(names, s.Name)
		}
	}
	wanted := map[string]bool{}
	for _, n := range names {
		if _, ok := p.Sync(n); !ok {
			return nil, fmt.Errorf("%w %q", ErrUnknownSync, n)
		}
		wanted[n] = true
	}
	var out []*Sync
	done := map[string]bool{}
	var visit func(name string)
	visit = func(name string) {
		if done[name] {
			return
		}
		done[name] = true
		s, _ := p.Sync(name)
		for _, r := range s.Relations {
			if wanted[r.Sync] {
				visit(r.Sync)
			}
		}
		out = append(out, s)
	}
	for _, n := range names {
		visit(n)
	}
	return out, nil
}

// GroupOrder returns the syncs of a group in the order they run.
func (p *Project) GroupOrder(group string) ([]*Sync, error) {
	g, ok := p.Groups[group]
	if !ok {
		return nil, fmt.Errorf("%w %q (groups are defined in %s)", ErrUnknownGroup, group, ProjectFile)
	}
	if !g.KeepOrder {
		return p.Order(g.Syncs)
	}
	out := make([]*Sync, 0, len(g.Syncs))
	for _, n := range g.Syncs {
		s, _ := p.Sync(n)
		out = append(out, s)
	}
	return out, nil
}

// findCycle returns the names along a relation cycle, or nil.
func (p *Project) findCycle() []string {
	const (
		unseen = iota
		onPath
		finished
	)
	state := map[string]int{}
	var path []string
	var cycle []string
	var visit func(name string) bool
	visit = func(name string) bool {
		switch state[name] {
		case onPath:
			for i, n := range path {
				if n == name {
					cycle = append(append([]string{}, path[i:]...), name)
				}
			}
			return true
		case finished:
			return false
		}
		state[name] = onPath
		path = append(path, name)
		if s, ok := p.Sync(name); ok {
			for _, r := range s.Relations {
				if _, known := p.Sync(r.Sync); known && visit(r.Sync) {
					return true
				}
			}
		}
		path = path[:len(path)-1]
		state[name] = finished
		return false
	}
	for _, s := range p.Syncs {
		if visit(s.Name) {
			return cycle
		}
	}
	return nil
}
