package processor

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
)

// TestPaceUntil checks when an exactly-once worker's next poll may begin:
// a pace after the last, never inside the transaction's unpaced last
// stretch (a pace, plus two paces times u/(1-u) at the last transaction's
// busy share u), and at once above maxPacedUtil.
func TestPaceUntil(t *testing.T) {
	base := time.Date(2026, 11, 27, 0, 0, 0, 0, time.UTC)
	at := func(ms int) time.Time { return base.Add(time.Duration(ms) * time.Millisecond) }
	const pace = 10 * time.Millisecond
	for _, tc := range []struct {
		name   string
		polled int // ms
		util   float64
		want   time.Time
	}{
		{"early in an idle transaction", 0, 0, at(10)},
		{"reaching the last stretch", 85, 0, at(90)},
		{"inside the last stretch", 95, 0, at(90)},
		{"half busy: stretch of three paces", 60, 0.5, at(70)},
		{"half busy, reaching the stretch", 65, 0.5, at(70)},
		{"three quarters busy: stretch of seven paces", 20, 0.75, at(30)},
		{"three quarters busy, late", 25, 0.75, at(30)},
		{"busier than the cap", 0, 0.8, time.Time{}},
		{"fully busy", 0, 1, time.Time{}},
	} {
		tr := txnState{polled: at(tc.polled), due: at(100), util: tc.util}
		if got := tr.paceUntil(pace); !got.Equal(tc.want) {
			t.Errorf("%s: paceUntil = %v after base, want %v", tc.name, got.Sub(base), tc.want.Sub(base))
		}
	}
}

// TestNoteUtil checks the busy share a transaction leaves for the next,
// and that a transaction with no measured time keeps the last share.
func TestNoteUtil(t *testing.T) {
	tr := txnState{busy: 30 * time.Millisecond, idle: 90 * time.Millisecond}
	tr.noteUtil()
	if tr.util != 0.25 {
		t.Fatalf("util = %v, want 0.25", tr.util)
	}
	tr.busy, tr.idle = 0, 0
	tr.noteUtil()
	if tr.util != 0.25 {
		t.Fatalf("util after an empty transaction = %v, want 0.25 kept", tr.util)
	}
}

// TestPacingDefaults checks the defaults of PollPace (a tenth of the
// commit interval, at most 10 ms) and MarkerWait (20 ms whatever the
// interval), that an explicit value (0 included) is kept, and that a
// negative one is refused naming the option.
func TestPacingDefaults(t *testing.T) {
	for _, tc := range []struct {
		name               string
		opts               []Opt
		wantPace, wantWait time.Duration
	}{
		{"exactly-once default interval", nil, 10 * time.Millisecond, 20 * time.Millisecond},
		{"10 ms interval", []Opt{CommitInterval(10 * time.Millisecond)}, time.Millisecond, 20 * time.Millisecond},
		{"1 s interval", []Opt{CommitInterval(time.Second)}, 10 * time.Millisecond, 20 * time.Millisecond},
		{"off", []Opt{PollPace(0), MarkerWait(0)}, 0, 0},
		{"explicit", []Opt{PollPace(25 * time.Millisecond), MarkerWait(time.Millisecond)}, 25 * time.Millisecond, time.Millisecond},
	} {
		c := defaultCfg()
		for _, o := range tc.opts {
			o.apply(&c)
		}
		c.finish()
		if c.pollPace != tc.wantPace || c.markerWait != tc.wantWait {
			t.Errorf("%s: pollPace, markerWait = %v, %v, want %v, %v", tc.name, c.pollPace, c.markerWait, tc.wantPace, tc.wantWait)
		}
	}
	for _, tc := range []struct {
		opt  Opt
		want string
	}{
		{PollPace(-time.Millisecond), "PollPace: must not be negative, got -1ms"},
		{MarkerWait(-time.Millisecond), "MarkerWait: must not be negative, got -1ms"},
	} {
		c := defaultCfg()
		for _, o := range []Opt{Brokers("127.0.0.1:9092"), ApplicationID("app"), tc.opt} {
			o.apply(&c)
		}
		c.finish()
		if err := c.validate(); !errors.Is(err, ErrInvalidConfig) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("validate = %v, want ErrInvalidConfig containing %q", err, tc.want)
		}
	}
}

// TestBehindBroker checks which polls count as leaving records on the
// broker: more than one offset between a partition's last polled record
// and its last stable offset (one is a transaction marker's).
func TestBehindBroker(t *testing.T) {
	fetch := func(parts ...kgo.FetchPartition) kgo.Fetches {
		return kgo.Fetches{{Topics: []kgo.FetchTopic{{Topic: "in", Partitions: parts}}}}
	}
	part := func(p int32, lastOffset, lso int64) kgo.FetchPartition {
		fp := kgo.FetchPartition{Partition: p, LastStableOffset: lso, HighWatermark: lso}
		if lastOffset >= 0 {
			fp.Records = []*kgo.Record{{Topic: "in", Partition: p, Offset: lastOffset}}
		}
		return fp
	}
	for _, tc := range []struct {
		name string
		fs   kgo.Fetches
		want bool
	}{
		{"caught up", fetch(part(0, 9, 10)), false},
		{"a marker after the last record", fetch(part(0, 9, 11)), false},
		{"two offsets left", fetch(part(0, 9, 12)), true},
		{"one partition of two behind", fetch(part(0, 9, 10), part(1, 4, 5000)), true},
		{"a partition with no records", fetch(part(0, -1, 5000)), false},
		{"no fetch", nil, false},
	} {
		if got := behindBroker(tc.fs); got != tc.want {
			t.Errorf("%s: behindBroker = %v, want %v", tc.name, got, tc.want)
		}
	}
}

func TestNextPollLimit(t *testing.T) {
	const ms = time.Millisecond
	for _, tc := range []struct {
		name         string
		limit, n     int
		took, target time.Duration
		max, want    int
	}{
		{"a full batch, fast: grows at most fourfold", 100, 100, 1 * ms, 50 * ms, 50_000, 400},
		{"a full batch, fast, near the cap: up to MaxPollRecords", 20_000, 20_000, 5 * ms, 50 * ms, 50_000, 50_000},
		{"a full batch at the target: stays", 1_000, 1_000, 50 * ms, 50 * ms, 50_000, 1_000},
		{"a full batch, slow: as many as fit in the target", 50_000, 50_000, 5_000 * ms, 50 * ms, 50_000, 500},
		{"a short batch within the target: unchanged", 50_000, 300, 1 * ms, 50 * ms, 50_000, 50_000},
		{"a short batch over the target: shrinks", 50_000, 300, 300 * ms, 50 * ms, 50_000, 50},
		{"very slow records: at least one", 10, 10, 10_000 * ms, 50 * ms, 50_000, 1},
		{"an empty poll: unchanged", 400, 0, 0, 50 * ms, 50_000, 400},
		{"MaxPollRecords below the growth: capped", 100, 100, 1 * ms, 50 * ms, 250, 250},
	} {
		if got := nextPollLimit(tc.limit, tc.n, tc.took, tc.target, tc.max); got != tc.want {
			t.Errorf("%s: nextPollLimit(%d, %d, %v, %v, %d) = %d, want %d", tc.name, tc.limit, tc.n, tc.took, tc.target, tc.max, got, tc.want)
		}
	}
}

// TestEndNow checks when an open transaction ends: when full or after a
// failed produce at once, when due unless the last transaction's markers
// hold its records (then it goes on until the hold ends; the sender's
// holding gives the poll the hold's channel and limit), and not before it
// is due.
func TestEndNow(t *testing.T) {
	c, err := kfake.NewCluster(kfake.NumBrokers(1))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	cl, err := kgo.NewClient(kgo.SeedBrokers(c.ListenAddrs()...))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	s := newSender(cl)
	defer s.stop()
	p := &Processor{cfg: defaultCfg()}
	p.cfg.maxRecordsPerTxn = 10
	w := &worker{p: p, send: s, txn: &txnState{open: true}}

	now := time.Now()
	w.txn.due = now.Add(time.Hour)
	if w.endNow(now) {
		t.Error("a transaction ended before it was due")
	}
	w.txn.due = now
	if !w.endNow(now) {
		t.Errorf("a due transaction with no hold in force did not end")
	}

	release := s.hold(time.Hour)
	ch, until := heldBy(s)
	if w.endNow(now) {
		t.Error("a due transaction ended while its records were held for the last one's markers")
	}
	if gotUntil, gotCh, ok := s.holding(now); !ok || gotCh != (<-chan struct{})(ch) || !gotUntil.Equal(until) {
		t.Errorf("holding = %v, %v, %v, want the hold's %v, %v, true", gotUntil, gotCh, ok, until, ch)
	}
	if _, _, ok := s.holding(until); ok {
		t.Error("holding reported a hold in force at its limit")
	}
	if !w.endNow(until) {
		t.Error("a due transaction did not end once its hold's limit had passed")
	}

	w.txn.records = 10
	if !w.endNow(now) {
		t.Error("a full transaction did not end while held")
	}
	w.txn.records = 0
	w.produceErr = errors.New("produce failed")
	if !w.endNow(now) {
		t.Error("a transaction with a failed produce did not end while held")
	}
	w.takeProduceErr()

	release()
	if !w.endNow(now) {
		t.Error("a due transaction did not end once its hold was released")
	}
	if _, _, ok := s.holding(now); ok {
		t.Error("holding reported a released hold in force")
	}
}

// TestCancelOnClose checks that the poll's context ends when the hold's
// channel closes, and that its cancel func ends it otherwise.
func TestCancelOnClose(t *testing.T) {
	ch := make(chan struct{})
	ctx, cancel := cancelOnClose(context.Background(), ch)
	if ctx.Err() != nil {
		t.Fatal("context ended before the channel closed")
	}
	close(ch)
	<-ctx.Done()
	cancel()

	ctx, cancel = cancelOnClose(context.Background(), make(chan struct{}))
	cancel()
	if !errors.Is(ctx.Err(), context.Canceled) {
		t.Errorf("after cancel, ctx.Err() = %v, want context.Canceled", ctx.Err())
	}
}
