package topology_test

import (
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/onceflow/onceflow/topology"
)

// ticker schedules a punctuator in Init that forwards a record stamped with
// the punctuation time.
func ticker(kind topology.PunctuationType, interval time.Duration, cancel *func()) func() topology.Processor[string, string, string, string] {
	return func() topology.Processor[string, string, string, string] {
		return &tickProc{kind: kind, interval: interval, cancel: cancel}
	}
}

type tickProc struct {
	kind     topology.PunctuationType
	interval time.Duration
	cancel   *func()
}

func (p *tickProc) Init(ctx topology.Context[string, string]) error {
	cancel, err := ctx.Schedule(p.interval, p.kind, func(ts time.Time) error {
		return ctx.Forward(topology.Record[string, string]{Key: "tick", Value: ctx.StreamTime().Format("15:04:05"), Timestamp: ts})
	})
	if p.cancel != nil {
		*p.cancel = cancel
	}
	return err
}

func (p *tickProc) Process(topology.Context[string, string], topology.Record[string, string]) error {
	return nil
}

func (p *tickProc) Close() error { return nil }

func TestStreamTimePunctuator(t *testing.T) {
	b := topology.NewBuilder()
	topology.AddSource(b, "src", str, str, "in")
	topology.AddProcessor(b, "tick", ticker(topology.StreamTime, 10*time.Second, nil), "src")
	topology.AddSink(b, "sink", "out", str, str, "tick")
	task, env := start(t, b)

	// Stream time: 0 (anchor), 5, 9, 10 (fires), 3 (late: stream time stays
	// at 10), 35 (fires once for 20 and 30), 39, 40 (fires).
	for i, sec := range []int{0, 5, 9, 10, 3, 35, 39, 40} {
		if err := task.Process(raw("in", int64(i), "k", "v", t0.Add(time.Duration(sec)*time.Second))); err != nil {
			t.Fatal(err)
		}
	}
	want := []string{"out[-1] tick=00:00:10 @1704067210", "out[-1] tick=00:00:35 @1704067235", "out[-1] tick=00:00:40 @1704067240"}
	if got := env.sentStrings(); !slices.Equal(got, want) {
		t.Errorf("sent = %q\nwant %q", got, want)
	}
	if err := task.Punctuate(t0.Add(time.Hour)); err != nil || len(env.sent) != 3 {
		t.Errorf("Punctuate ran a stream-time punctuator: %v, %d records", err, len(env.sent))
	}
}

func TestWallClockPunctuator(t *testing.T) {
	var cancel func()
	b := topology.NewBuilder()
	topology.AddSource(b, "src", str, str, "in")
	topology.AddProcessor(b, "tick", ticker(topology.WallClockTime, time.Minute, &cancel), "src")
	topology.AddSink(b, "sink", "out", str, str, "tick")
	task, env := start(t, b)

	w0 := t0.Add(24 * time.Hour)
	if err := task.Process(raw("in", 0, "k", "v", t0.Add(time.Hour))); err != nil {
		t.Fatal(err)
	}
	for _, d := range []time.Duration{0, 59 * time.Second, time.Minute, 61 * time.Second, 2 * time.Minute} {
		if err := task.Punctuate(w0.Add(d)); err != nil {
			t.Fatal(err)
		}
	}
	want := []string{"out[-1] tick=01:00:00 @1704153660", "out[-1] tick=01:00:00 @1704153720"}
	if got := env.sentStrings(); !slices.Equal(got, want) {
		t.Errorf("sent = %q\nwant %q", got, want)
	}
	cancel()
	cancel()
	if err := task.Punctuate(w0.Add(10 * time.Minute)); err != nil || len(env.sent) != 2 {
		t.Errorf("cancelled punctuator ran: %v, %d records", err, len(env.sent))
	}
}

func TestPunctuatorErrors(t *testing.T) {
	b := topology.NewBuilder()
	topology.AddSource(b, "src", str, str, "in")
	topology.AddProcessor(b, "p", func() topology.Processor[string, string, string, string] {
		return &schedProc{}
	}, "src")
	task, _ := start(t, b)
	if err := task.Punctuate(t0); err != nil {
		t.Fatal(err)
	}
	err := task.Punctuate(t0.Add(time.Second))
	want := `punctuate node "p" (WallClockTime at 2024-01-01T00:00:01Z): panic: tick failed`
	var pe *topology.PunctuateError
	if !errors.As(err, &pe) || err.Error() != want || !pe.Panicked {
		t.Errorf("Punctuate() = %v (%T)\nwant panicked PunctuateError %s", err, err, want)
	}
	if _, _, _, ok := topology.Origin(err); ok {
		t.Errorf("Origin() ok for a punctuation error")
	}
}

type schedProc struct{}

func (schedProc) Init(ctx topology.Context[string, string]) error {
	if _, err := ctx.Schedule(0, topology.WallClockTime, func(time.Time) error { return nil }); err == nil ||
		err.Error() != `topology: processor "p": punctuation interval must be positive, got 0s` {
		return fmt.Errorf("Schedule(0) error = %v", err)
	}
	_, err := ctx.Schedule(time.Second, topology.WallClockTime, func(time.Time) error { panic("tick failed") })
	return err
}
func (schedProc) Process(topology.Context[string, string], topology.Record[string, string]) error {
	return nil
}
func (schedProc) Close() error { return nil }
