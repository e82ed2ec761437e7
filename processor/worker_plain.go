package processor

import (
	"context"
	"fmt"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
)

// runPlain is the loop without transactions. AtLeastOnce commits offsets
// after the outputs of everything processed are acknowledged; AtMostOnce
// commits offsets right after each poll, before processing.
func (w *worker) runPlain(ctx context.Context) error {
	c := &w.p.cfg
	cl, err := kgo.NewClient(w.clientOpts(kgo.BlockRebalanceOnPoll())...)
	if err != nil {
		return fmt.Errorf("processor: create client: %w", err)
	}
	w.cl = cl
	w.send = newSender(cl)
	defer func() {
		w.closeAll()
		w.send.stop()
		w.closeClient(cl.CloseAllowingRebalance)
	}()
	atMostOnce := c.guarantee == AtMostOnce
	// Batches end one commit interval apart, from the start of one commit
	// to the start of the next (see beginTxn).
	var batchDue, lastCommit time.Time
	pending := 0

	for {
		if ctx.Err() != nil {
			return w.commitPlain(pending > 0)
		}
		deadline := batchDue
		if pending == 0 {
			deadline = time.Now().Add(c.commitInterval)
		}
		fs := w.poll(ctx, deadline)
		if err := w.fetchErr(fs); err != nil {
			return err
		}
		if atMostOnce && !fs.Empty() {
			// The order that makes it at-most-once: offsets first.
			began := time.Now()
			cctx, ccancel := context.WithTimeout(context.Background(), 30*time.Second)
			err := cl.CommitUncommittedOffsets(cctx)
			ccancel()
			w.timeCommit(began)
			if err != nil {
				return w.fenceOr(fmt.Errorf("processor: commit offsets before processing: %w", err))
			}
		}
		if pending == 0 && !fs.Empty() {
			batchDue = laterOf(lastCommit.Add(c.commitInterval), time.Now())
		}
		n, procErr := w.processBatch(fs)
		pending += n
		if procErr != nil {
			// No commit: under AtLeastOnce the failed batch is redone
			// after a restart.
			return procErr
		}
		if pending > 0 && (!time.Now().Before(batchDue) || pending >= c.maxRecordsPerTxn) {
			lastCommit = time.Now()
			if err := w.commitPlain(true); err != nil {
				return err
			}
			pending = 0
		}
		if pending == 0 {
			w.dropRevoked()
			cl.AllowRebalance()
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
	}
}

// commitPlain waits for every produced record, then (under AtLeastOnce)
// commits the offsets of everything processed and makes store writes
// durable. A produce failure stops the worker without committing.
func (w *worker) commitPlain(dirty bool) error {
	if !dirty {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	defer w.timeCommit(time.Now())
	w.produceChangelogs()
	if err := w.flush(ctx); err != nil {
		return fmt.Errorf("processor: flush: %w", err)
	}
	if err := w.takeProduceErr(); err != nil {
		return fmt.Errorf("processor: %w", err)
	}
	if w.p.cfg.guarantee == AtLeastOnce {
		if err := w.cl.CommitUncommittedOffsets(ctx); err != nil {
			return w.fenceOr(fmt.Errorf("processor: commit offsets: %w", err))
		}
	}
	w.committed()
	return w.commitStores()
}
