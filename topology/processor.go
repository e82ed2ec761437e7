package topology

import (
	"fmt"
	"reflect"
	"time"

	"github.com/onceflow/onceflow/state"
)

// Processor is a node of a topology that receives records of type
// Record[KIn, VIn] and may forward records of type Record[KOut, VOut] to its
// children, like a Kafka Streams Processor.
//
// Each task gets its own instances, created by the supplier given to
// [AddProcessor], so a Processor may keep per-partition state in fields.
// All methods of one instance are called from one goroutine.
//
// Returning an error (or panicking) from Process fails the record: the
// runtime aborts the transaction the record was processed in.
type Processor[KIn, VIn, KOut, VOut any] interface {
	// Init is called once per task, parents before children, before the
	// first record. It is the place to fetch stores and schedule
	// punctuators.
	Init(ctx Context[KOut, VOut]) error
	// Process handles one record.
	Process(ctx Context[KOut, VOut], rec Record[KIn, VIn]) error
	// Close is called once when the task closes.
	Close() error
}

// ProcessFunc adapts fn into a Processor whose Init and Close do nothing.
func ProcessFunc[KIn, VIn, KOut, VOut any](fn func(ctx Context[KOut, VOut], rec Record[KIn, VIn]) error) Processor[KIn, VIn, KOut, VOut] {
	return processFunc[KIn, VIn, KOut, VOut](fn)
}

type processFunc[KIn, VIn, KOut, VOut any] func(ctx Context[KOut, VOut], rec Record[KIn, VIn]) error

func (f processFunc[KIn, VIn, KOut, VOut]) Init(Context[KOut, VOut]) error { return nil }
func (f processFunc[KIn, VIn, KOut, VOut]) Process(ctx Context[KOut, VOut], rec Record[KIn, VIn]) error {
	return f(ctx, rec)
}
func (f processFunc[KIn, VIn, KOut, VOut]) Close() error { return nil }

// Context is what a processor instance sees of its task. It is valid from
// Init until Close and must be used only from the calls the task makes into
// the processor (it is not safe for concurrent use).
type Context[K, V any] interface {
	// Forward sends rec to every child of this node, one after the other in
	// the order the children were added, each synchronously and depth-first:
	// when Forward returns, the record has gone through the whole subtree.
	// It stops at and returns the first child error.
	Forward(rec Record[K, V]) error
	// ForwardTo sends rec to the child named child only. It returns an error
	// if child is not a child of this node.
	ForwardTo(child string, rec Record[K, V]) error
	// Store returns the typed store named name, which must be attached to
	// this processor. Use [KeyValueStoreOf] for a type-checked result.
	Store(name string) (any, error)
	// Schedule registers fn to run every interval of the given time kind and
	// returns a function that cancels it. See [PunctuationType] for when it
	// runs. Cancel may be called more than once, and from inside fn.
	Schedule(interval time.Duration, kind PunctuationType, fn func(ts time.Time) error) (cancel func(), err error)
	// Task returns the ID of the task running this processor.
	Task() TaskID
	// StreamTime returns the task's stream time: the largest timestamp of the
	// input records processed so far (including the current one), or the
	// zero time before the first.
	StreamTime() time.Time
}

// PunctuationType selects the clock a punctuator follows.
//
// A punctuator's schedule is anchored at the first value of its clock the
// task knows at or after Schedule: the stream time, once a record has been
// processed; the wall-clock time, once [Task.Punctuate] has been called. It
// first runs one interval after the anchor and then on that grid. If the
// clock jumps over several intervals, the punctuator runs once (with the
// current time) and its next run is the next grid point after it.
type PunctuationType int

const (
	// StreamTime punctuators run from [Task.Process], after the record that
	// moved stream time past their due time has gone through the topology.
	StreamTime PunctuationType = iota
	// WallClockTime punctuators run from [Task.Punctuate], which the runtime
	// calls with the current time.
	WallClockTime
)

// String returns "StreamTime" or "WallClockTime".
func (p PunctuationType) String() string {
	switch p {
	case StreamTime:
		return "StreamTime"
	case WallClockTime:
		return "WallClockTime"
	default:
		return fmt.Sprintf("PunctuationType(%d)", int(p))
	}
}

// KeyValueStoreOf returns the key-value store named name from ctx (usually a
// [Context]), checking that it was declared with key type K and value type V.
func KeyValueStoreOf[K, V any](ctx interface{ Store(string) (any, error) }, name string) (state.KeyValueStore[K, V], error) {
	s, err := ctx.Store(name)
	if err != nil {
		return nil, err
	}
	kv, ok := s.(state.KeyValueStore[K, V])
	if !ok {
		return nil, fmt.Errorf("topology: store %q is a %T, not a state.KeyValueStore[%s, %s]",
			name, s, reflect.TypeFor[K](), reflect.TypeFor[V]())
	}
	return kv, nil
}
