package state_test

import (
	"encoding/binary"
	"fmt"
	"testing"

	"github.com/onceflow/onceflow/state"
)

// BenchmarkApply measures what the worker's goroutine spends handing
// 100,000 committed keys (four store-partitions of 25,000 sharing one cache
// budget, every key written since the last apply, as in the wordcount
// benchmark) over for an apply: all at once (TakeUnapplied), or in parts
// of 2,048 keys (the processor's smallest part) and the EndApply after
// them ("end" times EndApply alone: what the last part adds). ns/key is
// per key handed over.
func BenchmarkApply(b *testing.B) {
	const stores, keys, part = 4, 25_000, 2048
	setup := func() []*state.Overlay {
		budget := state.NewCacheBudget(32 << 20)
		var os []*state.Overlay
		for range stores {
			os = append(os, state.NewCachedOverlay(state.NewMemKV(), budget))
		}
		return os
	}
	names := make([][]byte, stores*keys)
	for i := range names {
		names[i] = fmt.Appendf(nil, "w%06d", i)
	}
	v := make([]byte, 8)
	commitAll := func(os []*state.Overlay, round int) {
		binary.BigEndian.PutUint64(v, uint64(round))
		for p, o := range os {
			for k := range keys {
				_ = o.Put(names[k*stores+p], v)
			}
			o.Committed()
		}
	}
	// handAll hands every key of os over in parts and returns how many,
	// ending each apply if end is set.
	var ws []state.Write
	handAll := func(os []*state.Overlay, end bool) int {
		n := 0
		for _, o := range os {
			o.StartApply()
			for done := false; !done; {
				ws, done = o.TakeApplyPart(ws[:0], part)
				n += len(ws)
			}
			if end {
				o.EndApply()
			}
		}
		return n
	}
	// measure times timed after every key was committed again and
	// prepare ran; both return how many keys they handed over.
	measure := func(b *testing.B, prepare, timed func([]*state.Overlay) int) {
		os := setup()
		n := 0
		for i := 0; b.Loop(); i++ {
			b.StopTimer()
			commitAll(os, i)
			n += prepare(os)
			b.StartTimer()
			n += timed(os)
		}
		b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(n), "ns/key")
	}
	nothing := func([]*state.Overlay) int { return 0 }
	b.Run("whole", func(b *testing.B) {
		measure(b, nothing, func(os []*state.Overlay) int {
			n := 0
			for _, o := range os {
				n += len(o.TakeUnapplied())
			}
			return n
		})
	})
	b.Run("parts", func(b *testing.B) {
		measure(b, nothing, func(os []*state.Overlay) int { return handAll(os, true) })
	})
	b.Run("end", func(b *testing.B) {
		measure(b, func(os []*state.Overlay) int { return handAll(os, false) }, func(os []*state.Overlay) int {
			for _, o := range os {
				o.EndApply()
			}
			return 0
		})
	})
}
