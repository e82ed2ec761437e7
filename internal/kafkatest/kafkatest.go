package kafkatest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
)

// EnvBrokers names the environment variable holding a real cluster's seed
// brokers.
const EnvBrokers = "KAFKA_BROKERS"

// EnvRequireReal names the environment variable that turns RequireReal's
// skip into a failure.
const EnvRequireReal = "ONCEFLOW_REQUIRE_REAL"

// RealBrokers returns the seed brokers named by KAFKA_BROKERS, or nil when it
// is unset or empty.
func RealBrokers() []string {
	v := strings.TrimSpace(os.Getenv(EnvBrokers))
	if v == "" {
		return nil
	}
	var out []string
	for _, b := range strings.Split(v, ",") {
		if b = strings.TrimSpace(b); b != "" {
			out = append(out, b)
		}
	}
	return out
}

// IsReal reports whether tests run against a real cluster (KAFKA_BROKERS is
// set).
func IsReal() bool { return len(RealBrokers()) > 0 }

// RequireReal stops a test that needs a real broker when none is configured:
// it fails when ONCEFLOW_REQUIRE_REAL=1 and skips otherwise.
func RequireReal(t testing.TB) {
	t.Helper()
	if IsReal() {
		return
	}
	if os.Getenv(EnvRequireReal) == "1" {
		t.Fatalf("this test needs a real Kafka broker: %s=1 but %s is unset (start one with scripts/kafka-local.sh up)", EnvRequireReal, EnvBrokers)
	}
	t.Skipf("needs a real Kafka broker; set %s (scripts/kafka-local.sh up prints it)", EnvBrokers)
}

// Brokers returns seed brokers for the test: the real cluster named by
// KAFKA_BROKERS, or else a fresh in-process kfake cluster closed by
// t.Cleanup.
func Brokers(t testing.TB, opts ...kfake.Opt) []string {
	t.Helper()
	if seeds := RealBrokers(); seeds != nil {
		return seeds
	}
	c, err := kfake.NewCluster(append([]kfake.Opt{kfake.NumBrokers(1)}, opts...)...)
	if err != nil {
		t.Fatalf("start kfake cluster: %v", err)
	}
	t.Cleanup(c.Close)
	return c.ListenAddrs()
}

// Client returns a plain client for seeds, closed by t.Cleanup.
func Client(t testing.TB, seeds []string, opts ...kgo.Opt) *kgo.Client {
	t.Helper()
	cl, err := kgo.NewClient(append([]kgo.Opt{kgo.SeedBrokers(seeds...)}, opts...)...)
	if err != nil {
		t.Fatalf("create kafka client: %v", err)
	}
	t.Cleanup(cl.Close)
	return cl
}

var unsafeTopicChars = regexp.MustCompile(`[^a-zA-Z0-9._-]+`)

// UniqueName returns prefix (derived from the test name when empty) with a
// random suffix, made of characters legal in topic and group names.
func UniqueName(t testing.TB, prefix string) string {
	t.Helper()
	if prefix == "" {
		prefix = t.Name()
	}
	prefix = unsafeTopicChars.ReplaceAllString(prefix, "-")
	if len(prefix) > 120 {
		prefix = prefix[:120]
	}
	var b [4]byte
	if _, err := rand.Read(b[:]); err != nil {
		t.Fatalf("random suffix: %v", err)
	}
	return prefix + "-" + hex.EncodeToString(b[:])
}

// Topic creates a uniquely named topic with the given partition count and
// the cluster's default replication factor, and deletes it when the test
// ends. It returns the topic's name.
func Topic(t testing.TB, seeds []string, partitions int32, configs map[string]*string) string {
	t.Helper()
	name := UniqueName(t, "")
	CreateTopic(t, seeds, name, partitions, configs)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
		defer cancel()
		cl, err := kgo.NewClient(kgo.SeedBrokers(seeds...))
		if err != nil {
			return
		}
		defer cl.Close()
		_, _ = kadm.NewClient(cl).DeleteTopics(ctx, name)
	})
	return name
}

// CreateTopic creates topic name and waits until its partitions have
// leaders.
func CreateTopic(t testing.TB, seeds []string, name string, partitions int32, configs map[string]*string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	adm := kadm.NewClient(Client(t, seeds))
	resp, err := adm.CreateTopic(ctx, partitions, -1, configs, name)
	if err == nil {
		err = resp.Err
	}
	if err != nil {
		t.Fatalf("create topic %q: %v", name, err)
	}
	if err := WaitForLeaders(ctx, adm, name); err != nil {
		t.Fatal(err)
	}
}

// WaitForLeaders polls metadata until every partition of topic has a leader.
func WaitForLeaders(ctx context.Context, adm *kadm.Client, topic string) error {
	for {
		md, err := adm.Metadata(ctx, topic)
		if err == nil {
			td, ok := md.Topics[topic]
			if ok && td.Err == nil && len(td.Partitions) > 0 {
				ready := true
				for _, p := range td.Partitions {
					if p.Err != nil || p.Leader < 0 {
						ready = false
					}
				}
				if ready {
					return nil
				}
			}
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("topic %q has no leaders yet: %w", topic, ctx.Err())
		case <-time.After(50 * time.Millisecond):
		}
	}
}
