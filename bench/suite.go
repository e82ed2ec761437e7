package main

import (
	"cmp"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"
)

// runConfig is one configuration: what runs, under which guarantee and
// commit interval, on records of which size.
type runConfig struct {
	System     string
	Workload   string
	Guarantee  string
	IntervalMS int64
	ValueBytes int
}

func (rc runConfig) String() string {
	if rc.System == sysRawpipe {
		return fmt.Sprintf("rawpipe %s", sizeLabel(rc.ValueBytes))
	}
	return fmt.Sprintf("%s %s %s %s %s", rc.System, rc.Workload, rc.Guarantee, intervalLabel(rc.IntervalMS), sizeLabel(rc.ValueBytes))
}

// slug is the configuration in topic-name characters.
func (rc runConfig) slug() string {
	short := map[string]string{gExactlyOnce: "eos", gAtLeastOnce: "alo", gAtMostOnce: "amo", gNone: "raw"}
	return fmt.Sprintf("%s-%s-%s-%dms-%s", rc.System, rc.Workload, short[rc.Guarantee], rc.IntervalMS, sizeLabel(rc.ValueBytes))
}

// rateKeys name, most specific first, the groups of configurations whose
// throughput is alike, for sizing N from what was measured already.
func (rc runConfig) rateKeys() []string {
	k := fmt.Sprintf("%s/%s/%d", rc.System, rc.Workload, rc.ValueBytes)
	return []string{fmt.Sprintf("%s/%s/%d", k, rc.Guarantee, rc.IntervalMS), k + "/" + rc.Guarantee, k}
}

// configurations lists what the flags select: per value size, per
// workload and interval every guarantee of Kafka Streams (which has no
// at-most-once) and onceflow, then the raw pipe. Kafka Streams comes first
// so that onceflow's configuration after it can also be timed at the pace
// Kafka Streams was timed at in the same round (see peerRate), and the raw
// pipe last so that it can be timed at the pace of each of onceflow's
// exactly-once configurations of the round (see floorTargets).
func configurations(c *suiteConfig) []runConfig {
	var out []runConfig
	for _, vb := range c.valueBytes {
		for _, wl := range c.workloads {
			for _, iv := range c.intervals {
				for _, g := range c.guarantees {
					for _, sys := range []string{sysKStreams, sysOnceflow} {
						if !slices.Contains(c.systems, sys) {
							continue
						}
						if _, ok := kstreamsGuarantee(g); sys == sysKStreams && !ok {
							continue
						}
						out = append(out, runConfig{System: sys, Workload: wl, Guarantee: g, IntervalMS: iv.Milliseconds(), ValueBytes: vb})
					}
				}
			}
		}
		if slices.Contains(c.systems, sysRawpipe) {
			out = append(out, runConfig{System: sysRawpipe, Workload: wlCopy, Guarantee: gNone, ValueBytes: vb})
		}
	}
	return out
}

// guessRate is the records/s assumed for sizing N before a configuration
// of the same system, workload and value size has been measured.
func guessRate(rc runConfig) float64 {
	r := map[string]float64{sysRawpipe: 800_000, sysOnceflow: 200_000, sysKStreams: 100_000}[rc.System]
	if rc.Guarantee == gExactlyOnce {
		r /= 2
	}
	if rc.Workload == wlWordcount {
		r /= 2
	}
	if rc.ValueBytes >= 1024 {
		r /= 3
	}
	return r
}

// suite is the state of one run of the suite.
type suite struct {
	cfg     *suiteConfig
	root    string
	seeds   []string
	brokers string
	binary  string // the bench binary the children run
	jar     string // the Kafka Streams jar, "" if skipped
	runID   string
	logDir  string
	tmpDir  string
	adm     *admin
	// brokerPIDs are the broker's processes (--broker-pids, or those of
	// the broker the suite started); nil when unknown.
	brokerPIDs []int
	// gc are the GC logs of the broker's JVMs (brokerGCLogs); nil when
	// unknown.
	gc    *gcLogs
	notes []string
	rates map[string]float64 // measured records/s by rateKey
	// paces are the latency phase rates of the Kafka Streams
	// configurations and of onceflow's exactly-once ones, each with the
	// round it was measured in.
	paces   map[runConfig]roundPace
	results []Result
	started time.Time
	seq     int

	// warmupRounds is how many rounds warmUp ran.
	warmupRounds int
}

func runSuite(ctx context.Context, cfg *suiteConfig) (err error) {
	s := &suite{cfg: cfg, rates: map[string]float64{}, paces: map[runConfig]roundPace{}, started: time.Now()}
	if s.root, err = repoRoot(); err != nil {
		return err
	}
	if !filepath.IsAbs(cfg.out) {
		cfg.out = filepath.Join(s.root, cfg.out)
	}
	s.logDir = filepath.Join(cfg.out, "logs")
	if err := os.MkdirAll(s.logDir, 0o755); err != nil {
		return fmt.Errorf("output directory: %w", err)
	}
	if s.tmpDir, err = os.MkdirTemp("", "onceflow-bench-"); err != nil {
		return fmt.Errorf("temp directory: %w", err)
	}
	defer os.RemoveAll(s.tmpDir)
	var id [3]byte
	_, _ = rand.Read(id[:])
	s.runID = hex.EncodeToString(id[:])

	s.brokers = cfg.brokers
	if s.brokers == "" {
		lb, brokers, err := startLocalBroker(ctx, s.root)
		if err != nil {
			return err
		}
		defer lb.stop()
		s.brokers = brokers
		s.brokerPIDs = lb.pids
	} else {
		s.brokerPIDs = cfg.brokerPIDs
	}
	s.gc = brokerGCLogs(s.brokerPIDs)
	s.seeds = strings.Split(s.brokers, ",")
	if s.adm, err = newAdmin(s.seeds); err != nil {
		return err
	}
	defer s.adm.close()
	if note := s.adm.deleteDelayNote(ctx); note != "" {
		s.logf("%s", note)
	}

	s.binary = filepath.Join(s.tmpDir, "bench")
	s.logf("building the bench binary (go build -o %s ./bench)", s.binary)
	build := exec.CommandContext(ctx, "go", "build", "-o", s.binary, "./bench")
	build.Dir = s.root
	if out, err := build.CombinedOutput(); err != nil {
		return fmt.Errorf("go build ./bench: %w\n%s", err, out)
	}
	if slices.Contains(cfg.systems, sysKStreams) {
		var note string
		if s.jar, note = buildKStreams(ctx, s.root, s.logDir); note != "" {
			s.logf("NOTE: %s", note)
			s.notes = append(s.notes, note)
		}
	}
	if slices.Contains(cfg.systems, sysKStreams) && slices.Contains(cfg.guarantees, gAtMostOnce) {
		s.notes = append(s.notes, "Kafka Streams has no at-most-once guarantee; it runs exactly_once_v2 and at_least_once only.")
	}

	configs := configurations(cfg)
	if s.jar == "" {
		configs = slices.DeleteFunc(configs, func(rc runConfig) bool { return rc.System == sysKStreams })
	}
	if len(configs) == 0 {
		return errors.New("the flags select no configuration")
	}
	s.logf("brokers %s; %d configurations x %d repeats; results in %s", s.brokers, len(configs), cfg.repeat, cfg.out)
	if cfg.warmup {
		s.warmUp(ctx)
	}
	if err := s.runRounds(ctx, configs); err != nil {
		return err
	}
	if err := writeCharts(cfg.out, s.results); err != nil {
		return err
	}
	s.logf("done in %s: %s/results.json, results.md and charts", time.Since(s.started).Round(time.Second), cfg.out)
	if ctx.Err() != nil {
		return fmt.Errorf("interrupted: %w", ctx.Err())
	}
	return nil
}

func (s *suite) logf(format string, args ...any) {
	el := time.Since(s.started).Round(time.Second)
	fmt.Fprintf(os.Stderr, "bench %7s  %s\n", el, fmt.Sprintf(format, args...))
}

func (s *suite) meta() reportMeta {
	return reportMeta{
		Date:         s.started.Format(time.RFC3339),
		Brokers:      s.brokers,
		Partitions:   s.cfg.partitions,
		Keys:         s.cfg.keys,
		Threads:      s.cfg.threads,
		MarkerWait:   s.cfg.markerWait.String(),
		Repeats:      s.cfg.repeat,
		LatencyPct:   s.cfg.latencyFrac * 100,
		LatencyRate:  s.cfg.latencyRate,
		LatencyDur:   s.cfg.latencyDur,
		LatencyParts: s.cfg.latencyParts,
		Quick:        s.cfg.quick,
		WarmupRounds: s.warmupRounds,
		WriteBack:    s.cfg.writeBack,
		Notes:        s.notes,
		CPU:          cpuModel(),
	}
}

// cpuModel returns the processor's model name from /proc/cpuinfo, or ""
// where there is none (not Linux, or a kernel that does not say).
func cpuModel() string {
	b, err := os.ReadFile("/proc/cpuinfo")
	if err != nil {
		return ""
	}
	for _, line := range strings.Split(string(b), "\n") {
		k, v, ok := strings.Cut(line, ":")
		if ok && strings.TrimSpace(k) == "model name" {
			return strings.TrimSpace(v)
		}
	}
	return ""
}

// records returns N for a configuration: the --records override, or the
// target duration times the rate measured (or guessed) for its kind.
func (s *suite) records(rc runConfig) int {
	if s.cfg.records > 0 {
		return s.cfg.records
	}
	rate := guessRate(rc)
	for _, k := range rc.rateKeys() {
		if r, ok := s.rates[k]; ok {
			rate = r
			break
		}
	}
	n := int(rate*s.cfg.targetSecs/10_000+0.5) * 10_000
	return max(n, 20_000)
}

// runRounds runs every configuration once per round, one round per
// repeat, and rewrites the reports after each round. Interleaving the
// repeats spreads a slow spell of the host (this machine's speed drifts
// by tens of percent within minutes) over many configurations instead of
// every repeat of one, so the medians compare like with like. N is fixed
// in the first round (see resize).
func (s *suite) runRounds(ctx context.Context, configs []runConfig) error {
	ns := make([]int, len(configs))
	samples := make([][]sample, len(configs))
	for rep := 1; rep <= s.cfg.repeat && ctx.Err() == nil; rep++ {
		for i, rc := range configs {
			if ctx.Err() != nil {
				break
			}
			if rep == 1 {
				ns[i] = s.records(rc)
			}
			sm, ok := s.runRepeat(ctx, i+1, len(configs), rc, rep, ns[i])
			if !ok {
				continue
			}
			if rep == 1 && s.cfg.records == 0 {
				s.sized(rc, sm)
				// A rerun sized from a short first try can be short
				// again: that try's rate has startup in it.
				for try := 0; ok && try < maxResizes; try++ {
					n, again := s.resize(sm, ns[i], s.records(rc))
					if !again {
						break
					}
					s.logf("%s: its throughput phase took %.1fs, too short to measure a maximum (startup weighs in, and the latency phase is paced at a fraction of it): running it again with N=%d", rc, sm.seconds, n)
					ns[i] = n
					if sm, ok = s.runRepeat(ctx, i+1, len(configs), rc, rep, n); ok {
						s.sized(rc, sm)
					}
				}
				if !ok {
					continue
				}
			}
			sm.repeat = rep
			samples[i] = append(samples[i], sm)
		}
		s.results = s.results[:0]
		for i, rc := range configs {
			if len(samples[i]) > 0 {
				r := summarize(rc, ns[i], samples[i])
				r.Threads = s.cfg.threads
				if rc.System == sysRawpipe {
					r.Threads = 1
				}
				s.results = append(s.results, r)
			}
		}
		if err := writeReports(s.cfg.out, s.meta(), s.results); err != nil {
			return err
		}
	}
	return nil
}

// runRepeat runs one repeat of rc and logs it; a failure becomes a note.
func (s *suite) runRepeat(ctx context.Context, i, total int, rc runConfig, rep, n int) (sample, bool) {
	tag := fmt.Sprintf("[%d/%d] %s (repeat %d/%d, N=%d)", i, total, rc, rep, s.cfg.repeat, n)
	s.logf("%s: start", tag)
	sm, err := s.runOnce(ctx, rc, n, tag, s.peerRate(rc, rep), s.floorTargets(rc, rep))
	if err != nil {
		s.logf("%s: FAILED: %v", tag, err)
		s.notes = append(s.notes, fmt.Sprintf("%s, repeat %d failed: %v", rc, rep, err))
		return sm, false
	}
	if rc.System == sysKStreams || rc.System == sysOnceflow && rc.Guarantee == gExactlyOnce {
		s.paces[rc] = roundPace{repeat: rep, rate: sm.lat.rate}
	}
	s.logf("%s: %.0f records/s over %.1fs (startup %.1fs); latency p50 %.1f p99 %.1f max %.1f ms at %.0f/s; cpu %.1fs (broker %.1fs, reader %.1fs), rss %.0f MiB",
		tag, sm.rps, sm.seconds, sm.startup, sm.lat.p50, sm.lat.p99, sm.lat.max, sm.lat.rate, sm.cpu, sm.brokerCPU, sm.harnessCPU, sm.rss)
	if sm.peer.rate > 0 {
		s.logf("%s: at Kafka Streams' pace, %.0f/s: latency p50 %.1f p99 %.1f max %.1f ms", tag, sm.peer.rate, sm.peer.p50, sm.peer.p99, sm.peer.max)
	}
	for _, fl := range sm.floors {
		s.logf("%s: at the pace of %s, %.0f/s: latency p50 %.1f p99 %.1f max %.1f ms", tag, fl.of, fl.rate, fl.p50, fl.p99, fl.max)
	}
	return sm, true
}

// roundPace is the rate a configuration's latency phase ran at, and the
// round it ran in.
type roundPace struct {
	repeat int
	rate   float64
}

// peerRate is the rate of the second latency phase of rc (0: none): the
// pace of its Kafka Streams peer in the same round, for onceflow under
// exactly-once. Each system's own phase runs at a fraction of its own
// maximum, and Kafka Streams' maximum is a ninth to a fourteenth of
// onceflow's on the 100 B workloads, so those two p99s are taken at very
// different loads of a shared host; the second phase compares them at the
// same load. Kafka Streams runs just before onceflow in each round
// (configurations), so the pace is from minutes earlier.
func (s *suite) peerRate(rc runConfig, rep int) float64 {
	if !s.cfg.atPeerPace || s.cfg.latencyRate > 0 || rc.System != sysOnceflow || rc.Guarantee != gExactlyOnce {
		return 0
	}
	peer := rc
	peer.System = sysKStreams
	if p, ok := s.paces[peer]; ok && p.repeat == rep {
		return p.rate
	}
	return 0
}

// floorTarget is one more latency phase of the raw pipe: at the pace the
// exactly-once configuration of onceflow "of" ran at.
type floorTarget struct {
	of   runConfig
	rate float64
}

// floorTargets are the raw pipe's latency phases beyond its own
// (--rawpipe-at-onceflow-pace): one per exactly-once configuration of
// onceflow of its value size that ran in the same round, at that
// configuration's pace, by workload and then interval. The raw pipe
// commits nothing, so its p99 at that pace is what the broker and the
// host add to a record at that load before any commit: onceflow's
// exactly-once configurations are paced at 6 to 14 times Kafka Streams'
// rate on the same two cores, and this tells how much of their p99 the
// load alone accounts for.
func (s *suite) floorTargets(rc runConfig, rep int) []floorTarget {
	if !s.cfg.atOnceflowPace || s.cfg.latencyRate > 0 || rc.System != sysRawpipe {
		return nil
	}
	var ts []floorTarget
	for c, p := range s.paces {
		if c.System == sysOnceflow && c.Guarantee == gExactlyOnce && c.ValueBytes == rc.ValueBytes && p.repeat == rep && p.rate > 0 {
			ts = append(ts, floorTarget{of: c, rate: p.rate})
		}
	}
	slices.SortFunc(ts, func(a, b floorTarget) int {
		return cmp.Or(cmp.Compare(a.of.Workload, b.of.Workload), cmp.Compare(a.of.IntervalMS, b.of.IntervalMS))
	})
	return ts
}

// The warm-up repeats until the broker's JIT compilers used less than
// jitSettledShare of its CPU over a round, at most maxWarmupRounds times.
// After a one-configuration warm-up the compilers still used 2.6–2.9 s
// of CPU, a quarter of the broker's, in the first 10 s latency phase,
// and 0.4–1.0 s in the phases after that.
const (
	jitSettledShare = 0.15
	maxWarmupRounds = 3
)

// warmUp runs onceflow's exactly-once configuration of each workload, at
// the shortest commit interval of the run, and forgets their figures. A
// broker that has just started runs its request paths interpreted until
// the JVM compiles them: in a run without a warm-up, the first
// configuration measured 801,557 records/s and a p99 of 816 ms where its
// next two repeats measured 1,049,416 and 931,890 records/s and p99s of
// 53 and 211 ms. The runs exercise what every system uses: produce,
// idempotent and transactional, read_committed fetch, the group and
// transaction coordinators, and (wordcount) a changelog. A warm-up at 100
// ms alone left the transaction paths cold for 10 ms: three exactly-once
// wordcounts at 10 ms after it, one after the other, took 9.7, 5.0 and
// 4.0 ms per commit, and the first copy at 10 ms of a full run 12.7 ms
// against 7.7 and 6.5 in its later rounds. One round was not always
// enough either: where the suite can see the broker's threads, the
// rounds repeat until its JIT compilers' share of its CPU is settled
// (jitSettledShare, maxWarmupRounds).
func (s *suite) warmUp(ctx context.Context) {
	for round := 1; round <= maxWarmupRounds; round++ {
		jit0, cpu0 := s.brokerJITSeconds(), s.brokerCPUSeconds()
		s.warmupRounds = round
		for _, wl := range s.cfg.workloads {
			rc := runConfig{System: sysOnceflow, Workload: wl, Guarantee: gExactlyOnce,
				IntervalMS: slices.Min(s.cfg.intervals).Milliseconds(), ValueBytes: 100}
			tag := fmt.Sprintf("warm-up %d: %s, unmeasured", round, rc)
			s.logf("%s: start", tag)
			if _, err := s.runOnce(ctx, rc, s.records(rc), tag, 0, nil); err != nil {
				s.logf("%s: FAILED (the first configurations may measure a cold broker): %v", tag, err)
				return
			}
			s.logf("%s: done", tag)
		}
		jit, cpu := s.brokerJITSince(jit0), cpuSince(s.brokerCPUSeconds(), cpu0)
		if !(cpu > 0) || math.IsNaN(jit) {
			return // the broker's threads are not visible: one round
		}
		settled := jit/cpu < jitSettledShare
		s.logf("warm-up %d: the broker's JIT compilers used %.1fs of its %.1fs of CPU (%.0f%%; settled below %.0f%%)",
			round, jit, cpu, 100*jit/cpu, 100*jitSettledShare)
		if settled {
			return
		}
	}
	s.logf("warm-up: the broker's JIT compilers had not settled after %d rounds; measuring anyway", maxWarmupRounds)
}

// sized records the rate rc's first repeat measured, which sizes N of the
// configurations of its kind that come later in the first round.
func (s *suite) sized(rc runConfig, sm sample) {
	for _, k := range rc.rateKeys() {
		s.rates[k] = sm.rps
	}
	if sm.seconds < s.cfg.targetSecs/2 || sm.seconds > s.cfg.targetSecs*2 {
		s.logf("note: the throughput phase took %.1fs (target %.0fs); later configurations like it are resized", sm.seconds, s.cfg.targetSecs)
	}
}

// resize decides whether a first repeat that ran with N records must run
// again with N sized from its own measured rate (sized): when its
// throughput phase took less than half the target and the new N is
// larger. A configuration whose kind nothing measured before runs with a
// guessed rate first; the repeats that follow use the first one's N, so
// without this a run of, say, only the exactly-once configurations
// measured each system's maximum over a second or two.
func (s *suite) resize(sm sample, n, sizedN int) (int, bool) {
	if sm.seconds >= s.cfg.targetSecs/2 || sizedN <= n {
		return n, false
	}
	return sizedN, true
}

// maxResizes bounds how many times a first repeat runs again (resize).
const maxResizes = 2

// sample is what one repeat measured.
type sample struct {
	repeat                int // 1-based: the round the sample was taken in
	seconds, rps, startup float64
	cpu, cpuTotal, rss    float64
	// brokerCPU and harnessCPU are the CPU seconds the broker and the
	// suite's own process (the result reader) used during the throughput
	// phase; NaN when unknown.
	brokerCPU, harnessCPU float64
	// lat is the latency phase, at the system's own pace.
	lat phase
	// peer is the second latency phase, at the pace of the Kafka Streams
	// peer (peerRate); rate 0 when there was none.
	peer phase
	// floors are the raw pipe's phases at onceflow's paces (floorTargets).
	floors []floorPhase
}

// floorPhase is a latency phase of the raw pipe at the pace of onceflow's
// configuration "of".
type floorPhase struct {
	of runConfig
	phase
}

// phase is what one latency phase measured.
type phase struct {
	rate, p50, p99, max float64
	// busy is the cores the system, the broker and this process (the
	// paced producer and the reader) kept busy during the phase, from its
	// start until its last result; NaN when unknown.
	busy float64
	// ioStall is how long the whole host stalled on I/O during the phase
	// (ioStallSeconds), in milliseconds; NaN when unknown.
	ioStall    float64
	n, records int // results timed, input records produced
	// gc is the broker's collector pauses during the phase (from the
	// mark until its last result); NaN figures when unknown.
	gc gcPauses
	// commits is how onceflow committed during the phase (from the mark
	// before the paced producer started until its last result); zero for
	// the other systems.
	commits commitPhase
}

// runOnce runs one repeat: fresh topics, pre-loaded input, the system as a
// child process measured until a read_committed reader saw all N results,
// then the paced latency phase, a second one at peerRate records/s unless
// that is 0, and one at each of floors; then everything it made is
// deleted.
func (s *suite) runOnce(ctx context.Context, rc runConfig, n int, tag string, peerRate float64, floors []floorTarget) (sm sample, err error) {
	s.seq++
	base := fmt.Sprintf("bench-%s-%03d-%s", s.runID, s.seq, rc.slug())
	in, out, app := base+"-in", base+"-out", base+"-app"
	stateDir := filepath.Join(s.tmpDir, base+"-state")
	defer func() {
		cctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		defer cancel()
		if cerr := s.adm.cleanup(cctx, app+"-", app, in, out); cerr != nil {
			s.logf("%s: cleanup: %v", tag, cerr)
		}
		_ = os.RemoveAll(stateDir)
	}()
	if err := s.adm.createTopics(ctx, int32(s.cfg.partitions), in, out); err != nil {
		return sm, err
	}
	loadStart := time.Now()
	if err := loadInput(ctx, s.seeds, in, n, s.cfg.keys, rc.ValueBytes, func(done int64) {
		s.logf("%s: loading input %d/%d", tag, done, n)
	}); err != nil {
		return sm, err
	}
	s.logf("%s: loaded %d records in %.1fs", tag, n, time.Since(loadStart).Seconds())

	rr, err := startResultReader(s.seeds, out, s.cfg.partitions, s.cfg.latencyParts, int64(n))
	if err != nil {
		return sm, err
	}
	defer rr.close()

	var argv []string
	switch rc.System {
	case sysOnceflow:
		argv = []string{s.binary, "processor", "--workload", rc.Workload, "--guarantee", rc.Guarantee,
			"--commit-interval", (time.Duration(rc.IntervalMS) * time.Millisecond).String(),
			"--brokers", s.brokers, "--input", in, "--output", out, "--app-id", app,
			"--instance-id", "bench-0", "--state-dir", stateDir, "--workers", strconv.Itoa(s.cfg.threads), "--control"}
		argv = append(argv, markerWaitArgs(s.cfg.markerWait)...)
		// Debugging aids, off by default: a CPU profile of the processor
		// and its log level (debug, info, warn), an allocation profile, and
		// each request kind's round-trip times.
		if os.Getenv("BENCH_CPUPROFILE") != "" {
			argv = append(argv, "--cpuprofile", filepath.Join(s.logDir, base+".cpu.pprof"))
		}
		if os.Getenv("BENCH_MEMPROFILE") != "" {
			argv = append(argv, "--memprofile", filepath.Join(s.logDir, base+".allocs.pprof"))
		}
		if os.Getenv("BENCH_REQTIMES") != "" {
			argv = append(argv, "--request-times")
		}
		if lvl := os.Getenv("BENCH_PROCESSOR_LOG"); lvl != "" {
			argv = append(argv, "--log-level", lvl)
		}
	case sysRawpipe:
		argv = []string{s.binary, "rawpipe", "--brokers", s.brokers, "--input", in, "--output", out}
	case sysKStreams:
		argv = kstreamsArgv(s.jar, s.brokers, rc, in, out, app, stateDir, s.cfg.threads)
	}
	s.writeBack(tag)
	// The throughput phase's CPU time of the broker and of this process
	// counts from the child's start.
	broker0, harness0 := s.brokerCPUSeconds(), selfCPUSeconds()
	ch, err := startChild(rc.System, filepath.Join(s.logDir, base+".log"), argv, rc.System == sysOnceflow)
	if err != nil {
		return sm, err
	}
	stopped := false
	defer func() {
		if !stopped {
			ch.kill()
		}
	}()
	t0 := ch.started
	if err := rr.waitFor(ctx, int64(n), ch, 90*time.Second, func(c int64) {
		s.logf("%s: %d/%d results seen (%.0f/s since start)", tag, c, n, float64(c)/time.Since(t0).Seconds())
	}); err != nil {
		return sm, err
	}
	first, last, _ := rr.snapshot()
	sm.cpu = ch.cpuSeconds()
	sm.brokerCPU = cpuSince(s.brokerCPUSeconds(), broker0)
	sm.harnessCPU = cpuSince(selfCPUSeconds(), harness0)
	sm.seconds = last.Sub(t0).Seconds()
	sm.rps = float64(n) / sm.seconds
	sm.startup = first.Sub(t0).Seconds()

	// The latency phase: a paced producer at a fraction of the measured
	// maximum, the reader timing every result stamped after the mark.
	rate := s.cfg.latencyFrac * sm.rps
	if s.cfg.latencyRate > 0 {
		rate = s.cfg.latencyRate
	}
	if sm.lat, err = s.latencyPhase(ctx, rr, ch, in, rc, rate, n, tag+": latency phase"); err != nil {
		return sm, err
	}
	next := n + sm.lat.records // the next phase's first input record
	if peerRate > 0 {
		if sm.peer, err = s.latencyPhase(ctx, rr, ch, in, rc, peerRate, next, tag+": latency phase at Kafka Streams' pace"); err != nil {
			return sm, err
		}
		next += sm.peer.records
	}
	for _, t := range floors {
		ph, err := s.latencyPhase(ctx, rr, ch, in, rc, t.rate, next, fmt.Sprintf("%s: latency phase at the pace of %s", tag, t.of))
		if err != nil {
			return sm, err
		}
		if math.IsNaN(ph.p50) {
			return sm, fmt.Errorf("the latency phase at the pace of %s produced no samples", t.of)
		}
		sm.floors = append(sm.floors, floorPhase{of: t.of, phase: ph})
		next += ph.records
	}

	u, stopErr := ch.stop(45 * time.Second)
	stopped = true
	sm.cpuTotal, sm.rss = u.cpuS, u.rssMiB
	if sm.cpu < 0 {
		sm.cpu = u.cpuS
	}
	if stopErr != nil {
		return sm, stopErr
	}
	if math.IsNaN(sm.lat.p50) {
		return sm, errors.New("the latency phase produced no samples")
	}
	if peerRate > 0 && math.IsNaN(sm.peer.p50) {
		return sm, errors.New("the latency phase at Kafka Streams' pace produced no samples")
	}
	return sm, nil
}

// latencyPhase paces rate records/s into the input topic for the latency
// duration, after the first records already there, and times the
// results stamped from its start.
func (s *suite) latencyPhase(ctx context.Context, rr *resultReader, ch *child, in string, rc runConfig, rate float64, first int, tag string) (phase, error) {
	ph := phase{rate: rate}
	s.writeBack(tag)
	jit0 := s.brokerJITSeconds()
	mark := time.Now()
	paced0 := []float64{ch.cpuSeconds(), s.brokerCPUSeconds(), selfCPUSeconds()}
	io0 := ioStallSeconds()
	gc0 := s.gc.mark()
	if ch.commits != nil {
		if err := ch.commits.mark(); err != nil {
			return ph, fmt.Errorf("%s: %w", tag, err)
		}
	}
	rr.startLatency(mark)
	s.logf("%s: %.0f records/s for %v", tag, rate, s.cfg.latencyDur)
	m, err := pacedProduce(ctx, s.seeds, in, rate, s.cfg.latencyDur, first, s.cfg.keys, rc.ValueBytes)
	rr.endLatency()
	if err != nil {
		return ph, err
	}
	ph.records = m
	if err := rr.waitFor(ctx, int64(first+m), ch, 60*time.Second, func(c int64) {
		s.logf("%s: %d/%d results", tag, c-int64(first), m)
	}); err != nil {
		return ph, err
	}
	ph.n, ph.p50, ph.p99, ph.max = rr.latencySummary()
	ph.gc = s.gc.since(gc0)
	if ch.commits != nil {
		if ph.commits, err = ch.commits.report(); err != nil {
			return ph, fmt.Errorf("%s: %w", tag, err)
		}
	}
	pacedWall, paced1 := time.Since(mark), []float64{ch.cpuSeconds(), s.brokerCPUSeconds(), selfCPUSeconds()}
	ph.busy = busyCores(pacedWall, paced0, paced1)
	ph.ioStall = cpuSince(ioStallSeconds(), io0) * 1000
	jit := ""
	if j := s.brokerJITSince(jit0); !math.IsNaN(j) {
		jit = fmt.Sprintf(" (%.1fs in its JIT compilers)", j)
	}
	s.logf("%s: kept %.2f cores busy over %.1fs (system %.1fs, broker %.1fs%s, suite %.1fs of CPU); the host stalled on I/O for %.1f ms", tag, ph.busy, pacedWall.Seconds(),
		cpuSince(paced1[0], paced0[0]), cpuSince(paced1[1], paced0[1]), jit, cpuSince(paced1[2], paced0[2]), ph.ioStall)
	if !math.IsNaN(ph.gc.max) {
		s.logf("%s: the broker paused for its collector %d times, %.1f ms in all, the longest %.1f ms", tag, ph.gc.n, ph.gc.totalMS, ph.gc.max)
	}
	if c := ph.commits; c.Commits > 0 {
		s.logf("%s: %d commits (%.1f/s): mean %.1f ms (flushing %.1f), p50 %.1f, p99 %.1f, max %.1f; %.1f%% longer than the interval; markers written after p50 %.1f, p99 %.1f ms; oldest record when polled p99 %.1f ms, at commit p99 %.1f, max %.1f ms", tag,
			c.Commits, c.PerSecond, c.MeanMS, c.FlushMS, c.P50MS, c.P99MS, c.MaxMS, c.OverPct, c.MarkerP50MS, c.MarkerP99MS, c.PollAgeP99MS, c.AgeP99MS, c.AgeMaxMS)
	}
	return ph, nil
}

// writeBack has the host's dirty pages written to disk before a measured
// phase (--write-back). Linux writes a page back about 30 s after it was
// dirtied (vm.dirty_expire_centisecs), so the gigabytes the pre-load and
// an unpaced phase leave in the page cache went to disk during the later
// phases of the same configuration, which then measured the host's disk:
// in full-r8 every latency phase of onceflow's exactly-once wordcount at
// Kafka Streams' pace had 135-466 ms of host-wide I/O stall.
func (s *suite) writeBack(tag string) {
	if !s.cfg.writeBack {
		return
	}
	dirty, began := dirtyMiB(), time.Now()
	syncDisks()
	s.logf("%s: wrote %.0f MiB of dirty pages to disk in %.1fs before measuring", tag, dirty, time.Since(began).Seconds())
}

// meminfoDirtyMiB reads the "Dirty" line (kB) of /proc/meminfo's text s,
// in MiB; NaN if it has none.
func meminfoDirtyMiB(s string) float64 {
	for line := range strings.Lines(s) {
		f := strings.Fields(line)
		if len(f) >= 2 && f[0] == "Dirty:" {
			if kb, err := strconv.ParseFloat(f[1], 64); err == nil {
				return kb / 1024
			}
		}
	}
	return math.NaN()
}

// pressureFullSeconds reads the "full" line's total (microseconds) of a
// Linux pressure file such as /proc/pressure/io, in seconds; -1 if it
// has none.
func pressureFullSeconds(s string) float64 {
	for _, line := range strings.Split(s, "\n") {
		fields := strings.Fields(line)
		if len(fields) == 0 || fields[0] != "full" {
			continue
		}
		for _, f := range fields[1:] {
			if v, ok := strings.CutPrefix(f, "total="); ok {
				if us, err := strconv.ParseFloat(v, 64); err == nil {
					return us / 1e6
				}
			}
		}
	}
	return -1
}

// brokerCPUSeconds is the CPU time the broker's processes used so far, or
// -1 when unknown.
func (s *suite) brokerCPUSeconds() float64 { return pidsCPUSeconds(s.brokerPIDs) }

// brokerJITSeconds is the CPU time the broker's JIT compiler threads used
// so far, or -1 when unknown (see jitCPUSeconds).
func (s *suite) brokerJITSeconds() float64 { return jitCPUSeconds(s.brokerPIDs) }

// brokerJITSince is the CPU time the broker's JIT compilers used since the
// reading then, NaN if unknown. A compiler thread that ended took its
// time out of the sum, so a negative difference counts as none.
func (s *suite) brokerJITSince(then float64) float64 {
	return max(cpuSince(s.brokerJITSeconds(), then), 0)
}

// pidsCPUSeconds is the CPU time the processes pids used so far, or -1
// when unknown (no pids, or one of them unreadable).
func pidsCPUSeconds(pids []int) float64 { return sumOverPIDs(pids, procCPUSeconds) }

// sumOverPIDs sums of(pid) over pids, or -1 when there are no pids or of
// returns a negative (unknown) value for one of them.
func sumOverPIDs(pids []int, of func(pid int) float64) float64 {
	if len(pids) == 0 {
		return -1
	}
	total := 0.0
	for _, pid := range pids {
		c := of(pid)
		if c < 0 {
			return -1
		}
		total += c
	}
	return total
}

// cpuSince is the CPU time between two readings, NaN if either is unknown.
func cpuSince(now, then float64) float64 {
	if now < 0 || then < 0 {
		return math.NaN()
	}
	return now - then
}

// busyCores is the CPU time between two readings of several processes,
// summed, over the wall time between them: how many cores they kept busy.
// NaN if any reading is unknown.
func busyCores(wall time.Duration, then, now []float64) float64 {
	total := 0.0
	for i := range then {
		total += cpuSince(now[i], then[i])
	}
	return total / wall.Seconds()
}
