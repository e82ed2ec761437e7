// Package state defines the state-store contracts of onceflow and an
// in-memory byte store.
//
// # Model
//
// A store is owned by exactly one task: the pair (sub-topology, partition).
// The runtime gives each task one byte-level [KV] per store it uses. A KV is
// an ordered map from []byte to []byte; keys are ordered bytewise (as
// [bytes.Compare] orders them), which is the order [KV.Range] and
// [KV.PrefixScan] return them in.
//
// Processors do not use a KV directly. They see a typed [KeyValueStore],
// built by [NewKeyValueStore] from a KV and two [Codec]s (the key codec and
// the value codec). topology.Serde values satisfy Codec, so the serdes used to
// declare a store in a topology are the codecs of its typed view. Because
// order is defined on serialized bytes, [KeyValueStore.Range] and
// [KeyValueStore.PrefixScan] are only meaningful for key codecs whose byte
// order matches the order you want (strings, big-endian integers, raw bytes);
// a JSON key codec, for example, wraps strings in quotes.
//
// # Ownership and lifetimes
//
//   - Values returned by [KV.Get] belong to the caller.
//   - Slices passed to [KV.Put] may be reused by the caller after Put returns.
//   - [Iterator.Key] and [Iterator.Value] are valid only until the next call to
//     Next or Close, and must not be modified. Copy them to keep them.
//   - Every iterator must be closed. Iterators are not safe for concurrent use.
//
// # Transactions
//
// Under exactly-once processing the runtime's KV buffers writes in a pending
// batch that is applied only after the Kafka transaction commits; reads see
// the task's own pending writes. That is invisible at this level: a KV behaves
// like a plain ordered map to the code using it.
//
// [NewMemKV] returns an in-memory KV for tests and for stores that need no
// durability.
//
// # Pebble
//
// [OpenDB] opens the one Pebble database of an instance; every
// (store, partition) pair is a key prefix in it (see the key layout in
// pebble.go). [DB.KV] returns the KV of one store-partition. Pending writes
// reach the database through [DB.Commit], which applies the writes of several
// store-partitions and their changelog checkpoints in one atomic batch, so
// data and checkpoint always agree, even after a crash. [DB.Restorer]
// bulk-loads a store-partition from its changelog, and [DB.DropPartition]
// empties one. A foreign or corrupt directory makes OpenDB fail with
// [ErrForeignState] or [ErrCorruptState]; the runtime then calls [WipeDir]
// and restores everything. A DB is safe for concurrent use; its KVs,
// iterators and Restorers are not.
//
// [NewWindowStore] builds a typed window store (key + window start) over any
// KV, the DB's or [NewMemKV]'s.
package state
