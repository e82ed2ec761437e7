package topology_test

import (
	"reflect"
	"testing"

	"github.com/onceflow/onceflow/topology"
)

// wordCount declares two sub-topologies: words -> split -> count (store
// counts) -> {counts-out, audit}, and clicks -> clicks-copy. Some children are
// declared before their parents.
func wordCount(t *testing.T) *topology.Topology {
	t.Helper()
	b := topology.NewBuilder()
	topology.AddSource(b, "words", str, str, "text-b", "text-a")
	topology.AddSink(b, "counts-out", "counts", str, i64, "count")
	topology.AddProcessor(b, "count", func() topology.Processor[string, string, string, int64] {
		return topology.ProcessFunc(func(topology.Context[string, int64], topology.Record[string, string]) error { return nil })
	}, "split")
	topology.AddProcessor(b, "split", pass[string, string](), "words")
	topology.AddSource(b, "clicks", str, str, "clicks")
	topology.AddSink(b, "clicks-copy", "clicks-archive", str, str, "clicks")
	topology.AddProcessor(b, "audit", pass[string, int64](), "count")
	topology.AddKeyValueStore(b, "counts", str, i64, "count")
	topology.AddKeyValueStore(b, "audit-log", str, str, "audit")
	topo, err := b.Build()
	if err != nil {
		t.Fatal(err)
	}
	return topo
}

func TestDescribe(t *testing.T) {
	const want = `Topologies:
   Sub-topology: 0
    Source: words (topics: [text-b, text-a])
      --> split
    Processor: split (stores: [])
      --> count
      <-- words
    Processor: count (stores: [counts])
      --> counts-out, audit
      <-- split
    Sink: counts-out (topic: counts)
      <-- count
    Processor: audit (stores: [audit-log])
      --> none
      <-- count

   Sub-topology: 1
    Source: clicks (topics: [clicks])
      --> clicks-copy
    Sink: clicks-copy (topic: clicks-archive)
      <-- clicks
`
	topo := wordCount(t)
	if got := topo.Describe(); got != want {
		t.Errorf("Describe():\n%s\nwant:\n%s", got, want)
	}
	if again := wordCount(t).Describe(); again != want {
		t.Errorf("Describe() is not deterministic:\n%s", again)
	}
}

func TestSubTopologies(t *testing.T) {
	topo := wordCount(t)
	want := []topology.SubTopology{
		{
			ID:           0,
			SourceTopics: []string{"text-a", "text-b"},
			SinkTopics:   []string{"counts"},
			Stores: []topology.StoreSpec{
				{Name: "audit-log", Kind: topology.KeyValue},
				{Name: "counts", Kind: topology.KeyValue},
			},
		},
		{
			ID:           1,
			SourceTopics: []string{"clicks"},
			SinkTopics:   []string{"clicks-archive"},
		},
	}
	got := topo.SubTopologies()
	if !reflect.DeepEqual(got, want) {
		t.Errorf("SubTopologies() = %+v\nwant %+v", got, want)
	}
	got[0].SourceTopics[0] = "mutated"
	if again := topo.SubTopologies(); again[0].SourceTopics[0] != "text-a" {
		t.Errorf("SubTopologies() shares memory with the topology")
	}
	if got, want := topo.SourceTopics(), []string{"clicks", "text-a", "text-b"}; !reflect.DeepEqual(got, want) {
		t.Errorf("SourceTopics() = %q, want %q", got, want)
	}

	for _, tt := range []struct {
		topic  string
		wantID int
		wantOK bool
	}{
		{"text-a", 0, true},
		{"text-b", 0, true},
		{"clicks", 1, true},
		{"counts", 0, false},
	} {
		id, ok := topo.SubTopologyFor(tt.topic)
		if id != tt.wantID || ok != tt.wantOK {
			t.Errorf("SubTopologyFor(%q) = %d, %v; want %d, %v", tt.topic, id, ok, tt.wantID, tt.wantOK)
		}
	}
	if s := topology.KeyValue.String(); s != "KeyValue" {
		t.Errorf("KeyValue.String() = %q", s)
	}
}
