package processor

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/onceflow/onceflow/state"
	"github.com/onceflow/onceflow/topology"
)

// worker is one consumer-group member: it owns a client (a transactional
// one under ExactlyOnce), the tasks of the partitions assigned to it, and
// their stores. Everything but the produce promise and the rebalance
// callbacks runs on the worker's goroutine.
type worker struct {
	p     *Processor
	n     int
	meta  *clusterMeta
	txnID string // transactional id under ExactlyOnce, else empty
	log   *slog.Logger

	cl   *kgo.Client
	send *sender   // produces for the worker; see sender
	recs records   // the records it produces are carved from these
	txn  *txnState // nil unless ExactlyOnce
	// markers ends the hold after each transaction (ExactlyOnce only).
	markers *markerWatch

	subFor  map[string]int // source topic -> sub-topology
	tasks   map[topology.TaskID]*topology.Task
	state   stateTracker
	reader  *changelogReader // created on the first restore
	keyPart map[string]kgo.TopicPartitioner
	place   placement // partitionFor's last topic
	rr      int

	// oldest is the earliest timestamp of the input records processed
	// since the last commit (the first of each polled partition's),
	// zero when none; a commit counts its age in Stats.CommitAges.
	oldest time.Time

	// stamp is the timestamp of the changelog records the tasks' stores
	// produce: the last input record's (zero before the first, and the
	// client then stamps the wall clock).
	stamp time.Time

	logBuf []state.Write // reused by produceChangelogs

	// pollLimit caps the records of the next poll (see nextPollLimit and
	// nextPollRecords); zero until the first poll.
	pollLimit int

	promise func(*kgo.Record, error)
	// produceErr is the first produce failure since the last commit;
	// written by the producer's promise goroutine.
	produceMu  sync.Mutex
	produceErr error

	// revoked collects partitions taken away by a rebalance; the group's
	// goroutine adds, the worker's drains.
	revokedMu sync.Mutex
	revoked   map[string][]int32
}

type storeKey struct {
	name string
	task topology.TaskID
}

func newWorker(p *Processor, n int, meta *clusterMeta, db *state.DB) *worker {
	w := &worker{
		p:       p,
		n:       n,
		meta:    meta,
		subFor:  map[string]int{},
		tasks:   map[topology.TaskID]*topology.Task{},
		keyPart: map[string]kgo.TopicPartitioner{},
		state: stateTracker{
			db:               db,
			stores:           map[storeKey]*storeKV{},
			byTask:           map[topology.TaskID][]*storeKV{},
			unappliedOffsets: map[storeKey]int64{},
			budget:           state.NewCacheBudget(p.cfg.storeCacheBytes / int64(p.cfg.workers)),
			applyEvery:       p.cfg.storeApplyInterval,
			lastApply:        time.Now(),
		},
	}
	if p.cfg.guarantee == ExactlyOnce {
		w.txnID = fmt.Sprintf("%s-%s-%d", p.cfg.appID, p.cfg.instanceID, n)
	}
	w.log = p.cfg.logger.With("worker", n, "instance", p.cfg.instanceID)
	if w.txnID != "" {
		w.log = w.log.With("txn_id", w.txnID)
	}
	for _, t := range p.topo.SourceTopics() {
		id, _ := p.topo.SubTopologyFor(t)
		w.subFor[t] = id
	}
	w.promise = func(r *kgo.Record, err error) {
		if err != nil {
			w.produceMu.Lock()
			if w.produceErr == nil {
				w.produceErr = fmt.Errorf("produce to topic %q partition %d: %w", r.Topic, r.Partition, err)
			}
			w.produceMu.Unlock()
		}
		releaseRecord(r)
	}
	return w
}

// producerLinger is how long the worker's client holds a partition's
// first unsent record for more to batch with it. franz-go's default is
// 10 ms; the processor sends at once. Under load records still batch
// while the requests in flight (five per broker) are answered. In
// alternating pairs under exactly-once at a fixed rate near half the
// maximum, the p99 fell from a median of 149 to 126 ms (copy, 740,000
// records/s, four pairs) and from 134 to 123 ms (wordcount, 440,000,
// three), with throughput unchanged or higher; at-least-once results
// at low load arrive in under 2 ms instead of about 8 (bench/README.md,
// item 20). The cost is 10-12% more broker CPU per record. KgoOpts can
// set another.
const producerLinger = 0

// clientOpts are the options of a worker's client: those every guarantee
// shares, then the guarantee's own (extra), then the user's KgoOpts, which
// come last so they win.
func (w *worker) clientOpts(extra ...kgo.Opt) []kgo.Opt {
	c := &w.p.cfg
	opts := []kgo.Opt{
		kgo.SeedBrokers(c.brokers...),
		kgo.ConsumerGroup(c.appID),
		kgo.ConsumeTopics(w.p.topo.SourceTopics()...),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		kgo.SessionTimeout(c.sessionTimeout),
		kgo.DisableAutoCommit(),
		kgo.RecordPartitioner(kgo.ManualPartitioner()),
		kgo.RequiredAcks(kgo.AllISRAcks()),
		kgo.ProducerLinger(producerLinger),
		kgo.WithLogger(kgoLogger{w.log}),
		kgo.OnPartitionsAssigned(w.onAssigned),
		kgo.OnPartitionsRevoked(w.onRevoked),
		kgo.OnPartitionsLost(w.onRevoked),
	}
	if c.staticMembership {
		opts = append(opts, kgo.InstanceID(fmt.Sprintf("%s-%d", c.instanceID, w.n)))
	}
	opts = append(opts, extra...)
	return append(opts, c.kgoOpts...)
}

func (w *worker) onRevoked(_ context.Context, _ *kgo.Client, lost map[string][]int32) {
	w.revokedMu.Lock()
	defer w.revokedMu.Unlock()
	if w.revoked == nil {
		w.revoked = map[string][]int32{}
	}
	for t, ps := range lost {
		w.revoked[t] = append(w.revoked[t], ps...)
	}
}

// dropRevoked closes the tasks of revoked partitions. Call it only outside
// a transaction.
func (w *worker) dropRevoked() {
	w.revokedMu.Lock()
	rev := w.revoked
	w.revoked = nil
	w.revokedMu.Unlock()
	for t, ps := range rev {
		sub, ok := w.subFor[t]
		if !ok {
			continue
		}
		for _, p := range ps {
			id := topology.TaskID{SubTopology: sub, Partition: p}
			w.closeTask(id)
			if err := w.forgetStores(id); err != nil {
				w.log.Warn("the store writes of a revoked task did not reach the state directory; its next owner restores them from the changelog",
					"task", id.String(), "err", err)
			}
		}
	}
}

func (w *worker) takeProduceErr() error {
	w.produceMu.Lock()
	defer w.produceMu.Unlock()
	err := w.produceErr
	w.produceErr = nil
	return err
}

func (w *worker) hasProduceErr() bool {
	w.produceMu.Lock()
	defer w.produceMu.Unlock()
	return w.produceErr != nil
}

// poll waits for records until deadline (or ctx ends), adding the wait to
// Stats.PollTime.
func (w *worker) poll(ctx context.Context, deadline time.Time) kgo.Fetches {
	pctx, cancel := context.WithDeadline(ctx, deadline)
	defer cancel()
	polled := time.Now()
	fs := w.cl.PollRecords(pctx, w.nextPollRecords())
	w.p.stats.pollNanos.Add(int64(time.Since(polled)))
	return fs
}

// processBatch runs the polled records through their tasks in order, a
// partition at a time, prefetching their keys in the tasks' stores
// prefetchAhead records ahead; then it runs the punctuators, logs their
// store writes (see storeKV), and hands what they produced to the
// sender. It stops at the first error and returns it
// with the number of records it ran, the failed one included; what the
// worker still holds is then not handed over (chunks handed over earlier
// are already with the sender, and the caller aborts or stops).
func (w *worker) processBatch(fs kgo.Fetches) (int, error) {
	n := 0
	var err error
	began := time.Now()
	defer func() {
		c := &w.p.cfg
		target := min(c.commitInterval/2, c.transactionTimeout/10)
		w.pollLimit = nextPollLimit(w.pollLimit, n, time.Since(began), target, c.maxPollRecords)
	}()
	fs.EachPartition(func(p kgo.FetchTopicPartition) {
		if err != nil || len(p.Records) == 0 {
			return
		}
		ts := p.Records[0].Timestamp
		if w.oldest.IsZero() || ts.Before(w.oldest) {
			w.oldest = ts
		}
		w.p.stats.pollAges.observe(time.Since(ts))
		id, t, terr := w.taskFor(p.Topic, p.Partition)
		if terr != nil {
			err = terr
			n++
			return
		}
		for recs := p.Records; len(recs) > 0 && err == nil; {
			chunk := recs[:min(len(recs), prefetchAhead)]
			recs = recs[len(chunk):]
			for _, s := range w.state.byTask[id] {
				for _, r := range chunk {
					s.Prefetch(r.Key)
				}
			}
			for _, r := range chunk {
				err = w.process(t, r)
				n++
				if err != nil {
					break
				}
			}
		}
	})
	if err == nil {
		err = w.punctuate(time.Now())
	}
	if err != nil {
		return n, err
	}
	w.produceChangelogs()
	w.send.push()
	return n, nil
}

// nextPollRecords is the cap of the worker's next poll.
func (w *worker) nextPollRecords() int {
	if w.pollLimit == 0 {
		w.pollLimit = min(firstPollRecords, w.p.cfg.maxPollRecords)
	}
	return w.pollLimit
}

// firstPollRecords caps a worker's first poll (Kafka Streams' default
// max.poll.records is 1,000): how long a record takes to process is not
// known yet, and a batch is processed whole before its transaction can
// end.
const firstPollRecords = 100

// nextPollLimit is the cap of the next poll, after the worker took took
// to process a batch of n records polled with cap limit: as many records
// as it processes in target, at most four times limit and at most
// ceiling (MaxPollRecords), at least one. A polled batch is processed
// whole before the transaction ends, so a cap this size keeps a
// transaction from running far past its commit interval, or past the
// transaction timeout, when processing is slow (a processor calling out,
// a busy host, a race-detector build); at full speed it is the ceiling,
// and a poll takes a whole fetch response. A batch that did not fill its
// cap says nothing about a larger one and leaves the cap as it was,
// unless it already took longer than target.
func nextPollLimit(limit, n int, took, target time.Duration, ceiling int) int {
	if n <= 0 || (n < limit && took <= target) {
		return limit
	}
	want := ceiling
	if took > 0 {
		want = int(min(float64(n)*float64(target)/float64(took), float64(ceiling)))
	}
	return min(max(want, 1), 4*limit, ceiling)
}

// prefetchAhead is how many records of a partition the worker takes at a
// time: before processing them it has each of the task's key-value stores
// prefetch their keys (Overlay.Prefetch). Stores are most often keyed by
// the record key, which the default serdes store unchanged; where they are
// not, the prefetch is a wasted load. On 100,000 keys this made word count
// 9-15% faster.
const prefetchAhead = 16

// taskFor returns the task that processes the records of a topic's
// partition.
func (w *worker) taskFor(topic string, partition int32) (topology.TaskID, *topology.Task, error) {
	sub, ok := w.subFor[topic]
	if !ok {
		return topology.TaskID{}, nil, fmt.Errorf("processor: polled a record of topic %q, which no source reads", topic)
	}
	id := topology.TaskID{SubTopology: sub, Partition: partition}
	t, err := w.task(id)
	return id, t, err
}

// task returns the task for id, creating and initializing it on first use.
func (w *worker) task(id topology.TaskID) (*topology.Task, error) {
	if t, ok := w.tasks[id]; ok {
		return t, nil
	}
	t, err := w.p.topo.NewTask(id, &taskEnv{w: w, id: id})
	if err != nil {
		return nil, fmt.Errorf("processor: create task %s: %w", id, err)
	}
	if err := t.Init(); err != nil {
		_ = t.Close()
		return nil, fmt.Errorf("processor: init task %s: %w", id, err)
	}
	w.tasks[id] = t
	w.log.Debug("task started", "task", id.String())
	return t, nil
}

func (w *worker) closeTask(id topology.TaskID) {
	t, ok := w.tasks[id]
	if !ok {
		return
	}
	delete(w.tasks, id)
	if err := t.Close(); err != nil {
		w.log.Warn("closing task failed", "task", id.String(), "err", err)
	}
}

// resetTasks throws every task away (after an abort): their processors'
// in-memory state reflects records whose effects were rolled back. Tasks
// are created afresh when their next record arrives.
func (w *worker) resetTasks() {
	for id := range w.tasks {
		w.closeTask(id)
	}
	w.discardStores()
}

// flush hands every queued record to the client and waits until the
// brokers acknowledged them all, adding the time to Stats.FlushTime.
func (w *worker) flush(ctx context.Context) error {
	began := time.Now()
	defer func() { w.p.stats.flushNanos.Add(int64(time.Since(began))) }()
	w.send.drain()
	return w.cl.Flush(ctx)
}

// committed counts a commit in Stats.Commits and the age of the oldest
// record it committed in Stats.CommitAges.
func (w *worker) committed() {
	w.p.stats.commits.Add(1)
	if !w.oldest.IsZero() {
		w.p.stats.commitAges.observe(time.Since(w.oldest))
		w.oldest = time.Time{}
	}
}

// timeCommit adds the time since began to Stats.CommitTime and counts it
// in Stats.CommitTimes.
func (w *worker) timeCommit(began time.Time) {
	d := time.Since(began)
	w.p.stats.commitNanos.Add(int64(d))
	w.p.stats.commitTimes.observe(d)
	storeMax(&w.p.stats.maxCommitNanos, int64(d))
}

// closeClient closes the worker's client, waiting at most the session
// timeout. Leaving the group waits for the group's management loop, which a
// rebalance in progress can hold for the whole rebalance timeout; by the
// time the session timeout passed, the client's offsets and transaction
// are settled, so the rest of the leave finishes in the background.
func (w *worker) closeClient(closeFn func()) {
	done := make(chan struct{})
	go func() {
		closeFn()
		close(done)
	}()
	t := time.NewTimer(w.p.cfg.sessionTimeout)
	defer t.Stop()
	select {
	case <-done:
	case <-t.C:
		w.log.Warn("closing the client waits for a rebalance in progress; it finishes in the background")
	}
}

func (w *worker) closeAll() {
	for id := range w.tasks {
		w.closeTask(id)
	}
	err := w.applyStores()
	if serr := w.state.settle(); err == nil {
		err = serr
	}
	if err != nil {
		w.log.Warn("the last store writes did not reach the state directory; the next start restores them from the changelog", "err", err)
	}
	if w.reader != nil {
		w.reader.close()
	}
}

// process runs one polled record through its task. It returns an error only
// when the worker must stop: a Fail-policy record failure, or a failure that
// is not the record's fault.
func (w *worker) process(t *topology.Task, r *kgo.Record) error {
	raw := topology.RawRecord{
		Topic:     r.Topic,
		Partition: r.Partition,
		Offset:    r.Offset,
		Key:       r.Key,
		Value:     r.Value,
		Timestamp: r.Timestamp,
	}
	w.stamp = r.Timestamp
	if len(r.Headers) > 0 {
		raw.Headers = make([]topology.Header, len(r.Headers))
		for i, h := range r.Headers {
			raw.Headers[i] = topology.Header{Key: h.Key, Value: h.Value}
		}
	}
	err := t.Process(raw)
	if err == nil {
		w.p.stats.processed.Add(1)
		return nil
	}
	return w.recordFailed(r, err)
}

// envError marks a failure of the runtime underneath a task (not the
// record's fault), so the error policy does not apply to it.
type envError struct{ err error }

func (e *envError) Error() string { return e.err.Error() }
func (e *envError) Unwrap() error { return e.err }

func (w *worker) recordFailed(r *kgo.Record, err error) error {
	where := fmt.Errorf("processor: record at topic %q partition %d offset %d: %w", r.Topic, r.Partition, r.Offset, err)
	var env *envError
	if errors.As(err, &env) || errors.Is(err, topology.ErrUnknownTopic) {
		return where
	}
	switch w.p.cfg.errorPolicy {
	case Skip:
		w.p.stats.skipped.Add(1)
		w.log.Warn("skipping record that failed", "topic", r.Topic, "partition", r.Partition, "offset", r.Offset, "err", err)
		return nil
	case DeadLetter:
		w.deadLetter(r, err)
		w.p.stats.deadLettered.Add(1)
		w.log.Warn("dead-lettered record that failed", "topic", r.Topic, "partition", r.Partition, "offset", r.Offset, "err", err)
		return nil
	}
	return where
}

// Header keys of a dead-lettered record.
const (
	HeaderError     = "onceflow.error"
	HeaderTopic     = "onceflow.topic"
	HeaderPartition = "onceflow.partition"
	HeaderOffset    = "onceflow.offset"
	HeaderApp       = "onceflow.application"
)

func (w *worker) deadLetter(r *kgo.Record, cause error) {
	headers := append([]kgo.RecordHeader(nil), r.Headers...)
	headers = append(headers,
		kgo.RecordHeader{Key: HeaderError, Value: []byte(cause.Error())},
		kgo.RecordHeader{Key: HeaderTopic, Value: []byte(r.Topic)},
		kgo.RecordHeader{Key: HeaderPartition, Value: strconv.AppendInt(nil, int64(r.Partition), 10)},
		kgo.RecordHeader{Key: HeaderOffset, Value: strconv.AppendInt(nil, r.Offset, 10)},
		kgo.RecordHeader{Key: HeaderApp, Value: []byte(w.p.cfg.appID)},
	)
	dl := &kgo.Record{
		Topic:     w.p.DeadLetterTopic(),
		Key:       r.Key,
		Value:     r.Value,
		Headers:   headers,
		Timestamp: r.Timestamp,
	}
	dl.Partition = w.partitionFor(dl, r.Partition)
	w.produce(dl)
}

// produce queues a record for the client (see sender); failures arrive at
// the promise.
func (w *worker) produce(r *kgo.Record) {
	w.send.send(r, w.promise)
}

// partitionFor picks a partition for r, which has no explicit one:
// Kafka's murmur2 placement for keyed records (so keys land where Java
// clients put them), round-robin for records without a key. fallback is
// used when the topic's partition count is unknown.
func (w *worker) partitionFor(r *kgo.Record, fallback int32) int32 {
	pl := &w.place
	if pl.tp == nil || pl.topic != r.Topic {
		tp, ok := w.keyPart[r.Topic]
		if !ok {
			tp = kgo.StickyKeyPartitioner(nil).ForTopic(r.Topic)
			w.keyPart[r.Topic] = tp
		}
		*pl = placement{topic: r.Topic, n: w.meta.partitions[r.Topic], tp: tp}
	}
	if pl.n <= 0 {
		return fallback
	}
	if r.Key == nil {
		w.rr++
		return int32(w.rr % int(pl.n))
	}
	return int32(pl.tp.Partition(r, int(pl.n)))
}

// placement is what partitionFor knows of the topic it placed a record in
// last (none while tp is nil): a task's outputs most often all go to one
// topic.
type placement struct {
	topic string
	n     int32 // partitions; 0 if unknown
	tp    kgo.TopicPartitioner
}

// punctuate runs due wall-clock punctuators of every task.
func (w *worker) punctuate(now time.Time) error {
	for id, t := range w.tasks {
		if err := t.Punctuate(now); err != nil {
			return fmt.Errorf("processor: task %s: %w", id, err)
		}
	}
	return nil
}

// taskEnv is the runtime side of one task.
type taskEnv struct {
	w  *worker
	id topology.TaskID
}

func (e *taskEnv) Send(rec topology.OutRecord) error {
	w := e.w
	if err := w.beforeSend(); err != nil {
		return &envError{err}
	}
	r := w.recs.next()
	r.Topic, r.Partition, r.Key, r.Value, r.Timestamp = rec.Topic, rec.Partition, rec.Key, rec.Value, rec.Timestamp
	if r.Partition < 0 {
		r.Partition = w.partitionFor(r, e.id.Partition)
	}
	if len(rec.Headers) > 0 {
		r.Headers = make([]kgo.RecordHeader, len(rec.Headers))
		for i, h := range rec.Headers {
			r.Headers[i] = kgo.RecordHeader{Key: h.Key, Value: h.Value}
		}
	}
	w.produce(r)
	return nil
}

func (e *taskEnv) Store(name string) (state.KV, error) { return e.w.store(name, e.id) }

func (e *taskEnv) Partitions(topic string) (int32, error) {
	n, ok := e.w.meta.partitions[topic]
	if !ok {
		return 0, &envError{fmt.Errorf("processor: partition count of topic %q unknown (not a sink or source of this topology)", topic)}
	}
	return n, nil
}
