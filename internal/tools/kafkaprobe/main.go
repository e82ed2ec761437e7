// Command kafkaprobe waits until a Kafka cluster answers metadata with the
// expected number of brokers and can commit a transaction. The local broker
// script (scripts/kafka-local.sh) runs it after starting the brokers, so that
// "up" returns only once tests can use the cluster.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "kafkaprobe:", err)
		os.Exit(1)
	}
}

func run() error {
	brokers := flag.String("brokers", "", "comma-separated seed brokers (required)")
	nodes := flag.Int("nodes", 1, "number of brokers that must be present")
	timeout := flag.Duration("timeout", 120*time.Second, "how long to wait for the cluster")
	flag.Parse()
	if *brokers == "" {
		return errors.New("-brokers is required")
	}
	if *nodes < 1 {
		return fmt.Errorf("-nodes must be at least 1, got %d", *nodes)
	}
	ctx, cancel := context.WithTimeout(context.Background(), *timeout)
	defer cancel()

	seeds := strings.Split(*brokers, ",")
	if err := waitForBrokers(ctx, seeds, *nodes); err != nil {
		return err
	}
	return commitProbeTransaction(ctx, seeds, *nodes)
}

// waitForBrokers polls metadata until the expected number of brokers is
// registered.
func waitForBrokers(ctx context.Context, seeds []string, nodes int) error {
	cl, err := kgo.NewClient(kgo.SeedBrokers(seeds...))
	if err != nil {
		return fmt.Errorf("create client: %w", err)
	}
	defer cl.Close()
	adm := kadm.NewClient(cl)
	var last error
	for {
		md, err := adm.BrokerMetadata(ctx)
		switch {
		case err != nil:
			last = err
		case len(md.Brokers) < nodes:
			last = fmt.Errorf("%d of %d brokers registered", len(md.Brokers), nodes)
		default:
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("cluster at %s not ready: %w", strings.Join(seeds, ","), last)
		case <-time.After(250 * time.Millisecond):
		}
	}
}

// commitProbeTransaction creates a throwaway topic, commits one record in a
// transaction, and deletes the topic again. The first transaction on a new
// cluster also creates __transaction_state, which is what makes it slow.
func commitProbeTransaction(ctx context.Context, seeds []string, nodes int) error {
	topic := fmt.Sprintf("__onceflow_probe_%d", time.Now().UnixNano())
	cl, err := kgo.NewClient(
		kgo.SeedBrokers(seeds...),
		kgo.TransactionalID(topic),
		kgo.DefaultProduceTopic(topic),
	)
	if err != nil {
		return fmt.Errorf("create transactional client: %w", err)
	}
	defer cl.Close()
	adm := kadm.NewClient(cl)
	if _, err := adm.CreateTopic(ctx, 1, int16(nodes), nil, topic); err != nil {
		return fmt.Errorf("create probe topic: %w", err)
	}
	defer func() {
		dctx, dcancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer dcancel()
		_, _ = adm.DeleteTopics(dctx, topic)
	}()
	if err := cl.BeginTransaction(); err != nil {
		return fmt.Errorf("begin transaction: %w", err)
	}
	if err := cl.ProduceSync(ctx, kgo.StringRecord("probe")).FirstErr(); err != nil {
		return fmt.Errorf("produce in transaction: %w", err)
	}
	if err := cl.EndTransaction(ctx, kgo.TryCommit); err != nil {
		return fmt.Errorf("commit transaction: %w", err)
	}
	return nil
}
