// Package templates holds the projects and sync bundles Ferry ships (YAML,
// .sql and .star files, embedded) and the loader that copies one out for a
// user to run and adapt. The demo that `ferry demo` runs is one of them.
package templates
