package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/onceflow/onceflow/processor"
)

// commitPhase is how onceflow's commits went during one latency phase,
// from the processor's Stats: how many there were (CommitTimes), their
// durations (mean, percentiles and the longest, in ms; the percentiles
// and the longest are bucket bounds, at most 19% high), the share that
// took longer than the commit interval, in percent, and the marker times
// and record ages of the same commits. Zero when unknown (the other
// systems).
type commitPhase struct {
	Commits   int64   `json:"commits"`
	MeanMS    float64 `json:"mean_ms"`
	FlushMS   float64 `json:"flush_ms"`
	P50MS     float64 `json:"p50_ms"`
	P99MS     float64 `json:"p99_ms"`
	MaxMS     float64 `json:"max_ms"`
	OverPct   float64 `json:"over_interval_pct"`
	PerSecond float64 `json:"per_s"`
	// MarkerP50MS and MarkerP99MS are the processor's Stats.MarkerTimes:
	// how long the broker took to write a transaction's markers after
	// the commit returned (bucket bounds; a transaction whose markers took
	// longer than MarkerWait counts as MarkerWait, 20 ms by default, in
	// the bucket up to 22.6 ms).
	MarkerP50MS float64 `json:"marker_p50_ms"`
	MarkerP99MS float64 `json:"marker_p99_ms"`
	// AgeP99MS and AgeMaxMS are the processor's Stats.CommitAges: how old
	// the oldest input record of a commit was when the commit returned
	// (bucket bounds).
	AgeP99MS float64 `json:"age_p99_ms"`
	AgeMaxMS float64 `json:"age_max_ms"`
	// PollAgeP99MS is the processor's Stats.PollAges: how old a polled
	// partition batch's first record was when the worker took it.
	PollAgeP99MS float64 `json:"poll_age_p99_ms"`
}

// commitReport is what the processor answers between a mark and a report:
// the commits since the mark.
func commitReport(from, to processor.Stats, wall, interval time.Duration) commitPhase {
	h := to.CommitTimes.Sub(from.CommitTimes)
	n := h.Count()
	cp := commitPhase{Commits: n}
	if n == 0 {
		return cp
	}
	cp.MeanMS = ms(to.CommitTime-from.CommitTime) / float64(n)
	cp.FlushMS = ms(to.FlushTime-from.FlushTime) / float64(n)
	cp.P50MS = ms(h.Quantile(0.5))
	cp.P99MS = ms(h.Quantile(0.99))
	cp.MaxMS = ms(h.Quantile(1))
	cp.OverPct = 100 * float64(h.Over(interval)) / float64(n)
	mk := to.MarkerTimes.Sub(from.MarkerTimes)
	cp.MarkerP50MS, cp.MarkerP99MS = ms(mk.Quantile(0.5)), ms(mk.Quantile(0.99))
	ages := to.CommitAges.Sub(from.CommitAges)
	cp.AgeP99MS, cp.AgeMaxMS = ms(ages.Quantile(0.99)), ms(ages.Quantile(1))
	cp.PollAgeP99MS = ms(to.PollAges.Sub(from.PollAges).Quantile(0.99))
	if wall > 0 {
		cp.PerSecond = float64(n) / wall.Seconds()
	}
	return cp
}

// serveCommitReports answers the suite (commitReporter) on behalf of a
// running processor: a "mark" line on in takes a snapshot of its Stats,
// a "report" line writes the commits since the last mark to out as one
// JSON line. It returns when in ends.
func serveCommitReports(in io.Reader, out *os.File, stats func() processor.Stats, interval time.Duration) {
	defer out.Close()
	sc := bufio.NewScanner(in)
	from, at := stats(), time.Now()
	for sc.Scan() {
		switch strings.TrimSpace(sc.Text()) {
		case "mark":
			from, at = stats(), time.Now()
			fmt.Fprintln(out, "{}")
		case "report":
			b, err := json.Marshal(commitReport(from, stats(), time.Since(at), interval))
			if err != nil {
				b = []byte("{}")
			}
			fmt.Fprintln(out, string(b))
		default:
			fmt.Fprintln(out, "{}")
		}
	}
}

// commitReporter is the suite's side: it writes mark and report lines to
// a processor started with --control and reads its answers.
type commitReporter struct {
	in  io.WriteCloser
	out *os.File
	rd  *bufio.Reader
}

// ask sends cmd and reads the answer, giving up after timeout.
func (c *commitReporter) ask(cmd string, timeout time.Duration) ([]byte, error) {
	if _, err := fmt.Fprintln(c.in, cmd); err != nil {
		return nil, fmt.Errorf("ask the processor for %s: %w", cmd, err)
	}
	if err := c.out.SetReadDeadline(time.Now().Add(timeout)); err != nil {
		return nil, fmt.Errorf("ask the processor for %s: %w", cmd, err)
	}
	line, err := c.rd.ReadBytes('\n')
	if err != nil {
		return nil, fmt.Errorf("ask the processor for %s: %w", cmd, err)
	}
	return line, nil
}

// mark starts counting a phase's commits.
func (c *commitReporter) mark() error {
	_, err := c.ask("mark", 5*time.Second)
	return err
}

// report returns the commits since the mark.
func (c *commitReporter) report() (commitPhase, error) {
	line, err := c.ask("report", 5*time.Second)
	if err != nil {
		return commitPhase{}, err
	}
	var cp commitPhase
	if err := json.Unmarshal(line, &cp); err != nil {
		return commitPhase{}, fmt.Errorf("the processor's commit report %q: %w", strings.TrimSpace(string(line)), err)
	}
	return cp, nil
}

func (c *commitReporter) close() {
	c.in.Close()
	c.out.Close()
}
