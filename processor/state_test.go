package processor_test

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/onceflow/onceflow/internal/crashtest"
	"github.com/onceflow/onceflow/internal/kafkatest"
	"github.com/onceflow/onceflow/processor"
	"github.com/onceflow/onceflow/state"
	"github.com/onceflow/onceflow/topology"
)

// sumTopology keeps a running sum per key in the store "sums" and emits
// the new sum for every input record (the crash tests' sums workload).
func sumTopology(t *testing.T, in, out string) *topology.Topology {
	t.Helper()
	topo, err := crashtest.SumsTopology(in, out)
	if err != nil {
		t.Fatal(err)
	}
	return topo
}

// sumInput produces n records over keys keys: record i has key k(i%keys)
// on partition (i%keys)%partitions and value i%7+1. It adds the values to
// truth.
func sumInput(t *testing.T, seeds []string, topic string, partitions int32, from, n, keys int, truth map[string]int64) {
	t.Helper()
	kafkatest.Produce(t, seeds, topic, n, func(i int) *kgo.Record {
		i += from
		k := i % keys
		v := int64(i%7 + 1)
		truth[fmt.Sprintf("k%05d", k)] += v
		return &kgo.Record{
			Key:       fmt.Appendf(nil, "k%05d", k),
			Value:     binary.BigEndian.AppendUint64(nil, uint64(v)),
			Partition: int32(k) % partitions,
		}
	})
}

// lastValues reads topic read_committed, once no transaction is open on
// it, and returns the last int64 value per key (a compacted view).
func lastValues(t *testing.T, seeds []string, topic string) map[string]int64 {
	t.Helper()
	m := map[string]int64{}
	for _, r := range readCommitted(t, seeds, topic) {
		if r.Value == nil {
			delete(m, string(r.Key))
			continue
		}
		m[string(r.Key)] = int64(binary.BigEndian.Uint64(r.Value))
	}
	return m
}

func equalSums(t *testing.T, what string, got, want map[string]int64) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%s: %d keys, want %d", what, len(got), len(want))
	}
	for k, v := range want {
		if got[k] != v {
			t.Fatalf("%s: key %s = %d, want %d", what, k, got[k], v)
		}
	}
}

// storeSums opens a stopped instance's state directory and returns the
// store's contents over the given partitions.
func storeSums(t *testing.T, dir, app string, partitions int32) map[string]int64 {
	t.Helper()
	db, err := state.OpenDB(dir, app, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	m := map[string]int64{}
	for p := range partitions {
		it, err := db.KV("sums", p).Range(nil, nil)
		if err != nil {
			t.Fatal(err)
		}
		for it.Next() {
			m[string(it.Key())] = int64(binary.BigEndian.Uint64(it.Value()))
		}
		if err := it.Close(); err != nil {
			t.Fatal(err)
		}
	}
	return m
}

type restoreLog struct {
	mu   sync.Mutex
	done []processor.RestoreProgress
}

func (l *restoreLog) hook(p processor.RestoreProgress) {
	if p.Done {
		l.mu.Lock()
		l.done = append(l.done, p)
		l.mu.Unlock()
	}
}

func (l *restoreLog) records() (n int64, restores int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, p := range l.done {
		n += p.Records
	}
	return n, len(l.done)
}

// TestStatefulSums checks a store end to end: the output, the store on
// disk and the changelog all equal the ground truth; a restart replays
// nothing; an empty state directory restores in full. It runs with writes
// applied to Pebble after every commit, and with an apply interval so long
// that only the shutdown applies them.
func TestStatefulSums(t *testing.T) {
	for _, every := range []time.Duration{0, time.Hour} {
		t.Run(fmt.Sprintf("apply-interval=%s", every), func(t *testing.T) { testStatefulSums(t, every) })
	}
}

func testStatefulSums(t *testing.T, applyEvery time.Duration) {
	// More partitions than a restore reads at once, so the full restore
	// also starts partitions as others finish.
	const parts, keys, n = 6, 500, 10_000
	seeds := kafkatest.Brokers(t)
	in := kafkatest.Topic(t, seeds, parts, nil)
	out := kafkatest.Topic(t, seeds, parts, nil)
	app := kafkatest.UniqueName(t, "app")
	topo := sumTopology(t, in, out)
	dir := t.TempDir()
	truth := map[string]int64{}

	run := func(dir string, from int) *restoreLog {
		t.Helper()
		var rl restoreLog
		sumInput(t, seeds, in, parts, from, n, keys, truth)
		r := start(t, topo, append(baseOpts(seeds, app, "i"), processor.StateDir(dir), processor.OnRestore(rl.hook),
			processor.StoreApplyInterval(applyEvery))...)
		waitCommitted(t, seeds, app, in, int64(from+n), 60*time.Second)
		if err := r.stop(t); err != nil {
			t.Fatalf("Run: %v", err)
		}
		equalSums(t, "output (last value per key)", lastValues(t, seeds, out), truth)
		equalSums(t, "store", storeSums(t, dir, app, parts), truth)
		equalSums(t, "changelog", lastValues(t, seeds, app+"-sums-changelog"), truth)
		return &rl
	}

	first := run(dir, 0)
	if recs, restores := first.records(); recs != 0 || restores != parts {
		t.Fatalf("first run restored %d records in %d restores, want 0 in %d", recs, restores, parts)
	}
	// A clean restart reopens the store where it was: nothing to replay.
	second := run(dir, n)
	if recs, restores := second.records(); recs != 0 || restores != parts {
		t.Fatalf("restart restored %d records in %d restores, want 0 in %d (no wipe)", recs, restores, parts)
	}
	// A new, empty directory restores every key from the changelog.
	third := run(t.TempDir(), 2*n)
	if recs, _ := third.records(); recs < keys {
		t.Fatalf("full restore replayed %d changelog records, want at least one per key (%d)", recs, keys)
	}
}

func TestChangelogMismatch(t *testing.T) {
	seeds := kafkatest.Brokers(t)
	in := kafkatest.Topic(t, seeds, 2, nil)
	out := kafkatest.Topic(t, seeds, 2, nil)
	app := kafkatest.UniqueName(t, "app")
	kafkatest.CreateTopic(t, seeds, app+"-sums-changelog", 3, nil)
	t.Cleanup(func() {
		_, _ = kadm.NewClient(kafkatest.Client(t, seeds)).DeleteTopics(context.Background(), app+"-sums-changelog")
	})
	p, err := processor.New(sumTopology(t, in, out), append(baseOpts(seeds, app, "i"), processor.StateDir(t.TempDir()))...)
	if err != nil {
		t.Fatal(err)
	}
	err = p.Run(context.Background())
	want := fmt.Sprintf(`%q has 3 partitions, store "sums" reads topics with 2`, app+"-sums-changelog")
	if !errors.Is(err, processor.ErrChangelogMismatch) || !strings.Contains(err.Error(), want) {
		t.Fatalf("Run: got %v, want ErrChangelogMismatch with %s", err, want)
	}
}

// TestForeignStateDir points an instance at another application's state
// directory: it must be wiped and restored in full, not crash.
func TestForeignStateDir(t *testing.T) {
	const parts, keys, n = 2, 100, 2_000
	seeds := kafkatest.Brokers(t)
	in := kafkatest.Topic(t, seeds, parts, nil)
	out := kafkatest.Topic(t, seeds, parts, nil)
	app := kafkatest.UniqueName(t, "app")
	dir := t.TempDir()
	other, err := state.OpenDB(dir, "some-other-app", nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := other.KV("sums", 0).Put([]byte("k00000"), binary.BigEndian.AppendUint64(nil, 999)); err != nil {
		t.Fatal(err)
	}
	if err := other.Close(); err != nil {
		t.Fatal(err)
	}
	truth := map[string]int64{}
	sumInput(t, seeds, in, parts, 0, n, keys, truth)
	r := start(t, sumTopology(t, in, out), append(baseOpts(seeds, app, "i"), processor.StateDir(dir))...)
	waitCommitted(t, seeds, app, in, n, 60*time.Second)
	if err := r.stop(t); err != nil {
		t.Fatalf("Run: %v", err)
	}
	equalSums(t, "output", lastValues(t, seeds, out), truth)
	equalSums(t, "store", storeSums(t, dir, app, parts), truth)
}

// TestStatefulHandBack moves partitions of a stateful topology away from an
// instance and back: while instance two owns them, it adds to the sums;
// when they return, instance one restores the tail, and its cached values
// from before must not win over the restored ones. Every output, the
// changelog and instance one's store end equal to the ground truth.
func TestStatefulHandBack(t *testing.T) {
	const parts, keys, n = 4, 400, 4_000
	seeds := kafkatest.Brokers(t)
	in := kafkatest.Topic(t, seeds, parts, nil)
	out := kafkatest.Topic(t, seeds, parts, nil)
	app := kafkatest.UniqueName(t, "app")
	topo := sumTopology(t, in, out)
	dirOne := t.TempDir()
	truth := map[string]int64{}
	opts := func(id, dir string) []processor.Opt {
		return append(baseOpts(seeds, app, id), processor.StaticMembership(false), processor.StateDir(dir))
	}

	one := start(t, topo, opts("one", dirOne)...)
	sumInput(t, seeds, in, parts, 0, n, keys, truth)
	waitCommitted(t, seeds, app, in, n, 90*time.Second)
	two := start(t, topo, opts("two", t.TempDir())...)
	waitAssigned(t, seeds, app, 2, 90*time.Second)
	sumInput(t, seeds, in, parts, n, n, keys, truth)
	waitCommitted(t, seeds, app, in, 2*n, 90*time.Second)
	if err := two.stop(t); err != nil {
		t.Fatalf("instance two: %v", err)
	}
	sumInput(t, seeds, in, parts, 2*n, n, keys, truth)
	waitCommitted(t, seeds, app, in, 3*n, 90*time.Second)
	if err := one.stop(t); err != nil {
		t.Fatalf("instance one: %v", err)
	}
	equalSums(t, "output (last value per key)", lastValues(t, seeds, out), truth)
	equalSums(t, "changelog", lastValues(t, seeds, app+"-sums-changelog"), truth)
	equalSums(t, "instance one's store", storeSums(t, dirOne, app, parts), truth)
}

// TestChangelogTimestamps checks that changelog records carry the time of
// the data, not the wall clock: the timestamp of the last input record
// processed before the record was produced, so no earlier than the input
// that wrote the key and no later than the last input.
func TestChangelogTimestamps(t *testing.T) {
	const n = 200
	seeds := kafkatest.Brokers(t)
	in := kafkatest.Topic(t, seeds, 1, nil)
	out := kafkatest.Topic(t, seeds, 1, nil)
	app := kafkatest.UniqueName(t, "app")
	base := time.UnixMilli(1_700_000_000_000)
	stamps := map[string]time.Time{}
	kafkatest.Produce(t, seeds, in, n, func(i int) *kgo.Record {
		k := fmt.Sprintf("k%05d", i) // every key once
		stamps[k] = base.Add(time.Duration(i) * time.Second)
		return &kgo.Record{Key: []byte(k), Value: binary.BigEndian.AppendUint64(nil, 1), Timestamp: stamps[k]}
	})
	r := start(t, sumTopology(t, in, out), append(baseOpts(seeds, app, "i"), processor.StateDir(t.TempDir()))...)
	waitCommitted(t, seeds, app, in, n, 60*time.Second)
	if err := r.stop(t); err != nil {
		t.Fatalf("Run: %v", err)
	}
	recs := readCommitted(t, seeds, app+"-sums-changelog")
	if len(recs) != n {
		t.Fatalf("changelog has %d records, want %d", len(recs), n)
	}
	last := base.Add((n - 1) * time.Second)
	for _, rec := range recs {
		if in := stamps[string(rec.Key)]; rec.Timestamp.Before(in) || rec.Timestamp.After(last) {
			t.Fatalf("changelog record of key %s has timestamp %v, want one from its input's %v to the last input's %v",
				rec.Key, rec.Timestamp, in, last)
		}
	}
}
