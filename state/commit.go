package state

import (
	"encoding/binary"
	"fmt"

	"github.com/cockroachdb/pebble/v2"
)

// Commit collects what one commit applies to a [DB]: the writes of several
// store-partitions (typically what [Overlay.TakeUnapplied], or
// [Overlay.TakeApplyPart] over an apply in parts, returned for each task
// store, sorted with [SortWrites]) and the changelog offsets they reflect.
// [DB.Commit] applies all of it in one atomic Pebble batch, so after a
// crash a store-partition holds every write its checkpoint covers (and,
// after an apply in parts, perhaps some later ones, which a replay from
// the checkpoint writes again in order).
//
// The zero value is an empty Commit ready for use. A Commit is not safe for
// concurrent use; it may be reused after Reset.
type Commit struct {
	parts       []commitPart
	checkpoints []commitCheckpoint
}

type commitPart struct {
	store     string
	partition int32
	writes    []Write
}

type commitCheckpoint struct {
	store     string
	partition int32
	offset    int64
}

// Add adds writes to (store, partition). Writes are applied in the order they
// were added, so when a key is written twice the later write wins. Add does
// not copy writes: the slice and the slices it refers to must stay unchanged
// until DB.Commit returns. (The results of Overlay.TakeUnapplied and
// TakeApplyPart qualify whatever the overlay does meanwhile;
// Overlay.Writes' only while the overlay is not written to.)
func (c *Commit) Add(store string, partition int32, writes []Write) {
	if len(writes) == 0 {
		return
	}
	c.parts = append(c.parts, commitPart{store: store, partition: partition, writes: writes})
}

// SetCheckpoint records that after this commit (store, partition) reflects
// its changelog up to and including offset. Setting it again for the same
// pair replaces the earlier offset.
func (c *Commit) SetCheckpoint(store string, partition int32, offset int64) {
	for i := range c.checkpoints {
		if cp := &c.checkpoints[i]; cp.store == store && cp.partition == partition {
			cp.offset = offset
			return
		}
	}
	c.checkpoints = append(c.checkpoints, commitCheckpoint{store: store, partition: partition, offset: offset})
}

// Empty reports whether the Commit has neither writes nor checkpoints.
func (c *Commit) Empty() bool { return len(c.parts) == 0 && len(c.checkpoints) == 0 }

// Reset empties the Commit for reuse, dropping its references to writes.
func (c *Commit) Reset() {
	clear(c.parts)
	c.parts = c.parts[:0]
	c.checkpoints = c.checkpoints[:0]
}

// Commit applies c in one atomic Pebble batch with the sync policy: all of
// its writes and checkpoints, or (on error) none of them. With SyncOnCommit
// the batch is durable when Commit returns. Afterwards reads through
// [DB.KV] see the writes and [DB.Checkpoint] returns the new offsets. A nil or
// empty c does nothing. Checkpoint offsets must not be negative. c is not
// modified and may be Reset and reused afterwards.
//
// Commit is safe for concurrent use; concurrent commits are applied in some
// serial order.
func (db *DB) Commit(c *Commit) error {
	if c == nil || c.Empty() {
		return nil
	}
	for _, cp := range c.checkpoints {
		if cp.offset < 0 {
			return fmt.Errorf("state: commit: checkpoint %s/%d: negative offset %d", cp.store, cp.partition, cp.offset)
		}
	}
	if err := db.acquire(); err != nil {
		return err
	}
	defer db.mu.RUnlock()
	b := db.pdb.NewBatch()
	defer b.Close()
	for _, p := range c.parts {
		if err := addWrites(b, dataPrefix(p.store, p.partition), p.writes); err != nil {
			return fmt.Errorf("state: commit: %s/%d: %w", p.store, p.partition, err)
		}
	}
	for _, cp := range c.checkpoints {
		if err := setCheckpoint(b, cp.store, cp.partition, cp.offset); err != nil {
			return fmt.Errorf("state: commit: checkpoint %s/%d: %w", cp.store, cp.partition, err)
		}
	}
	if err := b.Commit(db.write); err != nil {
		return fmt.Errorf("state: commit: %w", err)
	}
	return nil
}

func setCheckpoint(b *pebble.Batch, store string, partition int32, offset int64) error {
	var v [8]byte
	binary.BigEndian.PutUint64(v[:], uint64(offset))
	return b.Set(checkpointKey(store, partition), v[:], nil)
}

// defaultRestoreFlushBytes is the batch size at which a Restorer flushes on
// its own.
const defaultRestoreFlushBytes = 4 << 20

// Restorer bulk-loads one store-partition from its changelog. Put and Delete
// buffer writes in a Pebble batch; once the batch holds about 4 MiB the
// Restorer applies it on its own, without a checkpoint, unsynced. Flush
// applies what is buffered together with the checkpoint and syncs the
// write-ahead log (FlushUnsynced leaves the sync to a later [DB.Sync]), so
// a restore that returned from Flush survives any crash, and the next
// start replays only what came after it. (Without the sync, a process killed
// right after a restore could lose the checkpoint still buffered in Pebble's
// log writer and restore in full again.) A crash during a restore loses at
// most the writes since the last batch that reached disk.
//
// Pebble replays its write-ahead log in order, so after a crash the
// checkpoint is never ahead of the data: either the checkpoint and every
// write before it survived, or the old checkpoint is read back and the
// changelog is replayed from there, rewriting keys with the same final
// values.
//
// A Restorer is not safe for concurrent use. It may be used for several
// Flushes (for example one per fetched batch of changelog records). Dropping a
// Restorer discards its unflushed writes.
type Restorer struct {
	db         *DB
	store      string
	partition  int32
	prefix     []byte
	batch      *pebble.Batch
	key        []byte // reused buffer for prefixed keys
	flushBytes int
}

// Restorer returns a Restorer for (store, partition). It writes over whatever
// the store-partition holds; call DropPartition first for a full restore into
// a partition that may hold stale keys.
func (db *DB) Restorer(store string, partition int32) *Restorer {
	return &Restorer{
		db:         db,
		store:      store,
		partition:  partition,
		prefix:     dataPrefix(store, partition),
		flushBytes: defaultRestoreFlushBytes,
	}
}

// Put buffers a put of value under key (a changelog record). Both slices are
// copied. It returns the error of an automatic flush, if any.
func (r *Restorer) Put(key, value []byte) error {
	if r.batch == nil {
		r.batch = r.db.pdb.NewBatch()
	}
	r.key = append(append(r.key[:0], r.prefix...), key...)
	if err := r.batch.Set(r.key, value, nil); err != nil {
		return fmt.Errorf("state: restore %s/%d: put: %w", r.store, r.partition, err)
	}
	return r.maybeFlush()
}

// Delete buffers a delete of key (a changelog tombstone). It returns the
// error of an automatic flush, if any.
func (r *Restorer) Delete(key []byte) error {
	if r.batch == nil {
		r.batch = r.db.pdb.NewBatch()
	}
	r.key = append(append(r.key[:0], r.prefix...), key...)
	if err := r.batch.Delete(r.key, nil); err != nil {
		return fmt.Errorf("state: restore %s/%d: delete: %w", r.store, r.partition, err)
	}
	return r.maybeFlush()
}

func (r *Restorer) maybeFlush() error {
	if r.batch.Len() < r.flushBytes {
		return nil
	}
	if err := r.apply(pebble.NoSync); err != nil {
		return fmt.Errorf("state: restore %s/%d: flush: %w", r.store, r.partition, err)
	}
	return nil
}

// Flush applies the buffered writes and records checkpoint as the changelog
// offset the store-partition now reflects, in one batch, and syncs Pebble's
// log. checkpoint must not be negative. On error the buffered writes are
// dropped; restart the restore from the last checkpoint.
func (r *Restorer) Flush(checkpoint int64) error { return r.flush(checkpoint, pebble.Sync) }

// FlushUnsynced is Flush without the sync: the writes and the checkpoint
// are applied in one batch, but a crash may lose them (together, as Pebble
// replays its log in order) until a later [DB.Sync] or synced write. A
// runtime restoring several store-partitions calls it for each, then
// DB.Sync once.
func (r *Restorer) FlushUnsynced(checkpoint int64) error { return r.flush(checkpoint, pebble.NoSync) }

func (r *Restorer) flush(checkpoint int64, opts *pebble.WriteOptions) error {
	if checkpoint < 0 {
		return fmt.Errorf("state: restore %s/%d: negative checkpoint %d", r.store, r.partition, checkpoint)
	}
	if r.batch == nil {
		r.batch = r.db.pdb.NewBatch()
	}
	if err := setCheckpoint(r.batch, r.store, r.partition, checkpoint); err != nil {
		return fmt.Errorf("state: restore %s/%d: checkpoint: %w", r.store, r.partition, err)
	}
	if err := r.apply(opts); err != nil {
		return fmt.Errorf("state: restore %s/%d: flush: %w", r.store, r.partition, err)
	}
	return nil
}

// apply commits the batch and releases it.
func (r *Restorer) apply(opts *pebble.WriteOptions) error {
	b := r.batch
	r.batch = nil
	defer b.Close()
	if err := r.db.acquire(); err != nil {
		return err
	}
	defer r.db.mu.RUnlock()
	return b.Commit(opts)
}
