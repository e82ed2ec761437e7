package state

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	iofs "io/fs"
	"sync"
	"syscall"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/vfs"
)

// Errors returned by [OpenDB] and the methods of [DB].
var (
	// ErrForeignState is wrapped by the error OpenDB returns when the
	// directory holds a database that belongs to another application id, or
	// one that has keys but no onceflow marker. The runtime then calls
	// WipeDir and reopens (a full restore from the changelogs).
	ErrForeignState = errors.New("state: directory belongs to another application")
	// ErrCorruptState is wrapped by the error OpenDB returns when Pebble
	// cannot open an existing database: it reports corruption, or a file it
	// needs is missing or unreadable. The runtime then calls WipeDir and
	// reopens (a full restore from the changelogs).
	ErrCorruptState = errors.New("state: corrupt state directory")
	// ErrClosed is returned by the methods of a DB (and of the KVs and
	// Restorers it returned) after DB.Close.
	ErrClosed = errors.New("state: database closed")
)

// Key layout of the database. Every key starts with a one-byte keyspace tag:
//
//	0x00 "app"                                          → 0x01 | application id   (marker; 0x01 is the layout version)
//	0x01 | uvarint(len(store)) | store | be32(partition) | user key → value       (data)
//	0x02 | uvarint(len(store)) | store | be32(partition)            → be64(offset) (checkpoint)
//
// be32 is the partition as a big-endian uint32 (two's complement), be64 the
// changelog offset as a big-endian uint64. The length prefix makes the
// store-partition prefix of the data keyspace prefix-free: no store's prefix
// is a prefix of another's, so a scan of one store-partition never sees
// another's keys.
const (
	spaceMeta       byte = 0x00
	spaceData       byte = 0x01
	spaceCheckpoint byte = 0x02

	layoutVersion byte = 0x01
)

var markerKey = []byte{spaceMeta, 'a', 'p', 'p'}

// storePartitionKey returns tag | uvarint(len(store)) | store | be32(partition).
func storePartitionKey(tag byte, store string, partition int32) []byte {
	b := make([]byte, 0, 1+binary.MaxVarintLen64+len(store)+4)
	b = append(b, tag)
	b = binary.AppendUvarint(b, uint64(len(store)))
	b = append(b, store...)
	return binary.BigEndian.AppendUint32(b, uint32(partition))
}

func dataPrefix(store string, partition int32) []byte {
	return storePartitionKey(spaceData, store, partition)
}

func checkpointKey(store string, partition int32) []byte {
	return storePartitionKey(spaceCheckpoint, store, partition)
}

// DB is the Pebble database of one onceflow instance, shared by all its
// tasks: every (store, partition) pair is a key prefix in it.
//
// A DB is safe for concurrent use: tasks running on different goroutines may
// call its methods, and use the KVs and Restorers it returns for their own
// store-partitions, at the same time. The KVs, iterators and Restorers
// themselves are not safe for concurrent use. Close must be called once, after
// every iterator has been closed; methods called after Close return
// ErrClosed.
type DB struct {
	mu     sync.RWMutex // held shared by every operation, exclusively by Close
	closed bool

	pdb   *pebble.DB
	lock  *pebble.Lock
	write *pebble.WriteOptions // from Options.Sync
	opts  Options
	dir   string
}

// OpenDB opens (creating it if needed) the database of application appID in
// directory dir of opts.FS. opts may be nil, meaning every default; OpenDB
// works on a copy of it.
//
// On first open OpenDB records appID in a marker key (synced). On later opens
// the marker must match: if the directory belongs to another application, or
// has keys but no marker, the error wraps [ErrForeignState]. If Pebble cannot
// open the directory (it reports corruption, or a file it needs is missing or
// malformed) the error wraps [ErrCorruptState]. In both cases the caller is
// expected to call [WipeDir] and open again. Errors that say nothing about
// the directory's contents (invalid options, the directory is locked by
// another DB, permission denied, too many open files, disk full) wrap neither.
func OpenDB(dir string, appID string, opts *Options) (*DB, error) {
	var o Options
	if opts != nil {
		o = *opts
	}
	o.EnsureDefaults()
	if err := o.Validate(); err != nil {
		return nil, err
	}
	if appID == "" {
		return nil, errors.New("state: open: application id must not be empty")
	}
	if err := o.FS.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("state: open %q: create directory: %w", dir, err)
	}
	// Taking the lock ourselves separates "someone else has it open", which
	// must never lead to a wipe, from failures to read the directory.
	lock, err := pebble.LockDirectory(dir, o.FS)
	if err != nil {
		return nil, fmt.Errorf("state: open %q: lock directory: %w", dir, err)
	}
	cache := pebble.NewCache(o.CacheSize)
	defer cache.Unref()
	popts := &pebble.Options{
		Cache:                       cache,
		MemTableSize:                o.MemTableSize,
		MemTableStopWritesThreshold: o.MemTableStopWrites,
		FS:                          o.FS,
		Logger:                      pebbleLogger{l: o.Logger},
		Lock:                        lock,
	}
	pdb, err := pebble.Open(dir, popts)
	if err != nil {
		_ = lock.Close()
		if isEnvironmentError(err) {
			return nil, fmt.Errorf("state: open %q: %w", dir, err)
		}
		return nil, fmt.Errorf("%w: open %q: %w", ErrCorruptState, dir, err)
	}
	db := &DB{pdb: pdb, lock: lock, write: pebble.Sync, opts: o, dir: dir}
	if o.Sync == NoSync {
		db.write = pebble.NoSync
	}
	if err := db.checkMarker(appID); err != nil {
		return nil, errors.Join(err, db.Close())
	}
	o.Logger.Info("state: opened database", "dir", dir, "app", appID, "sync", o.Sync.String())
	return db, nil
}

// isEnvironmentError reports whether err is a failure of the environment
// rather than of the directory's contents.
func isEnvironmentError(err error) bool {
	if pebble.IsCorruptionError(err) {
		return false
	}
	return errors.Is(err, iofs.ErrPermission) || errors.Is(err, syscall.EMFILE) ||
		errors.Is(err, syscall.ENFILE) || errors.Is(err, syscall.ENOSPC) ||
		errors.Is(err, syscall.ENOMEM)
}

// checkMarker verifies the application marker, writing it into an empty
// database.
func (db *DB) checkMarker(appID string) error {
	v, closer, err := db.pdb.Get(markerKey)
	switch {
	case err == nil:
		defer closer.Close()
		if len(v) == 0 || v[0] != layoutVersion {
			return fmt.Errorf("%w: %q: unknown layout version in marker %q", ErrForeignState, db.dir, v)
		}
		if got := string(v[1:]); got != appID {
			return fmt.Errorf("%w: %q belongs to application %q, not %q", ErrForeignState, db.dir, got, appID)
		}
		return nil
	case errors.Is(err, pebble.ErrNotFound):
	default:
		return fmt.Errorf("%w: %q: read marker: %w", ErrCorruptState, db.dir, err)
	}
	it, err := db.pdb.NewIter(nil)
	if err != nil {
		return fmt.Errorf("state: %q: check empty: %w", db.dir, err)
	}
	nonEmpty := it.First()
	if err := it.Close(); err != nil {
		return fmt.Errorf("%w: %q: check empty: %w", ErrCorruptState, db.dir, err)
	}
	if nonEmpty {
		return fmt.Errorf("%w: %q has keys but no onceflow marker", ErrForeignState, db.dir)
	}
	marker := append([]byte{layoutVersion}, appID...)
	if err := db.pdb.Set(markerKey, marker, pebble.Sync); err != nil {
		return fmt.Errorf("state: %q: write marker: %w", db.dir, err)
	}
	return nil
}

// WipeDir removes directory dir of fs and everything in it, so that the next
// OpenDB starts empty (a full restore). No DB may be open on dir. Removing a
// directory that does not exist is not an error.
func WipeDir(fs vfs.FS, dir string) error {
	if fs == nil {
		fs = vfs.Default
	}
	if err := fs.RemoveAll(dir); err != nil {
		return fmt.Errorf("state: wipe %q: %w", dir, err)
	}
	return nil
}

// Close closes the database and releases its directory lock. Every iterator
// must have been closed before; Pebble reports leaked iterators in the error.
// Calling Close again returns ErrClosed.
func (db *DB) Close() error {
	db.mu.Lock()
	defer db.mu.Unlock()
	if db.closed {
		return ErrClosed
	}
	db.closed = true
	err := db.pdb.Close()
	if lerr := db.lock.Close(); lerr != nil {
		err = errors.Join(err, lerr)
	}
	if err != nil {
		return fmt.Errorf("state: close %q: %w", db.dir, err)
	}
	return nil
}

// acquire takes the shared lock, failing if the DB is closed. The caller must
// call db.mu.RUnlock when acquire returns nil.
func (db *DB) acquire() error {
	db.mu.RLock()
	if db.closed {
		db.mu.RUnlock()
		return ErrClosed
	}
	return nil
}

// Sync makes every write applied so far durable: it syncs Pebble's
// write-ahead log, which holds them in order.
func (db *DB) Sync() error {
	if err := db.acquire(); err != nil {
		return err
	}
	defer db.mu.RUnlock()
	if err := db.pdb.LogData(nil, pebble.Sync); err != nil {
		return fmt.Errorf("state: sync %q: %w", db.dir, err)
	}
	return nil
}

// Checkpoint returns the changelog offset recorded for (store, partition) by
// the last Commit or Restorer.Flush that set one. ok is false if there is
// none (the store-partition was never checkpointed, or was dropped).
func (db *DB) Checkpoint(store string, partition int32) (offset int64, ok bool, err error) {
	if err := db.acquire(); err != nil {
		return 0, false, err
	}
	defer db.mu.RUnlock()
	v, closer, err := db.pdb.Get(checkpointKey(store, partition))
	if errors.Is(err, pebble.ErrNotFound) {
		return 0, false, nil
	}
	if err != nil {
		return 0, false, fmt.Errorf("state: checkpoint %s/%d: %w", store, partition, err)
	}
	defer closer.Close()
	if len(v) != 8 {
		return 0, false, fmt.Errorf("%w: checkpoint %s/%d has %d bytes, want 8", ErrCorruptState, store, partition, len(v))
	}
	return int64(binary.BigEndian.Uint64(v)), true, nil
}

// DropPartition deletes every key and the checkpoint of (store, partition),
// with one range deletion, in one batch applied with the sync policy. Use it
// when a partition's state must be rebuilt from scratch.
func (db *DB) DropPartition(store string, partition int32) error {
	if err := db.acquire(); err != nil {
		return err
	}
	defer db.mu.RUnlock()
	p := dataPrefix(store, partition)
	b := db.pdb.NewBatch()
	defer b.Close()
	if err := b.DeleteRange(p, prefixEnd(p), nil); err != nil {
		return fmt.Errorf("state: drop %s/%d: %w", store, partition, err)
	}
	if err := b.Delete(checkpointKey(store, partition), nil); err != nil {
		return fmt.Errorf("state: drop %s/%d: %w", store, partition, err)
	}
	if err := b.Commit(db.write); err != nil {
		return fmt.Errorf("state: drop %s/%d: %w", store, partition, err)
	}
	return nil
}

// KV returns the byte-level [KV] of (store, partition): user keys are stored
// under the store-partition prefix, and Range, PrefixScan and the iterators
// work in user keys (the prefix is added to bounds and removed from returned
// keys).
//
// Put and Delete write directly to the database, one Pebble write each, with
// the sync policy: they are not transactional. Under exactly-once processing
// the runtime wraps the KV in an [Overlay] and applies the pending writes with
// [DB.Commit]. The KV also implements [BatchApplier], so Overlay.Commit
// applies its writes in one atomic batch.
//
// Iterators are point-in-time snapshots: writes made after an iterator is
// created are not visible to it. Key and Value are valid until the next Next
// or Close. Every iterator must be closed, before DB.Close at the latest.
//
// The KV holds no state besides its prefix, so calling KV twice for the same
// pair yields equivalent values. It must not be used concurrently with itself
// (the KV contract), but KVs of different pairs may be used concurrently.
func (db *DB) KV(store string, partition int32) KV {
	p := dataPrefix(store, partition)
	return &pebbleKV{db: db, name: fmt.Sprintf("%s/%d", store, partition), prefix: p, upper: prefixEnd(p)}
}

// pebbleKV is the KV of one store-partition.
type pebbleKV struct {
	db     *DB
	name   string
	prefix []byte // never modified
	upper  []byte // prefixEnd(prefix); never nil since prefix starts with 0x01
}

var (
	_ KV           = (*pebbleKV)(nil)
	_ BatchApplier = (*pebbleKV)(nil)
)

func (k *pebbleKV) key(user []byte) []byte {
	b := make([]byte, 0, len(k.prefix)+len(user))
	return append(append(b, k.prefix...), user...)
}

func (k *pebbleKV) Get(key []byte) ([]byte, bool, error) {
	if err := k.db.acquire(); err != nil {
		return nil, false, err
	}
	defer k.db.mu.RUnlock()
	v, closer, err := k.db.pdb.Get(k.key(key))
	if errors.Is(err, pebble.ErrNotFound) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, fmt.Errorf("state: %s: get: %w", k.name, err)
	}
	out := bytes.Clone(v)
	if out == nil {
		out = []byte{}
	}
	if err := closer.Close(); err != nil {
		return nil, false, fmt.Errorf("state: %s: get: %w", k.name, err)
	}
	return out, true, nil
}

func (k *pebbleKV) Put(key, value []byte) error {
	if err := k.db.acquire(); err != nil {
		return err
	}
	defer k.db.mu.RUnlock()
	if err := k.db.pdb.Set(k.key(key), value, k.db.write); err != nil {
		return fmt.Errorf("state: %s: put: %w", k.name, err)
	}
	return nil
}

func (k *pebbleKV) Delete(key []byte) error {
	if err := k.db.acquire(); err != nil {
		return err
	}
	defer k.db.mu.RUnlock()
	if err := k.db.pdb.Delete(k.key(key), k.db.write); err != nil {
		return fmt.Errorf("state: %s: delete: %w", k.name, err)
	}
	return nil
}

// ApplyBatch applies writes in one atomic Pebble batch with the sync policy.
// It records no checkpoint; use DB.Commit for that.
func (k *pebbleKV) ApplyBatch(writes []Write) error {
	if err := k.db.acquire(); err != nil {
		return err
	}
	defer k.db.mu.RUnlock()
	b := k.db.pdb.NewBatch()
	defer b.Close()
	if err := addWrites(b, k.prefix, writes); err != nil {
		return fmt.Errorf("state: %s: apply batch: %w", k.name, err)
	}
	if err := b.Commit(k.db.write); err != nil {
		return fmt.Errorf("state: %s: apply batch: %w", k.name, err)
	}
	return nil
}

// addWrites adds writes to b under prefix.
func addWrites(b *pebble.Batch, prefix []byte, writes []Write) error {
	var buf []byte
	for _, w := range writes {
		buf = append(append(buf[:0], prefix...), w.Key...)
		var err error
		if w.Delete {
			err = b.Delete(buf, nil)
		} else {
			err = b.Set(buf, w.Value, nil)
		}
		if err != nil {
			return err
		}
	}
	return nil
}

func (k *pebbleKV) Range(start, end []byte) (Iterator, error) {
	lower, upper := k.prefix, k.upper
	if start != nil {
		lower = k.key(start)
	}
	if end != nil {
		upper = k.key(end)
	}
	if bytes.Compare(lower, upper) >= 0 {
		return &pebbleIter{}, nil
	}
	if err := k.db.acquire(); err != nil {
		return nil, err
	}
	defer k.db.mu.RUnlock()
	it, err := k.db.pdb.NewIter(&pebble.IterOptions{LowerBound: lower, UpperBound: upper})
	if err != nil {
		return nil, fmt.Errorf("state: %s: range: %w", k.name, err)
	}
	return &pebbleIter{it: it, strip: len(k.prefix)}, nil
}

func (k *pebbleKV) PrefixScan(prefix []byte) (Iterator, error) {
	if len(prefix) == 0 {
		return k.Range(nil, nil)
	}
	end := prefixEnd(prefix)
	if end == nil {
		// prefix is all 0xff: every user key that starts with it is at or
		// after it, up to the end of the store-partition.
		return k.Range(prefix, nil)
	}
	return k.Range(prefix, end)
}

// pebbleIter adapts a Pebble iterator to Iterator, stripping the
// store-partition prefix. A nil it is an empty iterator.
type pebbleIter struct {
	it      *pebble.Iterator
	strip   int
	started bool
	valid   bool
	value   []byte
	err     error
	closed  bool
}

func (i *pebbleIter) Next() bool {
	if i.it == nil || i.closed || i.err != nil {
		i.valid = false
		return false
	}
	if !i.started {
		i.started = true
		i.valid = i.it.First()
	} else {
		i.valid = i.it.Next()
	}
	if !i.valid {
		i.err = i.it.Error()
		return false
	}
	v, err := i.it.ValueAndErr()
	if err != nil {
		i.err, i.valid = err, false
		return false
	}
	i.value = v
	return true
}

func (i *pebbleIter) Key() []byte {
	if !i.valid {
		return nil
	}
	return i.it.Key()[i.strip:]
}

func (i *pebbleIter) Value() []byte {
	if !i.valid {
		return nil
	}
	return i.value
}

func (i *pebbleIter) Err() error {
	if i.err != nil {
		return fmt.Errorf("state: iterate: %w", i.err)
	}
	return nil
}

func (i *pebbleIter) Close() error {
	if i.closed || i.it == nil {
		i.closed = true
		return i.Err()
	}
	i.closed, i.valid, i.value = true, false, nil
	if err := i.it.Close(); err != nil && i.err == nil {
		i.err = err
	}
	return i.Err()
}
