package topology

import (
	"errors"
	"fmt"
	"runtime/debug"
	"strings"
	"time"

	"github.com/onceflow/onceflow/state"
)

// TaskEnv is what a task needs from the runtime. The runtime implements it
// once per task.
type TaskEnv interface {
	// Send hands a sink's serialized output record to the producer.
	Send(rec OutRecord) error
	// Store returns the byte-level store named name for this task.
	Store(name string) (state.KV, error)
	// Partitions returns the partition count of topic, for sink
	// partitioners.
	Partitions(topic string) (int32, error)
}

// Task runs one sub-topology for one partition: it owns fresh processor
// instances, the task's stores and its punctuators. Create it with
// [Topology.NewTask], call Init once, then Process and Punctuate, then Close.
//
// A Task is driven by one goroutine; it is not safe for concurrent use.
type Task struct {
	id      TaskID
	env     TaskEnv
	sub     *subTopology
	order   []taskNode                       // processors, parents first
	sources map[string]func(RawRecord) error // topic -> source ingest
	stores  map[string]any                   // typed stores by name
	// lastTopic and lastIngest are the source Process used last: records
	// come a partition at a time.
	lastTopic  string
	lastIngest func(RawRecord) error
	phase      taskPhase
	// origin is the topic, partition and offset of the input record being
	// processed (valid while inProcess); kept by value so that Process does
	// not move every record to the heap.
	origin    RawRecord
	inProcess bool

	punctuators []*punctuator
	streamTime  time.Time
	streamKnown bool
	wallTime    time.Time
	wallKnown   bool
}

type taskPhase int

const (
	phaseNew taskPhase = iota
	phaseRunning
	phaseInitFailed
	phaseClosed
)

type taskNode struct {
	name string
	inst instance
}

// NewTask creates the task id of t: it opens the sub-topology's stores
// through env and calls every processor supplier once. It does not call the
// processors' Init; [Task.Init] does.
func (t *Topology) NewTask(id TaskID, env TaskEnv) (*Task, error) {
	if env == nil {
		return nil, fmt.Errorf("topology: task %s: nil TaskEnv", id)
	}
	if id.SubTopology < 0 || id.SubTopology >= len(t.subs) {
		return nil, fmt.Errorf("topology: task %s: no sub-topology %d (the topology has %d)", id, id.SubTopology, len(t.subs))
	}
	if id.Partition < 0 {
		return nil, fmt.Errorf("topology: task %s: negative partition", id)
	}
	sub := &t.subs[id.SubTopology]
	task := &Task{
		id:      id,
		env:     env,
		sub:     sub,
		sources: make(map[string]func(RawRecord) error),
		stores:  make(map[string]any, len(sub.stores)),
	}
	for _, s := range sub.stores {
		kv, err := env.Store(s.name)
		if err != nil {
			return nil, fmt.Errorf("topology: task %s: open store %q: %w", id, s.name, err)
		}
		if kv == nil {
			return nil, fmt.Errorf("topology: task %s: open store %q: TaskEnv returned a nil KV", id, s.name)
		}
		task.stores[s.name] = s.open(kv)
	}
	insts := make(map[string]instance, len(sub.nodes))
	outs := make(map[string]*fanout, len(sub.nodes))
	for _, n := range sub.nodes {
		out := &fanout{}
		inst, err := n.instantiate(task, n, out)
		if err != nil {
			return nil, fmt.Errorf("topology: task %s: %w", id, err)
		}
		insts[n.name], outs[n.name] = inst, out
		switch n.kind {
		case kindSource:
			for _, topic := range n.topics {
				task.sources[topic] = inst.ingest
			}
		case kindProcessor:
			task.order = append(task.order, taskNode{name: n.name, inst: inst})
		}
	}
	for _, n := range sub.nodes {
		out := outs[n.name]
		for _, c := range t.children[n.name] {
			out.names = append(out.names, c)
			out.targets = append(out.targets, insts[c].deliver)
		}
	}
	return task, nil
}

// ID returns the task's ID.
func (t *Task) ID() TaskID { return t.id }

// StreamTime returns the task's stream time: the largest timestamp of the
// input records processed so far, or the zero time before the first.
func (t *Task) StreamTime() time.Time { return t.streamTime }

func (t *Task) checkRunning(op string) error {
	switch t.phase {
	case phaseNew:
		return fmt.Errorf("topology: task %s: %s called before Init", t.id, op)
	case phaseInitFailed:
		return fmt.Errorf("topology: task %s: %s called after Init failed", t.id, op)
	case phaseClosed:
		return fmt.Errorf("topology: task %s: %s called after Close", t.id, op)
	}
	return nil
}

// Init calls Init on every processor, parents first, and stops at the first
// error. A task whose Init failed can only be closed.
func (t *Task) Init() error {
	if t.phase != phaseNew {
		return fmt.Errorf("topology: task %s: Init called twice or after Close", t.id)
	}
	for _, n := range t.order {
		if err := callProtected(n.inst.init); err != nil {
			t.phase = phaseInitFailed
			return fmt.Errorf("topology: task %s: init processor %q: %w", t.id, n.name, err)
		}
	}
	t.phase = phaseRunning
	return nil
}

// Process runs one input record through the task: the source reading
// raw.Topic deserializes it, then it goes depth-first through the processors
// to the sinks. Stream time advances to raw.Timestamp if that is later, and
// the stream-time punctuators that are due run after the record.
//
// It returns a [*DeserializeError] if the source cannot deserialize the
// record, a [*ProcessError] if a processor or sink fails or panics, a
// [*PunctuateError] if a punctuator fails, and an error wrapping
// [ErrUnknownTopic] if no source of the task reads raw.Topic. After an error
// the task may go on processing; under exactly-once the runtime instead
// aborts the transaction and replaces the task.
func (t *Task) Process(raw RawRecord) error {
	if err := t.checkRunning("Process"); err != nil {
		return err
	}
	ingest := t.lastIngest
	if ingest == nil || raw.Topic != t.lastTopic {
		var ok bool
		if ingest, ok = t.sources[raw.Topic]; !ok {
			return fmt.Errorf("%w: task %s: topic %q is not read by sub-topology %d (it reads [%s])",
				ErrUnknownTopic, t.id, raw.Topic, t.id.SubTopology, strings.Join(t.sub.info.SourceTopics, ", "))
		}
		t.lastTopic, t.lastIngest = raw.Topic, ingest
	}
	t.origin = RawRecord{Topic: raw.Topic, Partition: raw.Partition, Offset: raw.Offset}
	t.inProcess = true
	err := ingest(raw)
	t.inProcess = false
	if err != nil {
		return err
	}
	return t.runPunctuators(StreamTime, t.streamTime)
}

// advanceStreamTime is called by a source once the record deserialized.
func (t *Task) advanceStreamTime(ts time.Time) {
	if !t.streamKnown || ts.After(t.streamTime) {
		t.streamTime = ts
	}
	t.streamKnown = true
}

// Punctuate runs the wall-clock punctuators due at now. The runtime calls it
// regularly with the current time.
func (t *Task) Punctuate(now time.Time) error {
	if err := t.checkRunning("Punctuate"); err != nil {
		return err
	}
	if !t.wallKnown || now.After(t.wallTime) {
		t.wallTime = now
	}
	t.wallKnown = true
	return t.runPunctuators(WallClockTime, t.wallTime)
}

// Close calls Close on every processor, parents first, and returns their
// errors joined. It cancels every punctuator. Closing a closed task does
// nothing.
func (t *Task) Close() error {
	if t.phase == phaseClosed {
		return nil
	}
	t.phase = phaseClosed
	t.punctuators = nil
	var errs []error
	for _, n := range t.order {
		if err := callProtected(n.inst.close); err != nil {
			errs = append(errs, fmt.Errorf("topology: task %s: close processor %q: %w", t.id, n.name, err))
		}
	}
	return errors.Join(errs...)
}

// panicInfo is a recovered panic.
type panicInfo struct {
	value any
	stack []byte
}

func (p *panicInfo) err() error {
	if e, ok := p.value.(error); ok {
		return fmt.Errorf("panic: %w", e)
	}
	return fmt.Errorf("panic: %v", p.value)
}

// protect calls fn and recovers a panic from it.
func protect(fn func() error) (p *panicInfo, err error) {
	defer func() {
		if r := recover(); r != nil {
			p = &panicInfo{value: r, stack: debug.Stack()}
		}
	}()
	return nil, fn()
}

// callProtected calls fn, turning a panic into an error.
func callProtected(fn func() error) error {
	p, err := protect(fn)
	if p != nil {
		return p.err()
	}
	return err
}

// runNode calls fn for node and turns its failure into a *ProcessError about
// the current input record. An error that already contains a *ProcessError
// (from a node downstream) is returned unchanged.
func (t *Task) runNode(node string, fn func() error) error {
	p, err := protect(fn)
	if p != nil {
		pe := t.processError(node, p.err())
		pe.Panicked, pe.PanicValue, pe.Stack = true, p.value, p.stack
		return pe
	}
	if err == nil {
		return nil
	}
	var inner *ProcessError
	if errors.As(err, &inner) {
		return err
	}
	return t.processError(node, err)
}

func (t *Task) processError(node string, err error) *ProcessError {
	pe := &ProcessError{Node: node, Partition: -1, Offset: -1, Err: err}
	if t.inProcess {
		pe.Topic, pe.Partition, pe.Offset = t.origin.Topic, t.origin.Partition, t.origin.Offset
	}
	return pe
}
