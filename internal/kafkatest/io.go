package kafkatest

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
)

// Produce writes n records to topic, made by gen (record i), and waits until
// all are acknowledged. Records go to the partition gen sets when it sets
// one with a non-negative Partition and the client uses a manual
// partitioner; otherwise they are spread by key hash.
func Produce(t testing.TB, seeds []string, topic string, n int, gen func(i int) *kgo.Record) {
	t.Helper()
	cl := Client(t, seeds, kgo.DefaultProduceTopic(topic), kgo.RecordPartitioner(kgo.ManualPartitioner()))
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	if err := ProduceWith(ctx, cl, topic, n, gen); err != nil {
		t.Fatal(err)
	}
}

// ProduceWith produces n records from gen through cl (which must use a
// manual partitioner, see Produce) and waits for all acknowledgements. The
// first produce error is returned.
func ProduceWith(ctx context.Context, cl *kgo.Client, topic string, n int, gen func(i int) *kgo.Record) error {
	errc := make(chan error, 1)
	for i := range n {
		r := gen(i)
		r.Topic = topic
		cl.Produce(ctx, r, func(r *kgo.Record, err error) {
			if err != nil {
				select {
				case errc <- fmt.Errorf("produce to %s[%d]: %w", r.Topic, r.Partition, err):
				default:
				}
			}
		})
	}
	if err := cl.Flush(ctx); err != nil {
		return fmt.Errorf("flush: %w", err)
	}
	select {
	case err := <-errc:
		return err
	default:
		return nil
	}
}

// Isolation selects what a reader sees of transactional records.
type Isolation int

const (
	// ReadCommitted sees only committed records, up to the last stable
	// offset.
	ReadCommitted Isolation = iota
	// ReadUncommitted sees every record up to the high watermark, aborted
	// ones included.
	ReadUncommitted
)

// ReadAll reads topic from its start to its current end (the last stable
// offset for ReadCommitted, the high watermark for ReadUncommitted) and
// returns the data records in per-partition offset order, partitions in
// ascending order. Control records (transaction markers) are not returned.
func ReadAll(t testing.TB, seeds []string, topic string, iso Isolation) []*kgo.Record {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	recs, err := ReadToEnd(ctx, seeds, topic, iso)
	if err != nil {
		t.Fatal(err)
	}
	return recs
}

// ReadToEnd is ReadAll for code without a testing.TB.
func ReadToEnd(ctx context.Context, seeds []string, topic string, iso Isolation) ([]*kgo.Record, error) {
	level := kgo.ReadCommitted()
	if iso == ReadUncommitted {
		level = kgo.ReadUncommitted()
	}
	cl, err := kgo.NewClient(
		kgo.SeedBrokers(seeds...),
		kgo.ConsumeTopics(topic),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		kgo.FetchIsolationLevel(level),
		kgo.KeepControlRecords(), // markers tell us we reached the end
	)
	if err != nil {
		return nil, fmt.Errorf("create reader: %w", err)
	}
	defer cl.Close()
	adm := kadm.NewClient(cl)
	var ends kadm.ListedOffsets
	if iso == ReadCommitted {
		ends, err = adm.ListCommittedOffsets(ctx, topic)
	} else {
		ends, err = adm.ListEndOffsets(ctx, topic)
	}
	if err == nil {
		err = ends.Error()
	}
	if err != nil {
		return nil, fmt.Errorf("list end offsets of %q: %w", topic, err)
	}
	byPart := map[int32][]*kgo.Record{}
	remaining := map[int32]int64{}
	var nparts int32
	ends.Each(func(o kadm.ListedOffset) {
		nparts = max(nparts, o.Partition+1)
		if o.Offset > 0 {
			remaining[o.Partition] = o.Offset
		}
	})
	for len(remaining) > 0 {
		fs := cl.PollFetches(ctx)
		if err := ctx.Err(); err != nil {
			return nil, fmt.Errorf("read %q: %d partitions not at their end offsets %v: %w", topic, len(remaining), remaining, err)
		}
		var ferr error
		fs.EachError(func(tp string, p int32, err error) {
			ferr = fmt.Errorf("fetch %s[%d]: %w", tp, p, err)
		})
		if ferr != nil {
			return nil, ferr
		}
		fs.EachRecord(func(r *kgo.Record) {
			end, open := remaining[r.Partition]
			if !open {
				return
			}
			if !r.Attrs.IsControl() && r.Offset < end {
				byPart[r.Partition] = append(byPart[r.Partition], r)
			}
			if r.Offset+1 >= end {
				delete(remaining, r.Partition)
			}
		})
	}
	var out []*kgo.Record
	for p := range nparts {
		out = append(out, byPart[p]...)
	}
	return out, nil
}
