package topology

import (
	"errors"
	"fmt"
	"time"
)

// ErrInvalidTopology is wrapped by the error [Builder.Build] returns when the
// topology is invalid. That error joins it with one error per problem found.
var ErrInvalidTopology = errors.New("topology: invalid topology")

// ErrUnknownTopic is wrapped by the error [Task.Process] returns for a record
// whose topic no source of the task's sub-topology reads.
var ErrUnknownTopic = errors.New("topology: topic not read by this task")

// DeserializeError is returned by [Task.Process] when a source cannot
// deserialize the key or value of an input record. No processor saw the
// record.
type DeserializeError struct {
	Topic     string
	Partition int32
	Offset    int64
	// Part is "key" or "value".
	Part string
	Err  error
}

// Error returns e.g.
// `deserialize value at topic "in" partition 2 offset 17: <cause>`.
func (e *DeserializeError) Error() string {
	return fmt.Sprintf("deserialize %s at topic %q partition %d offset %d: %v",
		e.Part, e.Topic, e.Partition, e.Offset, e.Err)
}

// Unwrap returns the serde's error.
func (e *DeserializeError) Unwrap() error { return e.Err }

// ProcessError is returned by [Task.Process] when a processor returns an
// error or panics, or when a sink fails to serialize, partition or send a
// record. Node is the deepest node that failed: an error that already
// contains a ProcessError passes unchanged through the processors upstream of
// it.
//
// Topic, Partition and Offset identify the task's current input record. For
// records forwarded outside of Task.Process (from a punctuator or from Init)
// Topic is "" and Partition and Offset are -1.
//
// Failures of the TaskEnv (Send, Partitions, and store operations, which
// reach processors through their stores) are reported the same way, with the
// environment's error in the Unwrap chain; a runtime that must tell them
// apart from bad records checks for its own errors with errors.Is.
type ProcessError struct {
	Node      string
	Topic     string
	Partition int32
	Offset    int64
	Err       error
	// Panicked reports that the node panicked; Err then describes the panic
	// value (and wraps it if it is an error), PanicValue holds it and Stack
	// holds the goroutine stack at the panic.
	Panicked   bool
	PanicValue any
	Stack      []byte
}

// Error returns e.g.
// `process node "upper" at topic "in" partition 2 offset 17: <cause>`.
func (e *ProcessError) Error() string {
	if e.Topic == "" {
		return fmt.Sprintf("process node %q: %v", e.Node, e.Err)
	}
	return fmt.Sprintf("process node %q at topic %q partition %d offset %d: %v",
		e.Node, e.Topic, e.Partition, e.Offset, e.Err)
}

// Unwrap returns the node's error.
func (e *ProcessError) Unwrap() error { return e.Err }

// PunctuateError is returned by [Task.Process] or [Task.Punctuate] when a
// punctuator function returns an error or panics. An error from a node the
// punctuator forwarded to is in its Unwrap chain as a [ProcessError].
type PunctuateError struct {
	// Node is the processor that scheduled the punctuator.
	Node string
	Type PunctuationType
	// Time is the stream time or wall-clock time passed to the punctuator.
	Time time.Time
	Err  error
	// Panicked, PanicValue and Stack are as in ProcessError.
	Panicked   bool
	PanicValue any
	Stack      []byte
}

// Error returns e.g. `punctuate node "agg" (StreamTime at 2024-01-01T00:00:10Z): <cause>`.
func (e *PunctuateError) Error() string {
	return fmt.Sprintf("punctuate node %q (%s at %s): %v",
		e.Node, e.Type, e.Time.Format(time.RFC3339Nano), e.Err)
}

// Unwrap returns the punctuator's error.
func (e *PunctuateError) Unwrap() error { return e.Err }

// Origin returns the input record an error from [Task.Process] is about: the
// topic, partition and offset of a [DeserializeError] or [ProcessError] in
// err's chain. ok is false if there is none, or if the error did not arise
// while processing an input record (for example inside a wall-clock
// punctuator).
func Origin(err error) (topic string, partition int32, offset int64, ok bool) {
	var de *DeserializeError
	if errors.As(err, &de) {
		return de.Topic, de.Partition, de.Offset, true
	}
	var pe *ProcessError
	if errors.As(err, &pe) && pe.Topic != "" {
		return pe.Topic, pe.Partition, pe.Offset, true
	}
	return "", 0, 0, false
}
