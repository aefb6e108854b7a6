package engine

import "context"

// TransformerFactory prepares a sync's transform for one run: the script is
// compiled once per run, never per record.
type TransformerFactory interface {
	Compile(ctx context.Context, s *Sync, host *Host) (Transformer, error)
}

// Transformer runs a sync's transform on a page of records.
type Transformer interface {
	// Transform returns one output per input, in order.
	Transform(ctx context.Context, in []TransformInput) []TransformOutput
	Close() error
}

// TransformInput is one record handed to transform(source_record,
// target_record, pq, target_id).
type TransformInput struct {
	SourceID string
	Source   map[string]any // the scope row (read-only in the script)
	Target   map[string]any // the mapped record (the script may change it)
	TargetID string         // "" for a record not linked yet
}

// TransformOutput is what the transform decided for one record.
type TransformOutput struct {
	Payload    map[string]any // nil: skip the record
	SkipReason string
	// TargetID, when set, tells the engine to update this target record
	// (found by a lookup) instead of inserting; the link row remembers it.
	TargetID string
	// Insert forces an insert even though the record is linked.
	Insert  bool
	Printed []string
	Err     error // the script failed on this record
}
