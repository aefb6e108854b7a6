// Package api is Ferry's REST API (ferry serve): echo v4 for HTTP, Huma for
// the operations, so that the OpenAPI 3.1 document (/api/v1/openapi.json)
// is derived from the handlers' own types and cannot drift from them. It
// owns the routes, the one error shape, authentication by API token and the
// role each operation needs, request logs, metrics, and the background runs
// it starts. Everything it does to syncs goes through the engine, and
// everything it does to the configuration through projects.Store.
//
// The one thing to know: every operation declares the role it needs
// (Operation.Metadata "role"); the authorising middleware refuses any
// operation that declares none, so a route cannot be forgotten.
package api
