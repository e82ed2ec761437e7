package main

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// statCPUSeconds reads utime+stime from the text of a /proc/<pid>/stat
// or /proc/<pid>/task/<tid>/stat file, or -1 when it cannot. The second
// field (the command name, in parentheses) may hold spaces and
// parentheses, so the fields are counted from the last ')'.
func statCPUSeconds(s string) float64 {
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return -1
	}
	f := strings.Fields(s[i+1:])
	if len(f) < 13 {
		return -1
	}
	ut, err1 := strconv.ParseFloat(f[11], 64)
	st, err2 := strconv.ParseFloat(f[12], 64)
	if err1 != nil || err2 != nil {
		return -1
	}
	return (ut + st) / clockTicks
}

// clockTicks is USER_HZ, 100 on every Linux platform Go supports.
const clockTicks = 100

// isJITThread tells whether a thread name (as /proc shows it: the first 15
// bytes) is one of HotSpot's JIT compiler threads ("C1 CompilerThread0",
// "C2 CompilerThread1", ...).
func isJITThread(comm string) bool {
	return strings.HasPrefix(comm, "C1 CompilerThre") || strings.HasPrefix(comm, "C2 CompilerThre")
}

// jitCPUSeconds is the CPU time the JIT compiler threads of the JVMs pids
// used so far, or -1 when unknown (no pids, no /proc). HotSpot ends
// compiler threads it no longer needs, and what an ended thread used is
// no longer counted, so a difference of two readings can fall short.
func jitCPUSeconds(pids []int) float64 {
	return sumOverPIDs(pids, func(pid int) float64 {
		return threadsCPUSeconds(filepath.Join("/proc", strconv.Itoa(pid), "task"), isJITThread)
	})
}

// threadsCPUSeconds sums the CPU time of the threads under taskDir (a
// /proc/<pid>/task directory) whose name match accepts, or -1 when
// taskDir cannot be read. A thread that ends while it is read is left out.
func threadsCPUSeconds(taskDir string, match func(comm string) bool) float64 {
	ents, err := os.ReadDir(taskDir)
	if err != nil {
		return -1
	}
	total := 0.0
	for _, e := range ents {
		comm, err := os.ReadFile(filepath.Join(taskDir, e.Name(), "comm"))
		if err != nil || !match(strings.TrimSuffix(string(comm), "\n")) {
			continue
		}
		st, err := os.ReadFile(filepath.Join(taskDir, e.Name(), "stat"))
		if err != nil {
			continue
		}
		if c := statCPUSeconds(string(st)); c > 0 {
			total += c
		}
	}
	return total
}
