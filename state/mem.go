package state

import (
	"bytes"
	"slices"
	"sync"
)

// NewMemKV returns an empty in-memory KV: a sorted slice searched with binary
// search. It copies keys and values on the way in and out, so callers never
// share memory with it.
//
// Iterators see a snapshot of the keys in their range taken when they are
// created; writes made while iterating do not affect them. After Close, Next
// returns false. The KV itself is safe for concurrent use (the KV contract
// does not require it); its iterators are not.
func NewMemKV() KV {
	return &memKV{}
}

type memEntry struct {
	key, value []byte
}

type memKV struct {
	mu      sync.RWMutex
	entries []memEntry // sorted by key; stored slices are never modified in place
}

func (m *memKV) search(key []byte) (int, bool) {
	return slices.BinarySearchFunc(m.entries, key, func(e memEntry, k []byte) int {
		return bytes.Compare(e.key, k)
	})
}

func (m *memKV) Get(key []byte) ([]byte, bool, error) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	i, ok := m.search(key)
	if !ok {
		return nil, false, nil
	}
	return bytes.Clone(m.entries[i].value), true, nil
}

func (m *memKV) Put(key, value []byte) error {
	k := bytes.Clone(key)
	if k == nil {
		k = []byte{}
	}
	v := bytes.Clone(value)
	if v == nil {
		v = []byte{}
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	i, ok := m.search(k)
	if ok {
		m.entries[i].value = v
		return nil
	}
	m.entries = slices.Insert(m.entries, i, memEntry{key: k, value: v})
	return nil
}

func (m *memKV) Delete(key []byte) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if i, ok := m.search(key); ok {
		m.entries = slices.Delete(m.entries, i, i+1)
	}
	return nil
}

func (m *memKV) Range(start, end []byte) (Iterator, error) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	lo, hi := 0, len(m.entries)
	if start != nil {
		lo, _ = m.search(start)
	}
	if end != nil {
		hi, _ = m.search(end)
	}
	if hi < lo {
		hi = lo
	}
	// The snapshot shares the stored slices: Put and Delete replace entries,
	// they never write into a stored slice.
	return &memIter{entries: slices.Clone(m.entries[lo:hi]), pos: -1}, nil
}

func (m *memKV) PrefixScan(prefix []byte) (Iterator, error) {
	if len(prefix) == 0 {
		return m.Range(nil, nil)
	}
	return m.Range(prefix, prefixEnd(prefix))
}

// prefixEnd returns the smallest key greater than every key that begins with
// prefix, or nil (unbounded) if there is none (prefix is all 0xff).
func prefixEnd(prefix []byte) []byte {
	end := bytes.Clone(prefix)
	for i := len(end) - 1; i >= 0; i-- {
		if end[i] < 0xff {
			end[i]++
			return end[:i+1]
		}
	}
	return nil
}

type memIter struct {
	entries    []memEntry
	pos        int
	key, value []byte // copies of the current entry, reused across Next
	closed     bool
}

func (it *memIter) Next() bool {
	if it.closed || it.pos+1 >= len(it.entries) {
		it.pos = len(it.entries)
		return false
	}
	it.pos++
	e := it.entries[it.pos]
	it.key = append(it.key[:0], e.key...)
	it.value = append(it.value[:0], e.value...)
	return true
}

func (it *memIter) valid() bool { return !it.closed && it.pos >= 0 && it.pos < len(it.entries) }

func (it *memIter) Key() []byte {
	if !it.valid() {
		return nil
	}
	return it.key
}

func (it *memIter) Value() []byte {
	if !it.valid() {
		return nil
	}
	return it.value
}

func (it *memIter) Err() error { return nil }

func (it *memIter) Close() error {
	it.closed = true
	it.entries, it.key, it.value = nil, nil, nil
	return nil
}
