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
// Pending writes are kept in a map (with the unapplied and cached values,
// if any). Iteration (Range, PrefixScan, Writes, Commit) needs them sorted:
// the sorted list (with the unapplied values, for scans) is built on demand
// with [SortWrites] and reused until the next write or commit, so a task
// that alternates writes and scans pays for a sort per scan.
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
	entries   entryMap     // pending writes, unapplied and cached committed values
	dirty     []*entry     // entries with a pending write, in write order
	rewritten []*entry     // pending entries written again since their first write (see Rewritten)
	unapplied []*entry     // entries with an unapplied committed value, in commit order
	sorted    []Write      // pending in key order; nil when stale. Never modified in place.
	merged    []Write      // pending and unapplied in key order (see view); nil when stale
	budget    *CacheBudget // nil: no cache, entries exist only while pending or unapplied
}

// entry is what an overlay knows about one key: a pending write, a cached
// committed value, or both. Keys and pending values are never modified in
// place, so slices handed out by Writes stay valid. A committed value of up
// to inlineLen bytes is kept in the entry itself (one cache miss fewer per
// read of a large store) and changes in place: it is copied wherever it is
// handed out (see appendCommitted).
//
// The fields a read of a committed value touches come first, in the
// entry's first 64 bytes.
type entry struct {
	cached []byte // the committed value, when cachedState is valuePresent (may alias inline)
	// write is the pending write's kind, cachedState what the cache knows.
	write, cachedState uint8
	// unapplied: the committed value (cachedState) is not in the base yet.
	// Such an entry is never evicted.
	unapplied bool
	// rewritten: the entry is in the overlay's rewritten list.
	rewritten bool
	inline    [inlineLen]byte
	key       []byte
	pending   []byte // the pending value; nil if none or a tombstone
}

// inlineLen is the longest committed value an entry keeps inline.
const inlineLen = 16

// setCached records v as e's committed value, inline if it fits.
func (e *entry) setCached(v []byte, st uint8) {
	e.cachedState = st
	if st != valuePresent || len(v) > inlineLen {
		e.cached = v
		return
	}
	n := copy(e.inline[:], v)
	e.cached = e.inline[:n:n]
}

const (
	// write
	noWrite uint8 = iota
	putWrite
	deleteWrite
)

const (
	// cachedState
	notCached uint8 = iota
	valuePresent
	valueAbsent
)

func (e *entry) size() int64 { return int64(len(e.key) + len(e.cached) + cacheEntryOverhead) }

func (e *entry) asWrite() Write {
	return Write{Key: e.key, Value: e.pending, Delete: e.write == deleteWrite}
}

// appendCommitted appends to ws the writes that take the base to the
// committed values of the entries es for which keep is true (every entry
// if keep is nil). Inline values are copied, all into one new buffer, since
// they change with the entry.
func appendCommitted(ws []Write, es []*entry, keep func(*entry) bool) []Write {
	n := 0
	for _, e := range es {
		if keep == nil || keep(e) {
			n += len(e.cached)
		}
	}
	buf := make([]byte, 0, n)
	for _, e := range es {
		if keep != nil && !keep(e) {
			continue
		}
		w := Write{Key: e.key, Value: e.cached, Delete: e.cachedState == valueAbsent}
		if !w.Delete && len(e.cached) <= inlineLen {
			start := len(buf)
			buf = append(buf, e.cached...)
			w.Value = buf[start:len(buf):len(buf)]
		}
		ws = append(ws, w)
	}
	return ws
}

// cacheEntryOverhead approximates what a cached key costs besides its key
// and value bytes (map slot, entry, slice headers).
const cacheEntryOverhead = 128

// CacheBudget bounds the memory of the caches of several overlays (for
// example every store of one worker). When caching a value takes the
// overlays together over the limit, the overlay caching drops cached values
// of its own, in no particular order, until the total is below seven eighths
// of the limit. Unapplied committed values count too but are never dropped:
// their owner should hand them over (see [Overlay.TakeUnapplied]) when
// [CacheBudget.Unapplied] grows large. While they alone keep the total above
// seven eighths of the limit, nothing new is cached. A CacheBudget is not
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

// Unapplied returns the bytes of unapplied committed values among Used.
func (b *CacheBudget) Unapplied() int64 { return b.unapplied }

var _ KV = (*Overlay)(nil)

// NewOverlay returns a KV that buffers writes over base until Commit or
// Discard.
func NewOverlay(base KV) *Overlay {
	return &Overlay{base: base, entries: newEntryMap()}
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
	e := o.entries.get(key)
	if e != nil {
		switch {
		case e.write == putWrite:
			return e.pending, true, true, nil
		case e.write == deleteWrite, e.cachedState == valueAbsent:
			return nil, false, false, nil
		case e.cachedState == valuePresent:
			return e.cached, true, true, nil
		}
	}
	v, ok, err = o.base.Get(key)
	if err != nil || o.budget == nil {
		return v, ok, false, err
	}
	if e == nil {
		e = o.newEntry(key)
	}
	if ok {
		o.cache(e, v, valuePresent)
		return v, true, true, nil
	}
	o.cache(e, nil, valueAbsent)
	return nil, false, false, nil
}

// newEntry adds an empty entry for a copy of key.
func (o *Overlay) newEntry(key []byte) *entry {
	e := &entry{key: bytes.Clone(key)}
	if e.key == nil {
		e.key = []byte{}
	}
	o.entries.put(e)
	return e
}

// cache records the committed value of e's key, evicting to stay within
// the budget. Without a budget it caches nothing.
func (o *Overlay) cache(e *entry, v []byte, st uint8) {
	if o.budget == nil {
		return
	}
	o.uncount(e)
	e.setCached(v, st)
	o.count(e)
	o.fit(e)
}

// fit evicts to bring the budget back under its limit after e's value was
// counted: down to seven eighths of the limit, or, when unapplied values
// alone are above that, not at all, and e's own value is not kept unless
// it is unapplied.
func (o *Overlay) fit(e *entry) {
	b := o.budget
	if b.used <= b.limit {
		return
	}
	target := b.limit - b.limit/8
	if b.unapplied > target {
		if !e.unapplied {
			o.uncache(e)
		}
		return
	}
	o.evict(target)
}

// evict drops cached values (not unapplied ones) until the budget's used
// bytes are at most target.
func (o *Overlay) evict(target int64) {
	o.entries.all(func(x *entry) bool {
		if o.budget.used <= target {
			return false
		}
		if !x.unapplied {
			o.uncache(x)
		}
		return true
	})
}

// count adds e's cached value to the budget; uncount takes it out.
// Without a budget they do nothing.
func (o *Overlay) count(e *entry) {
	if o.budget == nil || e.cachedState == notCached {
		return
	}
	o.budget.used += e.size()
	if e.unapplied {
		o.budget.unapplied += e.size()
	}
}

func (o *Overlay) uncount(e *entry) {
	if o.budget == nil || e.cachedState == notCached {
		return
	}
	o.budget.used -= e.size()
	if e.unapplied {
		o.budget.unapplied -= e.size()
	}
}

// uncache forgets the cached value of x, and x itself if it has no pending
// write. x must not be unapplied.
func (o *Overlay) uncache(x *entry) {
	if x.cachedState == notCached {
		return
	}
	o.uncount(x)
	x.cached, x.cachedState = nil, notCached
	if x.write == noWrite {
		o.entries.delete(x.key)
	}
}

// Put records a pending put of value under key. It copies both slices. A nil
// value is stored as an empty value.
func (o *Overlay) Put(key, value []byte) error {
	v := bytes.Clone(value)
	if v == nil {
		v = []byte{}
	}
	o.write(key, v, putWrite)
	return nil
}

// Delete records a pending delete (a tombstone) for key. The tombstone is
// recorded whether or not the base holds key, so it counts in Pending and
// appears in Writes.
func (o *Overlay) Delete(key []byte) error {
	o.write(key, nil, deleteWrite)
	return nil
}

func (o *Overlay) write(key, v []byte, kind uint8) {
	e := o.entries.get(key)
	if e == nil {
		e = o.newEntry(key)
	}
	if e.write == noWrite {
		o.dirty = append(o.dirty, e)
	} else if !e.rewritten {
		e.rewritten = true
		o.rewritten = append(o.rewritten, e)
	}
	e.pending, e.write = v, kind
	o.sorted, o.merged = nil, nil
}

// Committed tells the overlay that its pending writes are committed: they
// become unapplied committed values, which reads go on seeing and which
// stay in memory (whatever the cache budget) until TakeUnapplied hands them
// over. The pending set is empty again. The slices of earlier Writes and
// UnorderedWrites results stay valid.
func (o *Overlay) Committed() {
	for _, e := range o.dirty {
		v, st := e.pending, valuePresent
		if e.write == deleteWrite {
			st = valueAbsent
		}
		e.pending, e.write = nil, noWrite
		o.uncount(e)
		if !e.unapplied {
			e.unapplied = true
			o.unapplied = append(o.unapplied, e)
		}
		e.setCached(v, st)
		o.count(e)
		if o.budget != nil {
			o.fit(e)
		}
	}
	clear(o.dirty)
	o.dirty, o.sorted, o.merged = o.dirty[:0], nil, nil
	o.clearRewritten()
}

// Unapplied returns the number of keys with an unapplied committed value.
func (o *Overlay) Unapplied() int { return len(o.unapplied) }

// TakeUnapplied returns the unapplied committed values as writes, one per
// key, in commit order (not sorted), and from then on treats them as
// applied to the base: the caller must apply them before anything reads
// the base again. With a cache they stay cached (and may be evicted);
// without one the overlay forgets them. The slices may be shared with the
// overlay and must not be modified; they stay valid whatever the overlay
// does next.
func (o *Overlay) TakeUnapplied() []Write {
	if len(o.unapplied) == 0 {
		return nil
	}
	ws := appendCommitted(make([]Write, 0, len(o.unapplied)), o.unapplied, nil)
	o.markApplied()
	return ws
}

// setApplied makes e's unapplied value an ordinary cached one (the
// caller removes e from the unapplied list).
func (o *Overlay) setApplied(e *entry) {
	o.uncount(e)
	e.unapplied = false
	o.count(e)
}

// markApplied turns the unapplied values into ordinary cached ones.
func (o *Overlay) markApplied() {
	for _, e := range o.unapplied {
		o.setApplied(e)
		if o.budget == nil {
			o.uncache(e)
		}
	}
	clear(o.unapplied)
	o.unapplied, o.merged = o.unapplied[:0], nil
	if b := o.budget; b != nil && b.used > b.limit {
		// Values kept only because they were unapplied may go now.
		o.evict(b.limit - b.limit/8)
	}
}

// ResetCache empties the cache of committed values, unapplied ones
// included, and returns its memory to the budget. Call it after the base
// was written to other than through the overlay, and when dropping an
// overlay whose budget lives on. Unapplied values are lost: only reset an
// overlay that has none, or whose base is about to be rebuilt from
// elsewhere (a changelog restore).
func (o *Overlay) ResetCache() {
	for _, e := range o.unapplied {
		o.setApplied(e)
	}
	clear(o.unapplied)
	o.unapplied, o.merged = o.unapplied[:0], nil
	o.entries.all(func(e *entry) bool {
		o.uncache(e)
		return true
	})
}

// Newest returns the pending write of the key most recently added to the
// pending set (by a Put or Delete of a key that had no pending write), and
// false if the set is empty. Comparing Pending before and after a write
// tells whether it added a key. The slices are shared with the overlay and
// must not be modified.
func (o *Overlay) Newest() (Write, bool) {
	if len(o.dirty) == 0 {
		return Write{}, false
	}
	return o.dirty[len(o.dirty)-1].asWrite(), true
}

// Rewritten returns the pending writes of the keys written again since
// their first write in the pending set, or since the previous Rewritten
// call: one per key, with its latest value, in the order the keys were
// first rewritten. It is for a caller that logs every key's first write
// right away and the rewritten keys' final values later, once each. The
// slices are shared with the overlay and must not be modified.
func (o *Overlay) Rewritten() []Write {
	if len(o.rewritten) == 0 {
		return nil
	}
	ws := make([]Write, len(o.rewritten))
	for i, e := range o.rewritten {
		ws[i] = e.asWrite()
	}
	o.clearRewritten()
	return ws
}

func (o *Overlay) clearRewritten() {
	for _, e := range o.rewritten {
		e.rewritten = false
	}
	clear(o.rewritten)
	o.rewritten = o.rewritten[:0]
}

// UnorderedWrites returns the pending writes, one per key, in the order the
// keys were first written since the last Commit, Applied or Discard, in a
// new slice. Unlike Writes it does not sort; the key and value slices are
// shared with the overlay and must not be modified.
func (o *Overlay) UnorderedWrites() []Write {
	ws := make([]Write, len(o.dirty))
	for i, e := range o.dirty {
		ws[i] = e.asWrite()
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
		ws := appendCommitted(o.UnorderedWrites(), o.unapplied, func(e *entry) bool { return e.write == noWrite })
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
	for _, e := range o.dirty {
		e.pending, e.write = nil, noWrite
		if e.cachedState == notCached {
			o.entries.delete(e.key)
		}
	}
	clear(o.dirty)
	o.dirty, o.sorted, o.merged = o.dirty[:0], nil, nil
	o.clearRewritten()
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
