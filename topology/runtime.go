package topology

import (
	"fmt"
	"reflect"
	"slices"
	"strings"
	"time"
)

// instance is a node's per-task runtime form. Records travel between nodes
// by value as Record[K, V]: deliver holds a func(Record[K, V]) error for the
// node's input types, and each parent asserts its children's deliver
// functions to its own output types once (Build checked that every edge
// carries the types its child expects). Boxing every record in an interface
// instead would cost an allocation per record per edge.
type instance struct {
	ingest  func(raw RawRecord) error // sources
	deliver any                       // processors and sinks: func(Record[K, V]) error
	init    func() error              // processors
	close   func() error              // processors
}

// fanout is the set of children of one node in one task.
type fanout struct {
	names   []string
	targets []any // the children's deliver functions
}

// outputs is a parent's typed view of its fanout, resolved on first use
// (NewTask fills the fanout after creating every instance).
type outputs[K, V any] struct {
	f   *fanout
	fns []func(Record[K, V]) error
	err error // a child whose input type is not Record[K, V]
}

func (o *outputs[K, V]) resolve() error {
	if o.fns != nil || o.err != nil {
		return o.err
	}
	fns := make([]func(Record[K, V]) error, len(o.f.targets))
	for i, t := range o.f.targets {
		fn, ok := t.(func(Record[K, V]) error)
		if !ok {
			o.err = fmt.Errorf("topology: child %q does not take a %s", o.f.names[i], reflect.TypeFor[Record[K, V]]())
			return o.err
		}
		fns[i] = fn
	}
	o.fns = fns
	return nil
}

// all delivers rec to every child in order and stops at the first error.
func (o *outputs[K, V]) all(rec Record[K, V]) error {
	if err := o.resolve(); err != nil {
		return err
	}
	for _, deliver := range o.fns {
		if err := deliver(rec); err != nil {
			return err
		}
	}
	return nil
}

func sourceInstance[K, V any](key Serde[K], value Serde[V]) instantiateFunc {
	return func(t *Task, n *node, f *fanout) (instance, error) {
		out := &outputs[K, V]{f: f}
		decodeKey, decodeValue := sourceDecoder(key), sourceDecoder(value)
		ingest := func(raw RawRecord) error {
			k, err := decodeKey(raw.Key)
			if err != nil {
				return &DeserializeError{Topic: raw.Topic, Partition: raw.Partition, Offset: raw.Offset, Part: "key", Err: err}
			}
			v, err := decodeValue(raw.Value)
			if err != nil {
				return &DeserializeError{Topic: raw.Topic, Partition: raw.Partition, Offset: raw.Offset, Part: "value", Err: err}
			}
			t.advanceStreamTime(raw.Timestamp)
			return out.all(Record[K, V]{
				Key:       k,
				Value:     v,
				Timestamp: raw.Timestamp,
				Headers:   raw.Headers,
				Topic:     raw.Topic,
				Partition: raw.Partition,
				Offset:    raw.Offset,
			})
		}
		return instance{ingest: ingest}, nil
	}
}

// deserialize calls s.Deserialize, turning a panic into an error.
func deserialize[T any](s Serde[T], b []byte) (T, error) {
	var v T
	err := callProtected(func() error {
		var err error
		v, err = s.Deserialize(b)
		return err
	})
	return v, err
}

// sourceDecoder returns how a source decodes with s: without a copy when s
// can (a RawRecord's bytes never change), else with deserialize.
func sourceDecoder[T any](s Serde[T]) func([]byte) (T, error) {
	if sd, ok := s.(sharingDeserializer[T]); ok {
		return sd.deserializeShared
	}
	return func(b []byte) (T, error) { return deserialize(s, b) }
}

func processorInstance[KIn, VIn, KOut, VOut any](supplier func() Processor[KIn, VIn, KOut, VOut]) instantiateFunc {
	return func(t *Task, n *node, f *fanout) (instance, error) {
		var proc Processor[KIn, VIn, KOut, VOut]
		err := callProtected(func() error {
			proc = supplier()
			return nil
		})
		if err != nil {
			return instance{}, fmt.Errorf("processor %q: supplier: %w", n.name, err)
		}
		if proc == nil {
			return instance{}, fmt.Errorf("processor %q: supplier returned nil", n.name)
		}
		ctx := &procContext[KOut, VOut]{task: t, node: n.name, out: &outputs[KOut, VOut]{f: f}, stores: n.stores}
		name := n.name
		return instance{
			deliver: func(r Record[KIn, VIn]) error {
				return t.runNode(name, func() error { return proc.Process(ctx, r) })
			},
			init:  func() error { return proc.Init(ctx) },
			close: proc.Close,
		}, nil
	}
}

func sinkInstance[K, V any](topic string, key Serde[K], value Serde[V], partitioner func(string, K, V, int32) int32) instantiateFunc {
	return func(t *Task, n *node, _ *fanout) (instance, error) {
		name := n.name
		send := func(r Record[K, V]) error {
			kb, err := key.Serialize(r.Key)
			if err != nil {
				return fmt.Errorf("serialize key for topic %q: %w", topic, err)
			}
			vb, err := value.Serialize(r.Value)
			if err != nil {
				return fmt.Errorf("serialize value for topic %q: %w", topic, err)
			}
			partition := int32(-1)
			if partitioner != nil {
				num, err := t.env.Partitions(topic)
				if err != nil {
					return fmt.Errorf("partitions of topic %q: %w", topic, err)
				}
				if num <= 0 {
					return fmt.Errorf("topic %q has %d partitions", topic, num)
				}
				partition = partitioner(topic, r.Key, r.Value, num)
				if partition < 0 || partition >= num {
					return fmt.Errorf("partitioner chose partition %d of topic %q, which has %d partitions", partition, topic, num)
				}
			}
			err = t.env.Send(OutRecord{
				Topic:     topic,
				Partition: partition,
				Key:       kb,
				Value:     vb,
				Headers:   slices.Clone(r.Headers),
				Timestamp: r.Timestamp,
			})
			if err != nil {
				return fmt.Errorf("send to topic %q: %w", topic, err)
			}
			return nil
		}
		return instance{deliver: func(r Record[K, V]) error {
			return t.runNode(name, func() error { return send(r) })
		}}, nil
	}
}

// procContext is the Context of one processor instance.
type procContext[K, V any] struct {
	task   *Task
	node   string
	out    *outputs[K, V]
	stores []string
}

func (c *procContext[K, V]) Forward(rec Record[K, V]) error { return c.out.all(rec) }

func (c *procContext[K, V]) ForwardTo(child string, rec Record[K, V]) error {
	i := slices.Index(c.out.f.names, child)
	if i < 0 {
		return fmt.Errorf("topology: processor %q cannot forward to %q: not one of its children [%s]",
			c.node, child, strings.Join(c.out.f.names, ", "))
	}
	if err := c.out.resolve(); err != nil {
		return err
	}
	return c.out.fns[i](rec)
}

func (c *procContext[K, V]) Store(name string) (any, error) {
	if !slices.Contains(c.stores, name) {
		return nil, fmt.Errorf("topology: store %q is not attached to processor %q (attached: [%s])",
			name, c.node, strings.Join(c.stores, ", "))
	}
	return c.task.stores[name], nil
}

func (c *procContext[K, V]) Schedule(interval time.Duration, kind PunctuationType, fn func(ts time.Time) error) (func(), error) {
	return c.task.schedule(c.node, interval, kind, fn)
}

func (c *procContext[K, V]) Task() TaskID { return c.task.id }

func (c *procContext[K, V]) StreamTime() time.Time { return c.task.streamTime }
