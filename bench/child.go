package main

import (
	"bufio"
	"errors"
	"fmt"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

// child is a system under test running as its own OS process, so that its
// CPU time and peak RSS are its own. It prints READY on stdout once it runs;
// SIGTERM stops it gracefully.
type child struct {
	name    string
	cmd     *exec.Cmd
	started time.Time
	exited  chan struct{} // closed when the child exited; then exitErr is set
	exitErr error
	logf    *os.File
	// commits answers for an onceflow processor started with --control;
	// nil for the other systems.
	commits *commitReporter
}

// shortArgv is argv for a log's first line: absolute paths (the binary in
// the build cache, temporary directories) shortened to their last element,
// so that committed logs do not carry the paths of the machine they ran on.
func shortArgv(argv []string) []string {
	out := make([]string, len(argv))
	for i, a := range argv {
		if filepath.IsAbs(a) {
			a = filepath.Base(a)
		}
		out[i] = a
	}
	return out
}

// startChild starts argv, logging its stdout and stderr to logPath. With
// control, the child is an onceflow processor started with --control: its
// stdin and fd 3 carry commitReporter's questions and answers.
func startChild(name, logPath string, argv []string, control bool) (*child, error) {
	logf, err := os.Create(logPath)
	if err != nil {
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Stdout = logf
	cmd.Stderr = logf
	cmd.SysProcAttr = childSysProcAttr()
	fmt.Fprintf(logf, "# %s\n", strings.Join(shortArgv(argv), " "))
	c := &child{name: name, cmd: cmd, exited: make(chan struct{}), logf: logf}
	var answers *os.File // the child's end of fd 3, closed here once it started
	if control {
		in, err := cmd.StdinPipe()
		if err != nil {
			logf.Close()
			return nil, fmt.Errorf("start %s: %w", name, err)
		}
		out, w, err := os.Pipe()
		if err != nil {
			logf.Close()
			return nil, fmt.Errorf("start %s: %w", name, err)
		}
		cmd.ExtraFiles = []*os.File{w}
		answers = w
		c.commits = &commitReporter{in: in, out: out, rd: bufio.NewReader(out)}
	}
	c.started = time.Now()
	err = cmd.Start()
	if answers != nil {
		answers.Close()
	}
	if err != nil {
		logf.Close()
		if c.commits != nil {
			c.commits.close()
		}
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	go func() {
		c.exitErr = cmd.Wait()
		if c.exitErr == nil {
			c.exitErr = errors.New("exited with status 0")
		}
		close(c.exited)
	}()
	return c, nil
}

// cpuSeconds returns the CPU time the running child used so far (user and
// system), or a negative number if the platform cannot tell.
func (c *child) cpuSeconds() float64 { return procCPUSeconds(c.cmd.Process.Pid) }

// usage is what the child's rusage says once it exited.
type usage struct {
	cpuS   float64 // user + system seconds, the whole life of the process
	rssMiB float64 // peak resident set size (VmHWM on Linux, else rusage)
}

// stop sends SIGTERM, waits up to grace for the exit (then kills), and
// returns the child's resource usage. A non-zero exit after SIGTERM is
// reported as an error, with the usage still filled in.
func (c *child) stop(grace time.Duration) (usage, error) {
	defer c.logf.Close()
	defer c.closeCommits()
	var stopErr error
	peak := procPeakRSSMiB(c.cmd.Process.Pid) // before it exits
	select {
	case <-c.exited:
		stopErr = fmt.Errorf("%s had already exited: %w", c.name, c.exitErr)
	default:
		_ = c.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-c.exited:
			var ee *exec.ExitError
			if errors.As(c.exitErr, &ee) {
				stopErr = fmt.Errorf("%s stopped badly: %w (see %s)", c.name, c.exitErr, c.logf.Name())
			}
		case <-time.After(grace):
			_ = c.cmd.Process.Kill()
			<-c.exited
			stopErr = fmt.Errorf("%s did not stop within %v of SIGTERM; killed", c.name, grace)
		}
	}
	st := c.cmd.ProcessState
	if st == nil {
		return usage{}, stopErr
	}
	u := usage{cpuS: (st.UserTime() + st.SystemTime()).Seconds(), rssMiB: peak}
	if math.IsNaN(peak) {
		u.rssMiB = peakRSSMiB(st)
	}
	return u, stopErr
}

// kill ends the child without ceremony (used on the error paths).
func (c *child) kill() {
	select {
	case <-c.exited:
	default:
		_ = c.cmd.Process.Kill()
		<-c.exited
	}
	c.logf.Close()
	c.closeCommits()
}

func (c *child) closeCommits() {
	if c.commits != nil {
		c.commits.close()
	}
}
