package engine_test

import (
	"testing"

	"go.uber.org/goleak"

	"github.com/ferry-sync/ferry/engine/connector/crmtest"
)

// TestMain lets this test binary serve as a script worker or as the
// benchmarks' CRM server when started as one; otherwise it runs the tests
// and then fails if any goroutine outlived them: a run's pipeline stages,
// its lease's heartbeat and its chunks in flight must all end with it.
func TestMain(m *testing.M) {
	serveScriptWorker()
	crmtest.ServeChild()
	goleak.VerifyTestMain(m,
		// The standard library's HTTP transports keep idle connections'
		// goroutines until they time out; they belong to no run.
		goleak.IgnoreAnyFunction("net/http.(*persistConn).readLoop"),
		goleak.IgnoreAnyFunction("net/http.(*persistConn).writeLoop"),
		goleak.IgnoreAnyFunction("internal/poll.runtime_pollWait"),
	)
}
