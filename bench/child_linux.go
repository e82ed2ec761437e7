package main

import (
	"math"
	"os"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// childSysProcAttr kills the child if the suite dies.
func childSysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}

// procCPUSeconds reads utime+stime of pid from /proc/<pid>/stat.
func procCPUSeconds(pid int) float64 {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return -1
	}
	return statCPUSeconds(string(b))
}

// ioStallSeconds is how long, since boot, every task of the host that was
// not idle waited for I/O at once ("full" in /proc/pressure/io), or -1
// when the kernel does not say.
func ioStallSeconds() float64 {
	b, err := os.ReadFile("/proc/pressure/io")
	if err != nil {
		return -1
	}
	return pressureFullSeconds(string(b))
}

// dirtyMiB is how much of the page cache waits to be written to disk,
// in MiB; NaN when unknown.
func dirtyMiB() float64 {
	b, err := os.ReadFile("/proc/meminfo")
	if err != nil {
		return math.NaN()
	}
	return meminfoDirtyMiB(string(b))
}

// canSyncDisks tells whether syncDisks writes anything back here.
const canSyncDisks = true

// syncDisks writes every dirty page of the host to disk and waits for it.
func syncDisks() { syscall.Sync() }

// selfCPUSeconds is the CPU time (user and system) this process used so far.
func selfCPUSeconds() float64 {
	user, sys := selfCPUTimes()
	if user < 0 {
		return -1
	}
	return user + sys
}

// selfCPUTimes is the user and the system CPU time this process used so
// far, in seconds.
func selfCPUTimes() (user, sys float64) {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return -1, -1
	}
	return time.Duration(ru.Utime.Nano()).Seconds(), time.Duration(ru.Stime.Nano()).Seconds()
}

// peakRSSMiB is the exited child's Maxrss (KiB on Linux) in MiB.
func peakRSSMiB(st *os.ProcessState) float64 {
	if ru, ok := st.SysUsage().(*syscall.Rusage); ok {
		return float64(ru.Maxrss) / 1024
	}
	return math.NaN()
}

// procPeakRSSMiB reads VmHWM (the peak resident set size) of the running
// pid from /proc/<pid>/status. The rusage Maxrss of a child is no good on
// Linux: exec records the parent's high-water mark at the time of the fork
// (the child shared the parent's memory until then), so every child would
// report at least the suite's own peak.
func procPeakRSSMiB(pid int) float64 {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		return math.NaN()
	}
	for line := range strings.Lines(string(b)) {
		if v, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			kb, err := strconv.ParseFloat(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 64)
			if err != nil {
				return math.NaN()
			}
			return kb / 1024
		}
	}
	return math.NaN()
}
