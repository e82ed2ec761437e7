package processor_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/onceflow/onceflow/internal/kafkatest"
	"github.com/onceflow/onceflow/processor"
	"github.com/onceflow/onceflow/topology"
)

// copyTopology reads in, upper-cases each value (failing on values that
// start with "fail"), and writes to out, keeping the key.
func copyTopology(t *testing.T, in, out string) *topology.Topology {
	t.Helper()
	b := topology.NewBuilder()
	topology.AddSource(b, "in", topology.StringSerde(), topology.StringSerde(), in)
	topology.AddProcessor(b, "upper", func() topology.Processor[string, string, string, string] {
		return topology.ProcessFunc(func(ctx topology.Context[string, string], r topology.Record[string, string]) error {
			if strings.HasPrefix(r.Value, "fail") {
				return fmt.Errorf("refusing value %q", r.Value)
			}
			r.Value = strings.ToUpper(r.Value)
			return ctx.Forward(r)
		})
	}, "in")
	topology.AddSink(b, "out", out, topology.StringSerde(), topology.StringSerde(), "upper")
	topo, err := b.Build()
	if err != nil {
		t.Fatal(err)
	}
	return topo
}

// running is a Processor running in a goroutine.
type running struct {
	p      *processor.Processor
	cancel context.CancelFunc
	done   chan error
}

// start runs a processor for topo until the test ends or stop is called.
func start(t *testing.T, topo *topology.Topology, opts ...processor.Opt) *running {
	t.Helper()
	p, err := processor.New(topo, opts...)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	r := &running{p: p, cancel: cancel, done: make(chan error, 1)}
	go func() { r.done <- p.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		<-r.done
	})
	return r
}

// stop cancels the processor and returns Run's result.
func (r *running) stop(t *testing.T) error {
	t.Helper()
	r.cancel()
	select {
	case err := <-r.done:
		r.done <- err // for the cleanup
		return err
	case <-time.After(60 * time.Second):
		t.Fatal("processor did not stop within 60s of cancel")
		return nil
	}
}

// wait returns Run's result once it returns by itself.
func (r *running) wait(t *testing.T, within time.Duration) error {
	t.Helper()
	select {
	case err := <-r.done:
		r.done <- err
		return err
	case <-time.After(within):
		t.Fatalf("processor still running after %v", within)
		return nil
	}
}

// baseOpts are the options every test processor uses.
// ONCEFLOW_TEST_LOG=debug (or info) sends their logs to stderr.
func baseOpts(seeds []string, app, instance string) []processor.Opt {
	opts := []processor.Opt{
		processor.Brokers(seeds...),
		processor.ApplicationID(app),
		processor.InstanceID(instance),
		processor.SessionTimeout(6 * time.Second),
	}
	if lv := os.Getenv("ONCEFLOW_TEST_LOG"); lv != "" {
		var level slog.Level
		if err := level.UnmarshalText([]byte(lv)); err == nil {
			opts = append(opts, processor.Logger(slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))))
		}
	}
	return opts
}

// committedTotal returns the sum of group's committed offsets on topic.
func committedTotal(ctx context.Context, adm *kadm.Client, group, topic string) (int64, error) {
	offs, err := adm.FetchOffsets(ctx, group)
	if err != nil {
		return 0, err
	}
	var total int64
	offs.Each(func(o kadm.OffsetResponse) {
		if o.Topic == topic && o.Err == nil && o.At > 0 {
			total += o.At
		}
	})
	return total, nil
}

// pollAdmin calls check every 20 ms with an admin client until it reports
// done, failing the test after within with what the last check saw.
func pollAdmin(t *testing.T, seeds []string, within time.Duration, what string, check func(ctx context.Context, adm *kadm.Client) (done bool, seen string)) {
	t.Helper()
	adm := kadm.NewClient(kafkatest.Client(t, seeds))
	ctx, cancel := context.WithTimeout(context.Background(), within)
	defer cancel()
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	last := "nothing yet"
	for {
		done, seen := check(ctx, adm)
		if done {
			return
		}
		if seen != "" {
			last = seen
		}
		select {
		case <-ctx.Done():
			t.Fatalf("%s: not within %v; last seen: %s", what, within, last)
		case <-tick.C:
		}
	}
}

// waitCommitted polls until group has committed at least want offsets in
// total on topic (the sum over partitions of the next offset to consume).
func waitCommitted(t *testing.T, seeds []string, group, topic string, want int64, within time.Duration) {
	t.Helper()
	what := fmt.Sprintf("group %q committing %d offsets on %q", group, want, topic)
	pollAdmin(t, seeds, within, what, func(ctx context.Context, adm *kadm.Client) (bool, string) {
		got, err := committedTotal(ctx, adm, group, topic)
		if err != nil {
			return false, ""
		}
		return got >= want, fmt.Sprintf("%d committed", got)
	})
}

// waitStable polls until no transaction is in progress on any partition
// of topic (its last stable offset is its end offset): the markers of
// transactions that committed are written a little after the commit, so a
// read_committed read right after it may stop short.
func waitStable(t *testing.T, seeds []string, topic string, within time.Duration) {
	t.Helper()
	pollAdmin(t, seeds, within, fmt.Sprintf("no open transaction on %q", topic), func(ctx context.Context, adm *kadm.Client) (bool, string) {
		stable, err := adm.ListCommittedOffsets(ctx, topic)
		if err == nil {
			err = stable.Error()
		}
		ends, err2 := adm.ListEndOffsets(ctx, topic)
		if err == nil && err2 == nil {
			err = ends.Error()
		}
		if err != nil || err2 != nil {
			return false, ""
		}
		done := true
		ends.Each(func(o kadm.ListedOffset) {
			if s, ok := stable.Lookup(topic, o.Partition); !ok || s.Offset != o.Offset {
				done = false
			}
		})
		return done, fmt.Sprintf("stable %v, end %v", stable, ends)
	})
}

// readCommitted reads topic read_committed from the start to the end,
// once no transaction is open on it (see waitStable).
func readCommitted(t *testing.T, seeds []string, topic string) []*kgo.Record {
	t.Helper()
	waitStable(t, seeds, topic, 60*time.Second)
	return kafkatest.ReadAll(t, seeds, topic, kafkatest.ReadCommitted)
}

// checkExactlyOnce asserts that out (read read_committed) holds the
// upper-cased value of every input value exactly once, and returns the
// count.
func checkExactlyOnce(t *testing.T, seeds []string, out string, values []string) {
	t.Helper()
	got := readCommitted(t, seeds, out)
	counts := map[string]int{}
	for _, r := range got {
		counts[string(r.Value)]++
	}
	var missing, dup int
	for _, v := range values {
		switch c := counts[strings.ToUpper(v)]; {
		case c == 0:
			missing++
		case c > 1:
			dup += c - 1
		}
	}
	if missing > 0 || dup > 0 || len(got) != len(values) {
		t.Fatalf("output %q: %d records for %d inputs: %d missing, %d duplicated", out, len(got), len(values), missing, dup)
	}
}

func isFenced(err error) bool { return errors.Is(err, processor.ErrFenced) }

// waitAssigned polls until group is stable with exactly members members,
// each assigned at least one partition.
func waitAssigned(t *testing.T, seeds []string, group string, members int, within time.Duration) {
	t.Helper()
	what := fmt.Sprintf("group %q stable with %d members holding partitions", group, members)
	pollAdmin(t, seeds, within, what, func(ctx context.Context, adm *kadm.Client) (bool, string) {
		gs, err := adm.DescribeGroups(ctx, group)
		if err != nil {
			return false, ""
		}
		g := gs[group]
		assigned := 0
		for _, m := range g.Members {
			if c, ok := m.Assigned.AsConsumer(); ok && len(c.Topics) > 0 {
				assigned++
			}
		}
		done := g.Err == nil && g.State == "Stable" && len(g.Members) == members && assigned == members
		return done, fmt.Sprintf("state %s, %d members, %d with partitions", g.State, len(g.Members), assigned)
	})
}
