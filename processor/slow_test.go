package processor_test

import (
	"strings"
	"testing"
	"time"

	"github.com/onceflow/onceflow/internal/kafkatest"
	"github.com/onceflow/onceflow/processor"
	"github.com/onceflow/onceflow/topology"
)

// TestSlowRecordsStayInsideTheTransactionTimeout processes a backlog of
// records that take 2 ms each under exactly-once with a 1 s transaction
// timeout. A worker that took the whole backlog in one poll would hold one
// transaction open for 12 s, and the broker aborts a transaction past its
// timeout (checking every 10 s by default) and fences its producer; polls
// sized to the worker's speed end each transaction near the commit
// interval, so every record is committed once and nothing is aborted.
func TestSlowRecordsStayInsideTheTransactionTimeout(t *testing.T) {
	seeds := kafkatest.Brokers(t)
	in := kafkatest.Topic(t, seeds, 1, nil)
	out := kafkatest.Topic(t, seeds, 1, nil)
	app := kafkatest.UniqueName(t, "app")
	vals := values("v", 0, 6000)
	produceValues(t, seeds, in, 1, vals)

	b := topology.NewBuilder()
	topology.AddSource(b, "in", topology.StringSerde(), topology.StringSerde(), in)
	topology.AddProcessor(b, "slow", func() topology.Processor[string, string, string, string] {
		return topology.ProcessFunc(func(ctx topology.Context[string, string], r topology.Record[string, string]) error {
			time.Sleep(2 * time.Millisecond) // a call to a slow service, say
			r.Value = strings.ToUpper(r.Value)
			return ctx.Forward(r)
		})
	}, "in")
	topology.AddSink(b, "out", out, topology.StringSerde(), topology.StringSerde(), "slow")
	topo, err := b.Build()
	if err != nil {
		t.Fatal(err)
	}
	r := start(t, topo, append(baseOpts(seeds, app, "i"),
		processor.WithGuarantee(processor.ExactlyOnce),
		processor.TransactionTimeout(time.Second))...)
	waitCommitted(t, seeds, app, in, int64(len(vals)), 90*time.Second)
	if err := r.stop(t); err != nil {
		t.Fatalf("Run: %v", err)
	}
	checkExactlyOnce(t, seeds, out, vals)
	if st := r.p.Stats(); st.Processed != int64(len(vals)) || st.Aborts != 0 || st.Commits < 12 {
		t.Fatalf("stats %+v: want Processed=%d, no aborts, and at least a commit a second", st, len(vals))
	}
}
