package main

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"hash/crc32"
	"image/png"
	"math"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// TestLatencyHist: percentiles by nearest rank, as the upper edge of
// their 0.1 ms bucket (never above the maximum), and exact beyond the
// histogram's range.
func TestLatencyHist(t *testing.T) {
	var h latencyHist
	if !math.IsNaN(h.percentile(50)) || !math.IsNaN(h.maximum()) {
		t.Fatalf("empty histogram: p50 %v, max %v, want NaN", h.percentile(50), h.maximum())
	}
	for i := range 100 {
		h.add(time.Duration(i+1)*time.Millisecond + 50*time.Microsecond) // 1.05 .. 100.05 ms
	}
	for _, c := range []struct{ p, want float64 }{
		{50, 50.1}, {99, 99.1}, {1, 1.1}, {0.5, 1.1}, {100, 100.05}, {99.5, 100.05},
	} {
		if got := h.percentile(c.p); math.Abs(got-c.want) > 1e-9 {
			t.Errorf("percentile(%v) = %v, want %v", c.p, got, c.want)
		}
	}
	h.add(-time.Millisecond) // a stamp a little ahead of the reader's clock
	h.add(90 * time.Second)
	h.add(61 * time.Second)
	if h.n != 103 || h.maximum() != 90_000 {
		t.Fatalf("n %d, max %v, want 103 and 90000", h.n, h.maximum())
	}
	if got := h.percentile(0.5); got != 0.1 {
		t.Errorf("a negative latency counts as 0: p0.5 = %v, want 0.1", got)
	}
	if got := h.percentile(100); got != 90_000 {
		t.Errorf("p100 = %v, want 90000", got)
	}
	if got := h.percentile(99); got != 61_000 { // rank 102 of 103
		t.Errorf("p99 = %v, want 61000", got)
	}
}

func TestMedian(t *testing.T) {
	if got := median([]float64{3, 1, 2}); got != 2 {
		t.Errorf("median odd = %v", got)
	}
	if got := median([]float64{4, 1, 3, 2}); got != 2.5 {
		t.Errorf("median even = %v", got)
	}
	if got := median([]float64{math.NaN(), 1}); got != 1 {
		t.Errorf("median ignoring NaN = %v", got)
	}
}

func TestParseSize(t *testing.T) {
	for in, want := range map[string]int{"100": 100, "100B": 100, "1KB": 1024, "1k": 1024, "2KiB": 2048} {
		if got, err := parseSize(in); err != nil || got != want {
			t.Errorf("parseSize(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	if _, err := parseSize("x"); err == nil {
		t.Error("parseSize(x) succeeded")
	}
}

func TestQuickConfigurations(t *testing.T) {
	cfg, err := parseSuiteFlags([]string{"--quick", "--brokers", "b:9092"})
	if err != nil {
		t.Fatal(err)
	}
	got := configurations(cfg)
	if len(got) != 7 { // raw pipe + 2 workloads x 3 guarantees
		t.Fatalf("quick run has %d configurations, want 7: %v", len(got), got)
	}
	// The raw pipe runs last, after the onceflow paces it is also timed at.
	if got[6].System != sysRawpipe || cfg.repeat != 1 || cfg.intervals[0] != 100*time.Millisecond {
		t.Errorf("quick run: %v last, repeat %d, intervals %v", got[6], cfg.repeat, cfg.intervals)
	}
	full, err := parseSuiteFlags([]string{"--brokers", "b:9092"})
	if err != nil {
		t.Fatal(err)
	}
	// per size: per workload and interval 3 onceflow + 2 Kafka Streams,
	// then the raw pipe
	fc := configurations(full)
	if n := len(fc); n != 2*(1+2*3*5) {
		t.Errorf("full run has %d configurations, want %d", n, 2*(1+2*3*5))
	}
	for i, rc := range fc {
		if last := (i+1)%(1+2*3*5) == 0; (rc.System == sysRawpipe) != last || rc.ValueBytes != fc[i/(1+2*3*5)*(1+2*3*5)].ValueBytes {
			t.Errorf("configuration %d is %v: want the raw pipe last of each value size, and only there", i, rc)
		}
	}
}

// TestFloorTargets: the raw pipe's extra phases are at the paces of the
// exactly-once configurations of onceflow of its value size from the same
// round, by workload and interval, and none with --latency-rate or
// --rawpipe-at-onceflow-pace=false.
func TestFloorTargets(t *testing.T) {
	cfg, err := parseSuiteFlags([]string{"--brokers", "b:9092"})
	if err != nil {
		t.Fatal(err)
	}
	of := func(sys, wl, g string, iv int64, vb int) runConfig {
		return runConfig{System: sys, Workload: wl, Guarantee: g, IntervalMS: iv, ValueBytes: vb}
	}
	s := &suite{cfg: cfg, paces: map[runConfig]roundPace{
		of(sysOnceflow, wlWordcount, gExactlyOnce, 10, 100): {repeat: 2, rate: 300_000},
		of(sysOnceflow, wlCopy, gExactlyOnce, 1000, 100):    {repeat: 2, rate: 650_000},
		of(sysOnceflow, wlCopy, gExactlyOnce, 100, 100):     {repeat: 2, rate: 780_000},
		of(sysOnceflow, wlCopy, gExactlyOnce, 10, 100):      {repeat: 1, rate: 480_000}, // an earlier round
		of(sysOnceflow, wlCopy, gExactlyOnce, 100, 1024):    {repeat: 2, rate: 280_000}, // another size
		of(sysKStreams, wlCopy, gExactlyOnce, 100, 100):     {repeat: 2, rate: 96_000},  // not onceflow
		of(sysOnceflow, wlCopy, gAtLeastOnce, 100, 100):     {repeat: 2, rate: 700_000}, // not exactly-once
	}}
	raw := of(sysRawpipe, wlCopy, gNone, 0, 100)
	got := s.floorTargets(raw, 2)
	want := []floorTarget{
		{of(sysOnceflow, wlCopy, gExactlyOnce, 100, 100), 780_000},
		{of(sysOnceflow, wlCopy, gExactlyOnce, 1000, 100), 650_000},
		{of(sysOnceflow, wlWordcount, gExactlyOnce, 10, 100), 300_000},
	}
	if !slices.Equal(got, want) {
		t.Errorf("floorTargets(raw pipe 100B, round 2) = %v, want %v", got, want)
	}
	if got := s.floorTargets(of(sysOnceflow, wlCopy, gExactlyOnce, 100, 100), 2); got != nil {
		t.Errorf("floorTargets of onceflow = %v, want none", got)
	}
	for _, args := range [][]string{{"--latency-rate", "20000"}, {"--rawpipe-at-onceflow-pace=false"}} {
		if s.cfg, err = parseSuiteFlags(append([]string{"--brokers", "b:9092"}, args...)); err != nil {
			t.Fatal(err)
		}
		if got := s.floorTargets(raw, 2); got != nil {
			t.Errorf("%v: %v, want none", args, got)
		}
	}
}

// TestPaceFloors: the raw pipe's phases at onceflow's paces are summarized
// per configuration over the rounds that had one, and results.md sets each
// beside onceflow's and Kafka Streams' p99.
func TestPaceFloors(t *testing.T) {
	copy100 := runConfig{System: sysOnceflow, Workload: wlCopy, Guarantee: gExactlyOnce, IntervalMS: 100, ValueBytes: 100}
	wc10 := copy100
	wc10.Workload, wc10.IntervalMS = wlWordcount, 10
	fp := func(of runConfig, rate, p50, p99 float64) floorPhase {
		return floorPhase{of: of, phase: phase{rate: rate, p50: p50, p99: p99}}
	}
	rawc := runConfig{System: sysRawpipe, Workload: wlCopy, Guarantee: gNone, ValueBytes: 100}
	raw := summarize(rawc, 1000, []sample{
		{repeat: 1, rps: 1_000_000, lat: phase{rate: 500_000, p99: 40}, floors: []floorPhase{fp(copy100, 780_000, 17, 43), fp(wc10, 300_000, 9, 20)}},
		{repeat: 2, rps: 1_000_000, lat: phase{rate: 500_000, p99: 30}, floors: []floorPhase{fp(copy100, 760_000, 15, 32)}}, // wordcount failed this round
		{repeat: 3, rps: 1_000_000, lat: phase{rate: 500_000, p99: 50}, floors: []floorPhase{fp(copy100, 800_000, 18, 116), fp(wc10, 320_000, 11, 24)}},
	})
	want := []PaceFloor{
		{Workload: wlCopy, CommitIntervalMS: 100, LatencyRate: 780_000, P50MS: 17, P99MS: 43,
			Rounds: []FloorRound{{1, 780_000, 43}, {2, 760_000, 32}, {3, 800_000, 116}}},
		{Workload: wlWordcount, CommitIntervalMS: 10, LatencyRate: 310_000, P50MS: 10, P99MS: 22,
			Rounds: []FloorRound{{1, 300_000, 20}, {3, 320_000, 24}}},
	}
	if !reflect.DeepEqual(raw.AtOnceflowPace, want) {
		t.Errorf("floors = %+v, want %+v", raw.AtOnceflowPace, want)
	}
	b, err := json.Marshal(raw)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(b), `"at_onceflow_pace":[{"workload":"copy","commit_interval_ms":100,"latency_rate":780000,"p50_ms":17,"p99_ms":43,"rounds":[{"repeat":1,"latency_rate":780000,"p99_ms":43},`) {
		t.Errorf("JSON lacks the floors: %s", b)
	}
	if b, _ := json.Marshal(summarize(copy100, 1000, []sample{{repeat: 1, rps: 1}})); strings.Contains(string(b), "at_onceflow_pace") {
		t.Errorf("onceflow's own result carries floors: %s", b)
	}
	eos := summarize(copy100, 1000, []sample{{repeat: 1, rps: 1_500_000, lat: phase{rate: 780_000, p99: 128.9}}})
	ksc := copy100
	ksc.System = sysKStreams
	ks := summarize(ksc, 1000, []sample{{repeat: 1, rps: 190_000, lat: phase{rate: 95_000, p99: 118.2}}})
	md := renderMarkdown(reportMeta{}, []Result{eos, ks, raw})
	for _, want := range []string{
		"| copy | 100ms | 780000 | 17.0 | 43.0 (43.0, 32.0, 116.0) | 128.9 | 28.9 | 95000 | 118.2 | 18.2 |",
		// No onceflow or Kafka Streams result for the wordcount: dashes.
		"| wordcount | 10ms | 310000 | 10.0 | 22.0 (20.0, 24.0) | - | - | - | - | - |",
	} {
		if !strings.Contains(md, want) {
			t.Errorf("results.md lacks\n%s\ngot:\n%s", want, md)
		}
	}
	if md := renderMarkdown(reportMeta{}, fixedResults()); strings.Contains(md, "was also paced at the pace of") {
		t.Errorf("a floor table without floors:\n%s", md)
	}
}

func TestLatencyFlags(t *testing.T) {
	cfg, err := parseSuiteFlags([]string{"--brokers", "b:9092", "--latency-rate", "20000"})
	if err != nil {
		t.Fatal(err)
	}
	if cfg.latencyRate != 20000 || cfg.latencyFrac != 0.5 || cfg.latencyParts != 1 {
		t.Errorf("--latency-rate 20000: rate %v, fraction %v, timed partitions %d; want 20000 and the defaults 0.5 and 1", cfg.latencyRate, cfg.latencyFrac, cfg.latencyParts)
	}
	if cfg, err = parseSuiteFlags([]string{"--brokers", "b:9092", "--partitions", "6", "--latency-partitions", "0"}); err != nil || cfg.latencyParts != 6 {
		t.Fatalf("--partitions 6 --latency-partitions 0: %v, %+v; want all 6 timed", err, cfg)
	}
	for _, args := range [][]string{{"--latency-rate", "-1"}, {"--latency-fraction", "0"}, {"--latency-fraction", "1.5"},
		{"--latency-partitions", "-1"}, {"--latency-partitions", "5"}} {
		if _, err := parseSuiteFlags(append([]string{"--brokers", "b:9092"}, args...)); err == nil {
			t.Errorf("%v: accepted", args)
		}
	}
}

func TestThreadsFlag(t *testing.T) {
	cfg, err := parseSuiteFlags([]string{"--brokers", "b:9092"})
	if err != nil {
		t.Fatal(err)
	}
	if cfg.threads != 1 {
		t.Errorf("default --threads %d, want 1", cfg.threads)
	}
	if !cfg.warmup {
		t.Error("the broker is not warmed up by default")
	}
	if cfg, err := parseSuiteFlags([]string{"--brokers", "b:9092", "--warmup=false"}); err != nil || cfg.warmup {
		t.Fatalf("--warmup=false: %v, %+v", err, cfg)
	}
	if cfg, err = parseSuiteFlags([]string{"--brokers", "b:9092", "--threads", "2"}); err != nil || cfg.threads != 2 {
		t.Fatalf("--threads 2: %v, %+v", err, cfg)
	}
	argv := kstreamsArgv("ks.jar", "b:9092", runConfig{System: sysKStreams, Workload: wlCopy, Guarantee: gExactlyOnce, IntervalMS: 100, ValueBytes: 100}, "in", "out", "app", "/s", cfg.threads)
	if got := strings.Join(argv, " "); !strings.Contains(got, "--threads 2") {
		t.Errorf("Kafka Streams argv %q lacks --threads 2", got)
	}
	if got := markerWaitArgs(cfg.markerWait); got != nil {
		t.Errorf("default --marker-wait passes %q to the processor, want nothing", got)
	}
	if cfg, err := parseSuiteFlags([]string{"--brokers", "b:9092", "--marker-wait", "0"}); err != nil {
		t.Fatalf("--marker-wait 0: %v", err)
	} else if got := strings.Join(markerWaitArgs(cfg.markerWait), " "); got != "--marker-wait 0s" {
		t.Errorf("--marker-wait 0 passes %q to the processor, want --marker-wait 0s", got)
	}
	if _, err := parseSuiteFlags([]string{"--brokers", "b:9092", "--marker-wait", "-1ms"}); err == nil {
		t.Error("--marker-wait -1ms was accepted")
	}
	for _, bad := range []string{"0", "65"} {
		_, err := parseSuiteFlags([]string{"--brokers", "b:9092", "--threads", bad})
		if err == nil || !strings.Contains(err.Error(), "--threads") {
			t.Errorf("--threads %s: error %v, want one naming --threads", bad, err)
		}
	}
}

func fixedResults() []Result {
	nan := num(math.NaN())
	mk := func(sys, wl, g string, ms int64, rps, p99 float64) Result {
		return Result{System: sys, Workload: wl, Guarantee: g, CommitIntervalMS: ms, ValueBytes: 100,
			Records: 1000, RecordsPerSec: num(rps), MBPerSec: num(rps * 100 / 1e6), RecordsPerSecMin: num(rps), RecordsPerSecMax: num(rps),
			P50MS: num(p99 / 2), P99MS: num(p99), MaxMS: num(p99), CPUS: 1, RSSMB: 100, Seconds: 1, StartupS: nan, Repeats: 1,
			BrokerCPUS: 0.5, HarnessCPUS: 0.25, LatencyRate: num(rps / 2), PacedBusyCores: 1.5}
	}
	pipe := mk(sysRawpipe, wlCopy, gNone, 0, 400_000, 10)
	pipe.BrokerCPUS = nan     // broker processes unknown
	pipe.PacedBusyCores = nan // so is their share of the paced phase
	alo := mk(sysOnceflow, wlCopy, gAtLeastOnce, 100, 200_000, 20)
	eos := mk(sysOnceflow, wlCopy, gExactlyOnce, 100, 100_000, 150)
	ks := mk(sysKStreams, wlCopy, gExactlyOnce, 100, 80_000, 300)
	// Three rounds each; the at-least-once one lost its second, and
	// Kafka Streams has none listed.
	alo.Rounds = []Round{{Repeat: 1, RecordsPerSec: 100_000, P99MS: 20}, {Repeat: 3, RecordsPerSec: 400_000, P99MS: 20}}
	eos.Rounds = []Round{{Repeat: 1, RecordsPerSec: 110_000, P99MS: 100}, {Repeat: 2, RecordsPerSec: 100_000, P99MS: 150}, {Repeat: 3, RecordsPerSec: 80_000, P99MS: 200}}
	return []Result{pipe, alo, eos, ks}
}

func TestRatioTables(t *testing.T) {
	md := renderMarkdown(reportMeta{Brokers: "b:9092", Partitions: 4, Keys: 100_000, Repeats: 1, LatencyPct: 50, LatencyDur: 10 * time.Second, CPU: "Test CPU", WarmupRounds: 2}, fixedResults())
	for _, want := range []string{
		// EOS/ALO: throughput halves, p99 7.5x.
		// Per round: rounds 1 and 3, 1.10 and 0.20, median 0.65.
		"| onceflow | copy | 100ms | 100B | 100000 | 200000 | 0.50x | 1.10, 0.20 (0.65x) | 150.0 | 20.0 | 7.50x |",
		// onceflow/Kafka Streams: 1.25x throughput, 0.5x p99, same CPU
		// and RSS; no rounds to pair.
		"| copy | exactly-once | 100ms | 100B | 100000 | 80000 | 1.25x | 150.0 | 300.0 | 0.50x | - | - | - | - | 1.00x | 1.00x |",
		// onceflow/raw pipe.
		"| copy | at-least-once | 100ms | 100B | 200000 | 400000 | 0.50x |",
		"| copy | exactly-once | 100ms | 100B | 100000 | 400000 | 0.25x |",
		// The header names the host's processor.
		" CPUs (Test CPU); the systems",
		// ... and how many warm-up rounds ran.
		"- before the first configuration, 2 unmeasured round(s) of onceflow's",
		// Unknown figures print as "-".
		"| rawpipe | copy | none | - | 100B | 1000 | 400000 (400000–400000) | 40.0 | - |",
		// CPU per record: 1 s, 0.5 s and 0.25 s over 1,000 records in 1 s.
		// ... and the cores busy while paced at half of it.
		"| onceflow | copy | exactly-once | 100ms | 100B | 100000 | 1000.00 | 500.00 | 250.00 | 1.75 | 50000 | 1.50 |",
		"| rawpipe | copy | none | - | 100B | 400000 | 1000.00 | - | 250.00 | - | 200000 | - |",
		// Against the goals: medians decide, rounds counted on their own
		// (round 1 of EOS/ALO 1.10, round 3 0.20; p99s 100, 150, 200).
		"| ≥ 0.90 × at-least-once | copy | 100B | 100ms | 0.50x | **missed** by 0.40 | 1 of 2 |",
		"| ≥ 1.5 × Kafka Streams | copy | 100B | 100ms | 1.25x | **missed** by 0.25 | - |",
		"| p99 ≤ Kafka Streams', each at its own pace | copy | 100B | 100ms | 150.0 vs 300.0 ms | met | - |",
		"| ≥ 0.5 × the raw pipe | copy | 100B | 100ms | 0.25x | **missed** by 0.25 | - |",
		"| p99 ≤ commit interval + 50 ms | copy | 100B | 100ms | 150.0 ms (at most 150) | met | 2 of 3 |",
		// ... and the raw pipe's p99 at its pace for scale.
		"\nFor scale: the raw pipe (100B values) commits nothing; paced at 200000 records/s it had a p99 of 10.0 ms. Under",
	} {
		if !strings.Contains(md, want) {
			t.Errorf("results.md lacks\n%s\ngot:\n%s", want, md)
		}
	}
	if strings.Count(md, "(no pair measured)") != 0 {
		t.Errorf("a ratio table is empty:\n%s", md)
	}
	// The raw pipe copies; a wordcount is not held to it.
	rs := fixedResults()
	wc := rs[2]
	wc.Workload = wlWordcount
	rs[0].Rounds = []Round{{Repeat: 1, RecordsPerSec: 400_000, P99MS: 12.5}, {Repeat: 2, RecordsPerSec: 400_000, P99MS: 10}}
	md = renderMarkdown(reportMeta{}, append(rs, wc))
	if !strings.Contains(md, "| p99 ≤ commit interval + 50 ms | wordcount |") || strings.Contains(md, "| ≥ 0.5 × the raw pipe | wordcount |") {
		t.Errorf("goals of a wordcount: want its p99 row and no raw pipe row:\n%s", md)
	}
	if want := "it had a p99 of 10.0 ms (rounds: 12.5, 10.0)."; strings.Count(md, want) != 1 {
		t.Errorf("want the raw pipe's rounds once, %q:\n%s", want, md)
	}
	if strings.Contains(md, "at Kafka Streams' pace |") {
		t.Errorf("a goal at Kafka Streams' pace without a second latency phase:\n%s", md)
	}
}

// TestAtKStreamsPace: onceflow's second latency phase, at the pace of its
// Kafka Streams peer, is summarized from the rounds that had one and set
// beside Kafka Streams' own p99, round by round.
func TestAtKStreamsPace(t *testing.T) {
	rc := runConfig{System: sysOnceflow, Workload: wlCopy, Guarantee: gExactlyOnce, IntervalMS: 100, ValueBytes: 100}
	samples := []sample{
		{repeat: 1, rps: 100_000, lat: phase{p99: 150, ioStall: 5}, peer: phase{rate: 40_000, p50: 60, p99: 110, ioStall: 250}},
		{repeat: 2, rps: 100_000, lat: phase{p99: 160, ioStall: math.NaN()}}, // Kafka Streams failed this round: no second phase; no pressure file
		{repeat: 3, rps: 100_000, lat: phase{p99: 170, ioStall: 7}, peer: phase{rate: 42_000, p50: 70, p99: 130, ioStall: 0.5}},
	}
	eos := summarize(rc, 1000, samples)
	if eos.KStreamsPaceRate != 41_000 || eos.P50AtKStreamsPace != 65 || eos.P99AtKStreamsPace != 120 {
		t.Errorf("summary at Kafka Streams' pace: rate %v p50 %v p99 %v, want the medians of rounds 1 and 3: 41000, 65, 120",
			eos.KStreamsPaceRate, eos.P50AtKStreamsPace, eos.P99AtKStreamsPace)
	}
	if got := []num{eos.Rounds[0].P99AtKStreamsPace, eos.Rounds[1].P99AtKStreamsPace, eos.Rounds[2].P99AtKStreamsPace}; !slices.Equal(got, []num{110, 0, 130}) {
		t.Errorf("rounds' p99 at Kafka Streams' pace = %v, want 110, 0 (none), 130", got)
	}
	if got := []num{eos.Rounds[0].IOStallMSAtKStreamsPace, eos.Rounds[1].IOStallMSAtKStreamsPace, eos.Rounds[2].IOStallMSAtKStreamsPace}; !slices.Equal(got, []num{250, 0, 0.5}) {
		t.Errorf("rounds' I/O stall at Kafka Streams' pace = %v, want 250, 0 (none), 0.5", got)
	}
	if eos.PacedIOStallMS != 6 {
		t.Errorf("paced I/O stall median = %v, want 6 (of 5 and 7; the unknown round left out)", eos.PacedIOStallMS)
	}
	b, err := json.Marshal(eos)
	if err != nil {
		t.Fatal(err)
	}
	if js := string(b); !strings.Contains(js, `"p99_ms_at_kstreams_pace":120`) || strings.Count(js, `"p99_ms_at_kstreams_pace"`) != 3 ||
		!strings.Contains(js, `{"repeat":2,"records_per_sec":100000,"p99_ms":160,"paced_io_stall_ms":null}`) {
		t.Errorf("JSON: want the median, the two rounds that had a second phase, and round 2 with an unknown I/O stall:\n%s", js)
	}
	ksc := rc
	ksc.System = sysKStreams
	ks := summarize(ksc, 1000, []sample{{repeat: 1, rps: 10_000, lat: phase{p99: 100}}, {repeat: 2, rps: 10_000, lat: phase{p99: 300}}, {repeat: 3, rps: 10_000, lat: phase{p99: 125}}})
	if b, _ := json.Marshal(ks); strings.Contains(string(b), "kstreams_pace") {
		t.Errorf("Kafka Streams' own result carries a second phase: %s", b)
	}
	md := renderMarkdown(reportMeta{}, []Result{eos, ks})
	for _, want := range []string{
		// p99 at its own pace 160 against 125; at Kafka Streams' pace 120;
		// per round 110/100 and 130/125.
		"| copy | exactly-once | 100ms | 100B | 100000 | 10000 | 10.00x | 160.0 | 125.0 | 1.28x | 1.50, 0.53, 1.36 (1.36x) | 41000 | 120.0 | 1.10, 1.04 (1.07x) |",
		"| p99 ≤ Kafka Streams', each at its own pace | copy | 100B | 100ms | 160.0 vs 125.0 ms | **missed** by 35.0 ms | 1 of 3 |",
		"| p99 ≤ Kafka Streams', at Kafka Streams' pace | copy | 100B | 100ms | 120.0 vs 125.0 ms at 41000 records/s | met | 0 of 2 |",
	} {
		if !strings.Contains(md, want) {
			t.Errorf("results.md lacks\n%s\ngot:\n%s", want, md)
		}
	}
}

// TestPeerRate: the second phase's pace is the Kafka Streams peer's of the
// same round, for onceflow under exactly-once only, and never with
// --latency-rate or --at-kstreams-pace=false.
func TestPeerRate(t *testing.T) {
	cfg, err := parseSuiteFlags([]string{"--brokers", "b:9092"})
	if err != nil {
		t.Fatal(err)
	}
	// Kafka Streams runs just before onceflow in each guarantee.
	cs := configurations(cfg)
	for i, rc := range cs {
		if rc.System == sysOnceflow && rc.Guarantee != gAtMostOnce {
			if prev := cs[i-1]; prev.System != sysKStreams || prev.Workload != rc.Workload || prev.Guarantee != rc.Guarantee || prev.IntervalMS != rc.IntervalMS || prev.ValueBytes != rc.ValueBytes {
				t.Fatalf("%v comes after %v, want after its Kafka Streams peer", rc, prev)
			}
		}
	}
	eos := runConfig{System: sysOnceflow, Workload: wlWordcount, Guarantee: gExactlyOnce, IntervalMS: 10, ValueBytes: 100}
	peer := eos
	peer.System = sysKStreams
	alo := eos
	alo.Guarantee = gAtLeastOnce
	aloPeer := peer
	aloPeer.Guarantee = gAtLeastOnce
	s := &suite{cfg: cfg, paces: map[runConfig]roundPace{peer: {repeat: 2, rate: 30_000}, aloPeer: {repeat: 2, rate: 35_000}}}
	if got := s.peerRate(eos, 2); got != 30_000 {
		t.Errorf("round 2: %v, want the peer's 30000", got)
	}
	if got := s.peerRate(eos, 3); got != 0 {
		t.Errorf("round 3, the peer's pace from round 2: %v, want none", got)
	}
	if got := s.peerRate(alo, 2); got != 0 {
		t.Errorf("at-least-once: %v, want none", got)
	}
	for _, args := range [][]string{{"--latency-rate", "20000"}, {"--at-kstreams-pace=false"}} {
		if s.cfg, err = parseSuiteFlags(append([]string{"--brokers", "b:9092"}, args...)); err != nil {
			t.Fatal(err)
		}
		if got := s.peerRate(eos, 2); got != 0 {
			t.Errorf("%v: %v, want none", args, got)
		}
	}
}

func TestResultJSON(t *testing.T) {
	b, err := json.Marshal(fixedResults()[:1])
	if err != nil {
		t.Fatal(err)
	}
	s := string(b)
	for _, want := range []string{`"system":"rawpipe"`, `"records_per_sec":400000`, `"startup_s":null`, `"records_per_sec_min":400000`, `"commit_interval_ms":0`} {
		if !strings.Contains(s, want) {
			t.Errorf("JSON lacks %s: %s", want, s)
		}
	}
	var back []Result
	if err := json.Unmarshal(b, &back); err != nil {
		t.Fatal(err)
	}
	if !math.IsNaN(float64(back[0].StartupS)) || back[0].RecordsPerSec != 400_000 {
		t.Errorf("round trip: %+v", back[0])
	}
}

func TestBrokerPIDs(t *testing.T) {
	if got := summaryPIDs("Apache Kafka 4.4.0 (KRaft, 3 node(s), pids 101 202 303)"); !slices.Equal(got, []int{101, 202, 303}) {
		t.Errorf("summaryPIDs of three nodes = %v", got)
	}
	for _, line := range []string{"started 1 node(s)", "Apache Kafka 4.4.0 (KRaft, 1 node(s), pids x)"} {
		if got := summaryPIDs(line); got != nil {
			t.Errorf("summaryPIDs(%q) = %v, want nil", line, got)
		}
	}
	if _, err := parsePIDs("12,-3"); err == nil || !strings.Contains(err.Error(), `"-3"`) {
		t.Errorf("parsePIDs(12,-3) error = %v, want one naming -3", err)
	}
	if _, err := parseSuiteFlags([]string{"--brokers=", "--broker-pids", "12"}); err == nil || !strings.Contains(err.Error(), "--broker-pids needs --brokers") {
		t.Errorf("--broker-pids without --brokers: error = %v", err)
	}
}

func TestAppendKey(t *testing.T) {
	// 1,000,050 keys cross from 7-byte keys ("w999999") to 8-byte ones.
	for _, keys := range []int{1, 26, 100_000, 1_000_050} {
		for n := range uint64(20_001) {
			i := n
			if n == 20_000 {
				i = 1 << 40
			}
			want := fmt.Sprintf("w%06d", spread(i)%uint64(keys))
			if got := appendKey([]byte("x"), keyIndex(i, keys)); string(got) != "x"+want {
				t.Fatalf("keys=%d: appendKey(x, keyIndex(%d)) = %q, want x%s", keys, i, got, want)
			}
			if got := keyOf(i, keys); string(got) != want {
				t.Fatalf("keys=%d: keyOf(%d) = %q, want %s", keys, i, got, want)
			}
		}
	}
	for _, j := range []int{0, 7, 999_999, 1_000_000, 123_456_789} {
		if got, want := string(appendKey(nil, j)), fmt.Sprintf("w%06d", j); got != want {
			t.Errorf("appendKey(%d) = %q, want %q", j, got, want)
		}
	}
}

// TestBatchWriter decodes batches written by batchWriter with franz-go's
// protocol package: header fields, checksum, and every record's key, value
// and offset delta.
func TestBatchWriter(t *testing.T) {
	vals := newValueSource(100)
	key := func(i int) []byte { return keyOf(uint64(i), 1000) }
	var w batchWriter
	for round, n := range []int{1, 3, 700} { // 700 records: offset deltas past one varint byte
		w.reset()
		for i := range n {
			w.add(key(i), vals.value(uint64(i)))
		}
		ts := int64(1_700_000_000_000 + round)
		raw := w.finish(ts)
		var b kmsg.RecordBatch
		if err := b.ReadFrom(raw); err != nil {
			t.Fatalf("n=%d: ReadFrom: %v", n, err)
		}
		if int(b.Length) != len(raw)-12 || b.Magic != 2 || b.Attributes != 0 || b.LastOffsetDelta != int32(n-1) ||
			b.FirstTimestamp != ts || b.MaxTimestamp != ts || b.ProducerID != -1 || b.ProducerEpoch != -1 ||
			b.FirstSequence != -1 || b.NumRecords != int32(n) || b.PartitionLeaderEpoch != -1 {
			t.Fatalf("n=%d: header %+v", n, b)
		}
		if got, want := uint32(b.CRC), crc32.Checksum(raw[21:], crc32.MakeTable(crc32.Castagnoli)); got != want {
			t.Fatalf("n=%d: crc %08x, want %08x", n, got, want)
		}
		src := b.Records
		for i := range n {
			l, k := binary.Varint(src)
			if k <= 0 || int(l)+k > len(src) {
				t.Fatalf("n=%d: record %d: bad length prefix", n, i)
			}
			var r kmsg.Record
			if err := r.ReadFrom(src[:k+int(l)]); err != nil {
				t.Fatalf("n=%d: record %d: %v", n, i, err)
			}
			src = src[k+int(l):]
			if r.OffsetDelta != int32(i) || r.TimestampDelta64 != 0 || len(r.Headers) != 0 ||
				!bytes.Equal(r.Key, key(i)) || !bytes.Equal(r.Value, vals.value(uint64(i))) {
				t.Fatalf("n=%d: record %d = %+v", n, i, r)
			}
		}
		if len(src) != 0 {
			t.Fatalf("n=%d: %d bytes after the last record", n, len(src))
		}
	}
}

// TestRequestRecordsFitOnePartition: a paced request's records, all in
// one partition's batch, stay under maxRequestBytes and so under the
// broker's default message.max.bytes (1,048,588), for every value size
// the suite runs and beyond. 4,096 records of 1 KB, the limit before, did
// not (the broker refused them with MESSAGE_TOO_LARGE).
func TestRequestRecordsFitOnePartition(t *testing.T) {
	const brokerDefault = 1_048_588
	for _, size := range []int{0, 1, 100, 1000, 1024, 4096, 10_000, 100_000} {
		vals := newValueSource(size)
		n := requestRecords(size)
		var w batchWriter
		w.reset()
		for i := range n {
			w.add(appendKey(nil, 10_000_000+i), vals.value(uint64(i))) // 9-byte keys, longer than the suite's
		}
		got := len(w.finish(0))
		if got > maxRequestBytes+batchHeaderLen || got > brokerDefault {
			t.Errorf("value %d B: %d records encode to %d bytes, over %d", size, n, got, maxRequestBytes+batchHeaderLen)
		}
		if size <= 100 && n != maxRequestRecords {
			t.Errorf("value %d B: %d records per request, want %d", size, n, maxRequestRecords)
		}
	}
	// The loop checked 1 KB's encoded size; the cap must not starve it.
	if n := requestRecords(1024); n < 400 {
		t.Errorf("1 KB values: %d records per request, want at least 400", n)
	}
}

// TestPacedPartitions: the paced producer places keys as franz-go's default
// partitioner (which loaded the input) does.
func TestPacedPartitions(t *testing.T) {
	partOf := pacedPartitions("t", 100_000, 4)
	def, ok := kgo.UniformBytesPartitioner(64<<10, true, true, nil).ForTopic("t").(kgo.TopicBackupPartitioner)
	if !ok {
		t.Fatal("franz-go's default partitioner is no longer a TopicBackupPartitioner")
	}
	for j := range 100_000 {
		r := &kgo.Record{Key: appendKey(nil, j)}
		if a, b := int(partOf[j]), def.PartitionByBackup(r, 4, nil); a != b {
			t.Fatalf("key %q: partition %d, default partitioner %d", r.Key, a, b)
		}
	}
}

// TestResize checks when a first repeat runs again with a larger N: only
// when its throughput phase was under half the target and sizing from its
// rate gives more records.
func TestResize(t *testing.T) {
	s := &suite{cfg: &suiteConfig{targetSecs: 15}, rates: map[string]float64{}}
	rc := runConfig{System: sysOnceflow, Workload: wlCopy, Guarantee: gExactlyOnce, IntervalMS: 100, ValueBytes: 100}
	n := s.records(rc) // from the guessed rate
	short := sample{seconds: 1.2, rps: 1_250_000}
	s.sized(rc, short)
	got, again := s.resize(short, n, s.records(rc))
	if !again || got != 18_750_000 {
		t.Fatalf("resize after %.1fs at %.0f/s from N=%d: N=%d, again %v; want 18750000, true", short.seconds, short.rps, n, got, again)
	}
	if got, again := s.resize(sample{seconds: 7.5, rps: 1_250_000}, n, 18_750_000); again || got != n {
		t.Fatalf("a phase of half the target: N=%d, again %v; want %d, false", got, again, n)
	}
	if got, again := s.resize(short, 20_000_000, 18_750_000); again || got != 20_000_000 {
		t.Fatalf("a short phase whose sized N is not larger: N=%d, again %v; want 20000000, false", got, again)
	}
}

func TestBusyCores(t *testing.T) {
	// 1 + 2 + 3 CPU seconds over 2 s of wall time: 3 cores.
	if got := busyCores(2*time.Second, []float64{1, 2, 3}, []float64{2, 4, 6}); got != 3 {
		t.Errorf("busyCores = %v, want 3", got)
	}
	// A process whose CPU time is unknown (-1) makes the sum unknown.
	if got := busyCores(time.Second, []float64{1, -1}, []float64{2, 5}); !math.IsNaN(got) {
		t.Errorf("busyCores with an unknown reading = %v, want NaN", got)
	}
}

// TestIngestFlags: bad flags of `bench ingest` are refused, naming the
// flag, before anything connects.
func TestIngestFlags(t *testing.T) {
	t.Setenv("KAFKA_BROKERS", "")
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--rate", "0"}, "--rate"},
		{[]string{"--duration", "-1s"}, "--duration"},
		{[]string{"--partitions", "300"}, "--partitions"},
		{[]string{"--keys", "0"}, "--keys"},
		{[]string{"--value-bytes", "-1"}, "--value-bytes"},
		{[]string{"--brokers", "127.0.0.1:1", "--broker-pids", "x"}, `"x"`},
		{[]string{"--broker-pids", "12"}, "--broker-pids needs --brokers"},
	} {
		err := ingestCmd(t.Context(), tc.args)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("ingest %v: error = %v, want one naming %s", tc.args, err, tc.want)
		}
	}
}

// TestSummarizeRounds: every sample becomes a round, in order, with the
// repeat it ran in, and the medians stay the medians.
func TestSummarizeRounds(t *testing.T) {
	rc := runConfig{System: sysOnceflow, Workload: wlCopy, Guarantee: gExactlyOnce, IntervalMS: 100, ValueBytes: 100}
	r := summarize(rc, 1000, []sample{
		{repeat: 1, rps: 300, lat: phase{p99: 120}},
		{repeat: 3, rps: 100, lat: phase{p99: 180}},
		{repeat: 4, rps: 200, lat: phase{p99: 90}},
	})
	rd := func(rep int, rps, p99 num) Round { return Round{Repeat: rep, RecordsPerSec: rps, P99MS: p99} }
	want := []Round{rd(1, 300, 120), rd(3, 100, 180), rd(4, 200, 90)}
	if !slices.Equal(r.Rounds, want) {
		t.Errorf("rounds = %v, want %v", r.Rounds, want)
	}
	if r.RecordsPerSec != 200 || r.P99MS != 120 {
		t.Errorf("medians = %v records/s, p99 %v; want 200 and 120", r.RecordsPerSec, r.P99MS)
	}
	b, err := json.Marshal(r)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(b), `"rounds":[{"repeat":1,"records_per_sec":300,"p99_ms":120,"paced_io_stall_ms":0},`) {
		t.Errorf("JSON lacks the rounds: %s", b)
	}
	if got := roundRatios(r, Result{Rounds: []Round{rd(2, 100, 1), rd(4, 400, 0)}}, roundRPS); !slices.Equal(got, []float64{0.5}) {
		t.Errorf("roundRatios over one common round = %v, want [0.5]", got)
	}
	if got := perRound(r, Result{Rounds: []Round{rd(4, 0, 0)}}, roundP99); got != "-" {
		t.Errorf("perRound dividing by 0 = %q, want -", got)
	}
}

// TestPressureFull reads the "full" total of a Linux pressure file, in
// seconds, and -1 where there is none.
func TestPressureFull(t *testing.T) {
	psi := "some avg10=2.03 avg60=1.06 avg300=4.28 total=248085909\nfull avg10=1.14 avg60=0.53 avg300=3.59 total=127411156\n"
	if got := pressureFullSeconds(psi); got != 127.411156 {
		t.Errorf("pressureFullSeconds = %v, want 127.411156", got)
	}
	for _, bad := range []string{"", "some avg10=0.00 total=5\n", "full avg10=0.00 total=x\n"} {
		if got := pressureFullSeconds(bad); got != -1 {
			t.Errorf("pressureFullSeconds(%q) = %v, want -1", bad, got)
		}
	}
}

func TestMeminfoDirty(t *testing.T) {
	mi := "MemTotal:       24576000 kB\nDirty:            524288 kB\nWriteback:           0 kB\n"
	if got := meminfoDirtyMiB(mi); got != 512 {
		t.Errorf("meminfoDirtyMiB = %v, want 512", got)
	}
	for _, bad := range []string{"", "MemTotal: 1 kB\n", "Dirty: x kB\n"} {
		if got := meminfoDirtyMiB(bad); !math.IsNaN(got) {
			t.Errorf("meminfoDirtyMiB(%q) = %v, want NaN", bad, got)
		}
	}
}

// TestStatCPUSeconds reads utime+stime (clock ticks) from a stat line
// whose command name holds spaces and a ')'.
func TestStatCPUSeconds(t *testing.T) {
	st := "4242 (C2 Compiler) x) S 1 2 3 0 -1 4194368 10 0 0 0 150 25 0 0 20 0 40 0 7 0 0\n"
	if got := statCPUSeconds(st); got != 1.75 {
		t.Errorf("statCPUSeconds = %v, want 1.75", got)
	}
	for _, bad := range []string{"", "4242 (java S 1", "4242 (java) S 1 2 3", "4242 (java) S 1 2 3 0 -1 4194368 10 0 0 0 x 25 0"} {
		if got := statCPUSeconds(bad); got != -1 {
			t.Errorf("statCPUSeconds(%q) = %v, want -1", bad, got)
		}
	}
}

// TestThreadsCPUSeconds sums the JIT compiler threads of a task directory
// laid out as /proc shows one, and nothing else.
func TestThreadsCPUSeconds(t *testing.T) {
	dir := t.TempDir()
	for tid, th := range map[string]struct {
		comm         string
		utime, stime int
	}{
		"101": {"C2 CompilerThre", 300, 20},
		"102": {"C1 CompilerThre", 70, 10},
		"103": {"data-plane-kafk", 900, 400},
		"104": {"java", 50, 5},
	} {
		if err := os.MkdirAll(filepath.Join(dir, tid), 0o755); err != nil {
			t.Fatal(err)
		}
		stat := fmt.Sprintf("%s (%s) S 1 1 1 0 -1 0 0 0 0 0 %d %d 0 0 20 0 1 0 5 0 0\n", tid, th.comm, th.utime, th.stime)
		if err := os.WriteFile(filepath.Join(dir, tid, "stat"), []byte(stat), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, tid, "comm"), []byte(th.comm+"\n"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if got := threadsCPUSeconds(dir, isJITThread); math.Abs(got-4.0) > 1e-9 {
		t.Errorf("threadsCPUSeconds(JIT) = %v, want 4.0 (3.2 + 0.8)", got)
	}
	if got := threadsCPUSeconds(filepath.Join(dir, "missing"), isJITThread); got != -1 {
		t.Errorf("threadsCPUSeconds(missing dir) = %v, want -1", got)
	}
	if got := jitCPUSeconds(nil); got != -1 {
		t.Errorf("jitCPUSeconds(no pids) = %v, want -1", got)
	}
	// The broker's compilers since a reading: unknown stays unknown (no
	// pids, or an unknown reading), and a drop (an ended compiler thread)
	// counts as none. This Go process has no compiler threads: 0 s.
	if got := (&suite{}).brokerJITSince(0); !math.IsNaN(got) {
		t.Errorf("brokerJITSince without pids = %v, want NaN", got)
	}
	if _, err := os.Stat("/proc/self/task"); err == nil {
		self := &suite{brokerPIDs: []int{os.Getpid()}}
		if got := self.brokerJITSeconds(); got != 0 {
			t.Errorf("brokerJITSeconds of a Go process = %v, want 0", got)
		}
		if got := self.brokerJITSince(5); got != 0 {
			t.Errorf("brokerJITSince after a drop = %v, want 0", got)
		}
		if got := self.brokerJITSince(-1); !math.IsNaN(got) {
			t.Errorf("brokerJITSince(unknown) = %v, want NaN", got)
		}
	}
	// Several processes sum; one unknown makes the sum unknown.
	half := func(pid int) float64 { return float64(pid) / 2 }
	if got := sumOverPIDs([]int{3, 5}, half); got != 4 {
		t.Errorf("sumOverPIDs = %v, want 4", got)
	}
	if got := sumOverPIDs([]int{3, -1}, half); got != -1 {
		t.Errorf("sumOverPIDs with an unknown = %v, want -1", got)
	}
}

func TestWriteBackFlag(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want bool
	}{{nil, canSyncDisks}, {[]string{"--write-back=false"}, false}, {[]string{"--quick"}, canSyncDisks}} {
		cfg, err := parseSuiteFlags(append([]string{"--brokers", "b:9092"}, tc.args...))
		if err != nil {
			t.Fatalf("%v: %v", tc.args, err)
		}
		if cfg.writeBack != tc.want {
			t.Errorf("%v: writeBack %v, want %v", tc.args, cfg.writeBack, tc.want)
		}
	}
}

// TestChartsCmd draws a committed run's charts again from its
// results.json, and refuses a missing directory argument and a directory
// without results, naming the file.
func TestChartsCmd(t *testing.T) {
	b, err := os.ReadFile(filepath.Join("results", "2026-11-28-full-r7", "results.json"))
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "results.json"), b, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := chartsCmd([]string{dir}); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"throughput-copy-100B", "throughput-wordcount-100B", "latency-copy-100B", "latency-wordcount-100B"} {
		f, err := os.Open(filepath.Join(dir, name+".png"))
		if err != nil {
			t.Fatal(err)
		}
		cfg, err := png.DecodeConfig(f)
		f.Close()
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if cfg.Width < 700 || cfg.Height < 400 {
			t.Errorf("%s: %dx%d, want at least 700x400", name, cfg.Width, cfg.Height)
		}
	}
	if err := chartsCmd(nil); !errors.Is(err, errUsage) {
		t.Errorf("no directory: %v, want a usage error", err)
	}
	empty := t.TempDir()
	if err := chartsCmd([]string{empty}); err == nil || !strings.Contains(err.Error(), "results.json") {
		t.Errorf("a directory without results: %v, want an error naming results.json", err)
	}
}
