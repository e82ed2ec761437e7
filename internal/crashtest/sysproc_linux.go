package crashtest

import "syscall"

// sysProcAttr makes the kernel kill a worker when the test process dies, so
// that an interrupted test run leaves no worker behind.
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
