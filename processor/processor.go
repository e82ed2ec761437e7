package processor

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/onceflow/onceflow/topology"
)

// Processor runs a topology as one instance of an application. Create it
// with New, run it with Run.
type Processor struct {
	cfg     cfg
	topo    *topology.Topology
	running atomic.Bool
	stats   counters
}

// Stats are running totals for one Processor, across its workers.
type Stats struct {
	// Processed counts input records processed without error (in
	// transactions that may later abort: it counts work, not results).
	Processed int64
	// Skipped counts records dropped by the Skip policy.
	Skipped int64
	// DeadLettered counts records written to the dead-letter topic.
	DeadLettered int64
	// Commits counts committed transactions (or offset commits without
	// transactions).
	Commits int64
	// Aborts counts aborted transactions.
	Aborts int64
	// CommitTime is the time workers spent committing, summed over the
	// workers: flushing outputs and changelogs, committing offsets (in the
	// transaction or not) and, under ExactlyOnce, ending the transaction.
	// No records are processed meanwhile; CommitTime over Run's wall time is
	// the share a guarantee's commits cost.
	CommitTime time.Duration
	// FlushTime is the part of CommitTime spent flushing: handing the
	// records processed so far to the client and waiting until the brokers
	// acknowledged every output and changelog record. The rest of
	// CommitTime is committing offsets, under ExactlyOnce ending the
	// transaction, and collecting committed store writes for Pebble while
	// an apply is due (see StoreApplyInterval).
	FlushTime time.Duration
	// PollTime is the time workers spent waiting for records from the
	// brokers, summed over the workers: time in which they had nothing to
	// process. Wall time minus PollTime minus CommitTime is what processing
	// (and restores) took.
	PollTime time.Duration
	// CommitTimes is the distribution of the durations summed in
	// CommitTime, one per commit (or abort): its Quantile(0.99) is how
	// long the slowest commits take, which an average hides. Kafka
	// Streams' commit-latency-avg is CommitTime over Commits.
	CommitTimes Histogram
	// MaxCommitTime is the longest of them (Kafka Streams'
	// commit-latency-max).
	MaxCommitTime time.Duration
	// MarkerTimes is, under ExactlyOnce, how long the broker took to
	// write each transaction's commit markers after the commit returned,
	// as the worker's watch saw it (see MarkerWait): the outputs become
	// visible to read_committed consumers only then, and the next
	// transaction's first records are held that long. A transaction whose
	// markers took longer than MarkerWait counts as MarkerWait. Empty
	// with MarkerWait(0), or where the broker cannot be asked.
	MarkerTimes Histogram
	// CommitAges is, for each commit, how old the oldest input record it
	// committed was when the commit returned: the wall clock less the
	// record's timestamp (the first record of each polled partition is
	// looked at, the oldest of a partition's batch). Under ExactlyOnce it
	// is how long that record's outputs had waited when the commit made
	// them durable; they are visible once the markers are written too
	// (MarkerTimes). An abort's records count in the next commit, so its
	// cost shows. It is end-to-end latency only where the input is
	// stamped when produced (CreateTime, the producer's clock in step
	// with this host's).
	CommitAges Histogram
	// PollAges is, for each partition's records in each poll, how old the
	// first (oldest) of them was when the worker took it: the part of
	// CommitAges spent before processing, waiting on the broker or in the
	// client while the worker was busy (Kafka Streams'
	// record-e2e-latency at its source nodes is the same idea, per
	// record). The same caveat on timestamps applies.
	PollAges Histogram
}

type counters struct {
	processed, skipped, deadLettered, commits, aborts  atomic.Int64
	commitNanos, flushNanos, pollNanos, maxCommitNanos atomic.Int64
	commitTimes, markerTimes, commitAges, pollAges     histCounter
}

// New validates the options and returns a Processor for t. It reports every
// configuration problem at once, wrapped in ErrInvalidConfig, and makes no
// network call.
func New(t *topology.Topology, opts ...Opt) (*Processor, error) {
	c := defaultCfg()
	for _, o := range opts {
		if o != nil {
			o.apply(&c)
		}
	}
	c.finish()
	err := c.validate()
	if t == nil {
		err = errors.Join(err, fmt.Errorf("%w: nil topology", ErrInvalidConfig))
	}
	if err != nil {
		return nil, err
	}
	return &Processor{cfg: c, topo: t}, nil
}

// Stats returns a snapshot of the running totals.
func (p *Processor) Stats() Stats {
	return Stats{
		Processed:     p.stats.processed.Load(),
		Skipped:       p.stats.skipped.Load(),
		DeadLettered:  p.stats.deadLettered.Load(),
		Commits:       p.stats.commits.Load(),
		Aborts:        p.stats.aborts.Load(),
		CommitTime:    time.Duration(p.stats.commitNanos.Load()),
		FlushTime:     time.Duration(p.stats.flushNanos.Load()),
		PollTime:      time.Duration(p.stats.pollNanos.Load()),
		CommitTimes:   p.stats.commitTimes.snapshot(),
		MaxCommitTime: time.Duration(p.stats.maxCommitNanos.Load()),
		MarkerTimes:   p.stats.markerTimes.snapshot(),
		CommitAges:    p.stats.commitAges.snapshot(),
		PollAges:      p.stats.pollAges.snapshot(),
	}
}

// DeadLetterTopic returns the name of the dead-letter topic,
// <application-id>-dlq.
func (p *Processor) DeadLetterTopic() string { return p.cfg.appID + "-dlq" }

// Run checks the topics, joins the consumer group and processes records
// until ctx is cancelled or an unrecoverable error occurs. Cancelling ctx is
// a graceful shutdown: each worker commits (or, if it cannot, aborts) its
// open transaction and closes its client, and Run returns nil. A fenced
// instance returns an error wrapping ErrFenced. Run may be called once.
func (p *Processor) Run(ctx context.Context) error {
	if !p.running.CompareAndSwap(false, true) {
		return errors.New("processor: Run called twice")
	}
	meta, err := p.prepare(ctx)
	if err != nil {
		if ctx.Err() != nil {
			return nil // cancelled while starting: a graceful shutdown too
		}
		return err
	}
	db, err := p.openState()
	if err != nil {
		return err
	}
	if db != nil {
		defer func() {
			if err := db.Close(); err != nil {
				p.cfg.logger.Warn("closing the state database failed", "dir", p.cfg.stateDir, "err", err)
			}
		}()
	}
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)

	var (
		wg       sync.WaitGroup
		mu       sync.Mutex
		firstErr error
	)
	for n := range p.cfg.workers {
		w := newWorker(p, n, meta, db)
		wg.Go(func() {
			if err := w.run(ctx); err != nil {
				mu.Lock()
				if firstErr == nil {
					firstErr = err
				}
				mu.Unlock()
				cancel(err)
			}
		})
	}
	wg.Wait()
	return firstErr
}
