package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"strings"
	"sync/atomic"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
)

// rawpipeCmd is the limit: it consumes the input topic from its start and
// produces every record, unchanged (key, value, timestamp, partition), to
// the output topic. No group, no offset commits, no transactions, no
// processing: what franz-go can move through this broker. It prints READY
// on stdout once its clients exist and runs until ctx is cancelled.
func rawpipeCmd(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("bench rawpipe", flag.ContinueOnError)
	var brokers, input, output string
	fs.StringVar(&brokers, "brokers", os.Getenv("KAFKA_BROKERS"), "seed brokers, comma-separated")
	fs.StringVar(&input, "input", "", "input topic")
	fs.StringVar(&output, "output", "", "output topic")
	if err := fs.Parse(args); err != nil {
		return errUsage
	}
	if brokers == "" || input == "" || output == "" {
		return errors.New("rawpipe: --brokers, --input and --output are required")
	}
	seeds := strings.Split(brokers, ",")
	consumer, err := kgo.NewClient(
		kgo.SeedBrokers(seeds...),
		kgo.ConsumeTopics(input),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
	)
	if err != nil {
		return fmt.Errorf("rawpipe: consumer: %w", err)
	}
	defer consumer.Close()
	producer, err := kgo.NewClient(
		kgo.SeedBrokers(seeds...),
		kgo.DefaultProduceTopic(output),
		kgo.RecordPartitioner(kgo.ManualPartitioner()),
	)
	if err != nil {
		return fmt.Errorf("rawpipe: producer: %w", err)
	}
	defer producer.Close()

	var failed atomic.Pointer[error]
	onDone := func(r *kgo.Record, err error) {
		if err != nil && !errors.Is(err, context.Canceled) {
			failed.CompareAndSwap(nil, &err)
		}
	}
	fmt.Println("READY")
	var piped int64
	for ctx.Err() == nil {
		if p := failed.Load(); p != nil {
			return fmt.Errorf("rawpipe: produce: %w", *p)
		}
		fetches := consumer.PollFetches(ctx)
		if ctx.Err() != nil {
			break
		}
		var ferr error
		fetches.EachError(func(t string, p int32, err error) {
			ferr = fmt.Errorf("rawpipe: fetch %s[%d]: %w", t, p, err)
		})
		if ferr != nil {
			return ferr
		}
		fetches.EachRecord(func(r *kgo.Record) {
			piped++
			producer.Produce(ctx, &kgo.Record{
				Key:       r.Key,
				Value:     r.Value,
				Headers:   r.Headers,
				Timestamp: r.Timestamp,
				Partition: r.Partition,
			}, onDone)
		})
	}
	flushCtx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := producer.Flush(flushCtx); err != nil {
		return fmt.Errorf("rawpipe: flush: %w", err)
	}
	fmt.Fprintf(os.Stderr, "rawpipe: stopped after piping %d records\n", piped)
	return nil
}
