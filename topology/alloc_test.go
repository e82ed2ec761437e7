package topology_test

import (
	"fmt"
	"math/rand/v2"
	"testing"

	"github.com/onceflow/onceflow/state"
	"github.com/onceflow/onceflow/topology"
)

// discardEnv drops what a task sends and serves one cached overlay store.
type discardEnv struct{ kv state.KV }

func (e discardEnv) Send(topology.OutRecord) error    { return nil }
func (e discardEnv) Store(string) (state.KV, error)   { return e.kv, nil }
func (e discardEnv) Partitions(string) (int32, error) { return 4, nil }

// countTask is the benchmark's wordcount: a per-key count in a store, and
// the new count forwarded to a sink.
func countTask(t testing.TB) (*topology.Task, *state.Overlay) {
	t.Helper()
	b := topology.NewBuilder()
	topology.AddSource(b, "in", topology.StringSerde(), topology.BytesSerde(), "in")
	topology.AddProcessor(b, "count", func() topology.Processor[string, []byte, string, int64] {
		return topology.ProcessFunc(func(ctx topology.Context[string, int64], r topology.Record[string, []byte]) error {
			counts, err := topology.KeyValueStoreOf[string, int64](ctx, "counts")
			if err != nil {
				return err
			}
			n, _, err := counts.Get(r.Key)
			if err != nil {
				return err
			}
			if err := counts.Put(r.Key, n+1); err != nil {
				return err
			}
			return ctx.Forward(topology.Record[string, int64]{Key: r.Key, Value: n + 1, Timestamp: r.Timestamp})
		})
	}, "in")
	topology.AddKeyValueStore(b, "counts", topology.StringSerde(), topology.Int64Serde(), "count")
	topology.AddSink(b, "out", "out", topology.StringSerde(), topology.Int64Serde(), "count")
	topo, err := b.Build()
	if err != nil {
		t.Fatal(err)
	}
	o := state.NewCachedOverlay(state.NewMemKV(), state.NewCacheBudget(1<<30))
	task, err := topo.NewTask(topology.TaskID{}, discardEnv{kv: o})
	if err != nil {
		t.Fatal(err)
	}
	if err := task.Init(); err != nil {
		t.Fatal(err)
	}
	return task, o
}

// countInput returns n distinct keys and a 100-byte value.
func countInput(n int) (keys [][]byte, value []byte) {
	keys = make([][]byte, n)
	for i := range keys {
		keys[i] = fmt.Appendf(nil, "w%06d", i)
	}
	return keys, make([]byte, 100)
}

// TestProcessAllocations guards the per-record path of a stateful task:
// records travel between nodes by value, a store read of a cached key does
// not copy, the store encodes keys and values into scratch space, and the
// source's bytes value shares the input's memory. What is left is the
// source's string key, the sink's key and value, and the overlay's copy of
// the written value.
func TestProcessAllocations(t *testing.T) {
	task, o := countTask(t)
	keys, val := countInput(100)
	for _, k := range keys { // every key pending, then cached
		if err := task.Process(topology.RawRecord{Topic: "in", Key: k, Value: val}); err != nil {
			t.Fatal(err)
		}
	}
	o.Committed()
	o.TakeUnapplied()
	i := 0
	allocs := testing.AllocsPerRun(1000, func() {
		if err := task.Process(topology.RawRecord{Topic: "in", Key: keys[i%len(keys)], Value: val}); err != nil {
			t.Fatal(err)
		}
		i++
	})
	if allocs > 4 {
		t.Fatalf("processing a record allocates %v times, want at most 4", allocs)
	}
}

// BenchmarkProcessWordcount runs the wordcount task over keys in random
// order, committing every 30,000 records like the bench's processor at 100
// ms: with 1,000 keys the store fits in the CPU caches, with 100,000 (the
// bench's key space) most reads miss them.
func BenchmarkProcessWordcount(b *testing.B) {
	for _, n := range []int{1000, 100_000} {
		b.Run(fmt.Sprintf("keys=%d", n), func(b *testing.B) {
			task, o := countTask(b)
			keys, val := countInput(n)
			// The input: random keys laid out one after the other, like a
			// fetched batch.
			rng := rand.New(rand.NewPCG(1, 2))
			var buf []byte
			for range 1 << 16 {
				buf = append(buf, keys[rng.IntN(n)]...)
			}
			in := make([][]byte, 1<<16)
			for i := range in {
				k := len(keys[0])
				in[i] = buf[i*k : (i+1)*k : (i+1)*k]
			}
			b.ReportAllocs()
			for i := 0; b.Loop(); i++ {
				if err := task.Process(topology.RawRecord{Topic: "in", Key: in[i%len(in)], Value: val}); err != nil {
					b.Fatal(err)
				}
				if i%30_000 == 29_999 {
					o.Committed()
					o.TakeUnapplied()
				}
			}
		})
	}
}
