package httptarget_test

import (
	"os"
	"testing"

	"github.com/ferry-sync/ferry/engine/connector/crmtest"
)

// TestMain lets this test binary serve as the benchmarks' CRM server when
// started as one (crmtest.StartChild).
func TestMain(m *testing.M) {
	crmtest.ServeChild()
	os.Exit(m.Run())
}
