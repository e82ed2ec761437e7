package topology

import (
	"fmt"
	"reflect"
	"slices"
	"strings"
	"time"
)

// instance is a node's per-task runtime form. Records travel between nodes
// boxed in an any holding a Record[K, V]; Build checked that every edge
// carries the types its child expects.
type instance struct {
	ingest  func(raw RawRecord) error // sources
	deliver func(rec any) error       // processors and sinks
	init    func() error              // processors
	close   func() error              // processors
}

// fanout is the set of children of one node in one task.
type fanout struct {
	names   []string
	targets []func(rec any) error
}

// all delivers rec to every child in order and stops at the first error.
func (f *fanout) all(rec any) error {
	for _, deliver := range f.targets {
		if err := deliver(rec); err != nil {
			return err
		}
	}
	return nil
}

func sourceInstance[K, V any](key Serde[K], value Serde[V]) instantiateFunc {
	return func(t *Task, n *node, out *fanout) (instance, error) {
		ingest := func(raw RawRecord) error {
			k, err := deserialize(key, raw.Key)
			if err != nil {
				return &DeserializeError{Topic: raw.Topic, Partition: raw.Partition, Offset: raw.Offset, Part: "key", Err: err}
			}
			v, err := deserialize(value, raw.Value)
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

// typeMismatch reports a record of the wrong type reaching a node, which
// Build's type check rules out.
func typeMismatch[K, V any](rec any) error {
	return fmt.Errorf("received a %T, want a %s", rec, reflect.TypeFor[Record[K, V]]())
}

func processorInstance[KIn, VIn, KOut, VOut any](supplier func() Processor[KIn, VIn, KOut, VOut]) instantiateFunc {
	return func(t *Task, n *node, out *fanout) (instance, error) {
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
		ctx := &procContext[KOut, VOut]{task: t, node: n.name, out: out, stores: n.stores}
		name := n.name
		return instance{
			deliver: func(rec any) error {
				r, ok := rec.(Record[KIn, VIn])
				if !ok {
					return t.processError(name, typeMismatch[KIn, VIn](rec))
				}
				return t.runNode(name, func() error { return proc.Process(ctx, r) })
			},
			init:  func() error { return proc.Init(ctx) },
			close: proc.Close,
		}, nil
	}
}

func sinkInstance[K, V any](topic string, key Serde[K], value Serde[V], partitioner func(string, K, V, int32) int32) instantiateFunc {
	return func(t *Task, n *node, out *fanout) (instance, error) {
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
		return instance{deliver: func(rec any) error {
			r, ok := rec.(Record[K, V])
			if !ok {
				return t.processError(name, typeMismatch[K, V](rec))
			}
			return t.runNode(name, func() error { return send(r) })
		}}, nil
	}
}

// procContext is the Context of one processor instance.
type procContext[K, V any] struct {
	task   *Task
	node   string
	out    *fanout
	stores []string
}

func (c *procContext[K, V]) Forward(rec Record[K, V]) error { return c.out.all(rec) }

func (c *procContext[K, V]) ForwardTo(child string, rec Record[K, V]) error {
	i := slices.Index(c.out.names, child)
	if i < 0 {
		return fmt.Errorf("topology: processor %q cannot forward to %q: not one of its children [%s]",
			c.node, child, strings.Join(c.out.names, ", "))
	}
	return c.out.targets[i](rec)
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
