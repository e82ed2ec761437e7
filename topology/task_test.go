package topology_test

import (
	"errors"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/onceflow/onceflow/state"
	"github.com/onceflow/onceflow/topology"
)

// fakeEnv captures sent records and serves in-memory stores.
type fakeEnv struct {
	sent       []topology.OutRecord
	stores     map[string]state.KV
	partitions map[string]int32
	sendErr    error
}

func newEnv() *fakeEnv {
	return &fakeEnv{stores: make(map[string]state.KV), partitions: make(map[string]int32)}
}

func (e *fakeEnv) Send(rec topology.OutRecord) error {
	if e.sendErr != nil {
		return e.sendErr
	}
	e.sent = append(e.sent, rec)
	return nil
}

func (e *fakeEnv) Store(name string) (state.KV, error) {
	kv, ok := e.stores[name]
	if !ok {
		kv = state.NewMemKV()
		e.stores[name] = kv
	}
	return kv, nil
}

func (e *fakeEnv) Partitions(topic string) (int32, error) {
	n, ok := e.partitions[topic]
	if !ok {
		return 0, fmt.Errorf("unknown topic %q", topic)
	}
	return n, nil
}

// sentStrings renders sent records as "topic[partition] key=value @unix".
func (e *fakeEnv) sentStrings() []string {
	var out []string
	for _, r := range e.sent {
		out = append(out, fmt.Sprintf("%s[%d] %s=%s @%d", r.Topic, r.Partition, r.Key, r.Value, r.Timestamp.Unix()))
	}
	return out
}

var t0 = time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC)

func raw(topic string, offset int64, key, value string, ts time.Time) topology.RawRecord {
	return topology.RawRecord{Topic: topic, Partition: 2, Offset: offset, Key: []byte(key), Value: []byte(value), Timestamp: ts}
}

// start builds b, creates task 0_2 on a fresh env and initializes it.
func start(t *testing.T, b *topology.Builder) (*topology.Task, *fakeEnv) {
	t.Helper()
	topo, err := b.Build()
	if err != nil {
		t.Fatal(err)
	}
	env := newEnv()
	env.partitions["out"] = 4
	task, err := topo.NewTask(topology.TaskID{SubTopology: 0, Partition: 2}, env)
	if err != nil {
		t.Fatal(err)
	}
	if err := task.Init(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := task.Close(); err != nil {
			t.Errorf("Close() = %v", err)
		}
	})
	return task, env
}

type fn[K, V any] func(ctx topology.Context[K, V], rec topology.Record[K, V]) error

func proc[K, V any](f fn[K, V]) func() topology.Processor[K, V, K, V] {
	return func() topology.Processor[K, V, K, V] { return topology.ProcessFunc(f) }
}

func TestProcessForwardToAllChildren(t *testing.T) {
	b := topology.NewBuilder()
	topology.AddSource(b, "src", str, str, "in")
	topology.AddProcessor(b, "upper", proc(func(ctx topology.Context[string, string], rec topology.Record[string, string]) error {
		if rec.Topic != "in" || rec.Partition != 2 || rec.Offset != 17 {
			return fmt.Errorf("origin = %s/%d/%d", rec.Topic, rec.Partition, rec.Offset)
		}
		rec.Value = strings.ToUpper(rec.Value)
		return ctx.Forward(rec)
	}), "src")
	topology.AddSink(b, "sink-a", "out-a", str, str, "upper")
	topology.AddSink(b, "sink-b", "out-b", str, str, "upper", "src")
	task, env := start(t, b)

	in := raw("in", 17, "k", "hello", t0)
	in.Headers = []topology.Header{{Key: "h", Value: []byte("v")}}
	if err := task.Process(in); err != nil {
		t.Fatal(err)
	}
	want := []topology.OutRecord{
		{Topic: "out-a", Partition: -1, Key: []byte("k"), Value: []byte("HELLO"), Headers: in.Headers, Timestamp: t0},
		{Topic: "out-b", Partition: -1, Key: []byte("k"), Value: []byte("HELLO"), Headers: in.Headers, Timestamp: t0},
		{Topic: "out-b", Partition: -1, Key: []byte("k"), Value: []byte("hello"), Headers: in.Headers, Timestamp: t0},
	}
	if !reflect.DeepEqual(env.sent, want) {
		t.Errorf("sent = %+v\nwant %+v", env.sent, want)
	}
	if got := task.StreamTime(); !got.Equal(t0) {
		t.Errorf("StreamTime() = %v, want %v", got, t0)
	}
}

func TestProcessForwardTo(t *testing.T) {
	b := topology.NewBuilder()
	topology.AddSource(b, "src", str, i64, "in")
	topology.AddProcessor(b, "route", proc(func(ctx topology.Context[string, int64], rec topology.Record[string, int64]) error {
		switch {
		case rec.Value < 0:
			return ctx.ForwardTo("negative", rec)
		case rec.Value%2 == 0:
			return ctx.ForwardTo("even", rec)
		default:
			return ctx.ForwardTo("odd", rec)
		}
	}), "src")
	topology.AddSink(b, "even", "evens", str, i64, "route")
	topology.AddSink(b, "odd", "odds", str, i64, "route")
	task, env := start(t, b)

	for i, v := range []int64{1, 2, 3, 4} {
		value, _ := i64.Serialize(v)
		if err := task.Process(topology.RawRecord{Topic: "in", Offset: int64(i), Key: []byte("k"), Value: value, Timestamp: t0}); err != nil {
			t.Fatal(err)
		}
	}
	var got []string
	for _, r := range env.sent {
		v, _ := i64.Deserialize(r.Value)
		got = append(got, fmt.Sprintf("%s:%d", r.Topic, v))
	}
	if want := []string{"odds:1", "evens:2", "odds:3", "evens:4"}; !slices.Equal(got, want) {
		t.Errorf("sent = %q, want %q", got, want)
	}

	value, _ := i64.Serialize(-1)
	err := task.Process(topology.RawRecord{Topic: "in", Partition: 2, Offset: 9, Value: value})
	want := `process node "route" at topic "in" partition 2 offset 9: topology: processor "route" cannot forward to "negative": not one of its children [even, odd]`
	if err == nil || err.Error() != want {
		t.Errorf("ForwardTo(unknown) error = %v\nwant %s", err, want)
	}
}

// counter counts records per key in store "counts" and forwards the count.
type counter struct {
	store state.KeyValueStore[string, int64]
}

func (c *counter) Init(ctx topology.Context[string, int64]) error {
	s, err := topology.KeyValueStoreOf[string, int64](ctx, "counts")
	c.store = s
	return err
}

func (c *counter) Process(ctx topology.Context[string, int64], rec topology.Record[string, string]) error {
	n, _, err := c.store.Get(rec.Key)
	if err != nil {
		return err
	}
	n++
	if err := c.store.Put(rec.Key, n); err != nil {
		return err
	}
	return ctx.Forward(topology.Record[string, int64]{Key: rec.Key, Value: n, Timestamp: rec.Timestamp})
}

func (c *counter) Close() error { return nil }

func TestProcessWithStore(t *testing.T) {
	b := topology.NewBuilder()
	topology.AddSource(b, "src", str, str, "in")
	topology.AddProcessor(b, "count", func() topology.Processor[string, string, string, int64] { return &counter{} }, "src")
	topology.AddSink(b, "sink", "out", str, topology.JSONSerde[int64](), "count")
	topology.AddKeyValueStore(b, "counts", str, i64, "count")
	task, env := start(t, b)

	for i, k := range []string{"a", "b", "a", "a"} {
		if err := task.Process(raw("in", int64(i), k, "", t0.Add(time.Duration(i)*time.Second))); err != nil {
			t.Fatal(err)
		}
	}
	want := []string{"out[-1] a=1 @1704067200", "out[-1] b=1 @1704067201", "out[-1] a=2 @1704067202", "out[-1] a=3 @1704067203"}
	if got := env.sentStrings(); !slices.Equal(got, want) {
		t.Errorf("sent = %q\nwant %q", got, want)
	}
	it, err := env.stores["counts"].Range(nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	var contents []string
	for it.Next() {
		contents = append(contents, fmt.Sprintf("%s=%v", it.Key(), it.Value()))
	}
	_ = it.Close()
	if want := []string{"a=[0 0 0 0 0 0 0 3]", "b=[0 0 0 0 0 0 0 1]"}; !slices.Equal(contents, want) {
		t.Errorf("store contents = %q, want %q", contents, want)
	}
}

func TestStoreAccessErrors(t *testing.T) {
	b := topology.NewBuilder()
	topology.AddSource(b, "src", str, str, "in")
	var errs []string
	topology.AddProcessor(b, "p", func() topology.Processor[string, string, string, string] {
		return topology.ProcessFunc(func(ctx topology.Context[string, string], rec topology.Record[string, string]) error {
			_, err := topology.KeyValueStoreOf[string, string](ctx, "counts")
			errs = append(errs, err.Error())
			_, err = ctx.Store("other")
			errs = append(errs, err.Error())
			return nil
		})
	}, "src")
	topology.AddProcessor(b, "q", pass[string, string](), "src")
	topology.AddKeyValueStore(b, "counts", str, i64, "p")
	topology.AddKeyValueStore(b, "other", str, i64, "q")
	task, _ := start(t, b)
	if err := task.Process(raw("in", 0, "k", "v", t0)); err != nil {
		t.Fatal(err)
	}
	want := []string{
		`topology: store "counts" is a *state.typedStore[string,int64], not a state.KeyValueStore[string, string]`,
		`topology: store "other" is not attached to processor "p" (attached: [counts])`,
	}
	if !slices.Equal(errs, want) {
		t.Errorf("errors = %q\nwant %q", errs, want)
	}
}

func TestProcessPanicRecovered(t *testing.T) {
	b := topology.NewBuilder()
	topology.AddSource(b, "src", str, str, "in")
	topology.AddProcessor(b, "outer", pass[string, string](), "src")
	topology.AddProcessor(b, "bad", proc(func(topology.Context[string, string], topology.Record[string, string]) error {
		panic("boom")
	}), "outer")
	task, _ := start(t, b)

	err := task.Process(raw("in", 17, "k", "v", t0))
	var pe *topology.ProcessError
	if !errors.As(err, &pe) {
		t.Fatalf("Process() = %v (%T), want *ProcessError", err, err)
	}
	if want := `process node "bad" at topic "in" partition 2 offset 17: panic: boom`; err.Error() != want {
		t.Errorf("error = %s\nwant %s", err, want)
	}
	if !pe.Panicked || pe.PanicValue != "boom" || pe.Node != "bad" {
		t.Errorf("ProcessError = %+v, want Panicked, PanicValue boom, Node bad", pe)
	}
	if !strings.Contains(string(pe.Stack), "task_test.go") {
		t.Errorf("Stack does not show the panicking function:\n%s", pe.Stack)
	}
	topic, partition, offset, ok := topology.Origin(err)
	if topic != "in" || partition != 2 || offset != 17 || !ok {
		t.Errorf("Origin() = %q, %d, %d, %v; want in, 2, 17, true", topic, partition, offset, ok)
	}
}

func TestProcessErrorFromDeepestNode(t *testing.T) {
	sentinel := errors.New("bad record")
	b := topology.NewBuilder()
	topology.AddSource(b, "src", str, str, "in")
	topology.AddProcessor(b, "outer", proc(func(ctx topology.Context[string, string], rec topology.Record[string, string]) error {
		if err := ctx.Forward(rec); err != nil {
			return fmt.Errorf("outer: %w", err)
		}
		return nil
	}), "src")
	topology.AddProcessor(b, "inner", proc(func(topology.Context[string, string], topology.Record[string, string]) error {
		return sentinel
	}), "outer")
	task, _ := start(t, b)

	err := task.Process(raw("in", 3, "k", "v", t0))
	if want := `outer: process node "inner" at topic "in" partition 2 offset 3: bad record`; err == nil || err.Error() != want {
		t.Errorf("error = %v\nwant %s", err, want)
	}
	var pe *topology.ProcessError
	if !errors.As(err, &pe) || pe.Node != "inner" || pe.Panicked || !errors.Is(err, sentinel) {
		t.Errorf("error = %#v, want a ProcessError for inner wrapping the sentinel", err)
	}
}

func TestDeserializeError(t *testing.T) {
	b := topology.NewBuilder()
	topology.AddSource(b, "src", i64, i64, "in")
	topology.AddSink(b, "sink", "out", i64, i64, "src")
	task, env := start(t, b)

	tests := []struct {
		key, value []byte
		want       string
	}{
		{[]byte{1}, make([]byte, 8), `deserialize key at topic "in" partition 2 offset 17: int64: need 8 bytes, got 1`},
		{make([]byte, 8), []byte{1, 2, 3}, `deserialize value at topic "in" partition 2 offset 17: int64: need 8 bytes, got 3`},
	}
	for _, tt := range tests {
		err := task.Process(topology.RawRecord{Topic: "in", Partition: 2, Offset: 17, Key: tt.key, Value: tt.value, Timestamp: t0})
		var de *topology.DeserializeError
		if !errors.As(err, &de) || err.Error() != tt.want {
			t.Errorf("Process() = %v (%T)\nwant *DeserializeError %s", err, err, tt.want)
			continue
		}
		if topic, partition, offset, ok := topology.Origin(err); topic != "in" || partition != 2 || offset != 17 || !ok {
			t.Errorf("Origin() = %q, %d, %d, %v", topic, partition, offset, ok)
		}
	}
	if len(env.sent) != 0 {
		t.Errorf("sent %d records for undecodable input", len(env.sent))
	}
	if !task.StreamTime().IsZero() {
		t.Errorf("StreamTime() = %v after undecodable records, want zero", task.StreamTime())
	}
}

type failingSerde struct{}

func (failingSerde) Serialize(string) ([]byte, error)   { return nil, errors.New("cannot encode") }
func (failingSerde) Deserialize([]byte) (string, error) { return "", nil }

func TestSinkErrors(t *testing.T) {
	sendErr := errors.New("producer closed")
	tests := []struct {
		name  string
		build func(b *topology.Builder)
		env   func(e *fakeEnv)
		want  string
	}{
		{
			name: "serialize",
			build: func(b *topology.Builder) {
				topology.AddSink(b, "sink", "out", str, failingSerde{}, "src")
			},
			want: `process node "sink" at topic "in" partition 2 offset 5: serialize value for topic "out": cannot encode`,
		},
		{
			name: "send",
			build: func(b *topology.Builder) {
				topology.AddSink(b, "sink", "out", str, str, "src")
			},
			env:  func(e *fakeEnv) { e.sendErr = sendErr },
			want: `process node "sink" at topic "in" partition 2 offset 5: send to topic "out": producer closed`,
		},
		{
			name: "partitioner out of range",
			build: func(b *topology.Builder) {
				topology.AddSinkWithPartitioner(b, "sink", "out", str, str,
					func(string, string, string, int32) int32 { return 4 }, "src")
			},
			want: `process node "sink" at topic "in" partition 2 offset 5: partitioner chose partition 4 of topic "out", which has 4 partitions`,
		},
		{
			name: "unknown partition count",
			build: func(b *topology.Builder) {
				topology.AddSinkWithPartitioner(b, "sink", "elsewhere", str, str,
					func(string, string, string, int32) int32 { return 0 }, "src")
			},
			want: `process node "sink" at topic "in" partition 2 offset 5: partitions of topic "elsewhere": unknown topic "elsewhere"`,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := topology.NewBuilder()
			topology.AddSource(b, "src", str, str, "in")
			tt.build(b)
			task, env := start(t, b)
			if tt.env != nil {
				tt.env(env)
			}
			err := task.Process(raw("in", 5, "k", "v", t0))
			var pe *topology.ProcessError
			if !errors.As(err, &pe) || pe.Node != "sink" || err.Error() != tt.want {
				t.Errorf("Process() = %v (%T)\nwant ProcessError %s", err, err, tt.want)
			}
		})
	}
}

func TestPartitioner(t *testing.T) {
	b := topology.NewBuilder()
	topology.AddSource(b, "src", str, str, "in")
	topology.AddSinkWithPartitioner(b, "sink", "out", str, str, func(topic, key, value string, n int32) int32 {
		return int32(len(key)) % n
	}, "src")
	task, env := start(t, b)
	for i, k := range []string{"a", "bb", "ccc", "dddd", "eeeee"} {
		if err := task.Process(raw("in", int64(i), k, "v", t0)); err != nil {
			t.Fatal(err)
		}
	}
	want := []string{"out[1] a=v @1704067200", "out[2] bb=v @1704067200", "out[3] ccc=v @1704067200", "out[0] dddd=v @1704067200", "out[1] eeeee=v @1704067200"}
	if got := env.sentStrings(); !slices.Equal(got, want) {
		t.Errorf("sent = %q\nwant %q", got, want)
	}
}

// lifecycleProc logs Init and Close calls.
type lifecycleProc struct {
	name string
	log  *[]string
	err  error
}

func (p *lifecycleProc) Init(ctx topology.Context[string, string]) error {
	*p.log = append(*p.log, "init "+p.name+" "+ctx.Task().String())
	return nil
}

func (p *lifecycleProc) Process(topology.Context[string, string], topology.Record[string, string]) error {
	return nil
}

func (p *lifecycleProc) Close() error {
	*p.log = append(*p.log, "close "+p.name)
	return p.err
}

func TestTaskLifecycle(t *testing.T) {
	var log []string
	lc := func(name string, err error) func() topology.Processor[string, string, string, string] {
		return func() topology.Processor[string, string, string, string] {
			return &lifecycleProc{name: name, log: &log, err: err}
		}
	}
	b := topology.NewBuilder()
	topology.AddProcessor(b, "c", lc("c", errors.New("c failed")), "b")
	topology.AddProcessor(b, "b", lc("b", nil), "a")
	topology.AddSource(b, "src", str, str, "in")
	topology.AddProcessor(b, "a", lc("a", errors.New("a failed")), "src")
	topo, err := b.Build()
	if err != nil {
		t.Fatal(err)
	}
	task, err := topo.NewTask(topology.TaskID{SubTopology: 0, Partition: 3}, newEnv())
	if err != nil {
		t.Fatal(err)
	}
	if err := task.Process(raw("in", 0, "k", "v", t0)); err == nil || err.Error() != "topology: task 0_3: Process called before Init" {
		t.Errorf("Process before Init = %v", err)
	}
	if err := task.Init(); err != nil {
		t.Fatal(err)
	}
	err = task.Process(raw("other", 0, "k", "v", t0))
	if want := `topology: topic not read by this task: task 0_3: topic "other" is not read by sub-topology 0 (it reads [in])`; err == nil || err.Error() != want || !errors.Is(err, topology.ErrUnknownTopic) {
		t.Errorf("Process(unknown topic) = %v\nwant %s", err, want)
	}
	err = task.Close()
	if want := "topology: task 0_3: close processor \"a\": a failed\ntopology: task 0_3: close processor \"c\": c failed"; err == nil || err.Error() != want {
		t.Errorf("Close() = %v\nwant %s", err, want)
	}
	if err := task.Close(); err != nil {
		t.Errorf("second Close() = %v", err)
	}
	if err := task.Process(raw("in", 0, "k", "v", t0)); err == nil || err.Error() != "topology: task 0_3: Process called after Close" {
		t.Errorf("Process after Close = %v", err)
	}
	want := []string{"init a 0_3", "init b 0_3", "init c 0_3", "close a", "close b", "close c"}
	if !slices.Equal(log, want) {
		t.Errorf("calls = %q, want %q", log, want)
	}
}

func TestNewTaskErrors(t *testing.T) {
	b := topology.NewBuilder()
	topology.AddSource(b, "src", str, str, "in")
	topology.AddProcessor(b, "p", func() topology.Processor[string, string, string, string] { return nil }, "src")
	topo, err := b.Build()
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		id   topology.TaskID
		env  topology.TaskEnv
		want string
	}{
		{topology.TaskID{SubTopology: 1}, newEnv(), "topology: task 1_0: no sub-topology 1 (the topology has 1)"},
		{topology.TaskID{Partition: -1}, newEnv(), "topology: task 0_-1: negative partition"},
		{topology.TaskID{}, nil, "topology: task 0_0: nil TaskEnv"},
		{topology.TaskID{}, newEnv(), `topology: task 0_0: processor "p": supplier returned nil`},
	}
	for _, tt := range tests {
		if _, err := topo.NewTask(tt.id, tt.env); err == nil || err.Error() != tt.want {
			t.Errorf("NewTask(%v) = %v, want %s", tt.id, err, tt.want)
		}
	}
}

// TestBytesSourceSharesInput checks that a BytesSerde source hands the
// processor the consumed bytes without a copy, capped so that appending to
// them cannot overwrite what follows them in the input's buffer.
func TestBytesSourceSharesInput(t *testing.T) {
	var got []byte
	b := topology.NewBuilder()
	topology.AddSource(b, "in", topology.BytesSerde(), topology.BytesSerde(), "in")
	topology.AddProcessor(b, "keep", proc(func(ctx topology.Context[[]byte, []byte], r topology.Record[[]byte, []byte]) error {
		got = r.Value
		_ = append(r.Value, '!')
		return nil
	}), "in")
	task, _ := start(t, b)
	buf := []byte("k1v1after")
	if err := task.Process(topology.RawRecord{Topic: "in", Key: buf[0:2], Value: buf[2:4]}); err != nil {
		t.Fatal(err)
	}
	if string(got) != "v1" || &got[0] != &buf[2] {
		t.Fatalf("processor saw value %q at %p, want %q sharing the input at %p", got, &got[0], "v1", &buf[2])
	}
	if cap(got) != len(got) || string(buf) != "k1v1after" {
		t.Fatalf("value has capacity %d (length %d); input is now %q, want it unchanged", cap(got), len(got), buf)
	}
}
