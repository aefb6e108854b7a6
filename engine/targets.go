package engine

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"strings"

	"github.com/ferry-sync/ferry/engine/connector"
	httptarget "github.com/ferry-sync/ferry/engine/connector/http"
	"github.com/ferry-sync/ferry/engine/connector/postgres"
)

// kinds lists the connection kinds Ferry can open.
var kinds = []string{"http", "postgres"}

// checkConnection checks a connection's kind and settings without opening
// it or reading its secrets.
func checkConnection(c Connection) []error {
	field := "connections." + c.Name
	bad := func(f, msg string) []error {
		return []error{&ConfigError{File: ProjectFile, Field: f, Message: msg}}
	}
	if !namePattern.MatchString(c.Name) {
		return bad(field, "connection names use lower-case letters, digits and _")
	}
	var err error
	switch c.Kind {
	case "postgres":
		var cfg postgres.Config
		if err = decodeSettings(c.Settings, &cfg); err == nil {
			err = postgres.Check(cfg)
		}
	case "http":
		var cfg httptarget.Config
		if err = decodeSettings(c.Settings, &cfg); err == nil {
			err = httptarget.Check(cfg)
		}
	case "":
		return bad(field+".kind", "required: one of "+strings.Join(kinds, ", "))
	default:
		return bad(field+".kind", fmt.Sprintf("unknown kind %q: use one of %s", c.Kind, strings.Join(kinds, ", ")))
	}
	if err != nil {
		return bad(field+".settings", err.Error())
	}
	return nil
}

func decodeSettings(raw json.RawMessage, v any) error {
	if len(raw) == 0 {
		raw = []byte("{}")
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return fmt.Errorf("%s", strings.TrimPrefix(err.Error(), "json: "))
	}
	return nil
}

// OpenTarget opens a connection of one of the built-in kinds.
func OpenTarget(ctx context.Context, c Connection) (connector.Target, error) {
	switch c.Kind {
	case "postgres":
		var cfg postgres.Config
		if err := decodeSettings(c.Settings, &cfg); err != nil {
			return nil, fmt.Errorf("connection %s: %w", c.Name, err)
		}
		return postgres.New(ctx, cfg)
	case "http":
		var cfg httptarget.Config
		if err := decodeSettings(c.Settings, &cfg); err != nil {
			return nil, fmt.Errorf("connection %s: %w", c.Name, err)
		}
		return httptarget.New(ctx, cfg)
	}
	return nil, fmt.Errorf("connection %s: unknown kind %q", c.Name, c.Kind)
}
