package main

import (
	"cmp"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// requestTimes is a kgo hook that sums, per request kind, how many
// requests the client sent and how long each took from being written to
// its response being read: with the commit count it tells how much of a
// commit is which round trip (a debugging aid; BENCH_REQTIMES).
type requestTimes struct {
	mu   sync.Mutex
	kind map[int16]*requestTime
}

type requestTime struct {
	n          int
	total, max time.Duration
}

var _ kgo.HookBrokerE2E = (*requestTimes)(nil)

func (rt *requestTimes) OnBrokerE2E(_ kgo.BrokerMetadata, key int16, e2e kgo.BrokerE2E) {
	d := e2e.DurationE2E()
	rt.mu.Lock()
	defer rt.mu.Unlock()
	if rt.kind == nil {
		rt.kind = make(map[int16]*requestTime)
	}
	t := rt.kind[key]
	if t == nil {
		t = &requestTime{}
		rt.kind[key] = t
	}
	t.n++
	t.total += d
	t.max = max(t.max, d)
}

// summary lists each request kind's count, mean and longest time, the
// kinds with the most time in all first.
func (rt *requestTimes) summary() string {
	rt.mu.Lock()
	defer rt.mu.Unlock()
	keys := make([]int16, 0, len(rt.kind))
	for k := range rt.kind {
		keys = append(keys, k)
	}
	slices.SortFunc(keys, func(a, b int16) int { return cmp.Compare(rt.kind[b].total, rt.kind[a].total) })
	var b strings.Builder
	for _, k := range keys {
		t := rt.kind[k]
		fmt.Fprintf(&b, " %s n=%d mean=%.2fms max=%.1fms;", kmsg.NameForKey(k), t.n, ms(t.total)/float64(t.n), ms(t.max))
	}
	return strings.TrimSuffix(b.String(), ";")
}
