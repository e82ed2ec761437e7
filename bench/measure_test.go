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
	seeds := fakeOut(t, partitions)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	mark := time.Now().Truncate(time.Millisecond)
	write := txnWriter(ctx, t, seeds, partitions)
	write(5, mark.Add(-time.Second), true) // before the mark: counted, not timed
	write(7, mark.Add(-time.Second), false)
	write(3, mark, true) // at the mark: counted and timed
	write(2, mark.Add(time.Second), true)

	const want = partitions * (5 + 3 + 2)
	rr, err := startResultReader(seeds, "out", partitions, partitions, want)
	if err != nil {
		t.Fatal(err)
	}
	defer rr.close()
	rr.startLatency(mark)
	ch := &child{name: "test", exited: make(chan struct{})}
	countExactly(ctx, t, rr, ch, want, partitions, func() { write(1, mark.Add(2*time.Second), true) })
	first, target, err := rr.snapshot()
	if err != nil || first.IsZero() || target.IsZero() {
		t.Fatalf("snapshot: first %v, target %v, err %v", first, target, err)
	}
	if got, _, _, _ := rr.latencySummary(); got != partitions*(3+2+1) {
		t.Fatalf("timed %d results, want %d", got, partitions*(3+2+1))
	}
	// A second phase times only what is stamped from its own mark.
	rr.startLatency(mark.Add(3 * time.Second))
	write(4, mark.Add(3*time.Second), true)
	write(2, mark.Add(2*time.Second), true) // before it: counted, not timed
	if err := rr.waitFor(ctx, want+partitions*(1+4+2), ch, 30*time.Second, func(int64) {}); err != nil {
		t.Fatal(err)
	}
	if got, _, _, _ := rr.latencySummary(); got != partitions*4 {
		t.Fatalf("second phase timed %d results, want %d", got, partitions*4)
	}
}

// fakeOut starts a kfake cluster with a topic "out" of the given
// partitions, closed when the test ends, and returns its addresses.
func fakeOut(t *testing.T, partitions int) []string {
	t.Helper()
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(int32(partitions), "out"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return c.ListenAddrs()
}

// txnWriter returns a function that produces n records to every partition
// of "out" in one transaction, stamped at ts, and commits or aborts it.
func txnWriter(ctx context.Context, t *testing.T, seeds []string, partitions int) func(n int, ts time.Time, commit bool) {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(seeds...), kgo.TransactionalID("test-writer"),
		kgo.RecordPartitioner(kgo.ManualPartitioner()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cl.Close)
	return func(n int, ts time.Time, commit bool) {
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
}

// TestResultReaderTimesSomePartitions checks that with one partition of
// four timed, only its results are timed, that the other partitions'
// clients stop reading while the latency phase runs, and that all results
// are counted once it ends.
func TestResultReaderTimesSomePartitions(t *testing.T) {
	const partitions = 4
	seeds := fakeOut(t, partitions)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	write := txnWriter(ctx, t, seeds, partitions)
	ch := &child{name: "test", exited: make(chan struct{})}

	rr, err := startResultReader(seeds, "out", partitions, 1, 100)
	if err != nil {
		t.Fatal(err)
	}
	defer rr.close()
	mark := time.Now().Truncate(time.Millisecond)
	write(1, mark.Add(-time.Second), true)
	if err := rr.waitFor(ctx, partitions, ch, 30*time.Second, func(int64) {}); err != nil {
		t.Fatal(err)
	}
	// Every client has returned from a poll and is waiting in its next.
	rr.startLatency(mark)
	// waitTimed waits until the reader timed want results.
	waitTimed := func(want int) {
		t.Helper()
		tick := time.NewTicker(2 * time.Millisecond)
		defer tick.Stop()
		for {
			n, _, _, _ := rr.latencySummary()
			if n > want {
				t.Fatalf("timed %d results, want %d", n, want)
			}
			if n == want {
				return
			}
			select {
			case <-ctx.Done():
				t.Fatalf("timed %d results, waiting for %d: %v", n, want, ctx.Err())
			case <-tick.C:
			}
		}
	}
	// An untimed client returns from the poll it had under way, with as
	// many of these transactions as had reached it, then holds; the timed
	// partition sees them all.
	write(3, mark, true)
	waitTimed(3)
	write(2, mark.Add(time.Second), true)
	waitTimed(5)
	write(4, mark.Add(2*time.Second), true)
	waitTimed(9)
	write(1, mark.Add(3*time.Second), true)
	waitTimed(10)
	rr.mu.Lock()
	held := rr.heldPolls
	rr.mu.Unlock()
	if held > partitions-1 {
		t.Fatalf("the untimed clients returned from %d polls while held, want at most one each (%d)", held, partitions-1)
	}
	rr.endLatency()
	const want = partitions * (1 + 3 + 2 + 4 + 1)
	countExactly(ctx, t, rr, ch, want, partitions, func() { write(1, mark.Add(4*time.Second), true) })
	// The one more result per partition is timed on the first only.
	waitTimed(3 + 2 + 4 + 1 + 1)
}

// countExactly waits until rr counted want results. A result counted
// twice, or a control record counted as a result, may show only after
// that: it then calls writeOne, which must commit one more record to
// every partition, waits for those and checks the exact total.
func countExactly(ctx context.Context, t *testing.T, rr *resultReader, ch *child, want int64, partitions int, writeOne func()) {
	t.Helper()
	if err := rr.waitFor(ctx, want, ch, 30*time.Second, func(int64) {}); err != nil {
		t.Fatal(err)
	}
	writeOne()
	total := want + int64(partitions)
	if err := rr.waitFor(ctx, total, ch, 30*time.Second, func(int64) {}); err != nil {
		t.Fatal(err)
	}
	if got := rr.count.Load(); got != total {
		t.Fatalf("counted %d results, want %d", got, total)
	}
}
