package engine

// Host is the engine's side of a script's pq helper during one run.
type Host struct {
	r *runner
}

func (r *runner) host() *Host { return &Host{r: r} }
