package processor

import (
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/onceflow/onceflow/topology"
)

// TestClientLinger checks that a worker's client sends records at once
// (franz-go's own default lingers 10 ms) and that KgoOpts, which
// clientOpts puts last, can set another linger.
func TestClientLinger(t *testing.T) {
	b := topology.NewBuilder()
	topology.AddSource(b, "in", topology.BytesSerde(), topology.BytesSerde(), "in")
	topology.AddSink(b, "out", "out", topology.BytesSerde(), topology.BytesSerde(), "in")
	topo, err := b.Build()
	if err != nil {
		t.Fatal(err)
	}
	linger := func(extra ...Opt) time.Duration {
		t.Helper()
		// No broker listens on port 1; the client is closed before it
		// needs one.
		p, err := New(topo, append([]Opt{Brokers("127.0.0.1:1"), ApplicationID("linger-test")}, extra...)...)
		if err != nil {
			t.Fatal(err)
		}
		w := newWorker(p, 0, &clusterMeta{}, nil)
		cl, err := kgo.NewClient(w.clientOpts()...)
		if err != nil {
			t.Fatal(err)
		}
		defer cl.Close()
		d, ok := cl.OptValue(kgo.ProducerLinger).(time.Duration)
		if !ok {
			t.Fatalf("ProducerLinger option value: got %T, want time.Duration", cl.OptValue(kgo.ProducerLinger))
		}
		return d
	}
	if got := linger(); got != 0 {
		t.Errorf("default linger: got %v, want 0", got)
	}
	if got := linger(KgoOpts(kgo.ProducerLinger(5 * time.Millisecond))); got != 5*time.Millisecond {
		t.Errorf("linger set through KgoOpts: got %v, want 5ms", got)
	}
}
