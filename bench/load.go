package main

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
)

// keyOf returns the key of input record i: "w%06d" of a number spread
// uniformly (a fixed 64-bit mix of i) over [0, keys).
func keyOf(i uint64, keys int) []byte {
	return appendKey(make([]byte, 0, 8), keyIndex(i, keys))
}

// spread is a fixed 64-bit mix of i.
func spread(i uint64) uint64 {
	x := i + 0x9e3779b97f4a7c15
	x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9
	x = (x ^ (x >> 27)) * 0x94d049bb133111eb
	return x ^ (x >> 31)
}

// keyIndex is the number of keyOf(i, keys) in the key space:
// keyOf(i, keys) is appendKey(nil, keyIndex(i, keys)).
func keyIndex(i uint64, keys int) int { return int(spread(i) % uint64(keys)) }

// appendKey appends key number j, "w%06d" of j, to dst. The paced
// producer formats every record's key with it: a table of the formatted
// keys (100,000 keys take 700 KB, and their offsets 400 KB more) cost a
// cache miss or two per record, about 0.1 µs at 500,000 records/s.
func appendKey(dst []byte, j int) []byte {
	if j < 0 || j >= 1_000_000 {
		return strconv.AppendInt(append(dst, 'w'), int64(j), 10)
	}
	var d [7]byte
	d[0] = 'w'
	for k := 6; k > 0; k-- {
		d[k] = byte('0' + j%10)
		j /= 10
	}
	return append(dst, d[:]...)
}

// valueSource hands out deterministic values of one size: value i is a
// window of a fixed pattern starting at i%26. Values share memory and must
// not be modified.
type valueSource struct {
	size    int
	pattern []byte
}

func newValueSource(size int) *valueSource {
	p := make([]byte, size+26)
	for j := range p {
		p[j] = 'a' + byte(j%26)
	}
	return &valueSource{size: size, pattern: p}
}

func (v *valueSource) value(i uint64) []byte {
	o := int(i % 26)
	return v.pattern[o : o+v.size : o+v.size]
}

// admin wraps the admin client the suite uses for topics and groups.
type admin struct {
	cl  *kgo.Client
	adm *kadm.Client
}

func newAdmin(seeds []string) (*admin, error) {
	cl, err := kgo.NewClient(kgo.SeedBrokers(seeds...))
	if err != nil {
		return nil, fmt.Errorf("admin client: %w", err)
	}
	return &admin{cl: cl, adm: kadm.NewClient(cl)}, nil
}

func (a *admin) close() { a.cl.Close() }

// createTopics creates each topic with the given partitions and the
// broker's default replication factor.
func (a *admin) createTopics(ctx context.Context, partitions int32, topics ...string) error {
	resp, err := a.adm.CreateTopics(ctx, partitions, -1, nil, topics...)
	if err != nil {
		return fmt.Errorf("create topics %v: %w", topics, err)
	}
	for _, r := range resp.Sorted() {
		if r.Err != nil {
			return fmt.Errorf("create topic %s: %w", r.Topic, r.Err)
		}
	}
	return nil
}

// cleanup deletes the given topics, every topic whose name starts with
// prefix (internal topics such as changelogs), and the consumer group
// group, if any. Missing ones are not errors.
func (a *admin) cleanup(ctx context.Context, prefix, group string, topics ...string) error {
	var errs []error
	if prefix != "" {
		listed, err := a.adm.ListTopics(ctx)
		if err != nil {
			errs = append(errs, fmt.Errorf("list topics: %w", err))
		}
		for _, t := range listed.Names() {
			if strings.HasPrefix(t, prefix) {
				topics = append(topics, t)
			}
		}
	}
	if len(topics) > 0 {
		resp, err := a.adm.DeleteTopics(ctx, topics...)
		if err != nil {
			errs = append(errs, fmt.Errorf("delete topics: %w", err))
		}
		for _, r := range resp.Sorted() {
			if r.Err != nil && !isUnknownTopic(r.Err) {
				errs = append(errs, fmt.Errorf("delete topic %s: %w", r.Topic, r.Err))
			}
		}
	}
	if group != "" {
		// A group that never existed (the raw pipe) or is still emptying is
		// not worth failing the run over.
		_, _ = a.adm.DeleteGroups(ctx, group)
	}
	return errors.Join(errs...)
}

// cleanupSoon is cleanup with a context of its own, for a deferred
// cleanup that must run even when the command's context was cancelled.
func (a *admin) cleanupSoon(prefix, group string, topics ...string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	return a.cleanup(ctx, prefix, group, topics...)
}

// deleteDelayNote returns a note when the broker removes a deleted topic's
// files more than a second after the deletion (log.segment.delete.delay.ms,
// 60 s by default): the suite deletes each run's topics, and their files,
// gigabytes of them, would then go in the middle of a later run's
// measurement. The local broker sets 0. Empty when the delay is short or
// cannot be read.
func (a *admin) deleteDelayNote(ctx context.Context) string {
	const key = "log.segment.delete.delay.ms"
	brokers, err := a.adm.ListBrokers(ctx)
	if err != nil {
		return ""
	}
	rcs, err := a.adm.DescribeBrokerConfigs(ctx, brokers.NodeIDs()...)
	if err != nil {
		return ""
	}
	for _, rc := range rcs {
		for _, c := range rc.Configs {
			if c.Key != key || c.Value == nil {
				continue
			}
			if ms, err := strconv.ParseInt(*c.Value, 10, 64); err == nil && ms > 1000 {
				return fmt.Sprintf("note: broker %s removes a deleted topic's files %s=%d ms after the deletion, during a later configuration's measurement; set it to 0 on a broker used for benchmarks", rc.Name, key, ms)
			}
		}
	}
	return ""
}

func isUnknownTopic(err error) bool {
	return err != nil && strings.Contains(err.Error(), "UNKNOWN_TOPIC_OR_PARTITION")
}

// loadInput writes n records to topic as fast as the broker takes them:
// keys keyOf(i), values of valueBytes, keyed partitioning (Kafka's murmur2,
// as the Java client does), no compression. progress is called now and
// then with the number of records acknowledged.
func loadInput(ctx context.Context, seeds []string, topic string, n, keys, valueBytes int, progress func(done int64)) error {
	return loadInputKeys(ctx, seeds, topic, n, valueBytes, func(i uint64) []byte { return keyOf(i, keys) }, progress)
}

// distinctKey is a key function giving every record its own key.
func distinctKey(i uint64) []byte { return fmt.Appendf(make([]byte, 0, 8), "w%07d", i) }

// loadInputKeys is loadInput with record i keyed key(i).
func loadInputKeys(ctx context.Context, seeds []string, topic string, n, valueBytes int, key func(i uint64) []byte, progress func(done int64)) error {
	cl, err := kgo.NewClient(
		kgo.SeedBrokers(seeds...),
		kgo.DefaultProduceTopic(topic),
		kgo.ProducerBatchCompression(kgo.NoCompression()),
		kgo.ProducerLinger(5*time.Millisecond),
		kgo.MaxBufferedRecords(100_000),
	)
	if err != nil {
		return fmt.Errorf("load: client: %w", err)
	}
	defer cl.Close()
	vals := newValueSource(valueBytes)
	ts := time.Now()
	var acked atomic.Int64
	var failed atomic.Pointer[error]
	stop := make(chan struct{})
	defer close(stop)
	go func() {
		t := time.NewTicker(time.Second)
		defer t.Stop()
		for {
			select {
			case <-stop:
				return
			case <-t.C:
				progress(acked.Load())
			}
		}
	}()
	for i := range n {
		if p := failed.Load(); p != nil {
			return fmt.Errorf("load %s: %w", topic, *p)
		}
		r := &kgo.Record{Key: key(uint64(i)), Value: vals.value(uint64(i)), Timestamp: ts}
		cl.Produce(ctx, r, func(_ *kgo.Record, err error) {
			if err != nil {
				failed.CompareAndSwap(nil, &err)
				return
			}
			acked.Add(1)
		})
	}
	if err := cl.Flush(ctx); err != nil {
		return fmt.Errorf("load %s: flush: %w", topic, err)
	}
	if p := failed.Load(); p != nil {
		return fmt.Errorf("load %s: %w", topic, *p)
	}
	progress(acked.Load())
	return nil
}
