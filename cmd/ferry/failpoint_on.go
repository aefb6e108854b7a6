//go:build failpoints && unix

package main

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"syscall"
)

// failpointEnv names the point a crash test kills ferry at, as point or
// point:n (its n-th time, default the first). Only a binary built with the
// failpoints tag reads it.
const failpointEnv = "FERRY_FAILPOINT"

// failpoint returns the engine's failpoint hook: it kills this process
// (SIGKILL, no deferred cleanup) at the named point.
func failpoint() func(string) {
	spec := os.Getenv(failpointEnv)
	if spec == "" {
		return nil
	}
	point, nth, _ := strings.Cut(spec, ":")
	want, err := strconv.Atoi(nth)
	if err != nil || want < 1 {
		want = 1
	}
	var mu sync.Mutex
	seen := 0
	return func(p string) {
		if p != point {
			return
		}
		mu.Lock()
		seen++
		hit := seen == want
		mu.Unlock()
		if hit {
			fmt.Fprintf(os.Stderr, "ferry: failpoint %s reached: killing the process\n", p)
			_ = syscall.Kill(os.Getpid(), syscall.SIGKILL)
			select {}
		}
	}
}
