package main

import (
	"context"
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"sync"
	"sync/atomic"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// The latency phase's paced producer writes Kafka record batches itself and
// sends them in raw produce requests, one per partition leader every tick.
// franz-go's producer, even with shared keys and values, cost 0.83 µs of
// CPU per record (0.42 µs this way, measured at 700,000 records/s): at half
// of onceflow's copy maximum that was a third of the host's two cores,
// taken from the system being measured.
//
// Every record of a batch carries the batch's timestamp, taken right before
// the request is sent. Keys go to the partitions franz-go's default
// partitioner picks for them, as in the loaded input.

// batchWriter encodes one partition's records into a magic-2 record batch:
// no compression, no producer id (not idempotent, not transactional), every
// timestamp delta zero.
type batchWriter struct {
	buf   []byte
	count int32
}

// batchHeaderLen is the size of a record batch's header, from the base
// offset to the record count.
const batchHeaderLen = 61

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

func (b *batchWriter) reset() {
	b.buf = append(b.buf[:0], make([]byte, batchHeaderLen)...)
	b.count = 0
}

// add appends a record with key and value.
func (b *batchWriter) add(key, value []byte) {
	delta := int64(b.count)
	size := 2 + varintLen(delta) + varintLen(int64(len(key))) + len(key) + varintLen(int64(len(value))) + len(value) + 1
	b.buf = binary.AppendVarint(b.buf, int64(size))
	b.buf = append(b.buf, 0, 0) // attributes, timestamp delta
	b.buf = binary.AppendVarint(b.buf, delta)
	b.buf = binary.AppendVarint(b.buf, int64(len(key)))
	b.buf = append(b.buf, key...)
	b.buf = binary.AppendVarint(b.buf, int64(len(value)))
	b.buf = append(b.buf, value...)
	b.buf = append(b.buf, 0) // no headers
	b.count++
}

// varintLen is the length of v as a zigzag varint.
func varintLen(v int64) int {
	u := uint64(v)<<1 ^ uint64(v>>63)
	n := 1
	for ; u >= 0x80; u >>= 7 {
		n++
	}
	return n
}

// finish fills in the header with timestamp ts (milliseconds) and returns
// the batch, valid until the next reset.
func (b *batchWriter) finish(ts int64) []byte {
	h := b.buf[:batchHeaderLen]
	binary.BigEndian.PutUint64(h[0:], 0)                     // base offset
	binary.BigEndian.PutUint32(h[8:], uint32(len(b.buf)-12)) // length after this field
	binary.BigEndian.PutUint32(h[12:], 0xffffffff)           // partition leader epoch: -1
	h[16] = 2                                                // magic
	binary.BigEndian.PutUint16(h[21:], 0)                    // attributes
	binary.BigEndian.PutUint32(h[23:], uint32(b.count-1))    // last offset delta
	binary.BigEndian.PutUint64(h[27:], uint64(ts))           // first timestamp
	binary.BigEndian.PutUint64(h[35:], uint64(ts))           // max timestamp
	binary.BigEndian.PutUint64(h[43:], 0xffffffffffffffff)   // producer id: -1
	binary.BigEndian.PutUint16(h[51:], 0xffff)               // producer epoch: -1
	binary.BigEndian.PutUint32(h[53:], 0xffffffff)           // base sequence: -1
	binary.BigEndian.PutUint32(h[57:], uint32(b.count))      // records
	binary.BigEndian.PutUint32(h[17:], crc32.Checksum(b.buf[21:], castagnoli))
	return b.buf
}

// pacedProduce produces rate records/s to topic for dur (records first,
// first+1, ... with the keys and values of the loaded input) and returns
// how many the broker acknowledged.
func pacedProduce(ctx context.Context, seeds []string, topic string, rate float64, dur time.Duration, first, keys, valueBytes int) (int, error) {
	cl, err := kgo.NewClient(kgo.SeedBrokers(seeds...))
	if err != nil {
		return 0, fmt.Errorf("paced producer: %w", err)
	}
	defer cl.Close()
	md, err := kadm.NewClient(cl).Metadata(ctx, topic)
	if err != nil {
		return 0, fmt.Errorf("paced producer: metadata of %s: %w", topic, err)
	}
	td, ok := md.Topics[topic]
	if !ok || td.Err != nil || len(td.Partitions) == 0 {
		return 0, fmt.Errorf("paced producer: metadata of %s: topic missing or failed (%v)", topic, td.Err)
	}
	nparts := len(td.Partitions)
	leaders := make([]int32, nparts)
	for p, pd := range td.Partitions {
		if pd.Err != nil || pd.Leader < 0 || int(p) >= nparts {
			return 0, fmt.Errorf("paced producer: %s partition %d: no leader (%v)", topic, p, pd.Err)
		}
		leaders[p] = pd.Leader
	}
	if nparts > maxPacedPartitions {
		return 0, fmt.Errorf("paced producer: %s has %d partitions, at most %d supported (--partitions)", topic, nparts, maxPacedPartitions)
	}
	vals := newValueSource(valueBytes)
	partOf := pacedPartitions(topic, keys, nparts)

	var (
		acked  atomic.Int64
		failed atomic.Pointer[error]
		wg     sync.WaitGroup
	)
	fail := func(err error) { failed.CompareAndSwap(nil, &err) }
	perRequest := requestRecords(valueBytes)
	free := newWriterStack(nparts)
	send := func(ws []*batchWriter) {
		defer free.put(ws)
		ts := time.Now().UnixMilli()
		reqs := map[int32]*kmsg.ProduceRequest{}
		counts := map[int32]int64{}
		for p, w := range ws {
			if w.count == 0 {
				continue
			}
			req := reqs[leaders[p]]
			if req == nil {
				req = kmsg.NewPtrProduceRequest()
				req.Acks, req.TimeoutMillis = -1, 30_000
				t := kmsg.NewProduceRequestTopic()
				t.Topic, t.TopicID = topic, td.ID
				req.Topics = append(req.Topics, t)
				reqs[leaders[p]] = req
			}
			rp := kmsg.NewProduceRequestTopicPartition()
			rp.Partition, rp.Records = int32(p), w.finish(ts)
			req.Topics[0].Partitions = append(req.Topics[0].Partitions, rp)
			counts[leaders[p]] += int64(w.count)
		}
		for leader, req := range reqs {
			resp, err := req.RequestWith(ctx, cl.Broker(int(leader)))
			if err != nil {
				fail(fmt.Errorf("produce to %s on broker %d: %w", topic, leader, err))
				return
			}
			for _, rt := range resp.Topics {
				for _, rp := range rt.Partitions {
					if err := kerr.ErrorForCode(rp.ErrorCode); err != nil {
						fail(fmt.Errorf("produce to %s partition %d: %w", topic, rp.Partition, err))
						return
					}
				}
			}
			acked.Add(counts[leader])
		}
	}

	start := time.Now()
	tick := time.NewTicker(pacedTick)
	defer tick.Stop()
	sent := 0
	var stop error // why the loop ended early
loop:
	for failed.Load() == nil {
		el := time.Since(start)
		if el >= dur {
			break
		}
		// A tick sends what fell due since the last, in requests of at
		// most perRequest records: after a stall (all requests in flight,
		// a pause of the process) a single batch could grow past the
		// broker's message size limit.
		for want := int(rate * el.Seconds()); sent < want; {
			ws, err := free.take(ctx)
			if err != nil {
				stop = err
				break loop
			}
			for _, w := range ws {
				w.reset()
			}
			var kb [16]byte
			for end := min(want, sent+perRequest); sent < end; sent++ {
				i := uint64(first + sent)
				j := keyIndex(i, keys)
				ws[partOf[j]].add(appendKey(kb[:0], j), vals.value(i))
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				send(ws)
			}()
		}
		select {
		case <-ctx.Done():
			stop = ctx.Err()
			break loop
		case <-tick.C:
		}
	}
	wg.Wait()
	if p := failed.Load(); stop == nil && p != nil {
		stop = *p
	}
	if stop != nil {
		return int(acked.Load()), fmt.Errorf("paced producer: %w", stop)
	}
	return int(acked.Load()), nil
}

// A paced request carries at most maxRequestRecords records, and at most
// maxRequestBytes of them encoded, so that no partition's batch nears the
// broker's default message.max.bytes (1 MiB) even if every record of the
// request went to one partition. Counting records alone let a request
// after a stall carry 4,096 records of 1 KB, about 1 MiB for each of four
// partitions, and the broker refused the largest with MESSAGE_TOO_LARGE.
const (
	maxRequestRecords = 4096
	maxRequestBytes   = 600 << 10
	// recordOverhead bounds a record's encoding beyond its value: the
	// key (7 bytes, up to 20 in a key space past a million), and the
	// length, attribute, delta and header fields (at most 12).
	recordOverhead = 32
)

// requestRecords is how many records of valueBytes a paced request may
// carry.
func requestRecords(valueBytes int) int {
	return max(1, min(maxRequestRecords, maxRequestBytes/(valueBytes+recordOverhead)))
}

// pacedTick is how often the paced producer sends what fell due: the
// default linger.ms of Kafka 4's Java producer (KIP-1030) and of
// librdkafka, so the input arrives in the batches a default producer at
// that rate would send. Each record is stamped when its request is sent,
// so the tick adds nothing to the latency measured. Every tick costs the
// suite a wake-up and the broker a produce request whatever the rate:
// `go run ./bench ingest` (the paced producer alone, nothing reading) kept
// 0.49-0.56 of the two cores busy at 60,000 records/s with a 2 ms tick and
// 0.30-0.36 with 5 ms; at 500,000 records/s, 0.67-0.76 and 0.50-0.61.
const pacedTick = 5 * time.Millisecond

// maxPacedPartitions bounds the partitions the paced producer writes to:
// it keeps each key's partition in a byte.
const maxPacedPartitions = 256

// pacedPartitions returns the partition of each key of the key space, as
// franz-go's default partitioner (which loaded the input) places it: a
// byte per key, so that the table (100 KB for 100,000 keys) mostly stays
// in the CPU's cache while the paced producer looks up a key at random
// for every record.
func pacedPartitions(topic string, keys, nparts int) []uint8 {
	part := kgo.StickyKeyPartitioner(nil).ForTopic(topic)
	partOf := make([]uint8, keys)
	var kb [16]byte
	for j := range keys {
		partOf[j] = uint8(part.Partition(&kgo.Record{Key: appendKey(kb[:0], j)}, nparts))
	}
	return partOf
}

// writerStack is the paced producer's free list of batch buffers, one
// batchWriter per partition in each set: at most writerSets requests are
// outstanding. The set answered last is taken first, while its memory is
// still in the CPU's cache; a queue handed out the set idle longest, and
// writing records into it cost a cache miss per line.
type writerStack struct {
	mu    sync.Mutex
	sets  [][]*batchWriter
	slots chan struct{} // one token per set in the stack
}

const writerSets = 64

func newWriterStack(nparts int) *writerStack {
	s := &writerStack{slots: make(chan struct{}, writerSets)}
	for range writerSets {
		ws := make([]*batchWriter, nparts)
		for p := range ws {
			ws[p] = &batchWriter{}
		}
		s.put(ws)
	}
	return s
}

// take returns the set put back last, waiting for one if all are in use.
func (s *writerStack) take(ctx context.Context) ([]*batchWriter, error) {
	select {
	case <-s.slots:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	ws := s.sets[len(s.sets)-1]
	s.sets = s.sets[:len(s.sets)-1]
	return ws, nil
}

// put returns a set to the stack.
func (s *writerStack) put(ws []*batchWriter) {
	s.mu.Lock()
	s.sets = append(s.sets, ws)
	s.mu.Unlock()
	s.slots <- struct{}{}
}
