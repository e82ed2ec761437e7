package topology

import (
	"fmt"
	"time"
)

// Header is a Kafka record header.
type Header struct {
	Key   string
	Value []byte
}

// Record is a typed record flowing through a topology.
//
// A source sets every field from the input record it deserialized. Forward
// passes on the record exactly as the processor built it: processors usually
// copy the record they received and change Key, Value or Timestamp, which
// keeps the origin fields (Topic, Partition, Offset) pointing at the input
// record.
type Record[K, V any] struct {
	Key       K
	Value     V
	Timestamp time.Time
	Headers   []Header

	// Topic, Partition and Offset identify the input record this record
	// derives from. They are informational: errors report the task's current
	// input record, whatever these fields say.
	Topic     string
	Partition int32
	Offset    int64
}

// RawRecord is an input record as the runtime consumed it, before
// deserialization. It is what [Task.Process] takes. Its Key and Value must
// not change after Process is called: the record a source makes may share
// them (with [BytesSerde]), and processors may keep it.
type RawRecord struct {
	Topic     string
	Partition int32
	Offset    int64
	Key       []byte
	Value     []byte
	Headers   []Header
	Timestamp time.Time
}

// OutRecord is a serialized record produced by a sink, handed to
// [TaskEnv.Send].
type OutRecord struct {
	Topic string
	// Partition is the partition chosen by the sink's partitioner, or -1 to
	// let the producer choose by hashing the key.
	Partition int32
	Key       []byte
	Value     []byte
	Headers   []Header
	Timestamp time.Time
}

// TaskID identifies a task: one partition of one sub-topology.
type TaskID struct {
	SubTopology int
	Partition   int32
}

// String returns the Kafka Streams form "<sub-topology>_<partition>", e.g.
// "0_3".
func (id TaskID) String() string { return fmt.Sprintf("%d_%d", id.SubTopology, id.Partition) }
