package main

import (
	"encoding/json"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"time"
)

// num is a float that is null in JSON when unknown (NaN).
type num float64

func (n num) MarshalJSON() ([]byte, error) {
	f := float64(n)
	if math.IsNaN(f) || math.IsInf(f, 0) {
		return []byte("null"), nil
	}
	return json.Marshal(math.Round(f*1000) / 1000)
}

func (n *num) UnmarshalJSON(b []byte) error {
	if string(b) == "null" {
		*n = num(math.NaN())
		return nil
	}
	var f float64
	if err := json.Unmarshal(b, &f); err != nil {
		return fmt.Errorf("number: %w", err)
	}
	*n = num(f)
	return nil
}

// Result is one configuration's summary: the median over its repeats of
// every figure, and the spread of the throughput.
type Result struct {
	Workload         string `json:"workload"`
	System           string `json:"system"`
	Guarantee        string `json:"guarantee"`
	CommitIntervalMS int64  `json:"commit_interval_ms"`
	ValueBytes       int    `json:"value_bytes"`
	Records          int    `json:"records"`
	Seconds          num    `json:"seconds"`
	RecordsPerSec    num    `json:"records_per_sec"`
	MBPerSec         num    `json:"mb_per_sec"`
	P50MS            num    `json:"p50_ms"`
	P99MS            num    `json:"p99_ms"`
	MaxMS            num    `json:"max_ms"`
	CPUS             num    `json:"cpu_s"`
	RSSMB            num    `json:"rss_mb"`
	Repeats          int    `json:"repeats"`
	RecordsPerSecMin num    `json:"records_per_sec_min"`
	RecordsPerSecMax num    `json:"records_per_sec_max"`
	StartupS         num    `json:"startup_s"`
	LatencyRate      num    `json:"latency_rate"`
	LatencySamples   int    `json:"latency_samples"`
	CPUTotalS        num    `json:"cpu_total_s"`
	// BrokerCPUS and HarnessCPUS are the CPU seconds of the broker and of
	// the suite's own process (the result reader) during the throughput
	// phase; null when the broker's processes are unknown.
	BrokerCPUS  num `json:"broker_cpu_s"`
	HarnessCPUS num `json:"harness_cpu_s"`
	// PacedBusyCores is how many cores the system, the broker and the
	// suite's process (paced producer and reader) kept busy during the
	// latency phase; null when the broker's processes are unknown.
	PacedBusyCores num `json:"paced_busy_cores"`
	// PacedIOStallMS is how long, during the latency phase, every task of
	// the host that was not idle waited for I/O at once (Linux's "full" I/O
	// pressure), in milliseconds; null when unknown.
	PacedIOStallMS num `json:"paced_io_stall_ms"`
	// Threads is the instance's processing threads (--threads); the raw
	// pipe always has one consumer and one producer.
	Threads int `json:"threads"`
	// KStreamsPaceRate, P50AtKStreamsPace and P99AtKStreamsPace are the
	// medians of a second latency phase of onceflow's exactly-once
	// configurations, paced at the rate its Kafka Streams peer was paced at
	// in the same round (--at-kstreams-pace); absent where there was none.
	KStreamsPaceRate  num `json:"kstreams_pace_rate,omitzero"`
	P50AtKStreamsPace num `json:"p50_ms_at_kstreams_pace,omitzero"`
	P99AtKStreamsPace num `json:"p99_ms_at_kstreams_pace,omitzero"`
	// AtOnceflowPace are the raw pipe's latency phases at the pace of each
	// exactly-once configuration of onceflow of its value size
	// (--rawpipe-at-onceflow-pace); absent for the other systems.
	AtOnceflowPace []PaceFloor `json:"at_onceflow_pace,omitempty"`
	// PacedCommits is how onceflow committed during the latency phase at
	// its own pace; absent for the other systems.
	PacedCommits *CommitSummary `json:"paced_commits,omitempty"`
	// PacedBrokerGCMaxMS and PacedBrokerGCMS are the longest of the
	// broker's stop-the-world collector pauses during the latency phase,
	// and their sum, in ms (from the broker's GC log); null when the
	// suite cannot read the log, absent when the phase had no pause.
	PacedBrokerGCMaxMS num `json:"paced_broker_gc_max_ms,omitzero"`
	PacedBrokerGCMS    num `json:"paced_broker_gc_ms,omitzero"`
	// Rounds are the repeats one by one, in the order they ran.
	Rounds []Round `json:"rounds,omitempty"`
}

// PaceFloor is the raw pipe's latency at the pace of one exactly-once
// configuration of onceflow (workload and interval; same value size):
// medians over the rounds, and the rounds' own figures.
type PaceFloor struct {
	Workload         string       `json:"workload"`
	CommitIntervalMS int64        `json:"commit_interval_ms"`
	LatencyRate      num          `json:"latency_rate"`
	P50MS            num          `json:"p50_ms"`
	P99MS            num          `json:"p99_ms"`
	Rounds           []FloorRound `json:"rounds"`
}

// CommitSummary is onceflow's commits during a latency phase, medians over
// the rounds: commits per second; their mean duration and the part of it
// spent flushing; their p50, p99 and longest (bucket bounds of the
// processor's Stats.CommitTimes, at most 19% above the true value); and
// the share that took longer than the commit interval, in percent. A
// commit of a transaction ends at most one commit interval plus its own
// duration after a record entered it, so a long commit is a late record.
type CommitSummary struct {
	PerSecond num `json:"per_s"`
	MeanMS    num `json:"mean_ms"`
	FlushMS   num `json:"flush_ms"`
	P50MS     num `json:"p50_ms"`
	P99MS     num `json:"p99_ms"`
	MaxMS     num `json:"max_ms"`
	OverPct   num `json:"over_interval_pct"`
	// MarkerP50MS and MarkerP99MS are commitPhase's.
	MarkerP50MS num `json:"marker_p50_ms"`
	MarkerP99MS num `json:"marker_p99_ms"`
	// AgeP99MS and AgeMaxMS are commitPhase's.
	AgeP99MS num `json:"age_p99_ms"`
	AgeMaxMS num `json:"age_max_ms"`
	// PollAgeP99MS is commitPhase's.
	PollAgeP99MS num `json:"poll_age_p99_ms"`
}

// summarizeCommits is the CommitSummary of the samples' latency phases at
// their own pace, or nil when none has a commit report.
func summarizeCommits(samples []sample) *CommitSummary {
	var cps []commitPhase
	for _, s := range samples {
		if s.lat.commits.Commits > 0 {
			cps = append(cps, s.lat.commits)
		}
	}
	if len(cps) == 0 {
		return nil
	}
	by := func(get func(commitPhase) float64) num { return medianBy(cps, get) }
	return &CommitSummary{
		PerSecond:    by(func(c commitPhase) float64 { return c.PerSecond }),
		MeanMS:       by(func(c commitPhase) float64 { return c.MeanMS }),
		FlushMS:      by(func(c commitPhase) float64 { return c.FlushMS }),
		P50MS:        by(func(c commitPhase) float64 { return c.P50MS }),
		P99MS:        by(func(c commitPhase) float64 { return c.P99MS }),
		MaxMS:        by(func(c commitPhase) float64 { return c.MaxMS }),
		OverPct:      by(func(c commitPhase) float64 { return c.OverPct }),
		MarkerP50MS:  by(func(c commitPhase) float64 { return c.MarkerP50MS }),
		MarkerP99MS:  by(func(c commitPhase) float64 { return c.MarkerP99MS }),
		AgeP99MS:     by(func(c commitPhase) float64 { return c.AgeP99MS }),
		AgeMaxMS:     by(func(c commitPhase) float64 { return c.AgeMaxMS }),
		PollAgeP99MS: by(func(c commitPhase) float64 { return c.PollAgeP99MS }),
	}
}

// FloorRound is one round of a PaceFloor.
type FloorRound struct {
	Repeat      int `json:"repeat"`
	LatencyRate num `json:"latency_rate"`
	P99MS       num `json:"p99_ms"`
}

// Round is one repeat of a configuration. The suite runs round r of every
// configuration before round r+1, so the same round of two configurations
// ran minutes apart, not a whole run apart: their ratio is the one least
// moved by a host whose speed drifts during a run.
type Round struct {
	Repeat        int `json:"repeat"`
	RecordsPerSec num `json:"records_per_sec"`
	P99MS         num `json:"p99_ms"`
	// PacedIOStallMS is the round's (Result's field of that name).
	PacedIOStallMS num `json:"paced_io_stall_ms"`
	// P99AtKStreamsPace is the p99 of the round's second latency phase
	// (Result's field of that name), and IOStallMSAtKStreamsPace the
	// host's I/O stall during it; absent where there was none.
	P99AtKStreamsPace       num `json:"p99_ms_at_kstreams_pace,omitzero"`
	IOStallMSAtKStreamsPace num `json:"io_stall_ms_at_kstreams_pace,omitzero"`
	// CommitP99MS and CommitMaxMS are the p99 and the longest of
	// onceflow's commits in the round's latency phase (CommitSummary);
	// absent for the other systems.
	CommitP99MS num `json:"commit_p99_ms,omitzero"`
	CommitMaxMS num `json:"commit_max_ms,omitzero"`
	// BrokerGCMaxMS is the round's PacedBrokerGCMaxMS.
	BrokerGCMaxMS num `json:"broker_gc_max_ms,omitzero"`
}

func (r Result) config() runConfig {
	return runConfig{System: r.System, Workload: r.Workload, Guarantee: r.Guarantee, IntervalMS: r.CommitIntervalMS, ValueBytes: r.ValueBytes}
}

// summarize takes the median of each figure over the samples.
func summarize(rc runConfig, n int, samples []sample) Result {
	pick := func(f func(sample) float64) num { return medianBy(samples, f) }
	rps := make([]float64, len(samples))
	lat := make([]float64, len(samples))
	for i, s := range samples {
		rps[i] = s.rps
		lat[i] = float64(s.lat.n)
	}
	r := Result{
		Workload: rc.Workload, System: rc.System, Guarantee: rc.Guarantee,
		CommitIntervalMS: rc.IntervalMS, ValueBytes: rc.ValueBytes, Records: n,
		Seconds:            pick(func(s sample) float64 { return s.seconds }),
		RecordsPerSec:      num(median(rps)),
		P50MS:              pick(func(s sample) float64 { return s.lat.p50 }),
		P99MS:              pick(func(s sample) float64 { return s.lat.p99 }),
		MaxMS:              pick(func(s sample) float64 { return s.lat.max }),
		CPUS:               pick(func(s sample) float64 { return s.cpu }),
		RSSMB:              pick(func(s sample) float64 { return s.rss }),
		Repeats:            len(samples),
		RecordsPerSecMin:   num(slices.Min(rps)),
		RecordsPerSecMax:   num(slices.Max(rps)),
		StartupS:           pick(func(s sample) float64 { return s.startup }),
		LatencyRate:        pick(func(s sample) float64 { return s.lat.rate }),
		LatencySamples:     int(median(lat)),
		CPUTotalS:          pick(func(s sample) float64 { return s.cpuTotal }),
		BrokerCPUS:         pick(func(s sample) float64 { return s.brokerCPU }),
		HarnessCPUS:        pick(func(s sample) float64 { return s.harnessCPU }),
		PacedBusyCores:     pick(func(s sample) float64 { return s.lat.busy }),
		PacedIOStallMS:     pick(func(s sample) float64 { return s.lat.ioStall }),
		PacedBrokerGCMaxMS: pick(func(s sample) float64 { return s.lat.gc.max }),
		PacedBrokerGCMS:    pick(func(s sample) float64 { return s.lat.gc.totalMS }),
	}
	r.MBPerSec = num(float64(r.RecordsPerSec) * float64(rc.ValueBytes) / 1e6)
	// The second phase's figures: NaN for the samples without one, which
	// the median leaves out, and 0 (absent) when no sample had one.
	peer := func(get func(phase) float64) num {
		v := pick(func(s sample) float64 {
			if s.peer.rate == 0 {
				return math.NaN()
			}
			return get(s.peer)
		})
		if math.IsNaN(float64(v)) {
			return 0
		}
		return v
	}
	r.KStreamsPaceRate = peer(func(p phase) float64 { return p.rate })
	r.P50AtKStreamsPace = peer(func(p phase) float64 { return p.p50 })
	r.P99AtKStreamsPace = peer(func(p phase) float64 { return p.p99 })
	for _, s := range samples {
		rd := Round{Repeat: s.repeat, RecordsPerSec: num(s.rps), P99MS: num(s.lat.p99), PacedIOStallMS: num(s.lat.ioStall), BrokerGCMaxMS: num(s.lat.gc.max)}
		if s.peer.rate > 0 {
			rd.P99AtKStreamsPace, rd.IOStallMSAtKStreamsPace = num(s.peer.p99), num(s.peer.ioStall)
		}
		if c := s.lat.commits; c.Commits > 0 {
			rd.CommitP99MS, rd.CommitMaxMS = num(c.P99MS), num(c.MaxMS)
		}
		r.Rounds = append(r.Rounds, rd)
	}
	r.AtOnceflowPace = summarizeFloors(samples)
	r.PacedCommits = summarizeCommits(samples)
	return r
}

// summarizeFloors groups the raw pipe's phases at onceflow's paces by the
// configuration they were paced after, in the order they first ran, and
// takes the median of each figure over the rounds that had one.
func summarizeFloors(samples []sample) []PaceFloor {
	type roundFloor struct {
		repeat int
		floorPhase
	}
	var order []runConfig
	byOf := map[runConfig][]roundFloor{}
	for _, s := range samples {
		for _, fl := range s.floors {
			if _, seen := byOf[fl.of]; !seen {
				order = append(order, fl.of)
			}
			byOf[fl.of] = append(byOf[fl.of], roundFloor{s.repeat, fl})
		}
	}
	var out []PaceFloor
	for _, of := range order {
		rfs := byOf[of]
		pf := PaceFloor{
			Workload: of.Workload, CommitIntervalMS: of.IntervalMS,
			LatencyRate: medianBy(rfs, func(rf roundFloor) float64 { return rf.rate }),
			P50MS:       medianBy(rfs, func(rf roundFloor) float64 { return rf.p50 }),
			P99MS:       medianBy(rfs, func(rf roundFloor) float64 { return rf.p99 }),
		}
		for _, rf := range rfs {
			pf.Rounds = append(pf.Rounds, FloorRound{Repeat: rf.repeat, LatencyRate: num(rf.rate), P99MS: num(rf.p99)})
		}
		out = append(out, pf)
	}
	return out
}

// medianBy is the median of get over xs, NaNs left out (median).
func medianBy[T any](xs []T, get func(T) float64) num {
	vs := make([]float64, len(xs))
	for i, x := range xs {
		vs[i] = get(x)
	}
	return num(median(vs))
}

// roundRatios is, for every round both a and b completed, the ratio of
// the figure get picks (none where it is undefined), in a's order.
func roundRatios(a, b Result, get func(Round) num) []float64 {
	return roundRatiosOf(a, b, get, get)
}

// roundRatiosOf is roundRatios of a's figure getA over b's figure getB; a
// figure of 0 (absent) gives no ratio.
func roundRatiosOf(a, b Result, getA, getB func(Round) num) []float64 {
	var rs []float64
	for _, x := range a.Rounds {
		for _, y := range b.Rounds {
			if x.Repeat != y.Repeat || getA(x) == 0 || getB(y) == 0 {
				continue
			}
			if v := float64(getA(x)) / float64(getB(y)); !math.IsNaN(v) && !math.IsInf(v, 0) {
				rs = append(rs, v)
			}
		}
	}
	return rs
}

func roundRPS(r Round) num { return r.RecordsPerSec }
func roundP99(r Round) num { return r.P99MS }

func roundP99AtKStreamsPace(r Round) num { return r.P99AtKStreamsPace }

// reportMeta describes the run for the Markdown header.
type reportMeta struct {
	Date        string
	Brokers     string
	Partitions  int
	Keys        int
	Threads     int
	MarkerWait  string // --marker-wait; empty: the processor's default
	Repeats     int
	LatencyPct  float64
	LatencyRate float64 // records/s for all; 0: LatencyPct of each
	LatencyDur  time.Duration
	// LatencyParts is how many output partitions were timed (from 0).
	LatencyParts int
	Quick        bool
	// WarmupRounds is how many unmeasured rounds warmed the broker up
	// (--warmup); 0: none.
	WarmupRounds int
	// WriteBack: the host's dirty pages were written to disk before each
	// measured phase (--write-back).
	WriteBack bool
	Notes     []string
	// CPU is the host's processor model, empty if unknown: figures from
	// two runs compare only on the same kind of machine.
	CPU string
}

// writeReports writes results.json and results.md into dir.
func writeReports(dir string, meta reportMeta, results []Result) error {
	if results == nil {
		results = []Result{}
	}
	b, err := json.MarshalIndent(results, "", "  ")
	if err != nil {
		return fmt.Errorf("results.json: %w", err)
	}
	if err := os.WriteFile(filepath.Join(dir, "results.json"), append(b, '\n'), 0o644); err != nil {
		return fmt.Errorf("results.json: %w", err)
	}
	if err := os.WriteFile(filepath.Join(dir, "results.md"), []byte(renderMarkdown(meta, results)), 0o644); err != nil {
		return fmt.Errorf("results.md: %w", err)
	}
	return nil
}

// f formats a number with the given decimals, "-" if unknown.
func f(v num, decimals int) string {
	x := float64(v)
	if math.IsNaN(x) || math.IsInf(x, 0) {
		return "-"
	}
	return fmt.Sprintf("%.*f", decimals, x)
}

// ratio formats a/b as 0.83x, "-" if either is unknown or b is zero.
func ratio(a, b num) string {
	x, y := float64(a), float64(b)
	if math.IsNaN(x) || math.IsNaN(y) || y == 0 {
		return "-"
	}
	return fmt.Sprintf("%.2fx", x/y)
}

// find returns the result of the configuration, if measured.
func find(results []Result, rc runConfig) (Result, bool) {
	for _, r := range results {
		if r.config() == rc {
			return r, true
		}
	}
	return Result{}, false
}

func renderMarkdown(meta reportMeta, results []Result) string {
	var b strings.Builder
	w := func(format string, args ...any) { fmt.Fprintf(&b, format, args...) }
	w("# onceflow benchmark results\n\n")
	kind := "full"
	if meta.Quick {
		kind = "quick (--quick: small N, one repeat; indicative only)"
	}
	w("- run: %s, %s\n", meta.Date, kind)
	w("- broker: %s; %d partitions per topic; %d distinct keys\n", meta.Brokers, meta.Partitions, meta.Keys)
	w("- processing threads per instance: %d (onceflow `Workers`, Kafka Streams `num.stream.threads`; the raw pipe has one consumer and one producer)\n", max(meta.Threads, 1))
	if meta.MarkerWait != "" {
		w("- onceflow `MarkerWait`: %s (--marker-wait; the default is at most 20 ms, ended when the broker reports the markers written)\n", meta.MarkerWait)
	}
	cpu := ""
	if meta.CPU != "" {
		cpu = " (" + meta.CPU + ")"
	}
	w("- host: %s/%s, %d CPUs%s; the systems, the broker and the measuring process share them\n", runtime.GOOS, runtime.GOARCH, runtime.NumCPU(), cpu)
	w("- each figure is the median of %d repeat(s); records/s shows min–max\n", meta.Repeats)
	if meta.WarmupRounds > 0 {
		w("- before the first configuration, %d unmeasured round(s) of onceflow's exactly-once configuration of each workload, at the shortest commit interval, warmed the broker up (repeated, up to %d, until its JIT compilers used under %.0f%% of its CPU in a round, where the suite saw its threads)\n",
			meta.WarmupRounds, maxWarmupRounds, 100*jitSettledShare)
	}
	if meta.WriteBack {
		w("- before each measured phase the host's dirty pages were written to disk (sync), so no phase paid for what earlier phases wrote\n")
	}
	timed := "every output partition"
	if meta.LatencyParts > 0 && meta.LatencyParts < meta.Partitions {
		timed = fmt.Sprintf("the results of %d of the %d output partitions (the reader holds the others until the phase ends)", meta.LatencyParts, meta.Partitions)
	}
	if meta.LatencyRate > 0 {
		w("- latency: paced phase at %.0f records/s for every configuration (equal load) for %v; input timestamp to read_committed visibility, timed on %s\n\n", meta.LatencyRate, meta.LatencyDur, timed)
	} else {
		w("- latency: paced phase at %.0f%% of the configuration's measured throughput for %v; input timestamp to read_committed visibility, timed on %s\n\n", meta.LatencyPct, meta.LatencyDur, timed)
	}
	for _, n := range meta.Notes {
		w("> note: %s\n\n", n)
	}

	w("## All configurations\n\n")
	w("| system | workload | guarantee | commit | value | records | records/s (min–max) | MB/s | startup s | paced rec/s | p50 ms | p99 ms | max ms | CPU s | RSS MiB |\n")
	w("|---|---|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n")
	for _, r := range results {
		w("| %s | %s | %s | %s | %s | %d | %s (%s–%s) | %s | %s | %s | %s | %s | %s | %s | %s |\n",
			r.System, r.Workload, r.Guarantee, intervalLabel(r.CommitIntervalMS), sizeLabel(r.ValueBytes), r.Records,
			f(r.RecordsPerSec, 0), f(r.RecordsPerSecMin, 0), f(r.RecordsPerSecMax, 0), f(r.MBPerSec, 1), f(r.StartupS, 1),
			f(r.LatencyRate, 0), f(r.P50MS, 1), f(r.P99MS, 1), f(r.MaxMS, 1), f(r.CPUS, 1), f(r.RSSMB, 0))
	}

	w("\n## Exactly-once / at-least-once\n\n")
	w("What exactly-once costs against at-least-once, same system, workload, interval and size (throughput below 1x and latency above 1x are the cost).\n\n")
	w("The ratios are of the medians. Per round divides the same round of each: the suite runs round r of every configuration before round r+1, so the same round of two configurations ran minutes apart, while two medians may come from rounds far apart; a host whose speed drifts during the run moves the ratio of the medians more than the ratios per round.\n\n")
	w("| system | workload | commit | value | EOS records/s | ALO records/s | EOS/ALO records/s | per round (median) | EOS p99 ms | ALO p99 ms | EOS/ALO p99 |\n")
	w("|---|---|---|---|---:|---:|---:|---|---:|---:|---:|\n")
	rows := 0
	for _, e := range results {
		if e.Guarantee != gExactlyOnce {
			continue
		}
		rc := e.config()
		rc.Guarantee = gAtLeastOnce
		a, ok := find(results, rc)
		if !ok {
			continue
		}
		rows++
		w("| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |\n", e.System, e.Workload, intervalLabel(e.CommitIntervalMS), sizeLabel(e.ValueBytes),
			f(e.RecordsPerSec, 0), f(a.RecordsPerSec, 0), ratio(e.RecordsPerSec, a.RecordsPerSec), perRound(e, a, roundRPS), f(e.P99MS, 1), f(a.P99MS, 1), ratio(e.P99MS, a.P99MS))
	}
	if rows == 0 {
		w("(no pair measured)\n")
	}

	w("\n## onceflow / Kafka Streams\n\n")
	w("Each system's p99 is taken at its own pace (the latency line above). Where Kafka Streams' pace is a small fraction of onceflow's, the two p99s were taken at very different loads of the shared host, so onceflow's exactly-once configurations also ran a second latency phase at the pace Kafka Streams ran at in the same round: *at KS pace* is its p99 there, beside Kafka Streams' own.\n\n")
	w("| workload | guarantee | commit | value | onceflow records/s | Kafka Streams records/s | records/s ratio | onceflow p99 ms | Kafka Streams p99 ms | p99 ratio | p99 ratio per round (median) | KS pace rec/s | onceflow p99 ms at KS pace | ratio at KS pace, per round (median) | CPU s ratio | RSS ratio |\n")
	w("|---|---|---|---|---:|---:|---:|---:|---:|---:|---|---:|---:|---|---:|---:|\n")
	rows = 0
	for _, o := range results {
		if o.System != sysOnceflow {
			continue
		}
		rc := o.config()
		rc.System = sysKStreams
		k, ok := find(results, rc)
		if !ok {
			continue
		}
		rows++
		pace, atPace, atPaceRounds := "-", "-", "-"
		if o.P99AtKStreamsPace != 0 {
			pace, atPace = f(o.KStreamsPaceRate, 0), f(o.P99AtKStreamsPace, 1)
			atPaceRounds = perRoundOf(o, k, roundP99AtKStreamsPace, roundP99)
		}
		w("| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |\n", o.Workload, o.Guarantee, intervalLabel(o.CommitIntervalMS), sizeLabel(o.ValueBytes),
			f(o.RecordsPerSec, 0), f(k.RecordsPerSec, 0), ratio(o.RecordsPerSec, k.RecordsPerSec), f(o.P99MS, 1), f(k.P99MS, 1), ratio(o.P99MS, k.P99MS),
			perRound(o, k, roundP99), pace, atPace, atPaceRounds, ratio(perRecord(o), perRecord(k)), ratio(o.RSSMB, k.RSSMB))
	}
	if rows == 0 {
		w("(no pair measured)\n")
	}
	w("\nCPU s ratio compares CPU seconds per input record of the throughput phase.\n")
	w("\nPer round as in the table before.\n")

	w("\n## Where the CPU went\n\n")
	w("CPU time per input record during the throughput phase (from the system's start to its last result): the system under test, the broker, and the suite's own process, which reads the results read_committed. Busy is their sum over the phase, in cores of the host's %d; near %d, the host, not the system, sets the pace. Busy while paced is the same sum over the latency phase, with the paced producer in the suite's process: near %d, the latency measures the host's queues as much as the system.\n\n", runtime.NumCPU(), runtime.NumCPU(), runtime.NumCPU())
	w("| system | workload | guarantee | commit | value | records/s | system µs/record | broker µs/record | reader µs/record | busy cores | paced rec/s | busy while paced |\n")
	w("|---|---|---|---|---|---:|---:|---:|---:|---:|---:|---:|\n")
	for _, r := range results {
		busy := num(float64(r.CPUS+r.BrokerCPUS+r.HarnessCPUS) / float64(r.Seconds))
		w("| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |\n", r.System, r.Workload, r.Guarantee, intervalLabel(r.CommitIntervalMS), sizeLabel(r.ValueBytes),
			f(r.RecordsPerSec, 0), f(micros(r.CPUS, r.Records), 2), f(micros(r.BrokerCPUS, r.Records), 2), f(micros(r.HarnessCPUS, r.Records), 2), f(busy, 2),
			f(r.LatencyRate, 0), f(r.PacedBusyCores, 2))
	}

	w("\n## onceflow / raw pipe\n\n")
	w("The raw pipe (franz-go consume and produce, no group, commits or processing) is the limit of this broker and host for records of that size.\n\n")
	w("| workload | guarantee | commit | value | onceflow records/s | raw pipe records/s | of the limit |\n")
	w("|---|---|---|---|---:|---:|---:|\n")
	rows = 0
	for _, o := range results {
		if o.System != sysOnceflow {
			continue
		}
		p, ok := find(results, runConfig{System: sysRawpipe, Workload: wlCopy, Guarantee: gNone, ValueBytes: o.ValueBytes})
		if !ok {
			continue
		}
		rows++
		w("| %s | %s | %s | %s | %s | %s | %s |\n", o.Workload, o.Guarantee, intervalLabel(o.CommitIntervalMS), sizeLabel(o.ValueBytes),
			f(o.RecordsPerSec, 0), f(p.RecordsPerSec, 0), ratio(o.RecordsPerSec, p.RecordsPerSec))
	}
	if rows == 0 {
		w("(no pair measured)\n")
	}
	renderGoals(&b, results, meta.LatencyRate > 0)
	renderCommits(&b, results)
	return b.String()
}

// Goals of the benchmark issue, for onceflow under exactly-once.
const (
	goalEOSOverALO   = 0.90 // × at-least-once throughput, at a 100 ms interval
	goalOverKStreams = 1.5  // × Kafka Streams exactly_once_v2 throughput
	goalOverRawPipe  = 0.5  // × the raw pipe's throughput
	goalP99Slack     = 50   // ms over the commit interval, at most
)

// renderGoals checks every exactly-once configuration of onceflow against
// the goals it has the figures for in this run: the medians decide, and
// the rounds that met a goal on their own are counted beside them.
func renderGoals(b *strings.Builder, results []Result, equalLoad bool) {
	w := func(format string, args ...any) { fmt.Fprintf(b, format, args...) }
	w("\n## Against the goals\n\n")
	w("onceflow under exactly-once against each goal this run has the figures for. The medians decide; the rounds column counts the rounds that met the goal on their own (the same round of both configurations where there are two). The raw pipe's goal is checked on the copy, which does what the pipe does; the wordcount writes two records per input.\n\n")
	w("| goal | workload | value | commit | measured | verdict | rounds |\n")
	w("|---|---|---|---|---|---|---|\n")
	rows := 0
	// row writes one goal's line; perRound are the rounds' own figures,
	// and ok tells whether one meets the goal.
	row := func(goal string, e Result, measured, outcome string, perRound []float64, ok func(float64) bool) {
		rows++
		rounds := "-"
		if len(perRound) > 0 {
			met := 0
			for _, v := range perRound {
				if ok(v) {
					met++
				}
			}
			rounds = fmt.Sprintf("%d of %d", met, len(perRound))
		}
		w("| %s | %s | %s | %s | %s | %s | %s |\n", goal, e.Workload, sizeLabel(e.ValueBytes), intervalLabel(e.CommitIntervalMS), measured, outcome, rounds)
	}
	// atLeast renders a ratio goal: the ratio of the medians against want,
	// and how many per-round ratios reach it.
	atLeast := func(goal string, e, other Result, want float64) {
		r := float64(e.RecordsPerSec) / float64(other.RecordsPerSec)
		if math.IsNaN(r) || math.IsInf(r, 0) {
			return
		}
		row(goal, e, fmt.Sprintf("%.2fx", r), verdict(r >= want, fmt.Sprintf("by %.2f", want-r)),
			roundRatios(e, other, roundRPS), func(v float64) bool { return v >= want })
	}
	for _, e := range results {
		if e.System != sysOnceflow || e.Guarantee != gExactlyOnce {
			continue
		}
		rc := e.config()
		if e.CommitIntervalMS == 100 {
			alo := rc
			alo.Guarantee = gAtLeastOnce
			if a, ok := find(results, alo); ok {
				atLeast(fmt.Sprintf("≥ %.2f × at-least-once", goalEOSOverALO), e, a, goalEOSOverALO)
			}
		}
		ks := rc
		ks.System = sysKStreams
		if k, ok := find(results, ks); ok {
			atLeast(fmt.Sprintf("≥ %.1f × Kafka Streams", goalOverKStreams), e, k, goalOverKStreams)
			goal := "p99 ≤ Kafka Streams', each at its own pace"
			if equalLoad {
				goal = "p99 ≤ Kafka Streams', equal load"
			}
			if o, kp := float64(e.P99MS), float64(k.P99MS); !math.IsNaN(o) && !math.IsNaN(kp) {
				row(goal, e, fmt.Sprintf("%.1f vs %.1f ms", o, kp), verdict(o <= kp, fmt.Sprintf("by %.1f ms", o-kp)),
					roundRatios(e, k, roundP99), func(v float64) bool { return v <= 1 })
			}
			if o, kp := float64(e.P99AtKStreamsPace), float64(k.P99MS); o != 0 && !math.IsNaN(kp) {
				row("p99 ≤ Kafka Streams', at Kafka Streams' pace", e, fmt.Sprintf("%.1f vs %.1f ms at %.0f records/s", o, kp, float64(e.KStreamsPaceRate)),
					verdict(o <= kp, fmt.Sprintf("by %.1f ms", o-kp)),
					roundRatiosOf(e, k, roundP99AtKStreamsPace, roundP99), func(v float64) bool { return v <= 1 })
			}
		}
		// The raw pipe copies: one record out per record in, no state. It
		// is the copy's limit; a wordcount writes two records per input
		// (the count and its changelog), and its share of the pipe is in
		// the table before.
		if p, ok := find(results, runConfig{System: sysRawpipe, Workload: wlCopy, Guarantee: gNone, ValueBytes: e.ValueBytes}); ok && e.Workload == wlCopy {
			atLeast(fmt.Sprintf("≥ %.1f × the raw pipe", goalOverRawPipe), e, p, goalOverRawPipe)
		}
		if o := float64(e.P99MS); !math.IsNaN(o) {
			limit := float64(e.CommitIntervalMS + goalP99Slack)
			row(fmt.Sprintf("p99 ≤ commit interval + %d ms", goalP99Slack), e, fmt.Sprintf("%.1f ms (at most %.0f)", o, limit), verdict(o <= limit, fmt.Sprintf("by %.1f ms", o-limit)),
				roundP99s(e), func(v float64) bool { return v <= limit })
		}
	}
	if rows == 0 {
		w("(no exactly-once configuration of onceflow)\n")
		return
	}
	renderLatencyFloor(b, results)
}

// renderCommits sets, for each configuration's latency phase at its own
// pace, onceflow's commits and the broker's collector pauses beside the
// phase's p99: a record waits for its transaction's commit, and a commit
// (or any request) waits out a pause of the broker, so the longest of
// either shows in the p99 of every record it held.
func renderCommits(b *strings.Builder, results []Result) {
	w := func(format string, args ...any) { fmt.Fprintf(b, format, args...) }
	header := false
	for _, r := range results {
		c := r.PacedCommits
		if c == nil && math.IsNaN(float64(r.PacedBrokerGCMaxMS)) {
			continue
		}
		if !header {
			w("\n## Commits and broker pauses while paced\n\n")
			w("During each latency phase at the system's own pace: onceflow's commits (from the processor's `Stats.CommitTimes`; p50, p99 and max are bucket bounds, at most 19%% high), how long the broker then took to write their markers, after which the outputs are visible (`Stats.MarkerTimes`; the watch stops at `MarkerWait`, 20 ms, whose bucket ends at 22.6), and how old the oldest input records were when the worker polled them (`Stats.PollAges`: waiting on the broker, or in the client while the worker was busy) and when their commit returned (`Stats.CommitAges`: the processor's whole share of that record's latency, before its markers and the reader), and the broker's stop-the-world collector pauses (from its GC log), medians over the rounds with the rounds in brackets. A record that enters a transaction waits for the rest of the interval and then for the commit, and every request waits out a pause of the broker, so one long commit or pause in a 10 s phase can set the p99 of the records it held: a 100 ms stall holds 1%% of them. Under at-least-once and at-most-once a record's result is visible before its offset is committed, so their ages at commit are not part of its latency, and the phase's first commit also commits records processed before the phase (at 1 s, with few commits a phase, the p99 and max are those records' ages since the pre-load).\n\n")
			w("| system | workload | guarantee | commit | size | commits/s | commit mean ms (flushing) | commit p50 ms | commit p99 ms (rounds) | longest commit ms (rounds) | commits longer than the interval | markers p50 / p99 ms | oldest record when polled p99 ms | oldest record at commit p99 / max ms | broker's longest pause ms (rounds) | broker paused ms in all | latency p99 ms (rounds) |\n")
			w("|---|---|---|---|---|---:|---:|---:|---|---|---:|---:|---:|---:|---|---:|---|\n")
			header = true
		}
		var p99s, maxs, gcs []float64
		for _, rd := range r.Rounds {
			if rd.CommitP99MS != 0 {
				p99s, maxs = append(p99s, float64(rd.CommitP99MS)), append(maxs, float64(rd.CommitMaxMS))
			}
			if !math.IsNaN(float64(rd.BrokerGCMaxMS)) {
				gcs = append(gcs, float64(rd.BrokerGCMaxMS))
			}
		}
		perS, mean, p50, p99, longest, over, markers, polled, ages := "-", "-", "-", "-", "-", "-", "-", "-", "-"
		if c != nil {
			perS, mean, p50 = f(c.PerSecond, 1), f(c.MeanMS, 1)+" ("+f(c.FlushMS, 1)+")", f(c.P50MS, 1)
			p99, longest = f(c.P99MS, 1)+" ("+joinFloats(p99s, 1)+")", f(c.MaxMS, 1)+" ("+joinFloats(maxs, 1)+")"
			over = f(c.OverPct, 1) + "%"
			if r.Guarantee == gExactlyOnce {
				markers = f(c.MarkerP50MS, 1) + " / " + f(c.MarkerP99MS, 1)
			}
			polled, ages = f(c.PollAgeP99MS, 1), f(c.AgeP99MS, 1)+" / "+f(c.AgeMaxMS, 1)
		}
		gcMax := "-"
		if len(gcs) > 0 {
			gcMax = f(r.PacedBrokerGCMaxMS, 1) + " (" + joinFloats(gcs, 1) + ")"
		}
		w("| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s (%s) |\n", r.System, r.Workload, r.Guarantee, intervalLabel(r.CommitIntervalMS), sizeLabel(r.ValueBytes),
			perS, mean, p50, p99, longest, over, markers, polled, ages, gcMax, f(r.PacedBrokerGCMS, 1), f(r.P99MS, 1), joinFloats(roundP99s(r), 1))
	}
}

// renderLatencyFloor sets the latency goal beside what the host adds at
// the pace of the latency phase: the raw pipe commits nothing, so its p99
// there is the broker's and the host's share of a record's latency, before
// any engine waits for a commit. Where the raw pipe was also paced at
// onceflow's paces (floorTargets), a table sets each of those beside
// onceflow's p99 and Kafka Streams'.
func renderLatencyFloor(b *strings.Builder, results []Result) {
	w := func(format string, args ...any) { fmt.Fprintf(b, format, args...) }
	for _, p := range results {
		if p.System != sysRawpipe || math.IsNaN(float64(p.P99MS)) {
			continue
		}
		rounds := ""
		if ps := roundP99s(p); len(ps) > 0 {
			rounds = " (rounds: " + joinFloats(ps, 1) + ")"
		}
		w("\nFor scale: the raw pipe (%s values) commits nothing; paced at %s records/s it had a p99 of %s ms%s. Under exactly-once a record takes what the pipe takes and also waits for its transaction's commit (up to the interval, then the commit itself), so at a similar pace the pipe's p99 is a floor under the exactly-once p99, and the wait for a commit comes on top of it.\n",
			sizeLabel(p.ValueBytes), f(p.LatencyRate, 0), f(p.P99MS, 1), rounds)
		if len(p.AtOnceflowPace) == 0 {
			continue
		}
		w("\nThe raw pipe (%s values) was also paced at the pace of each exactly-once configuration of onceflow, in the same round. *Above the interval* is a p99 less the commit interval: the part of it that is not the wait for the next commit. It is negative where the p99 is under the interval: a transaction of onceflow's also ends when it holds 100,000 records (`MaxRecordsPerTransaction`), at these rates well before a 1 s interval.\n\n", sizeLabel(p.ValueBytes))
		w("| workload | commit | onceflow pace records/s | raw pipe p50 ms | raw pipe p99 ms (rounds) | onceflow p99 ms | above the interval | Kafka Streams pace records/s | Kafka Streams p99 ms | above the interval |\n")
		w("|---|---|---:|---:|---|---:|---:|---:|---:|---:|\n")
		for _, fl := range p.AtOnceflowPace {
			rc := runConfig{System: sysOnceflow, Workload: fl.Workload, Guarantee: gExactlyOnce, IntervalMS: fl.CommitIntervalMS, ValueBytes: p.ValueBytes}
			ps := make([]float64, len(fl.Rounds))
			for i, r := range fl.Rounds {
				ps[i] = float64(r.P99MS)
			}
			oP99, oAbove := "-", "-"
			if o, ok := find(results, rc); ok {
				oP99, oAbove = f(o.P99MS, 1), f(o.P99MS-num(fl.CommitIntervalMS), 1)
			}
			rc.System = sysKStreams
			kPace, kP99, kAbove := "-", "-", "-"
			if k, ok := find(results, rc); ok {
				kPace, kP99, kAbove = f(k.LatencyRate, 0), f(k.P99MS, 1), f(k.P99MS-num(fl.CommitIntervalMS), 1)
			}
			w("| %s | %s | %s | %s | %s (%s) | %s | %s | %s | %s | %s |\n", fl.Workload, intervalLabel(fl.CommitIntervalMS),
				f(fl.LatencyRate, 0), f(fl.P50MS, 1), f(fl.P99MS, 1), joinFloats(ps, 1), oP99, oAbove, kPace, kP99, kAbove)
		}
	}
}

// roundP99s is the p99 of each round, in the order they ran.
func roundP99s(r Result) []float64 {
	ps := make([]float64, len(r.Rounds))
	for i, x := range r.Rounds {
		ps[i] = float64(x.P99MS)
	}
	return ps
}

// verdict is "met", or "**missed** " and by how much.
func verdict(met bool, by string) string {
	if met {
		return "met"
	}
	return "**missed** " + by
}

// perRound renders roundRatios and their median as "1.02, 0.95, 0.99
// (0.99x)", or "-" when a and b have no round in common.
func perRound(a, b Result, get func(Round) num) string {
	return perRoundOf(a, b, get, get)
}

// perRoundOf renders roundRatiosOf as perRound does.
func perRoundOf(a, b Result, getA, getB func(Round) num) string {
	rs := roundRatiosOf(a, b, getA, getB)
	if len(rs) == 0 {
		return "-"
	}
	return fmt.Sprintf("%s (%.2fx)", joinFloats(rs, 2), median(rs))
}

// joinFloats renders vs with the given decimals, comma-separated.
func joinFloats(vs []float64, decimals int) string {
	parts := make([]string, len(vs))
	for i, v := range vs {
		parts[i] = strconv.FormatFloat(v, 'f', decimals, 64)
	}
	return strings.Join(parts, ", ")
}

// micros is CPU seconds spread over records, in microseconds per record.
func micros(cpu num, records int) num {
	if records == 0 {
		return num(math.NaN())
	}
	return num(float64(cpu) * 1e6 / float64(records))
}

// perRecord is CPU seconds per input record of the throughput phase.
func perRecord(r Result) num {
	if r.Records == 0 {
		return num(math.NaN())
	}
	return num(float64(r.CPUS) / float64(r.Records))
}
