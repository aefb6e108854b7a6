package scripting

import (
	"testing"

	"github.com/stretchr/testify/assert"
)

func TestWorkerDeathSigns(t *testing.T) {
	t.Parallel()
	cases := []struct {
		stderr string
		memory bool
		fault  bool
	}{
		{"fatal error: out of memory\n\ngoroutine 1 [running]:", true, false},
		{"runtime: failed to create new OS thread\nruntime/cgo: pthread_create failed: Resource temporarily unavailable", true, false},
		{"SIGSEGV: segmentation violation\nPC=0x435d9d m=5 sigcode=1 addr=0x0\n\ngoroutine 0 [idle]:\nruntime.(*spanQueue).tryDrain(", false, true},
		{"panic: something else\n\ngoroutine 1 [running]:", false, false},
	}
	for _, tc := range cases {
		assert.Equal(t, tc.memory, isOutOfMemory(tc.stderr), tc.stderr)
		assert.Equal(t, tc.fault, isRuntimeFault(tc.stderr), tc.stderr)
	}
}
