package processor

import (
	"math"
	"sync/atomic"
	"time"
)

// Histogram buckets: four to each doubling of the duration (each about 19%
// wider than the one before), the first ending at histFirst; the last one
// (from about 3.1 minutes, bound about 3.7) also takes everything longer.
const (
	histFirst   = 250 * time.Microsecond
	histPerDoub = 4
	histBuckets = 80
)

// histBound is the upper bound of bucket i (inclusive).
func histBound(i int) time.Duration {
	return time.Duration(math.Round(float64(histFirst) * math.Exp2(float64(i)/histPerDoub)))
}

// histBucket is the first bucket whose bound is at least d; the last one
// for anything longer.
func histBucket(d time.Duration) int {
	if d <= histFirst {
		return 0
	}
	i := int(math.Ceil(histPerDoub * math.Log2(float64(d)/float64(histFirst))))
	// The logarithm may land one off at a bound; the bounds decide.
	for i > 0 && histBound(i-1) >= d {
		i--
	}
	for i < histBuckets-1 && histBound(i) < d {
		i++
	}
	return min(i, histBuckets-1)
}

// Histogram counts durations in buckets about 19% wide (four to each
// doubling, the first up to 250µs; durations over about 3.1 minutes share
// the last), so that percentiles can be read from it. Stats has four:
// PollAges, CommitAges, CommitTimes and MarkerTimes, where Kafka Streams
// reports averages and maxima. Take two Stats snapshots and Sub them for
// what was counted in between.
type Histogram struct {
	counts [histBuckets]int64
}

// Count is the number of durations counted.
func (h Histogram) Count() int64 {
	var n int64
	for _, c := range h.counts {
		n += c
	}
	return n
}

// Quantile returns the upper bound of the bucket that holds the q-th
// quantile (0 < q ≤ 1) of the durations counted: at most about 19% above
// the true value (in the last bucket, its bound of about 3.7 minutes,
// whatever the duration). It returns 0 for an empty histogram.
func (h Histogram) Quantile(q float64) time.Duration {
	n := h.Count()
	if n == 0 {
		return 0
	}
	rank := max(int64(math.Ceil(q*float64(n))), 1)
	var seen int64
	for i, c := range h.counts {
		seen += c
		if seen >= rank {
			return histBound(i)
		}
	}
	return histBound(histBuckets - 1)
}

// Over counts the durations in buckets entirely above d: those longer
// than d, give or take one bucket's width.
func (h Histogram) Over(d time.Duration) int64 {
	var n int64
	for i := histBucket(d) + 1; i < histBuckets; i++ {
		n += h.counts[i]
	}
	return n
}

// Sub returns the durations counted in h but not in earlier, an earlier
// snapshot of the same histogram.
func (h Histogram) Sub(earlier Histogram) Histogram {
	var d Histogram
	for i := range h.counts {
		d.counts[i] = h.counts[i] - earlier.counts[i]
	}
	return d
}

// histCounter is the counting side of a Histogram, safe for concurrent
// use.
type histCounter struct {
	counts [histBuckets]atomic.Int64
}

func (c *histCounter) observe(d time.Duration) {
	c.counts[histBucket(d)].Add(1)
}

// storeMax raises m to v if v is larger.
func storeMax(m *atomic.Int64, v int64) {
	for {
		old := m.Load()
		if v <= old || m.CompareAndSwap(old, v) {
			return
		}
	}
}

func (c *histCounter) snapshot() Histogram {
	var h Histogram
	for i := range c.counts {
		h.counts[i] = c.counts[i].Load()
	}
	return h
}
