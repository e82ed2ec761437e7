package processor

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
)

// run starts the worker's client and loop for the configured guarantee.
func (w *worker) run(ctx context.Context) error {
	switch w.p.cfg.guarantee {
	case ExactlyOnce:
		return w.runExactlyOnce(ctx)
	default:
		return w.runPlain(ctx)
	}
}

// txnState tracks the open transaction of an exactly-once worker.
type txnState struct {
	sess    *kgo.GroupTransactSession
	open    bool
	due     time.Time // when the open transaction should end
	lastEnd time.Time // when ending the previous one began
	records int

	// Pacing (see PollPace): when the last poll began, whether it left
	// records behind (see behindBroker), and the time spent processing and
	// waiting for records in the open transaction; util is the busy share
	// of the last one.
	polled     time.Time
	behind     bool
	busy, idle time.Duration
	util       float64
}

// beforeSend makes sure a produced record lands in a transaction under
// ExactlyOnce (punctuators may produce between batches).
func (w *worker) beforeSend() error {
	if w.txn == nil || w.txn.open {
		return nil
	}
	return w.beginTxn()
}

func (w *worker) beginTxn() error {
	if err := w.txn.sess.Begin(); err != nil {
		return fmt.Errorf("processor: begin transaction %s: %w", w.txnID, err)
	}
	// Transactions end one commit interval apart (from the start of one
	// end to the start of the next), as Kafka Streams commits: a record
	// then waits at most about an interval plus one commit. After an idle
	// spell the new transaction is due at once, after its first batch.
	w.txn.open, w.txn.records = true, 0
	w.txn.busy, w.txn.idle = 0, 0
	w.txn.due = laterOf(w.txn.lastEnd.Add(w.p.cfg.commitInterval), time.Now())
	return nil
}

// runExactlyOnce is the read-process-write loop of DESIGN.md: poll, process
// into the open transaction, and every commit interval (or after
// MaxRecordsPerTransaction records) flush and commit outputs and offsets
// together.
func (w *worker) runExactlyOnce(ctx context.Context) error {
	c := &w.p.cfg
	sess, err := kgo.NewGroupTransactSession(w.clientOpts(
		kgo.TransactionalID(w.txnID),
		kgo.TransactionTimeout(c.transactionTimeout),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()),
	)...)
	if err != nil {
		return fmt.Errorf("processor: create transactional client %s: %w", w.txnID, err)
	}
	w.cl = sess.Client()
	w.send = newSender(w.cl)
	w.markers = newMarkerWatch(w.cl, w.send, w.txnID, c, w.log, &w.p.stats.markerTimes)
	w.txn = &txnState{sess: sess}
	defer func() {
		w.closeAll()
		w.send.stop()
		w.markers.stop()
		w.closeClient(sess.Close)
	}()

	for {
		if ctx.Err() != nil {
			return w.shutdownExactlyOnce()
		}
		if !w.txn.open {
			w.dropRevoked()
			if err := w.restorePending(ctx); err != nil {
				if ctx.Err() != nil {
					return nil
				}
				return err
			}
			if err := w.applyIfDue(); err != nil {
				return err
			}
		}
		// Poll until the transaction is due, or one interval when idle so
		// wall-clock punctuators get their turn. Within a transaction the
		// polls are paced (see PollPace and paceUntil) unless the last
		// one left records behind; a due transaction whose records wait
		// for the last one's markers polls, unpaced, until they are
		// written (see endNow).
		deadline := time.Now().Add(c.commitInterval)
		wasOpen := w.txn.open
		waitFrom := time.Now()
		pctx, stopWait := ctx, context.CancelFunc(func() {})
		if wasOpen {
			deadline = w.txn.due
			if until, released, held := w.send.holding(waitFrom); held && !waitFrom.Before(w.txn.due) {
				deadline = until
				pctx, stopWait = cancelOnClose(ctx, released)
			} else if c.pollPace > 0 && !w.txn.behind {
				sleepUntil(ctx, w.txn.paceUntil(c.pollPace))
			}
		}
		w.txn.polled = time.Now()
		limit := w.nextPollRecords()
		fs := w.poll(pctx, deadline)
		stopWait()
		if err := w.fetchErr(fs); err != nil {
			w.abortQuietly()
			return err
		}
		w.txn.behind = fs.NumRecords() >= limit || behindBroker(fs)
		if !fs.Empty() && !w.txn.open {
			if err := w.beginTxn(); err != nil {
				return w.fenceOr(err)
			}
		}
		processFrom := time.Now()
		n, procErr := w.processBatch(fs)
		w.txn.records += n
		if wasOpen {
			w.txn.idle += processFrom.Sub(waitFrom)
		}
		w.txn.busy += time.Since(processFrom)
		if procErr != nil {
			w.abortQuietly()
			return w.fenceOr(procErr)
		}
		if w.txn.open && w.endNow(time.Now()) {
			if err := w.endTxn(kgo.TryCommit); err != nil {
				return err
			}
		}
	}
}

// endNow tells whether the open transaction ends now: when it is full
// (MaxRecordsPerTransaction), a produce failed, or it is due, unless the
// last transaction's markers are not written yet. Its records are held
// until they are (MarkerWait), so ending then would only wait in the
// flush; the worker goes on taking records into the transaction until
// the hold ends instead, and those commit with it, an interval sooner
// than in the next one. On a loaded broker at a 10 ms interval the
// markers were still pending at half or more of the due times.
func (w *worker) endNow(now time.Time) bool {
	if w.txn.records >= w.p.cfg.maxRecordsPerTxn || w.hasProduceErr() {
		return true
	}
	if now.Before(w.txn.due) {
		return false
	}
	_, _, held := w.send.holding(now)
	return !held
}

// cancelOnClose returns a context that ends with ctx or when ch is closed;
// its cancel func must be called.
func cancelOnClose(ctx context.Context, ch <-chan struct{}) (context.Context, context.CancelFunc) {
	c, cancel := context.WithCancel(ctx)
	go func() {
		select {
		case <-ch:
			cancel()
		case <-c.Done():
		}
	}()
	return c, cancel
}

// endTxn flushes, then commits (or aborts, if a produce failed) the open
// transaction. After an abort every task is reset and the consumer resumes
// from the committed offsets.
func (w *worker) endTxn(want kgo.TransactionEndTry) error {
	return w.endTxnWithin(want, w.endTimeout())
}

func (w *worker) endTxnWithin(want kgo.TransactionEndTry, limit time.Duration) error {
	ctx, cancel := context.WithTimeout(context.Background(), limit)
	defer cancel()
	w.txn.lastEnd = time.Now()
	defer w.timeCommit(w.txn.lastEnd)
	if want == kgo.TryCommit {
		w.produceChangelogs()
	}
	if err := w.flush(ctx); err != nil {
		return fmt.Errorf("processor: flush transaction %s: %w", w.txnID, err)
	}
	produceErr := w.takeProduceErr()
	if produceErr != nil {
		want = kgo.TryAbort
	}
	committed, err := w.txn.sess.End(ctx, want)
	// The broker writes this transaction's markers after End returns; the
	// next transaction's first records wait for them (MarkerWait).
	w.markers.afterEnd()
	w.txn.open = false
	w.txn.noteUtil()
	if err != nil {
		return w.fenceOr(fmt.Errorf("processor: end transaction %s: %w", w.txnID, err))
	}
	if produceErr != nil {
		w.p.stats.aborts.Add(1)
		w.resetTasks()
		return w.fenceOr(fmt.Errorf("processor: transaction %s aborted: %w", w.txnID, produceErr))
	}
	if !committed {
		w.p.stats.aborts.Add(1)
		w.log.Info("transaction aborted (rebalance or abortable error); resuming from committed offsets")
		w.resetTasks()
		return nil
	}
	w.committed()
	return w.commitStores()
}

// rebalanceTimeout is franz-go's default rebalance timeout, which the
// processor does not change.
const rebalanceTimeout = 60 * time.Second

// endTimeout bounds ending a transaction. End waits for a forced heartbeat,
// which waits for an ongoing rebalance to finish, and a rebalance may last
// up to the rebalance timeout while the group waits for slow members.
func (w *worker) endTimeout() time.Duration {
	return rebalanceTimeout + 2*w.p.cfg.transactionTimeout
}

// abortQuietly aborts the open transaction on the way out after an error;
// the error that made us leave is the one worth reporting.
func (w *worker) abortQuietly() {
	if w.txn == nil || !w.txn.open {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), w.endTimeout())
	defer cancel()
	_ = w.send.discard(ctx)
	if _, err := w.txn.sess.End(ctx, kgo.TryAbort); err != nil {
		w.log.Warn("abort after error failed", "err", err)
	}
	w.txn.open = false
	w.p.stats.aborts.Add(1)
	w.resetTasks()
}

// shutdownExactlyOnce commits the open transaction, giving it at most the
// transaction timeout: a commit that must wait out a rebalance is not worth
// holding up a shutdown for. If it does not finish in time, the broker
// aborts the transaction when it times out (or when this instance's next
// incarnation fences it), and the work is redone from the committed
// offsets.
func (w *worker) shutdownExactlyOnce() error {
	if !w.txn.open {
		return nil
	}
	w.log.Info("shutting down: committing the open transaction")
	err := w.endTxnWithin(kgo.TryCommit, w.p.cfg.transactionTimeout)
	if errors.Is(err, context.DeadlineExceeded) && !IsFenced(err) {
		w.log.Warn("shutting down: the open transaction did not commit in time; the broker will abort it", "err", err)
		return nil
	}
	return err
}

// maxPacedUtil is the busy share of a transaction above which the next one
// is not paced: its last stretch would have to be most of the interval.
const maxPacedUtil = 0.8

// paceUntil returns when the next poll of the open transaction may begin:
// pace after the last one began, and no later than the start of the
// transaction's last stretch, which is unpaced. The records that waited on
// the broker are at most two paces' worth when the stretch begins; at the
// last transaction's busy share u the worker clears them in 2·pace·u/(1−u)
// while keeping up with new ones, so the stretch is that plus a pace.
func (t *txnState) paceUntil(pace time.Duration) time.Time {
	if t.util >= maxPacedUtil {
		return time.Time{}
	}
	stretch := pace + time.Duration(float64(2*pace)*t.util/(1-t.util))
	return earlierOf(t.polled.Add(pace), t.due.Add(-stretch))
}

// noteUtil records the busy share of the transaction that just ended, for
// pacing the next one.
func (t *txnState) noteUtil() {
	if total := t.busy + t.idle; total > 0 {
		t.util = float64(t.busy) / float64(total)
	}
}

// behindBroker tells whether a poll left records on the broker: a
// partition whose last polled record is more than one offset short of the
// last stable offset the fetch reported (one offset is a transaction
// marker's). A worker that is behind is not paced.
func behindBroker(fs kgo.Fetches) bool {
	behind := false
	fs.EachPartition(func(p kgo.FetchTopicPartition) {
		if n := len(p.Records); n > 0 && p.LastStableOffset-(p.Records[n-1].Offset+1) > 1 {
			behind = true
		}
	})
	return behind
}

// sleepUntil returns at t or when ctx is done, whichever comes first.
func sleepUntil(ctx context.Context, t time.Time) { waitUntil(t, ctx.Done()) }

// waitUntil returns at t or when done is closed, whichever comes first.
func waitUntil(t time.Time, done <-chan struct{}) {
	d := time.Until(t)
	if d <= 0 {
		return
	}
	tm := time.NewTimer(d)
	defer tm.Stop()
	select {
	case <-tm.C:
	case <-done:
	}
}

// earlierOf returns the earlier of a and b.
func earlierOf(a, b time.Time) time.Time {
	if a.Before(b) {
		return a
	}
	return b
}

// laterOf returns the later of a and b.
func laterOf(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}

// fenceOr turns a fencing error into one wrapping ErrFenced.
func (w *worker) fenceOr(err error) error {
	if err != nil && IsFenced(err) && !errors.Is(err, ErrFenced) {
		id := w.txnID
		if id == "" {
			id = w.p.cfg.instanceID
		}
		return fmt.Errorf("%w (id %s): %w", ErrFenced, id, err)
	}
	return err
}

// fetchErr returns the first fetch error that must stop the worker,
// ignoring the end of a poll deadline and cancellation.
func (w *worker) fetchErr(fs kgo.Fetches) error {
	var first error
	fs.EachError(func(topic string, partition int32, err error) {
		if first != nil || errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled) {
			return
		}
		if topic == "" {
			first = w.fenceOr(fmt.Errorf("processor: consumer group %q: %w", w.p.cfg.appID, err))
			return
		}
		first = w.fenceOr(fmt.Errorf("processor: fetch topic %q partition %d: %w", topic, partition, err))
	})
	return first
}
