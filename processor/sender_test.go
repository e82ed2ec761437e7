package processor

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// TestSenderDiscardWithFullBuffer aborts while the sender's goroutine is
// blocked in Produce on a full client buffer and the broker holds a produce
// request: discard must return once the broker answers, call no promise of
// a record it dropped, and leave a sender that produces the next records.
// The broker here is kfake, because only it can hold a request on cue.
func TestSenderDiscardWithFullBuffer(t *testing.T) {
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(1, "t"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	release := make(chan struct{})
	held := make(chan struct{}, 1)
	var holding atomic.Bool
	holding.Store(true)
	c.ControlKey(int16(kmsg.Produce), func(kmsg.Request) (kmsg.Response, error, bool) {
		c.KeepControl()
		if holding.Load() {
			select {
			case held <- struct{}{}:
			default:
			}
			c.SleepControl(func() { <-release })
		}
		return nil, nil, false
	})

	const buffered = 4
	cl, err := kgo.NewClient(kgo.SeedBrokers(c.ListenAddrs()...),
		kgo.MaxBufferedRecords(buffered), kgo.ProducerLinger(0),
		kgo.RecordPartitioner(kgo.ManualPartitioner()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	s := newSender(cl)
	defer s.stop()

	var acked, failed atomic.Int64
	promise := func(_ *kgo.Record, err error) {
		if err != nil {
			failed.Add(1)
		} else {
			acked.Add(1)
		}
	}
	send := func(prefix string, n int) {
		for i := range n {
			s.send(&kgo.Record{Topic: "t", Value: fmt.Appendf(nil, "%s-%d", prefix, i)}, promise)
		}
		s.push()
	}
	const first = 40
	send("dropped", first)

	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	select {
	case <-held:
	case <-ctx.Done():
		t.Fatal("no produce request reached the broker")
	}
	// The goroutine fills the client's buffer, then blocks in Produce.
	for cl.BufferedProduceRecords() < buffered {
		if ctx.Err() != nil {
			t.Fatalf("client buffer holds %d records, want %d", cl.BufferedProduceRecords(), buffered)
		}
		time.Sleep(time.Millisecond)
	}

	// Records queued now stay on the worker's side (the goroutine is
	// busy); discard drops them too.
	for i := range 3 {
		s.send(&kgo.Record{Topic: "t", Value: fmt.Appendf(nil, "local-%d", i)}, promise)
	}
	if len(s.local) != 3 {
		t.Fatalf("%d records on the worker's side, want 3", len(s.local))
	}

	discarded := make(chan error, 1)
	go func() { discarded <- s.discard(ctx) }()
	// Release the broker only once discard has told the goroutine to drop
	// what it has not produced: released earlier, the goroutine would go
	// on producing the queued records, and the broker would take them.
	for !s.dropping.Load() {
		if ctx.Err() != nil {
			t.Fatal("discard did not start dropping")
		}
		time.Sleep(time.Millisecond)
	}
	holding.Store(false)
	close(release)
	if err := <-discarded; err != nil {
		t.Fatalf("discard: %v", err)
	}
	// Every record the client got has its promise called by now (the
	// client was flushed); the dropped ones never will.
	reached := acked.Load() + failed.Load()
	if reached < buffered || reached > buffered+1 {
		t.Fatalf("promises called for %d records (%d acked, %d failed), want %d or %d: the buffered ones and at most the one Produce was blocked on",
			reached, acked.Load(), failed.Load(), buffered, buffered+1)
	}
	if n := cl.BufferedProduceRecords(); n != 0 {
		t.Fatalf("client still buffers %d records after discard", n)
	}

	// The sender works on: the next records all arrive, in order.
	ackedBefore := acked.Load()
	const next = 10
	send("kept", next)
	s.drain()
	if err := cl.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	if got := acked.Load() - ackedBefore; got != next {
		t.Fatalf("after discard: %d of %d records acknowledged (%d failed in all)", got, next, failed.Load())
	}
	if got := acked.Load() + failed.Load(); got != reached+next {
		t.Fatalf("promises called %d times, want %d: a dropped record's promise ran", got, reached+next)
	}
	rd, err := kgo.NewClient(kgo.SeedBrokers(c.ListenAddrs()...), kgo.ConsumeTopics("t"),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		t.Fatal(err)
	}
	defer rd.Close()
	var tail []string
	for int64(len(tail)) < acked.Load() {
		fs := rd.PollFetches(ctx)
		if err := fs.Err0(); err != nil {
			t.Fatalf("reading back after %d records: %v", len(tail), err)
		}
		fs.EachRecord(func(r *kgo.Record) { tail = append(tail, string(r.Value)) })
	}
	tail = tail[len(tail)-next:]
	for i, v := range tail {
		if want := fmt.Sprintf("kept-%d", i); v != want {
			t.Fatalf("record %d after discard is %q, want %q (all: %q)", i, v, want, tail)
		}
	}
}

// TestRecordsReuse: an array of records is reused once every record
// carved from it was released, zeroed, and not before; a record whose
// Context is not its array's is left alone.
func TestRecordsReuse(t *testing.T) {
	var rs records
	first := make([]*kgo.Record, recordSlabLen)
	for i := range first {
		r := rs.next()
		r.Topic, r.Key, r.Offset = "t", []byte("k"), int64(i)
		first[i] = r
	}
	// All but one released: the array is not free yet.
	for _, r := range first[1:] {
		releaseRecord(r)
	}
	r := rs.next()
	if r == first[0] || len(rs.pool.free) != 0 {
		t.Fatalf("an array with a record not released was reused (%d free)", len(rs.pool.free))
	}
	// A record whose Context a hook replaced keeps its array out of the
	// pool: its release is a no-op.
	first[0].Context = context.Background()
	releaseRecord(first[0])
	if len(rs.pool.free) != 0 {
		t.Fatalf("releasing a record with a foreign Context freed an array (%d free)", len(rs.pool.free))
	}

	// The second array: carve it whole, release every record, and the
	// third array is the same memory, zeroed.
	second := []*kgo.Record{r}
	for range recordSlabLen - 1 {
		second = append(second, rs.next())
	}
	for _, r := range second {
		r.Topic, r.Value, r.Partition = "u", []byte("v"), 3
		releaseRecord(r)
	}
	if len(rs.pool.free) != 1 {
		t.Fatalf("%d arrays free after releasing every record of one, want 1", len(rs.pool.free))
	}
	third := rs.next()
	if third != second[0] {
		t.Fatalf("the freed array was not reused")
	}
	if third.Topic != "" || third.Value != nil || third.Partition != 0 || third.Context == nil {
		t.Fatalf("reused record not zeroed (or without its array): %+v", third)
	}
}

// bufferedAt records when each record reached the client's buffer.
type bufferedAt struct{ at chan time.Time }

func (h bufferedAt) OnProduceRecordBuffered(*kgo.Record) { h.at <- time.Now() }

// TestSenderHold checks MarkerWait's hold: records queued while the sender
// holds reach the client no earlier than the hold's end, drain waits for
// them to get there, a hold of 0 leaves the sender as it was, and a
// released hold ends at once.
func TestSenderHold(t *testing.T) {
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(1, "t"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	h := bufferedAt{at: make(chan time.Time, 16)}
	cl, err := kgo.NewClient(kgo.SeedBrokers(c.ListenAddrs()...), kgo.ProducerLinger(0),
		kgo.RecordPartitioner(kgo.ManualPartitioner()), kgo.WithHooks(h))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	s := newSender(cl)
	defer s.stop()

	var acked atomic.Int64
	promise := func(_ *kgo.Record, err error) {
		if err == nil {
			acked.Add(1)
		}
	}
	const d = 50 * time.Millisecond
	s.hold(d)
	s.mu.Lock()
	end := s.holdUntil
	s.mu.Unlock()
	for i := range 3 {
		s.send(&kgo.Record{Topic: "t", Value: fmt.Appendf(nil, "held-%d", i)}, promise)
	}
	s.drain()
	for i := range 3 {
		select {
		case at := <-h.at:
			if at.Before(end) {
				t.Errorf("held record %d reached the client %v before the hold ended", i, end.Sub(at))
			}
		default:
			t.Fatalf("drain returned with %d of 3 held records in the client", i)
		}
	}

	s.hold(0) // no new hold: the one above is over
	s.send(&kgo.Record{Topic: "t", Value: []byte("free")}, promise)
	s.drain()
	if len(h.at) != 1 {
		t.Fatalf("%d records reached the client after a hold of 0, want 1", len(h.at))
	}
	<-h.at

	// Released, a hold ends before its limit: drain returns with the
	// record in the client long before the hour is up.
	release := s.hold(time.Hour)
	s.send(&kgo.Record{Topic: "t", Value: []byte("released")}, promise)
	release()
	release() // a second call does nothing
	s.drain()
	if len(h.at) != 1 {
		t.Fatalf("%d records reached the client after the hold was released, want 1", len(h.at))
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := cl.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	if got := acked.Load(); got != 5 {
		t.Fatalf("%d records acknowledged, want 5", got)
	}
}
