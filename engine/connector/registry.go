package connector

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strings"
)

// Kind is a kind of connection (http, postgres, a named SaaS): how its
// settings are checked and how a target is opened from them. Kinds are
// registered by the program (cmd), never named by the engine, in the spirit
// of Benthos' service.Environment: a new kind touches no engine file.
type Kind struct {
	Name string
	// Check validates settings without opening anything or reading secrets.
	Check func(settings json.RawMessage) error
	// Open opens a target. env looks up the secrets the settings name; an
	// error about the settings or a missing secret is a *SettingsError.
	Open func(ctx context.Context, settings json.RawMessage, env LookupEnv) (Target, error)
}

// SettingsError is a connection's settings or secrets being wrong (as
// opposed to the target failing): a user fixes it in their files.
type SettingsError struct{ Err error }

func (e *SettingsError) Error() string { return e.Err.Error() }
func (e *SettingsError) Unwrap() error { return e.Err }

// Registry holds the kinds a program can open. The zero value is empty and
// ready to use; it is not safe to Register while others read it.
type Registry struct {
	kinds map[string]Kind
}

// NewRegistry returns a registry of kinds.
func NewRegistry(kinds ...Kind) (*Registry, error) {
	r := &Registry{}
	for _, k := range kinds {
		if err := r.Register(k); err != nil {
			return nil, err
		}
	}
	return r, nil
}

// Register adds a kind.
func (r *Registry) Register(k Kind) error {
	if k.Name == "" || k.Open == nil || k.Check == nil {
		return errors.New("a connection kind needs a name, Check and Open")
	}
	if _, dup := r.kinds[k.Name]; dup {
		return fmt.Errorf("connection kind %q is registered twice", k.Name)
	}
	if r.kinds == nil {
		r.kinds = map[string]Kind{}
	}
	r.kinds[k.Name] = k
	return nil
}

// Names lists the registered kinds in order.
func (r *Registry) Names() []string {
	names := make([]string, 0, len(r.kinds))
	for n := range r.kinds {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// Lookup returns the kind called name, or an error that lists the kinds.
func (r *Registry) Lookup(name string) (Kind, error) {
	if name == "" {
		return Kind{}, fmt.Errorf("required: one of %s", strings.Join(r.Names(), ", "))
	}
	k, ok := r.kinds[name]
	if !ok {
		return Kind{}, fmt.Errorf("unknown kind %q: use one of %s", name, strings.Join(r.Names(), ", "))
	}
	return k, nil
}

// CheckSettings checks the settings of a connection of kind without
// opening it.
func (r *Registry) CheckSettings(kind string, settings json.RawMessage) error {
	k, err := r.Lookup(kind)
	if err != nil {
		return err
	}
	return k.Check(settings)
}

// Open opens a target of kind.
func (r *Registry) Open(ctx context.Context, kind string, settings json.RawMessage, env LookupEnv) (Target, error) {
	k, err := r.Lookup(kind)
	if err != nil {
		return nil, &SettingsError{Err: err}
	}
	return k.Open(ctx, settings, env)
}

// DecodeSettings decodes a connection's settings into v, refusing unknown
// fields (a typo is an error, not an ignored setting). It names the object
// an unknown field was found in by its JSON path.
func DecodeSettings(raw json.RawMessage, v any) error {
	if len(raw) == 0 {
		raw = []byte("{}")
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return errors.New(strings.TrimPrefix(err.Error(), "json: "))
	}
	return nil
}
