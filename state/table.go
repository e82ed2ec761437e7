package state

import (
	"bytes"
	"encoding/binary"
	"hash/maphash"
)

// table is an overlay's index of keys: an open-addressing hash table with
// linear probing whose slots hold what a read of a key needs, the key
// itself (up to slotKeyLen bytes) and its current value (pending or
// committed, up to inlineLen bytes), in one 64-byte slot. A read of a
// cached or pending key then touches one cache line, where a map of
// pointers to entries touched two or three (the map's group, the entry,
// the value); on a store of 100,000 keys those misses were a fifth of a
// stateful worker's time. Slots hold no pointers, so the garbage
// collector does not scan them either.
//
// Longer keys and values live in ext, which a slot refers to by index.
// Deleted slots become tombstones; a rehash (when an insert finds the
// table too full) drops them and moves slots, so slot indices stay valid
// only until the next insert. Whoever keeps slot indices across an insert
// must remap them (see rehash).
type table struct {
	slots []slot
	live  int // slots holding a key
	tombs int // deleted slots not yet reclaimed
	seed  maphash.Seed

	ext     []extEntry
	freeExt []int32 // indices of unused ext entries

	// warmed keeps the loads of warm alive.
	warmed uint8
	// recent is the slot find or insert returned last, tried first: a
	// read-modify-write finds its key once. It may be stale; holds checks.
	recent int32
}

// slotKeyLen is the longest key a slot holds inline; inlineLen the
// longest value.
const (
	slotKeyLen = 15
	inlineLen  = 32
)

// slot is one key's place in a table: 64 bytes, a cache line.
type slot struct {
	// key is the key when klen is 1..slotKeyLen+1 (its length plus one);
	// for a longer key (klenLong) its first 8 bytes are the key's hash and
	// the key is in ext.
	key  [slotKeyLen]byte
	klen uint8
	// cachedState is what the overlay knows of the key's current value
	// (notCached, valuePresent, valueAbsent): its pending value if it has
	// one, else its committed one. flags are slotUnapplied, slotExtValue
	// and slotLogged; vlen is the length of an inline value.
	cachedState, flags, vlen uint8
	// epoch is the number of the apply in parts that handed the slot's
	// value out (with slotHanded; see Overlay.StartApply).
	epoch uint8
	// pend is 1 + the index of the key's pending write in the overlay's
	// dirty list when pgen is the overlay's transaction number; otherwise
	// the key has no pending write (a commit or discard moves the number
	// on instead of visiting every slot).
	pend int32
	pgen uint32
	// ext is 1 + the index of the slot's entry in table.ext, 0 if none.
	ext    int32
	inline [inlineLen]byte
}

const (
	klenEmpty uint8 = 0
	klenTomb  uint8 = 254
	klenLong  uint8 = 255
)

const (
	// slotUnapplied: the current value is not in the base yet (it is
	// pending, or committed and not applied). Such a slot is never
	// evicted.
	slotUnapplied uint8 = 1 << iota
	// slotExtValue: the value is in ext, not inline.
	slotExtValue
	// slotLogged: TakeUnlogged handed out the key's pending value, and no
	// write came since. Meaningful only while the key has a pending write.
	slotLogged
	// slotHanded: TakeApplyPart handed out the key's committed value in
	// the apply numbered epoch. The value counts as applied, but while
	// that apply is under way the base does not have it yet, so it is not
	// evicted (see Overlay.handedNow).
	slotHanded
)

// extEntry holds a slot's long key and long value. Both are
// never modified in place, so they may be handed out.
type extEntry struct {
	key   []byte // nil unless the key is longer than slotKeyLen
	value []byte // the value when the slot has slotExtValue
}

func newTable() table { return table{seed: maphash.MakeSeed()} }

func (t *table) used(s *slot) bool { return s.klen != klenEmpty && s.klen != klenTomb }

// probeKey returns what a slot holding key has in key and klen, and the
// key's hash.
func (t *table) probeKey(key []byte) (k [slotKeyLen]byte, klen uint8, h uint64) {
	h = maphash.Bytes(t.seed, key)
	if len(key) <= slotKeyLen {
		copy(k[:], key)
		return k, uint8(len(key) + 1), h
	}
	binary.LittleEndian.PutUint64(k[:], h)
	return k, klenLong, h
}

// warm loads the slot where a probe for key starts, so that a find for
// key soon after finds it in the CPU's cache. A few warms in a row overlap
// their waits for memory; finds one at a time, between other work, do
// not.
func (t *table) warm(key []byte) {
	if len(t.slots) == 0 {
		return
	}
	h := maphash.Bytes(t.seed, key)
	t.warmed += t.slots[h&uint64(len(t.slots)-1)].klen
}

// find returns the index of key's slot, or -1.
func (t *table) find(key []byte) int32 {
	if t.live == 0 {
		return -1
	}
	if i := t.recent; int(i) < len(t.slots) && t.holds(i, key) {
		return i
	}
	k, kl, h := t.probeKey(key)
	mask := uint64(len(t.slots) - 1)
	for i := h & mask; ; i = (i + 1) & mask {
		s := &t.slots[i]
		if s.klen == kl && s.key == k && (kl != klenLong || bytes.Equal(t.ext[s.ext-1].key, key)) {
			t.recent = int32(i)
			return int32(i)
		}
		if s.klen == klenEmpty {
			return -1
		}
	}
}

// holds reports whether slot i holds key.
func (t *table) holds(i int32, key []byte) bool {
	s := &t.slots[i]
	if len(key) <= slotKeyLen {
		return s.klen == uint8(len(key)+1) && bytes.Equal(s.key[:len(key)], key)
	}
	return s.klen == klenLong && bytes.Equal(t.ext[s.ext-1].key, key)
}

// insert adds key, which must not be in the table, and returns its slot.
// If the table is too full it is rehashed first, and remap (if not nil)
// is called with the old-to-new index mapping (-1 for tombstones) before
// the new slot is taken.
func (t *table) insert(key []byte, remap func(old []int32)) int32 {
	if (t.live+t.tombs+1)*10 > len(t.slots)*7 {
		old := t.rehash()
		if remap != nil {
			remap(old)
		}
	}
	k, kl, h := t.probeKey(key)
	mask := uint64(len(t.slots) - 1)
	i := h & mask
	for t.used(&t.slots[i]) {
		i = (i + 1) & mask
	}
	s := &t.slots[i]
	if s.klen == klenTomb {
		t.tombs--
	}
	*s = slot{key: k, klen: kl}
	if kl == klenLong {
		s.ext = t.newExt()
		t.ext[s.ext-1].key = bytes.Clone(key)
	}
	t.live++
	t.recent = int32(i)
	return int32(i)
}

// rehash moves the live slots to a new array and returns where each old
// slot went. The new array has room for twice as many (at least 16 slots),
// unless tombstones filled the old one: while its live keys fill at most
// five eighths of it, it is rebuilt at the same size, which leaves at
// least 7.5% of it to fill before the next rehash. A cache that evicts as
// many keys as it takes leaves a tombstone for each, and doubling for
// those would leave its table mostly empty (in the million-key state run,
// 262,144 slots of 64 bytes for 67,000-80,000 keys).
func (t *table) rehash() []int32 {
	n := len(t.slots)
	if n == 0 || (t.live+1)*8 > n*5 {
		n = 16
		for n < 2*(t.live+1) {
			n *= 2
		}
	}
	old := t.slots
	t.slots = make([]slot, n)
	t.tombs = 0
	mask := uint64(n - 1)
	moved := make([]int32, len(old))
	for j := range old {
		o := &old[j]
		if !t.used(o) {
			moved[j] = -1
			continue
		}
		var h uint64
		if o.klen == klenLong {
			h = binary.LittleEndian.Uint64(o.key[:])
		} else {
			h = maphash.Bytes(t.seed, o.key[:o.klen-1])
		}
		i := h & mask
		for t.used(&t.slots[i]) {
			i = (i + 1) & mask
		}
		t.slots[i] = *o
		moved[j] = int32(i)
	}
	return moved
}

// remove deletes slot i (which must hold a key) and its ext entry.
func (t *table) remove(i int32) {
	s := &t.slots[i]
	if s.ext != 0 {
		t.freeExtEntry(s.ext)
	}
	*s = slot{klen: klenTomb}
	t.live--
	t.tombs++
	// A tombstone followed by an empty slot ends no probe chain that
	// matters: turn it, and the tombstones before it, back into empty
	// slots.
	mask := int32(len(t.slots) - 1)
	for t.slots[(i+1)&mask].klen == klenEmpty && t.slots[i].klen == klenTomb {
		t.slots[i].klen = klenEmpty
		t.tombs--
		i = (i - 1) & mask
	}
}

// keyLen returns the length of slot i's key.
func (t *table) keyLen(i int32) int {
	s := &t.slots[i]
	if s.klen == klenLong {
		return len(t.ext[s.ext-1].key)
	}
	return int(s.klen - 1)
}

// appendKey appends slot i's key to b.
func (t *table) appendKey(b []byte, i int32) []byte {
	s := &t.slots[i]
	if s.klen == klenLong {
		return append(b, t.ext[s.ext-1].key...)
	}
	return append(b, s.key[:s.klen-1]...)
}

// value returns slot i's value (when cachedState is valuePresent). An
// inline value is shared with the slot: it changes with the slot and
// moves away from it on a rehash.
func (t *table) value(i int32) []byte {
	s := &t.slots[i]
	if s.flags&slotExtValue != 0 {
		return t.ext[s.ext-1].value
	}
	return s.inline[:s.vlen:s.vlen]
}

// setValue records v (kept, not copied, when it is too long to inline) as
// slot i's value with state st.
func (t *table) setValue(i int32, v []byte, st uint8) {
	s := &t.slots[i]
	s.cachedState = st
	if st == valuePresent && len(v) > inlineLen {
		if s.ext == 0 {
			s.ext = t.newExt()
		}
		t.ext[s.ext-1].value = v
		s.flags |= slotExtValue
		s.vlen = 0
		return
	}
	t.dropExtValue(i)
	if st == valuePresent {
		s.vlen = uint8(copy(s.inline[:], v))
	}
}

// dropExtValue forgets slot i's value in ext, if any, and the ext entry if
// it holds nothing else.
func (t *table) dropExtValue(i int32) {
	s := &t.slots[i]
	s.vlen = 0
	if s.flags&slotExtValue == 0 {
		return
	}
	s.flags &^= slotExtValue
	e := &t.ext[s.ext-1]
	e.value = nil
	if e.key == nil {
		t.freeExtEntry(s.ext)
		s.ext = 0
	}
}

func (t *table) newExt() int32 {
	if n := len(t.freeExt); n > 0 {
		x := t.freeExt[n-1]
		t.freeExt = t.freeExt[:n-1]
		return x
	}
	t.ext = append(t.ext, extEntry{})
	return int32(len(t.ext))
}

func (t *table) freeExtEntry(x int32) {
	t.ext[x-1] = extEntry{}
	t.freeExt = append(t.freeExt, x)
}
