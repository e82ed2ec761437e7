package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"runtime"
	"strings"
	"time"
)

// ingestCmd measures what the latency phase's input costs the host with no
// system running: the paced producer writes rate records/s for a while
// into a fresh topic that nobody reads, and the command reports the CPU
// its own process (user and system time) and the broker used. That load
// shares the host with the system being measured: at half of onceflow's
// maximum it takes a quarter of two cores or more, and at Kafka Streams'
// rates, a tenth of those, less but not nothing, since much of it is paid
// per request (see pacedTick).
func ingestCmd(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("bench ingest", flag.ContinueOnError)
	brokers := fs.String("brokers", os.Getenv("KAFKA_BROKERS"), "seed brokers (default $KAFKA_BROKERS, else a local broker is started)")
	pidList := fs.String("broker-pids", "", "comma-separated process ids of the --brokers broker (default: those of the broker this command starts)")
	rate := fs.Float64("rate", 500_000, "records/s")
	dur := fs.Duration("duration", 15*time.Second, "how long to produce")
	partitions := fs.Int("partitions", 4, "partitions of the topic")
	keys := fs.Int("keys", 100_000, "distinct keys")
	valueBytes := fs.Int("value-bytes", 100, "record value size")
	if err := fs.Parse(args); err != nil {
		return errUsage
	}
	switch {
	case *rate <= 0:
		return fmt.Errorf("ingest: --rate must be positive, got %v", *rate)
	case *dur <= 0:
		return fmt.Errorf("ingest: --duration must be positive, got %v", *dur)
	case *partitions < 1 || *partitions > maxPacedPartitions:
		return fmt.Errorf("ingest: --partitions must be 1 to %d, got %d", maxPacedPartitions, *partitions)
	case *keys < 1:
		return fmt.Errorf("ingest: --keys must be at least 1, got %d", *keys)
	case *valueBytes < 0:
		return fmt.Errorf("ingest: --value-bytes must not be negative, got %d", *valueBytes)
	}
	if u, _ := selfCPUTimes(); u < 0 {
		return errors.New("ingest: needs Linux, to read CPU times")
	}
	pids, err := parsePIDs(*pidList)
	if err != nil {
		return fmt.Errorf("ingest: %w", err)
	}
	if *brokers == "" {
		if len(pids) > 0 {
			return errors.New("ingest: --broker-pids needs --brokers")
		}
		lb, seeds, err := startRepoBroker(ctx)
		if err != nil {
			return err
		}
		defer lb.stop()
		*brokers, pids = seeds, lb.pids
	}
	seeds := strings.Split(*brokers, ",")
	topic := randomName("bench-ingest-")
	adm, err := newAdmin(seeds)
	if err != nil {
		return err
	}
	defer adm.close()
	defer func() { _ = adm.cleanupSoon("", "", topic) }()
	if err := adm.createTopics(ctx, int32(*partitions), topic); err != nil {
		return err
	}
	// franz-go's producer waits out the new partitions' leader elections;
	// the paced producer's raw requests would fail on them.
	const first = 1000
	if err := loadInput(ctx, seeds, topic, first, *keys, *valueBytes, func(int64) {}); err != nil {
		return fmt.Errorf("ingest: %w", err)
	}
	user0, sys0 := selfCPUTimes()
	broker0, t0 := pidsCPUSeconds(pids), time.Now()
	n, err := pacedProduce(ctx, seeds, topic, *rate, *dur, first, *keys, *valueBytes)
	wall := time.Since(t0).Seconds()
	user1, sys1 := selfCPUTimes()
	broker1 := pidsCPUSeconds(pids)
	if err != nil {
		return fmt.Errorf("ingest: %w", err)
	}
	user, sys := (user1-user0)/wall, (sys1-sys0)/wall
	broker := "unknown (no --broker-pids)"
	together := user + sys
	if broker0 >= 0 && broker1 >= 0 {
		b := (broker1 - broker0) / wall
		broker = fmt.Sprintf("%.2f cores (%.2f µs per record)", b, (broker1-broker0)/float64(n)*1e6)
		together += b
	}
	fmt.Printf("ingest: %d records of %d B at %.0f records/s over %.1fs (%s): load generator %.2f cores (user %.2f, system %.2f; %.2f µs per record), broker %s; together %.2f of %d cores\n",
		n, *valueBytes, float64(n)/wall, wall, topic, user+sys, user, sys, (user+sys)*wall/float64(n)*1e6, broker, together, runtime.NumCPU())
	return nil
}
