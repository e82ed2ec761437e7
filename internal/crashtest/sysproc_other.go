//go:build !linux

package crashtest

import "syscall"

// sysProcAttr returns nil: only Linux can tie a worker's life to the test
// process (the fleet's cleanup still kills the workers it knows).
func sysProcAttr() *syscall.SysProcAttr { return nil }
