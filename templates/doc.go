// Package templates holds the projects and sync bundles Ferry ships (YAML,
// .sql and .star files, embedded) and the machinery that turns one into
// files of a user's project. The demo that `ferry demo` runs is one of them
// (demo/, copied as it is); the others live under shipped/, one folder
// each: template.yaml (typed parameters), README.md, project/ (the files
// it writes, with {{placeholders}}) and fixtures/ (what its test loads on
// top of the demo warehouse and ERP).
//
// The one thing to know: a parameter's value is never pasted into a file
// as raw text. It is checked against its type first, then written the way
// the file's language needs it (a quoted identifier or literal in SQL, a
// JSON scalar in YAML, a Starlark literal in scripts), and every file a
// template writes starts with a header naming the template, its version,
// the values and the hash of what it wrote, so that Diff can tell what
// changed upstream from what the user edited.
package templates
