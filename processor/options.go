package processor

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/onceflow/onceflow/state"
)

// Guarantee selects the delivery guarantee, like Kafka Streams'
// processing.guarantee.
type Guarantee int

const (
	// ExactlyOnce commits outputs, store changelog writes and consumed
	// offsets in one Kafka transaction (Kafka Streams' exactly_once_v2).
	// read_committed readers see each input record's effects exactly once.
	ExactlyOnce Guarantee = iota
	// AtLeastOnce commits offsets only after every output of the batch is
	// acknowledged; a crash repeats the work since the last commit.
	AtLeastOnce
	// AtMostOnce commits offsets before the batch is processed; a crash
	// loses the work of the uncommitted batch and never repeats it.
	AtMostOnce
)

// String returns the guarantee's name as Kafka Streams spells it.
func (g Guarantee) String() string {
	switch g {
	case ExactlyOnce:
		return "exactly_once_v2"
	case AtLeastOnce:
		return "at_least_once"
	case AtMostOnce:
		return "at_most_once"
	}
	return fmt.Sprintf("Guarantee(%d)", int(g))
}

// ParseGuarantee accepts exactly-once, at-least-once and at-most-once (with
// dashes or underscores; exactly_once_v2 too).
func ParseGuarantee(s string) (Guarantee, error) {
	switch strings.ReplaceAll(strings.ToLower(strings.TrimSpace(s)), "-", "_") {
	case "exactly_once", "exactly_once_v2", "eos":
		return ExactlyOnce, nil
	case "at_least_once", "alo":
		return AtLeastOnce, nil
	case "at_most_once", "amo":
		return AtMostOnce, nil
	}
	return 0, fmt.Errorf("processor: unknown guarantee %q (want exactly-once, at-least-once or at-most-once)", s)
}

// ErrorPolicy says what happens to a record whose deserialization or
// processing fails (a user panic counts as a failure).
type ErrorPolicy int

const (
	// Fail stops Run with an error naming the record's topic, partition and
	// offset. Under ExactlyOnce and AtLeastOnce nothing from the bad record
	// on is committed, so a restart meets the same record again.
	Fail ErrorPolicy = iota
	// Skip logs the failure, counts it (Stats.Skipped) and goes on.
	Skip
	// DeadLetter writes the raw record, with headers describing the error,
	// to the topic <application-id>-dlq (inside the transaction under
	// ExactlyOnce) and goes on.
	DeadLetter
)

// String returns the policy's name.
func (p ErrorPolicy) String() string {
	switch p {
	case Fail:
		return "fail"
	case Skip:
		return "skip"
	case DeadLetter:
		return "dead-letter"
	}
	return fmt.Sprintf("ErrorPolicy(%d)", int(p))
}

// Opt configures a Processor. Options are applied in order by New, and the
// result is validated as a whole.
type Opt interface{ apply(*cfg) }

type optFunc func(*cfg)

func (f optFunc) apply(c *cfg) { f(c) }

type cfg struct {
	brokers            []string
	appID              string
	instanceID         string
	guarantee          Guarantee
	commitInterval     time.Duration
	commitIntervalSet  bool
	maxRecordsPerTxn   int
	maxPollRecords     int
	errorPolicy        ErrorPolicy
	logger             *slog.Logger
	kgoOpts            []kgo.Opt
	workers            int
	sessionTimeout     time.Duration
	transactionTimeout time.Duration
	staticMembership   bool
	stateDir           string
	stateOpts          state.Options
	storeCacheBytes    int64
	storeApplyInterval time.Duration
	pollPace           time.Duration
	pollPaceSet        bool
	markerWait         time.Duration
	markerWaitSet      bool
	onRestore          func(RestoreProgress)
}

// maxDefaultPollPace caps the default PollPace: at 10 ms a producer that
// sends every few milliseconds is fetched in a few requests per interval.
const maxDefaultPollPace = 10 * time.Millisecond

// defaultMarkerWait is MarkerWait's default: the broker's default
// add.partitions.to.txn.retry.backoff.ms. A write that arrives before the
// markers waits that long, so holding longer than that gains nothing in
// the usual case.
const defaultMarkerWait = 20 * time.Millisecond

func defaultCfg() cfg {
	return cfg{
		guarantee:          ExactlyOnce,
		maxRecordsPerTxn:   100_000,
		maxPollRecords:     50_000,
		errorPolicy:        Fail,
		logger:             slog.New(slog.DiscardHandler),
		workers:            1,
		sessionTimeout:     45 * time.Second,
		transactionTimeout: 10 * time.Second,
		staticMembership:   true,
		// The changelog is the source of truth and every Pebble batch
		// carries its checkpoint, so a commit lost to a machine crash is
		// replayed from the changelog; fsyncing every transaction would buy
		// nothing but latency.
		stateOpts:          state.Options{Sync: state.NoSync},
		storeCacheBytes:    32 << 20,
		storeApplyInterval: defaultStoreApplyInterval,
	}
}

// Brokers sets the seed brokers (Kafka's bootstrap.servers). Required.
func Brokers(seeds ...string) Opt {
	return optFunc(func(c *cfg) { c.brokers = append(c.brokers, seeds...) })
}

// ApplicationID sets the application id (Kafka Streams' application.id). It
// is the consumer group id and the prefix of the transactional ids and of
// internal topic names, so it must be a legal topic name. Required.
func ApplicationID(id string) Opt { return optFunc(func(c *cfg) { c.appID = id }) }

// InstanceID sets this instance's id: stable across restarts, unique among
// running instances. Worker n of the instance uses the group instance id
// <instance-id>-<n> and the transactional id
// <application-id>-<instance-id>-<n>, so a restarted instance takes its
// partitions back without a rebalance and fences its zombie. The default is
// derived from the host name.
func InstanceID(id string) Opt { return optFunc(func(c *cfg) { c.instanceID = id }) }

// WithGuarantee selects the delivery guarantee (Kafka Streams'
// processing.guarantee). The default is ExactlyOnce.
func WithGuarantee(g Guarantee) Opt { return optFunc(func(c *cfg) { c.guarantee = g }) }

// CommitInterval sets how often the open transaction is committed (or,
// without transactions, how often offsets are committed), like Kafka
// Streams' commit.interval.ms: from the start of one commit to the start
// of the next, so a record waits about an interval plus one commit at
// most. A polled batch is processed whole first, so a commit may come a
// batch late; polls are sized to take about half an interval at most (see
// MaxPollRecords). The default is 100 ms under ExactlyOnce
// and 1 s otherwise.
func CommitInterval(d time.Duration) Opt {
	return optFunc(func(c *cfg) { c.commitInterval, c.commitIntervalSet = d, true })
}

// MaxRecordsPerTransaction ends the transaction (or offset-commit batch)
// early once this many input records are in it. The default is 100,000,
// which bounds the work a rebalance or crash throws away without cutting
// the commit interval short at a few hundred thousand records per second
// (every exactly-once commit costs several broker round trips).
func MaxRecordsPerTransaction(n int) Opt { return optFunc(func(c *cfg) { c.maxRecordsPerTxn = n }) }

// MaxPollRecords caps the records taken from one poll (Kafka's
// max.poll.records). The default is 50,000, enough to take a whole fetch
// response at once: a broker's next fetch is sent only when the previous
// response is drained, so polls smaller than a fetch leave the worker
// waiting one fetch round trip per response (2,000 cost the wordcount
// bench 10% of its throughput). Below the cap each worker sizes its polls
// itself: its first takes 100 records, and each later one as many as the
// worker processed in half a commit interval (or a tenth of the
// transaction timeout, if less), growing at most fourfold from one poll
// to the next. A polled batch is processed whole before the transaction
// ends, so this keeps a transaction near its commit interval, and well
// inside the transaction timeout, when records are slow to process; at
// full speed a poll takes up to the cap.
func MaxPollRecords(n int) Opt { return optFunc(func(c *cfg) { c.maxPollRecords = n }) }

// PollPace spaces an exactly-once worker's polls while its transaction is
// open, so that a steady trickle of input is fetched in batches of about d
// rather than one small fetch per producer request. Outputs become visible
// only when the transaction commits, so a record that waits up to d on the
// broker in mid-transaction is not seen any later, and the worker stops
// pacing for the transaction's last stretch (longer the busier it was in
// the last transaction; not at all above 80% busy) so that what arrives
// near the commit still makes it in. A worker whose last poll left
// records on the broker polls again at once, and an idle one is not
// paced: its fetch waits on the broker as before. The default is a tenth
// of the commit interval, at most 10 ms; 0 turns pacing off. Ignored
// under the other guarantees, whose outputs are visible as soon as they
// are written. Kafka Streams has no counterpart.
func PollPace(d time.Duration) Opt {
	return optFunc(func(c *cfg) { c.pollPace, c.pollPaceSet = d, true })
}

// MarkerWait is the longest an exactly-once worker holds back the first
// records of a transaction after ending the one before, so that they
// reach the broker after that transaction's markers. Ending a transaction
// returns before the broker has written its commit (or abort) markers to
// the partitions it touched, and a Kafka 4 broker running transaction
// version 2 retries a new transaction's first write to a partition that
// arrives before them only after its add.partitions.to.txn.retry.backoff.ms
// (20 ms by default): the write, and the commit that waits for it, would
// be that much late. The worker asks the transaction coordinator
// (DescribeTransactions, about once a millisecond) whether the markers are
// written and hands the held records to its client as soon as they are
// (1 to 5 ms after the end on a local broker under load); it keeps
// processing meanwhile, and the held records become visible at the commit
// either way. A transaction that falls due during the hold takes records
// until the hold ends, and ends then. Where it cannot ask (a broker
// before Kafka 3.0, no Describe permission on the transactional ID) it
// holds a fixed quarter of the commit interval, at most 5 ms and at most
// d, and logs a warning once.
// The default is 20 ms, the broker's default backoff; 0 sends at once and
// asks nothing. Ignored under the other guarantees. Kafka Streams has no
// counterpart.
func MarkerWait(d time.Duration) Opt {
	return optFunc(func(c *cfg) { c.markerWait, c.markerWaitSet = d, true })
}

// OnError sets what happens to a record that fails to deserialize or
// process (Kafka Streams' deserialization and processing exception
// handlers). The default is Fail.
func OnError(p ErrorPolicy) Opt { return optFunc(func(c *cfg) { c.errorPolicy = p }) }

// Logger sets the logger; the default discards. Records are logged with the
// keys topic, partition, offset, task and txn_id.
func Logger(l *slog.Logger) Opt { return optFunc(func(c *cfg) { c.logger = l }) }

// KgoOpts passes extra options to every franz-go client the processor
// creates, after its own (so they win). Options that change the group, the
// transactional id or the isolation level break the guarantee; use them to
// tune fetch sizes and waits, linger, TLS or SASL (the processor sets
// ProducerLinger; the README has a fetch setting for a steady load).
func KgoOpts(opts ...kgo.Opt) Opt {
	return optFunc(func(c *cfg) { c.kgoOpts = append(c.kgoOpts, opts...) })
}

// Workers sets how many workers the instance runs (Kafka Streams'
// num.stream.threads). Each worker is its own group member with its own
// transactional producer. The default is 1.
func Workers(n int) Opt { return optFunc(func(c *cfg) { c.workers = n }) }

// SessionTimeout sets the consumer group session timeout (Kafka's
// session.timeout.ms): how long a silent member keeps its partitions. The
// default is 45 s; the broker bounds it by group.min.session.timeout.ms
// (6 s by default).
func SessionTimeout(d time.Duration) Opt { return optFunc(func(c *cfg) { c.sessionTimeout = d }) }

// TransactionTimeout sets the producer's transaction timeout (Kafka's
// transaction.timeout.ms): how long the open transaction of a dead instance
// blocks read_committed readers. The default is 10 s, as Kafka Streams sets
// it.
func TransactionTimeout(d time.Duration) Opt {
	return optFunc(func(c *cfg) { c.transactionTimeout = d })
}

// StaticMembership turns static group membership (Kafka's
// group.instance.id) on or off. On (the default), a restarted instance gets
// its partitions back without a rebalance, and a stopped one keeps them
// until the session timeout.
func StaticMembership(on bool) Opt { return optFunc(func(c *cfg) { c.staticMembership = on }) }

// StateDir sets the directory of the instance's Pebble database (Kafka
// Streams' state.dir). The default is <os.TempDir()>/onceflow/
// <application-id>/<instance-id>. Only topologies with stores use it. A
// missing, foreign or corrupt directory is wiped and restored in full from
// the changelogs.
func StateDir(dir string) Opt { return optFunc(func(c *cfg) { c.stateDir = dir }) }

// StateOptions tunes the Pebble database (cache size, memtable size and how
// many may wait for flushes, sync policy); see state.Options for the
// defaults. The processor's default differs in one field: Sync is
// state.NoSync, because a store-partition's data and checkpoint always land
// together and the changelog replays what a machine crash loses. Kafka
// Streams does not fsync RocksDB either.
func StateOptions(o state.Options) Opt { return optFunc(func(c *cfg) { c.stateOpts = o }) }

// StoreCacheBytes bounds the memory the instance spends caching committed
// store values in front of Pebble (key and value bytes plus about 128 bytes
// per entry), shared evenly by its workers. Reads of cached keys skip
// Pebble. The default is 32 MiB (about 200,000 small keys); 0 turns the
// cache off. Like any Go heap, the process may use up to twice that
// between garbage collections. Kafka Streams'
// statestore.cache.max.bytes is the closest setting, though that cache
// also delays writes and this one does not.
//
// The cache also holds committed writes not yet applied to Pebble (see
// StoreApplyInterval): when they reach half of a worker's share, the
// worker applies them whatever the interval.
func StoreCacheBytes(n int64) Opt { return optFunc(func(c *cfg) { c.storeCacheBytes = n }) }

// defaultStoreApplyInterval is StoreApplyInterval's default. Every apply
// collects the waiting writes on the worker's goroutine (in parts, one
// after each commit) and then costs Pebble a write per distinct key, so
// where a store's hot keys fit in the cache an apply costs about the same
// at any interval: at 1 s the
// wordcount benchmark (100,000 keys, exactly-once, 100 ms) had p99s of
// 142-1,421 ms (median 222) at 150,000 records/s in six runs, against
// 115-166 (median 126) with applies every 5 s or fewer, alternating on
// the same broker. A restart after a crash replays up to this much of the
// stores' writes, at millions of records a second.
const defaultStoreApplyInterval = 5 * time.Second

// StoreApplyInterval sets how often a worker applies committed store writes
// to Pebble, together with the changelog checkpoint they reach (default 5
// s). Between applies, committed writes wait in the store cache, and a key
// written in several transactions reaches Pebble once, with its last value:
// fewer Pebble writes and compactions. The cost is at crash time: a restart
// replays the changelog from the last applied checkpoint, up to this much
// of the store's writes. Applies also happen when the waiting writes fill
// half of the worker's cache share, when partitions are revoked, and at
// shutdown. 0 (or StoreCacheBytes(0)) applies after every commit.
//
// The worker collects an apply's writes from the cache in parts, one after
// each commit (at least 2,048 keys, enough to finish within half the
// interval), so no commit stops for all of them; revocation and shutdown
// collect the rest at once. A key written again meanwhile goes in the next
// apply. The checkpoint is the one the apply began with, so Pebble may
// hold some values newer than it, which a replay writes again in order.
func StoreApplyInterval(d time.Duration) Opt {
	return optFunc(func(c *cfg) { c.storeApplyInterval = d })
}

// OnRestore sets a function that receives the progress of every store
// restore: after each batch of changelog records and once more when the
// restore is done. It runs on the restoring worker's goroutine; keep it
// quick. Restores are also logged at Info.
func OnRestore(fn func(RestoreProgress)) Opt { return optFunc(func(c *cfg) { c.onRestore = fn }) }

var (
	legalName   = regexp.MustCompile(`^[a-zA-Z0-9._-]+$`)
	illegalRuns = regexp.MustCompile(`[^a-zA-Z0-9._-]+`)
)

// validate reports every problem with the configuration at once.
func (c *cfg) validate() error {
	var errs []error
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	if len(c.brokers) == 0 {
		bad("Brokers: no seed brokers given")
	}
	for _, b := range c.brokers {
		if strings.TrimSpace(b) == "" {
			bad("Brokers: empty broker address")
		}
	}
	switch {
	case c.appID == "":
		bad("ApplicationID: required")
	case !legalName.MatchString(c.appID) || len(c.appID) > 200:
		bad("ApplicationID: %q must be 1-200 characters of [a-zA-Z0-9._-] (it prefixes topic names)", c.appID)
	}
	if !legalName.MatchString(c.instanceID) || len(c.instanceID) > 200 {
		bad("InstanceID: %q must be 1-200 characters of [a-zA-Z0-9._-]", c.instanceID)
	}
	if c.guarantee < ExactlyOnce || c.guarantee > AtMostOnce {
		bad("WithGuarantee: unknown guarantee %d", int(c.guarantee))
	}
	if c.commitInterval <= 0 {
		bad("CommitInterval: must be positive, got %v", c.commitInterval)
	}
	if c.maxRecordsPerTxn < 1 {
		bad("MaxRecordsPerTransaction: must be at least 1, got %d", c.maxRecordsPerTxn)
	}
	if c.maxPollRecords < 1 {
		bad("MaxPollRecords: must be at least 1, got %d", c.maxPollRecords)
	}
	if c.errorPolicy < Fail || c.errorPolicy > DeadLetter {
		bad("OnError: unknown policy %d", int(c.errorPolicy))
	}
	if c.logger == nil {
		bad("Logger: nil logger (omit the option to discard logs)")
	}
	if c.workers < 1 || c.workers > 256 {
		bad("Workers: must be 1 to 256, got %d", c.workers)
	}
	if c.sessionTimeout < time.Second {
		bad("SessionTimeout: must be at least 1s, got %v", c.sessionTimeout)
	}
	if c.transactionTimeout < time.Second {
		bad("TransactionTimeout: must be at least 1s, got %v", c.transactionTimeout)
	} else if c.guarantee == ExactlyOnce && c.commitInterval >= c.transactionTimeout {
		bad("CommitInterval: %v must be shorter than TransactionTimeout %v under exactly-once", c.commitInterval, c.transactionTimeout)
	}
	if c.pollPace < 0 {
		bad("PollPace: must not be negative, got %s", c.pollPace)
	}
	if c.markerWait < 0 {
		bad("MarkerWait: must not be negative, got %s", c.markerWait)
	}
	if c.storeApplyInterval < 0 {
		bad("StoreApplyInterval: must not be negative, got %s", c.storeApplyInterval)
	}
	if c.storeCacheBytes < 0 {
		bad("StoreCacheBytes: must not be negative, got %d", c.storeCacheBytes)
	}
	if err := c.stateOpts.Validate(); err != nil {
		bad("StateOptions: %w", err)
	}
	if len(errs) == 0 {
		return nil
	}
	return fmt.Errorf("%w:\n%w", ErrInvalidConfig, errors.Join(errs...))
}

// finish fills in defaults that depend on other options.
func (c *cfg) finish() {
	if !c.commitIntervalSet {
		c.commitInterval = time.Second
		if c.guarantee == ExactlyOnce {
			c.commitInterval = 100 * time.Millisecond
		}
	}
	if !c.pollPaceSet {
		c.pollPace = max(0, min(c.commitInterval/10, maxDefaultPollPace))
	}
	if !c.markerWaitSet {
		c.markerWait = defaultMarkerWait
	}
	if c.instanceID == "" {
		host, err := os.Hostname()
		if err != nil || host == "" {
			host = "instance"
		}
		c.instanceID = strings.Trim(illegalRuns.ReplaceAllString(host, "-"), "-")
	}
	if c.stateDir == "" {
		c.stateDir = filepath.Join(os.TempDir(), "onceflow", c.appID, c.instanceID)
	}
}
