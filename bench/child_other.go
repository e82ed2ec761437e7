//go:build !linux

package main

import (
	"math"
	"os"
	"syscall"
)

func childSysProcAttr() *syscall.SysProcAttr { return nil }

// procCPUSeconds is unknown here: the suite falls back to the rusage total.
func procCPUSeconds(int) float64 { return -1 }

// ioStallSeconds is unknown here.
func ioStallSeconds() float64 { return -1 }

// dirtyMiB is unknown here.
func dirtyMiB() float64 { return math.NaN() }

// canSyncDisks: the suite's write-back before each phase is Linux-only.
const canSyncDisks = false

// syncDisks is a no-op here.
func syncDisks() {}

// selfCPUSeconds is unknown here.
func selfCPUSeconds() float64 { return -1 }

// selfCPUTimes is unknown here.
func selfCPUTimes() (user, sys float64) { return -1, -1 }

// peakRSSMiB is unknown here.
func peakRSSMiB(*os.ProcessState) float64 { return math.NaN() }

// procPeakRSSMiB is unknown here: the suite falls back to the rusage.
func procPeakRSSMiB(int) float64 { return math.NaN() }
