package processor

import (
	"context"
	"sync"
	"sync/atomic"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
)

// sender hands a worker's records to the client from a goroutine of its
// own, in the order the worker queued them, so that the client's
// partitioning and batching do not run on the worker's goroutine (a fifth
// of a stateful worker's time, which writes two records per input).
//
// send collects records on the worker's side while the goroutine is busy
// producing earlier ones and hands them over in chunks of sendChunk (one
// lock per chunk, not per record); a record queued while the goroutine is
// idle goes over at once, so a slow processor's outputs do not wait for a
// chunk to fill. The worker calls push when it has processed a poll's
// records, so nothing waits in its hands while it polls or commits.
// Before anything that needs every queued record inside the client (a
// flush, the end of a transaction, closing the client) the worker calls
// drain; before aborting, discard. After ending a transaction an
// exactly-once worker calls hold, so that the next transaction's first
// records wait for the last one's markers (MarkerWait, markerWatch).
// Promises run as with any produce, on the client's goroutines.
type sender struct {
	cl *kgo.Client

	// local is what the worker queued since its last hand-over; only the
	// worker's goroutine touches it.
	local []sendItem

	mu    sync.Mutex
	idle  *sync.Cond // signalled when the goroutine runs out of work
	queue []sendItem // guarded by mu
	busy  bool       // guarded by mu: the goroutine has work or is producing
	// working mirrors busy for the worker's unlocked look in send.
	working atomic.Bool

	wake    chan struct{} // capacity 1
	quit    chan struct{} // closed by stop
	stopped chan struct{} // closed when the goroutine returns
	// dropping makes the goroutine skip what it has not produced yet.
	dropping atomic.Bool
	// holdUntil is when the goroutine may hand records to the client again
	// after hold, at the latest; closing released ends the hold earlier.
	// Both are guarded by mu.
	holdUntil time.Time
	released  chan struct{}
}

type sendItem struct {
	r       *kgo.Record
	promise func(*kgo.Record, error)
}

func newSender(cl *kgo.Client) *sender {
	s := &sender{
		cl:      cl,
		wake:    make(chan struct{}, 1),
		quit:    make(chan struct{}),
		stopped: make(chan struct{}),
	}
	s.idle = sync.NewCond(&s.mu)
	go s.loop()
	return s
}

func (s *sender) loop() {
	defer close(s.stopped)
	var spare []sendItem
	for {
		select {
		case <-s.wake:
		case <-s.quit:
			return
		}
		for {
			s.mu.Lock()
			q := s.queue
			if len(q) == 0 {
				s.busy = false
				s.working.Store(false)
				s.idle.Broadcast()
				s.mu.Unlock()
				break
			}
			s.queue = spare[:0]
			s.mu.Unlock()
			s.waitHold()
			for _, it := range q {
				if s.dropping.Load() {
					break
				}
				// Not the worker's context: a graceful shutdown still
				// flushes what was produced.
				s.cl.Produce(context.Background(), it.r, it.promise)
			}
			clear(q)
			spare = q
		}
	}
}

// hold keeps the goroutine from handing records to the client for at most
// d (see MarkerWait), or until the returned func is called, whichever is
// first; records queued meanwhile wait in the queue. drain waits out the
// hold if records are queued. A hold of 0 sets none.
func (s *sender) hold(d time.Duration) (release func()) {
	if d <= 0 {
		return func() {}
	}
	ch := make(chan struct{})
	s.mu.Lock()
	s.holdUntil, s.released = time.Now().Add(d), ch
	s.mu.Unlock()
	var once sync.Once
	return func() { once.Do(func() { close(ch) }) }
}

// waitHold sleeps until the hold set last is over. Nothing else needs to
// cut it short: stop closes quit only after drain, which waits for it.
func (s *sender) waitHold() {
	if until, released, ok := s.holding(time.Now()); ok {
		waitUntil(until, released)
	}
}

// holding reports the hold in force at now, if any: when it ends at the
// latest, and a channel closed if it is released earlier.
func (s *sender) holding(now time.Time) (until time.Time, released <-chan struct{}, ok bool) {
	s.mu.Lock()
	until, ch := s.holdUntil, s.released
	s.mu.Unlock()
	if ch == nil || !now.Before(until) {
		return time.Time{}, nil, false
	}
	select {
	case <-ch:
		return time.Time{}, nil, false
	default:
		return until, ch, true
	}
}

// sendChunk is how many records the worker collects before handing them
// to the sender's goroutine.
const sendChunk = 256

// send queues r; its promise is called once the client is done with it
// (unless discard drops it first).
func (s *sender) send(r *kgo.Record, promise func(*kgo.Record, error)) {
	s.local = append(s.local, sendItem{r: r, promise: promise})
	if len(s.local) >= sendChunk || !s.working.Load() {
		s.push()
	}
}

// push hands what the worker collected to the sender's goroutine, waking
// it if it is idle.
func (s *sender) push() {
	if len(s.local) == 0 {
		return
	}
	s.mu.Lock()
	s.queue = append(s.queue, s.local...)
	wake := !s.busy
	s.busy = true
	s.working.Store(true)
	s.mu.Unlock()
	clear(s.local)
	s.local = s.local[:0]
	if wake {
		select {
		case s.wake <- struct{}{}:
		default:
		}
	}
}

// drain returns once every queued record has been handed to the client.
func (s *sender) drain() {
	s.push()
	s.mu.Lock()
	for s.busy {
		s.idle.Wait()
	}
	s.mu.Unlock()
}

// discard drops the queued records the goroutine has not produced yet and
// fails those buffered in the client (AbortBufferedRecords), for an abort.
// The dropped records' promises are not called.
func (s *sender) discard(ctx context.Context) error {
	clear(s.local)
	s.local = s.local[:0]
	s.dropping.Store(true)
	s.mu.Lock()
	clear(s.queue)
	s.queue = s.queue[:0]
	s.mu.Unlock()
	// Aborting first frees the goroutine if it is blocked in Produce on a
	// full buffer; the second abort fails what it produced meanwhile.
	err := s.cl.AbortBufferedRecords(ctx)
	s.drain()
	s.dropping.Store(false)
	if err2 := s.cl.AbortBufferedRecords(ctx); err == nil {
		err = err2
	}
	return err
}

// stop drains and ends the goroutine.
func (s *sender) stop() {
	s.drain()
	close(s.quit)
	<-s.stopped
}

// records hands out zeroed kgo.Records carved from arrays of
// recordSlabLen, one allocation per array instead of one per record, and
// reuses an array once the client is done with every record carved from
// it: each record's promise ends with releaseRecord.
//
// A record carries its array in its Context (never canceled, no values),
// which the client only asks for cancellation. A record that is never
// produced (dropped by an abort), or whose Context a client hook replaces,
// keeps its array from being reused; the garbage collector frees it.
type records struct {
	cur  *recordSlab
	used int // records carved from cur
	pool *slabPool
}

const recordSlabLen = 128

// maxFreeSlabs bounds the arrays waiting for reuse (about 5 MiB).
const maxFreeSlabs = 256

type recordSlab struct {
	context.Context // context.Background: records never cancel
	recs            [recordSlabLen]kgo.Record
	// open counts the records not yet released, those not yet carved
	// included: the array is free again when it reaches zero.
	open atomic.Int32
	pool *slabPool
}

// slabPool holds zeroed arrays ready for reuse. Promises put arrays back
// from the client's goroutines; the worker takes them.
type slabPool struct {
	mu   sync.Mutex
	free []*recordSlab
}

func (p *slabPool) get() *recordSlab {
	p.mu.Lock()
	var s *recordSlab
	if n := len(p.free); n > 0 {
		s, p.free[n-1] = p.free[n-1], nil
		p.free = p.free[:n-1]
	}
	p.mu.Unlock()
	if s == nil {
		s = &recordSlab{Context: context.Background(), pool: p}
	}
	s.open.Store(recordSlabLen)
	return s
}

func (p *slabPool) put(s *recordSlab) {
	clear(s.recs[:]) // drop what the records point to
	p.mu.Lock()
	if len(p.free) < maxFreeSlabs {
		p.free = append(p.free, s)
	}
	p.mu.Unlock()
}

func (rs *records) next() *kgo.Record {
	if rs.cur == nil || rs.used == recordSlabLen {
		if rs.pool == nil {
			rs.pool = &slabPool{}
		}
		rs.cur, rs.used = rs.pool.get(), 0
	}
	r := &rs.cur.recs[rs.used]
	rs.used++
	r.Context = rs.cur
	return r
}

// releaseRecord tells r's array that the client is done with r: call it
// last in r's promise, and use r no more.
func releaseRecord(r *kgo.Record) {
	if s, ok := r.Context.(*recordSlab); ok && s.open.Add(-1) == 0 {
		s.pool.put(s)
	}
}
