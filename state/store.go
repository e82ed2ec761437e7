package state

import (
	"errors"
	"fmt"
)

// KV is the byte-level key-value contract the runtime provides to one task for
// one store. Keys are ordered bytewise.
//
// A KV is used by a single task goroutine; implementations need not be safe
// for concurrent use.
type KV interface {
	// Get returns the value stored under key. ok is false if the key is
	// absent. The returned value is owned by the caller.
	Get(key []byte) (value []byte, ok bool, err error)
	// Put stores value under key, replacing any previous value. The KV copies
	// both slices; the caller may reuse them after Put returns.
	Put(key, value []byte) error
	// Delete removes key. Deleting an absent key is not an error.
	Delete(key []byte) error
	// Range returns an iterator over the keys in [start, end), in ascending
	// order. A nil start means from the first key; a nil end means to the
	// last key.
	Range(start, end []byte) (Iterator, error)
	// PrefixScan returns an iterator over the keys that begin with prefix, in
	// ascending order. An empty prefix iterates over every key.
	PrefixScan(prefix []byte) (Iterator, error)
}

// Iterator walks key-value pairs in ascending key order.
//
// Call Next before the first Key or Value. Key and Value are valid only until
// the next call to Next or Close and must not be modified. The caller must
// call Close. An Iterator is not safe for concurrent use.
type Iterator interface {
	// Next advances to the next pair and reports whether there is one. It
	// returns false at the end and after an error (see Err).
	Next() bool
	// Key returns the current key.
	Key() []byte
	// Value returns the current value.
	Value() []byte
	// Err returns the error that stopped the iteration, if any.
	Err() error
	// Close releases the iterator. It returns Err's error, if any.
	Close() error
}

// Viewer is implemented by a KV that can return a stored value without
// copying it. The slice GetView returns is valid only until the next call
// on the KV, and must not be modified. The typed store uses it for Get,
// since a Codec must not retain what it decodes.
type Viewer interface {
	GetView(key []byte) (value []byte, ok bool, err error)
}

// Codec serializes and deserializes values of type T for a store.
// topology.Serde[T] satisfies it.
type Codec[T any] interface {
	// Serialize encodes v.
	Serialize(v T) ([]byte, error)
	// Deserialize decodes b. b must not be retained.
	Deserialize(b []byte) (T, error)
}

// Appender is implemented by a Codec that can append an encoding to a
// buffer. A typed store encodes Get, Put and Delete keys and Put values
// with it into scratch buffers it reuses, instead of allocating for each
// call (a KV copies what it keeps).
type Appender[T any] interface {
	// Append appends the encoding of v to dst and returns the extended
	// buffer. It must produce the same bytes as Serialize.
	Append(dst []byte, v T) ([]byte, error)
}

// KeyValueStore is the typed view of a KV that processors use. Keys are
// ordered by their serialized bytes.
type KeyValueStore[K, V any] interface {
	// Name returns the store name declared in the topology.
	Name() string
	// Get returns the value for key; ok is false if the key is absent.
	Get(key K) (value V, ok bool, err error)
	// Put stores value under key.
	Put(key K, value V) error
	// Delete removes key. Deleting an absent key is not an error.
	Delete(key K) error
	// Range iterates over the keys in [from, to) in serialized byte order.
	Range(from, to K) (KeyValueIterator[K, V], error)
	// All iterates over every key in serialized byte order.
	All() (KeyValueIterator[K, V], error)
	// PrefixScan iterates over the keys whose serialized form begins with the
	// serialized form of prefix.
	PrefixScan(prefix K) (KeyValueIterator[K, V], error)
}

// KeyValueIterator walks typed pairs in serialized key order. A key or value
// that fails to decode stops the iteration: Next returns false and Err returns
// the decode error. The caller must call Close; a KeyValueIterator is not safe
// for concurrent use.
type KeyValueIterator[K, V any] interface {
	// Next advances to the next pair and reports whether there is one.
	Next() bool
	// Key returns the current key.
	Key() K
	// Value returns the current value.
	Value() V
	// Err returns the error that stopped the iteration, if any.
	Err() error
	// Close releases the iterator and returns Err's error, if any.
	Close() error
}

// NewKeyValueStore returns a typed store named name over kv, encoding keys
// with key and values with value. The store keeps no state of its own: every
// call goes to kv.
//
// Codecs that implement [Appender] encode into scratch buffers of the
// store's own, so a store is not safe for concurrent use (a task's stores
// are only used from the task's goroutine).
func NewKeyValueStore[K, V any](name string, kv KV, key Codec[K], value Codec[V]) KeyValueStore[K, V] {
	view, _ := kv.(Viewer)
	kapp, _ := key.(Appender[K])
	vapp, _ := value.(Appender[V])
	return &typedStore[K, V]{name: name, kv: kv, view: view, key: key, value: value, kapp: kapp, vapp: vapp}
}

type typedStore[K, V any] struct {
	name  string
	kv    KV
	view  Viewer // kv, if it is one
	key   Codec[K]
	value Codec[V]
	kapp  Appender[K] // key, if it is one
	vapp  Appender[V] // value, if it is one
	// kbuf and vbuf are scratch for keys and values encoded by kapp and
	// vapp, for calls that do not keep them.
	kbuf, vbuf []byte
}

func (s *typedStore[K, V]) Name() string { return s.name }

func (s *typedStore[K, V]) encodeKey(key K) ([]byte, error) {
	b, err := s.key.Serialize(key)
	if err != nil {
		return nil, fmt.Errorf("state: store %q: serialize key: %w", s.name, err)
	}
	return b, nil
}

// scratchKey encodes key into kbuf when the codec can; the result is valid
// until the next scratchKey call.
func (s *typedStore[K, V]) scratchKey(key K) ([]byte, error) {
	b, err := encodeInto(s.key, s.kapp, &s.kbuf, key)
	if err != nil {
		return nil, fmt.Errorf("state: store %q: serialize key: %w", s.name, err)
	}
	return b, nil
}

// scratchValue is scratchKey for values.
func (s *typedStore[K, V]) scratchValue(v V) ([]byte, error) {
	b, err := encodeInto(s.value, s.vapp, &s.vbuf, v)
	if err != nil {
		return nil, fmt.Errorf("state: store %q: serialize value: %w", s.name, err)
	}
	return b, nil
}

// encodeInto encodes v with app into *scratch (reusing its memory) when app
// is not nil, and with c.Serialize otherwise.
func encodeInto[T any](c Codec[T], app Appender[T], scratch *[]byte, v T) ([]byte, error) {
	if app == nil {
		return c.Serialize(v)
	}
	b, err := app.Append((*scratch)[:0], v)
	if err == nil {
		*scratch = b
	}
	return b, err
}

func (s *typedStore[K, V]) Get(key K) (V, bool, error) {
	var zero V
	kb, err := s.scratchKey(key)
	if err != nil {
		return zero, false, err
	}
	var vb []byte
	var ok bool
	if s.view != nil {
		vb, ok, err = s.view.GetView(kb)
	} else {
		vb, ok, err = s.kv.Get(kb)
	}
	if err != nil {
		return zero, false, fmt.Errorf("state: store %q: get: %w", s.name, err)
	}
	if !ok {
		return zero, false, nil
	}
	v, err := s.value.Deserialize(vb)
	if err != nil {
		return zero, false, fmt.Errorf("state: store %q: deserialize value: %w", s.name, err)
	}
	return v, true, nil
}

func (s *typedStore[K, V]) Put(key K, value V) error {
	kb, err := s.scratchKey(key)
	if err != nil {
		return err
	}
	vb, err := s.scratchValue(value)
	if err != nil {
		return err
	}
	if err := s.kv.Put(kb, vb); err != nil {
		return fmt.Errorf("state: store %q: put: %w", s.name, err)
	}
	return nil
}

func (s *typedStore[K, V]) Delete(key K) error {
	kb, err := s.scratchKey(key)
	if err != nil {
		return err
	}
	if err := s.kv.Delete(kb); err != nil {
		return fmt.Errorf("state: store %q: delete: %w", s.name, err)
	}
	return nil
}

func (s *typedStore[K, V]) Range(from, to K) (KeyValueIterator[K, V], error) {
	fb, err := s.encodeKey(from)
	if err != nil {
		return nil, err
	}
	tb, err := s.encodeKey(to)
	if err != nil {
		return nil, err
	}
	// A key codec may encode a zero value as nil, which KV.Range reads as
	// "unbounded"; a typed bound is always a concrete key.
	if fb == nil {
		fb = []byte{}
	}
	if tb == nil {
		tb = []byte{}
	}
	it, err := s.kv.Range(fb, tb)
	if err != nil {
		return nil, fmt.Errorf("state: store %q: range: %w", s.name, err)
	}
	return &typedIter[K, V]{store: s, it: it}, nil
}

func (s *typedStore[K, V]) All() (KeyValueIterator[K, V], error) {
	it, err := s.kv.Range(nil, nil)
	if err != nil {
		return nil, fmt.Errorf("state: store %q: range: %w", s.name, err)
	}
	return &typedIter[K, V]{store: s, it: it}, nil
}

func (s *typedStore[K, V]) PrefixScan(prefix K) (KeyValueIterator[K, V], error) {
	pb, err := s.encodeKey(prefix)
	if err != nil {
		return nil, err
	}
	it, err := s.kv.PrefixScan(pb)
	if err != nil {
		return nil, fmt.Errorf("state: store %q: prefix scan: %w", s.name, err)
	}
	return &typedIter[K, V]{store: s, it: it}, nil
}

// typedIter decodes the pairs of a byte iterator.
type typedIter[K, V any] struct {
	store *typedStore[K, V]
	it    Iterator
	key   K
	value V
	err   error
}

func (i *typedIter[K, V]) Next() bool {
	if i.err != nil || !i.it.Next() {
		return false
	}
	k, err := i.store.key.Deserialize(i.it.Key())
	if err != nil {
		i.err = fmt.Errorf("state: store %q: deserialize key: %w", i.store.name, err)
		return false
	}
	v, err := i.store.value.Deserialize(i.it.Value())
	if err != nil {
		i.err = fmt.Errorf("state: store %q: deserialize value: %w", i.store.name, err)
		return false
	}
	i.key, i.value = k, v
	return true
}

func (i *typedIter[K, V]) Key() K   { return i.key }
func (i *typedIter[K, V]) Value() V { return i.value }

func (i *typedIter[K, V]) Err() error {
	if i.err != nil {
		return i.err
	}
	if err := i.it.Err(); err != nil {
		return fmt.Errorf("state: store %q: iterate: %w", i.store.name, err)
	}
	return nil
}

func (i *typedIter[K, V]) Close() error {
	cerr := i.it.Close()
	if cerr != nil {
		cerr = fmt.Errorf("state: store %q: close iterator: %w", i.store.name, cerr)
	}
	if i.err != nil {
		return errors.Join(i.err, cerr)
	}
	return cerr
}
