package main

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
)

// TestResultReader checks that the reader counts the committed results of
// every partition exactly once, skips aborted ones, and times exactly the
// results stamped at or after the mark.
func TestResultReader(t *testing.T) {
	const partitions = 4
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(partitions, "out"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	seeds := c.ListenAddrs()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	cl, err := kgo.NewClient(kgo.SeedBrokers(seeds...), kgo.TransactionalID("test-writer"),
		kgo.RecordPartitioner(kgo.ManualPartitioner()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	mark := time.Now().Truncate(time.Millisecond)
	// write produces n records to every partition in one transaction,
	// stamped at ts, and commits or aborts it.
	write := func(n int, ts time.Time, commit bool) {
		t.Helper()
		if err := cl.BeginTransaction(); err != nil {
			t.Fatal(err)
		}
		for p := range int32(partitions) {
			for i := range n {
				r := &kgo.Record{Topic: "out", Partition: p, Timestamp: ts, Value: fmt.Appendf(nil, "%d-%d", p, i)}
				if err := cl.ProduceSync(ctx, r).FirstErr(); err != nil {
					t.Fatal(err)
				}
			}
		}
		if err := cl.EndTransaction(ctx, kgo.TransactionEndTry(commit)); err != nil {
			t.Fatal(err)
		}
	}
	write(5, mark.Add(-time.Second), true) // before the mark: counted, not timed
	write(7, mark.Add(-time.Second), false)
	write(3, mark, true) // at the mark: counted and timed
	write(2, mark.Add(time.Second), true)

	const want = partitions * (5 + 3 + 2)
	rr, err := startResultReader(seeds, "out", partitions, want)
	if err != nil {
		t.Fatal(err)
	}
	defer rr.close()
	rr.startLatency(mark)
	ch := &child{name: "test", exited: make(chan struct{})}
	if err := rr.waitFor(ctx, want, ch, 30*time.Second, func(int64) {}); err != nil {
		t.Fatal(err)
	}
	// A result counted twice, or a control record counted as a result,
	// may show only after the target: write one more committed record per
	// partition, wait for those, and check the exact total.
	write(1, mark.Add(2*time.Second), true)
	if err := rr.waitFor(ctx, want+partitions, ch, 30*time.Second, func(int64) {}); err != nil {
		t.Fatal(err)
	}
	if got := rr.count.Load(); got != want+partitions {
		t.Fatalf("counted %d results, want %d", got, want+partitions)
	}
	first, target, err := rr.snapshot()
	if err != nil || first.IsZero() || target.IsZero() {
		t.Fatalf("snapshot: first %v, target %v, err %v", first, target, err)
	}
	if got, _, _, _ := rr.latencySummary(); got != partitions*(3+2+1) {
		t.Fatalf("timed %d results, want %d", got, partitions*(3+2+1))
	}
}
