package topology

import (
	"fmt"
	"slices"
	"strings"
)

// Topology is a validated, immutable topology returned by [Builder.Build].
// It is safe for concurrent use: tasks created from it share nothing mutable.
type Topology struct {
	nodes    []*node // in the order they were added
	byName   map[string]*node
	children map[string][]string
	parents  map[string][]string
	stores   map[string]*storeDef
	subs     []subTopology
	topicSub map[string]int
}

type subTopology struct {
	info   SubTopology
	nodes  []*node // parents first
	stores []*storeDef
}

// SubTopology describes one sub-topology: a connected component of the node
// graph. Each partition of its source topics becomes one task.
type SubTopology struct {
	// ID numbers sub-topologies from 0 in the order their first source was
	// added.
	ID int
	// SourceTopics are the topics the sub-topology reads, sorted.
	SourceTopics []string
	// SinkTopics are the topics the sub-topology writes, sorted.
	SinkTopics []string
	// Stores are the stores its processors use, sorted by name.
	Stores []StoreSpec
}

// StoreKind is the kind of a state store.
type StoreKind int

const (
	// KeyValue is a key-value store, declared with [AddKeyValueStore].
	KeyValue StoreKind = iota
)

// String returns "KeyValue".
func (k StoreKind) String() string {
	if k == KeyValue {
		return "KeyValue"
	}
	return fmt.Sprintf("StoreKind(%d)", int(k))
}

// StoreSpec describes a declared store.
type StoreSpec struct {
	Name string
	Kind StoreKind
}

// SubTopologies returns every sub-topology, ordered by ID. The result is a
// copy the caller may modify.
func (t *Topology) SubTopologies() []SubTopology {
	out := make([]SubTopology, len(t.subs))
	for i, s := range t.subs {
		out[i] = SubTopology{
			ID:           s.info.ID,
			SourceTopics: slices.Clone(s.info.SourceTopics),
			SinkTopics:   slices.Clone(s.info.SinkTopics),
			Stores:       slices.Clone(s.info.Stores),
		}
	}
	return out
}

// SubTopologyFor returns the ID of the sub-topology that reads topic. ok is
// false if no source reads it.
func (t *Topology) SubTopologyFor(topic string) (id int, ok bool) {
	id, ok = t.topicSub[topic]
	return id, ok
}

// SourceTopics returns every topic the topology reads, sorted.
func (t *Topology) SourceTopics() []string {
	var out []string
	for _, s := range t.subs {
		out = append(out, s.info.SourceTopics...)
	}
	slices.Sort(out)
	return out
}

// Describe returns a text description of the topology in the style of Kafka
// Streams' TopologyDescription. It is deterministic, so it can be kept in a
// file and diffed: sub-topologies are listed by ID, nodes parents first (ties
// in the order they were added), children in the order they were added and
// parents in the order they were declared. For example:
//
//	Topologies:
//	   Sub-topology: 0
//	    Source: src (topics: [in])
//	      --> upper
//	    Processor: upper (stores: [counts])
//	      --> sink
//	      <-- src
//	    Sink: sink (topic: out)
//	      <-- upper
//
// Sub-topologies are separated by an empty line; a processor without
// children shows "--> none".
func (t *Topology) Describe() string {
	var sb strings.Builder
	sb.WriteString("Topologies:\n")
	for i, s := range t.subs {
		if i > 0 {
			sb.WriteString("\n")
		}
		fmt.Fprintf(&sb, "   Sub-topology: %d\n", s.info.ID)
		for _, n := range s.nodes {
			switch n.kind {
			case kindSource:
				fmt.Fprintf(&sb, "    Source: %s (topics: [%s])\n", n.name, strings.Join(n.topics, ", "))
			case kindProcessor:
				fmt.Fprintf(&sb, "    Processor: %s (stores: [%s])\n", n.name, strings.Join(n.stores, ", "))
			case kindSink:
				fmt.Fprintf(&sb, "    Sink: %s (topic: %s)\n", n.name, n.topic)
			}
			if n.kind != kindSink {
				children := "none"
				if c := t.children[n.name]; len(c) > 0 {
					children = strings.Join(c, ", ")
				}
				fmt.Fprintf(&sb, "      --> %s\n", children)
			}
			if p := t.parents[n.name]; len(p) > 0 {
				fmt.Fprintf(&sb, "      <-- %s\n", strings.Join(p, ", "))
			}
		}
	}
	return sb.String()
}
