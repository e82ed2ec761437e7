package processor

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// markerWatch ends an exactly-once worker's MarkerWait hold as soon as the
// transaction it just ended is complete on the broker: ending a
// transaction returns once the coordinator logged the decision, before
// the markers are written, and a Kafka 4 broker (transaction version 2)
// makes a next transaction's first write that arrives before them wait
// out add.partitions.to.txn.retry.backoff.ms (20 ms by default). The
// watch asks the coordinator (DescribeTransactions) about the worker's
// transactional ID every markerProbeEvery until the state is no longer
// PrepareCommit or PrepareAbort: the coordinator leaves that state only
// once every marker is written, so it accepts the next transaction's
// partitions from then on. The hold's own limit (MarkerWait) still
// applies.
//
// A watch that cannot ask (an old broker, a missing ACL, an error) holds
// for fallback instead, the fixed wait of earlier versions; after
// maxMarkerProbeFailures in a row the worker stops asking.
type markerWatch struct {
	cl       *kgo.Client
	send     *sender
	txnID    string
	wait     time.Duration // MarkerWait: the longest hold
	fallback time.Duration // the hold when the state cannot be had
	log      *slog.Logger
	// times counts how long each watched transaction's markers took
	// (Stats.MarkerTimes).
	times *histCounter

	// failures counts failed watches in a row; at maxMarkerProbeFailures
	// the worker has stopped asking and every hold is fallback. Watches
	// run one at a time (afterEnd stops the last first).
	failures atomic.Int32

	cancel context.CancelFunc // ends the watch running, if any
	wg     sync.WaitGroup
}

// markerProbeEvery is the shortest time between two questions of one
// watch. A local broker under load wrote a 10 ms transaction's markers in
// 1 to 5 ms after End returned (two or three questions).
const markerProbeEvery = time.Millisecond

// maxMarkerProbeFailures is how many watches in a row may fail before a
// worker stops watching.
const maxMarkerProbeFailures = 3

// fallbackMarkerWait is the most a worker holds when it cannot learn
// whether the markers are written: a quarter of the commit interval, at
// most 5 ms (the markers of a local broker took 1 to 5 ms), and never more
// than MarkerWait.
func fallbackMarkerWait(interval, wait time.Duration) time.Duration {
	return min(wait, interval/4, 5*time.Millisecond)
}

func newMarkerWatch(cl *kgo.Client, send *sender, txnID string, c *cfg, log *slog.Logger, times *histCounter) *markerWatch {
	return &markerWatch{
		cl: cl, send: send, txnID: txnID, log: log, times: times,
		wait:     c.markerWait,
		fallback: fallbackMarkerWait(c.commitInterval, c.markerWait),
	}
}

// afterEnd holds the sender after a transaction ended and starts watching
// for its markers, ending the watch of the transaction before if it still
// runs.
func (m *markerWatch) afterEnd() {
	m.stop()
	if m.wait <= 0 {
		return
	}
	if m.gaveUp() {
		m.send.hold(m.fallback)
		return
	}
	began := time.Now()
	release := m.send.hold(m.wait)
	ctx, cancel := context.WithTimeout(context.Background(), m.wait)
	m.cancel = cancel
	m.wg.Add(1)
	go func() {
		defer m.wg.Done()
		defer cancel()
		m.watch(ctx, began, release)
	}()
}

// watch releases the hold once the coordinator reports the transaction
// complete, and counts the time since the transaction ended. When the
// hold's limit passes first, the sender's timer ends it, and the limit is
// what it counts.
func (m *markerWatch) watch(ctx context.Context, began time.Time, release func()) {
	for {
		asked := time.Now()
		done, err := m.complete(ctx)
		if m.ended(ctx) {
			return
		}
		if err != nil {
			m.failed(err)
			sleepUntil(ctx, began.Add(m.fallback))
			release()
			return
		}
		m.failures.Store(0)
		if done {
			release()
			m.times.observe(time.Since(began))
			return
		}
		sleepUntil(ctx, asked.Add(markerProbeEvery))
		if m.ended(ctx) {
			return
		}
	}
}

// ended tells whether the watch is over: stopped, or the hold's limit
// passed with the markers still pending, which counts the limit as their
// time.
func (m *markerWatch) ended(ctx context.Context) bool {
	if ctx.Err() == nil {
		return false
	}
	if errors.Is(ctx.Err(), context.DeadlineExceeded) {
		m.times.observe(m.wait)
	}
	return true
}

// complete asks the coordinator whether the worker's last transaction is
// complete: its markers written.
func (m *markerWatch) complete(ctx context.Context) (bool, error) {
	req := kmsg.NewPtrDescribeTransactionsRequest()
	req.TransactionalIDs = []string{m.txnID}
	resp, err := req.RequestWith(ctx, m.cl)
	if err != nil {
		return false, err
	}
	if len(resp.TransactionStates) != 1 {
		return false, fmt.Errorf("%d transaction states in the response, want 1", len(resp.TransactionStates))
	}
	st := resp.TransactionStates[0]
	if err := kerr.ErrorForCode(st.ErrorCode); err != nil {
		return false, err
	}
	return st.State != "PrepareCommit" && st.State != "PrepareAbort", nil
}

// gaveUp tells whether the worker stopped asking.
func (m *markerWatch) gaveUp() bool { return m.failures.Load() >= maxMarkerProbeFailures }

func (m *markerWatch) failed(err error) {
	if m.failures.Add(1) == maxMarkerProbeFailures {
		m.log.Warn("cannot learn when a transaction's markers are written; holding the next transaction's first records for a fixed time instead",
			"transactional_id", m.txnID, "hold", m.fallback, "err", fmt.Errorf("describe transaction %s: %w", m.txnID, err))
	}
}

// stop ends the watch running, if any, and waits for it.
func (m *markerWatch) stop() {
	if m.cancel != nil {
		m.cancel()
		m.cancel = nil
	}
	m.wg.Wait()
}
