package crashtest

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/onceflow/onceflow/topology"
)

// SumsTopology keeps a running sum per key (string key, int64 big-endian
// value) in the store SumsStore and writes the new sum of the key to output
// for every input record. Input is partitioned by key, so no repartition is
// needed.
func SumsTopology(input, output string) (*topology.Topology, error) {
	b := topology.NewBuilder()
	topology.AddSource(b, "in", topology.StringSerde(), topology.Int64Serde(), input)
	topology.AddProcessor(b, "sum", func() topology.Processor[string, int64, string, int64] {
		return topology.ProcessFunc(func(ctx topology.Context[string, int64], r topology.Record[string, int64]) error {
			sums, err := topology.KeyValueStoreOf[string, int64](ctx, SumsStore)
			if err != nil {
				return err
			}
			cur, _, err := sums.Get(r.Key)
			if err != nil {
				return err
			}
			r.Value += cur
			if err := sums.Put(r.Key, r.Value); err != nil {
				return err
			}
			return ctx.Forward(r)
		})
	}, "in")
	topology.AddKeyValueStore(b, SumsStore, topology.StringSerde(), topology.Int64Serde(), "sum")
	topology.AddSink(b, "out", output, topology.StringSerde(), topology.Int64Serde(), "sum")
	return b.Build()
}

// Restore is one finished store restore a sums worker reported.
type Restore struct {
	Instance    string
	Incarnation int
	Store       string
	Partition   int32
	From, To    int64
	Records     int64
}

// ParseRestore parses a restore line of a worker's stderr; ok is false for
// any other line.
func ParseRestore(line string) (r Restore, ok bool, err error) {
	rest, ok := strings.CutPrefix(line, restorePrefix)
	if !ok {
		return r, false, nil
	}
	for _, f := range strings.Fields(rest) {
		k, v, _ := strings.Cut(f, "=")
		if k == "store" {
			r.Store = v
			continue
		}
		n, perr := strconv.ParseInt(v, 10, 64)
		if perr != nil {
			return r, true, fmt.Errorf("restore line %q: field %s: %w", line, k, perr)
		}
		switch k {
		case "partition":
			r.Partition = int32(n)
		case "from":
			r.From = n
		case "to":
			r.To = n
		case "records":
			r.Records = n
		}
	}
	return r, true, nil
}
