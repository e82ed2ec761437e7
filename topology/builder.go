package topology

import (
	"fmt"
	"reflect"

	"github.com/onceflow/onceflow/state"
)

// Builder declares a topology: sources, processors, sinks and stores. The
// Add functions are package-level generic functions taking the Builder,
// because Go methods cannot have type parameters.
//
// The Add functions never fail: they record problems, and [Builder.Build]
// reports every problem at once. Nodes may be added in any order; a parent
// may be added after its children. A Builder is not safe for concurrent use.
type Builder struct {
	nodes       []*node
	byName      map[string]*node
	stores      []*storeDef
	storeByName map[string]*storeDef
	topicSource map[string]string // topic -> source node reading it
	added       int               // nodes added, including rejected ones
	addedStores int
	problems    []error
}

// NewBuilder returns an empty Builder.
func NewBuilder() *Builder {
	return &Builder{
		byName:      make(map[string]*node),
		storeByName: make(map[string]*storeDef),
		topicSource: make(map[string]string),
	}
}

type nodeKind int

const (
	kindSource nodeKind = iota
	kindProcessor
	kindSink
)

func (k nodeKind) String() string {
	switch k {
	case kindSource:
		return "source"
	case kindProcessor:
		return "processor"
	default:
		return "sink"
	}
}

// instantiateFunc creates a node's runtime instance for one task. out is the
// node's (not yet wired) set of children.
type instantiateFunc func(t *Task, n *node, out *fanout) (instance, error)

// node is the type-erased description of one node. Its record types are kept
// as reflect.Types so Build can check every edge.
type node struct {
	kind    nodeKind
	name    string
	index   int      // position among accepted nodes: the tie-breaker for every ordering
	parents []string // as declared
	topics  []string // source
	topic   string   // sink
	stores  []string // processor: attached stores, sorted; filled by Build

	keyIn, valIn, keyOut, valOut reflect.Type // nil where the kind has no input or output

	instantiate instantiateFunc
}

// storeDef describes one declared store.
type storeDef struct {
	name       string
	kind       StoreKind
	processors []string
	open       func(kv state.KV) any // returns the typed store
}

func (b *Builder) problemf(format string, args ...any) {
	b.problems = append(b.problems, fmt.Errorf(format, args...))
}

// add records n, or a problem if its name is empty or taken.
func (b *Builder) add(n *node) {
	b.added++
	if n.name == "" {
		b.problemf("%s #%d has an empty name", n.kind, b.added)
		return
	}
	if prev, ok := b.byName[n.name]; ok {
		b.problemf("duplicate node name %q: used by a %s and a %s", n.name, prev.kind, n.kind)
		return
	}
	n.index = len(b.nodes)
	b.nodes = append(b.nodes, n)
	b.byName[n.name] = n
}

func isNil(v any) bool {
	if v == nil {
		return true
	}
	rv := reflect.ValueOf(v)
	switch rv.Kind() {
	case reflect.Pointer, reflect.Map, reflect.Slice, reflect.Func, reflect.Interface, reflect.Chan:
		return rv.IsNil()
	}
	return false
}

func (b *Builder) checkSerdes(what, name string, key, value any) {
	if isNil(key) {
		b.problemf("%s %q has a nil key serde", what, name)
	}
	if isNil(value) {
		b.problemf("%s %q has a nil value serde", what, name)
	}
}

// AddSource adds a source node named name that reads topics, deserializing
// keys with key and values with value. It outputs Record[K, V]. A topic may be
// read by one source only.
func AddSource[K, V any](b *Builder, name string, key Serde[K], value Serde[V], topics ...string) {
	if b == nil {
		return
	}
	n := &node{
		kind:        kindSource,
		name:        name,
		topics:      append([]string(nil), topics...),
		keyOut:      reflect.TypeFor[K](),
		valOut:      reflect.TypeFor[V](),
		instantiate: sourceInstance(key, value),
	}
	before := len(b.nodes)
	b.add(n)
	if len(b.nodes) == before {
		return
	}
	b.checkSerdes("source", name, key, value)
	if len(topics) == 0 {
		b.problemf("source %q has no topics", name)
	}
	seen := make(map[string]bool)
	for _, topic := range topics {
		switch {
		case topic == "":
			b.problemf("source %q has an empty topic name", name)
		case seen[topic]:
			b.problemf("source %q lists topic %q twice", name, topic)
		case b.topicSource[topic] != "":
			b.problemf("topic %q is read by both source %q and source %q", topic, b.topicSource[topic], name)
		default:
			b.topicSource[topic] = name
		}
		seen[topic] = true
	}
}

// AddProcessor adds a processor node named name, a child of parents. Each
// task calls supplier once to get its own Processor instance, so supplier
// must return a new instance on every call. Every parent must output
// Record[KIn, VIn]; the processor outputs Record[KOut, VOut].
func AddProcessor[KIn, VIn, KOut, VOut any](b *Builder, name string, supplier func() Processor[KIn, VIn, KOut, VOut], parents ...string) {
	if b == nil {
		return
	}
	n := &node{
		kind:        kindProcessor,
		name:        name,
		parents:     append([]string(nil), parents...),
		keyIn:       reflect.TypeFor[KIn](),
		valIn:       reflect.TypeFor[VIn](),
		keyOut:      reflect.TypeFor[KOut](),
		valOut:      reflect.TypeFor[VOut](),
		instantiate: processorInstance(supplier),
	}
	before := len(b.nodes)
	b.add(n)
	if len(b.nodes) > before && supplier == nil {
		b.problemf("processor %q has a nil supplier", name)
	}
}

// AddSink adds a sink node named name, a child of parents, that serializes
// Record[K, V] with key and value and sends it to topic. The producer chooses
// the partition by hashing the key (OutRecord.Partition is -1).
func AddSink[K, V any](b *Builder, name, topic string, key Serde[K], value Serde[V], parents ...string) {
	addSink(b, name, topic, key, value, nil, false, parents)
}

// AddSinkWithPartitioner is like [AddSink], but partitioner chooses each
// record's partition, in [0, numPartitions), given the topic's partition
// count from [TaskEnv.Partitions].
func AddSinkWithPartitioner[K, V any](b *Builder, name, topic string, key Serde[K], value Serde[V], partitioner func(topic string, key K, value V, numPartitions int32) int32, parents ...string) {
	addSink(b, name, topic, key, value, partitioner, true, parents)
}

func addSink[K, V any](b *Builder, name, topic string, key Serde[K], value Serde[V], partitioner func(string, K, V, int32) int32, wantPartitioner bool, parents []string) {
	if b == nil {
		return
	}
	n := &node{
		kind:        kindSink,
		name:        name,
		topic:       topic,
		parents:     append([]string(nil), parents...),
		keyIn:       reflect.TypeFor[K](),
		valIn:       reflect.TypeFor[V](),
		instantiate: sinkInstance(topic, key, value, partitioner),
	}
	before := len(b.nodes)
	b.add(n)
	if len(b.nodes) == before {
		return
	}
	b.checkSerdes("sink", name, key, value)
	if topic == "" {
		b.problemf("sink %q has an empty topic name", name)
	}
	if wantPartitioner && partitioner == nil {
		b.problemf("sink %q has a nil partitioner", name)
	}
}

// AddKeyValueStore declares a key-value store named name, with keys encoded
// by key and values by value, and attaches it to processors. Those
// processors get it as a state.KeyValueStore[K, V] (see [KeyValueStoreOf]).
// All of them must be in the same sub-topology.
func AddKeyValueStore[K, V any](b *Builder, name string, key Serde[K], value Serde[V], processors ...string) {
	if b == nil {
		return
	}
	b.addedStores++
	if name == "" {
		b.problemf("store #%d has an empty name", b.addedStores)
		return
	}
	if _, ok := b.storeByName[name]; ok {
		b.problemf("duplicate store name %q", name)
		return
	}
	b.checkSerdes("store", name, key, value)
	s := &storeDef{
		name:       name,
		kind:       KeyValue,
		processors: append([]string(nil), processors...),
		open: func(kv state.KV) any {
			return state.NewKeyValueStore[K, V](name, kv, key, value)
		},
	}
	b.stores = append(b.stores, s)
	b.storeByName[name] = s
}
