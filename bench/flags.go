package main

import (
	"errors"
	"flag"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/onceflow/onceflow/processor"
)

// errUsage reports a command line that could not be parsed; the flag
// package has already printed why.
var errUsage = errors.New("usage")

// Systems, workloads and guarantee labels as they appear in the results.
const (
	sysOnceflow = "onceflow"
	sysKStreams = "kstreams"
	sysRawpipe  = "rawpipe"

	wlCopy      = "copy"
	wlWordcount = "wordcount"

	gExactlyOnce  = "exactly-once"
	gAtLeastOnce  = "at-least-once"
	gAtMostOnce   = "at-most-once"
	gNone         = "none" // the raw pipe has no guarantee
	allGuarantees = gAtMostOnce + "," + gAtLeastOnce + "," + gExactlyOnce
)

// suiteConfig is the parsed command line of the suite.
type suiteConfig struct {
	brokers      string
	out          string
	quick        bool
	workloads    []string
	guarantees   []string
	intervals    []time.Duration
	valueBytes   []int
	systems      []string
	records      int // 0: sized per configuration
	repeat       int
	partitions   int
	keys         int
	threads      int         // processing threads per system instance
	markerWait   optDuration // onceflow's processor.MarkerWait; unset: its default
	latencyFrac  float64
	latencyRate  float64 // records/s for every configuration; 0: latencyFrac of each one's throughput
	latencyDur   time.Duration
	latencyParts int     // partitions whose results are timed in the latency phase
	brokerPIDs   []int   // the broker's processes, whose CPU time is recorded; nil: unknown
	targetSecs   float64 // wanted length of the throughput phase
	warmup       bool    // unmeasured rounds before the first configuration (see warmUp)
	// atPeerPace adds to each exactly-once configuration of onceflow a
	// second latency phase at the rate its Kafka Streams peer was paced
	// at in the same round.
	atPeerPace bool
	// atOnceflowPace gives the raw pipe one more latency phase per
	// exactly-once configuration of onceflow of its value size, at the
	// rate that configuration was paced at in the same round.
	atOnceflowPace bool
	// writeBack has the host's dirty pages written to disk (sync(2))
	// before each measured phase.
	writeBack bool
}

func parseSuiteFlags(args []string) (*suiteConfig, error) {
	fs := flag.NewFlagSet("bench", flag.ContinueOnError)
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), `usage: go run ./bench [flags]            the benchmark suite
       go run ./bench processor [flags]  one onceflow processor instance (started by the suite)
       go run ./bench rawpipe [flags]    the raw franz-go pipe (started by the suite)
       go run ./bench state [flags]      restore and memory of a large state
       go run ./bench ingest [flags]     what the latency phase's input alone costs

Without --brokers or $KAFKA_BROKERS the suite starts its own Apache Kafka
with scripts/kafka-local.sh and stops it at the end.

`)
		fs.PrintDefaults()
	}
	c := &suiteConfig{}
	var workloads, guarantees, intervals, valueBytes, systems, brokerPIDs string
	fs.StringVar(&c.brokers, "brokers", os.Getenv("KAFKA_BROKERS"), "seed brokers (default $KAFKA_BROKERS; empty: start a local broker)")
	fs.StringVar(&c.out, "out", "", "output directory (default bench/results/<date>)")
	fs.BoolVar(&c.quick, "quick", false, "the quick run (< 3 min): copy and wordcount, 100 B, 100ms, all guarantees, onceflow and rawpipe, 1 repeat, smaller N")
	fs.StringVar(&workloads, "workloads", "", "comma-separated workloads: copy,wordcount (default both)")
	fs.StringVar(&guarantees, "guarantees", "", "comma-separated guarantees: "+allGuarantees+" (default all)")
	fs.StringVar(&intervals, "intervals", "", "comma-separated commit intervals (default 10ms,100ms,1s; --quick 100ms)")
	fs.StringVar(&valueBytes, "value-bytes", "", "comma-separated record value sizes in bytes, 1KB = 1024 (default 100,1KB; --quick 100)")
	fs.StringVar(&systems, "systems", "", "comma-separated systems: onceflow,kstreams,rawpipe (default all; --quick onceflow,rawpipe)")
	fs.IntVar(&c.records, "records", 0, "input records per configuration (default: sized so the throughput phase takes about 15 s, 4 s with --quick)")
	fs.IntVar(&c.repeat, "repeat", 0, "repeats per configuration; the median is reported (default 3; --quick 1)")
	fs.IntVar(&c.partitions, "partitions", 4, "partitions of the input and output topics")
	fs.IntVar(&c.keys, "keys", 100_000, "distinct input keys (w000000, w000001, ...)")
	fs.IntVar(&c.threads, "threads", 1, "processing threads per instance: onceflow's Workers, Kafka Streams' num.stream.threads (the raw pipe has one consumer and one producer)")
	fs.Var(&c.markerWait, "marker-wait", "onceflow's processor.MarkerWait under exactly-once, to measure it (default: the processor's own, at most 20ms, ended when the broker reports the markers written; 0: off)")
	fs.Float64Var(&c.latencyFrac, "latency-fraction", 0.5, "latency phase rate as a fraction of the measured maximum throughput")
	fs.Float64Var(&c.latencyRate, "latency-rate", 0, "latency phase rate in records/s for every configuration, so systems are compared at equal load (default 0: use --latency-fraction)")
	fs.StringVar(&brokerPIDs, "broker-pids", "", "comma-separated process ids of the --brokers broker, to record its CPU seconds per configuration (default: those of the broker the suite starts; none for --brokers)")
	fs.IntVar(&c.latencyParts, "latency-partitions", 1, "output partitions whose results are timed in the latency phase, from partition 0 (0: all); the reader stops reading the others until the paced producer ends")
	fs.DurationVar(&c.latencyDur, "latency-duration", 0, "length of the paced latency phase (default 10s; --quick 3s)")
	fs.BoolVar(&c.warmup, "warmup", true, "run onceflow's exactly-once configuration of each workload, unmeasured, at the shortest commit interval, before the first configuration, so that the broker's JVM has compiled its produce, fetch and transaction paths; repeated, up to 3 rounds, until the broker's JIT compilers use less than 15% of its CPU, where the suite sees its threads (--warmup=false to skip)")
	fs.BoolVar(&c.atPeerPace, "at-kstreams-pace", true, "give each exactly-once configuration of onceflow a second latency phase at the rate its Kafka Streams peer was paced at in the same round, so their p99s also compare at equal load (no effect with --latency-rate or without kstreams)")
	fs.BoolVar(&c.atOnceflowPace, "rawpipe-at-onceflow-pace", true, "give the raw pipe, which runs after the systems of its value size in each round, one more latency phase per exactly-once configuration of onceflow of that size, at the rate that configuration was paced at in the same round: what the broker and the host add to a record at that load, with no commit to wait for (no effect with --latency-rate or without onceflow)")
	fs.BoolVar(&c.writeBack, "write-back", true, "on Linux, before each measured phase, write the host's dirty pages to disk (sync) and wait for it, so that a phase does not pay for what earlier phases wrote: Linux writes a dirty page back about 30 s after it was written, into the next phases (--write-back=false to skip)")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil, errUsage
		}
		return nil, errUsage
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(fs.Output(), "bench: unexpected argument %q\n", fs.Arg(0))
		return nil, errUsage
	}

	def := func(s, full, quick string) string {
		if s != "" {
			return s
		}
		if c.quick {
			return quick
		}
		return full
	}
	var errs []error
	var err error
	if c.workloads, err = parseChoice("--workloads", def(workloads, "copy,wordcount", "copy,wordcount"), []string{wlCopy, wlWordcount}); err != nil {
		errs = append(errs, err)
	}
	if c.systems, err = parseChoice("--systems", def(systems, "onceflow,kstreams,rawpipe", "onceflow,rawpipe"), []string{sysOnceflow, sysKStreams, sysRawpipe}); err != nil {
		errs = append(errs, err)
	}
	if c.guarantees, err = parseGuarantees(def(guarantees, allGuarantees, allGuarantees)); err != nil {
		errs = append(errs, err)
	}
	if c.intervals, err = parseIntervals(def(intervals, "10ms,100ms,1s", "100ms")); err != nil {
		errs = append(errs, err)
	}
	if c.valueBytes, err = parseSizes(def(valueBytes, "100,1KB", "100")); err != nil {
		errs = append(errs, err)
	}
	if c.brokerPIDs, err = parsePIDs(brokerPIDs); err != nil {
		errs = append(errs, err)
	}
	if c.brokerPIDs != nil && c.brokers == "" {
		errs = append(errs, errors.New("--broker-pids needs --brokers: the broker the suite starts is measured without it"))
	}
	if c.repeat == 0 {
		c.repeat = 3
		if c.quick {
			c.repeat = 1
		}
	}
	if c.latencyDur == 0 {
		c.latencyDur = 10 * time.Second
		if c.quick {
			c.latencyDur = 3 * time.Second
		}
	}
	c.targetSecs = 15
	if c.quick {
		c.targetSecs = 4
	}
	if c.repeat < 1 {
		errs = append(errs, fmt.Errorf("--repeat must be at least 1, got %d", c.repeat))
	}
	if c.records < 0 {
		errs = append(errs, fmt.Errorf("--records must not be negative, got %d", c.records))
	}
	if c.partitions < 1 {
		errs = append(errs, fmt.Errorf("--partitions must be at least 1, got %d", c.partitions))
	}
	if c.keys < 1 || c.keys > 1_000_000 {
		errs = append(errs, fmt.Errorf("--keys must be 1 to 1,000,000 (keys are w%%06d), got %d", c.keys))
	}
	if c.threads < 1 || c.threads > 64 {
		errs = append(errs, fmt.Errorf("--threads must be 1 to 64, got %d", c.threads))
	}
	if c.latencyParts < 0 || c.latencyParts > c.partitions {
		errs = append(errs, fmt.Errorf("--latency-partitions must be 0 (all) to --partitions (%d), got %d", c.partitions, c.latencyParts))
	}
	if c.latencyParts == 0 {
		c.latencyParts = c.partitions
	}
	if c.latencyRate < 0 {
		errs = append(errs, fmt.Errorf("--latency-rate must not be negative, got %v", c.latencyRate))
	}
	if c.latencyFrac <= 0 || c.latencyFrac > 1 {
		errs = append(errs, fmt.Errorf("--latency-fraction must be in (0, 1], got %v", c.latencyFrac))
	}
	if c.out == "" {
		c.out = "bench/results/" + time.Now().Format("2006-01-02")
	}
	// The write-back is Linux-only; elsewhere it is off, and results.md
	// does not claim it.
	c.writeBack = c.writeBack && canSyncDisks
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return c, nil
}

// parsePIDs parses --broker-pids.
func parsePIDs(s string) ([]int, error) {
	var pids []int
	for _, f := range splitList(s) {
		pid, err := strconv.Atoi(f)
		if err != nil || pid <= 0 {
			return nil, fmt.Errorf("--broker-pids: %q is not a process id", f)
		}
		pids = append(pids, pid)
	}
	return pids, nil
}

func splitList(s string) []string {
	var out []string
	for f := range strings.SplitSeq(s, ",") {
		if f = strings.TrimSpace(f); f != "" {
			out = append(out, f)
		}
	}
	return out
}

func parseChoice(name, s string, allowed []string) ([]string, error) {
	var out []string
	for _, f := range splitList(strings.ToLower(s)) {
		if !slices.Contains(allowed, f) {
			return nil, fmt.Errorf("%s: unknown value %q (want %s)", name, f, strings.Join(allowed, ", "))
		}
		if !slices.Contains(out, f) {
			out = append(out, f)
		}
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("%s: empty list", name)
	}
	return out, nil
}

// guaranteeLabel is the results' name of a processor guarantee.
func guaranteeLabel(g processor.Guarantee) string {
	switch g {
	case processor.AtMostOnce:
		return gAtMostOnce
	case processor.AtLeastOnce:
		return gAtLeastOnce
	default:
		return gExactlyOnce
	}
}

func parseGuarantees(s string) ([]string, error) {
	var out []string
	for _, f := range splitList(s) {
		g, err := processor.ParseGuarantee(f)
		if err != nil {
			return nil, fmt.Errorf("--guarantees: %w", err)
		}
		if l := guaranteeLabel(g); !slices.Contains(out, l) {
			out = append(out, l)
		}
	}
	if len(out) == 0 {
		return nil, errors.New("--guarantees: empty list")
	}
	return out, nil
}

func parseIntervals(s string) ([]time.Duration, error) {
	var out []time.Duration
	for _, f := range splitList(s) {
		d, err := time.ParseDuration(f)
		if err != nil {
			return nil, fmt.Errorf("--intervals: %w", err)
		}
		if d < time.Millisecond {
			return nil, fmt.Errorf("--intervals: %v is shorter than 1ms", d)
		}
		if !slices.Contains(out, d) {
			out = append(out, d)
		}
	}
	if len(out) == 0 {
		return nil, errors.New("--intervals: empty list")
	}
	return out, nil
}

// parseSize reads 100, 100B, 1KB, 1k, 2KiB (K = 1024).
func parseSize(s string) (int, error) {
	u := strings.ToUpper(strings.TrimSpace(s))
	mult := 1
	for _, suf := range []string{"KIB", "KB", "K"} {
		if strings.HasSuffix(u, suf) {
			u, mult = strings.TrimSuffix(u, suf), 1024
			break
		}
	}
	u = strings.TrimSuffix(u, "B")
	n, err := strconv.Atoi(strings.TrimSpace(u))
	if err != nil {
		return 0, fmt.Errorf("size %q: %w", s, err)
	}
	if n*mult < 1 || n*mult > 512*1024 {
		return 0, fmt.Errorf("size %q: must be 1 B to 512 KB", s)
	}
	return n * mult, nil
}

func parseSizes(s string) ([]int, error) {
	var out []int
	for _, f := range splitList(s) {
		n, err := parseSize(f)
		if err != nil {
			return nil, fmt.Errorf("--value-bytes: %w", err)
		}
		if !slices.Contains(out, n) {
			out = append(out, n)
		}
	}
	if len(out) == 0 {
		return nil, errors.New("--value-bytes: empty list")
	}
	return out, nil
}

// sizeLabel prints 100 as 100B and 1024 as 1KB.
func sizeLabel(n int) string {
	if n >= 1024 && n%1024 == 0 {
		return fmt.Sprintf("%dKB", n/1024)
	}
	return fmt.Sprintf("%dB", n)
}

// intervalLabel prints 100ms as 100ms and 1s as 1s.
func intervalLabel(ms int64) string {
	if ms == 0 {
		return "-"
	}
	return (time.Duration(ms) * time.Millisecond).String()
}

// optDuration is a duration flag that tells whether it was set.
type optDuration struct {
	d   time.Duration
	set bool
}

func (o *optDuration) String() string {
	if o == nil || !o.set {
		return ""
	}
	return o.d.String()
}

func (o *optDuration) Set(v string) error {
	d, err := time.ParseDuration(v)
	if err != nil {
		return err
	}
	if d < 0 {
		return fmt.Errorf("must not be negative, got %s", v)
	}
	o.d, o.set = d, true
	return nil
}

// markerWaitArgs are the processor child's arguments for --marker-wait:
// none when the suite leaves the processor its default.
func markerWaitArgs(o optDuration) []string {
	if !o.set {
		return nil
	}
	return []string{"--marker-wait", o.d.String()}
}
