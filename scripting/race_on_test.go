//go:build race

package scripting

// The race detector's shadow memory counts against RLIMIT_DATA: under
// -race, workers get room and the memory-limit tests are skipped.
const raceEnabled = true
