package processor

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"math"
	"sync"
	"sync/atomic"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/onceflow/onceflow/state"
	"github.com/onceflow/onceflow/topology"
)

// ChangelogTopic returns the changelog topic of store,
// <application-id>-<store>-changelog.
func (p *Processor) ChangelogTopic(store string) string {
	return p.cfg.appID + "-" + store + "-changelog"
}

// openState opens the instance's Pebble database if the topology has
// stores. A foreign or corrupt directory is wiped (and logged with the
// reason): its tasks then restore in full from their changelogs.
func (p *Processor) openState() (*state.DB, error) {
	hasStores := false
	for _, s := range p.topo.SubTopologies() {
		hasStores = hasStores || len(s.Stores) > 0
	}
	if !hasStores {
		return nil, nil
	}
	opts := p.cfg.stateOpts
	db, err := state.OpenDB(p.cfg.stateDir, p.cfg.appID, &opts)
	if errors.Is(err, state.ErrForeignState) || errors.Is(err, state.ErrCorruptState) {
		p.cfg.logger.Warn("state directory unusable; wiping it for a full restore from the changelogs",
			"dir", p.cfg.stateDir, "reason", err)
		opts.EnsureDefaults()
		if werr := state.WipeDir(opts.FS, p.cfg.stateDir); werr != nil {
			return nil, fmt.Errorf("processor: wipe state directory %q: %w", p.cfg.stateDir, werr)
		}
		db, err = state.OpenDB(p.cfg.stateDir, p.cfg.appID, &opts)
	}
	if err != nil {
		return nil, fmt.Errorf("processor: open state directory %q: %w", p.cfg.stateDir, err)
	}
	return db, nil
}

// storeKV is one task's view of one store: an overlay of the transaction's
// pending writes, with a cache of committed values, over the instance's
// database.
//
// Writes are logged to the changelog as the worker goes: after each
// polled batch it produces, for every key written since the previous batch,
// one record with the key's latest value (the overlay keeps track:
// [state.Overlay.TakeUnlogged]), and once more before a commit. Changelog
// records flow with the outputs instead of in a burst at commit, a key
// written many times in a batch is logged once, and the last record per
// key in the partition is always the committed value. A changelog record
// carries the timestamp of the last input record processed before it was
// produced.
type storeKV struct {
	*state.Overlay
	w     *worker
	key   storeKey
	topic string // changelog
	// acked is the promise of this store-partition's changelog records:
	// it raises ackedTo to the record's offset (made once, not per record).
	acked func(*kgo.Record, error)
	// ackedTo is the highest acknowledged changelog offset of the open
	// transaction, -1 if none. Promises write it, on the client's
	// goroutines; the worker reads it once every produce finished.
	ackedTo atomic.Int64
}

// Put writes to the overlay, in the open transaction (see storeKV).
func (s *storeKV) Put(key, value []byte) error {
	if err := s.w.beforeSend(); err != nil {
		return &envError{err}
	}
	return s.Overlay.Put(key, value)
}

// Delete writes a tombstone to the overlay, in the open transaction (see
// storeKV).
func (s *storeKV) Delete(key []byte) error {
	if err := s.w.beforeSend(); err != nil {
		return &envError{err}
	}
	return s.Overlay.Delete(key)
}

func (s *storeKV) produce(wr state.Write) {
	r := s.w.recs.next()
	r.Topic, r.Partition, r.Key, r.Value, r.Timestamp = s.topic, s.key.task.Partition, wr.Key, wr.Value, s.w.stamp
	if wr.Delete {
		r.Value = nil
	}
	s.w.send.send(r, s.acked)
}

// stateTracker holds the stores of a worker's tasks and the changelog
// offsets their writes reached.
//
// Committed writes wait in the overlays (unapplied) and reach Pebble in one
// batch per apply: every applyEvery, or sooner when they fill half of
// the worker's cache budget, on revocation and at shutdown. A due apply
// collects its writes from the overlays in parts, one after each commit
// (see applyPart), so that no commit stops for all of them; revocation
// and shutdown collect the rest at once. The batch is applied on a
// goroutine of its own while the worker goes on (one apply at a time);
// anything that reads Pebble directly (a cache miss, a range scan, a
// restore, the next apply) first waits for the apply in flight.
type stateTracker struct {
	db     *state.DB
	stores map[storeKey]*storeKV
	byTask map[topology.TaskID][]*storeKV // the same views, by task
	budget *state.CacheBudget             // shared by the worker's store caches

	// unappliedOffsets are the checkpoints the unapplied writes reach: the
	// last changelog offset per store-partition of committed transactions.
	unappliedOffsets map[storeKey]int64
	applyEvery       time.Duration
	lastApply        time.Time

	applying chan error // result of the apply in flight; nil if none
	part     *applyPart // the apply being collected; nil if none

	restoreMu sync.Mutex
	toRestore map[string][]int32 // paused source partitions waiting for a restore
}

// settle waits for the apply in flight, if any, and returns its error.
func (st *stateTracker) settle() error {
	if st.applying == nil {
		return nil
	}
	err := <-st.applying
	st.applying = nil
	return err
}

// settledKV is a store-partition's Pebble KV that waits for the apply in
// flight before every read.
type settledKV struct {
	kv state.KV
	st *stateTracker
}

func (s settledKV) Get(key []byte) ([]byte, bool, error) {
	if err := s.st.settle(); err != nil {
		return nil, false, &envError{err}
	}
	return s.kv.Get(key)
}

func (s settledKV) Put(key, value []byte) error {
	if err := s.st.settle(); err != nil {
		return &envError{err}
	}
	return s.kv.Put(key, value)
}

func (s settledKV) Delete(key []byte) error {
	if err := s.st.settle(); err != nil {
		return &envError{err}
	}
	return s.kv.Delete(key)
}

func (s settledKV) Range(start, end []byte) (state.Iterator, error) {
	if err := s.st.settle(); err != nil {
		return nil, &envError{err}
	}
	return s.kv.Range(start, end)
}

func (s settledKV) PrefixScan(prefix []byte) (state.Iterator, error) {
	if err := s.st.settle(); err != nil {
		return nil, &envError{err}
	}
	return s.kv.PrefixScan(prefix)
}

// forgetStores drops the store views of task id (with their caches),
// applying the worker's unapplied writes first if the task has any. Call it
// only outside a transaction, when the task is gone or its stores are about
// to be written underneath (a restore). On error the views are dropped all
// the same: the changelog still holds what did not reach Pebble.
func (w *worker) forgetStores(id topology.TaskID) error {
	views := w.state.byTask[id]
	apply := w.state.part != nil // the apply being collected may hold the task's writes
	for _, s := range views {
		apply = apply || s.Unapplied() > 0
	}
	var err error
	if apply {
		err = w.applyStores()
	}
	if serr := w.state.settle(); err == nil {
		err = serr
	}
	for _, s := range views {
		s.ResetCache()
		delete(w.state.stores, s.key)
		delete(w.state.unappliedOffsets, s.key)
	}
	delete(w.state.byTask, id)
	return err
}

func (w *worker) store(name string, id topology.TaskID) (state.KV, error) {
	if w.state.db == nil {
		return nil, &envError{errors.New("processor: no state database (topology declares no stores)")}
	}
	k := storeKey{name: name, task: id}
	s, ok := w.state.stores[k]
	if !ok {
		s = &storeKV{
			w:       w,
			Overlay: state.NewCachedOverlay(settledKV{kv: w.state.db.KV(name, id.Partition), st: &w.state}, w.state.budget),
			key:     k,
			topic:   w.p.ChangelogTopic(name),
		}
		s.ackedTo.Store(-1)
		s.acked = func(r *kgo.Record, err error) {
			if err != nil {
				w.promise(r, err) // releases r
				return
			}
			for off := r.Offset; ; {
				cur := s.ackedTo.Load()
				if off <= cur || s.ackedTo.CompareAndSwap(cur, off) {
					break
				}
			}
			releaseRecord(r)
		}
		w.state.stores[k] = s
		w.state.byTask[id] = append(w.state.byTask[id], s)
	}
	return s, nil
}

// produceChangelogs logs the latest value of every key written since the
// last call (see storeKV).
func (w *worker) produceChangelogs() {
	for _, s := range w.state.stores {
		w.logBuf = s.TakeUnlogged(w.logBuf[:0])
		for _, wr := range w.logBuf {
			s.produce(wr)
		}
	}
	clear(w.logBuf)
}

// commitStores records that the transaction's store writes are committed
// (call it only once the records that produced them are, and every
// changelog record is acknowledged), and applies the unapplied writes when
// an apply is due.
func (w *worker) commitStores() error {
	if w.state.db == nil {
		return nil
	}
	for k, s := range w.state.stores {
		if s.Pending() > 0 {
			s.Committed()
		}
		if off := s.ackedTo.Swap(-1); off > w.state.unappliedOffsets[k] {
			w.state.unappliedOffsets[k] = off
		}
	}
	return w.applyIfDue()
}

// unappliedShare: committed writes waiting for an apply may fill 1/
// unappliedShare of the cache budget before they are applied early. Half
// of the default budget holds about 110,000 small keys, so a key space of
// that size is applied about once per interval, each key once; at a
// quarter, 100,000 keys written half a million times a second were applied
// about seven times a second (wordcount +14% with half, 15% less CPU).
// The other half stays for cached values that can be evicted.
const unappliedShare = 2

// applyIfDue applies the unapplied writes if there are any and the apply
// interval has passed, they fill half of the cache budget, or there is
// no interval or no cache to wait in. The loops also call it when idle.
// An apply is collected in parts: each call hands over the next part, and
// the call that hands over the last one sends the batch to Pebble. When
// the writes waiting fill the whole budget, the rest is collected at once.
func (w *worker) applyIfDue() error {
	st := &w.state
	if st.db == nil {
		return nil
	}
	limit := st.budget.Limit()
	if st.part != nil {
		if st.budget.Unapplied() >= limit {
			return w.applyStores()
		}
		w.collectApply(st.part.perCall)
		return nil
	}
	if len(st.unappliedOffsets) == 0 && st.budget.Unapplied() == 0 {
		return nil
	}
	if limit <= 0 || st.applyEvery <= 0 {
		return w.applyStores()
	}
	if st.budget.Unapplied() >= limit/unappliedShare || time.Since(st.lastApply) >= st.applyEvery {
		if err := w.startApply(); err != nil || st.part == nil {
			return err
		}
		w.collectApply(st.part.perCall)
	}
	return nil
}

// applyPart is an apply being collected from the overlays (see
// state.Overlay.StartApply): the keys unapplied when it started, with the
// changelog offsets their writes reach.
type applyPart struct {
	stores  []*storeKV // the stores with keys to hand over, in order
	next    int        // the first of them with keys left
	writes  [][]state.Write
	offsets map[storeKey]int64
	perCall int // keys handed over per applyIfDue
}

// minApplyPart is the fewest keys a part of an apply hands over (about a
// quarter of a millisecond's work on a quiet 2-core host, per
// state.BenchmarkApply), so that an apply ends within a few hundred
// commits whatever the commit interval.
const minApplyPart = 2048

// startApply starts collecting an apply of the writes unapplied now. Its
// parts are sized to hand everything over within about half the apply
// interval, at one part per commit.
func (w *worker) startApply() error {
	st := &w.state
	if err := st.settle(); err != nil {
		return err
	}
	st.lastApply = time.Now()
	p := &applyPart{}
	keys := 0
	for _, s := range st.stores {
		if n := s.StartApply(); n > 0 {
			p.stores = append(p.stores, s)
			keys += n
		}
	}
	if keys == 0 && len(st.unappliedOffsets) == 0 {
		return nil
	}
	p.writes = make([][]state.Write, len(p.stores))
	p.offsets = maps.Clone(st.unappliedOffsets)
	clear(st.unappliedOffsets)
	calls := max(1, int(st.applyEvery/2/w.p.cfg.commitInterval))
	p.perCall = max(minApplyPart, (keys+calls-1)/calls)
	st.part = p
	return nil
}

// collectApply hands over up to n more keys of the apply being collected;
// once every key is handed over it ends the apply in the overlays and
// sends the batch to Pebble.
func (w *worker) collectApply(n int) {
	p := w.state.part
	for n > 0 && p.next < len(p.stores) {
		s := p.stores[p.next]
		had := len(p.writes[p.next])
		ws, done := s.TakeApplyPart(p.writes[p.next], n)
		p.writes[p.next] = ws
		n -= len(ws) - had
		if done {
			p.next++
		}
	}
	if p.next < len(p.stores) {
		return
	}
	for _, s := range p.stores {
		s.EndApply()
	}
	w.state.part = nil
	w.sendApply(p)
}

// applyStores applies every unapplied write now: it finishes the apply
// being collected, if any, then applies what is left.
func (w *worker) applyStores() error {
	if w.state.db == nil {
		return nil
	}
	if w.state.part != nil {
		w.collectApply(math.MaxInt)
	}
	if err := w.startApply(); err != nil || w.state.part == nil {
		return err
	}
	w.collectApply(math.MaxInt)
	return nil
}

// sendApply hands a collected apply, together with the changelog offsets
// it reaches, to Pebble as one batch, applied on its own goroutine once
// the previous one is done. An apply that fails is reported by the next
// call, or by anything that waits for it.
func (w *worker) sendApply(p *applyPart) {
	done := make(chan error, 1)
	db, dir := w.state.db, w.p.cfg.stateDir
	go func() {
		// Sorted keys make Pebble's memtable inserts much cheaper (each
		// starts its search where the previous one ended).
		c := &state.Commit{}
		for i, s := range p.stores {
			state.SortWrites(p.writes[i])
			c.Add(s.key.name, s.key.task.Partition, p.writes[i])
		}
		for k, off := range p.offsets {
			c.SetCheckpoint(k.name, k.task.Partition, off)
		}
		if err := db.Commit(c); err != nil {
			done <- fmt.Errorf("processor: apply store writes to %q: %w", dir, err)
			return
		}
		done <- nil
	}()
	w.state.applying = done
}

// discardStores drops the pending writes of an aborted transaction.
func (w *worker) discardStores() {
	for _, s := range w.state.stores {
		s.Discard()
		s.ackedTo.Store(-1)
	}
}

// onAssigned pauses newly assigned partitions of sub-topologies with
// stores: their tasks must not see a record before their stores are
// restored. franz-go calls it before fetching the partitions.
func (w *worker) onAssigned(_ context.Context, cl *kgo.Client, assigned map[string][]int32) {
	if w.state.db == nil {
		return
	}
	pause := map[string][]int32{}
	for t, ps := range assigned {
		sub, ok := w.subFor[t]
		if ok && len(w.p.topo.SubTopologies()[sub].Stores) > 0 {
			pause[t] = ps
		}
	}
	if len(pause) == 0 {
		return
	}
	cl.PauseFetchPartitions(pause)
	w.state.restoreMu.Lock()
	defer w.state.restoreMu.Unlock()
	if w.state.toRestore == nil {
		w.state.toRestore = map[string][]int32{}
	}
	for t, ps := range pause {
		w.state.toRestore[t] = append(w.state.toRestore[t], ps...)
	}
}

// restorePending restores the stores of every paused task, then resumes
// its partitions. Call it only outside a transaction.
func (w *worker) restorePending(ctx context.Context) error {
	w.state.restoreMu.Lock()
	pending := w.state.toRestore
	w.state.toRestore = nil
	w.state.restoreMu.Unlock()
	if len(pending) == 0 {
		return nil
	}
	done := map[topology.TaskID]bool{}
	var parts []storeKey
	for t, ps := range pending {
		sub := w.subFor[t]
		for _, p := range ps {
			id := topology.TaskID{SubTopology: sub, Partition: p}
			if done[id] {
				continue
			}
			done[id] = true
			if err := w.forgetStores(id); err != nil {
				return err
			}
			for _, spec := range w.p.topo.SubTopologies()[sub].Stores {
				parts = append(parts, storeKey{name: spec.Name, task: id})
			}
		}
	}
	if err := w.restoreStores(ctx, parts); err != nil {
		return err
	}
	w.cl.ResumeFetchPartitions(pending)
	return nil
}

// restoreStores replays the changelog partitions of the given
// store-partitions from their applied checkpoints to the end, several at
// once (see changelogReader.readAll).
func (w *worker) restoreStores(ctx context.Context, parts []storeKey) error {
	if len(parts) == 0 {
		return nil
	}
	db := w.state.db
	if w.reader == nil {
		var err error
		if w.reader, err = newChangelogReader(&w.p.cfg); err != nil {
			return err
		}
	}
	began := time.Now()
	targets := make([]*restoreTarget, len(parts))
	for i, k := range parts {
		cp, ok, err := db.Checkpoint(k.name, k.task.Partition)
		if err != nil {
			return fmt.Errorf("processor: checkpoint of store %q partition %d: %w", k.name, k.task.Partition, err)
		}
		from := int64(0)
		if ok {
			from = cp + 1
		}
		targets[i] = &restoreTarget{store: k.name, topic: w.p.ChangelogTopic(k.name), partition: k.task.Partition,
			from: from, restorer: db.Restorer(k.name, k.task.Partition)}
	}
	progress := func(t *restoreTarget, done bool) {
		prog := RestoreProgress{Store: t.store, Partition: t.partition, From: t.from, To: t.end,
			Records: t.records, Elapsed: time.Since(began), Done: done}
		if done {
			prog.To = max(t.end, t.last+1)
			w.log.Info("store restored", "store", t.store, "partition", t.partition, "from", t.from,
				"to", t.last+1, "records", t.records, "seconds", prog.Elapsed.Seconds(), "records_per_sec", int64(prog.Rate()))
		}
		if w.p.cfg.onRestore != nil {
			w.p.cfg.onRestore(prog)
		}
	}
	// Each store-partition is applied, with its checkpoint, as soon as its
	// read ends (its restore batch freed); one sync of Pebble's log then
	// makes them all durable before any is reported done.
	synced := true
	err := w.reader.readAll(ctx, targets, func(t *restoreTarget) { progress(t, false) }, func(t *restoreTarget) error {
		synced = false
		if err := t.restorer.FlushUnsynced(t.last); err != nil {
			return fmt.Errorf("processor: restore store %q partition %d: %w", t.store, t.partition, err)
		}
		return nil
	})
	if err != nil {
		return err
	}
	if !synced {
		if err := db.Sync(); err != nil {
			return fmt.Errorf("processor: restore: sync state directory %q: %w", w.p.cfg.stateDir, err)
		}
	}
	for _, t := range targets {
		progress(t, true)
	}
	return nil
}
