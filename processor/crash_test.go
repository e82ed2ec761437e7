package processor_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/onceflow/onceflow/internal/crashtest"
	"github.com/onceflow/onceflow/internal/kafkatest"
	"github.com/onceflow/onceflow/processor"
)

// The crash tests run three instances of a copy-and-transform application
// as separate OS processes (crashtest.Fleet re-executes this test binary,
// see TestMain), feed them 200,000 records while SIGKILLing a random one at
// random moments and restarting it under the same instance id, and then
// compare the output, read read_committed, with the input record by record.
const (
	crashRecords    = 200_000
	crashPartitions = 4
	crashProduceFor = 25 * time.Second // input is spread over this long
	crashMinKills   = 10
	crashKillMin    = 300 * time.Millisecond
	crashKillMax    = 2500 * time.Millisecond
	crashDrainFor   = 3 * time.Minute // bound on catching up once input ends
	crashStopFor    = time.Minute     // bound on a graceful stop
)

var crashInstances = []string{"a", "b", "c"}

// crashSeedEnv, when set, replaces the time-based seed of the kill
// schedule (which victim, how long between kills), to replay a logged run.
const crashSeedEnv = "ONCEFLOW_CRASH_SEED"

// TestCrashExactlyOnce: every id exactly once, in input order per
// partition.
func TestCrashExactlyOnce(t *testing.T) {
	r := runCrash(t, processor.ExactlyOnce)
	out := r.analyze(t)
	for p := range int32(crashPartitions) {
		want := r.input[p]
		got := out.byPart[p]
		for i := range min(len(want), len(got)) {
			if wv, _ := crashtest.Transform(want[i].value, p); got[i].value != wv {
				t.Errorf("output partition %d position %d: got %s, want %q (the transform of input offset %d)",
					p, i, got[i], wv, want[i].offset)
				break
			}
		}
		if len(got) != len(want) {
			t.Errorf("output partition %d holds %d records, input partition %d holds %d", p, len(got), p, len(want))
		}
	}
	if n := len(out.missing); n > 0 {
		t.Errorf("%d ids lost: %s", n, out.describeIDs(out.missing))
	}
	if n := len(out.duplicated); n > 0 {
		t.Errorf("%d ids duplicated: %s", n, out.describeIDs(out.duplicated))
	}
	// The output of transactions a kill left open or that were aborted is
	// in the log, invisible to read_committed readers.
	aborted := len(kafkatest.ReadAll(t, r.seeds, r.out, kafkatest.ReadUncommitted)) - len(out.records)
	if aborted <= 0 {
		t.Errorf("the output holds no aborted records: no kill landed inside a transaction, so the run proves little")
	}
	t.Logf("crash exactly-once: %d ids, %d lost, %d duplicates, %d kills, %d aborted output records",
		crashRecords, len(out.missing), out.extra(), r.kills, aborted)
}

// TestCrashAtLeastOnce: no id lost; duplicates are counted.
func TestCrashAtLeastOnce(t *testing.T) {
	r := runCrash(t, processor.AtLeastOnce)
	out := r.analyze(t)
	if n := len(out.missing); n > 0 {
		t.Errorf("%d ids lost: %s", n, out.describeIDs(out.missing))
	}
	t.Logf("crash at-least-once: %d ids, %d lost, %d duplicates, %d kills",
		crashRecords, len(out.missing), out.extra(), r.kills)
}

// TestCrashAtMostOnce: no id duplicated; losses are counted.
func TestCrashAtMostOnce(t *testing.T) {
	r := runCrash(t, processor.AtMostOnce)
	out := r.analyze(t)
	if n := len(out.duplicated); n > 0 {
		t.Errorf("%d ids duplicated: %s", n, out.describeIDs(out.duplicated))
	}
	t.Logf("crash at-most-once: %d ids, %d lost, %d duplicates, %d kills",
		crashRecords, len(out.missing), out.extra(), r.kills)
}

// crashRun is what a crash run leaves behind for the checks.
type crashRun struct {
	seeds   []string
	in, out string
	kills   int
	// input[p] is input partition p in offset order.
	input [crashPartitions][]crashInRecord
}

type crashInRecord struct {
	value  string
	offset int64
}

// runCrash runs the application under g while killing instances, waits
// until it has consumed all input, stops it gracefully and reads the input
// back. The caller checks the output.
func runCrash(t *testing.T, g processor.Guarantee) *crashRun {
	kafkatest.RequireReal(t)
	start := time.Now()
	seeds := kafkatest.Brokers(t)
	r := &crashRun{
		seeds: seeds,
		in:    kafkatest.Topic(t, seeds, crashPartitions, nil),
		out:   kafkatest.Topic(t, seeds, crashPartitions, nil),
	}
	app := kafkatest.UniqueName(t, "crash-app")
	seed := time.Now().UnixNano()
	if v := os.Getenv(crashSeedEnv); v != "" {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil {
			t.Fatalf("%s=%q: %v", crashSeedEnv, v, err)
		}
		seed = n
	}
	rng := rand.New(rand.NewPCG(uint64(seed), uint64(seed>>32)))
	t.Logf("guarantee %s, application %s, input %s, output %s, random seed %d", g, app, r.in, r.out, seed)

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()

	fleet := crashtest.NewFleet(t, crashtest.Config{
		Brokers:   seeds,
		App:       app,
		Guarantee: g.String(),
		Input:     r.in,
		Output:    r.out,
	})
	for _, id := range crashInstances {
		fleet.Start(id)
	}

	// Feed the input while the kills go on: id i to partition i%4, so ids
	// increase along every partition.
	producer := kafkatest.Client(t, seeds, kgo.DefaultProduceTopic(r.in), kgo.RecordPartitioner(kgo.ManualPartitioner()))
	produced := make(chan error, 1)
	go func() { produced <- produceSpread(ctx, producer, r.in, crashRecords, crashInput) }()

	r.kills = crashKillLoop(t, fleet, rng, produced, start, nil)
	t.Logf("%d kills done after %v", r.kills, time.Since(start).Round(time.Millisecond))

	// Done means: the group's committed offsets reached the input's end on
	// every partition.
	adm := kadm.NewClient(kafkatest.Client(t, seeds))
	if err := crashWaitCommitted(ctx, adm, app, r.in, fleet); err != nil {
		t.Fatal(err)
	}
	t.Logf("all input committed after %v", time.Since(start).Round(time.Millisecond))
	if err := fleet.StopAll(crashStopFor); err != nil {
		t.Fatal(err)
	}
	if races := fleet.RaceReports(); len(races) > 0 {
		t.Fatalf("data race reported by %s", strings.Join(races, ", "))
	}
	t.Logf("workers stopped after %v", time.Since(start).Round(time.Millisecond))

	for _, rec := range kafkatest.ReadAll(t, seeds, r.in, kafkatest.ReadCommitted) {
		r.input[rec.Partition] = append(r.input[rec.Partition], crashInRecord{value: string(rec.Value), offset: rec.Offset})
	}
	for p := range int32(crashPartitions) {
		if got, want := len(r.input[p]), crashRecords/crashPartitions; got != want {
			t.Fatalf("input partition %d holds %d records, want %d", p, got, want)
		}
		for i, rec := range r.input[p] {
			if want := crashtest.InputValue(i*crashPartitions+int(p), int(p)); rec.value != want {
				t.Fatalf("input partition %d offset %d: %q, want %q", p, rec.offset, rec.value, want)
			}
		}
	}
	return r
}

// crashKillLoop SIGKILLs a random instance at random moments until the
// input is in (produced delivers the producer's result) and at least
// crashMinKills kills happened; each killed instance restarts at once under
// the same instance id. beforeRestart, if not nil, runs between a kill and
// the restart with the kill's number and victim. It returns the number of
// kills.
func crashKillLoop(t *testing.T, fleet *crashtest.Fleet, rng *rand.Rand, produced <-chan error, start time.Time,
	beforeRestart func(kill int, victim string)) int {
	t.Helper()
	kills, inputDone := 0, false
	for !inputDone || kills < crashMinKills {
		wait := time.NewTimer(crashKillMin + time.Duration(rng.Int64N(int64(crashKillMax-crashKillMin))))
		select {
		case <-wait.C:
		case err := <-produced:
			wait.Stop()
			if err != nil {
				t.Fatalf("produce input: %v", err)
			}
			inputDone = true
			t.Logf("input produced after %v, %d kills so far", time.Since(start).Round(time.Millisecond), kills)
			continue
		case <-fleet.Failed():
			wait.Stop()
			t.Fatal(fleet.Err())
		}
		victim := crashInstances[rng.IntN(len(crashInstances))]
		if err := fleet.Kill(victim); err != nil {
			t.Fatal(err)
		}
		kills++
		if beforeRestart != nil {
			beforeRestart(kills, victim)
		}
		p := fleet.Start(victim)
		t.Logf("kill %d at %v: instance %s, restarted as incarnation %d", kills, time.Since(start).Round(time.Millisecond), victim, p.Incarnation)
	}
	return kills
}

// produceSpread produces n records made by gen, in chunks spread evenly
// over crashProduceFor, so the input arrives while instances are killed.
func produceSpread(ctx context.Context, cl *kgo.Client, topic string, n int, gen func(i int) *kgo.Record) error {
	const tick = 50 * time.Millisecond
	chunk := max(1, n/int(crashProduceFor/tick))
	ticker := time.NewTicker(tick)
	defer ticker.Stop()
	for base := 0; base < n; base += chunk {
		m := min(chunk, n-base)
		if err := kafkatest.ProduceWith(ctx, cl, topic, m, func(i int) *kgo.Record { return gen(base + i) }); err != nil {
			return fmt.Errorf("records %d to %d: %w", base, base+m-1, err)
		}
		select {
		case <-ticker.C:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return nil
}

// crashInput is input record id of the copy crash tests: partition id%4,
// so ids increase along every partition.
func crashInput(id int) *kgo.Record {
	p := id % crashPartitions
	return &kgo.Record{
		Partition: int32(p),
		Key:       strconv.AppendInt(nil, int64(id), 10),
		Value:     []byte(crashtest.InputValue(id, p)),
	}
}

// crashWaitCommitted polls the committed offsets of group until they equal the
// end offsets of topic on every partition, a worker exits unexpectedly, or
// crashDrainFor passes.
func crashWaitCommitted(ctx context.Context, adm *kadm.Client, group, topic string, fleet *crashtest.Fleet) error {
	ctx, cancel := context.WithTimeout(ctx, crashDrainFor)
	defer cancel()
	ends, err := adm.ListEndOffsets(ctx, topic)
	if err == nil {
		err = ends.Error()
	}
	if err != nil {
		return fmt.Errorf("list end offsets of %s: %w", topic, err)
	}
	ticker := time.NewTicker(100 * time.Millisecond)
	defer ticker.Stop()
	var last string
	for {
		offs, err := adm.FetchOffsets(ctx, group)
		if err == nil {
			err = offs.Error()
		}
		if err == nil {
			behind := 0
			var state []string
			ends.Each(func(e kadm.ListedOffset) {
				o, ok := offs.Lookup(topic, e.Partition)
				at := int64(-1)
				if ok {
					at = o.At
				}
				if at != e.Offset {
					behind++
				}
				state = append(state, fmt.Sprintf("p%d %d/%d", e.Partition, at, e.Offset))
			})
			slices.Sort(state)
			last = strings.Join(state, ", ")
			if behind == 0 {
				return nil
			}
		} else {
			last = err.Error()
		}
		select {
		case <-ticker.C:
		case <-fleet.Failed():
			return fleet.Err()
		case <-ctx.Done():
			return fmt.Errorf("group %s did not commit all of %s within %v; last seen: %s", group, topic, crashDrainFor, last)
		}
	}
}

// crashOutRecord is one output record with what the checks need.
type crashOutRecord struct {
	id        int
	value     string
	partition int32
	offset    int64
	instance  string
	srcOffset string
}

func (o crashOutRecord) String() string {
	return fmt.Sprintf("%q at offset %d (from input offset %s, written by instance %s)", o.value, o.offset, o.srcOffset, o.instance)
}

// crashOutput is the output read read_committed, indexed by id.
type crashOutput struct {
	records    []crashOutRecord
	byPart     [crashPartitions][]crashOutRecord
	byID       map[int][]crashOutRecord
	missing    []int // ids with no output record
	duplicated []int // ids with more than one
}

// extra is the number of output records beyond one per id.
func (o *crashOutput) extra() int { return len(o.records) - len(o.byID) }

// describeIDs lists up to 10 of ids with their output records.
func (o *crashOutput) describeIDs(ids []int) string {
	var b strings.Builder
	for i, id := range ids {
		if i == 10 {
			fmt.Fprintf(&b, "; and %d more", len(ids)-i)
			break
		}
		if i > 0 {
			b.WriteString("; ")
		}
		fmt.Fprintf(&b, "id %d (input partition %d offset %d): %d output records", id, id%crashPartitions, id/crashPartitions, len(o.byID[id]))
		for _, rec := range o.byID[id] {
			fmt.Fprintf(&b, " [p%d %s]", rec.partition, rec)
		}
	}
	return b.String()
}

// analyze reads the output read_committed and checks what every guarantee
// promises of each record: it is the transform of an input record, on the
// partition that record was read from, and says which input offset it
// derives from. It stops the test on a record that fails these checks.
func (r *crashRun) analyze(t *testing.T) *crashOutput {
	t.Helper()
	out := &crashOutput{byID: map[int][]crashOutRecord{}}
	for _, rec := range readCommitted(t, r.seeds, r.out) {
		o := crashOutRecord{value: string(rec.Value), partition: rec.Partition, offset: rec.Offset}
		for _, h := range rec.Headers {
			switch h.Key {
			case crashtest.HeaderInstance:
				o.instance = string(h.Value)
			case crashtest.HeaderSourceOffset:
				o.srcOffset = string(h.Value)
			}
		}
		id, p, err := crashtest.ParseOutput(o.value)
		if err != nil {
			t.Fatalf("output partition %d offset %d: %v", rec.Partition, rec.Offset, err)
		}
		o.id = id
		if id < 0 || id >= crashRecords {
			t.Fatalf("output partition %d: %s names an id that was never produced", rec.Partition, o)
		}
		if int32(p) != rec.Partition || id%crashPartitions != p {
			t.Fatalf("output partition %d: %s belongs on partition %d", rec.Partition, o, id%crashPartitions)
		}
		if want := strconv.Itoa(id / crashPartitions); o.srcOffset != want {
			t.Fatalf("output partition %d: %s, but id %d is at input offset %s", rec.Partition, o, id, want)
		}
		out.records = append(out.records, o)
		out.byPart[p] = append(out.byPart[p], o)
		out.byID[id] = append(out.byID[id], o)
	}
	for id := range crashRecords {
		switch len(out.byID[id]) {
		case 0:
			out.missing = append(out.missing, id)
		case 1:
		default:
			out.duplicated = append(out.duplicated, id)
		}
	}
	return out
}
