package processor_test

import (
	"os"
	"testing"

	"github.com/onceflow/onceflow/internal/crashtest"
)

// TestMain lets the crash tests re-execute this test binary as worker
// processes: with crashtest.EnvWorker=1 the binary runs one processor
// instance (crashtest.WorkerMain) instead of the tests.
func TestMain(m *testing.M) {
	if crashtest.IsWorker() {
		os.Exit(crashtest.WorkerMain())
	}
	os.Exit(m.Run())
}
