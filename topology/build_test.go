package topology_test

import (
	"errors"
	"testing"

	"github.com/onceflow/onceflow/topology"
)

// pass returns a supplier of processors that forward every record unchanged.
func pass[K, V any]() func() topology.Processor[K, V, K, V] {
	return func() topology.Processor[K, V, K, V] {
		return topology.ProcessFunc(func(ctx topology.Context[K, V], rec topology.Record[K, V]) error {
			return ctx.Forward(rec)
		})
	}
}

var (
	str = topology.StringSerde()
	i64 = topology.Int64Serde()
)

func TestBuildValid(t *testing.T) {
	b := topology.NewBuilder()
	// Children before parents is allowed.
	topology.AddSink(b, "sink", "out", str, str, "p")
	topology.AddProcessor(b, "p", pass[string, string](), "src")
	topology.AddSource(b, "src", str, str, "in")
	if _, err := b.Build(); err != nil {
		t.Fatalf("Build() = %v, want nil", err)
	}
}

func TestBuildInvalid(t *testing.T) {
	tests := []struct {
		name  string
		build func(b *topology.Builder)
		want  string
	}{
		{
			name:  "no sources",
			build: func(b *topology.Builder) {},
			want:  "topology has no sources",
		},
		{
			name: "empty node name",
			build: func(b *topology.Builder) {
				topology.AddSource(b, "src", str, str, "in")
				topology.AddProcessor(b, "", pass[string, string](), "src")
			},
			want: "processor #2 has an empty name",
		},
		{
			name: "duplicate node name",
			build: func(b *topology.Builder) {
				topology.AddSource(b, "x", str, str, "in")
				topology.AddSink(b, "x", "out", str, str, "x")
			},
			want: `duplicate node name "x": used by a source and a sink`,
		},
		{
			name: "duplicate store name",
			build: func(b *topology.Builder) {
				topology.AddSource(b, "src", str, str, "in")
				topology.AddProcessor(b, "p", pass[string, string](), "src")
				topology.AddKeyValueStore(b, "s", str, str, "p")
				topology.AddKeyValueStore(b, "s", str, i64, "p")
			},
			want: `duplicate store name "s"`,
		},
		{
			name: "empty store name",
			build: func(b *topology.Builder) {
				topology.AddSource(b, "src", str, str, "in")
				topology.AddProcessor(b, "p", pass[string, string](), "src")
				topology.AddKeyValueStore(b, "", str, str, "p")
			},
			want: "store #1 has an empty name",
		},
		{
			name: "unknown parent",
			build: func(b *topology.Builder) {
				topology.AddSource(b, "src", str, str, "in")
				topology.AddProcessor(b, "p", pass[string, string](), "src", "nope")
			},
			want: `processor "p" has unknown parent "nope"`,
		},
		{
			name: "parent listed twice",
			build: func(b *topology.Builder) {
				topology.AddSource(b, "src", str, str, "in")
				topology.AddSink(b, "sink", "out", str, str, "src", "src")
			},
			want: `sink "sink" lists parent "src" twice`,
		},
		{
			name: "cycle",
			build: func(b *topology.Builder) {
				topology.AddSource(b, "src", str, str, "in")
				topology.AddProcessor(b, "a", pass[string, string](), "src", "c")
				topology.AddProcessor(b, "b", pass[string, string](), "a")
				topology.AddProcessor(b, "c", pass[string, string](), "b")
			},
			want: `processors "a", "b", "c" form a cycle`,
		},
		{
			name: "self parent",
			build: func(b *topology.Builder) {
				topology.AddSource(b, "src", str, str, "in")
				topology.AddProcessor(b, "a", pass[string, string](), "src", "a")
			},
			want: `processor "a" is its own parent`,
		},
		{
			name: "unreachable cycle",
			build: func(b *topology.Builder) {
				topology.AddSource(b, "src", str, str, "in")
				topology.AddSink(b, "sink", "out", str, str, "src")
				topology.AddProcessor(b, "a", pass[string, string](), "b")
				topology.AddProcessor(b, "b", pass[string, string](), "a")
			},
			want: `processors "a", "b" form a cycle
processor "a" is not reachable from any source
processor "b" is not reachable from any source`,
		},
		{
			name: "processor and sink without parents",
			build: func(b *topology.Builder) {
				topology.AddSource(b, "src", str, str, "in")
				topology.AddProcessor(b, "p", pass[string, string]())
				topology.AddSink(b, "sink", "out", str, str)
			},
			want: `processor "p" has no parents
sink "sink" has no parents`,
		},
		{
			name: "source topics",
			build: func(b *topology.Builder) {
				topology.AddSource(b, "none", str, str)
				topology.AddSource(b, "empty", str, str, "")
				topology.AddSource(b, "a", str, str, "in", "in")
				topology.AddSource(b, "b", str, str, "in")
			},
			want: `source "none" has no topics
source "empty" has an empty topic name
source "a" lists topic "in" twice
topic "in" is read by both source "a" and source "b"`,
		},
		{
			name: "sink as parent",
			build: func(b *topology.Builder) {
				topology.AddSource(b, "src", str, str, "in")
				topology.AddSink(b, "sink", "out", str, str, "src")
				topology.AddProcessor(b, "p", pass[string, string](), "sink")
			},
			want: `processor "p" has sink "sink" as a parent; sinks cannot have children`,
		},
		{
			name: "store attachments",
			build: func(b *topology.Builder) {
				topology.AddSource(b, "src", str, str, "in")
				topology.AddProcessor(b, "p", pass[string, string](), "src")
				topology.AddKeyValueStore(b, "s1", str, str, "ghost")
				topology.AddKeyValueStore(b, "s2", str, str, "src")
				topology.AddKeyValueStore(b, "s3", str, str)
			},
			want: `store "s1" is attached to unknown processor "ghost"
store "s2" is attached to source "src"; only processors can use stores
store "s3" is not attached to any processor`,
		},
		{
			name: "store across sub-topologies",
			build: func(b *topology.Builder) {
				topology.AddSource(b, "src1", str, str, "in1")
				topology.AddProcessor(b, "p1", pass[string, string](), "src1")
				topology.AddSource(b, "src2", str, str, "in2")
				topology.AddProcessor(b, "p2", pass[string, string](), "src2")
				topology.AddKeyValueStore(b, "shared", str, str, "p1", "p2")
			},
			want: `store "shared" is used by processors in different sub-topologies: "p1" (sub-topology 0) and "p2" (sub-topology 1)`,
		},
		{
			name: "type mismatch",
			build: func(b *topology.Builder) {
				topology.AddSource(b, "src", str, str, "in")
				topology.AddProcessor(b, "count", pass[string, int64](), "src")
				topology.AddSink(b, "sink", "out", str, topology.BytesSerde(), "count")
			},
			want: `processor "count" takes (string, int64) but its parent source "src" outputs (string, string)
sink "sink" takes (string, []uint8) but its parent processor "count" outputs (string, int64)`,
		},
		{
			name: "nil supplier, serdes and partitioner",
			build: func(b *topology.Builder) {
				topology.AddSource[string, string](b, "src", nil, str, "in")
				topology.AddProcessor[string, string, string, string](b, "p", nil, "src")
				topology.AddSinkWithPartitioner[string, string](b, "sink", "out", str, nil, nil, "p")
				topology.AddKeyValueStore[string, string](b, "s", str, nil, "p")
			},
			want: `source "src" has a nil key serde
processor "p" has a nil supplier
sink "sink" has a nil value serde
sink "sink" has a nil partitioner
store "s" has a nil value serde`,
		},
		{
			name: "empty sink topic",
			build: func(b *topology.Builder) {
				topology.AddSource(b, "src", str, str, "in")
				topology.AddSink(b, "sink", "", str, str, "src")
			},
			want: `sink "sink" has an empty topic name`,
		},
		{
			name: "every problem at once",
			build: func(b *topology.Builder) {
				topology.AddSource(b, "src", str, str)
				topology.AddProcessor(b, "src", pass[string, string](), "src")
				topology.AddProcessor(b, "p", pass[string, int64](), "src", "q")
				topology.AddSink(b, "sink", "out", str, i64, "p")
				topology.AddProcessor(b, "after", pass[string, int64](), "sink")
				topology.AddKeyValueStore(b, "s", str, str, "missing")
			},
			want: `source "src" has no topics
duplicate node name "src": used by a source and a processor
processor "p" takes (string, int64) but its parent source "src" outputs (string, string)
processor "p" has unknown parent "q"
processor "after" has sink "sink" as a parent; sinks cannot have children
store "s" is attached to unknown processor "missing"`,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := topology.NewBuilder()
			tt.build(b)
			topo, err := b.Build()
			if err == nil {
				t.Fatalf("Build() = %v, nil; want error", topo)
			}
			if topo != nil {
				t.Errorf("Build() returned a topology with an error")
			}
			want := "topology: invalid topology\n" + tt.want
			if err.Error() != want {
				t.Errorf("Build() error:\n%s\nwant:\n%s", err, want)
			}
			if !errors.Is(err, topology.ErrInvalidTopology) {
				t.Errorf("Build() error does not wrap ErrInvalidTopology")
			}
		})
	}
}

func TestBuildNilBuilder(t *testing.T) {
	var b *topology.Builder
	topology.AddSource(b, "src", str, str, "in") // a no-op, not a panic
	_, err := b.Build()
	if want := "topology: invalid topology\nBuild called on a nil *Builder"; err == nil || err.Error() != want {
		t.Fatalf("Build() error = %v, want %s", err, want)
	}
}

func TestBuildIsolatedFromLaterAdds(t *testing.T) {
	b := topology.NewBuilder()
	topology.AddSource(b, "src", str, str, "in")
	topology.AddSink(b, "sink", "out", str, str, "src")
	topo, err := b.Build()
	if err != nil {
		t.Fatal(err)
	}
	before := topo.Describe()
	topology.AddSink(b, "sink2", "out2", str, str, "src")
	if after := topo.Describe(); after != before {
		t.Errorf("Describe changed after a later Add:\n%s\nwas:\n%s", after, before)
	}
}
