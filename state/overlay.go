package state

import (
	"bytes"
	"fmt"
	"slices"
)

// Write is one pending write of an [Overlay]: a put of Value under Key, or,
// when Delete is true, a tombstone for Key (Value is then nil).
type Write struct {
	Key    []byte
	Value  []byte
	Delete bool
}

// BatchApplier is implemented by a KV that can apply a batch of writes at
// once, ideally atomically. [Overlay.Commit] uses ApplyBatch when its base
// implements it, and falls back to one Put or Delete per write otherwise.
//
// ApplyBatch receives writes in ascending key order with no key repeated. It
// must copy what it keeps: the slice and the slices it refers to are valid
// only for the duration of the call, and must not be modified.
type BatchApplier interface {
	ApplyBatch(writes []Write) error
}

// Overlay is a [KV] that buffers writes over a base KV: the pending batch a
// task writes into during a Kafka transaction. Reads see the overlay's own
// writes: Get consults the pending writes before the base, and Range and
// PrefixScan merge the base's iterator with the pending writes in key order,
// a pending put replacing the base value of the same key and a pending delete
// hiding it. The base is not modified until [Overlay.Commit];
// [Overlay.Discard] drops the pending writes and leaves the base untouched.
//
// Every key the overlay knows is in a hash table of its own (see table),
// with its current value: the pending one if the key was written in the
// open transaction, else its unapplied or cached committed value, so a
// read touches one slot either way. The pending writes are also listed,
// in first-write order, each with what it replaced (for Discard);
// committing does not visit their keys again. Iteration (Range,
// PrefixScan, Writes, Commit) needs the writes sorted: the sorted list
// (with the unapplied values, for scans) is built on demand with
// [SortWrites] and reused until the next write or commit, so a task that
// alternates writes and scans pays for a sort per scan.
//
// An iterator sees a snapshot of the pending writes taken when it was
// created: later Put, Delete, Commit or Discard calls on the overlay do not
// change the pending entries it returns. What it sees of the base depends on
// the base's own iterator semantics (a [NewMemKV] iterator is a snapshot
// too).
//
// Committed writes may reach the base later than the commit: after
// [Overlay.Committed] the pending writes become *unapplied* committed values,
// which reads see (Get, Range and PrefixScan merge them like pending writes)
// and which stay in memory until [Overlay.TakeUnapplied] hands them to the
// caller to apply to the base. A key committed again before that is handed
// over once, with its last value. [Overlay.Commit] does both at once.
//
// An Overlay made with [NewCachedOverlay] also remembers committed values:
// what Get read from the base (including that a key is absent) and the
// values handed over by TakeUnapplied or Commit. Get answers from that cache
// before asking the base. The cache is only correct while every write to
// the base goes through the overlay: after writing to the base any other
// way, call [Overlay.ResetCache].
//
// An Overlay is not safe for concurrent use, and the base must not be written
// to directly while the overlay has pending writes.
type Overlay struct {
	base      KV
	keys      table          // every key the overlay knows: pending, unapplied or cached
	dirty     []pendingWrite // the pending writes, one per key, in first-write order
	undo      []byte         // the inline values pending writes replaced (see pendingWrite)
	gen       uint32         // the transaction number: a slot's pend counts only if its pgen is gen
	unlogged  []int32        // slots whose pending value TakeUnlogged has not handed out yet
	unapplied []int32        // slots with an unapplied committed value, in commit order
	sorted    []Write        // pending in key order; nil when stale. Never modified in place.
	merged    []Write        // pending and unapplied in key order (see view); nil when stale
	budget    *CacheBudget   // nil: no cache, keys are known only while pending or unapplied
	evictAt   int            // the slot where the next eviction scan starts
	evictable int64          // bytes of this overlay's cached values that may be dropped (in the budget's used)
	// evictScanned counts the slots eviction scans visited (for tests).
	evictScanned int

	// An apply in parts (StartApply) covers unapplied[:applyEnd], of which
	// unapplied[:applyNext] were handed out; applyEnd is 0 when none is
	// under way. applyEpoch numbers the applies; handed is the bytes of the
	// values the one under way handed out (counted as unapplied in the
	// budget, since they must stay until it ends, and evictable after).
	applyNext, applyEnd int
	applyEpoch          uint8
	handed              int64
}

// pendingWrite is a key's pending write. The pending value itself is in
// the key's slot, where reads find it (one cache line); the entry keeps
// what the slot held before the transaction's first write of the key, so
// that Discard can put it back: the cached state, whether it was
// unapplied, and the value (inline ones copied into the overlay's undo
// bytes, values in ext shared, since those are never modified in place).
type pendingWrite struct {
	slot      int32
	prevState uint8 // cachedState before the first write
	prevUnapp bool  // the slot was unapplied before the first write
	prevOff   int32 // the previous inline value is undo[prevOff:prevOff+prevLen]
	prevLen   int32
	prevExt   []byte // the previous value when it was in ext (then prevLen is -1)
}

const (
	// cachedState
	notCached uint8 = iota
	valuePresent
	valueAbsent
)

// size is what slot i accounts for in the budget.
func (o *Overlay) size(i int32) int64 {
	n := o.keys.keyLen(i) + cacheEntryOverhead
	if o.keys.slots[i].cachedState == valuePresent {
		n += len(o.keys.value(i))
	}
	return int64(n)
}

// appendCommitted appends to ws the writes that take the base to the
// committed values of the slots is for which keep is true (every slot if
// keep is nil): a slot's own value, or for a key with a pending write the
// value that write replaced. Keys and inline values are copied, all into
// one new buffer, since they live in the slots; values in ext are shared.
func (o *Overlay) appendCommitted(ws []Write, is []int32, keep func(int32) bool) []Write {
	var buf []byte
	for _, i := range is {
		if keep != nil && !keep(i) {
			continue
		}
		if w := o.pendingOf(i); w != nil {
			ws, buf = o.appendPrev(ws, buf, i, w)
			continue
		}
		ws, buf = o.appendCurrent(ws, buf, i)
	}
	return ws
}

// appendCurrent appends to ws the write that sets slot i's key to the
// slot's value (a delete if it is absent).
func (o *Overlay) appendCurrent(ws []Write, buf []byte, i int32) ([]Write, []byte) {
	s := &o.keys.slots[i]
	return o.appendWrite(ws, buf, i, s.cachedState == valuePresent, o.keys.value(i), s.flags&slotExtValue != 0)
}

// appendPrev is appendCurrent for the value pending write w replaced.
func (o *Overlay) appendPrev(ws []Write, buf []byte, i int32, w *pendingWrite) ([]Write, []byte) {
	return o.appendWrite(ws, buf, i, w.prevState == valuePresent, o.prevValue(w), w.prevLen < 0)
}

// appendWrite appends to ws a write of slot i's key: a put of v if
// present, else a delete. The key, and v unless shared (a value in ext,
// never modified in place), are copied to buf.
func (o *Overlay) appendWrite(ws []Write, buf []byte, i int32, present bool, v []byte, shared bool) ([]Write, []byte) {
	start := len(buf)
	buf = o.keys.appendKey(buf, i)
	w := Write{Key: buf[start:len(buf):len(buf)]}
	switch {
	case !present:
		w.Delete = true
	case shared:
		w.Value = v
	default:
		start = len(buf)
		buf = append(buf, v...)
		w.Value = buf[start:len(buf):len(buf)]
	}
	return append(ws, w), buf
}

// prevValue returns the value pending write w replaced (when its
// prevState is valuePresent): shared with ext, or in the undo bytes.
func (o *Overlay) prevValue(w *pendingWrite) []byte {
	if w.prevLen < 0 {
		return w.prevExt
	}
	return o.undo[w.prevOff : w.prevOff+w.prevLen]
}

// pendingOf returns slot i's pending write, nil if it has none.
func (o *Overlay) pendingOf(i int32) *pendingWrite {
	s := &o.keys.slots[i]
	if !o.hasPending(s) {
		return nil
	}
	return &o.dirty[s.pend-1]
}

// hasPending reports whether slot s holds a pending write.
func (o *Overlay) hasPending(s *slot) bool { return s.pend != 0 && s.pgen == o.gen }

// cacheEntryOverhead approximates what a cached key costs besides its key
// and value bytes (its slot, at the table's load, and bookkeeping).
const cacheEntryOverhead = 128

// CacheBudget bounds the memory of the caches of several overlays (for
// example every store of one worker). When caching a value takes the
// overlays together over the limit, the overlay caching drops cached values
// of its own, in no particular order, until the total is below seven eighths
// of the limit. Pending values and unapplied committed values count too
// but are never dropped: their owner should commit and hand them over (see
// [Overlay.TakeUnapplied]) when [CacheBudget.Unapplied], which counts
// both, grows large. While they alone keep the total above seven eighths
// of the limit, nothing new is cached. A CacheBudget is not
// safe for concurrent use: the overlays sharing one must be used from one
// goroutine.
type CacheBudget struct {
	limit, used, unapplied int64
}

// NewCacheBudget returns a budget of limit bytes (key and value bytes plus
// a fixed per-entry overhead). A limit of 0 or less caches nothing.
func NewCacheBudget(limit int64) *CacheBudget { return &CacheBudget{limit: limit} }

// Used returns the bytes the overlays sharing b account for now.
func (b *CacheBudget) Used() int64 { return b.used }

// Limit returns the budget's limit in bytes.
func (b *CacheBudget) Limit() int64 { return b.limit }

// Unapplied returns the bytes of pending and unapplied committed values
// among Used, and of the values an apply in parts under way handed out
// (see [Overlay.StartApply]): what cannot be evicted.
func (b *CacheBudget) Unapplied() int64 { return b.unapplied }

var _ KV = (*Overlay)(nil)

// NewOverlay returns a KV that buffers writes over base until Commit or
// Discard.
func NewOverlay(base KV) *Overlay {
	return &Overlay{base: base, keys: newTable()}
}

// NewCachedOverlay is NewOverlay with a cache of committed values whose
// memory counts against budget. A nil budget, or one with no room, caches
// nothing.
func NewCachedOverlay(base KV, budget *CacheBudget) *Overlay {
	o := NewOverlay(base)
	if budget != nil && budget.limit > 0 {
		o.budget = budget
	}
	return o
}

// Prefetch tells the overlay that key is about to be read or written: it
// loads the part of the overlay's index where key would be into the CPU's
// cache, and changes nothing. On a large store the index does not fit the
// cache and every Get waits for memory once; prefetching the keys of the
// next few records in a row lets those waits overlap. A key never used is
// harmless, a wasted load.
func (o *Overlay) Prefetch(key []byte) { o.keys.warm(key) }

// Get returns the pending value of key if there is one, reports it absent if
// it has a pending delete, then tries the cache, and otherwise returns the
// base's value. The returned value is owned by the caller.
func (o *Overlay) Get(key []byte) ([]byte, bool, error) {
	v, ok, shared, err := o.lookup(key)
	if ok && shared {
		v = bytes.Clone(v)
	}
	return v, ok, err
}

var _ Viewer = (*Overlay)(nil)

// GetView is Get without the copy (see [Viewer]): the value may be shared
// with the overlay's pending writes or cache. It is valid until the next
// call on the overlay and must not be modified.
func (o *Overlay) GetView(key []byte) ([]byte, bool, error) {
	v, ok, _, err := o.lookup(key)
	return v, ok, err
}

// lookup finds key's value; shared reports that the overlay keeps a
// reference to it (else it is the base's copy, and nobody else's).
func (o *Overlay) lookup(key []byte) (v []byte, ok, shared bool, err error) {
	i := o.keys.find(key)
	if i >= 0 {
		// A slot's value is the pending one if the key has a pending
		// write, else the committed one (unapplied or cached).
		switch o.keys.slots[i].cachedState {
		case valueAbsent:
			return nil, false, false, nil
		case valuePresent:
			return o.keys.value(i), true, true, nil
		}
	}
	v, ok, err = o.base.Get(key)
	if err != nil || o.budget == nil {
		return v, ok, false, err
	}
	if i < 0 {
		i = o.insert(key)
	}
	if ok {
		o.cache(i, v, valuePresent)
		return v, true, true, nil
	}
	o.cache(i, nil, valueAbsent)
	return nil, false, false, nil
}

// insert adds key to the table, which must not hold it, and returns its
// slot, remapping the slot indices the overlay keeps if the table is
// rehashed.
func (o *Overlay) insert(key []byte) int32 {
	return o.keys.insert(key, func(moved []int32) {
		for j := range o.dirty {
			o.dirty[j].slot = moved[o.dirty[j].slot]
		}
		for j, i := range o.unapplied {
			o.unapplied[j] = moved[i]
		}
		for j, i := range o.unlogged {
			o.unlogged[j] = moved[i]
		}
		o.evictAt = 0
	})
}

// cache records the committed value of slot i, evicting to stay within the
// budget. Without a budget it caches nothing.
func (o *Overlay) cache(i int32, v []byte, st uint8) {
	if o.budget == nil {
		return
	}
	o.uncount(i)
	o.keys.setValue(i, v, st)
	o.count(i)
	o.fit(i)
}

// fit evicts to bring the budget back under its limit after slot i's value
// was counted: down to seven eighths of the limit, or, when dropping every
// value this overlay may drop would not get there (the rest is unapplied,
// pending, or other overlays' values), not at all, and i's own value is
// not kept unless it is unapplied. So the table is walked only when the
// walk reaches the target, and then frees an eighth of the budget.
func (o *Overlay) fit(i int32) {
	b := o.budget
	if b.used <= b.limit {
		return
	}
	target := b.limit - b.limit/8
	if b.used-o.evictable > target {
		if o.droppable(&o.keys.slots[i]) {
			o.uncache(i)
		}
		return
	}
	o.evict(target)
}

// evict drops cached values (not unapplied ones) until the budget's used
// bytes are at most target, scanning the table from where the last
// eviction stopped.
func (o *Overlay) evict(target int64) {
	t := &o.keys
	n := len(t.slots)
	for range n {
		if o.budget.used <= target || o.evictable == 0 {
			return
		}
		if o.evictAt >= n {
			o.evictAt = 0
		}
		i := int32(o.evictAt)
		o.evictAt++
		o.evictScanned++
		if s := &t.slots[i]; t.used(s) && o.droppable(s) {
			o.uncache(i)
		}
	}
}

// count adds slot i's cached value to the budget; uncount takes it out.
// Without a budget they do nothing.
func (o *Overlay) count(i int32) {
	s := &o.keys.slots[i]
	if o.budget == nil || s.cachedState == notCached {
		return
	}
	n := o.size(i)
	o.budget.used += n
	switch {
	case s.flags&slotUnapplied != 0:
		o.budget.unapplied += n
	case o.handedNow(s):
		o.budget.unapplied += n
		o.handed += n
	default:
		o.evictable += n
	}
}

func (o *Overlay) uncount(i int32) {
	s := &o.keys.slots[i]
	if o.budget == nil || s.cachedState == notCached {
		return
	}
	n := o.size(i)
	o.budget.used -= n
	switch {
	case s.flags&slotUnapplied != 0:
		o.budget.unapplied -= n
	case o.handedNow(s):
		o.budget.unapplied -= n
		o.handed -= n
	default:
		o.evictable -= n
	}
}

// handedNow reports whether slot s's value was handed out by the apply in
// parts under way: applied, but not in the base yet.
func (o *Overlay) handedNow(s *slot) bool {
	return s.flags&slotHanded != 0 && o.applyEnd != 0 && s.epoch == o.applyEpoch
}

// droppable reports whether slot s's value may be evicted.
func (o *Overlay) droppable(s *slot) bool {
	return s.flags&slotUnapplied == 0 && !o.handedNow(s)
}

// uncache forgets the cached value of slot i, and the key itself. The
// value must be neither unapplied nor pending.
func (o *Overlay) uncache(i int32) {
	s := &o.keys.slots[i]
	if s.cachedState == notCached {
		return
	}
	o.uncount(i)
	o.keys.setValue(i, nil, notCached)
	o.keys.remove(i)
}

// Put records a pending put of value under key. It copies both slices. A nil
// value is stored as an empty value.
func (o *Overlay) Put(key, value []byte) error {
	o.write(key, value, false)
	return nil
}

// Delete records a pending delete (a tombstone) for key. The tombstone is
// recorded whether or not the base holds key, so it counts in Pending and
// appears in Writes.
func (o *Overlay) Delete(key []byte) error {
	o.write(key, nil, true)
	return nil
}

func (o *Overlay) write(key, value []byte, del bool) {
	t := &o.keys
	i := t.find(key)
	if i < 0 {
		i = o.insert(key)
	}
	s := &t.slots[i]
	if !o.hasPending(s) {
		// The key's first write in the transaction: remember what the
		// slot held, for Discard.
		w := pendingWrite{slot: i, prevState: s.cachedState, prevUnapp: s.flags&slotUnapplied != 0}
		if s.cachedState == valuePresent {
			if s.flags&slotExtValue != 0 {
				w.prevExt, w.prevLen = t.value(i), -1
			} else {
				w.prevOff = int32(len(o.undo))
				o.undo = append(o.undo, t.value(i)...)
				w.prevLen = int32(len(o.undo)) - w.prevOff
			}
		}
		o.dirty = append(o.dirty, w)
		s.pend, s.pgen = int32(len(o.dirty)), o.gen
		s.flags &^= slotLogged
		o.unlogged = append(o.unlogged, i)
	} else if s.flags&slotLogged != 0 {
		s.flags &^= slotLogged
		o.unlogged = append(o.unlogged, i)
	}
	o.uncount(i)
	if del {
		t.setValue(i, nil, valueAbsent)
	} else {
		if len(value) > inlineLen {
			value = bytes.Clone(value) // kept by the slot's ext entry
		}
		t.setValue(i, value, valuePresent)
	}
	s = &t.slots[i]
	s.flags |= slotUnapplied
	o.count(i)
	if o.budget != nil {
		o.fit(i)
	}
	o.sorted, o.merged = nil, nil
}

// Committed tells the overlay that its pending writes are committed: they
// become unapplied committed values, which reads go on seeing and which
// stay in memory (whatever the cache budget) until TakeUnapplied hands them
// over. The pending set is empty again. The slices of earlier Writes and
// UnorderedWrites results stay valid.
//
// The pending values already are in their slots, counted in the budget
// and marked unapplied, so committing does not visit the slots: it moves
// the transaction number on, which ends every pending write at once.
func (o *Overlay) Committed() {
	for j := range o.dirty {
		if w := &o.dirty[j]; !w.prevUnapp {
			o.unapplied = append(o.unapplied, w.slot)
		}
	}
	o.endTxn()
}

// endTxn forgets the pending writes (their values stay in the slots).
func (o *Overlay) endTxn() {
	clear(o.dirty)
	o.dirty, o.undo, o.sorted, o.merged = o.dirty[:0], o.undo[:0], nil, nil
	o.unlogged = o.unlogged[:0]
	o.gen++
	if o.gen == 0 {
		// The number wrapped: clear every slot's pend, so that none from
		// long ago looks current.
		for i := range o.keys.slots {
			o.keys.slots[i].pend = 0
		}
	}
}

// Unapplied returns the number of keys with an unapplied committed value.
func (o *Overlay) Unapplied() int { return len(o.unapplied) - o.applyNext }

// TakeUnapplied returns the unapplied committed values as writes, one per
// key, in commit order (not sorted), and from then on treats them as
// applied to the base: the caller must apply them before anything reads
// the base again. With a cache they stay cached (and may be evicted);
// without one the overlay forgets them. The slices may be shared with the
// overlay and must not be modified; they stay valid whatever the overlay
// does next. It also ends an apply in parts under way (see StartApply),
// whose keys it hands out again: apply what TakeApplyPart returned first.
func (o *Overlay) TakeUnapplied() []Write {
	if len(o.unapplied) == 0 {
		return nil
	}
	ws := o.appendCommitted(make([]Write, 0, len(o.unapplied)), o.unapplied, nil)
	o.markApplied()
	return ws
}

// StartApply begins handing over the unapplied committed values in parts,
// for a caller that cannot stop for all of them at once: TakeApplyPart
// hands out a few at a time, and EndApply ends the apply once the caller
// has them all. The apply covers the keys unapplied now (it returns how
// many); keys committed later wait for the next one. Reads, writes and
// commits go on meanwhile. A handed-out value counts as applied at once
// (a key written again goes in the next apply), but it stays in memory
// until EndApply: the caller must apply every handed-out write before
// anything reads the base after EndApply. StartApply during an apply
// under way changes nothing and returns how many keys that one still has
// to hand out.
func (o *Overlay) StartApply() int {
	if o.applyEnd == 0 && len(o.unapplied) > 0 {
		o.applyNext, o.applyEnd = 0, len(o.unapplied)
		o.applyEpoch++
		if o.applyEpoch == 0 {
			// The number wrapped: forget every earlier apply's marks,
			// so that none looks current.
			for i := range o.keys.slots {
				o.keys.slots[i].flags &^= slotHanded
			}
		}
	}
	return o.applyEnd - o.applyNext
}

// TakeApplyPart appends to ws, and returns, the committed values of up to n
// more keys of the apply under way (see StartApply), as TakeUnapplied
// would, and reports whether every key of the apply was handed out. For a
// key with a pending write it hands out the committed value that write
// replaced. Each key's work happens here, a part at a time, so that
// EndApply does not visit the keys again.
func (o *Overlay) TakeApplyPart(ws []Write, n int) ([]Write, bool) {
	end := o.applyEnd
	if n < end-o.applyNext {
		end = o.applyNext + max(n, 0)
	}
	var buf []byte
	for _, i := range o.unapplied[o.applyNext:end] {
		s := &o.keys.slots[i]
		o.uncount(i)
		if w := o.pendingOf(i); w != nil {
			ws, buf = o.appendPrev(ws, buf, i, w)
			// The replaced value is applied: if the write commits, the
			// key is listed again; if it is discarded, the slot goes
			// back to the handed-out value.
			w.prevUnapp = false
		} else {
			ws, buf = o.appendCurrent(ws, buf, i)
			s.flags &^= slotUnapplied
		}
		s.flags |= slotHanded
		s.epoch = o.applyEpoch
		o.count(i)
	}
	o.applyNext = end
	return ws, end == o.applyEnd
}

// EndApply ends the apply under way: the values TakeApplyPart handed out
// become ordinary cached ones (without a cache, the overlay forgets them),
// and the keys it did not hand out stay unapplied. The caller must have
// applied every handed-out write, or be about to before anything reads the
// base again.
func (o *Overlay) EndApply() {
	if o.applyEnd == 0 {
		return
	}
	if o.budget == nil {
		for _, i := range o.unapplied[:o.applyNext] {
			if s := &o.keys.slots[i]; o.handedNow(s) && s.flags&slotUnapplied == 0 && !o.hasPending(s) {
				o.uncache(i)
			}
		}
	}
	n := copy(o.unapplied, o.unapplied[o.applyNext:])
	clear(o.unapplied[n:])
	o.unapplied, o.merged = o.unapplied[:n], nil
	o.closeApply()
	o.shrink()
}

// closeApply ends the apply under way, if any, in the accounting: what it
// handed out becomes evictable.
func (o *Overlay) closeApply() {
	if o.budget != nil {
		o.budget.unapplied -= o.handed
		o.evictable += o.handed
	}
	o.handed, o.applyNext, o.applyEnd = 0, 0, 0
}

// setApplied makes slot i's unapplied value an ordinary cached one (the
// caller removes i from the unapplied list). If the key has a pending
// write, the slot keeps that (unapplied) value, and the committed value
// the write replaced, now applied, is what Discard would put back.
func (o *Overlay) setApplied(i int32) {
	if w := o.pendingOf(i); w != nil {
		w.prevUnapp = false
		return
	}
	o.uncount(i)
	o.keys.slots[i].flags &^= slotUnapplied
	o.count(i)
}

// markApplied turns the unapplied values into ordinary cached ones.
func (o *Overlay) markApplied() {
	o.closeApply()
	for _, i := range o.unapplied {
		o.setApplied(i)
		if o.budget == nil && !o.hasPending(&o.keys.slots[i]) {
			o.uncache(i)
		}
	}
	o.unapplied, o.merged = o.unapplied[:0], nil
	o.shrink() // values kept only because they were unapplied may go now
}

// shrink evicts down to seven eighths of the budget if it is over its
// limit.
func (o *Overlay) shrink() {
	if b := o.budget; b != nil && b.used > b.limit {
		o.evict(b.limit - b.limit/8)
	}
}

// ResetCache empties the cache of committed values, unapplied ones
// included, and returns its memory to the budget. Call it after the base
// was written to other than through the overlay, and when dropping an
// overlay whose budget lives on. Unapplied values are lost: only reset an
// overlay that has none, or whose base is about to be rebuilt from
// elsewhere (a changelog restore). Pending writes stay; Discard then
// leaves their keys uncached.
func (o *Overlay) ResetCache() {
	o.closeApply()
	for _, i := range o.unapplied {
		o.setApplied(i)
	}
	o.unapplied, o.merged = o.unapplied[:0], nil
	for j := range o.dirty {
		w := &o.dirty[j]
		w.prevState, w.prevUnapp, w.prevExt, w.prevLen = notCached, false, nil, 0
	}
	for i := range o.keys.slots {
		if s := &o.keys.slots[i]; o.keys.used(s) && !o.hasPending(s) {
			o.uncache(int32(i))
		}
	}
}

// TakeUnlogged appends to ws, and returns, the pending writes whose
// values it has not handed out yet: every key written since the previous
// call (or since the last Committed or Discard), once, with its latest
// value, in the order the keys were first written or first written again
// after the previous call. It is for a caller that logs the pending writes
// as it goes (a changelog): logging what TakeUnlogged returns, and once
// more before committing, logs every key's final value, and a key written
// many times between two calls only once. The slices must not be modified;
// they stay valid whatever the overlay does next.
func (o *Overlay) TakeUnlogged(ws []Write) []Write {
	var buf []byte
	for _, i := range o.unlogged {
		o.keys.slots[i].flags |= slotLogged
		ws, buf = o.appendCurrent(ws, buf, i)
	}
	o.unlogged = o.unlogged[:0]
	return ws
}

// UnorderedWrites returns the pending writes, one per key, in the order the
// keys were first written since the last Commit, Applied or Discard, in a
// new slice. Unlike Writes it does not sort; the key and value slices must
// not be modified.
func (o *Overlay) UnorderedWrites() []Write {
	ws := make([]Write, 0, len(o.dirty))
	var buf []byte
	for j := range o.dirty {
		ws, buf = o.appendCurrent(ws, buf, o.dirty[j].slot)
	}
	return ws
}

// Range returns an iterator over the keys in [start, end) of the merged view:
// the base's keys and the pending writes, in ascending order. A nil start
// means from the first key; a nil end means to the last key.
func (o *Overlay) Range(start, end []byte) (Iterator, error) {
	bit, err := o.base.Range(start, end)
	if err != nil {
		return nil, err
	}
	return &overlayIter{base: bit, pending: o.window(start, end)}, nil
}

// PrefixScan returns an iterator over the keys of the merged view that begin
// with prefix, in ascending order. An empty prefix iterates over every key.
func (o *Overlay) PrefixScan(prefix []byte) (Iterator, error) {
	bit, err := o.base.PrefixScan(prefix)
	if err != nil {
		return nil, err
	}
	var pending []Write
	if len(prefix) == 0 {
		pending = o.window(nil, nil)
	} else {
		pending = o.window(prefix, prefixEnd(prefix))
	}
	return &overlayIter{base: bit, pending: pending}, nil
}

// window returns the sorted writes of view with keys in [start, end), with
// the same nil conventions as Range. The result shares o.sorted or o.merged,
// which are never modified in place, so it is a snapshot.
func (o *Overlay) window(start, end []byte) []Write {
	ws := o.view()
	lo, hi := 0, len(ws)
	if start != nil {
		lo, _ = searchWrites(ws, start)
	}
	if end != nil {
		hi, _ = searchWrites(ws, end)
	}
	if hi < lo {
		hi = lo
	}
	return slices.Clip(ws[lo:hi])
}

func searchWrites(ws []Write, key []byte) (int, bool) {
	return slices.BinarySearchFunc(ws, key, func(w Write, k []byte) int {
		return bytes.Compare(w.Key, k)
	})
}

// Pending returns the number of keys with a pending write (puts and
// tombstones).
func (o *Overlay) Pending() int { return len(o.dirty) }

// Writes returns the pending writes in ascending key order, one per key. The
// slice and the slices it refers to are shared with the overlay: they are
// valid until the next Put, Delete, Commit or Discard, and must not be
// modified. Sorting costs O(n log n) on the first call after a write.
func (o *Overlay) Writes() []Write {
	if o.sorted == nil && len(o.dirty) > 0 {
		ws := o.UnorderedWrites()
		SortWrites(ws)
		o.sorted = ws
	}
	return o.sorted
}

// view returns what reads merge over the base, in ascending key order: the
// pending writes, and the unapplied committed values of keys without a
// pending write. Like Writes it is built on demand and shared.
func (o *Overlay) view() []Write {
	if len(o.unapplied) == 0 {
		return o.Writes()
	}
	if o.merged == nil {
		// Values an apply under way handed out are not in the base yet:
		// they count unless the key was written again since (it is then
		// pending, or unapplied and listed again).
		ws := o.appendCommitted(o.UnorderedWrites(), o.unapplied[:o.applyNext], func(i int32) bool {
			s := &o.keys.slots[i]
			return !o.hasPending(s) && s.flags&slotUnapplied == 0
		})
		ws = o.appendCommitted(ws, o.unapplied[o.applyNext:], func(i int32) bool { return !o.hasPending(&o.keys.slots[i]) })
		SortWrites(ws)
		o.merged = ws
	}
	return o.merged
}

// Commit applies the pending writes, and any unapplied committed values, to
// the base in ascending key order and then clears them (with a cache, they
// become cached committed values). If the base implements [BatchApplier],
// Commit hands it all the writes in one ApplyBatch call; otherwise it calls
// Put or Delete on the base once per write. Commit with nothing to apply does
// nothing.
//
// On error the overlay is unchanged and the error is returned. Without
// ApplyBatch the base may then hold some of the writes; since every write
// sets a key to its final state, calling Commit again is safe.
func (o *Overlay) Commit() error {
	ws := o.view()
	if len(ws) == 0 {
		return nil
	}
	if b, ok := o.base.(BatchApplier); ok {
		if err := b.ApplyBatch(ws); err != nil {
			return fmt.Errorf("state: overlay commit: apply batch: %w", err)
		}
	} else {
		for _, w := range ws {
			var err error
			if w.Delete {
				err = o.base.Delete(w.Key)
			} else {
				err = o.base.Put(w.Key, w.Value)
			}
			if err != nil {
				return fmt.Errorf("state: overlay commit: key %q: %w", w.Key, err)
			}
		}
	}
	o.Committed()
	o.markApplied()
	return nil
}

// Discard drops the pending writes. The base is not touched.
func (o *Overlay) Discard() {
	t := &o.keys
	for j := range o.dirty {
		w := &o.dirty[j]
		i := w.slot
		o.uncount(i)
		if w.prevState == valuePresent {
			t.setValue(i, o.prevValue(w), valuePresent)
		} else {
			t.setValue(i, nil, w.prevState)
		}
		s := &t.slots[i]
		s.pend = 0
		s.flags &^= slotUnapplied | slotLogged
		if w.prevUnapp {
			s.flags |= slotUnapplied
		}
		o.count(i)
		// Without a cache a key is known only while it is pending or
		// unapplied.
		if w.prevState == notCached || o.budget == nil && !w.prevUnapp && !o.handedNow(s) {
			t.setValue(i, nil, notCached)
			t.remove(i)
		}
	}
	o.endTxn()
	o.shrink()
}

// overlayIter merges a base iterator with a sorted snapshot of pending writes.
type overlayIter struct {
	base     Iterator
	baseOK   bool // base is positioned on a pair not yet consumed
	baseDone bool // base is exhausted (or failed, see err)
	pending  []Write
	pi       int // next pending write to consider

	key, value []byte // current pair; nil when not positioned
	kbuf, vbuf []byte // reused copies of the current pending pair
	fromBase   bool   // current pair is the base's current pair
	err        error
	closed     bool
}

func (it *overlayIter) Next() bool {
	it.key, it.value = nil, nil
	if it.closed || it.err != nil {
		return false
	}
	if it.fromBase {
		// The current pair was the base's; it has been consumed.
		it.baseOK = false
		it.fromBase = false
	}
	for {
		if !it.baseOK && !it.baseDone {
			if it.base.Next() {
				it.baseOK = true
			} else {
				it.baseDone = true
				if err := it.base.Err(); err != nil {
					it.err = err
					return false
				}
			}
		}
		if it.pi >= len(it.pending) {
			if !it.baseOK {
				return false
			}
			it.key, it.value, it.fromBase = it.base.Key(), it.base.Value(), true
			return true
		}
		w := it.pending[it.pi]
		if it.baseOK {
			c := bytes.Compare(it.base.Key(), w.Key)
			if c < 0 {
				it.key, it.value, it.fromBase = it.base.Key(), it.base.Value(), true
				return true
			}
			if c == 0 {
				it.baseOK = false // the pending write replaces or hides it
			}
		}
		it.pi++
		if !w.Delete {
			// Copies, so that a caller writing into them despite the
			// Iterator contract cannot corrupt the pending batch.
			it.kbuf = append(it.kbuf[:0], w.Key...)
			it.vbuf = append(it.vbuf[:0], w.Value...)
			it.key, it.value = it.kbuf, it.vbuf
			return true
		}
	}
}

func (it *overlayIter) Key() []byte   { return it.key }
func (it *overlayIter) Value() []byte { return it.value }
func (it *overlayIter) Err() error    { return it.err }

func (it *overlayIter) Close() error {
	if it.closed {
		return it.err
	}
	it.closed = true
	it.key, it.value, it.pending, it.kbuf, it.vbuf = nil, nil, nil, nil, nil
	if err := it.base.Close(); err != nil && it.err == nil {
		it.err = err
	}
	return it.err
}
