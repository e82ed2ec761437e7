package processor

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
)

// clusterMeta is what the workers need to know about topics, read once at
// start: partition counts of every topic the processor writes or reads.
type clusterMeta struct {
	partitions map[string]int32
}

// prepare checks that every source and sink topic exists, that the source
// topics of each sub-topology are co-partitioned, and creates the
// dead-letter topic when the DeadLetter policy needs it.
func (p *Processor) prepare(ctx context.Context) (*clusterMeta, error) {
	cl, err := kgo.NewClient(append([]kgo.Opt{kgo.SeedBrokers(p.cfg.brokers...)}, p.cfg.kgoOpts...)...)
	if err != nil {
		return nil, fmt.Errorf("processor: create admin client: %w", err)
	}
	defer cl.Close()
	adm := kadm.NewClient(cl)

	var topics []string
	for _, s := range p.topo.SubTopologies() {
		topics = append(topics, s.SourceTopics...)
		topics = append(topics, s.SinkTopics...)
	}
	mctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	md, err := adm.Metadata(mctx, topics...)
	if err != nil {
		return nil, fmt.Errorf("processor: read metadata from %s: %w", strings.Join(p.cfg.brokers, ","), err)
	}
	meta := &clusterMeta{partitions: map[string]int32{}}
	var missing []string
	for _, t := range topics {
		td, ok := md.Topics[t]
		switch {
		case !ok || errors.Is(td.Err, kerr.UnknownTopicOrPartition):
			missing = append(missing, t)
		case td.Err != nil:
			return nil, fmt.Errorf("processor: metadata of topic %q: %w", t, td.Err)
		default:
			meta.partitions[t] = int32(len(td.Partitions))
		}
	}
	if len(missing) > 0 {
		sort.Strings(missing)
		missing = compactStrings(missing)
		return nil, fmt.Errorf("%w: %s (create it before starting; application %q)", ErrTopicMissing, quoteAll(missing), p.cfg.appID)
	}
	for _, s := range p.topo.SubTopologies() {
		var parts []string
		first := meta.partitions[s.SourceTopics[0]]
		mismatch := false
		for _, t := range s.SourceTopics {
			parts = append(parts, fmt.Sprintf("%q has %d", t, meta.partitions[t]))
			mismatch = mismatch || meta.partitions[t] != first
		}
		if mismatch {
			return nil, fmt.Errorf("%w: sub-topology %d reads topics with different partition counts: %s", ErrNotCopartitioned, s.ID, strings.Join(parts, ", "))
		}
	}
	if err := p.ensureChangelogs(mctx, adm, meta); err != nil {
		return nil, err
	}
	if p.cfg.errorPolicy == DeadLetter {
		n, err := p.ensureDLQ(mctx, adm, meta)
		if err != nil {
			return nil, err
		}
		meta.partitions[p.DeadLetterTopic()] = n
	}
	return meta, nil
}

// ensureDLQ creates the dead-letter topic if missing, with as many
// partitions as the largest source topic, and returns its partition count.
func (p *Processor) ensureDLQ(ctx context.Context, adm *kadm.Client, meta *clusterMeta) (int32, error) {
	name := p.DeadLetterTopic()
	md, err := adm.Metadata(ctx, name)
	if err != nil {
		return 0, fmt.Errorf("processor: metadata of dead-letter topic %q: %w", name, err)
	}
	if td, ok := md.Topics[name]; ok && td.Err == nil {
		return int32(len(td.Partitions)), nil
	}
	var n int32 = 1
	for _, s := range p.topo.SubTopologies() {
		for _, t := range s.SourceTopics {
			n = max(n, meta.partitions[t])
		}
	}
	if err := createTopic(ctx, adm, name, n, nil); err != nil {
		return 0, fmt.Errorf("processor: create dead-letter topic %q: %w", name, err)
	}
	return n, nil
}

// ErrChangelogMismatch is wrapped by the error Run returns when a store's
// changelog topic exists but cannot serve the store: a different partition
// count than the store's source topics, or a cleanup policy without
// compaction.
var ErrChangelogMismatch = errors.New("processor: changelog topic does not fit its store")

// ensureChangelogs creates each store's compacted changelog topic with the
// partition count of the store's source topics, or checks the one that
// exists.
func (p *Processor) ensureChangelogs(ctx context.Context, adm *kadm.Client, meta *clusterMeta) error {
	compact := "compact"
	for _, s := range p.topo.SubTopologies() {
		want := meta.partitions[s.SourceTopics[0]]
		for _, st := range s.Stores {
			name := p.ChangelogTopic(st.Name)
			md, err := adm.Metadata(ctx, name)
			if err != nil {
				return fmt.Errorf("processor: metadata of changelog %q: %w", name, err)
			}
			td, exists := md.Topics[name]
			if exists && td.Err == nil {
				if got := int32(len(td.Partitions)); got != want {
					return fmt.Errorf("%w: %q has %d partitions, store %q reads topics with %d", ErrChangelogMismatch, name, got, st.Name, want)
				}
				rc, err := adm.DescribeTopicConfigs(ctx, name)
				if err != nil {
					return fmt.Errorf("processor: configs of changelog %q: %w", name, err)
				}
				cfg, err := rc.On(name, nil)
				if err == nil {
					err = cfg.Err
				}
				if err != nil {
					return fmt.Errorf("processor: configs of changelog %q: %w", name, err)
				}
				for _, c := range cfg.Configs {
					if c.Key == "cleanup.policy" && (c.Value == nil || !strings.Contains(*c.Value, "compact")) {
						return fmt.Errorf("%w: %q has cleanup.policy=%s; a changelog must be compacted", ErrChangelogMismatch, name, c.MaybeValue())
					}
				}
			} else {
				if err := createTopic(ctx, adm, name, want, map[string]*string{"cleanup.policy": &compact}); err != nil {
					return fmt.Errorf("processor: create changelog %q: %w", name, err)
				}
				p.cfg.logger.Info("created changelog topic", "topic", name, "partitions", want)
			}
			meta.partitions[name] = want
		}
	}
	return nil
}

// createTopic creates a topic with the cluster's default replication
// factor; another instance creating it first is not an error.
func createTopic(ctx context.Context, adm *kadm.Client, name string, partitions int32, configs map[string]*string) error {
	resp, err := adm.CreateTopic(ctx, partitions, -1, configs, name)
	if err == nil {
		err = resp.Err
	}
	if errors.Is(err, kerr.TopicAlreadyExists) {
		return nil
	}
	return err
}

func compactStrings(s []string) []string {
	out := s[:0]
	for i, v := range s {
		if i == 0 || v != s[i-1] {
			out = append(out, v)
		}
	}
	return out
}

func quoteAll(s []string) string {
	q := make([]string, len(s))
	for i, v := range s {
		q[i] = fmt.Sprintf("%q", v)
	}
	return strings.Join(q, ", ")
}
