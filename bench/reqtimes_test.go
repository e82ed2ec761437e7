package main

import (
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

func TestRequestTimesSummary(t *testing.T) {
	var rt requestTimes
	e2e := func(d time.Duration) kgo.BrokerE2E { return kgo.BrokerE2E{TimeToWrite: d} }
	rt.OnBrokerE2E(kgo.BrokerMetadata{}, int16(kmsg.EndTxn), e2e(time.Millisecond))
	rt.OnBrokerE2E(kgo.BrokerMetadata{}, int16(kmsg.Produce), e2e(2*time.Millisecond))
	rt.OnBrokerE2E(kgo.BrokerMetadata{}, int16(kmsg.Produce), e2e(4*time.Millisecond))
	want := " Produce n=2 mean=3.00ms max=4.0ms; EndTxn n=1 mean=1.00ms max=1.0ms"
	if got := rt.summary(); got != want {
		t.Fatalf("summary %q, want %q", got, want)
	}
}
