package project

import (
	"encoding/json"
	"fmt"
	"regexp"
	"time"

	"github.com/ferry-sync/ferry/internal/sqlident"
)

// Mode says which writes a sync may make.
type Mode string

const (
	ModeUpsert Mode = "upsert" // insert & update records
	ModeInsert Mode = "insert" // insert only: linked records are left alone
	ModeUpdate Mode = "update" // update only: unlinked records are left alone
)

// OnError says what a run does when a record fails.
type OnError string

const (
	OnErrorContinue OnError = "continue"
	OnErrorStop     OnError = "stop"
)

// Defaults a sync gets when its file leaves them out.
const (
	DefaultIDColumn       = "id"
	DefaultBookmarkColumn = "_sdc_batched_at"
	DefaultPageSize       = 1000
	DefaultOverlap        = 5 * time.Minute
	DefaultScopeTimeout   = 5 * time.Minute
	DefaultReconcileEvery = 24 * time.Hour
)

// Sync is one object type flowing from a scope query to a target object. Its
// JSON shape is what sync files hold and what the REST API accepts.
type Sync struct {
	Name      string     `json:"name"`
	Source    Source     `json:"source"`
	Target    TargetRef  `json:"target"`
	Mode      Mode       `json:"mode,omitempty"`
	Mapping   []Field    `json:"mapping,omitempty"`
	Relations []Relation `json:"relations,omitempty"`
	OnError   OnError    `json:"on_error,omitempty"`
	// WriteBack, when set, writes each new target id back into a field of
	// the source application's record (the spec's "write back of id").
	WriteBack *WriteBack `json:"write_back,omitempty"`
	// Transform names a Starlark file (relative to the sync file) defining
	// transform(source_record, target_record, pq, target_id=None).
	Transform string `json:"transform,omitempty"`
	// ErrorBudget stops a run whose recent records fail the same way,
	// instead of letting it burn through every record (default: 45 of the
	// last 50).
	ErrorBudget *ErrorBudget `json:"error_budget,omitempty"`
	// Schedule says when ferry serve runs it.
	Schedule *Schedule `json:"schedule,omitempty"`
	// Hooks run before (refresh what the scope reads) and after it.
	Hooks *Hooks `json:"hooks,omitempty"`
	// Delete deletes (or archives) the target records whose source record
	// left the scope or carries a deleted flag, within guards.
	Delete *DeletePolicy `json:"delete,omitempty"`
	// TwoWay pairs this sync with the sync that writes the other way
	// (B→A for this A→B): they share their records' identity, an echo of
	// what one wrote is never written back, and a record both sides changed
	// is settled by Conflict. Declared on either sync of the pair.
	TwoWay *TwoWay `json:"two_way,omitempty"`

	// Pair is the pair this sync belongs to, declared here or on its
	// partner; set when the project is checked.
	Pair *Pair `json:"-"`
	// File is where the sync was loaded from, for error messages.
	File string `json:"-"`
	// TransformSource is the transform's code, read at load time.
	TransformSource []byte `json:"-"`
}

// Source says where a sync's records come from.
type Source struct {
	Table     string `json:"table,omitempty"`      // schema.table
	Query     string `json:"query,omitempty"`      // a scope query
	QueryFile string `json:"query_file,omitempty"` // a .sql file beside the sync file
	IDColumn  string `json:"id_column,omitempty"`
	// BookmarkColumn is the column incremental reads order and filter by.
	BookmarkColumn string `json:"bookmark_column,omitempty"`
	// Incremental false reads the whole scope on every run (the hash still
	// skips unchanged records).
	Incremental *bool `json:"incremental,omitempty"`
	// Overlap re-reads this much before the bookmark, so rows committed late
	// with an older stamp are not lost. Timestamp bookmarks only.
	Overlap  Duration `json:"overlap,omitempty"`
	Timeout  Duration `json:"timeout,omitempty"`
	PageSize int      `json:"page_size,omitempty"`
	// ReconcileEvery is how often an incremental sync reads its whole scope
	// instead (rows that stay unchanged are compared in the warehouse and
	// never leave it), to sync what incremental reads missed: rows committed
	// with a stamp older than the bookmark minus the overlap. "0s" only on
	// demand (ferry run --reconcile). Default 24h.
	ReconcileEvery Duration `json:"reconcile_every,omitempty"`
}

// TargetRef names the connection and object a sync writes to.
type TargetRef struct {
	Connection string `json:"connection"`
	Object     string `json:"object"`
	// MatchOn lists target fields that identify a record in the target, used
	// to reconcile an insert whose outcome was lost (needs a target that can
	// look records up).
	MatchOn []string `json:"match_on,omitempty"`
	// LookupBeforeInsert looks each new record up by match_on before
	// inserting it: one the target already holds is linked and updated
	// instead of duplicated (the first sync into a target that already
	// has some of the records).
	LookupBeforeInsert bool `json:"lookup_before_insert,omitempty"`
	// LookupIn does that lookup in the target's copy in the warehouse (the
	// table its ELT pipeline loads) instead of calling the target: cheaper,
	// and as fresh as the pipeline's last load.
	LookupIn *LookupTable `json:"lookup_in,omitempty"`
}

// TwoWay declares the two directions of a two-way sync.
type TwoWay struct {
	// With names the sync in the other direction: its scope reads this
	// sync's target (the target's ELT copy) and it writes into the
	// application this sync's scope copies.
	With     string   `json:"with"`
	Conflict Conflict `json:"conflict"`
}

// Conflict says which change wins when both sides changed a record since
// the pair last synced it.
type Conflict struct {
	// Wins names the side whose change wins: a connection (the application
	// a sync of the pair writes to) or a sync (its source side wins). With
	// Newer, it wins ties.
	Wins string `json:"wins"`
	// Newer names a column both scopes have (e.g. updated_at): the side
	// whose record carries the later value wins.
	Newer string `json:"newer,omitempty"`
}

// Pair is a two-way pair as one of its syncs sees it.
type Pair struct {
	Partner string // the sync in the other direction
	// Wins is the sync whose source side wins a conflict (ties, with Newer).
	Wins  string
	Newer string
}

// DeletePolicy says which target records a sync deletes and how.
type DeletePolicy struct {
	// Flag names a scope column that marks a source record deleted (true,
	// or any non-NULL value of another type): the record is not written,
	// and its target record is deleted. Without it, records that left the
	// scope are.
	Flag string `json:"flag,omitempty"`
	// Mode is delete (the default: the connector's delete) or archive
	// (an update with Archive's fields, e.g. {active: false}).
	Mode    string         `json:"mode,omitempty"`
	Archive map[string]any `json:"archive,omitempty"`
	// MaxShare is the largest share of the sync's linked records one run
	// may delete (default 0.1): more, and the run deletes none and says so.
	MaxShare float64 `json:"max_share,omitempty"`
}

// DefaultDeleteShare is the default delete.max_share.
const DefaultDeleteShare = 0.1

// Delete modes.
const (
	DeleteModeDelete  = "delete"
	DeleteModeArchive = "archive"
)

// LookupTable is a warehouse table that mirrors a target object: its ID
// column holds the target's ids, and it has a column for each match_on
// field, by the same name.
type LookupTable struct {
	Table string `json:"table"`        // schema.table
	ID    string `json:"id,omitempty"` // default "id"
}

// Field maps one source column, or a static value, to a target field.
type Field struct {
	Source string          `json:"source,omitempty"`
	Value  json.RawMessage `json:"value,omitempty"`
	Target string          `json:"target"`
}

// WriteBack names where a new target id is written back: the source
// application's connection, its object, and the field that receives the id.
// The source id addresses the record there.
type WriteBack struct {
	Connection string `json:"connection"`
	Object     string `json:"object"`
	Field      string `json:"field"`
}

// ErrorBudget says when a run stops early: once Window records have been
// tried and at least Share of the last Window failed with the same error
// (the same class and message, numbers aside). Window 0 turns it off.
type ErrorBudget struct {
	Window int     `json:"window"`
	Share  float64 `json:"share,omitempty"`
}

// Defaults of the error budget.
const (
	DefaultBudgetWindow = 50
	DefaultBudgetShare  = 0.9
)

// Relation resolves a source foreign key through a parent sync's link table.
type Relation struct {
	Source string `json:"source"` // FK column in the scope
	Sync   string `json:"sync"`   // the parent sync
	Target string `json:"target"` // FK field in the target
}

// IsIncremental reports whether runs read past the bookmark only.
func (s *Sync) IsIncremental() bool {
	return s.Source.Incremental == nil || *s.Source.Incremental
}

// ScopeSQL returns the scope query of the sync.
func (s *Sync) ScopeSQL() string {
	if s.Source.Query != "" {
		return s.Source.Query
	}
	return "SELECT * FROM " + sqlident.Qualified(s.Source.Table)
}

// ApplyDefaults fills in what a sync's file leaves out.
func (s *Sync) ApplyDefaults() {
	if s.Mode == "" {
		s.Mode = ModeUpsert
	}
	if s.OnError == "" {
		s.OnError = OnErrorContinue
	}
	if s.Source.IDColumn == "" {
		s.Source.IDColumn = DefaultIDColumn
	}
	if s.Source.BookmarkColumn == "" {
		s.Source.BookmarkColumn = DefaultBookmarkColumn
	}
	if s.Source.PageSize == 0 {
		s.Source.PageSize = DefaultPageSize
	}
	if !s.Source.Overlap.set {
		s.Source.Overlap.Duration = DefaultOverlap
	}
	if s.Source.Timeout.Duration == 0 {
		s.Source.Timeout.Duration = DefaultScopeTimeout
	}
	if s.ErrorBudget == nil {
		s.ErrorBudget = &ErrorBudget{Window: DefaultBudgetWindow, Share: DefaultBudgetShare}
	}
	if s.ErrorBudget.Share == 0 {
		s.ErrorBudget.Share = DefaultBudgetShare
	}
	if !s.Source.ReconcileEvery.set {
		s.Source.ReconcileEvery.Duration = DefaultReconcileEvery
	}
}

// Duration is a time.Duration written as "90s" or "5m" in files.
type Duration struct {
	time.Duration
	set bool
}

func (d Duration) MarshalJSON() ([]byte, error) { return json.Marshal(d.String()) }

func (d *Duration) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return fmt.Errorf("a duration is a string like \"30s\" or \"5m\"")
	}
	v, err := time.ParseDuration(s)
	if err != nil {
		return fmt.Errorf("bad duration %q: write it like \"30s\" or \"5m\"", s)
	}
	if v < 0 {
		return fmt.Errorf("duration %q must not be negative", s)
	}
	d.Duration, d.set = v, true
	return nil
}

// namePattern is what sync and connection names must look like: they become
// link table names, so they stay plain lower-case identifiers.
var namePattern = regexp.MustCompile(`^[a-z_][a-z0-9_]{0,62}$`)

// ValidName reports whether name can name a sync, a connection or a role:
// lower-case letters, digits and _, at most 63 characters.
func ValidName(name string) bool { return namePattern.MatchString(name) }
