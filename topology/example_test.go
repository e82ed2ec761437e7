package topology_test

import (
	"fmt"
	"strings"

	"github.com/onceflow/onceflow/topology"
)

func Example() {
	b := topology.NewBuilder()
	topology.AddSource(b, "src", topology.StringSerde(), topology.StringSerde(), "in")
	topology.AddProcessor(b, "upper", func() topology.Processor[string, string, string, string] {
		return topology.ProcessFunc(func(ctx topology.Context[string, string], rec topology.Record[string, string]) error {
			rec.Value = strings.ToUpper(rec.Value)
			return ctx.Forward(rec)
		})
	}, "src")
	topology.AddSink(b, "sink", "out", topology.StringSerde(), topology.StringSerde(), "upper")
	topology.AddKeyValueStore(b, "counts", topology.StringSerde(), topology.Int64Serde(), "upper")

	topo, err := b.Build()
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Print(topo.Describe())
	// Output:
	// Topologies:
	//    Sub-topology: 0
	//     Source: src (topics: [in])
	//       --> upper
	//     Processor: upper (stores: [counts])
	//       --> sink
	//       <-- src
	//     Sink: sink (topic: out)
	//       <-- upper
}

func ExampleBuilder_Build_invalid() {
	b := topology.NewBuilder()
	topology.AddSource(b, "src", topology.StringSerde(), topology.StringSerde(), "in")
	topology.AddSink(b, "sink", "out", topology.StringSerde(), topology.Int64Serde(), "src", "missing")

	_, err := b.Build()
	fmt.Println(err)
	// Output:
	// topology: invalid topology
	// sink "sink" takes (string, int64) but its parent source "src" outputs (string, string)
	// sink "sink" has unknown parent "missing"
}
