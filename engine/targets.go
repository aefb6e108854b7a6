package engine

import (
	"context"

	"fmt"
	"github.com/ferry-sync/ferry/engine/connector"
)

// checkConnection checks a connection's kind and settings without opening it.
func checkConnection(c Connection) []error {
	field := "connections." + c.Name
	if !namePattern.MatchString(c.Name) {
		return []error{&ConfigError{File: ProjectFile, Field: field, Message: "connection names use lower-case letters, digits and _"}}
	}
	switch c.Kind {
	case "postgres", "http":
	case "":
		return []error{&ConfigError{File: ProjectFile, Field: field + ".kind", Message: "required: postgres or http"}}
	default:
		return []error{&ConfigError{File: ProjectFile, Field: field + ".kind", Message: fmt.Sprintf("unknown kind %q: use postgres or http", c.Kind)}}
	}
	return nil
}

// OpenTarget opens a connection of one of the built-in kinds.
func OpenTarget(ctx context.Context, c Connection) (connector.Target, error) {
	return nil, fmt.Errorf("connection %s: kind %q is not available yet", c.Name, c.Kind)
}
