package main

import (
	"bytes"
	"io"
	"math"
	"os"
	"regexp"
	"strconv"
	"strings"
)

// gcLogs are the GC logs of the broker's JVMs, found in their command
// lines (the local broker script starts each with -Xlog:gc:file=...), so
// that a phase can tell how long the broker stopped for its collector
// while it ran: a broker that pauses for 70 ms holds every request that
// arrives meanwhile, a commit's among them.
type gcLogs struct {
	paths []string
}

// brokerGCLogs finds the GC log of each of pids; none where a process
// logs no GC to a file (or cannot be read), nil when none does.
func brokerGCLogs(pids []int) *gcLogs {
	var g gcLogs
	for _, pid := range pids {
		b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/cmdline")
		if err != nil {
			continue
		}
		if p := gcLogPath(strings.Split(string(b), "\x00")); p != "" {
			g.paths = append(g.paths, p)
		}
	}
	if len(g.paths) == 0 {
		return nil
	}
	return &g
}

// gcLogPath is the file of a -Xlog:gc...:file=PATH[:decorators...] option
// among a JVM's arguments, or "".
func gcLogPath(args []string) string {
	for _, a := range args {
		if !strings.HasPrefix(a, "-Xlog:gc") {
			continue
		}
		_, rest, ok := strings.Cut(a, ":file=")
		if !ok {
			continue
		}
		path, _, _ := strings.Cut(rest, ":")
		return strings.Trim(path, `"`)
	}
	return ""
}

// gcMark is where each log ended when a phase began.
type gcMark []int64

// mark notes the logs' sizes.
func (g *gcLogs) mark() gcMark {
	if g == nil {
		return nil
	}
	m := make(gcMark, len(g.paths))
	for i, p := range g.paths {
		if st, err := os.Stat(p); err == nil {
			m[i] = st.Size()
		}
	}
	return m
}

// gcPauses is what the broker's collectors logged since a mark: how many
// stop-the-world pauses, their sum and the longest, in ms. NaN when the
// logs are unknown.
type gcPauses struct {
	n            int
	totalMS, max float64
}

func noGCPauses() gcPauses { return gcPauses{totalMS: math.NaN(), max: math.NaN()} }

// since reads what the logs gained after m.
func (g *gcLogs) since(m gcMark) gcPauses {
	if g == nil || len(m) != len(g.paths) {
		return noGCPauses()
	}
	var ps gcPauses
	for i, p := range g.paths {
		f, err := os.Open(p)
		if err != nil {
			return noGCPauses()
		}
		from := m[i]
		if st, err := f.Stat(); err == nil && st.Size() < from {
			from = 0 // the JVM rotated the log (at 20 MB by default): all of it is new
		}
		b, err := io.ReadAll(io.NewSectionReader(f, from, math.MaxInt64-from))
		f.Close()
		if err != nil {
			return noGCPauses()
		}
		ps.add(parseGCPauses(b))
	}
	return ps
}

func (p *gcPauses) add(q gcPauses) {
	p.n += q.n
	p.totalMS += q.totalMS
	p.max = max(p.max, q.max)
}

// gcPauseLine matches a unified-logging GC line of a stop-the-world pause
// ("... GC(597) Pause Young (Normal) (G1 Evacuation Pause) 329M->235M(621M)
// 6.567ms", also Pause Remark and Pause Cleanup), capturing its length.
var gcPauseLine = regexp.MustCompile(`GC\(\d+\) Pause .* ([0-9]+(?:\.[0-9]+)?)ms$`)

// parseGCPauses sums the pauses of the complete lines in b.
func parseGCPauses(b []byte) gcPauses {
	var ps gcPauses
	for len(b) > 0 {
		line, rest, ok := bytes.Cut(b, []byte("\n"))
		if !ok {
			break // a line still being written
		}
		b = rest
		m := gcPauseLine.FindSubmatch(bytes.TrimRight(line, "\r"))
		if m == nil {
			continue
		}
		v, err := strconv.ParseFloat(string(m[1]), 64)
		if err != nil {
			continue
		}
		ps.n++
		ps.totalMS += v
		ps.max = max(ps.max, v)
	}
	return ps
}
