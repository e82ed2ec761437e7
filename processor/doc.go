// Package processor is the onceflow runtime: it turns a topology.Topology into
// a running member of a Kafka consumer group and drives the
// read-process-write loop.
//
// # Basics
//
// processor.New validates every option before touching the network and
// returns a Processor; Run blocks until its context is cancelled (a graceful
// shutdown: the open transaction is finished or aborted, the group is left,
// the client closed) or until an unrecoverable error.
//
// Each worker is one consumer-group member. Records are polled in batches,
// routed to the task of their (sub-topology, partition), and pushed
// depth-first through the task's processors. Outputs are produced
// asynchronously; under ExactlyOnce they and the consumed offsets commit in
// one Kafka transaction every commit interval, so a read_committed reader
// sees every input record's effects exactly once, or not at all.
//
// # Guarantees
//
//   - ExactlyOnce (default): transactional producer per worker, offsets
//     committed inside the transaction, read_committed consumer.
//   - AtLeastOnce: idempotent producer, acks=all, offsets committed only
//     after every output of the batch is acknowledged; a crash repeats work.
//   - AtMostOnce: offsets committed before the batch is processed; a crash
//     loses work, never repeats it.
//
// # Caveats
//
// Exactly-once ends at Kafka: a processor that calls an external system must
// make that call idempotent (see the examples). An instance id must be
// unique among running instances and stable across restarts: a second
// process with the same id fences the first, whose Run returns ErrFenced.
package processor
