package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"slices"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/plotutil"
	"gonum.org/v1/plot/vg"
)

// writeCharts draws, per workload and value size, the throughput by
// guarantee and commit interval and the latency percentiles, as PNGs in
// dir.
func writeCharts(dir string, results []Result) error {
	type group struct {
		workload string
		vb       int
	}
	var groups []group
	for _, r := range results {
		if r.System == sysRawpipe {
			continue
		}
		if g := (group{r.Workload, r.ValueBytes}); !slices.Contains(groups, g) {
			groups = append(groups, g)
		}
	}
	for _, g := range groups {
		var rs []Result
		for _, r := range results {
			if r.Workload == g.workload && r.ValueBytes == g.vb && r.System != sysRawpipe {
				rs = append(rs, r)
			}
		}
		pipe, hasPipe := find(results, runConfig{System: sysRawpipe, Workload: wlCopy, Guarantee: gNone, ValueBytes: g.vb})
		name := fmt.Sprintf("%s-%s", g.workload, sizeLabel(g.vb))
		if err := throughputChart(filepath.Join(dir, "throughput-"+name+".png"), name, rs, pipe, hasPipe); err != nil {
			return fmt.Errorf("chart throughput-%s: %w", name, err)
		}
		if hasPipe {
			rs = append([]Result{pipe}, rs...)
		}
		if err := latencyChart(filepath.Join(dir, "latency-"+name+".png"), name, rs); err != nil {
			return fmt.Errorf("chart latency-%s: %w", name, err)
		}
	}
	return nil
}

// chartsCmd draws a finished run's charts again from its results.json
// (go run ./bench charts DIR), into DIR, with the charts' current code.
func chartsCmd(args []string) error {
	fs := flag.NewFlagSet("bench charts", flag.ContinueOnError)
	fs.Usage = func() {
		fmt.Fprintln(fs.Output(), "usage: go run ./bench charts DIR (a directory holding a run's results.json)")
	}
	if err := fs.Parse(args); err != nil {
		return errUsage
	}
	if fs.NArg() != 1 {
		fs.Usage()
		return errUsage
	}
	dir := fs.Arg(0)
	results, err := readResults(filepath.Join(dir, "results.json"))
	if err != nil {
		return fmt.Errorf("charts: %w", err)
	}
	return writeCharts(dir, results)
}

// readResults reads a run's results.json.
func readResults(file string) ([]Result, error) {
	b, err := os.ReadFile(file)
	if err != nil {
		return nil, err
	}
	var rs []Result
	if err := json.Unmarshal(b, &rs); err != nil {
		return nil, fmt.Errorf("%s: %w", file, err)
	}
	if len(rs) == 0 {
		return nil, fmt.Errorf("%s: no results", file)
	}
	return rs, nil
}

var shortGuarantee = map[string]string{gExactlyOnce: "EOS", gAtLeastOnce: "ALO", gAtMostOnce: "AMO", gNone: ""}

// systemLabel names a system in the charts.
func systemLabel(system string) string {
	return map[string]string{sysRawpipe: "raw pipe", sysOnceflow: "onceflow", sysKStreams: "Kafka Streams"}[system]
}

// seriesLabel names a (system, guarantee) series.
func seriesLabel(system, guarantee string) string {
	if system == sysRawpipe {
		return systemLabel(system)
	}
	return systemLabel(system) + " " + shortGuarantee[guarantee]
}

func nanToZero(v num) float64 {
	if math.IsNaN(float64(v)) {
		return 0
	}
	return float64(v)
}

func throughputChart(file, name string, rs []Result, pipe Result, hasPipe bool) error {
	var intervals []int64
	type series struct{ system, guarantee string }
	var ss []series
	for _, r := range rs {
		if !slices.Contains(intervals, r.CommitIntervalMS) {
			intervals = append(intervals, r.CommitIntervalMS)
		}
		if s := (series{r.System, r.Guarantee}); !slices.Contains(ss, s) {
			ss = append(ss, s)
		}
	}
	slices.Sort(intervals)
	p := plot.New()
	p.Title.Text = fmt.Sprintf("%s: throughput by guarantee and commit interval", name)
	p.Y.Label.Text = "records/s (median of repeats)"
	p.X.Label.Text = "commit interval"
	p.Legend.Top = true
	width := vg.Points(math.Min(28, 420/float64(len(intervals)*(len(ss)+1))))
	for j, s := range ss {
		vals := make(plotter.Values, len(intervals))
		for i, iv := range intervals {
			if r, ok := find(rs, runConfig{System: s.system, Workload: rs[0].Workload, Guarantee: s.guarantee, IntervalMS: iv, ValueBytes: rs[0].ValueBytes}); ok {
				vals[i] = nanToZero(r.RecordsPerSec)
			}
		}
		bc, err := plotter.NewBarChart(vals, width)
		if err != nil {
			return fmt.Errorf("bars: %w", err)
		}
		bc.Color = plotutil.Color(j)
		bc.LineStyle.Width = 0
		bc.Offset = vg.Length(float64(j)-float64(len(ss)-1)/2) * width
		p.Add(bc)
		p.Legend.Add(seriesLabel(s.system, s.guarantee), bc)
	}
	if hasPipe {
		v := nanToZero(pipe.RecordsPerSec)
		l, err := plotter.NewLine(plotter.XYs{{X: -0.5, Y: v}, {X: float64(len(intervals)) - 0.5, Y: v}})
		if err != nil {
			return fmt.Errorf("line: %w", err)
		}
		l.Dashes = []vg.Length{vg.Points(6), vg.Points(4)}
		l.Width = vg.Points(1.5)
		p.Add(l)
		p.Legend.Add("raw pipe (limit)", l)
	}
	labels := make([]string, len(intervals))
	for i, iv := range intervals {
		labels[i] = intervalLabel(iv)
	}
	p.NominalX(labels...)
	p.Y.Min = 0
	// Room above the tallest bar or the pipe's line for the legend.
	p.Y.Max = 1.25 * p.Y.Max
	if err := p.Save(8*vg.Inch, 5*vg.Inch, file); err != nil {
		return fmt.Errorf("save: %w", err)
	}
	return nil
}

func latencyChart(file, name string, rs []Result) error {
	p := plot.New()
	p.Title.Text = fmt.Sprintf("%s: end-to-end latency at a fixed fraction of max throughput", name)
	p.Y.Label.Text = "ms, input timestamp to read_committed visibility"
	p.Legend.Top = true
	p.Legend.Left = true
	// The system on one line, the guarantee and interval on the next,
	// so that neighbouring labels do not run into each other.
	labels := make([]string, len(rs))
	for i, r := range rs {
		labels[i] = systemLabel(r.System)
		if r.System != sysRawpipe {
			labels[i] += "\n" + shortGuarantee[r.Guarantee] + " " + intervalLabel(r.CommitIntervalMS)
		}
	}
	width := vg.Points(math.Min(18, 520/float64(len(rs)*4)))
	pcts := []struct {
		label string
		get   func(Result) num
	}{
		{"p50", func(r Result) num { return r.P50MS }},
		{"p99", func(r Result) num { return r.P99MS }},
		{"max", func(r Result) num { return r.MaxMS }},
	}
	for j, pc := range pcts {
		vals := make(plotter.Values, len(rs))
		for i, r := range rs {
			vals[i] = nanToZero(pc.get(r))
		}
		bc, err := plotter.NewBarChart(vals, width)
		if err != nil {
			return fmt.Errorf("bars: %w", err)
		}
		bc.Color = plotutil.Color(j)
		bc.LineStyle.Width = 0
		bc.Offset = vg.Length(j-1) * width
		p.Add(bc)
		p.Legend.Add(pc.label, bc)
	}
	p.NominalX(labels...)
	p.Y.Min = 0
	w := max(8*vg.Inch, vg.Length(len(rs))*1.1*vg.Inch)
	if err := p.Save(w, 5*vg.Inch, file); err != nil {
		return fmt.Errorf("save: %w", err)
	}
	return nil
}
