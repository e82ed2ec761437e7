package main

import (
	"context"
	"errors"
	"fmt"
	"math"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
)

// resultReader reads the output topic read_committed from its start while
// a system runs, and counts the results it sees. It notes when it saw the
// first result and the target-th result (the end of the throughput phase),
// and, once startLatency is called, the latency of every result of the
// timed partitions stamped at or after the mark: the time the reader saw
// it minus its timestamp (the time the paced producer created the input
// record; every system keeps the input record's timestamp).
//
// Each partition has its own client. A transaction's results become
// visible at once, and one client decodes a fetch response a partition
// after another: at 700,000 records/s a 100 ms transaction is 70,000
// records, which took one client 12-18 ms to decode after the response
// had arrived, and every result in it was stamped with the time the last
// one was ready. With a client per partition the partitions decode side by
// side, and what is measured is closer to the time a result became
// visible and less the reader's own work, which grows with the rate.
type resultReader struct {
	cls    []*kgo.Client
	timed  int // partitions [0, timed) are timed in the latency phase
	target int64
	count  atomic.Int64
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu         sync.Mutex
	start      time.Time
	firstSeen  time.Time
	targetSeen time.Time
	mark       time.Time
	hold       chan struct{} // non-nil while the untimed partitions wait; closed to release them
	heldPolls  int           // polls of untimed clients that returned while hold was set
	latencies  latencyHist
	err        error
}

func startResultReader(seeds []string, topic string, partitions, timed int, target int64) (*resultReader, error) {
	ctx, cancel := context.WithCancel(context.Background())
	rr := &resultReader{target: target, timed: timed, cancel: cancel, start: time.Now()}
	for p := range int32(partitions) {
		cl, err := kgo.NewClient(
			kgo.SeedBrokers(seeds...),
			kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{topic: {p: kgo.NewOffset().AtStart()}}),
			kgo.FetchIsolationLevel(kgo.ReadCommitted()),
			kgo.FetchMaxWait(100*time.Millisecond),
		)
		if err != nil {
			rr.close()
			return nil, fmt.Errorf("result reader for %s partition %d: %w", topic, p, err)
		}
		rr.cls = append(rr.cls, cl)
	}
	for p, cl := range rr.cls {
		rr.wg.Add(1)
		go rr.loop(ctx, cl, p < timed)
	}
	return rr, nil
}

func (rr *resultReader) loop(ctx context.Context, cl *kgo.Client, timed bool) {
	defer rr.wg.Done()
	for {
		if !timed {
			rr.mu.Lock()
			hold := rr.hold
			rr.mu.Unlock()
			if hold != nil {
				select {
				case <-hold:
				case <-ctx.Done():
					return
				}
			}
		}
		fs := cl.PollFetches(ctx)
		if ctx.Err() != nil {
			return
		}
		now := time.Now()
		var ferr error
		fs.EachError(func(t string, p int32, err error) {
			if !errors.Is(err, context.Canceled) {
				ferr = fmt.Errorf("result reader: fetch %s[%d]: %w", t, p, err)
			}
		})
		rr.mu.Lock()
		if ferr != nil && rr.err == nil {
			rr.err = ferr
		}
		if !timed && rr.hold != nil {
			rr.heldPolls++
		}
		mark := rr.mark
		fs.EachRecord(func(r *kgo.Record) {
			c := rr.count.Add(1)
			if c == 1 {
				rr.firstSeen = now
			}
			if c == rr.target {
				rr.targetSeen = now
			}
			if timed && !mark.IsZero() && !r.Timestamp.Before(mark) {
				rr.latencies.add(now.Sub(r.Timestamp))
			}
		})
		rr.mu.Unlock()
	}
}

// startLatency turns on latency sampling for records stamped at or after
// mark, on the timed partitions, and forgets what an earlier phase timed.
// The clients of the other partitions stop polling (each keeps at most
// the fetch it has buffered) until endLatency, so the reader's work and
// the broker's for it do not grow with the load of the system measured.
func (rr *resultReader) startLatency(mark time.Time) {
	rr.mu.Lock()
	rr.mark = mark
	rr.latencies = latencyHist{}
	if rr.timed < len(rr.cls) && rr.hold == nil {
		rr.hold = make(chan struct{})
	}
	rr.mu.Unlock()
}

// endLatency lets the untimed partitions' clients read on, so the results
// they held back are counted.
func (rr *resultReader) endLatency() {
	rr.mu.Lock()
	if rr.hold != nil {
		close(rr.hold)
		rr.hold = nil
	}
	rr.mu.Unlock()
}

// snapshot returns the times of the first and target-th result (zero if
// not seen yet) and the first fetch error.
func (rr *resultReader) snapshot() (first, target time.Time, err error) {
	rr.mu.Lock()
	defer rr.mu.Unlock()
	return rr.firstSeen, rr.targetSeen, rr.err
}

// latencySummary returns how many results were timed so far, and their
// p50, p99 and maximum latency in milliseconds.
func (rr *resultReader) latencySummary() (n int, p50, p99, maxv float64) {
	rr.mu.Lock()
	defer rr.mu.Unlock()
	h := &rr.latencies
	return h.n, h.percentile(50), h.percentile(99), h.maximum()
}

func (rr *resultReader) close() {
	rr.cancel()
	rr.wg.Wait()
	for _, cl := range rr.cls {
		cl.Close()
	}
}

// waitFor waits until the reader counted want results. It calls progress
// every interval, fails if the child exits, if nothing new arrives for
// stall, or when ctx ends.
func (rr *resultReader) waitFor(ctx context.Context, want int64, child *child, stall time.Duration, progress func(n int64)) error {
	tick := time.NewTicker(200 * time.Millisecond)
	defer tick.Stop()
	lastN, lastChange, lastReport := int64(-1), time.Now(), time.Now()
	for {
		n := rr.count.Load()
		if n >= want {
			progress(n)
			return nil
		}
		if _, _, err := rr.snapshot(); err != nil {
			return err
		}
		if n != lastN {
			lastN, lastChange = n, time.Now()
		} else if time.Since(lastChange) > stall {
			return fmt.Errorf("no new results for %v (%d of %d seen)", stall, n, want)
		}
		if time.Since(lastReport) >= 2*time.Second {
			progress(n)
			lastReport = time.Now()
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("waiting for results (%d of %d seen): %w", n, want, ctx.Err())
		case <-child.exited:
			if rr.count.Load() >= want {
				continue
			}
			return fmt.Errorf("%s exited early (%d of %d results seen): %w", child.name, rr.count.Load(), want, child.exitErr)
		case <-tick.C:
		}
	}
}

// latencyHist counts latencies in buckets of latencyBucket up to
// latencyRange, and keeps the rarer ones beyond it exactly. The reader
// times millions of results per latency phase; keeping each as a float64
// grew a slice to about 100 MB in the suite's process, where the paced
// producer runs too, and as it grew the collector ran cycles of up to
// 100 ms in which the producer stalled for as long.
type latencyHist struct {
	counts []uint32 // counts[i]: latencies in [i, i+1) × latencyBucket
	beyond []time.Duration
	n      int
	top    time.Duration
}

const (
	latencyBucket = 100 * time.Microsecond
	latencyRange  = 60 * time.Second
)

func (h *latencyHist) add(d time.Duration) {
	if h.counts == nil {
		h.counts = make([]uint32, latencyRange/latencyBucket)
	}
	d = max(d, 0)
	h.n++
	h.top = max(h.top, d)
	if i := int(d / latencyBucket); i < len(h.counts) {
		h.counts[i]++
		return
	}
	h.beyond = append(h.beyond, d)
}

// percentile returns the p-th percentile (0 < p <= 100) in milliseconds by
// the nearest-rank method, as the upper edge of its bucket (never above
// the maximum): at most latencyBucket above the exact value. NaN if
// nothing was timed.
func (h *latencyHist) percentile(p float64) float64 {
	if h.n == 0 {
		return math.NaN()
	}
	rank := int(math.Ceil(p / 100 * float64(h.n)))
	rank = min(max(rank, 1), h.n)
	seen := 0
	for i, c := range h.counts {
		if seen += int(c); seen >= rank {
			return ms(min(time.Duration(i+1)*latencyBucket, h.top))
		}
	}
	slices.Sort(h.beyond)
	return ms(h.beyond[rank-seen-1])
}

// maximum returns the largest latency in milliseconds, NaN if none.
func (h *latencyHist) maximum() float64 {
	if h.n == 0 {
		return math.NaN()
	}
	return ms(h.top)
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// median returns the median of xs (the mean of the middle two for an even
// count), ignoring NaNs; NaN if none are left.
func median(xs []float64) float64 {
	var v []float64
	for _, x := range xs {
		if !math.IsNaN(x) {
			v = append(v, x)
		}
	}
	if len(v) == 0 {
		return math.NaN()
	}
	slices.Sort(v)
	m := len(v) / 2
	if len(v)%2 == 1 {
		return v[m]
	}
	return (v[m-1] + v[m]) / 2
}
