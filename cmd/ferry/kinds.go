package main

import (
	"github.com/ferry-sync/ferry/engine/connector"
	httptarget "github.com/ferry-sync/ferry/engine/connector/http"
	"github.com/ferry-sync/ferry/engine/connector/postgres"
)

// connectors registers the connection kinds this binary ships: the engine
// names none of them, so a new kind is added here and in its own package.
func connectors() *connector.Registry {
	r, err := connector.NewRegistry(httptarget.Kind(), postgres.Kind())
	if err != nil {
		panic(err) // two built-in kinds with one name: a programming error
	}
	return r
}
