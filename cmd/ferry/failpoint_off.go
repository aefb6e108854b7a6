//go:build !failpoints || !unix

package main

// failpoint: none in a normal build (see failpoint_on.go).
func failpoint() func(string) { return nil }
