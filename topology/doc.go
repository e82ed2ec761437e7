// Package topology declares stream-processing topologies and executes them
// one record at a time. It does no I/O: the processor package connects a
// Topology to Kafka.
//
// # Declaring
//
// A topology is a directed acyclic graph of nodes, declared on a [Builder]
// and validated by [Builder.Build]:
//
//   - a source ([AddSource]) reads one or more topics and deserializes each
//     record with its key and value [Serde]s;
//   - a processor ([AddProcessor]) receives records from its parents and may
//     forward records to its children; it is user code implementing
//     [Processor], created fresh for every task by a supplier function;
//   - a sink ([AddSink], [AddSinkWithPartitioner]) serializes records and
//     hands them to the runtime for a topic;
//   - a store ([AddKeyValueStore]) is state attached to one or more
//     processors.
//
// Every node has a unique name, and children name their parents (in any
// order of declaration). Record types are checked at Build: each parent must
// output exactly the Record[K, V] its children take. Build reports every
// problem at once.
//
//	b := topology.NewBuilder()
//	topology.AddSource(b, "src", topology.StringSerde(), topology.StringSerde(), "in")
//	topology.AddProcessor(b, "upper", func() topology.Processor[string, string, string, string] {
//		return topology.ProcessFunc(func(ctx topology.Context[string, string], rec topology.Record[string, string]) error {
//			rec.Value = strings.ToUpper(rec.Value)
//			return ctx.Forward(rec)
//		})
//	}, "src")
//	topology.AddSink(b, "sink", "out", topology.StringSerde(), topology.StringSerde(), "upper")
//	topo, err := b.Build()
//
// # Sub-topologies and tasks
//
// The connected components of the graph are sub-topologies, numbered from 0
// in the order of their first source. A [Task] is one sub-topology applied to
// one partition of its source topics, identified by a [TaskID] such as "0_3";
// sources in one sub-topology must therefore be co-partitioned. The runtime
// creates tasks with [Topology.NewTask], giving each a [TaskEnv] through which
// sinks send and stores read and write.
//
// # Execution
//
// [Task.Process] takes one [RawRecord]. The source for its topic
// deserializes it and forwards it; [Context.Forward] is a synchronous call, so
// the record travels depth-first through the processors to the sinks before
// Process returns. A processor may forward any number of records, to all
// children or to one ([Context.ForwardTo]).
//
// Stream time is the largest record timestamp the task has seen. Punctuators
// ([Context.Schedule]) run periodically on stream time (from Process) or wall
// clock time (from [Task.Punctuate]).
//
// # Errors
//
// Failures are returned, never swallowed: a [*DeserializeError] when a source
// cannot decode a record, a [*ProcessError] when a processor or sink returns
// an error or panics (panics are recovered), a [*PunctuateError] from
// punctuators. [Origin] extracts the input record's topic, partition and
// offset, so the runtime can fail, skip or dead-letter it. Under exactly-once
// processing any error aborts the transaction: what the record did to stores
// and sinks is discarded.
//
// # Caveats
//
//   - A Task and the processors it runs are driven by one goroutine.
//   - Suppliers must return a new Processor on every call; sharing one
//     instance between tasks shares its fields between partitions.
//   - Processors should not keep records' byte slices or headers beyond
//     Process unless they copy them.
package topology
