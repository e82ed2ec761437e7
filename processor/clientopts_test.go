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

// TestClientFetchBatching checks that under exactly-once, at commit
// intervals of eosFetchMinInterval and more, the worker's client lets the
// broker gather input before answering a fetch; that shorter intervals
// and the other guarantees keep franz-go's defaults; and that KgoOpts
// wins.
func TestClientFetchBatching(t *testing.T) {
	b := topology.NewBuilder()
	topology.AddSource(b, "in", topology.BytesSerde(), topology.BytesSerde(), "in")
	topology.AddSink(b, "out", "out", topology.BytesSerde(), topology.BytesSerde(), "in")
	topo, err := b.Build()
	if err != nil {
		t.Fatal(err)
	}
	fetch := func(opts ...Opt) (int32, time.Duration) {
		t.Helper()
		p, err := New(topo, append([]Opt{Brokers("127.0.0.1:1"), ApplicationID("fetch-test")}, opts...)...)
		if err != nil {
			t.Fatal(err)
		}
		w := newWorker(p, 0, &clusterMeta{}, nil)
		var extra []kgo.Opt
		if p.cfg.guarantee == ExactlyOnce {
			extra = w.exactlyOnceOpts()
		}
		cl, err := kgo.NewClient(w.clientOpts(extra...)...)
		if err != nil {
			t.Fatal(err)
		}
		defer cl.Close()
		minBytes, ok1 := cl.OptValue(kgo.FetchMinBytes).(int32)
		maxWait, ok2 := cl.OptValue(kgo.FetchMaxWait).(time.Duration)
		if !ok1 || !ok2 {
			t.Fatalf("fetch option values: got %T and %T", cl.OptValue(kgo.FetchMinBytes), cl.OptValue(kgo.FetchMaxWait))
		}
		return minBytes, maxWait
	}
	for _, tc := range []struct {
		name     string
		opts     []Opt
		minBytes int32
		maxWait  time.Duration
	}{
		{"exactly-once, 100ms", []Opt{WithGuarantee(ExactlyOnce), CommitInterval(100 * time.Millisecond)}, 64 << 10, 10 * time.Millisecond},
		{"exactly-once, 1s", []Opt{WithGuarantee(ExactlyOnce), CommitInterval(time.Second)}, 64 << 10, 10 * time.Millisecond},
		{"exactly-once, 10ms", []Opt{WithGuarantee(ExactlyOnce), CommitInterval(10 * time.Millisecond)}, 1, 5 * time.Second},
		{"at-least-once, 100ms", []Opt{WithGuarantee(AtLeastOnce), CommitInterval(100 * time.Millisecond)}, 1, 5 * time.Second},
		{"exactly-once, KgoOpts", []Opt{WithGuarantee(ExactlyOnce), KgoOpts(kgo.FetchMinBytes(1), kgo.FetchMaxWait(time.Second))}, 1, time.Second},
	} {
		minBytes, maxWait := fetch(tc.opts...)
		if minBytes != tc.minBytes || maxWait != tc.maxWait {
			t.Errorf("%s: fetch min bytes %d, max wait %v; want %d, %v", tc.name, minBytes, maxWait, tc.minBytes, tc.maxWait)
		}
	}
}
