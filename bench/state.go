package main

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/onceflow/onceflow/processor"
)

// stateResult is what the state benchmark measures: memory of one instance
// holding every key, and restore speed against a plain read of the same
// changelog.
type stateResult struct {
	Date           string  `json:"date"`
	Brokers        string  `json:"brokers"`
	Keys           int     `json:"keys"`
	ValueBytes     int     `json:"value_bytes"`
	ProcessSeconds float64 `json:"process_seconds"`
	RSSMiB         float64 `json:"rss_mb"`
	// RestoreRSSMiB is the peak RSS of a fresh instance (its own process)
	// once it restored every key from the changelog.
	RestoreRSSMiB float64 `json:"restore_rss_mb"`
	Changelog     int64   `json:"changelog_records"`
	// The medians of Runs.
	ConsumeRPS   float64 `json:"consume_records_per_sec"`
	RestoreRPS   float64 `json:"restore_records_per_sec"`
	RestoreRatio float64 `json:"restore_vs_consume"`
	// Runs are the plain reads and restores, each restore right after its
	// read (a restore of 1,000,000 records takes under half a second, so
	// one pair says little).
	Runs []restoreRun `json:"runs"`
}

// restoreRun is one plain read of the changelog and the full restore after
// it.
type restoreRun struct {
	ConsumeSeconds float64 `json:"consume_seconds"`
	ConsumeRPS     float64 `json:"consume_records_per_sec"`
	RestoreSeconds float64 `json:"restore_seconds"`
	RestoreRPS     float64 `json:"restore_records_per_sec"`
	RestoreRatio   float64 `json:"restore_vs_consume"`
}

// statePartitions is the partition count of the state benchmark's input
// and output topics (and so of its changelog).
const statePartitions = 4

// stateCmd runs the state benchmark: wordcount under exactly-once over an
// input with one record per key, in a processor child process (its peak
// RSS is the memory of an instance holding every key); then a plain
// read_committed read of the changelog, and a full restore of the same
// changelog by a fresh instance with an empty state directory.
func stateCmd(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("bench state", flag.ContinueOnError)
	brokers := fs.String("brokers", os.Getenv("KAFKA_BROKERS"), "seed brokers (default $KAFKA_BROKERS, else a local broker is started)")
	keys := fs.Int("keys", 1_000_000, "distinct keys (one input record each)")
	valueBytes := fs.Int("value-bytes", 100, "input value size")
	restores := fs.Int("restores", 5, "plain reads and full restores of the changelog, in alternation (medians reported)")
	out := fs.String("out", filepath.Join("bench", "results", "state-"+time.Now().Format("2006-01-02")), "output directory")
	if err := fs.Parse(args); err != nil {
		return errUsage
	}
	if *restores < 1 {
		return fmt.Errorf("state: --restores must be at least 1, got %d", *restores)
	}
	if err := os.MkdirAll(*out, 0o755); err != nil {
		return fmt.Errorf("state: %w", err)
	}
	logf := func(format string, a ...any) { fmt.Fprintf(os.Stderr, "bench state: "+format+"\n", a...) }
	if *brokers == "" {
		lb, seeds, err := startRepoBroker(ctx)
		if err != nil {
			return err
		}
		defer lb.stop()
		*brokers = seeds
	}
	seeds := strings.Split(*brokers, ",")
	exe, err := os.Executable()
	if err != nil {
		return fmt.Errorf("state: find the bench binary: %w", err)
	}
	base := randomName("bench-state-")
	in, outTopic, app := base+"-in", base+"-out", base+"-app"
	changelog := app + "-counts-changelog"
	adm, err := newAdmin(seeds)
	if err != nil {
		return err
	}
	defer adm.close()
	defer func() { _ = adm.cleanupSoon(app, app, in, outTopic) }()
	if err := adm.createTopics(ctx, statePartitions, in, outTopic); err != nil {
		return err
	}
	res := stateResult{Date: time.Now().Format(time.RFC3339), Brokers: *brokers, Keys: *keys, ValueBytes: *valueBytes}
	logf("loading %d records with distinct keys", *keys)
	if err := loadInputKeys(ctx, seeds, in, *keys, *valueBytes, distinctKey, func(int64) {}); err != nil {
		return err
	}

	// 1. One instance processes every key: its peak RSS holds them all.
	dirA, err := os.MkdirTemp("", "onceflow-bench-state-")
	if err != nil {
		return fmt.Errorf("state: %w", err)
	}
	defer os.RemoveAll(dirA)
	rr, err := startResultReader(seeds, outTopic, statePartitions, statePartitions, int64(*keys))
	if err != nil {
		return err
	}
	defer rr.close()
	ch, err := startChild("processor", filepath.Join(*out, "state-processor.log"), stateProcessorArgv(exe, *brokers, in, outTopic, app, dirA), false)
	if err != nil {
		return err
	}
	if err := rr.waitFor(ctx, int64(*keys), ch, 120*time.Second, func(n int64) { logf("%d/%d results", n, *keys) }); err != nil {
		ch.kill()
		return err
	}
	_, last, _ := rr.snapshot()
	res.ProcessSeconds = last.Sub(ch.started).Seconds()
	u, err := ch.stop(60 * time.Second)
	if err != nil {
		return err
	}
	res.RSSMiB = u.rssMiB
	logf("processed %d keys in %.1fs, peak RSS %.0f MiB", *keys, res.ProcessSeconds, res.RSSMiB)

	// 2. A plain read_committed consumer reads the changelog; then (3.)
	// the same instance id with an empty state directory restores it in
	// full before it processes anything. Repeated, in alternation.
	for i := range *restores {
		t0 := time.Now()
		n, err := consumeAll(ctx, seeds, changelog)
		if err != nil {
			return err
		}
		run := restoreRun{ConsumeSeconds: time.Since(t0).Seconds()}
		run.ConsumeRPS = float64(n) / run.ConsumeSeconds
		res.Changelog = n
		if err := measureRestore(ctx, &run, *brokers, in, outTopic, app); err != nil {
			return err
		}
		res.Runs = append(res.Runs, run)
		logf("run %d/%d: plain consume of %d changelog records %.2fs (%.0f/s), restore %.2fs (%.0f/s): %.2f of the plain consume",
			i+1, *restores, n, run.ConsumeSeconds, run.ConsumeRPS, run.RestoreSeconds, run.RestoreRPS, run.RestoreRatio)
	}
	// 4. One more full restore, in a child process: its peak RSS once every
	// key is restored.
	res.RestoreRSSMiB, err = measureRestoreRSS(ctx, exe, filepath.Join(*out, "state-restore-processor.log"), *brokers, in, outTopic, app)
	if err != nil {
		return err
	}
	logf("a fresh instance restoring every key in its own process peaked at %.0f MiB RSS", res.RestoreRSSMiB)

	var consume, restore, ratio []float64
	for _, r := range res.Runs {
		consume, restore, ratio = append(consume, r.ConsumeRPS), append(restore, r.RestoreRPS), append(ratio, r.RestoreRatio)
	}
	res.ConsumeRPS, res.RestoreRPS, res.RestoreRatio = median(consume), median(restore), median(ratio)

	js, err := json.MarshalIndent(res, "", "  ")
	if err != nil {
		return fmt.Errorf("state: %w", err)
	}
	if err := os.WriteFile(filepath.Join(*out, "state.json"), append(js, '\n'), 0o644); err != nil {
		return fmt.Errorf("state: %w", err)
	}
	md := fmt.Sprintf("| keys | peak RSS (MiB) | peak RSS restoring (MiB) | changelog records | plain consume (rec/s) | restore (rec/s) | restore / consume (min–max) |\n"+
		"|---:|---:|---:|---:|---:|---:|---:|\n| %d | %.0f | %.0f | %d | %.0f | %.0f | %.3f (%.3f–%.3f) |\n",
		res.Keys, res.RSSMiB, res.RestoreRSSMiB, res.Changelog, res.ConsumeRPS, res.RestoreRPS, res.RestoreRatio, slices.Min(ratio), slices.Max(ratio))
	md += fmt.Sprintf("\nThe rates and ratio above are medians of these %d pairs, each restore right after its plain read:\n\n| run | plain consume (rec/s) | restore (rec/s) | restore / consume |\n|---:|---:|---:|---:|\n", len(res.Runs))
	for i, r := range res.Runs {
		md += fmt.Sprintf("| %d | %.0f | %.0f | %.3f |\n", i+1, r.ConsumeRPS, r.RestoreRPS, r.RestoreRatio)
	}
	if err := os.WriteFile(filepath.Join(*out, "state.md"), []byte(md), 0o644); err != nil {
		return fmt.Errorf("state: %w", err)
	}
	fmt.Print(md)
	return nil
}

// consumeAll reads topic read_committed from the start to its high
// watermark and returns the number of data records.
func consumeAll(ctx context.Context, seeds []string, topic string) (int64, error) {
	cl, err := kgo.NewClient(
		kgo.SeedBrokers(seeds...),
		kgo.ConsumeTopics(topic),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()),
		kgo.KeepControlRecords(),
		kgo.FetchMaxBytes(64<<20),
		kgo.FetchMaxPartitionBytes(16<<20),
	)
	if err != nil {
		return 0, fmt.Errorf("consume %s: %w", topic, err)
	}
	defer cl.Close()
	adm, err := newAdmin(seeds)
	if err != nil {
		return 0, err
	}
	defer adm.close()
	ends, err := adm.adm.ListEndOffsets(ctx, topic)
	if err == nil {
		err = ends.Error()
	}
	if err != nil {
		return 0, fmt.Errorf("consume %s: end offsets: %w", topic, err)
	}
	remaining := map[int32]int64{}
	for p, o := range ends[topic] {
		if o.Offset > 0 {
			remaining[p] = o.Offset
		}
	}
	var n int64
	for len(remaining) > 0 {
		fs := cl.PollFetches(ctx)
		if err := ctx.Err(); err != nil {
			return n, err
		}
		if err := fs.Err0(); err != nil {
			return n, fmt.Errorf("consume %s: %w", topic, err)
		}
		fs.EachRecord(func(r *kgo.Record) {
			if !r.Attrs.IsControl() {
				n++
			}
			if end, ok := remaining[r.Partition]; ok && r.Offset+1 >= end {
				delete(remaining, r.Partition)
			}
		})
	}
	return n, nil
}

// measureRestore runs the application in-process with an empty state
// directory and times its restores, from the first restore's start to the
// last one's end.
func measureRestore(ctx context.Context, res *restoreRun, brokers, in, out, app string) error {
	dir, err := os.MkdirTemp("", "onceflow-bench-restore-")
	if err != nil {
		return fmt.Errorf("restore: %w", err)
	}
	defer os.RemoveAll(dir)
	topo, err := benchTopology(wlWordcount, in, out)
	if err != nil {
		return err
	}
	var (
		mu       sync.Mutex
		first    time.Time
		lastDone time.Time
		records  int64
		done     int
		allDone  = make(chan struct{})
	)
	p, err := processor.New(topo,
		processor.Brokers(strings.Split(brokers, ",")...),
		processor.ApplicationID(app),
		processor.InstanceID("bench-0"),
		processor.StateDir(dir),
		processor.OnRestore(func(r processor.RestoreProgress) {
			mu.Lock()
			defer mu.Unlock()
			if start := time.Now().Add(-r.Elapsed); first.IsZero() || start.Before(first) {
				first = start
			}
			if r.Done {
				records += r.Records
				lastDone = time.Now()
				if done++; done == statePartitions {
					close(allDone)
				}
			}
		}),
	)
	if err != nil {
		return err
	}
	rctx, cancel := context.WithCancel(ctx)
	errc := make(chan error, 1)
	go func() { errc <- p.Run(rctx) }()
	select {
	case <-allDone:
	case err := <-errc:
		cancel()
		return fmt.Errorf("restore: processor stopped before restoring: %w", err)
	case <-time.After(5 * time.Minute):
		cancel()
		<-errc
		return fmt.Errorf("restore: not done within 5 minutes (%d of %d partitions)", done, statePartitions)
	}
	cancel()
	if err := <-errc; err != nil {
		return fmt.Errorf("restore: %w", err)
	}
	mu.Lock()
	defer mu.Unlock()
	res.RestoreSeconds = lastDone.Sub(first).Seconds()
	res.RestoreRPS = float64(records) / res.RestoreSeconds
	if res.ConsumeRPS > 0 {
		res.RestoreRatio = res.RestoreRPS / res.ConsumeRPS
	}
	return nil
}

// measureRestoreRSS starts the application as a child process with an empty
// state directory and returns its peak RSS once its log reports every
// store-partition restored.
func measureRestoreRSS(ctx context.Context, exe, logPath, brokers, in, out, app string) (float64, error) {
	dir, err := os.MkdirTemp("", "onceflow-bench-restore-rss-")
	if err != nil {
		return 0, fmt.Errorf("restore RSS: %w", err)
	}
	defer os.RemoveAll(dir)
	ch, err := startChild("restoring processor", logPath, append(stateProcessorArgv(exe, brokers, in, out, app, dir), "--log-level", "info"), false)
	if err != nil {
		return 0, err
	}
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	timeout := time.After(5 * time.Minute)
	for {
		b, err := os.ReadFile(logPath)
		if err != nil {
			ch.kill()
			return 0, fmt.Errorf("restore RSS: %w", err)
		}
		if bytes.Count(b, []byte(`msg="store restored"`)) >= statePartitions {
			break
		}
		select {
		case <-ctx.Done():
			ch.kill()
			return 0, fmt.Errorf("restore RSS: %w", ctx.Err())
		case <-ch.exited:
			return 0, fmt.Errorf("restore RSS: the processor exited before restoring (see %s): %w", logPath, ch.exitErr)
		case <-timeout:
			ch.kill()
			return 0, fmt.Errorf("restore RSS: not restored within 5 minutes (see %s)", logPath)
		case <-tick.C:
		}
	}
	u, err := ch.stop(60 * time.Second)
	if err != nil {
		return 0, fmt.Errorf("restore RSS: %w", err)
	}
	return u.rssMiB, nil
}

// stateProcessorArgv is the command line of the state benchmark's
// processor child: wordcount under exactly-once, instance bench-0.
func stateProcessorArgv(exe, brokers, in, out, app, stateDir string) []string {
	return []string{exe, "processor",
		"--workload", wlWordcount, "--guarantee", gExactlyOnce, "--commit-interval", "100ms",
		"--brokers", brokers, "--input", in, "--output", out, "--app-id", app,
		"--instance-id", "bench-0", "--state-dir", stateDir}
}
