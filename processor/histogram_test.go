package processor

import (
	"sync/atomic"
	"testing"
	"time"
)

// TestHistBuckets: every duration lands in the first bucket whose bound
// holds it, and the bounds grow by a fourth root of two.
func TestHistBuckets(t *testing.T) {
	if got := histBound(0); got != histFirst {
		t.Fatalf("first bound %v, want %v", got, histFirst)
	}
	if got := histBound(4); got != 2*histFirst {
		t.Fatalf("bound 4 is %v, want %v", got, 2*histFirst)
	}
	for i := 1; i < histBuckets; i++ {
		b, prev := histBound(i), histBound(i-1)
		if r := float64(b) / float64(prev); r < 1.18 || r > 1.19 {
			t.Fatalf("bound %d (%v) is %.3f times bound %d (%v), want 2^(1/4)", i, b, r, i-1, prev)
		}
		for _, d := range []time.Duration{prev + 1, (prev + b) / 2, b} {
			if got := histBucket(d); got != i {
				t.Fatalf("%v in bucket %d, want %d (bounds %v, %v]", d, got, i, prev, b)
			}
		}
	}
	for _, d := range []time.Duration{0, 1, histFirst} {
		if got := histBucket(d); got != 0 {
			t.Fatalf("%v in bucket %d, want 0", d, got)
		}
	}
	if got := histBucket(time.Hour); got != histBuckets-1 {
		t.Fatalf("an hour in bucket %d, want the last, %d", got, histBuckets-1)
	}
}

// TestHistogram: quantiles, Over and Sub read the counts exactly, and
// storeMax keeps the largest value.
func TestHistogram(t *testing.T) {
	var c histCounter
	if h := c.snapshot(); h.Count() != 0 || h.Quantile(0.99) != 0 {
		t.Fatalf("empty histogram: count %d, p99 %v", h.Count(), h.Quantile(0.99))
	}
	// 98 commits of 3 ms, one of 40 ms, one of 70 ms.
	for range 98 {
		c.observe(3 * time.Millisecond)
	}
	before := c.snapshot()
	c.observe(40 * time.Millisecond)
	c.observe(70 * time.Millisecond)
	h := c.snapshot()
	if h.Count() != 100 {
		t.Fatalf("count %d, want 100", h.Count())
	}
	for _, tc := range []struct {
		q    float64
		want time.Duration
	}{
		{0.5, histBound(histBucket(3 * time.Millisecond))},
		{0.98, histBound(histBucket(3 * time.Millisecond))},
		{0.99, histBound(histBucket(40 * time.Millisecond))},
		{1, histBound(histBucket(70 * time.Millisecond))},
	} {
		if got := h.Quantile(tc.q); got != tc.want {
			t.Errorf("Quantile(%v) = %v, want %v", tc.q, got, tc.want)
		}
	}
	if got := h.Quantile(0.99); got < 40*time.Millisecond || got > 48*time.Millisecond {
		t.Errorf("p99 %v, want within a bucket above 40ms", got)
	}
	if got := h.Over(10 * time.Millisecond); got != 2 {
		t.Errorf("Over(10ms) = %d, want 2", got)
	}
	if got := h.Over(50 * time.Millisecond); got != 1 {
		t.Errorf("Over(50ms) = %d, want 1", got)
	}
	d := h.Sub(before)
	if d.Count() != 2 || d.Quantile(0.5) != histBound(histBucket(40*time.Millisecond)) {
		t.Errorf("the difference counts %d, median %v; want the 40 ms and 70 ms commits", d.Count(), d.Quantile(0.5))
	}
	var m atomic.Int64
	for _, v := range []int64{3, 70, 40} {
		storeMax(&m, v)
	}
	if got := m.Load(); got != 70 {
		t.Errorf("storeMax kept %d, want 70", got)
	}
}
