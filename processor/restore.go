package processor

import (
	"context"
	"fmt"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
)

// RestoreProgress reports a store partition's restore from its changelog;
// see OnRestore.
type RestoreProgress struct {
	Store     string
	Partition int32
	// From is the first changelog offset read (the applied checkpoint + 1,
	// or 0 for a full restore); To is the changelog's end when the restore
	// began.
	From, To int64
	// Records counts the changelog records applied so far.
	Records int64
	// Elapsed is the time since the restore began.
	Elapsed time.Duration
	// Done is true in the last report of a restore.
	Done bool
}

// Rate returns the records applied per second so far.
func (r RestoreProgress) Rate() float64 {
	if r.Elapsed <= 0 {
		return 0
	}
	return float64(r.Records) / r.Elapsed.Seconds()
}

// changelogReader reads changelog partitions for restores; one per worker,
// created on first use.
type changelogReader struct {
	cl  *kgo.Client
	adm *kadm.Client
}

func newChangelogReader(c *cfg) (*changelogReader, error) {
	opts := append([]kgo.Opt{
		kgo.SeedBrokers(c.brokers...),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()),
		// Transaction markers tell the reader it passed the end even when
		// the tail of the log is an aborted transaction.
		kgo.KeepControlRecords(),
		kgo.FetchMaxBytes(64 << 20),
		kgo.FetchMaxPartitionBytes(16 << 20),
	}, c.kgoOpts...)
	cl, err := kgo.NewClient(opts...)
	if err != nil {
		return nil, fmt.Errorf("processor: create changelog reader: %w", err)
	}
	return &changelogReader{cl: cl, adm: kadm.NewClient(cl)}, nil
}

func (r *changelogReader) close() { r.cl.Close() }

// read feeds apply every committed record of topic/partition from offset
// from up to the partition's high watermark at the start. Reading
// read_committed up to the high watermark (not just the last stable
// offset) waits out a transaction still open on the changelog, such as the
// last one of the partition's previous owner, so no committed write is
// missed. It returns the offset of the last record read (from-1 if none).
func (r *changelogReader) read(ctx context.Context, topic string, partition int32, from int64,
	apply func(*kgo.Record) error, progress func(records, end int64)) (last int64, err error) {
	ends, err := r.adm.ListEndOffsets(ctx, topic)
	if err == nil {
		err = ends.Error()
	}
	if err != nil {
		return 0, fmt.Errorf("processor: end offset of changelog %q: %w", topic, err)
	}
	end, ok := ends.Lookup(topic, partition)
	if !ok {
		return 0, fmt.Errorf("processor: changelog %q has no partition %d", topic, partition)
	}
	last = from - 1
	if end.Offset <= from {
		return last, nil
	}
	r.cl.AddConsumePartitions(map[string]map[int32]kgo.Offset{topic: {partition: kgo.NewOffset().At(from)}})
	defer r.cl.RemoveConsumePartitions(map[string][]int32{topic: {partition}})
	var records int64
	for last+1 < end.Offset {
		fs := r.cl.PollFetches(ctx)
		if err := ctx.Err(); err != nil {
			return last, fmt.Errorf("processor: restore from %q partition %d stopped at offset %d of %d: %w", topic, partition, last, end.Offset, err)
		}
		var ferr error
		fs.EachError(func(t string, p int32, err error) {
			if ferr == nil {
				ferr = fmt.Errorf("processor: read changelog %q partition %d: %w", t, p, err)
			}
		})
		if ferr != nil {
			return last, ferr
		}
		var aerr error
		fs.EachRecord(func(rec *kgo.Record) {
			if aerr != nil || rec.Topic != topic || rec.Partition != partition || rec.Offset <= last {
				return
			}
			last = rec.Offset
			if rec.Attrs.IsControl() {
				return
			}
			records++
			if err := apply(rec); err != nil {
				aerr = fmt.Errorf("processor: apply changelog %q partition %d offset %d: %w", topic, partition, rec.Offset, err)
			}
		})
		if aerr != nil {
			return last, aerr
		}
		if progress != nil {
			progress(records, end.Offset)
		}
	}
	return last, nil
}
