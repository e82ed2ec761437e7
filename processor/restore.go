package processor

import (
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/onceflow/onceflow/state"
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
	// Elapsed is the time since the restore began. A worker restores all
	// its newly assigned store-partitions in one read, so this is the time
	// since that read began, for each of them.
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
		// Small fetches keep the pipeline short: franz-go fetches and
		// decodes the next one while the last one is applied. (16 MiB
		// per partition brought a whole store-partition of a million-key
		// benchmark in one or two fetches, applied after it arrived.)
		kgo.FetchMaxBytes(16 << 20),
		kgo.FetchMaxPartitionBytes(256 << 10),
	}, c.kgoOpts...)
	cl, err := kgo.NewClient(opts...)
	if err != nil {
		return nil, fmt.Errorf("processor: create changelog reader: %w", err)
	}
	return &changelogReader{cl: cl, adm: kadm.NewClient(cl)}, nil
}

func (r *changelogReader) close() { r.cl.Close() }

// restoreTarget is one changelog partition a restore reads into its
// store-partition's restorer: every committed record from offset from up
// to end, the partition's high watermark when the restore began; a
// tombstone (nil value) is a delete.
type restoreTarget struct {
	store     string // for reports only
	topic     string
	partition int32
	from      int64
	restorer  *state.Restorer // receives the records

	end     int64 // set by readAll
	last    int64 // offset of the last record read, from-1 if none
	records int64 // data records applied (markers not counted)
}

// restoreConcurrency is how many changelog partitions a restore reads at
// once. Each holds a restore batch of up to 4 MiB in memory; four keep the
// fetch pipeline full on the benchmark's four-partition store.
const restoreConcurrency = 4

// readAll feeds each target's restorer every committed record of its changelog
// partition from its offset from up to the partition's high watermark when
// readAll began. It reads up to restoreConcurrency targets at once, so one
// partition's records are applied while the next fetch is on its way and
// no partition waits for a fetch of its own to start. Reading read_committed
// up to the high watermark (not just the last stable offset) waits out a
// transaction still open on a changelog, such as the last one of the
// partition's previous owner, so no committed write is missed.
//
// progress is called for each target that advanced, after every fetch, and
// done once for each target that read anything, when it reached its end. An
// error from a restorer or from done stops the read.
func (r *changelogReader) readAll(ctx context.Context, targets []*restoreTarget,
	progress func(*restoreTarget), done func(*restoreTarget) error) error {
	var topics []string
	for _, t := range targets {
		if !slices.Contains(topics, t.topic) {
			topics = append(topics, t.topic)
		}
	}
	ends, err := r.adm.ListEndOffsets(ctx, topics...)
	if err == nil {
		err = ends.Error()
	}
	if err != nil {
		return fmt.Errorf("processor: end offsets of changelogs %q: %w", topics, err)
	}
	var queue []*restoreTarget
	for _, t := range targets {
		end, ok := ends.Lookup(t.topic, t.partition)
		if !ok {
			return fmt.Errorf("processor: changelog %q has no partition %d", t.topic, t.partition)
		}
		t.end, t.last = end.Offset, t.from-1
		if t.end > t.from {
			queue = append(queue, t)
		}
	}
	type tp struct {
		topic     string
		partition int32
	}
	active := map[tp]*restoreTarget{}
	start := func() {
		add := map[string]map[int32]kgo.Offset{}
		for len(active) < restoreConcurrency && len(queue) > 0 {
			t := queue[0]
			queue = queue[1:]
			active[tp{t.topic, t.partition}] = t
			if add[t.topic] == nil {
				add[t.topic] = map[int32]kgo.Offset{}
			}
			add[t.topic][t.partition] = kgo.NewOffset().At(t.from)
		}
		if len(add) > 0 {
			r.cl.AddConsumePartitions(add)
		}
	}
	defer func() {
		rm := map[string][]int32{}
		for k := range active {
			rm[k.topic] = append(rm[k.topic], k.partition)
		}
		if len(rm) > 0 {
			r.cl.RemoveConsumePartitions(rm)
		}
	}()
	start()
	var advanced []*restoreTarget
	for len(active) > 0 {
		fs := r.cl.PollFetches(ctx)
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("processor: restore stopped with %d changelog partitions in progress and %d waiting: %w",
				len(active), len(queue), err)
		}
		var ferr error
		fs.EachError(func(t string, p int32, err error) {
			if ferr == nil {
				ferr = fmt.Errorf("processor: read changelog %q partition %d: %w", t, p, err)
			}
		})
		if ferr != nil {
			return ferr
		}
		advanced = advanced[:0]
		var aerr error
		fs.EachPartition(func(p kgo.FetchTopicPartition) {
			t := active[tp{p.Topic, p.Partition}]
			if aerr != nil || t == nil || len(p.Records) == 0 {
				return
			}
			before := t.last
			for _, rec := range p.Records {
				// A fetch may hold records of an earlier read of the same
				// partition (a task that left and came back).
				if rec.Offset <= t.last {
					continue
				}
				t.last = rec.Offset
				if rec.Attrs.IsControl() {
					continue
				}
				t.records++
				var err error
				if rec.Value == nil {
					err = t.restorer.Delete(rec.Key)
				} else {
					err = t.restorer.Put(rec.Key, rec.Value)
				}
				if err != nil {
					aerr = fmt.Errorf("processor: apply changelog %q partition %d offset %d: %w", t.topic, t.partition, rec.Offset, err)
					return
				}
			}
			if t.last != before {
				advanced = append(advanced, t)
			}
		})
		if aerr != nil {
			return aerr
		}
		finished := map[string][]int32{}
		for _, t := range advanced {
			if progress != nil {
				progress(t)
			}
			if t.last+1 >= t.end {
				delete(active, tp{t.topic, t.partition})
				finished[t.topic] = append(finished[t.topic], t.partition)
				if err := done(t); err != nil {
					r.cl.RemoveConsumePartitions(finished)
					return err
				}
			}
		}
		if len(finished) > 0 {
			r.cl.RemoveConsumePartitions(finished)
			start()
		}
	}
	return nil
}
