package main

import (
	"math"
	"os"
	"path/filepath"
	"testing"
)

func TestGCLogPath(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"java", "-Xmx768m", "-Xlog:gc:file=/tmp/k/gc-1.log:uptime,time", "-cp", "x"}, "/tmp/k/gc-1.log"},
		{[]string{"java", `-Xlog:gc*:file="/tmp/a b/gc.log"`}, "/tmp/a b/gc.log"},
		{[]string{"java", "-Xlog:gc"}, ""}, // to stdout
		{[]string{"java", "-Xmx1g"}, ""},
	} {
		if got := gcLogPath(tc.args); got != tc.want {
			t.Errorf("gcLogPath(%q) = %q, want %q", tc.args, got, tc.want)
		}
	}
}

// TestGCPausesSince: only the stop-the-world pauses logged after the
// mark count, and a line still being written waits for its end.
func TestGCPausesSince(t *testing.T) {
	path := filepath.Join(t.TempDir(), "gc-1.log")
	before := "[2026-11-28T19:28:00.000+0000][261.2s] GC(600) Pause Young (Normal) (G1 Evacuation Pause) 329M->235M(621M) 90.000ms\n"
	if err := os.WriteFile(path, []byte(before), 0o644); err != nil {
		t.Fatal(err)
	}
	g := &gcLogs{paths: []string{path}}
	m := g.mark()
	f, err := os.OpenFile(path, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	for _, l := range []string{
		"[2026-11-28T19:28:01.247+0000][262.464s] GC(601) Pause Young (Normal) (G1 Evacuation Pause) 400M->240M(621M) 74.211ms\n",
		"[2026-11-28T19:28:01.300+0000][262.5s] GC(602) Pause Young (Concurrent Start) (G1 Humongous Allocation) 329M->235M(621M) 6.567ms\n",
		"[2026-11-28T19:28:01.310+0000][262.5s] GC(603) Concurrent Undo Cycle 4.305ms\n", // concurrent: not a pause
		"[2026-11-28T19:28:01.400+0000][262.6s] GC(604) Pause Remark 300M->300M(621M) 1.222ms\n",
		"[2026-11-28T19:28:01.500+0000][262.7s] GC(605) Pause Young (Normal) (G1 Evacuation Pause) 400M->240M(621M) 50.0", // unfinished
	} {
		if _, err := f.WriteString(l); err != nil {
			t.Fatal(err)
		}
	}
	got := g.since(m)
	if got.n != 3 || math.Abs(got.totalMS-82.0) > 1e-9 || got.max != 74.211 {
		t.Fatalf("since the mark: %+v, want 3 pauses, 82 ms in all, 74.211 the longest", got)
	}
	// A log rotated since the mark, now shorter than it was: all of it
	// is new.
	rotated := "[2026-11-28T19:29:00.000+0000][321.0s] GC(700) Pause Young (Normal) (G1 Evacuation Pause) 400M->240M(621M) 12.500ms\n"
	if err := os.WriteFile(path, []byte(rotated), 0o644); err != nil {
		t.Fatal(err)
	}
	if got := g.since(gcMark{int64(len(before)) + 1000}); got.n != 1 || got.max != 12.5 {
		t.Fatalf("after a rotation: %+v, want the one pause of the new log", got)
	}
	var none *gcLogs
	if p := none.since(none.mark()); !math.IsNaN(p.max) || !math.IsNaN(p.totalMS) {
		t.Fatalf("unknown logs: %+v, want NaN", p)
	}
}
