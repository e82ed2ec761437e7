package processor

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/onceflow/onceflow/internal/kafkatest"
)

// describeTxns answers the cluster's DescribeTransactions requests with
// the state (or error code) that answer returns for the n-th request, and
// counts the requests and the transactional IDs they asked about.
type describeTxns struct {
	asked atomic.Int32
	ids   chan string
}

func controlDescribeTxns(c *kfake.Cluster, answer func(n int32) (string, int16)) *describeTxns {
	d := &describeTxns{ids: make(chan string, 64)}
	c.ControlKey(int16(kmsg.DescribeTransactions), func(kreq kmsg.Request) (kmsg.Response, error, bool) {
		c.KeepControl()
		req := kreq.(*kmsg.DescribeTransactionsRequest)
		resp := req.ResponseKind().(*kmsg.DescribeTransactionsResponse)
		resp.SetVersion(req.Version)
		n := d.asked.Add(1)
		state, code := answer(n)
		for _, id := range req.TransactionalIDs {
			d.ids <- id
			st := kmsg.NewDescribeTransactionsResponseTransactionState()
			st.TransactionalID, st.State, st.ErrorCode = id, state, code
			resp.TransactionStates = append(resp.TransactionStates, st)
		}
		return resp, nil, true
	})
	return d
}

func newWatchForTest(t *testing.T, seeds []string, wait, fallback time.Duration, log *slog.Logger) *markerWatch {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(seeds...))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cl.Close)
	s := newSender(cl)
	t.Cleanup(s.stop)
	m := &markerWatch{cl: cl, send: s, txnID: "watched", wait: wait, fallback: fallback, log: log, times: &histCounter{}}
	t.Cleanup(m.stop)
	return m
}

// heldBy returns the release channel of the sender's current hold.
func heldBy(s *sender) (chan struct{}, time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.released, s.holdUntil
}

func waitReleased(t *testing.T, ch chan struct{}, what string) {
	t.Helper()
	select {
	case <-ch:
	case <-time.After(30 * time.Second):
		t.Fatalf("%s: the hold was not released", what)
	}
}

// TestMarkerWatchReleasesWhenComplete checks that a watch asks about the
// worker's transactional ID until the coordinator no longer reports it in
// PrepareCommit or PrepareAbort, then ends the hold long before its limit.
func TestMarkerWatchReleasesWhenComplete(t *testing.T) {
	c, err := kfake.NewCluster(kfake.NumBrokers(1))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	states := []string{"PrepareCommit", "PrepareCommit", "PrepareAbort", "CompleteCommit"}
	d := controlDescribeTxns(c, func(n int32) (string, int16) {
		return states[min(int(n), len(states))-1], 0
	})
	m := newWatchForTest(t, c.ListenAddrs(), time.Hour, time.Hour, slog.New(slog.DiscardHandler))

	m.afterEnd()
	ch, _ := heldBy(m.send)
	waitReleased(t, ch, "markers written")
	m.stop()
	if got := d.asked.Load(); got != int32(len(states)) {
		t.Fatalf("asked %d times, want %d (until the state was CompleteCommit)", got, len(states))
	}
	for range len(states) {
		if id := <-d.ids; id != "watched" {
			t.Fatalf("asked about transactional ID %q, want %q", id, "watched")
		}
	}
	if m.failures.Load() != 0 || m.gaveUp() {
		t.Fatalf("failures %d, gave up %v after a watch that succeeded", m.failures.Load(), m.gaveUp())
	}
	// One transaction watched to its end, well inside the hour's limit.
	if h := m.times.snapshot(); h.Count() != 1 || h.Quantile(1) >= time.Minute {
		t.Fatalf("marker times: %d counted, longest %v; want one, under the limit", h.Count(), h.Quantile(1))
	}
}

// TestMarkerWatchFallback checks that a watch that cannot learn the
// state holds for the fallback instead, and that after
// maxMarkerProbeFailures failed watches in a row the worker warns once
// and stops asking, every hold then being the fallback.
func TestMarkerWatchFallback(t *testing.T) {
	c, err := kfake.NewCluster(kfake.NumBrokers(1))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	d := controlDescribeTxns(c, func(int32) (string, int16) {
		return "", kerr.TransactionalIDAuthorizationFailed.Code
	})
	var logged bytes.Buffer
	const fallback = 2 * time.Millisecond
	m := newWatchForTest(t, c.ListenAddrs(), time.Hour, fallback, slog.New(slog.NewTextHandler(&logged, nil)))

	for i := range maxMarkerProbeFailures {
		began := time.Now()
		m.afterEnd()
		ch, _ := heldBy(m.send)
		waitReleased(t, ch, "failed watch")
		if took := time.Since(began); took < fallback {
			t.Fatalf("watch %d released after %v, before the fallback of %v", i+1, took, fallback)
		}
		m.stop()
	}
	if !m.gaveUp() {
		t.Fatalf("still asking after %d failed watches", maxMarkerProbeFailures)
	}
	began := time.Now()
	m.afterEnd()
	ended := time.Now()
	_, until := heldBy(m.send)
	m.stop()
	if got := d.asked.Load(); got != maxMarkerProbeFailures {
		t.Fatalf("asked %d times, want %d (none once stopped)", got, maxMarkerProbeFailures)
	}
	if until.Before(began.Add(fallback)) || until.After(ended.Add(fallback)) {
		t.Fatalf("hold after stopping lasts %v, want the fallback %v", until.Sub(began), fallback)
	}
	if n := strings.Count(logged.String(), "cannot learn when a transaction's markers are written"); n != 1 {
		t.Fatalf("warned %d times, want once:\n%s", n, logged.String())
	}
	if !strings.Contains(logged.String(), "TRANSACTIONAL_ID_AUTHORIZATION_FAILED") {
		t.Fatalf("warning does not name the broker's error:\n%s", logged.String())
	}
	if n := m.times.snapshot().Count(); n != 0 {
		t.Fatalf("%d marker times counted without an answer from the coordinator", n)
	}
}

// TestMarkerWatchCountsTheLimit: markers still pending when the hold's
// limit passes count as the limit in Stats.MarkerTimes.
func TestMarkerWatchCountsTheLimit(t *testing.T) {
	c, err := kfake.NewCluster(kfake.NumBrokers(1))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	controlDescribeTxns(c, func(int32) (string, int16) { return "PrepareCommit", 0 })
	const wait = 30 * time.Millisecond
	m := newWatchForTest(t, c.ListenAddrs(), wait, time.Hour, slog.New(slog.DiscardHandler))
	m.afterEnd()
	m.wg.Wait() // the watch ends at the limit on its own
	h := m.times.snapshot()
	if h.Count() != 1 || h.Quantile(1) != histBound(histBucket(wait)) {
		t.Fatalf("marker times: %d counted, in the bucket up to %v; want one, in the limit's (%v)", h.Count(), h.Quantile(1), histBound(histBucket(wait)))
	}
}

// TestMarkerWatchOff checks that MarkerWait(0) sets no hold and asks
// nothing.
func TestMarkerWatchOff(t *testing.T) {
	c, err := kfake.NewCluster(kfake.NumBrokers(1))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	d := controlDescribeTxns(c, func(int32) (string, int16) { return "CompleteCommit", 0 })
	m := newWatchForTest(t, c.ListenAddrs(), 0, 0, slog.New(slog.DiscardHandler))
	m.afterEnd()
	m.stop()
	if ch, until := heldBy(m.send); ch != nil || !until.IsZero() {
		t.Fatalf("MarkerWait(0) set a hold until %v", until)
	}
	if got := d.asked.Load(); got != 0 {
		t.Fatalf("MarkerWait(0) asked %d times, want 0", got)
	}
}

// TestMarkerWatchBroker ends a real transaction and checks that the
// broker's answers end the hold: on Kafka 4 the state goes from
// PrepareCommit to CompleteCommit once the markers are written, and a
// watch that never saw that would hold for its whole hour.
func TestMarkerWatchBroker(t *testing.T) {
	seeds := kafkatest.Brokers(t)
	topic := kafkatest.Topic(t, seeds, 2, nil)
	txnID := kafkatest.UniqueName(t, "watched-txn")
	cl := kafkatest.Client(t, seeds, kgo.TransactionalID(txnID), kgo.DefaultProduceTopic(topic),
		kgo.RecordPartitioner(kgo.ManualPartitioner()))
	m := newWatchForTest(t, seeds, time.Hour, time.Hour, slog.New(slog.DiscardHandler))
	m.txnID = txnID
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	for i := range 3 {
		if err := cl.BeginTransaction(); err != nil {
			t.Fatal(err)
		}
		for p := range int32(2) {
			if err := cl.ProduceSync(ctx, &kgo.Record{Partition: p, Value: []byte("v")}).FirstErr(); err != nil {
				t.Fatal(err)
			}
		}
		if err := cl.EndTransaction(ctx, kgo.TryCommit); err != nil {
			t.Fatal(err)
		}
		m.afterEnd()
		ch, _ := heldBy(m.send)
		waitReleased(t, ch, fmt.Sprintf("transaction %d", i+1))
		m.stop()
		if m.failures.Load() != 0 {
			t.Fatalf("transaction %d: the watch failed to learn the state", i+1)
		}
	}
	if got := len(kafkatest.ReadAll(t, seeds, topic, kafkatest.ReadCommitted)); got != 6 {
		t.Fatalf("read %d committed records, want 6", got)
	}
}
