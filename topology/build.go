package topology

import (
	"errors"
	"fmt"
	"slices"
	"strings"
)

// Build validates the declared topology and returns it, immutable. If the
// topology is invalid it returns a nil Topology and one error that wraps
// [ErrInvalidTopology] and joins one error per problem, each a sentence
// naming the nodes involved; the problems are listed in a deterministic
// order. Build does not change b and may be called again.
func (b *Builder) Build() (*Topology, error) {
	if b == nil {
		return nil, errors.Join(ErrInvalidTopology, errors.New("Build called on a nil *Builder"))
	}
	v := &validator{problems: slices.Clone(b.problems)}
	v.copyNodes(b.nodes)
	v.checkEdges()
	v.checkCycles()
	v.checkReachable()
	v.assignSubTopologies()
	v.checkStores(b.stores)
	if !slices.ContainsFunc(v.nodes, func(n *node) bool { return n.kind == kindSource }) {
		v.problemf("topology has no sources")
	}
	if len(v.problems) > 0 {
		return nil, errors.Join(append([]error{ErrInvalidTopology}, v.problems...)...)
	}
	return v.topology(b.stores), nil
}

// validator holds the state of one Build.
type validator struct {
	nodes    []*node
	byName   map[string]*node
	children map[string][]string // valid edges only, children in node order
	parents  map[string][]string // valid edges only, in declared order
	badEdges map[string]bool     // nodes with a reported parent problem
	sub      map[string]int      // node -> sub-topology, -1 if it has no source
	numSubs  int
	problems []error
}

func (v *validator) problemf(format string, args ...any) {
	v.problems = append(v.problems, fmt.Errorf(format, args...))
}

// copyNodes takes private copies so later Add calls do not affect the
// topology being built.
func (v *validator) copyNodes(nodes []*node) {
	v.nodes = make([]*node, len(nodes))
	v.byName = make(map[string]*node, len(nodes))
	for i, n := range nodes {
		c := *n
		c.stores = nil
		v.nodes[i] = &c
		v.byName[c.name] = &c
	}
}

// checkEdges reports parent problems and type mismatches, and records the
// valid edges.
func (v *validator) checkEdges() {
	v.children = make(map[string][]string)
	v.parents = make(map[string][]string)
	v.badEdges = make(map[string]bool)
	for _, n := range v.nodes {
		if n.kind == kindSource {
			continue
		}
		if len(n.parents) == 0 {
			v.problemf("%s %q has no parents", n.kind, n.name)
			v.badEdges[n.name] = true
		}
		seen := make(map[string]bool)
		for _, pname := range n.parents {
			if seen[pname] {
				v.problemf("%s %q lists parent %q twice", n.kind, n.name, pname)
				continue
			}
			seen[pname] = true
			p, ok := v.byName[pname]
			switch {
			case !ok:
				v.problemf("%s %q has unknown parent %q", n.kind, n.name, pname)
				v.badEdges[n.name] = true
				continue
			case p.kind == kindSink:
				v.problemf("%s %q has sink %q as a parent; sinks cannot have children", n.kind, n.name, pname)
				v.badEdges[n.name] = true
				continue
			case p.keyOut != n.keyIn || p.valOut != n.valIn:
				v.problemf("%s %q takes (%s, %s) but its parent %s %q outputs (%s, %s)",
					n.kind, n.name, n.keyIn, n.valIn, p.kind, p.name, p.keyOut, p.valOut)
			}
			v.parents[n.name] = append(v.parents[n.name], pname)
			v.children[pname] = append(v.children[pname], n.name)
		}
	}
}

// checkCycles reports every strongly connected component of processors that
// contains a cycle (Tarjan's algorithm).
func (v *validator) checkCycles() {
	index := make(map[string]int)
	low := make(map[string]int)
	onStack := make(map[string]bool)
	var stack []string
	var cycles [][]*node
	next := 0
	var visit func(name string)
	visit = func(name string) {
		index[name], low[name] = next, next
		next++
		stack = append(stack, name)
		onStack[name] = true
		for _, c := range v.children[name] {
			if _, seen := index[c]; !seen {
				visit(c)
				low[name] = min(low[name], low[c])
			} else if onStack[c] {
				low[name] = min(low[name], index[c])
			}
		}
		if low[name] != index[name] {
			return
		}
		var comp []*node
		for {
			top := stack[len(stack)-1]
			stack = stack[:len(stack)-1]
			onStack[top] = false
			comp = append(comp, v.byName[top])
			if top == name {
				break
			}
		}
		if len(comp) > 1 || slices.Contains(v.children[name], name) {
			slices.SortFunc(comp, func(a, b *node) int { return a.index - b.index })
			cycles = append(cycles, comp)
		}
	}
	for _, n := range v.nodes {
		if _, seen := index[n.name]; !seen {
			visit(n.name)
		}
	}
	slices.SortFunc(cycles, func(a, b []*node) int { return a[0].index - b[0].index })
	for _, comp := range cycles {
		if len(comp) == 1 {
			v.problemf("processor %q is its own parent", comp[0].name)
			continue
		}
		names := make([]string, len(comp))
		for i, n := range comp {
			names[i] = fmt.Sprintf("%q", n.name)
		}
		v.problemf("processors %s form a cycle", strings.Join(names, ", "))
	}
}

// checkReachable reports processors and sinks no source leads to, unless a
// parent problem was already reported for them.
func (v *validator) checkReachable() {
	reached := make(map[string]bool)
	var queue []string
	for _, n := range v.nodes {
		if n.kind == kindSource {
			reached[n.name] = true
			queue = append(queue, n.name)
		}
	}
	for len(queue) > 0 {
		name := queue[0]
		queue = queue[1:]
		for _, c := range v.children[name] {
			if !reached[c] {
				reached[c] = true
				queue = append(queue, c)
			}
		}
	}
	for _, n := range v.nodes {
		if !reached[n.name] && !v.badEdges[n.name] {
			v.problemf("%s %q is not reachable from any source", n.kind, n.name)
		}
	}
}

// assignSubTopologies numbers the connected components of the node graph in
// the order of their first source.
func (v *validator) assignSubTopologies() {
	parent := make(map[string]string)
	var find func(string) string
	find = func(x string) string {
		p, ok := parent[x]
		if !ok || p == x {
			return x
		}
		root := find(p)
		parent[x] = root
		return root
	}
	for _, n := range v.nodes {
		for _, c := range v.children[n.name] {
			if a, b := find(n.name), find(c); a != b {
				parent[b] = a
			}
		}
	}
	ids := make(map[string]int)
	for _, n := range v.nodes {
		if n.kind != kindSource {
			continue
		}
		if _, ok := ids[find(n.name)]; !ok {
			ids[find(n.name)] = len(ids)
		}
	}
	v.numSubs = len(ids)
	v.sub = make(map[string]int, len(v.nodes))
	for _, n := range v.nodes {
		if id, ok := ids[find(n.name)]; ok {
			v.sub[n.name] = id
		} else {
			v.sub[n.name] = -1
		}
	}
}

// checkStores reports bad store attachments and records each processor's
// stores.
func (v *validator) checkStores(stores []*storeDef) {
	for _, s := range stores {
		if len(s.processors) == 0 {
			v.problemf("store %q is not attached to any processor", s.name)
			continue
		}
		firstSub, firstProc, reported := -1, "", false
		for _, pname := range s.processors {
			p, ok := v.byName[pname]
			switch {
			case !ok:
				v.problemf("store %q is attached to unknown processor %q", s.name, pname)
				continue
			case p.kind != kindProcessor:
				v.problemf("store %q is attached to %s %q; only processors can use stores", s.name, p.kind, pname)
				continue
			}
			if !slices.Contains(p.stores, s.name) {
				p.stores = append(p.stores, s.name)
				slices.Sort(p.stores)
			}
			id := v.sub[pname] // -1 if unreachable, which is reported already
			switch {
			case id < 0 || reported:
			case firstSub < 0:
				firstSub, firstProc = id, pname
			case id != firstSub:
				v.problemf("store %q is used by processors in different sub-topologies: %q (sub-topology %d) and %q (sub-topology %d)",
					s.name, firstProc, firstSub, pname, id)
				reported = true
			}
		}
	}
}

// topology assembles the validated topology.
func (v *validator) topology(stores []*storeDef) *Topology {
	t := &Topology{
		nodes:    v.nodes,
		byName:   v.byName,
		children: v.children,
		parents:  v.parents,
		stores:   make(map[string]*storeDef, len(stores)),
		topicSub: make(map[string]int),
		subs:     make([]subTopology, v.numSubs),
	}
	for i := range t.subs {
		t.subs[i].info.ID = i
	}
	for _, s := range stores {
		t.stores[s.name] = s
		id := v.sub[s.processors[0]]
		t.subs[id].stores = append(t.subs[id].stores, s)
	}
	for _, n := range v.topoOrder() {
		st := &t.subs[v.sub[n.name]]
		st.nodes = append(st.nodes, n)
		switch n.kind {
		case kindSource:
			for _, topic := range n.topics {
				t.topicSub[topic] = st.info.ID
				st.info.SourceTopics = append(st.info.SourceTopics, topic)
			}
		case kindSink:
			if !slices.Contains(st.info.SinkTopics, n.topic) {
				st.info.SinkTopics = append(st.info.SinkTopics, n.topic)
			}
		}
	}
	for i := range t.subs {
		st := &t.subs[i]
		slices.Sort(st.info.SourceTopics)
		slices.Sort(st.info.SinkTopics)
		slices.SortFunc(st.stores, func(a, b *storeDef) int { return strings.Compare(a.name, b.name) })
		for _, s := range st.stores {
			st.info.Stores = append(st.info.Stores, StoreSpec{Name: s.name, Kind: s.kind})
		}
	}
	return t
}

// topoOrder returns all nodes parents first, breaking ties by the order the
// nodes were added. The graph must be acyclic.
func (v *validator) topoOrder() []*node {
	indegree := make(map[string]int, len(v.nodes))
	var ready []*node
	for _, n := range v.nodes {
		indegree[n.name] = len(v.parents[n.name])
		if indegree[n.name] == 0 {
			ready = append(ready, n)
		}
	}
	order := make([]*node, 0, len(v.nodes))
	for len(ready) > 0 {
		n := ready[0]
		ready = ready[1:]
		order = append(order, n)
		for _, c := range v.children[n.name] {
			indegree[c]--
			if indegree[c] == 0 {
				cn := v.byName[c]
				i, _ := slices.BinarySearchFunc(ready, cn.index, func(r *node, idx int) int { return r.index - idx })
				ready = slices.Insert(ready, i, cn)
			}
		}
	}
	return order
}
