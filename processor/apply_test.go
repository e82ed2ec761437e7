package processor

import (
	"fmt"
	"maps"
	"testing"
	"time"

	"github.com/onceflow/onceflow/state"
	"github.com/onceflow/onceflow/topology"
)

// TestApplyInParts drives a worker's store applies without Kafka: three
// store-partitions of 3,000 keys each are committed, an apply falls due,
// and every later commit (rewriting some keys, adding others) hands over
// one part of it. The apply must take ceil(9,000 / minApplyPart) parts.
// When it ends, Pebble must hold the checkpoints taken when it started and
// the committed value of every key not written since (the others may lag
// until the next apply). applyStores, called one part into a second
// apply, must then bring Pebble to every committed value and the latest
// checkpoints.
func TestApplyInParts(t *testing.T) {
	const stores, keys = 3, 3000
	db, err := state.OpenDB(t.TempDir(), "app", nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = db.Close() })
	w := &worker{p: &Processor{cfg: cfg{commitInterval: 100 * time.Millisecond, stateDir: "test"}}}
	w.state = stateTracker{
		db:               db,
		stores:           map[storeKey]*storeKV{},
		unappliedOffsets: map[storeKey]int64{},
		budget:           state.NewCacheBudget(32 << 20),
		applyEvery:       5 * time.Second,
		lastApply:        time.Now(),
	}
	var all []*storeKV
	for p := range int32(stores) {
		k := storeKey{name: "counts", task: topology.TaskID{Partition: p}}
		s := &storeKV{w: w, key: k, Overlay: state.NewCachedOverlay(settledKV{kv: db.KV(k.name, p), st: &w.state}, w.state.budget)}
		w.state.stores[k] = s
		all = append(all, s)
	}
	committed := make([]map[string]string, stores)
	for p := range committed {
		committed[p] = map[string]string{}
	}
	offset := int64(0)
	lastOff := map[storeKey]int64{}
	// commit writes the keys of every range of every store with values of
	// round r and commits them, with one changelog offset per write.
	commit := func(r int, ranges ...[2]int) {
		t.Helper()
		for p, s := range all {
			for _, rg := range ranges {
				for i := rg[0]; i < rg[1]; i++ {
					k, v := fmt.Sprintf("k%05d", i), fmt.Sprintf("r%d", r)
					if err := s.Overlay.Put([]byte(k), []byte(v)); err != nil {
						t.Fatal(err)
					}
					committed[p][k] = v
					offset++
				}
			}
			s.Committed()
			w.state.unappliedOffsets[s.key], lastOff[s.key] = offset, offset
		}
	}
	calls := 0
	step := func() {
		t.Helper()
		if err := w.applyIfDue(); err != nil {
			t.Fatal(err)
		}
		calls++
	}
	// check compares Pebble with the committed values: every key must
	// hold its committed value, except keys written since the apply
	// started (in since), which may hold an older one or none; and each
	// checkpoint must be want's.
	check := func(what string, want map[storeKey]int64, since map[string]bool) {
		t.Helper()
		if err := w.state.settle(); err != nil {
			t.Fatal(err)
		}
		for p, s := range all {
			wrong := 0
			for k, v := range committed[p] {
				got, ok, err := db.KV("counts", int32(p)).Get([]byte(k))
				if err != nil {
					t.Fatal(err)
				}
				if (!ok || string(got) != v) && !since[k] {
					wrong++
				}
			}
			if wrong > 0 {
				t.Fatalf("%s: store-partition %d: %d keys not at their committed value in Pebble", what, p, wrong)
			}
			off, ok, err := db.Checkpoint("counts", int32(p))
			if err != nil || !ok || off != want[s.key] {
				t.Fatalf("%s: checkpoint of store-partition %d = %d, %v, %v; want %d", what, p, off, ok, err, want[s.key])
			}
		}
	}

	commit(0, [2]int{0, keys})
	step() // not due yet: nothing happens
	if w.state.part != nil || calls != 1 {
		t.Fatal("an apply started before it was due")
	}
	calls = 0
	w.state.lastApply = time.Time{} // due now
	atStart := maps.Clone(lastOff)
	step() // starts the apply with the offsets above, hands over a part
	since := map[string]bool{}
	for r := 1; w.state.part != nil; r++ {
		if calls > 100 {
			t.Fatal("the apply did not end after 100 parts")
		}
		// Rewrite 100 keys that may already be handed over, and add 100
		// new ones.
		from := (r * 397) % keys
		ranges := [][2]int{{from, from + 100}, {keys + r*100, keys + r*100 + 100}}
		for _, rg := range ranges {
			for i := rg[0]; i < rg[1]; i++ {
				since[fmt.Sprintf("k%05d", i)] = true
			}
		}
		commit(r, ranges...)
		step()
	}
	if want := (stores*keys + minApplyPart - 1) / minApplyPart; calls != want {
		t.Fatalf("the apply took %d parts, want %d", calls, want)
	}
	if len(since) == 0 {
		t.Fatal("no key was written during the apply")
	}
	check("after the apply in parts", atStart, since)

	// Start another apply of every key, hand over one part, then apply
	// everything at once, as revocation and shutdown do.
	commit(1000, [2]int{0, keys})
	w.state.lastApply = time.Time{}
	step()
	if w.state.part == nil {
		t.Fatal("the second apply ended after one part")
	}
	if err := w.applyStores(); err != nil {
		t.Fatal(err)
	}
	check("after applyStores", lastOff, nil)
}
