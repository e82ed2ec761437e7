package processor_test

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/onceflow/onceflow/internal/kafkatest"
	"github.com/onceflow/onceflow/processor"
	"github.com/onceflow/onceflow/topology"
)

// This example copies a topic to another, upper-casing every value, with
// exactly-once results. It runs on the in-process kfake broker.
func Example() {
	cluster, _ := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(1, "words", "shouts"))
	defer cluster.Close()
	brokers := cluster.ListenAddrs()

	b := topology.NewBuilder()
	topology.AddSource(b, "in", topology.StringSerde(), topology.StringSerde(), "words")
	topology.AddProcessor(b, "upper", func() topology.Processor[string, string, string, string] {
		return topology.ProcessFunc(func(ctx topology.Context[string, string], r topology.Record[string, string]) error {
			r.Value = strings.ToUpper(r.Value)
			return ctx.Forward(r)
		})
	}, "in")
	topology.AddSink(b, "out", "shouts", topology.StringSerde(), topology.StringSerde(), "upper")
	topo, err := b.Build()
	if err != nil {
		fmt.Println(err)
		return
	}

	p, err := processor.New(topo,
		processor.Brokers(brokers...),
		processor.ApplicationID("shouter"),
		processor.InstanceID("example"),
	)
	if err != nil {
		fmt.Println(err)
		return
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- p.Run(ctx) }()

	producer, _ := kgo.NewClient(kgo.SeedBrokers(brokers...), kgo.DefaultProduceTopic("words"))
	defer producer.Close()
	for _, w := range []string{"once", "and", "only", "once"} {
		producer.ProduceSync(ctx, kgo.StringRecord(w))
	}

	// Wait until the application committed its input offsets.
	adm := kadm.NewClient(producer)
	for {
		offs, err := adm.FetchOffsets(ctx, "shouter")
		if o, ok := offs.Lookup("words", 0); err == nil && ok && o.At == 4 {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	cancel()
	fmt.Println("run:", <-done)

	out, _ := kafkatest.ReadToEnd(context.Background(), brokers, "shouts", kafkatest.ReadCommitted)
	for _, r := range out {
		fmt.Println(string(r.Value))
	}
	// Output:
	// run: <nil>
	// ONCE
	// AND
	// ONLY
	// ONCE
}
