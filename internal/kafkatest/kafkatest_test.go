package kafkatest_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/onceflow/onceflow/internal/kafkatest"
)

// TestTransactionVisibility checks the broker (real or kfake) the rest of the
// suite stands on: an aborted transaction is invisible to read_committed
// readers and visible to read_uncommitted ones, a committed one to both.
func TestTransactionVisibility(t *testing.T) {
	const n = 10_000
	seeds := kafkatest.Brokers(t)
	topic := kafkatest.Topic(t, seeds, 3, nil)
	cl := kafkatest.Client(t, seeds,
		kgo.TransactionalID(kafkatest.UniqueName(t, "txn")),
		kgo.DefaultProduceTopic(topic),
		kgo.RecordPartitioner(kgo.ManualPartitioner()),
	)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	runTxn := func(prefix string, commit kgo.TransactionEndTry) {
		t.Helper()
		if err := cl.BeginTransaction(); err != nil {
			t.Fatalf("begin: %v", err)
		}
		err := kafkatest.ProduceWith(ctx, cl, topic, n, func(i int) *kgo.Record {
			return &kgo.Record{Partition: int32(i % 3), Value: fmt.Appendf(nil, "%s-%05d", prefix, i)}
		})
		if err != nil {
			t.Fatal(err)
		}
		if err := cl.EndTransaction(ctx, commit); err != nil {
			t.Fatalf("end transaction (commit=%v): %v", commit, err)
		}
	}
	runTxn("aborted", kgo.TryAbort)
	runTxn("committed", kgo.TryCommit)

	committed := kafkatest.ReadAll(t, seeds, topic, kafkatest.ReadCommitted)
	if len(committed) != n {
		t.Fatalf("read_committed saw %d records, want %d", len(committed), n)
	}
	// Per partition, the committed records arrive in production order.
	next := map[int32]int{0: 0, 1: 1, 2: 2}
	for _, r := range committed {
		want := fmt.Sprintf("committed-%05d", next[r.Partition])
		if string(r.Value) != want {
			t.Fatalf("partition %d offset %d: got %q, want %q", r.Partition, r.Offset, r.Value, want)
		}
		next[r.Partition] += 3
	}

	all := kafkatest.ReadAll(t, seeds, topic, kafkatest.ReadUncommitted)
	if len(all) != 2*n {
		t.Fatalf("read_uncommitted saw %d records, want %d", len(all), 2*n)
	}
	aborted := 0
	for _, r := range all {
		if string(r.Value[:8]) == "aborted-" {
			aborted++
		}
	}
	if aborted != n {
		t.Fatalf("read_uncommitted saw %d aborted records, want %d", aborted, n)
	}
}
