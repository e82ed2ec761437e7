package crashtest

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// EnvVerbose, set to "1", makes a fleet print its workers' output when the
// test ends even if it passed (it always does when the test failed).
const EnvVerbose = "ONCEFLOW_CRASH_VERBOSE"

// Config is what every worker of a fleet shares.
type Config struct {
	Brokers   []string
	App       string // application id (consumer group, transactional id prefix)
	Guarantee string // as processor.ParseGuarantee accepts it
	Input     string
	Output    string
	// Workload is WorkloadCopy (the default) or WorkloadSums.
	Workload string
	// StateRoot, for the sums workload, holds one state directory per
	// instance (see Fleet.StateDir).
	StateRoot string
}

// Fleet runs worker processes, one per instance id, each a re-execution of
// the current test binary. At most one process per instance id runs at a
// time. Every process's stderr is kept and printed when the test fails.
// Processes still running when the test ends are killed.
type Fleet struct {
	t         testing.TB
	exe       string
	env       []string
	stateRoot string

	mu      sync.Mutex
	running map[string]*Proc // instance id -> its current process
	all     []*Proc          // every process ever started, in start order
	failed  chan struct{}    // closed when a process exits unexpectedly
	failErr error
}

// Proc is one worker process: one incarnation of an instance.
type Proc struct {
	Instance    string
	Incarnation int // 1 for the first start of the instance, 2 after its first restart, ...
	cmd         *exec.Cmd
	stderr      syncBuffer
	ready       chan struct{} // closed when the worker printed readyLine
	done        chan struct{} // closed after the process was reaped
	state       *os.ProcessState
	waitErr     error
	expectStop  string // "kill", "term" or "" while it should be running
}

// NewFleet returns an empty fleet for cfg.
func NewFleet(t testing.TB, cfg Config) *Fleet {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatalf("crashtest: find the test binary: %v", err)
	}
	f := &Fleet{
		t:         t,
		exe:       exe,
		stateRoot: cfg.StateRoot,
		env: append(os.Environ(),
			EnvWorker+"=1",
			EnvBrokers+"="+strings.Join(cfg.Brokers, ","),
			EnvApp+"="+cfg.App,
			EnvGuarantee+"="+cfg.Guarantee,
			EnvInput+"="+cfg.Input,
			EnvOutput+"="+cfg.Output,
			EnvWorkload+"="+cfg.Workload,
		),
		running: map[string]*Proc{},
		failed:  make(chan struct{}),
	}
	t.Cleanup(f.cleanup)
	return f
}

// Start starts a process for instance, which must not be running.
func (f *Fleet) Start(instance string) *Proc {
	f.t.Helper()
	f.mu.Lock()
	defer f.mu.Unlock()
	if _, ok := f.running[instance]; ok {
		f.t.Fatalf("crashtest: instance %s is already running", instance)
	}
	inc := 1
	for _, p := range f.all {
		if p.Instance == instance {
			inc++
		}
	}
	p := &Proc{Instance: instance, Incarnation: inc, ready: make(chan struct{}), done: make(chan struct{})}
	p.cmd = exec.Command(f.exe)
	p.cmd.Env = append(append([]string(nil), f.env...), EnvInstance+"="+instance)
	if f.stateRoot != "" {
		p.cmd.Env = append(p.cmd.Env, EnvStateDir+"="+f.StateDir(instance))
	}
	p.cmd.Stdout = &readyWatcher{out: &p.stderr, ready: p.ready}
	p.cmd.Stderr = &p.stderr
	p.cmd.SysProcAttr = sysProcAttr()
	if err := p.cmd.Start(); err != nil {
		f.t.Fatalf("crashtest: start instance %s: %v", instance, err)
	}
	f.running[instance] = p
	f.all = append(f.all, p)
	go f.reap(p)
	return p
}

func (f *Fleet) reap(p *Proc) {
	err := p.cmd.Wait()
	f.mu.Lock()
	defer f.mu.Unlock()
	p.state, p.waitErr = p.cmd.ProcessState, err
	if f.running[p.Instance] == p {
		delete(f.running, p.Instance)
	}
	if p.expectStop == "" && f.failErr == nil {
		f.failErr = fmt.Errorf("crashtest: %s exited on its own (%s)", p.name(), p.exit())
		close(f.failed)
	}
	close(p.done)
}

// Failed is closed when a worker process exits without being asked to;
// Err then says which.
func (f *Fleet) Failed() <-chan struct{} { return f.failed }

// Err returns the first unexpected exit, or nil.
func (f *Fleet) Err() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.failErr
}

// Running returns the instance ids with a running process, sorted.
func (f *Fleet) Running() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	var ids []string
	for id := range f.running {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	return ids
}

// Kill sends SIGKILL to the running process of instance and waits until it
// is reaped. It returns an error if the process was not killed by that
// signal (it had exited on its own before).
func (f *Fleet) Kill(instance string) error {
	p, err := f.mark(instance, "kill")
	if err != nil {
		return err
	}
	kerr := p.cmd.Process.Signal(syscall.SIGKILL)
	<-p.done
	if !p.killedBy(syscall.SIGKILL) {
		return fmt.Errorf("crashtest: %s was not killed by SIGKILL (%s; signal error: %v)", p.name(), p.exit(), kerr)
	}
	return nil
}

// StopAll sends SIGTERM to every running process, once it is ready to
// take it as a graceful shutdown, and waits up to timeout for all of them
// to exit; each must exit with status 0.
func (f *Fleet) StopAll(timeout time.Duration) error {
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	var procs []*Proc
	for _, id := range f.Running() {
		p, err := f.mark(id, "term")
		if err != nil {
			return err
		}
		select {
		case <-p.ready:
		case <-p.done:
			return fmt.Errorf("crashtest: %s exited before it was ready (%s)", p.name(), p.exit())
		case <-deadline.C:
			return fmt.Errorf("crashtest: %s was not ready within %v", p.name(), timeout)
		}
		if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
			return fmt.Errorf("crashtest: SIGTERM %s: %w", p.name(), err)
		}
		procs = append(procs, p)
	}
	var errs []error
	for _, p := range procs {
		select {
		case <-p.done:
		case <-deadline.C:
			// SIGQUIT makes the Go runtime print every goroutine's stack
			// to stderr and exit: the evidence of where it hangs.
			_ = p.cmd.Process.Signal(syscall.SIGQUIT)
			select {
			case <-p.done:
			case <-time.After(10 * time.Second):
			}
			return fmt.Errorf("crashtest: %s did not exit within %v of SIGTERM (its goroutines, dumped by SIGQUIT, are in its output)", p.name(), timeout)
		}
		if p.waitErr != nil || !p.state.Success() {
			errs = append(errs, fmt.Errorf("crashtest: %s did not stop cleanly after SIGTERM (%s)", p.name(), p.exit()))
		}
	}
	return errors.Join(errs...)
}

func (f *Fleet) mark(instance, how string) (*Proc, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.failErr != nil {
		return nil, f.failErr
	}
	p, ok := f.running[instance]
	if !ok {
		return nil, fmt.Errorf("crashtest: instance %s is not running", instance)
	}
	p.expectStop = how
	return p, nil
}

// Incarnations returns how many processes were started for instance.
func (f *Fleet) Incarnations(instance string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	n := 0
	for _, p := range f.all {
		if p.Instance == instance {
			n++
		}
	}
	return n
}

// StateDir returns the state directory of instance (under the Config's
// StateRoot).
func (f *Fleet) StateDir(instance string) string {
	return filepath.Join(f.stateRoot, instance)
}

// Restores returns every store restore the processes reported so far, in
// process start order.
func (f *Fleet) Restores() ([]Restore, error) {
	f.mu.Lock()
	procs := append([]*Proc(nil), f.all...)
	f.mu.Unlock()
	var out []Restore
	for _, p := range procs {
		for _, line := range strings.Split(p.stderr.String(), "\n") {
			r, ok, err := ParseRestore(line)
			if err != nil {
				return nil, err
			}
			if ok {
				r.Instance, r.Incarnation = p.Instance, p.Incarnation
				out = append(out, r)
			}
		}
	}
	return out, nil
}

// Logs returns the output of every process started so far, each under a
// heading naming the instance, incarnation and how it ended.
func (f *Fleet) Logs() string {
	f.mu.Lock()
	procs := append([]*Proc(nil), f.all...)
	f.mu.Unlock()
	var b strings.Builder
	for _, p := range procs {
		select {
		case <-p.done:
		default:
			fmt.Fprintf(&b, "=== %s (still running)\n", p.name())
			b.WriteString(p.stderr.String())
			continue
		}
		fmt.Fprintf(&b, "=== %s (%s)\n", p.name(), p.exit())
		b.WriteString(p.stderr.String())
	}
	return b.String()
}

// RaceReports returns the names of processes whose output holds a data
// race report.
func (f *Fleet) RaceReports() []string {
	f.mu.Lock()
	procs := append([]*Proc(nil), f.all...)
	f.mu.Unlock()
	var names []string
	for _, p := range procs {
		if strings.Contains(p.stderr.String(), "WARNING: DATA RACE") {
			names = append(names, p.name())
		}
	}
	return names
}

func (f *Fleet) cleanup() {
	for _, id := range f.Running() {
		if p, err := f.mark(id, "kill"); err == nil {
			_ = p.cmd.Process.Signal(syscall.SIGKILL)
			<-p.done
		}
	}
	if f.t.Failed() || os.Getenv(EnvVerbose) == "1" {
		f.t.Logf("crashtest: output of every worker process:\n%s", f.Logs())
	}
}

func (p *Proc) name() string {
	return fmt.Sprintf("instance %s incarnation %d (pid %d)", p.Instance, p.Incarnation, p.cmd.Process.Pid)
}

// exit describes how the process ended; call it after done is closed.
func (p *Proc) exit() string {
	switch {
	case p.state != nil:
		return p.state.String()
	case p.waitErr != nil:
		return p.waitErr.Error()
	}
	return "unknown"
}

func (p *Proc) killedBy(sig syscall.Signal) bool {
	if p.state == nil {
		return false
	}
	ws, ok := p.state.Sys().(syscall.WaitStatus)
	return ok && ws.Signaled() && ws.Signal() == sig
}

// syncBuffer is a bytes.Buffer safe for one writer and concurrent readers.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// readyWatcher passes a worker's stdout on to out and closes ready once
// readyLine has gone through.
type readyWatcher struct {
	out   io.Writer
	ready chan struct{}
	seen  []byte // stdout so far, until readyLine appears
	done  bool
}

func (r *readyWatcher) Write(p []byte) (int, error) {
	if !r.done {
		r.seen = append(r.seen, p...)
		if bytes.Contains(r.seen, []byte(readyLine+"\n")) {
			r.done, r.seen = true, nil
			close(r.ready)
		}
	}
	return r.out.Write(p)
}
