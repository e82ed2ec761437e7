package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"io"
	"math"
	"os"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/onceflow/onceflow/processor"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
)

// TestCommitReports runs the copy workload's processor under exactly-once
// on an in-process broker for two batches of input, then has the
// processor's side of the control channel answer a mark taken after the
// first batch and a report after the second: the report must count only
// the second batch's commits, with their mean, percentiles and maximum.
func TestCommitReports(t *testing.T) {
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(2, "in", "out"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	seeds := c.ListenAddrs()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	topo, err := benchTopology(wlCopy, "in", "out")
	if err != nil {
		t.Fatal(err)
	}
	const interval = 10 * time.Millisecond
	p, err := processor.New(topo, processor.Brokers(seeds...), processor.ApplicationID("commits-test"),
		processor.WithGuarantee(processor.ExactlyOnce), processor.CommitInterval(interval), processor.StateDir(t.TempDir()))
	if err != nil {
		t.Fatal(err)
	}
	runCtx, stopRun := context.WithCancel(ctx)
	ran := make(chan error, 1)
	go func() { ran <- p.Run(runCtx) }()
	defer func() {
		stopRun()
		if err := <-ran; err != nil {
			t.Errorf("Run: %v", err)
		}
	}()

	cl, err := kgo.NewClient(kgo.SeedBrokers(seeds...))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	adm := kadm.NewClient(cl)
	var produced int64
	batch := func(n int64) processor.Stats {
		t.Helper()
		for i := range n {
			if err := cl.ProduceSync(ctx, &kgo.Record{Topic: "in", Key: []byte{byte(i)}, Value: []byte("v")}).FirstErr(); err != nil {
				t.Fatal(err)
			}
		}
		produced += n
		tick := time.NewTicker(5 * time.Millisecond)
		defer tick.Stop()
		for {
			// Done once the group's offsets cover every record and every
			// commit counted is also timed (the timing ends after it).
			offs, err := adm.FetchOffsets(ctx, "commits-test")
			if err == nil {
				var committed int64
				offs.Each(func(o kadm.OffsetResponse) { committed += o.At })
				if st := p.Stats(); committed == produced && st.CommitTimes.Count() == st.Commits+st.Aborts {
					return st
				}
			}
			select {
			case <-ctx.Done():
				t.Fatalf("processed %d of %d records: %v", p.Stats().Processed, produced, ctx.Err())
			case <-tick.C:
			}
		}
	}
	first := batch(200)
	second := batch(200)
	if first.CommitTimes.Count() == 0 || second.CommitTimes.Count() <= first.CommitTimes.Count() {
		t.Fatalf("commits counted: %d after the first batch, %d after the second", first.CommitTimes.Count(), second.CommitTimes.Count())
	}

	// The processor's side answers from these snapshots in turn: the one
	// taken when it starts, the mark's, the report's.
	snaps := []processor.Stats{{}, first, second}
	stats := func() processor.Stats {
		s := snaps[0]
		if len(snaps) > 1 {
			snaps = snaps[1:]
		}
		return s
	}
	cmdR, cmdW := io.Pipe()
	ansR, ansW, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan struct{})
	go func() {
		serveCommitReports(cmdR, ansW, stats, interval)
		close(served)
	}()
	rep := &commitReporter{in: cmdW, out: ansR, rd: bufio.NewReader(ansR)}
	if err := rep.mark(); err != nil {
		t.Fatal(err)
	}
	got, err := rep.report()
	if err != nil {
		t.Fatal(err)
	}
	h := second.CommitTimes.Sub(first.CommitTimes)
	n := second.CommitTimes.Count() - first.CommitTimes.Count()
	mean := ms(second.CommitTime-first.CommitTime) / float64(n)
	if got.Commits != n || math.Abs(got.MeanMS-mean) > 1e-9 || got.P99MS != ms(h.Quantile(0.99)) || got.MaxMS != ms(h.Quantile(1)) ||
		got.P50MS <= 0 || got.P50MS > got.P99MS || got.P99MS > got.MaxMS || got.FlushMS <= 0 || got.FlushMS > got.MeanMS ||
		got.OverPct < 0 || got.OverPct > 100 || got.PerSecond <= 0 ||
		got.MarkerP99MS != ms(second.MarkerTimes.Sub(first.MarkerTimes).Quantile(0.99)) || got.MarkerP50MS > got.MarkerP99MS ||
		got.AgeMaxMS != ms(second.CommitAges.Sub(first.CommitAges).Quantile(1)) || got.AgeMaxMS <= 0 || got.AgeP99MS > got.AgeMaxMS ||
		got.PollAgeP99MS != ms(second.PollAges.Sub(first.PollAges).Quantile(0.99)) || got.PollAgeP99MS <= 0 {
		t.Fatalf("report %+v; want the %d commits after the mark (of %d), mean %.3f ms", got, n, second.CommitTimes.Count(), mean)
	}
	// Closing the questions ends the processor's side, which closes the
	// answers.
	rep.in.Close()
	<-served
	if _, err := rep.rd.ReadByte(); !errors.Is(err, io.EOF) {
		t.Fatalf("after the questions ended: %v, want EOF", err)
	}
	ansR.Close()
}

// TestPacedCommits: the commit figures of the latency phases at onceflow's
// own pace are medians over the rounds that have them, go to results.json
// with each round's p99 and maximum, and make a table row beside the
// latency p99; a result without them has neither.
func TestPacedCommits(t *testing.T) {
	rc := runConfig{System: sysOnceflow, Workload: wlCopy, Guarantee: gExactlyOnce, IntervalMS: 10, ValueBytes: 100}
	cp := func(perS, mean, flush, p50, p99, maxMS, over float64) commitPhase {
		return commitPhase{Commits: int64(perS * 10), PerSecond: perS, MeanMS: mean, FlushMS: flush, P50MS: p50, P99MS: p99, MaxMS: maxMS, OverPct: over,
			MarkerP50MS: p50 / 2, MarkerP99MS: p99 / 2, AgeP99MS: p99 + 10, AgeMaxMS: maxMS + 10, PollAgeP99MS: p99 - 10}
	}
	r := summarize(rc, 1000, []sample{
		{repeat: 1, rps: 1, lat: phase{rate: 1, p99: 85.8, commits: cp(60, 7, 4, 5.7, 38.1, 53.8, 20), gc: gcPauses{n: 9, totalMS: 120, max: 41.5}}},
		{repeat: 2, rps: 1, lat: phase{rate: 1, p99: 67.3, gc: gcPauses{n: 8, totalMS: 100, max: 25}}}, // no commit report this round
		{repeat: 3, rps: 1, lat: phase{rate: 1, p99: 136.7, commits: cp(50, 9, 5, 6.7, 45.3, 90.5, 30), gc: gcPauses{n: 10, totalMS: 150, max: 74.2}}},
	})
	want := &CommitSummary{PerSecond: 55, MeanMS: 8, FlushMS: 4.5, P50MS: 6.2, P99MS: 41.7, MaxMS: 72.15, OverPct: 25, MarkerP50MS: 3.1, MarkerP99MS: 20.85, AgeP99MS: 51.7, AgeMaxMS: 82.15, PollAgeP99MS: 31.7}
	if !reflect.DeepEqual(r.PacedCommits, want) {
		t.Errorf("PacedCommits = %+v, want %+v", r.PacedCommits, want)
	}
	if r.Rounds[0].CommitP99MS != 38.1 || r.Rounds[1].CommitP99MS != 0 || r.Rounds[2].CommitMaxMS != 90.5 {
		t.Errorf("rounds %+v: want commit figures in rounds 1 and 3 only", r.Rounds)
	}
	b, err := json.Marshal(r)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		`"paced_commits":{"per_s":55,"mean_ms":8,"flush_ms":4.5,"p50_ms":6.2,"p99_ms":41.7,"max_ms":72.15,"over_interval_pct":25,"marker_p50_ms":3.1,"marker_p99_ms":20.85,"age_p99_ms":51.7,"age_max_ms":82.15,"poll_age_p99_ms":31.7}`,
		`"paced_broker_gc_max_ms":41.5,"paced_broker_gc_ms":120,`,
		`{"repeat":1,"records_per_sec":1,"p99_ms":85.8,"paced_io_stall_ms":0,"commit_p99_ms":38.1,"commit_max_ms":53.8,"broker_gc_max_ms":41.5}`,
		`{"repeat":2,"records_per_sec":1,"p99_ms":67.3,"paced_io_stall_ms":0,"broker_gc_max_ms":25}`,
	} {
		if !strings.Contains(string(b), want) {
			t.Errorf("JSON lacks %s:\n%s", want, b)
		}
	}
	ksc := rc
	ksc.System = sysKStreams
	ks := summarize(ksc, 1000, []sample{{repeat: 1, rps: 1, lat: phase{rate: 1, p99: 34.8, gc: gcPauses{n: 2, totalMS: 20, max: 12.5}}}})
	md := renderMarkdown(reportMeta{}, []Result{r, ks})
	for _, row := range []string{
		"| onceflow | copy | exactly-once | 10ms | 100B | 55.0 | 8.0 (4.5) | 6.2 | 41.7 (38.1, 45.3) | 72.2 (53.8, 90.5) | 25.0% | 3.1 / 20.9 | 31.7 | 51.7 / 82.2 | 41.5 (41.5, 25.0, 74.2) | 120.0 | 85.8 (85.8, 67.3, 136.7) |",
		// Kafka Streams: no commit report, the broker's pauses only.
		"| kstreams | copy | exactly-once | 10ms | 100B | - | - | - | - | - | - | - | - | - | 12.5 (12.5) | 20.0 | 34.8 (34.8) |",
	} {
		if !strings.Contains(md, row) {
			t.Errorf("results.md lacks\n%s\ngot:\n%s", row, md)
		}
	}
	unknown := phase{rate: 1, p99: 50, gc: noGCPauses()}
	none := summarize(rc, 1000, []sample{{repeat: 1, rps: 1, lat: unknown}})
	if b, _ := json.Marshal(none); none.PacedCommits != nil || strings.Contains(string(b), "paced_commits") || strings.Contains(string(b), "commit_p99") ||
		!strings.Contains(string(b), `"paced_broker_gc_max_ms":null`) {
		t.Errorf("a result without commit reports or GC log: %s", b)
	}
	if md := renderMarkdown(reportMeta{}, []Result{none}); strings.Contains(md, "Commits and broker pauses") {
		t.Errorf("a commits table without commit reports or GC log:\n%s", md)
	}
}
