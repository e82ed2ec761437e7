package state

import (
	"errors"
	"fmt"
	"log/slog"

	"github.com/cockroachdb/pebble/v2/vfs"
)

// SyncPolicy says whether [DB.Commit] and the other durable writes of a [DB]
// wait for the write-ahead log to reach stable storage.
type SyncPolicy int

const (
	// SyncOnCommit fsyncs the write-ahead log before a commit returns: a
	// commit that returned survives a machine crash. This is the default.
	SyncOnCommit SyncPolicy = iota
	// NoSync returns as soon as the commit is in the operating system's
	// buffers. A process crash loses nothing, but a machine crash (or power
	// loss) may lose the most recent commits. Pebble's write-ahead log is
	// replayed in order and every commit is one atomic batch, so what survives
	// is always a prefix of the commits: the data and the checkpoint that
	// records it stay consistent, and the lost tail is replayed from the
	// changelog on restore.
	NoSync
)

// String returns the policy's name.
func (p SyncPolicy) String() string {
	switch p {
	case SyncOnCommit:
		return "SyncOnCommit"
	case NoSync:
		return "NoSync"
	default:
		return fmt.Sprintf("SyncPolicy(%d)", int(p))
	}
}

// Defaults of [Options].
const (
	// DefaultCacheSize is the default of Options.CacheSize: 64 MiB.
	DefaultCacheSize int64 = 64 << 20
	// DefaultMemTableSize is the default of Options.MemTableSize: 16 MiB.
	DefaultMemTableSize uint64 = 16 << 20
	// DefaultMemTableStopWrites is the default of
	// Options.MemTableStopWrites: 4.
	DefaultMemTableStopWrites = 4

	// minMemTableSize and maxMemTableSize bound Options.MemTableSize. Pebble
	// requires less than 4 GiB; below 64 KiB it would flush on every few
	// commits.
	minMemTableSize uint64 = 64 << 10
	maxMemTableSize uint64 = 4<<30 - 1
)

// Options configures the Pebble database opened by [OpenDB]. The zero value
// is valid and means every default. Call EnsureDefaults to fill in the
// defaults and Validate to check the result; OpenDB does both on a copy, so
// the caller's Options are never modified.
type Options struct {
	// CacheSize is the size in bytes of the block cache shared by every store
	// of the database. Zero means the default, 64 MiB; negative values are
	// invalid. (RocksDB: block_cache size; Kafka Streams configures it per
	// store through rocksdb.config.setter.)
	CacheSize int64
	// MemTableSize is the size in bytes of one memtable. Zero means the
	// default, 16 MiB; otherwise it must be at least 64 KiB and less than
	// 4 GiB. (RocksDB: write_buffer_size.)
	MemTableSize uint64
	// MemTableStopWrites is how many memtables' worth of written data may
	// wait in memory for Pebble to flush it before writes wait: the
	// memtable being filled, the ones being flushed, and restore batches
	// (which Pebble flushes as memtables of their own). Zero means the
	// default, 4; otherwise it must be at least 2. With Pebble's own
	// default, 2, restores waited for flushes: in a benchmark restoring
	// 1,000,000 keys over four partitions, applying the last batches took
	// 90 ms instead of 30–50. Pebble reserves memtables' memory in the
	// block cache (CacheSize), which shrinks while they wait. (RocksDB:
	// max_write_buffer_number.)
	MemTableStopWrites int
	// Sync is the durability of commits. The default (the zero value) is
	// SyncOnCommit.
	Sync SyncPolicy
	// FS is the filesystem the database lives on. Nil means vfs.Default, the
	// operating system's filesystem. Tests pass vfs.NewMem() or
	// vfs.NewCrashableMem().
	FS vfs.FS
	// Logger receives Pebble's messages, with the key component=pebble:
	// informational ones at Debug, errors at Error. Nil means discard.
	Logger *slog.Logger
}

// EnsureDefaults replaces zero fields with their defaults. It leaves invalid
// non-zero values alone for Validate to report.
func (o *Options) EnsureDefaults() {
	if o.CacheSize == 0 {
		o.CacheSize = DefaultCacheSize
	}
	if o.MemTableSize == 0 {
		o.MemTableSize = DefaultMemTableSize
	}
	if o.MemTableStopWrites == 0 {
		o.MemTableStopWrites = DefaultMemTableStopWrites
	}
	if o.FS == nil {
		o.FS = vfs.Default
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
}

// Validate reports every invalid field at once, as one error joining one
// error per problem. Zero values are valid (they stand for the defaults), so
// Validate may be called before or after EnsureDefaults.
func (o *Options) Validate() error {
	var errs []error
	if o.CacheSize < 0 {
		errs = append(errs, fmt.Errorf("state: Options.CacheSize (%d) must not be negative", o.CacheSize))
	}
	if o.MemTableSize != 0 && (o.MemTableSize < minMemTableSize || o.MemTableSize > maxMemTableSize) {
		errs = append(errs, fmt.Errorf("state: Options.MemTableSize (%d) must be between %d and %d",
			o.MemTableSize, minMemTableSize, maxMemTableSize))
	}
	if o.MemTableStopWrites != 0 && o.MemTableStopWrites < 2 {
		errs = append(errs, fmt.Errorf("state: Options.MemTableStopWrites (%d) must be at least 2", o.MemTableStopWrites))
	}
	if o.Sync != SyncOnCommit && o.Sync != NoSync {
		errs = append(errs, fmt.Errorf("state: Options.Sync (%s) must be SyncOnCommit or NoSync", o.Sync))
	}
	return errors.Join(errs...)
}

// pebbleLogger adapts a *slog.Logger to pebble.Logger.
type pebbleLogger struct {
	l *slog.Logger
}

func (p pebbleLogger) Infof(format string, args ...any) {
	p.l.Debug(fmt.Sprintf(format, args...), "component", "pebble")
}

func (p pebbleLogger) Errorf(format string, args ...any) {
	p.l.Error(fmt.Sprintf(format, args...), "component", "pebble")
}

// Fatalf logs at Error and then panics: Pebble calls Fatalf only on broken
// invariants, and its contract is that Fatalf does not return.
func (p pebbleLogger) Fatalf(format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	p.l.Error(msg, "component", "pebble", "fatal", true)
	panic("state: pebble fatal error: " + msg)
}
