// Package crashtest runs onceflow processors as separate OS processes so
// that tests can SIGKILL them at random moments and check, from the output
// alone, that the delivery guarantee held.
//
// A test binary becomes a worker when the environment variable EnvWorker is
// "1": its TestMain calls [IsWorker] and, if true, exits with [WorkerMain]
// instead of running the tests. [Fleet] starts, kills and stops such worker
// processes by re-executing the test binary.
//
// The worker runs a copy-and-transform topology: an input value
// "id=<n>;p=<partition>" becomes the output value "ID=<n>;P=<partition>"
// (see [Transform]), written to the same partition number of the output
// topic it was read from, so per-partition order can be checked end to end.
// Each output record carries the headers [HeaderInstance] and
// [HeaderSourceOffset], which name the instance that wrote it and the input
// offset it derives from; they are evidence when a check fails.
package crashtest

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/onceflow/onceflow/processor"
	"github.com/onceflow/onceflow/topology"
)

// Environment variables read by a worker process.
const (
	EnvWorker    = "ONCEFLOW_CRASH_WORKER" // "1" turns the test binary into a worker
	EnvBrokers   = "ONCEFLOW_CRASH_BROKERS"
	EnvApp       = "ONCEFLOW_CRASH_APP"
	EnvInstance  = "ONCEFLOW_CRASH_INSTANCE"
	EnvGuarantee = "ONCEFLOW_CRASH_GUARANTEE"
	EnvInput     = "ONCEFLOW_CRASH_INPUT"
	EnvOutput    = "ONCEFLOW_CRASH_OUTPUT"
	EnvWorkload  = "ONCEFLOW_CRASH_WORKLOAD"  // "copy" (default) or "sums"
	EnvStateDir  = "ONCEFLOW_CRASH_STATE_DIR" // the instance's state directory (sums)
)

// Workloads a worker runs.
const (
	WorkloadCopy = "copy"
	WorkloadSums = "sums"
)

// SumsStore is the store of the sums workload.
const SumsStore = "sums"

// restorePrefix starts the line a sums worker prints to stderr for every
// finished store restore; see ParseRestore.
const restorePrefix = "crashtest: restore "

// Headers of every output record.
const (
	HeaderInstance     = "crash.instance"
	HeaderSourceOffset = "crash.source-offset"
)

// Worker settings: the broker's minimum session timeout, and a transaction
// timeout short enough that a transaction left open by a killed worker does
// not stall its partitions for long.
const (
	SessionTimeout     = 6 * time.Second
	CommitInterval     = 100 * time.Millisecond
	StoreApplyInterval = time.Second
	TransactionTimeout = 5 * time.Second
)

// readyLine is what a worker prints to stdout once it handles SIGTERM.
const readyLine = "crashtest: worker ready"

// IsWorker reports whether this process was started as a crash-test worker.
func IsWorker() bool { return os.Getenv(EnvWorker) == "1" }

// InputValue is the input value of record id on partition p.
func InputValue(id, p int) string { return fmt.Sprintf("id=%d;p=%d", id, p) }

// Transform is the worker's transformation of an input value. It rejects
// values that are not of the form InputValue makes, or that were read from
// a partition other than the one they name.
func Transform(value string, partition int32) (string, error) {
	id, p, err := parse(value, "id=", ";p=")
	if err != nil {
		return "", fmt.Errorf("input value %q: %w", value, err)
	}
	if int32(p) != partition {
		return "", fmt.Errorf("input value %q was read from partition %d", value, partition)
	}
	return fmt.Sprintf("ID=%d;P=%d", id, p), nil
}

// ParseOutput returns the id and partition named by an output value.
func ParseOutput(value string) (id, partition int, err error) {
	id, partition, err = parse(value, "ID=", ";P=")
	if err != nil {
		return 0, 0, fmt.Errorf("output value %q: %w", value, err)
	}
	return id, partition, nil
}

func parse(value, idPrefix, partSep string) (id, partition int, err error) {
	rest, ok := strings.CutPrefix(value, idPrefix)
	if !ok {
		return 0, 0, fmt.Errorf("does not start with %q", idPrefix)
	}
	ids, ps, ok := strings.Cut(rest, partSep)
	if !ok {
		return 0, 0, fmt.Errorf("has no %q", partSep)
	}
	if id, err = strconv.Atoi(ids); err != nil {
		return 0, 0, fmt.Errorf("bad id: %w", err)
	}
	if partition, err = strconv.Atoi(ps); err != nil {
		return 0, 0, fmt.Errorf("bad partition: %w", err)
	}
	return id, partition, nil
}

// Topology builds the copy-and-transform topology from input to output;
// instance (the worker writes its instance id and pid) goes into every
// output record's HeaderInstance.
func Topology(input, output, instance string) (*topology.Topology, error) {
	b := topology.NewBuilder()
	topology.AddSource(b, "in", topology.StringSerde(), topology.StringSerde(), input)
	topology.AddProcessor(b, "transform", func() topology.Processor[string, string, string, string] {
		return topology.ProcessFunc(func(ctx topology.Context[string, string], r topology.Record[string, string]) error {
			v, err := Transform(r.Value, r.Partition)
			if err != nil {
				return err
			}
			r.Value = v
			r.Headers = append(r.Headers,
				topology.Header{Key: HeaderInstance, Value: []byte(instance)},
				topology.Header{Key: HeaderSourceOffset, Value: strconv.AppendInt(nil, r.Offset, 10)},
			)
			return ctx.Forward(r)
		})
	}, "in")
	// The output goes to the partition its value names, the input's
	// partition; a value that names none is sent to -1, which the runtime
	// rejects, so the worker fails loudly instead of misplacing it.
	topology.AddSinkWithPartitioner(b, "out", output, topology.StringSerde(), topology.StringSerde(),
		func(_ string, _ string, value string, n int32) int32 {
			_, p, err := ParseOutput(value)
			if err != nil || p < 0 || p >= int(n) {
				return -1
			}
			return int32(p)
		}, "transform")
	return b.Build()
}

// WorkerMain runs one processor instance configured by the environment
// until SIGTERM (or SIGINT), which is a graceful shutdown. It returns the
// process exit code: 0 after a clean shutdown, 1 if the processor failed
// (the error is printed to stderr), 2 on bad configuration.
func WorkerMain() int {
	instance := os.Getenv(EnvInstance)
	fail := func(code int, err error) int {
		fmt.Fprintf(os.Stderr, "crash worker %s: %v\n", instance, err)
		return code
	}
	var missing []string
	for _, k := range []string{EnvBrokers, EnvApp, EnvInstance, EnvGuarantee, EnvInput, EnvOutput} {
		if os.Getenv(k) == "" {
			missing = append(missing, k)
		}
	}
	if len(missing) > 0 {
		return fail(2, fmt.Errorf("environment variables not set: %s", strings.Join(missing, ", ")))
	}
	g, err := processor.ParseGuarantee(os.Getenv(EnvGuarantee))
	if err != nil {
		return fail(2, err)
	}
	var topo *topology.Topology
	var extra []processor.Opt
	switch w := os.Getenv(EnvWorkload); w {
	case "", WorkloadCopy:
		topo, err = Topology(os.Getenv(EnvInput), os.Getenv(EnvOutput), fmt.Sprintf("%s pid %d", instance, os.Getpid()))
	case WorkloadSums:
		if os.Getenv(EnvStateDir) == "" {
			return fail(2, fmt.Errorf("%s is required by the sums workload", EnvStateDir))
		}
		topo, err = SumsTopology(os.Getenv(EnvInput), os.Getenv(EnvOutput))
		extra = append(extra, processor.StateDir(os.Getenv(EnvStateDir)),
			// Applies every second instead of every 5 s, so that kills
			// land during applies being collected in parts and after
			// the checkpoints they write.
			processor.StoreApplyInterval(StoreApplyInterval),
			processor.OnRestore(func(r processor.RestoreProgress) {
				if r.Done {
					fmt.Fprintf(os.Stderr, "%sstore=%s partition=%d from=%d to=%d records=%d\n", restorePrefix, r.Store, r.Partition, r.From, r.To, r.Records)
				}
			}))
	default:
		return fail(2, fmt.Errorf("%s=%q: want %s or %s", EnvWorkload, w, WorkloadCopy, WorkloadSums))
	}
	if err != nil {
		return fail(2, fmt.Errorf("build topology: %w", err))
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))
	p, err := processor.New(topo, append([]processor.Opt{
		processor.Brokers(strings.Split(os.Getenv(EnvBrokers), ",")...),
		processor.ApplicationID(os.Getenv(EnvApp)),
		processor.InstanceID(instance),
		processor.WithGuarantee(g),
		processor.SessionTimeout(SessionTimeout),
		processor.CommitInterval(CommitInterval),
		processor.TransactionTimeout(TransactionTimeout),
		processor.Logger(log),
	}, extra...)...)
	if err != nil {
		return fail(2, err)
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	// From here on SIGTERM is a graceful shutdown; the fleet waits for this
	// line before it sends one.
	fmt.Println(readyLine)
	log.Info("crash worker starting", "pid", os.Getpid(), "guarantee", g.String())
	err = p.Run(ctx)
	st := p.Stats()
	log.Info("crash worker stopped", "processed", st.Processed, "commits", st.Commits, "aborts", st.Aborts)
	if err != nil {
		return fail(1, fmt.Errorf("run: %w", err))
	}
	if ctx.Err() == nil {
		return fail(1, errors.New("run returned nil before shutdown was requested"))
	}
	return 0
}
