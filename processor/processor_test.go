package processor_test

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/onceflow/onceflow/internal/kafkatest"
	"github.com/onceflow/onceflow/processor"
	"github.com/onceflow/onceflow/topology"
)

func TestNewReportsEveryProblem(t *testing.T) {
	topo := copyTopology(t, "a", "b")
	_, err := processor.New(topo,
		processor.ApplicationID("bad app!"),
		processor.InstanceID("ok"),
		processor.CommitInterval(-time.Second),
		processor.Workers(0),
		processor.MaxRecordsPerTransaction(0),
		processor.SessionTimeout(time.Millisecond),
		processor.StoreCacheBytes(-1),
	)
	if !errors.Is(err, processor.ErrInvalidConfig) {
		t.Fatalf("New: got %v, want ErrInvalidConfig", err)
	}
	want := `processor: invalid configuration:
Brokers: no seed brokers given
ApplicationID: "bad app!" must be 1-200 characters of [a-zA-Z0-9._-] (it prefixes topic names)
CommitInterval: must be positive, got -1s
MaxRecordsPerTransaction: must be at least 1, got 0
Workers: must be 1 to 256, got 0
SessionTimeout: must be at least 1s, got 1ms
StoreCacheBytes: must not be negative, got -1`
	if err.Error() != want {
		t.Fatalf("New error:\n%s\nwant:\n%s", err, want)
	}

	_, err = processor.New(topo, processor.Brokers("x:1"), processor.ApplicationID("a"),
		processor.CommitInterval(20*time.Second))
	want = `processor: invalid configuration:
CommitInterval: 20s must be shorter than TransactionTimeout 10s under exactly-once`
	if err == nil || err.Error() != want {
		t.Fatalf("New error:\n%v\nwant:\n%s", err, want)
	}
	if _, err := processor.New(nil, processor.Brokers("x:1"), processor.ApplicationID("a")); !errors.Is(err, processor.ErrInvalidConfig) {
		t.Fatalf("nil topology: got %v", err)
	}
}

func TestParseGuarantee(t *testing.T) {
	for in, want := range map[string]processor.Guarantee{
		"exactly-once": processor.ExactlyOnce, "exactly_once_v2": processor.ExactlyOnce,
		"at-least-once": processor.AtLeastOnce, "AT_MOST_ONCE": processor.AtMostOnce,
	} {
		got, err := processor.ParseGuarantee(in)
		if err != nil || got != want {
			t.Errorf("ParseGuarantee(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	if _, err := processor.ParseGuarantee("twice"); err == nil || !strings.Contains(err.Error(), `"twice"`) {
		t.Errorf("ParseGuarantee(twice): %v", err)
	}
}

func TestMissingTopics(t *testing.T) {
	seeds := kafkatest.Brokers(t)
	in := kafkatest.Topic(t, seeds, 1, nil)
	topo := copyTopology(t, in, "no-such-topic-"+kafkatest.UniqueName(t, "x"))
	p, err := processor.New(topo, baseOpts(seeds, kafkatest.UniqueName(t, "app"), "i")...)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	err = p.Run(ctx)
	if !errors.Is(err, processor.ErrTopicMissing) || !strings.Contains(err.Error(), "no-such-topic-") {
		t.Fatalf("Run: got %v, want ErrTopicMissing naming the sink topic", err)
	}
}

func TestNotCopartitioned(t *testing.T) {
	seeds := kafkatest.Brokers(t)
	a := kafkatest.Topic(t, seeds, 2, nil)
	c := kafkatest.Topic(t, seeds, 3, nil)
	out := kafkatest.Topic(t, seeds, 1, nil)
	b := topology.NewBuilder()
	topology.AddSource(b, "in", topology.StringSerde(), topology.StringSerde(), a, c)
	topology.AddSink(b, "out", out, topology.StringSerde(), topology.StringSerde(), "in")
	topo, err := b.Build()
	if err != nil {
		t.Fatal(err)
	}
	p, err := processor.New(topo, baseOpts(seeds, kafkatest.UniqueName(t, "app"), "i")...)
	if err != nil {
		t.Fatal(err)
	}
	err = p.Run(context.Background())
	if !errors.Is(err, processor.ErrNotCopartitioned) ||
		!strings.Contains(err.Error(), "sub-topology 0 reads topics with different partition counts") ||
		!strings.Contains(err.Error(), fmt.Sprintf("%q has 2", a)) || !strings.Contains(err.Error(), fmt.Sprintf("%q has 3", c)) {
		t.Fatalf("Run: got %v, want ErrNotCopartitioned naming both topics and their partition counts", err)
	}
}

// values returns n distinct input values.
func values(prefix string, from, n int) []string {
	v := make([]string, n)
	for i := range v {
		v[i] = fmt.Sprintf("%s-%06d", prefix, from+i)
	}
	return v
}

func produceValues(t *testing.T, seeds []string, topic string, partitions int32, vals []string) {
	t.Helper()
	kafkatest.Produce(t, seeds, topic, len(vals), func(i int) *kgo.Record {
		return &kgo.Record{Key: []byte(vals[i]), Value: []byte(vals[i]), Partition: int32(i) % partitions}
	})
}

func TestCopyEachGuarantee(t *testing.T) {
	cases := []struct {
		name string
		opts []processor.Opt
	}{
		{"exactly_once", []processor.Opt{processor.WithGuarantee(processor.ExactlyOnce)}},
		{"exactly_once_two_workers", []processor.Opt{processor.WithGuarantee(processor.ExactlyOnce), processor.Workers(2)}},
		{"at_least_once", []processor.Opt{processor.WithGuarantee(processor.AtLeastOnce)}},
		{"at_most_once", []processor.Opt{processor.WithGuarantee(processor.AtMostOnce)}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			seeds := kafkatest.Brokers(t)
			in := kafkatest.Topic(t, seeds, 2, nil)
			out := kafkatest.Topic(t, seeds, 2, nil)
			app := kafkatest.UniqueName(t, "app")
			vals := values("v", 0, 2000)
			started := time.Now()
			produceValues(t, seeds, in, 2, vals)
			r := start(t, copyTopology(t, in, out), append(baseOpts(seeds, app, "i"), c.opts...)...)
			waitCommitted(t, seeds, app, in, int64(len(vals)), 60*time.Second)
			if err := r.stop(t); err != nil {
				t.Fatalf("Run: %v", err)
			}
			checkExactlyOnce(t, seeds, out, vals)
			// Two workers join the group one after the other, and the
			// rebalance may abort the first one's open transaction: its
			// records are then processed again (and written once).
			st := r.p.Stats()
			if st.Commits == 0 || st.CommitTime <= 0 || st.FlushTime <= 0 || st.FlushTime > st.CommitTime ||
				st.Processed < int64(len(vals)) || (st.Aborts == 0 && st.Processed != int64(len(vals))) {
				t.Fatalf("stats %+v: want Processed=%d (more only after an abort), some commits and their time, part of it flushing", st, len(vals))
			}
			// Every commit or abort is timed once: the histogram counts
			// them all, and the longest is within the sum and inside the
			// histogram's last nonempty bucket.
			h := st.CommitTimes
			if h.Count() < st.Commits+st.Aborts || st.MaxCommitTime <= 0 || st.MaxCommitTime > st.CommitTime ||
				h.Quantile(1) < st.MaxCommitTime || float64(h.Quantile(1)) > 1.19*float64(st.MaxCommitTime)+float64(250*time.Microsecond) {
				t.Fatalf("commit times: %d counted for %d commits and %d aborts, max %v (histogram's %v), sum %v",
					h.Count(), st.Commits, st.Aborts, st.MaxCommitTime, h.Quantile(1), st.CommitTime)
			}
			// Under exactly-once each commit's markers are watched for,
			// but the last: the processor stopped before they were
			// written, or before the watch saw it.
			// Every commit but one with no records (there are none here)
			// counts the age of its oldest record, which the test
			// produced before starting the processor.
			if a := st.CommitAges; a.Count() == 0 || a.Count() > st.Commits || a.Quantile(1) > time.Since(started)*6/5+time.Second {
				t.Fatalf("commit ages: %d counted for %d commits, oldest %v (the records are %v old)", a.Count(), st.Commits, a.Quantile(1), time.Since(started))
			}
			// Each poll counts each partition it took records of: at
			// least one a partition, at most one a record.
			if a := st.PollAges; a.Count() < 2 || a.Count() > st.Processed || a.Quantile(1) > time.Since(started)*6/5+time.Second {
				t.Fatalf("poll ages: %d counted for %d records, oldest %v (the records are %v old)", a.Count(), st.Processed, a.Quantile(1), time.Since(started))
			}
			eos := c.name == "exactly_once" || c.name == "exactly_once_two_workers"
			if m := st.MarkerTimes.Count(); (eos && (m == 0 || m > st.Commits+st.Aborts)) || (!eos && m != 0) {
				t.Fatalf("marker times counted for %d of %d transactions", m, st.Commits+st.Aborts)
			}
		})
	}
}

// TestFencing starts a second instance with the first one's id: the first
// must stop with ErrFenced, and the output must still hold every record
// exactly once.
func TestFencing(t *testing.T) {
	seeds := kafkatest.Brokers(t)
	in := kafkatest.Topic(t, seeds, 2, nil)
	out := kafkatest.Topic(t, seeds, 2, nil)
	app := kafkatest.UniqueName(t, "app")
	topo := copyTopology(t, in, out)
	first := values("a", 0, 1000)
	produceValues(t, seeds, in, 2, first)

	r1 := start(t, topo, baseOpts(seeds, app, "same")...)
	waitCommitted(t, seeds, app, in, int64(len(first)), 60*time.Second)
	r2 := start(t, topo, baseOpts(seeds, app, "same")...)
	err := r1.wait(t, 60*time.Second)
	if !isFenced(err) {
		t.Fatalf("first instance: Run returned %v, want ErrFenced", err)
	}
	second := values("b", 0, 1000)
	produceValues(t, seeds, in, 2, second)
	waitCommitted(t, seeds, app, in, int64(len(first)+len(second)), 60*time.Second)
	if err := r2.stop(t); err != nil {
		t.Fatalf("second instance: %v", err)
	}
	checkExactlyOnce(t, seeds, out, append(first, second...))
}

// TestAbortLeavesNothingVisible fails a processor mid-transaction under
// exactly-once: nothing of the transaction may be visible to read_committed
// readers, and no offset may be committed.
func TestAbortLeavesNothingVisible(t *testing.T) {
	seeds := kafkatest.Brokers(t)
	in := kafkatest.Topic(t, seeds, 1, nil)
	out := kafkatest.Topic(t, seeds, 1, nil)
	app := kafkatest.UniqueName(t, "app")
	vals := values("ok", 0, 100)
	vals[50] = "fail-50"
	produceValues(t, seeds, in, 1, vals)

	// The processor fails at offset 50, but only once the 50 outputs
	// before it are on the broker (visible to read_uncommitted readers), so
	// that the abort has something to hide. Polls of one record make the
	// worker hand each output to the client before it processes the next
	// record (it may otherwise hold a few until its batch ends). The first
	// transaction is due after its first batch (record 0) and commits;
	// the second holds records 1 to 49 and is aborted.
	b := topology.NewBuilder()
	topology.AddSource(b, "in", topology.StringSerde(), topology.StringSerde(), in)
	topology.AddProcessor(b, "upper", func() topology.Processor[string, string, string, string] {
		return topology.ProcessFunc(func(ctx topology.Context[string, string], r topology.Record[string, string]) error {
			if r.Value == "fail-50" {
				if err := waitUncommitted(seeds, out, 50); err != nil {
					return err
				}
				return errors.New("refusing record 50")
			}
			r.Value = strings.ToUpper(r.Value)
			return ctx.Forward(r)
		})
	}, "in")
	topology.AddSink(b, "out", out, topology.StringSerde(), topology.StringSerde(), "upper")
	topo, err := b.Build()
	if err != nil {
		t.Fatal(err)
	}
	r := start(t, topo, append(baseOpts(seeds, app, "i"),
		processor.CommitInterval(5*time.Second), processor.MaxPollRecords(1))...)
	err = r.wait(t, 60*time.Second)
	var perr *topology.ProcessError
	if !errors.As(err, &perr) || perr.Offset != 50 || perr.Node != "upper" {
		t.Fatalf("Run: got %v, want a ProcessError for node upper at offset 50", err)
	}
	if want := fmt.Sprintf("topic %q partition 0 offset 50", in); !strings.Contains(err.Error(), want) {
		t.Fatalf("Run error %q does not name %s", err, want)
	}
	if got := kafkatest.ReadAll(t, seeds, out, kafkatest.ReadCommitted); len(got) != 1 || string(got[0].Value) != "OK-000000" {
		t.Fatalf("read_committed sees %d records, want only the first transaction's OK-000000", len(got))
	}
	if got := kafkatest.ReadAll(t, seeds, out, kafkatest.ReadUncommitted); len(got) != 50 {
		t.Fatalf("read_uncommitted sees %d records, want the 50 aborted ones", len(got))
	}
	adm := kadm.NewClient(kafkatest.Client(t, seeds))
	if n, err := committedTotal(context.Background(), adm, app, in); err != nil || n != 1 {
		t.Fatalf("committed offsets after abort: %d (%v), want 1 (the first transaction's)", n, err)
	}
}

// waitUncommitted polls topic until a read_uncommitted reader sees n
// records.
func waitUncommitted(seeds []string, topic string, n int) error {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for {
		recs, err := kafkatest.ReadToEnd(ctx, seeds, topic, kafkatest.ReadUncommitted)
		if err != nil {
			return err
		}
		if len(recs) >= n {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("only %d of %d records reached %q: %w", len(recs), n, topic, ctx.Err())
		case <-time.After(10 * time.Millisecond):
		}
	}
}

type order struct {
	ID    int    `json:"id"`
	Item  string `json:"item"`
	Count int    `json:"count"`
}

func jsonTopology(t *testing.T, in, out string) *topology.Topology {
	t.Helper()
	b := topology.NewBuilder()
	topology.AddSource(b, "in", topology.StringSerde(), topology.JSONSerde[order](), in)
	topology.AddProcessor(b, "double", func() topology.Processor[string, order, string, order] {
		return topology.ProcessFunc(func(ctx topology.Context[string, order], r topology.Record[string, order]) error {
			r.Value.Count *= 2
			return ctx.Forward(r)
		})
	}, "in")
	topology.AddSink(b, "out", out, topology.StringSerde(), topology.JSONSerde[order](), "double")
	topo, err := b.Build()
	if err != nil {
		t.Fatal(err)
	}
	return topo
}

// badJSON produces n records to one partition; every tenth is malformed.
func badJSON(t *testing.T, seeds []string, topic string, n int) (bad map[int64]bool) {
	t.Helper()
	bad = map[int64]bool{}
	kafkatest.Produce(t, seeds, topic, n, func(i int) *kgo.Record {
		v := fmt.Sprintf(`{"id":%d,"item":"x","count":%d}`, i, i)
		if i%10 == 3 {
			v = fmt.Sprintf(`{"id":%d,"item":`, i)
			bad[int64(i)] = true
		}
		return &kgo.Record{Key: []byte(strconv.Itoa(i)), Value: []byte(v)}
	})
	return bad
}

// badJSONRecords is how many records runBadJSON feeds (every tenth bad).
const badJSONRecords = 200

// badJSONRun is the jsonTopology application run over badJSON input.
type badJSONRun struct {
	seeds        []string
	in, out, app string
	bad          map[int64]bool
	r            *running
}

// runBadJSON runs jsonTopology under policy over badJSONRecords records of
// which every tenth is malformed, until all input is committed, then stops it.
func runBadJSON(t *testing.T, policy processor.ErrorPolicy) *badJSONRun {
	t.Helper()
	seeds := kafkatest.Brokers(t)
	br := &badJSONRun{
		seeds: seeds,
		in:    kafkatest.Topic(t, seeds, 1, nil),
		out:   kafkatest.Topic(t, seeds, 1, nil),
		app:   kafkatest.UniqueName(t, "app"),
	}
	br.bad = badJSON(t, seeds, br.in, badJSONRecords)
	br.r = start(t, jsonTopology(t, br.in, br.out), append(baseOpts(seeds, br.app, "i"), processor.OnError(policy))...)
	waitCommitted(t, seeds, br.app, br.in, badJSONRecords, 60*time.Second)
	if err := br.r.stop(t); err != nil {
		t.Fatal(err)
	}
	return br
}

// checkGoodOutput asserts that the output holds exactly the good records,
// in input order, each with its count doubled.
func (br *badJSONRun) checkGoodOutput(t *testing.T) {
	t.Helper()
	var want []string
	for i := range badJSONRecords {
		if !br.bad[int64(i)] {
			want = append(want, fmt.Sprintf(`{"id":%d,"item":"x","count":%d}`, i, 2*i))
		}
	}
	got := kafkatest.ReadAll(t, br.seeds, br.out, kafkatest.ReadCommitted)
	if len(got) != len(want) {
		t.Fatalf("output has %d records, want %d", len(got), len(want))
	}
	for i, g := range got {
		if string(g.Value) != want[i] {
			t.Fatalf("output %d: %s, want %s", i, g.Value, want[i])
		}
	}
}

func TestBadInputDeadLetter(t *testing.T) {
	br := runBadJSON(t, processor.DeadLetter)
	seeds, in, app, bad, r := br.seeds, br.in, br.app, br.bad, br.r
	dlq := r.p.DeadLetterTopic()
	if dlq != app+"-dlq" {
		t.Fatalf("dead-letter topic %q, want %q", dlq, app+"-dlq")
	}
	t.Cleanup(func() {
		_, _ = kadm.NewClient(kafkatest.Client(t, seeds)).DeleteTopics(context.Background(), dlq)
	})
	dead := kafkatest.ReadAll(t, seeds, dlq, kafkatest.ReadCommitted)
	if len(dead) != len(bad) {
		t.Fatalf("dead-letter topic has %d records, want %d", len(dead), len(bad))
	}
	seen := map[int64]bool{}
	for _, d := range dead {
		h := map[string]string{}
		for _, x := range d.Headers {
			h[x.Key] = string(x.Value)
		}
		off, _ := strconv.ParseInt(h[processor.HeaderOffset], 10, 64)
		if !bad[off] || seen[off] || h[processor.HeaderTopic] != in || h[processor.HeaderPartition] != "0" ||
			h[processor.HeaderApp] != app || !strings.Contains(h[processor.HeaderError], "deserialize value") {
			t.Fatalf("unexpected dead letter %q with headers %v", d.Value, h)
		}
		if want := fmt.Sprintf(`{"id":%d,"item":`, off); string(d.Value) != want {
			t.Fatalf("dead letter at offset %d holds %q, want the raw record %q", off, d.Value, want)
		}
		seen[off] = true
	}
	br.checkGoodOutput(t)
	if st := r.p.Stats(); st.DeadLettered != int64(len(bad)) || st.Processed != int64(badJSONRecords-len(bad)) {
		t.Fatalf("stats %+v", st)
	}
}

func TestBadInputFail(t *testing.T) {
	seeds := kafkatest.Brokers(t)
	in := kafkatest.Topic(t, seeds, 1, nil)
	out := kafkatest.Topic(t, seeds, 1, nil)
	app := kafkatest.UniqueName(t, "app")
	badJSON(t, seeds, in, 10) // offset 3 is the first bad one
	r := start(t, jsonTopology(t, in, out), baseOpts(seeds, app, "i")...)
	err := r.wait(t, 60*time.Second)
	want := fmt.Sprintf("record at topic %q partition 0 offset 3", in)
	var derr *topology.DeserializeError
	if err == nil || !strings.Contains(err.Error(), want) || !errors.As(err, &derr) || derr.Offset != 3 {
		t.Fatalf("Run: got %v, want a deserialization error naming %s", err, want)
	}
	adm := kadm.NewClient(kafkatest.Client(t, seeds))
	if n, err := committedTotal(context.Background(), adm, app, in); err != nil || n > 3 {
		t.Fatalf("committed offset %d (%v) is past the bad record at offset 3", n, err)
	}
	if got := kafkatest.ReadAll(t, seeds, out, kafkatest.ReadCommitted); len(got) > 3 {
		t.Fatalf("output has %d committed records, want at most the 3 before the bad one", len(got))
	}
}

// TestScaling grows an application from one instance to three and back to
// one while records flow; the output must hold every record exactly once.
// The instances use dynamic membership: a permanent scale-down should leave
// the group rather than hold partitions until the session timeout.
func TestScaling(t *testing.T) {
	seeds := kafkatest.Brokers(t)
	in := kafkatest.Topic(t, seeds, 4, nil)
	out := kafkatest.Topic(t, seeds, 4, nil)
	app := kafkatest.UniqueName(t, "app")
	topo := copyTopology(t, in, out)
	const batches, per = 6, 2000
	var all []string
	var mu sync.Mutex
	feed := func(b int) {
		vals := values(fmt.Sprintf("s%d", b), 0, per)
		produceValues(t, seeds, in, 4, vals)
		mu.Lock()
		all = append(all, vals...)
		mu.Unlock()
	}

	opts := func(id string) []processor.Opt {
		return append(baseOpts(seeds, app, id), processor.StaticMembership(false))
	}
	r1 := start(t, topo, opts("one")...)
	feed(0)
	waitCommitted(t, seeds, app, in, per, 90*time.Second)
	r2 := start(t, topo, opts("two")...)
	r3 := start(t, topo, opts("three")...)
	feed(1)
	feed(2)
	waitCommitted(t, seeds, app, in, 3*per, 90*time.Second)
	feed(3)
	if err := r2.stop(t); err != nil {
		t.Fatalf("instance two: %v", err)
	}
	feed(4)
	if err := r3.stop(t); err != nil {
		t.Fatalf("instance three: %v", err)
	}
	feed(5)
	waitCommitted(t, seeds, app, in, batches*per, 120*time.Second)
	if err := r1.stop(t); err != nil {
		t.Fatalf("instance one: %v", err)
	}
	checkExactlyOnce(t, seeds, out, all)
}

func TestBadInputSkip(t *testing.T) {
	br := runBadJSON(t, processor.Skip)
	br.checkGoodOutput(t)
	if st := br.r.p.Stats(); st.Skipped != int64(len(br.bad)) || st.DeadLettered != 0 {
		t.Fatalf("stats %+v: want Skipped=%d", st, len(br.bad))
	}
}
