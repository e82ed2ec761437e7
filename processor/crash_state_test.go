package processor_test

import (
	"context"
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/onceflow/onceflow/internal/crashtest"
	"github.com/onceflow/onceflow/internal/kafkatest"
	"github.com/onceflow/onceflow/processor"
	"github.com/onceflow/onceflow/state"
)

// The stateful crash tests run the per-key sums application (a Pebble
// store with a changelog) as three processes, feed 500,000 records over
// 10,000 keys while killing instances (and once deleting a killed
// instance's state directory), then compare the output, the changelog and
// every instance's store with the sums computed from the input.
const (
	stateRecords = 500_000
	stateKeys    = 10_000
	// stateWipeAt is the kill after which the victim's state directory is
	// deleted before it restarts: it must restore in full.
	stateWipeAt = 5
)

func stateKey(i int) string { return fmt.Sprintf("k%05d", i%stateKeys) }

func stateValue(i int) int64 { return int64(i%7 + 1) }

// stateTruth is the sum per key of the whole input.
func stateTruth() map[string]int64 {
	m := make(map[string]int64, stateKeys)
	for i := range stateRecords {
		m[stateKey(i)] += stateValue(i)
	}
	return m
}

func statePartition(key string) int32 {
	var k int
	fmt.Sscanf(key, "k%d", &k)
	return int32(k % crashPartitions)
}

type stateRun struct {
	seeds     []string
	app       string
	in, out   string
	kills     int
	wiped     string // instance whose state directory was deleted
	wipedInc  int    // its first incarnation after the deletion
	fleet     *crashtest.Fleet
	changelog string
}

func runStateCrash(t *testing.T, g processor.Guarantee) *stateRun {
	kafkatest.RequireReal(t)
	start := time.Now()
	seeds := kafkatest.Brokers(t)
	r := &stateRun{
		seeds: seeds,
		app:   kafkatest.UniqueName(t, "sums-app"),
		in:    kafkatest.Topic(t, seeds, crashPartitions, nil),
		out:   kafkatest.Topic(t, seeds, crashPartitions, nil),
	}
	r.changelog = r.app + "-" + crashtest.SumsStore + "-changelog"
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
		defer cancel()
		_, _ = kadm.NewClient(kafkatest.Client(t, seeds)).DeleteTopics(ctx, r.changelog)
	})
	seed := time.Now().UnixNano()
	rng := rand.New(rand.NewPCG(uint64(seed), uint64(seed>>32)))
	t.Logf("guarantee %s, application %s, input %s, output %s, random seed %d", g, r.app, r.in, r.out, seed)

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	r.fleet = crashtest.NewFleet(t, crashtest.Config{
		Brokers:   seeds,
		App:       r.app,
		Guarantee: g.String(),
		Input:     r.in,
		Output:    r.out,
		Workload:  crashtest.WorkloadSums,
		StateRoot: t.TempDir(),
	})
	for _, id := range crashInstances {
		r.fleet.Start(id)
	}

	producer := kafkatest.Client(t, seeds, kgo.DefaultProduceTopic(r.in), kgo.RecordPartitioner(kgo.ManualPartitioner()))
	produced := make(chan error, 1)
	go func() { produced <- produceSpread(ctx, producer, r.in, stateRecords, stateInput) }()

	r.kills = crashKillLoop(t, r.fleet, rng, produced, start, func(kill int, victim string) {
		if kill != stateWipeAt {
			return
		}
		if err := os.RemoveAll(r.fleet.StateDir(victim)); err != nil {
			t.Fatal(err)
		}
		// The next incarnation is the first after the deletion.
		r.wiped, r.wipedInc = victim, r.fleet.Incarnations(victim)+1
	})
	adm := kadm.NewClient(kafkatest.Client(t, seeds))
	if err := crashWaitCommitted(ctx, adm, r.app, r.in, r.fleet); err != nil {
		t.Fatal(err)
	}
	t.Logf("all input committed after %v", time.Since(start).Round(time.Millisecond))
	if err := r.fleet.StopAll(crashStopFor); err != nil {
		t.Fatal(err)
	}
	if races := r.fleet.RaceReports(); len(races) > 0 {
		t.Fatalf("data race reported by %s", strings.Join(races, ", "))
	}
	return r
}

// stateInput is input record i of the stateful crash tests: key
// stateKey(i) on partition statePartition, value stateValue(i).
func stateInput(i int) *kgo.Record {
	k := stateKey(i)
	return &kgo.Record{
		Partition: statePartition(k),
		Key:       []byte(k),
		Value:     binary.BigEndian.AppendUint64(nil, uint64(stateValue(i))),
	}
}

// changelogUpTo folds the changelog records with offsets up to and
// including upTo (all of them when upTo < 0) into key -> value per
// partition.
func changelogUpTo(recs []*kgo.Record, partition int32, upTo int64) map[string]int64 {
	m := map[string]int64{}
	for _, r := range recs {
		if r.Partition != partition || (upTo >= 0 && r.Offset > upTo) {
			continue
		}
		if r.Value == nil {
			delete(m, string(r.Key))
		} else {
			m[string(r.Key)] = int64(binary.BigEndian.Uint64(r.Value))
		}
	}
	return m
}

// coveredByCheckpoint checks what state.Commit promises after any crash: a
// store-partition holds every write its checkpoint covers and perhaps
// later ones (an apply in parts hands over the latest committed value of
// each key, which may be newer than the offsets it started with), so a
// replay from the checkpoint ends where the changelog does. Each key's
// value must be its value in the changelog up to the checkpoint or one it
// took later; a key the changelog had by then may be missing only if a
// later record deleted it, and a key it did not have must come later.
func coveredByCheckpoint(store map[string]int64, changelog []*kgo.Record, partition int32, cp int64) error {
	upTo := changelogUpTo(changelog, partition, cp)
	later := map[string]map[int64]bool{} // key -> the values it took after the checkpoint
	deleted := map[string]bool{}         // keys deleted after the checkpoint
	for _, r := range changelog {
		if r.Partition != partition || r.Offset <= cp {
			continue
		}
		k := string(r.Key)
		if r.Value == nil {
			deleted[k] = true
			continue
		}
		if later[k] == nil {
			later[k] = map[int64]bool{}
		}
		later[k][int64(binary.BigEndian.Uint64(r.Value))] = true
	}
	for k, v := range store {
		if w, ok := upTo[k]; ok && w == v || later[k][v] {
			continue
		}
		if w, ok := upTo[k]; ok {
			return fmt.Errorf("key %s = %d, want %d or a later value of the changelog", k, v, w)
		}
		return fmt.Errorf("key %s = %d, not its value at the checkpoint nor a later one", k, v)
	}
	for k, w := range upTo {
		if _, ok := store[k]; !ok && !deleted[k] {
			return fmt.Errorf("key %s missing, want %d", k, w)
		}
	}
	return nil
}

// checkStores opens every instance's state directory: each store-partition
// with a checkpoint must hold what the changelog held up to that
// checkpoint, or later values (coveredByCheckpoint), and each partition
// must be caught up with the whole changelog in at least one instance. It
// returns, per partition, how many instances hold it in full.
func (r *stateRun) checkStores(t *testing.T, changelog []*kgo.Record) [crashPartitions]int {
	t.Helper()
	var full [crashPartitions]int
	for _, inst := range crashInstances {
		db, err := state.OpenDB(r.fleet.StateDir(inst), r.app, nil)
		if err != nil {
			t.Fatalf("open the state of instance %s: %v", inst, err)
		}
		for p := range int32(crashPartitions) {
			cp, ok, err := db.Checkpoint(crashtest.SumsStore, p)
			if err != nil {
				t.Fatal(err)
			}
			if !ok {
				continue
			}
			store := map[string]int64{}
			it, err := db.KV(crashtest.SumsStore, p).Range(nil, nil)
			if err != nil {
				t.Fatal(err)
			}
			for it.Next() {
				store[string(it.Key())] = int64(binary.BigEndian.Uint64(it.Value()))
			}
			if err := it.Close(); err != nil {
				t.Fatal(err)
			}
			if err := coveredByCheckpoint(store, changelog, p, cp); err != nil {
				t.Errorf("instance %s store partition %d vs changelog up to checkpoint %d: %v", inst, p, cp, err)
			}
			if len(store) == len(changelogUpTo(changelog, p, -1)) && equalMaps(store, changelogUpTo(changelog, p, -1)) {
				full[p]++
			}
		}
		if err := db.Close(); err != nil {
			t.Fatal(err)
		}
	}
	for p, n := range full {
		if n == 0 {
			t.Errorf("no instance holds partition %d of the store in full", p)
		}
	}
	return full
}

func equalMaps(a, b map[string]int64) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if w, ok := b[k]; !ok || w != v {
			return false
		}
	}
	return true
}

// checkRestores asserts that no restore wiped a store: once a restore of a
// partition has left a checkpoint in an instance, every later restore of
// that partition in that instance (until its state directory is deleted)
// starts past the checkpoint and replays at most the tail. It
// returns the number of tail restores and the records they replayed.
func (r *stateRun) checkRestores(t *testing.T) (tails int, tailRecords int64, full int) {
	t.Helper()
	restores, err := r.fleet.Restores()
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	for _, rs := range restores {
		if rs.Instance == r.wiped && r.wipedInc > 0 && rs.Incarnation >= r.wipedInc {
			// The first incarnation after the deletion that reports a
			// restore starts over. (The one right after the deletion may
			// be killed before it reports anything, even while creating
			// the database; the next one then starts from nothing too.)
			for k := range seen {
				if strings.HasPrefix(k, rs.Instance+"/") {
					delete(seen, k)
				}
			}
			r.wipedInc = -1
		}
		key := fmt.Sprintf("%s/%d", rs.Instance, rs.Partition)
		switch {
		case rs.From == 0 && seen[key] && rs.To > 0:
			t.Errorf("instance %s incarnation %d restored partition %d from offset 0 again (to %d): its store was wiped",
				rs.Instance, rs.Incarnation, rs.Partition, rs.To)
		case rs.From == 0:
			full++
		default:
			tails++
			tailRecords += rs.Records
		}
		if rs.Records > rs.To-rs.From {
			t.Errorf("restore %+v replayed more records than the offsets it covers", rs)
		}
		// A restore that read anything (To > From, even if only aborted
		// records and markers) leaves a checkpoint; one over an empty range
		// leaves none, so a later restore from 0 is no wipe.
		if rs.To > rs.From {
			seen[key] = true
		}
	}
	return tails, tailRecords, full
}

// TestCrashStatefulExactlyOnce: the output's last value per key, the
// changelog and the stores equal the sums of the input.
func TestCrashStatefulExactlyOnce(t *testing.T) {
	r := runStateCrash(t, processor.ExactlyOnce)
	truth := stateTruth()
	equalSums(t, "output (last value per key)", lastValues(t, r.seeds, r.out), truth)
	changelog := readCommitted(t, r.seeds, r.changelog)
	all := map[string]int64{}
	for p := range int32(crashPartitions) {
		for k, v := range changelogUpTo(changelog, p, -1) {
			all[k] = v
		}
	}
	equalSums(t, "changelog (compacted view)", all, truth)
	full := r.checkStores(t, changelog)
	tails, tailRecords, fullRestores := r.checkRestores(t)
	if tails == 0 {
		t.Errorf("no restore started from a checkpoint: the test did not exercise a restart without a wipe")
	}
	t.Logf("stateful crash exactly-once: %d records, %d keys, %d kills, output = changelog = truth; "+
		"%d tail restores replayed %d changelog records in all (changelog holds %d), %d full restores; "+
		"instances holding each partition in full: %v", stateRecords, stateKeys, r.kills,
		tails, tailRecords, len(changelog), fullRestores, full)
}

// TestCrashStatefulAtLeastOnce: nothing is lost (no sum below the truth);
// the over-counts are counted and printed.
func TestCrashStatefulAtLeastOnce(t *testing.T) {
	r := runStateCrash(t, processor.AtLeastOnce)
	truth := stateTruth()
	got := lastValues(t, r.seeds, r.out)
	emitted := len(readCommitted(t, r.seeds, r.out))
	if emitted < stateRecords {
		t.Errorf("output holds %d records for %d inputs: some input produced no output", emitted, stateRecords)
	}
	var over, excess int64
	for k, want := range truth {
		switch v := got[k]; {
		case v < want:
			t.Errorf("key %s: sum %d is below the truth %d: input was lost", k, v, want)
		case v > want:
			over++
			excess += v - want
		}
	}
	// Changelog records are written only when offsets commit, so a replayed
	// batch usually starts from a store without it: the repeats show as
	// re-emitted output, and a sum is over-counted only when a crash falls
	// between the changelog flush and the offset commit.
	t.Logf("stateful crash at-least-once: %d records, %d keys, %d kills; %d output records re-emitted; %d keys over-counted by %d in all",
		stateRecords, stateKeys, r.kills, emitted-stateRecords, over, excess)
}

// TestCoveredByCheckpoint checks the stores' check against a changelog
// of one partition: k1 = 1, 2, 3 and k2 = 5, deleted, at offsets 0 to 4.
func TestCoveredByCheckpoint(t *testing.T) {
	rec := func(off int64, key string, v int64, del bool) *kgo.Record {
		r := &kgo.Record{Partition: 0, Offset: off, Key: []byte(key)}
		if !del {
			r.Value = binary.BigEndian.AppendUint64(nil, uint64(v))
		}
		return r
	}
	changelog := []*kgo.Record{
		rec(0, "k1", 1, false), rec(1, "k2", 5, false), rec(2, "k1", 2, false),
		rec(3, "k2", 0, true), rec(4, "k1", 3, false),
		{Partition: 1, Offset: 0, Key: []byte("k9"), Value: binary.BigEndian.AppendUint64(nil, 9)},
	}
	for _, tc := range []struct {
		name  string
		store map[string]int64
		cp    int64
		want  string // part of the error; empty: covered
	}{
		{"exactly the checkpoint", map[string]int64{"k1": 2, "k2": 5}, 2, ""},
		{"a later value", map[string]int64{"k1": 3, "k2": 5}, 2, ""},
		{"a later delete", map[string]int64{"k1": 2}, 2, ""},
		{"an older value", map[string]int64{"k1": 1, "k2": 5}, 2, "key k1 = 1, want 2"},
		{"a value never written", map[string]int64{"k1": 7, "k2": 5}, 2, "key k1 = 7, want 2"},
		{"a key missing", map[string]int64{"k2": 5}, 2, "key k1 missing, want 2"},
		{"a key from another partition", map[string]int64{"k1": 2, "k2": 5, "k9": 9}, 2, "key k9 = 9, not its value at the checkpoint nor a later one"},
		{"the whole changelog", map[string]int64{"k1": 3}, 4, ""},
		{"deleted, then back", map[string]int64{"k1": 3, "k2": 5}, 4, "key k2 = 5, not its value at the checkpoint nor a later one"},
	} {
		err := coveredByCheckpoint(tc.store, changelog, 0, tc.cp)
		switch {
		case tc.want == "" && err != nil:
			t.Errorf("%s: %v", tc.name, err)
		case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
			t.Errorf("%s: error %v, want one containing %q", tc.name, err, tc.want)
		}
	}
}
