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
	w.txn = &txnState{sess: sess}
	defer func() {
		w.closeAll()
		w.send.stop()
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
		// wall-clock punctuators get their turn.
		deadline := time.Now().Add(c.commitInterval)
		if w.txn.open {
			deadline = w.txn.due
		}
		fs := w.poll(ctx, deadline)
		if err := w.fetchErr(fs); err != nil {
			w.abortQuietly()
			return err
		}
		if !fs.Empty() && !w.txn.open {
			if err := w.beginTxn(); err != nil {
				return w.fenceOr(err)
			}
		}
		n, procErr := w.processBatch(fs)
		w.txn.records += n
		if procErr != nil {
			w.abortQuietly()
			return w.fenceOr(procErr)
		}
		if w.txn.open && (!time.Now().Before(w.txn.due) ||
			w.txn.records >= c.maxRecordsPerTxn || w.hasProduceErr()) {
			if err := w.endTxn(kgo.TryCommit); err != nil {
				return err
			}
		}
	}
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
	w.send.drain()
	if err := w.cl.Flush(ctx); err != nil {
		return fmt.Errorf("processor: flush transaction %s: %w", w.txnID, err)
	}
	produceErr := w.takeProduceErr()
	if produceErr != nil {
		want = kgo.TryAbort
	}
	committed, err := w.txn.sess.End(ctx, want)
	w.txn.open = false
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
	w.p.stats.commits.Add(1)
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
