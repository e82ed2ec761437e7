package state

import (
	"encoding/binary"
	"errors"
	"fmt"
	"time"
)

// WindowStore is the typed view of a KV that windowed aggregations use: a
// value per (key, window start). Window starts have millisecond precision
// (they are stored as Unix milliseconds; finer parts are truncated) and are
// returned in UTC.
//
// # Encoding
//
// The KV key of a window is
//
//	uvarint(len(k)) | k | be64(uint64(startMillis) ^ 1<<63)
//
// where k is the serialized key. The sign bit is flipped so that byte order is
// time order, negative times included. All windows of one key are therefore
// contiguous and ordered by start, and FetchRange is a single range scan.
// FetchAll and ExpireBefore scan the whole KV, since windows are ordered by
// key first.
//
// A WindowStore keeps no state of its own: every call goes to the KV, so it
// is as safe for concurrent use as the KV is (a task's KV is not).
type WindowStore[K, V any] interface {
	// Name returns the store name.
	Name() string
	// Put stores value for the window of key starting at windowStart,
	// replacing any previous value.
	Put(key K, windowStart time.Time, value V) error
	// Fetch returns the value of the window of key starting at windowStart;
	// ok is false if there is none.
	Fetch(key K, windowStart time.Time) (value V, ok bool, err error)
	// FetchRange iterates over the windows of key whose start is in
	// [from, to] (both inclusive), in ascending start order. It is a single
	// range scan. If to is before from the iterator is empty.
	FetchRange(key K, from, to time.Time) (WindowIterator[K, V], error)
	// FetchAll iterates over the windows of every key whose start is in
	// [from, to], ordered by serialized key, then by start. It scans the
	// whole store.
	FetchAll(from, to time.Time) (WindowIterator[K, V], error)
	// ExpireBefore deletes every window whose start is before t (retention)
	// and returns how many it deleted. It scans the whole store, then deletes
	// the expired windows one by one through the KV.
	ExpireBefore(t time.Time) (removed int, err error)
}

// WindowIterator walks windows. A key or value that fails to decode stops the
// iteration: Next returns false and Err returns the error. The caller must
// call Close; a WindowIterator is not safe for concurrent use.
type WindowIterator[K, V any] interface {
	// Next advances to the next window and reports whether there is one.
	Next() bool
	// Key returns the current window's key.
	Key() K
	// WindowStart returns the current window's start, in UTC.
	WindowStart() time.Time
	// Value returns the current window's value.
	Value() V
	// Err returns the error that stopped the iteration, if any.
	Err() error
	// Close releases the iterator and returns Err's error, if any.
	Close() error
}

// NewWindowStore returns a window store named name over kv, encoding keys with
// key and values with value. kv may be a DB's KV (usually wrapped in an
// Overlay) or, for tests and non-durable stores, NewMemKV().
func NewWindowStore[K, V any](name string, kv KV, key Codec[K], value Codec[V]) WindowStore[K, V] {
	return &windowStore[K, V]{name: name, kv: kv, key: key, value: value}
}

type windowStore[K, V any] struct {
	name  string
	kv    KV
	key   Codec[K]
	value Codec[V]
}

func (s *windowStore[K, V]) Name() string { return s.name }

// windowKeyPrefix returns uvarint(len(k)) | k for the serialized key.
func (s *windowStore[K, V]) windowKeyPrefix(key K) ([]byte, error) {
	kb, err := s.key.Serialize(key)
	if err != nil {
		return nil, fmt.Errorf("state: window store %q: serialize key: %w", s.name, err)
	}
	b := make([]byte, 0, binary.MaxVarintLen64+len(kb)+8)
	b = binary.AppendUvarint(b, uint64(len(kb)))
	return append(b, kb...), nil
}

func appendWindowStart(b []byte, t time.Time) []byte {
	return binary.BigEndian.AppendUint64(b, uint64(t.UnixMilli())^(1<<63))
}

// decodeWindowKey splits a KV key into the serialized key and the window
// start in milliseconds.
func decodeWindowKey(b []byte) (key []byte, startMillis int64, err error) {
	n, w := binary.Uvarint(b)
	if w <= 0 || uint64(len(b)-w) < n || uint64(len(b)-w)-n != 8 {
		return nil, 0, fmt.Errorf("malformed window key %x", b)
	}
	key = b[w : w+int(n)]
	return key, int64(binary.BigEndian.Uint64(b[w+int(n):]) ^ (1 << 63)), nil
}

func (s *windowStore[K, V]) Put(key K, windowStart time.Time, value V) error {
	kb, err := s.windowKeyPrefix(key)
	if err != nil {
		return err
	}
	vb, err := s.value.Serialize(value)
	if err != nil {
		return fmt.Errorf("state: window store %q: serialize value: %w", s.name, err)
	}
	if err := s.kv.Put(appendWindowStart(kb, windowStart), vb); err != nil {
		return fmt.Errorf("state: window store %q: put: %w", s.name, err)
	}
	return nil
}

func (s *windowStore[K, V]) Fetch(key K, windowStart time.Time) (V, bool, error) {
	var zero V
	kb, err := s.windowKeyPrefix(key)
	if err != nil {
		return zero, false, err
	}
	vb, ok, err := s.kv.Get(appendWindowStart(kb, windowStart))
	if err != nil {
		return zero, false, fmt.Errorf("state: window store %q: get: %w", s.name, err)
	}
	if !ok {
		return zero, false, nil
	}
	v, err := s.value.Deserialize(vb)
	if err != nil {
		return zero, false, fmt.Errorf("state: window store %q: deserialize value: %w", s.name, err)
	}
	return v, true, nil
}

func (s *windowStore[K, V]) FetchRange(key K, from, to time.Time) (WindowIterator[K, V], error) {
	kb, err := s.windowKeyPrefix(key)
	if err != nil {
		return nil, err
	}
	if to.UnixMilli() < from.UnixMilli() {
		return &windowIter[K, V]{store: s}, nil
	}
	start := appendWindowStart(kb, from)
	// All keys of this store key have the same length, so appending a zero
	// byte gives the smallest key after the window starting at to.
	end := append(appendWindowStart(kb[:len(kb):len(kb)], to), 0)
	it, err := s.kv.Range(start, end)
	if err != nil {
		return nil, fmt.Errorf("state: window store %q: range: %w", s.name, err)
	}
	return &windowIter[K, V]{store: s, it: it, from: from.UnixMilli(), to: to.UnixMilli()}, nil
}

func (s *windowStore[K, V]) FetchAll(from, to time.Time) (WindowIterator[K, V], error) {
	it, err := s.kv.Range(nil, nil)
	if err != nil {
		return nil, fmt.Errorf("state: window store %q: range: %w", s.name, err)
	}
	return &windowIter[K, V]{store: s, it: it, from: from.UnixMilli(), to: to.UnixMilli()}, nil
}

func (s *windowStore[K, V]) ExpireBefore(t time.Time) (int, error) {
	limit := t.UnixMilli()
	it, err := s.kv.Range(nil, nil)
	if err != nil {
		return 0, fmt.Errorf("state: window store %q: range: %w", s.name, err)
	}
	var expired [][]byte
	for it.Next() {
		_, start, err := decodeWindowKey(it.Key())
		if err != nil {
			return 0, errors.Join(fmt.Errorf("state: window store %q: %w", s.name, err), it.Close())
		}
		if start < limit {
			expired = append(expired, append([]byte(nil), it.Key()...))
		}
	}
	if err := it.Close(); err != nil {
		return 0, fmt.Errorf("state: window store %q: scan: %w", s.name, err)
	}
	for i, k := range expired {
		if err := s.kv.Delete(k); err != nil {
			return i, fmt.Errorf("state: window store %q: delete: %w", s.name, err)
		}
	}
	return len(expired), nil
}

// windowIter decodes the windows of a byte iterator whose start is in
// [from, to]. A nil it is an empty iterator.
type windowIter[K, V any] struct {
	store    *windowStore[K, V]
	it       Iterator
	from, to int64
	key      K
	start    time.Time
	value    V
	err      error
}

func (i *windowIter[K, V]) Next() bool {
	if i.it == nil || i.err != nil {
		return false
	}
	for i.it.Next() {
		kb, start, err := decodeWindowKey(i.it.Key())
		if err != nil {
			i.err = fmt.Errorf("state: window store %q: %w", i.store.name, err)
			return false
		}
		if start < i.from || start > i.to {
			continue
		}
		k, err := i.store.key.Deserialize(kb)
		if err != nil {
			i.err = fmt.Errorf("state: window store %q: deserialize key: %w", i.store.name, err)
			return false
		}
		v, err := i.store.value.Deserialize(i.it.Value())
		if err != nil {
			i.err = fmt.Errorf("state: window store %q: deserialize value: %w", i.store.name, err)
			return false
		}
		i.key, i.start, i.value = k, time.UnixMilli(start).UTC(), v
		return true
	}
	return false
}

func (i *windowIter[K, V]) Key() K                 { return i.key }
func (i *windowIter[K, V]) WindowStart() time.Time { return i.start }
func (i *windowIter[K, V]) Value() V               { return i.value }

func (i *windowIter[K, V]) Err() error {
	if i.err != nil {
		return i.err
	}
	if i.it != nil {
		if err := i.it.Err(); err != nil {
			return fmt.Errorf("state: window store %q: iterate: %w", i.store.name, err)
		}
	}
	return nil
}

func (i *windowIter[K, V]) Close() error {
	var cerr error
	if i.it != nil {
		if err := i.it.Close(); err != nil {
			cerr = fmt.Errorf("state: window store %q: close iterator: %w", i.store.name, err)
		}
	}
	if i.err != nil {
		return errors.Join(i.err, cerr)
	}
	return cerr
}
