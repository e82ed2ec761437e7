package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"runtime/pprof"
	"strings"
	"time"

	"github.com/onceflow/onceflow/processor"
	"github.com/onceflow/onceflow/topology"
	"github.com/twmb/franz-go/pkg/kgo"
)

// processorCmd runs one onceflow processor instance until ctx is cancelled
// (SIGTERM or SIGINT), then shuts it down gracefully. It prints READY on
// stdout right before Run.
func processorCmd(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("bench processor", flag.ContinueOnError)
	var (
		workload, guarantee, brokers, input, output, appID, instanceID, stateDir, cpuprofile, memprofile string
		interval                                                                                         time.Duration
	)
	fs.StringVar(&workload, "workload", wlCopy, "copy or wordcount")
	fs.StringVar(&guarantee, "guarantee", gExactlyOnce, "exactly-once, at-least-once or at-most-once")
	fs.DurationVar(&interval, "commit-interval", 100*time.Millisecond, "commit interval")
	fs.StringVar(&brokers, "brokers", os.Getenv("KAFKA_BROKERS"), "seed brokers, comma-separated")
	fs.StringVar(&input, "input", "", "input topic")
	fs.StringVar(&output, "output", "", "output topic")
	fs.StringVar(&appID, "app-id", "", "application id")
	fs.StringVar(&instanceID, "instance-id", "bench-0", "instance id")
	fs.StringVar(&stateDir, "state-dir", "", "state directory (default: the processor's)")
	fs.StringVar(&cpuprofile, "cpuprofile", "", "") // hidden: write a CPU profile of the whole run
	fs.StringVar(&memprofile, "memprofile", "", "") // hidden: write an allocation profile at exit
	reqTimes := fs.Bool("request-times", false, "") // hidden: print each request kind's round-trip times at exit
	control := fs.Bool("control", false, "")        // hidden: answer the suite's mark and report lines on stdin on fd 3 (commitReporter)
	workers := fs.Int("workers", 1, "processing threads (processor.Workers)")
	var markerWait optDuration
	fs.Var(&markerWait, "marker-wait", "processor.MarkerWait (default: the processor's own)")
	var logLevel slog.Level = slog.LevelWarn
	fs.TextVar(&logLevel, "log-level", slog.LevelWarn, "") // hidden: the processor's log level
	fs.Usage = func() {
		fmt.Fprintln(fs.Output(), "usage: go run ./bench processor --workload W --guarantee G --commit-interval D --brokers B --input T --output T --app-id A [--instance-id I] [--state-dir S] [--workers N]")
		fs.VisitAll(func(f *flag.Flag) {
			if f.Usage != "" {
				fmt.Fprintf(fs.Output(), "  --%s\t%s\n", f.Name, f.Usage)
			}
		})
	}
	if err := fs.Parse(args); err != nil {
		return errUsage
	}
	g, err := processor.ParseGuarantee(guarantee)
	if err != nil {
		return err
	}
	if brokers == "" || input == "" || output == "" || appID == "" {
		return errors.New("processor: --brokers, --input, --output and --app-id are required")
	}
	topo, err := benchTopology(workload, input, output)
	if err != nil {
		return err
	}
	opts := []processor.Opt{
		processor.Brokers(strings.Split(brokers, ",")...),
		processor.ApplicationID(appID),
		processor.InstanceID(instanceID),
		processor.WithGuarantee(g),
		processor.CommitInterval(interval),
		processor.Workers(*workers),
		processor.Logger(slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: logLevel}))),
	}
	if stateDir != "" {
		opts = append(opts, processor.StateDir(stateDir))
	}
	if markerWait.set {
		opts = append(opts, processor.MarkerWait(markerWait.d))
	}
	var rt requestTimes
	if *reqTimes {
		opts = append(opts, processor.KgoOpts(kgo.WithHooks(&rt)))
	}
	p, err := processor.New(topo, opts...)
	if err != nil {
		return fmt.Errorf("processor: %w", err)
	}
	if cpuprofile != "" {
		f, err := os.Create(cpuprofile)
		if err != nil {
			return fmt.Errorf("processor: cpu profile: %w", err)
		}
		if err := pprof.StartCPUProfile(f); err != nil {
			f.Close()
			return fmt.Errorf("processor: cpu profile: %w", err)
		}
		defer func() {
			pprof.StopCPUProfile()
			f.Close()
		}()
	}
	if *control {
		go serveCommitReports(os.Stdin, os.NewFile(3, "control"), p.Stats, interval)
	}
	fmt.Println("READY")
	start := time.Now()
	err = p.Run(ctx)
	st := p.Stats()
	wall := time.Since(start)
	if memprofile != "" {
		if perr := writeAllocProfile(memprofile); perr != nil {
			err = errors.Join(err, perr)
		}
	}
	perCommit := func(d time.Duration) float64 { return ms(d) / float64(max(st.Commits, 1)) }
	fmt.Fprintf(os.Stderr, "processor: stopped after %s: processed=%d commits=%d aborts=%d commit_time=%s (%.0f%% of wall time, %.1f ms per commit, of which flushing %.1f ms; p99 %.1f ms, max %.1f ms; markers written after p99 %.1f ms) poll_time=%s (%.0f%%) err=%v\n",
		wall.Round(time.Millisecond), st.Processed, st.Commits, st.Aborts, st.CommitTime.Round(time.Millisecond),
		100*st.CommitTime.Seconds()/wall.Seconds(), perCommit(st.CommitTime), perCommit(st.FlushTime),
		ms(st.CommitTimes.Quantile(0.99)), ms(st.MaxCommitTime), ms(st.MarkerTimes.Quantile(0.99)),
		st.PollTime.Round(time.Millisecond), 100*st.PollTime.Seconds()/wall.Seconds(), err)
	if *reqTimes {
		fmt.Fprintf(os.Stderr, "processor: requests:%s\n", rt.summary())
	}
	if err != nil {
		return fmt.Errorf("processor: run: %w", err)
	}
	return nil
}

// benchTopology builds the workload's topology. copy forwards every record
// unchanged; wordcount counts records per key in the store "counts" and
// emits (key, 8-byte big-endian count) for every input record.
func benchTopology(workload, input, output string) (*topology.Topology, error) {
	b := topology.NewBuilder()
	switch workload {
	case wlCopy:
		topology.AddSource(b, "in", topology.BytesSerde(), topology.BytesSerde(), input)
		topology.AddProcessor(b, "copy", func() topology.Processor[[]byte, []byte, []byte, []byte] {
			return topology.ProcessFunc(func(ctx topology.Context[[]byte, []byte], r topology.Record[[]byte, []byte]) error {
				return ctx.Forward(r)
			})
		}, "in")
		topology.AddSink(b, "out", output, topology.BytesSerde(), topology.BytesSerde(), "copy")
	case wlWordcount:
		topology.AddSource(b, "in", topology.StringSerde(), topology.BytesSerde(), input)
		topology.AddProcessor(b, "count", func() topology.Processor[string, []byte, string, int64] {
			return topology.ProcessFunc(func(ctx topology.Context[string, int64], r topology.Record[string, []byte]) error {
				counts, err := topology.KeyValueStoreOf[string, int64](ctx, "counts")
				if err != nil {
					return err
				}
				n, _, err := counts.Get(r.Key)
				if err != nil {
					return err
				}
				n++
				if err := counts.Put(r.Key, n); err != nil {
					return err
				}
				return ctx.Forward(topology.Record[string, int64]{Key: r.Key, Value: n, Timestamp: r.Timestamp, Headers: r.Headers})
			})
		}, "in")
		topology.AddKeyValueStore(b, "counts", topology.StringSerde(), topology.Int64Serde(), "count")
		topology.AddSink(b, "out", output, topology.StringSerde(), topology.Int64Serde(), "count")
	default:
		return nil, fmt.Errorf("processor: unknown workload %q (want copy or wordcount)", workload)
	}
	topo, err := b.Build()
	if err != nil {
		return nil, fmt.Errorf("processor: build topology: %w", err)
	}
	return topo, nil
}

// writeAllocProfile writes the allocations sampled since the process
// started (pprof's allocs profile: go tool pprof -sample_index=alloc_space).
func writeAllocProfile(path string) error {
	f, err := os.Create(path)
	if err != nil {
		return fmt.Errorf("processor: allocation profile: %w", err)
	}
	if err := pprof.Lookup("allocs").WriteTo(f, 0); err != nil {
		f.Close()
		return fmt.Errorf("processor: allocation profile: %w", err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("processor: allocation profile: %w", err)
	}
	return nil
}
