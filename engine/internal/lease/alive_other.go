//go:build !unix

package lease

// processAlive cannot tell on this system: a lease waits to expire.
func processAlive(int) bool { return true }
