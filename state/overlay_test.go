package state_test

import (
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"

	"github.com/onceflow/onceflow/state"
)

// contents returns every pair of kv as "key=value" strings.
func contents(t *testing.T, kv state.KV) []string {
	t.Helper()
	it, err := kv.Range(nil, nil)
	if err != nil {
		t.Fatalf("Range(nil, nil) = %v", err)
	}
	return collect(t, it)
}

// writesOf formats writes as "key=value" for puts and "key!" for tombstones.
func writesOf(ws []state.Write) []string {
	var got []string
	for _, w := range ws {
		if w.Delete {
			got = append(got, fmt.Sprintf("%s!", w.Key))
			if w.Value != nil {
				got = append(got, fmt.Sprintf("(tombstone %s has value %q)", w.Key, w.Value))
			}
		} else {
			got = append(got, fmt.Sprintf("%s=%s", w.Key, w.Value))
		}
	}
	return got
}

func TestOverlayReadYourWrites(t *testing.T) {
	base := state.NewMemKV()
	fill(t, base, "a", "1", "b", "2", "c", "3")
	o := state.NewOverlay(base)
	// Each step runs op on key (put with val, del, or get) and, for get,
	// expects want/wantOK.
	steps := []struct {
		op, key, val string
		want         string
		wantOK       bool
	}{
		{op: "get", key: "a", want: "1", wantOK: true},
		{op: "get", key: "x", wantOK: false},
		{op: "put", key: "x", val: "10"},
		{op: "get", key: "x", want: "10", wantOK: true},
		{op: "put", key: "x", val: "11"},
		{op: "get", key: "x", want: "11", wantOK: true},
		{op: "del", key: "x"},
		{op: "get", key: "x", wantOK: false},
		{op: "put", key: "x", val: "12"},
		{op: "get", key: "x", want: "12", wantOK: true},
		// Put over a base key.
		{op: "put", key: "a", val: "100"},
		{op: "get", key: "a", want: "100", wantOK: true},
		// Delete hides a base key.
		{op: "del", key: "b"},
		{op: "get", key: "b", wantOK: false},
		// Put after delete revives it.
		{op: "del", key: "c"},
		{op: "put", key: "c", val: "300"},
		{op: "get", key: "c", want: "300", wantOK: true},
		// Deleting an absent key is not an error.
		{op: "del", key: "missing"},
		{op: "get", key: "missing", wantOK: false},
		// Empty key and empty value.
		{op: "put", key: "", val: ""},
		{op: "get", key: "", want: "", wantOK: true},
	}
	for i, s := range steps {
		switch s.op {
		case "put":
			if err := o.Put([]byte(s.key), []byte(s.val)); err != nil {
				t.Fatalf("step %d: Put(%q) = %v", i, s.key, err)
			}
		case "del":
			if err := o.Delete([]byte(s.key)); err != nil {
				t.Fatalf("step %d: Delete(%q) = %v", i, s.key, err)
			}
		case "get":
			got, ok, err := o.Get([]byte(s.key))
			if err != nil || ok != s.wantOK || string(got) != s.want {
				t.Errorf("step %d: Get(%q) = %q, %v, %v; want %q, %v, nil", i, s.key, got, ok, err, s.want, s.wantOK)
			}
			if ok && got == nil {
				t.Errorf("step %d: Get(%q) returned a nil value with ok", i, s.key)
			}
		}
	}
	if got, want := o.Pending(), 6; got != want { // x, a, b, c, missing, ""
		t.Errorf("Pending() = %d, want %d", got, want)
	}
	if got, want := contents(t, base), []string{"a=1", "b=2", "c=3"}; !slices.Equal(got, want) {
		t.Errorf("base = %q, want %q (untouched before Commit)", got, want)
	}
	if got, want := contents(t, o), []string{"=", "a=100", "c=300", "x=12"}; !slices.Equal(got, want) {
		t.Errorf("overlay = %q, want %q", got, want)
	}
}

func TestOverlayCopies(t *testing.T) {
	o := state.NewOverlay(state.NewMemKV())
	key, val := []byte("k"), []byte("v1")
	if err := o.Put(key, val); err != nil {
		t.Fatal(err)
	}
	key[0], val[0] = 'X', 'X' // caller reuses its buffers
	got, ok, _ := o.Get([]byte("k"))
	if !ok || string(got) != "v1" {
		t.Fatalf("Get after caller mutation = %q, %v; want %q, true", got, ok, "v1")
	}
	got[0] = 'Y' // caller owns the returned value
	if again, _, _ := o.Get([]byte("k")); string(again) != "v1" {
		t.Fatalf("Get after mutating returned value = %q, want %q", again, "v1")
	}
	it, _ := o.Range(nil, nil)
	if !it.Next() {
		t.Fatal("Next() = false")
	}
	it.Value()[0] = 'Z' // forbidden by contract, but must not corrupt the batch
	_ = it.Close()
	if again, _, _ := o.Get([]byte("k")); string(again) != "v1" {
		t.Fatalf("Get after mutating iterator value = %q, want %q", again, "v1")
	}
	del := []byte("d")
	if err := o.Delete(del); err != nil {
		t.Fatal(err)
	}
	del[0] = 'k' // must not turn the tombstone into one for "k"
	if got, want := writesOf(o.Writes()), []string{"d!", "k=v1"}; !slices.Equal(got, want) {
		t.Fatalf("Writes() = %q, want %q", got, want)
	}
}

// mergeFixture returns an overlay whose merged view mixes base keys, pending
// puts (new keys and overrides), pending deletes of base keys and of absent
// keys, the empty key and 0xff keys.
//
//	base:    a=b1 ab=b2 b=b3 c=b4 \xff=b5 \xff\xff=b6
//	pending: ""=p0 aa=p1 ab=p2 b! bb=p3 zz! \xff\x00=p4 \xff\xff! \xff\xff\xff=p5
//	merged:  ""=p0 a=b1 aa=p1 ab=p2 bb=p3 c=b4 \xff=b5 \xff\x00=p4 \xff\xff\xff=p5
func mergeFixture(t *testing.T) (base state.KV, o *state.Overlay) {
	t.Helper()
	base = state.NewMemKV()
	fill(t, base, "a", "b1", "ab", "b2", "b", "b3", "c", "b4", "\xff", "b5", "\xff\xff", "b6")
	o = state.NewOverlay(base)
	fill(t, o, "", "p0", "aa", "p1", "ab", "p2", "bb", "p3", "\xff\x00", "p4", "\xff\xff\xff", "p5")
	for _, k := range []string{"b", "zz", "\xff\xff"} {
		if err := o.Delete([]byte(k)); err != nil {
			t.Fatal(err)
		}
	}
	return base, o
}

var mergedAll = []string{"=p0", "a=b1", "aa=p1", "ab=p2", "bb=p3", "c=b4", "\xff=b5", "\xff\x00=p4", "\xff\xff\xff=p5"}

var overlayRangeTests = []struct {
	name       string
	start, end []byte
	want       []string
}{
	{"unbounded", nil, nil, mergedAll},
	{"empty start is first key", []byte{}, []byte("aa"), []string{"=p0", "a=b1"}},
	{"nil start", nil, []byte("a"), []string{"=p0"}},
	{"nil end", []byte("c"), nil, []string{"c=b4", "\xff=b5", "\xff\x00=p4", "\xff\xff\xff=p5"}},
	{"a to c", []byte("a"), []byte("c"), []string{"a=b1", "aa=p1", "ab=p2", "bb=p3"}},
	{"override only", []byte("ab"), []byte("b"), []string{"ab=p2"}},
	{"deleted base key skipped", []byte("b"), []byte("c"), []string{"bb=p3"}},
	{"only a deleted key", []byte("b"), []byte("ba"), nil},
	{"deleted absent key", []byte("d"), nil, []string{"\xff=b5", "\xff\x00=p4", "\xff\xff\xff=p5"}},
	{"0xff start", []byte("\xff\xff"), nil, []string{"\xff\xff\xff=p5"}},
	{"0xff bounds", []byte("\xff"), []byte("\xff\xff"), []string{"\xff=b5", "\xff\x00=p4"}},
	{"start equals end", []byte("ab"), []byte("ab"), nil},
	{"start after end", []byte("c"), []byte("b"), nil},
}

var overlayPrefixTests = []struct {
	name   string
	prefix []byte
	want   []string
}{
	{"nil", nil, mergedAll},
	{"empty", []byte{}, mergedAll},
	{"a", []byte("a"), []string{"a=b1", "aa=p1", "ab=p2"}},
	{"ab", []byte("ab"), []string{"ab=p2"}},
	{"b with deleted base key", []byte("b"), []string{"bb=p3"}},
	{"only a deleted absent key", []byte("zz"), nil},
	{"no keys", []byte("x"), nil},
	{"0xff", []byte("\xff"), []string{"\xff=b5", "\xff\x00=p4", "\xff\xff\xff=p5"}},
	{"0xff 0xff", []byte("\xff\xff"), []string{"\xff\xff\xff=p5"}},
	{"0xff 0xff 0xff", []byte("\xff\xff\xff"), []string{"\xff\xff\xff=p5"}},
	{"0xff 0x00", []byte("\xff\x00"), []string{"\xff\x00=p4"}},
}

// checkMerged runs the range and prefix tables against kv.
func checkMerged(t *testing.T, kv state.KV) {
	t.Helper()
	for _, tt := range overlayRangeTests {
		it, err := kv.Range(tt.start, tt.end)
		if err != nil {
			t.Fatalf("Range %s: %v", tt.name, err)
		}
		if got := collect(t, it); !slices.Equal(got, tt.want) {
			t.Errorf("Range %s (%q, %q) = %q, want %q", tt.name, tt.start, tt.end, got, tt.want)
		}
	}
	for _, tt := range overlayPrefixTests {
		it, err := kv.PrefixScan(tt.prefix)
		if err != nil {
			t.Fatalf("PrefixScan %s: %v", tt.name, err)
		}
		if got := collect(t, it); !slices.Equal(got, tt.want) {
			t.Errorf("PrefixScan %s (%q) = %q, want %q", tt.name, tt.prefix, got, tt.want)
		}
	}
}

func TestOverlayMerge(t *testing.T) {
	base, o := mergeFixture(t)
	t.Run("pending", func(t *testing.T) { checkMerged(t, o) })
	if err := o.Commit(); err != nil {
		t.Fatal(err)
	}
	// After Commit the base holds exactly the merged view, and the overlay
	// (now with nothing pending) still shows it.
	t.Run("base after commit", func(t *testing.T) { checkMerged(t, base) })
	t.Run("overlay after commit", func(t *testing.T) { checkMerged(t, o) })
}

func TestOverlayWrites(t *testing.T) {
	_, o := mergeFixture(t)
	want := []string{"=p0", "aa=p1", "ab=p2", "b!", "bb=p3", "zz!", "\xff\x00=p4", "\xff\xff!", "\xff\xff\xff=p5"}
	if got := writesOf(o.Writes()); !slices.Equal(got, want) {
		t.Errorf("Writes() = %q, want %q", got, want)
	}
	if got := o.Pending(); got != len(want) {
		t.Errorf("Pending() = %d, want %d", got, len(want))
	}
	// A later write is reflected in the next call, still in key order, one
	// entry per key.
	fill(t, o, "ab", "p2b", "0", "p6")
	if err := o.Delete([]byte("aa")); err != nil {
		t.Fatal(err)
	}
	want = []string{"=p0", "0=p6", "aa!", "ab=p2b", "b!", "bb=p3", "zz!", "\xff\x00=p4", "\xff\xff!", "\xff\xff\xff=p5"}
	if got := writesOf(o.Writes()); !slices.Equal(got, want) {
		t.Errorf("Writes() after more writes = %q, want %q", got, want)
	}
	if got := o.Pending(); got != len(want) {
		t.Errorf("Pending() = %d, want %d", got, len(want))
	}
}

func TestOverlayCommit(t *testing.T) {
	base, o := mergeFixture(t)
	if err := o.Commit(); err != nil {
		t.Fatalf("Commit() = %v", err)
	}
	if got := contents(t, base); !slices.Equal(got, mergedAll) {
		t.Errorf("base after Commit = %q, want %q", got, mergedAll)
	}
	if got := o.Pending(); got != 0 {
		t.Errorf("Pending() after Commit = %d, want 0", got)
	}
	if got := o.Writes(); len(got) != 0 {
		t.Errorf("Writes() after Commit = %q, want none", writesOf(got))
	}
	// A second Commit has nothing to apply.
	if err := o.Commit(); err != nil {
		t.Fatalf("second Commit() = %v", err)
	}
	// The overlay is reusable for the next transaction.
	fill(t, o, "a", "t2")
	if err := o.Delete([]byte("c")); err != nil {
		t.Fatal(err)
	}
	if err := o.Commit(); err != nil {
		t.Fatal(err)
	}
	want := []string{"=p0", "a=t2", "aa=p1", "ab=p2", "bb=p3", "\xff=b5", "\xff\x00=p4", "\xff\xff\xff=p5"}
	if got := contents(t, base); !slices.Equal(got, want) {
		t.Errorf("base after second transaction = %q, want %q", got, want)
	}
}

func TestOverlayDiscard(t *testing.T) {
	base, o := mergeFixture(t)
	before := contents(t, base)
	o.Discard()
	if got := contents(t, base); !slices.Equal(got, before) {
		t.Errorf("base after Discard = %q, want %q", got, before)
	}
	if got := o.Pending(); got != 0 {
		t.Errorf("Pending() after Discard = %d, want 0", got)
	}
	if got := contents(t, o); !slices.Equal(got, before) {
		t.Errorf("overlay after Discard = %q, want the base %q", got, before)
	}
	if got, ok, _ := o.Get([]byte("b")); !ok || string(got) != "b3" {
		t.Errorf("Get(b) after Discard = %q, %v; want the base's %q", got, ok, "b3")
	}
	// Commit after Discard applies nothing.
	if err := o.Commit(); err != nil {
		t.Fatal(err)
	}
	if got := contents(t, base); !slices.Equal(got, before) {
		t.Errorf("base after Discard and Commit = %q, want %q", got, before)
	}
}

func TestOverlayIteratorSnapshot(t *testing.T) {
	tests := []struct {
		name   string
		mutate func(t *testing.T, o *state.Overlay)
	}{
		{"writes", func(t *testing.T, o *state.Overlay) {
			fill(t, o, "aa", "new", "b", "revived", "a0", "inserted", "\xff\xff\xff\xff", "tail")
			for _, k := range []string{"bb", "c", "\xff\x00"} {
				if err := o.Delete([]byte(k)); err != nil {
					t.Fatal(err)
				}
			}
		}},
		{"discard", func(t *testing.T, o *state.Overlay) { o.Discard() }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, o := mergeFixture(t)
			it, err := o.Range(nil, nil)
			if err != nil {
				t.Fatal(err)
			}
			pit, err := o.PrefixScan([]byte("\xff"))
			if err != nil {
				t.Fatal(err)
			}
			// Consume part of it before the mutation.
			var got []string
			for range 2 {
				if !it.Next() {
					t.Fatal("Next() = false")
				}
				got = append(got, fmt.Sprintf("%s=%s", it.Key(), it.Value()))
			}
			tt.mutate(t, o)
			got = append(got, collect(t, it)...)
			if !slices.Equal(got, mergedAll) {
				t.Errorf("Range(nil, nil) across mutation = %q, want %q", got, mergedAll)
			}
			if got, want := collect(t, pit), []string{"\xff=b5", "\xff\x00=p4", "\xff\xff\xff=p5"}; !slices.Equal(got, want) {
				t.Errorf("PrefixScan(0xff) across mutation = %q, want %q", got, want)
			}
		})
	}
}

func TestOverlayIteratorLifecycle(t *testing.T) {
	_, o := mergeFixture(t)
	it, err := o.Range(nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if it.Key() != nil || it.Value() != nil {
		t.Errorf("Key, Value before Next = %q, %q; want nil", it.Key(), it.Value())
	}
	if !it.Next() {
		t.Fatal("Next() = false")
	}
	if err := it.Close(); err != nil {
		t.Fatalf("Close() = %v", err)
	}
	if it.Next() {
		t.Error("Next() after Close = true, want false")
	}
	if it.Key() != nil || it.Value() != nil {
		t.Errorf("Key, Value after Close = %q, %q; want nil", it.Key(), it.Value())
	}
	if err := it.Close(); err != nil {
		t.Errorf("second Close() = %v", err)
	}
	empty, _ := state.NewOverlay(state.NewMemKV()).Range(nil, nil)
	if got := collect(t, empty); got != nil {
		t.Errorf("empty overlay = %q, want nothing", got)
	}
}

// batchKV is a MemKV that implements state.BatchApplier and counts the calls
// that reach it.
type batchKV struct {
	state.KV
	batches     [][]string // each ApplyBatch call, formatted with writesOf
	puts, dels  int
	failBatches error
}

func (b *batchKV) Put(k, v []byte) error { b.puts++; return b.KV.Put(k, v) }
func (b *batchKV) Delete(k []byte) error { b.dels++; return b.KV.Delete(k) }

func (b *batchKV) ApplyBatch(ws []state.Write) error {
	b.batches = append(b.batches, writesOf(ws))
	if b.failBatches != nil {
		return b.failBatches
	}
	for _, w := range ws {
		var err error
		if w.Delete {
			err = b.KV.Delete(w.Key)
		} else {
			err = b.KV.Put(w.Key, w.Value)
		}
		if err != nil {
			return err
		}
	}
	return nil
}

func TestOverlayApplyBatch(t *testing.T) {
	base := &batchKV{KV: state.NewMemKV()}
	fill(t, base.KV, "a", "1", "b", "2")
	o := state.NewOverlay(base)
	fill(t, o, "c", "3", "a", "10")
	if err := o.Delete([]byte("b")); err != nil {
		t.Fatal(err)
	}

	boom := errors.New("boom")
	base.failBatches = boom
	err := o.Commit()
	if !errors.Is(err, boom) || err.Error() != "state: overlay commit: apply batch: boom" {
		t.Fatalf("Commit() with failing ApplyBatch = %v, want wrapped boom", err)
	}
	if got := o.Pending(); got != 3 {
		t.Errorf("Pending() after failed Commit = %d, want 3 (kept)", got)
	}
	if got, want := contents(t, base), []string{"a=1", "b=2"}; !slices.Equal(got, want) {
		t.Errorf("base after failed Commit = %q, want %q", got, want)
	}

	base.failBatches = nil
	if err := o.Commit(); err != nil {
		t.Fatalf("Commit() = %v", err)
	}
	batch := []string{"a=10", "b!", "c=3"}
	if want := [][]string{batch, batch}; !slices.EqualFunc(base.batches, want, slices.Equal) {
		t.Errorf("ApplyBatch calls = %q, want %q", base.batches, want)
	}
	if base.puts != 0 || base.dels != 0 {
		t.Errorf("Commit called Put %d and Delete %d times, want 0 (ApplyBatch only)", base.puts, base.dels)
	}
	if got, want := contents(t, base), []string{"a=10", "c=3"}; !slices.Equal(got, want) {
		t.Errorf("base after Commit = %q, want %q", got, want)
	}
	if got := o.Pending(); got != 0 {
		t.Errorf("Pending() after Commit = %d, want 0", got)
	}
	// Nothing pending: ApplyBatch is not called.
	if err := o.Commit(); err != nil {
		t.Fatal(err)
	}
	if got := len(base.batches); got != 2 {
		t.Errorf("ApplyBatch calls after empty Commit = %d, want 2", got)
	}
}

func TestOverlayBaseErrors(t *testing.T) {
	boom := errors.New("boom")
	o := state.NewOverlay(failingKV{boom})
	if _, _, err := o.Get([]byte("k")); !errors.Is(err, boom) {
		t.Errorf("Get error = %v, want boom", err)
	}
	if _, err := o.Range(nil, nil); !errors.Is(err, boom) {
		t.Errorf("Range error = %v, want boom", err)
	}
	if _, err := o.PrefixScan([]byte("a")); !errors.Is(err, boom) {
		t.Errorf("PrefixScan error = %v, want boom", err)
	}
	// Pending keys are answered without the base.
	fill(t, o, "k", "v")
	if got, ok, err := o.Get([]byte("k")); err != nil || !ok || string(got) != "v" {
		t.Errorf("Get(pending) = %q, %v, %v; want %q, true, nil", got, ok, err, "v")
	}
	if err := o.Delete([]byte("a")); err != nil {
		t.Fatal(err)
	}
	err := o.Commit()
	if !errors.Is(err, boom) || err.Error() != `state: overlay commit: key "a": boom` {
		t.Errorf("Commit error = %v, want wrapped boom for key a", err)
	}
	if got := o.Pending(); got != 2 {
		t.Errorf("Pending() after failed Commit = %d, want 2 (kept)", got)
	}
}

// errIterKV is a KV whose iterators yield the pairs of a MemKV and then fail.
type errIterKV struct {
	state.KV
	err error
}

func (e errIterKV) Range(start, end []byte) (state.Iterator, error) {
	it, err := e.KV.Range(start, end)
	return &errIter{Iterator: it, err: e.err}, err
}

func (e errIterKV) PrefixScan(prefix []byte) (state.Iterator, error) {
	it, err := e.KV.PrefixScan(prefix)
	return &errIter{Iterator: it, err: e.err}, err
}

type errIter struct {
	state.Iterator
	err    error
	failed bool
}

func (i *errIter) Next() bool {
	if i.failed || !i.Iterator.Next() {
		i.failed = true
		return false
	}
	return true
}

func (i *errIter) Err() error {
	if i.failed {
		return i.err
	}
	return nil
}

func (i *errIter) Close() error {
	_ = i.Iterator.Close()
	return i.Err()
}

func TestOverlayIteratorBaseError(t *testing.T) {
	boom := errors.New("boom")
	mem := state.NewMemKV()
	fill(t, mem, "b", "1", "d", "2")
	o := state.NewOverlay(errIterKV{KV: mem, err: boom})
	fill(t, o, "a", "p", "c", "p", "e", "p")
	for _, name := range []string{"Range", "PrefixScan"} {
		var it state.Iterator
		var err error
		if name == "Range" {
			it, err = o.Range(nil, nil)
		} else {
			it, err = o.PrefixScan(nil)
		}
		if err != nil {
			t.Fatal(err)
		}
		var got []string
		for it.Next() {
			got = append(got, fmt.Sprintf("%s=%s", it.Key(), it.Value()))
		}
		// The base fails when it runs out after d: the pending e must not be
		// returned as if the base had ended normally.
		if want := []string{"a=p", "b=1", "c=p", "d=2"}; !slices.Equal(got, want) {
			t.Errorf("%s before the error = %q, want %q", name, got, want)
		}
		if err := it.Err(); !errors.Is(err, boom) {
			t.Errorf("%s Err() = %v, want boom", name, err)
		}
		if err := it.Close(); !errors.Is(err, boom) {
			t.Errorf("%s Close() = %v, want boom", name, err)
		}
	}
}

// TestOverlayModel runs random operations on an overlay and on a plain KV
// (the model) and compares every read: without a cache, with a cache that
// holds everything, and with one so small that it evicts all the time. The
// narrow runs use a small key space that includes the empty key, 0x00 and
// 0xff; the wide ones add thousands of keys, some longer than a table slot
// holds inline, and values too long to inline, so the overlay's table
// grows and rehashes while keys are pending and unapplied.
func TestOverlayModel(t *testing.T) {
	for _, wide := range []bool{false, true} {
		evictAt := int64(300) // a handful of entries
		name := ""
		if wide {
			evictAt, name = 50_000, "wide/"
		}
		for _, c := range []struct {
			name  string
			limit int64 // 0: no cache
		}{{"uncached", 0}, {"cached", 1 << 20}, {"evicting", evictAt}} {
			t.Run(name+c.name, func(t *testing.T) {
				base := state.NewMemKV()
				o, b := state.NewOverlay(base), (*state.CacheBudget)(nil)
				if c.limit > 0 {
					b = state.NewCacheBudget(c.limit)
					o = state.NewCachedOverlay(base, b)
				}
				testOverlayModel(t, base, o, b, c.limit, wide)
			})
		}
	}
}

func testOverlayModel(t *testing.T, base state.KV, o *state.Overlay, budget *state.CacheBudget, limit int64, wide bool) {
	rng := rand.New(rand.NewPCG(1, 2))
	alphabet := []byte{0x00, 'a', 'b', 0xff}
	randKey := func() []byte {
		if wide {
			switch rng.IntN(4) {
			case 0:
				return fmt.Appendf(nil, "k%d", rng.IntN(3000))
			case 1:
				return fmt.Appendf(nil, "a-rather-long-key-%d", rng.IntN(500))
			}
		}
		k := make([]byte, rng.IntN(4))
		for i := range k {
			k[i] = alphabet[rng.IntN(len(alphabet))]
		}
		return k
	}
	randValue := func(step int) []byte {
		if wide && rng.IntN(3) == 0 {
			return fmt.Appendf(nil, "%s%d", strings.Repeat("v", 40), step)
		}
		return fmt.Appendf(nil, "v%d", step)
	}
	steps := 5000
	if wide {
		steps = 8000
	}
	maybeNil := func(k []byte) []byte {
		if rng.IntN(5) == 0 {
			return nil
		}
		return k
	}
	model, committed := state.NewMemKV(), state.NewMemKV()
	// handed holds what an apply in parts (StartApply) handed out and the
	// base has not had yet.
	var handed []state.Write
	applying, allHanded := false, false
	applyHanded := func() {
		applyWrites(t, base, handed)
		handed, applying = nil, false
	}
	for step := range steps {
		if budget != nil && budget.Used()-budget.Unapplied() > limit {
			t.Fatalf("step %d: cache uses %d bytes (%d unapplied), over its budget", step, budget.Used(), budget.Unapplied())
		}
		// A prefetch, of any key and on an empty table too, changes
		// nothing the model would not show.
		o.Prefetch(randKey())
		switch op := rng.IntN(100); {
		case op < 40:
			k, v := randKey(), randValue(step)
			if err := o.Put(k, v); err != nil {
				t.Fatal(err)
			}
			if err := model.Put(k, v); err != nil {
				t.Fatal(err)
			}
		case op < 60:
			k := randKey()
			if err := o.Delete(k); err != nil {
				t.Fatal(err)
			}
			if err := model.Delete(k); err != nil {
				t.Fatal(err)
			}
		case op < 70:
			k := randKey()
			got, gotOK, err1 := o.Get(k)
			want, wantOK, err2 := model.Get(k)
			if err1 != nil || err2 != nil || gotOK != wantOK || string(got) != string(want) {
				t.Fatalf("step %d: Get(%q) = %q, %v, %v; model %q, %v, %v", step, k, got, gotOK, err1, want, wantOK, err2)
			}
			view, viewOK, err3 := o.GetView(k)
			if err3 != nil || viewOK != wantOK || string(view) != string(want) {
				t.Fatalf("step %d: GetView(%q) = %q, %v, %v; model %q, %v", step, k, view, viewOK, err3, want, wantOK)
			}
		case op < 80:
			start, end := maybeNil(randKey()), maybeNil(randKey())
			it1, _ := o.Range(start, end)
			it2, _ := model.Range(start, end)
			if got, want := collect(t, it1), collect(t, it2); !slices.Equal(got, want) {
				t.Fatalf("step %d: Range(%q, %q) = %q, model %q", step, start, end, got, want)
			}
		case op < 90:
			p := maybeNil(randKey())
			it1, _ := o.PrefixScan(p)
			it2, _ := model.PrefixScan(p)
			if got, want := collect(t, it1), collect(t, it2); !slices.Equal(got, want) {
				t.Fatalf("step %d: PrefixScan(%q) = %q, model %q", step, p, got, want)
			}
		case op < 92:
			applyHanded()
			if err := o.Commit(); err != nil {
				t.Fatal(err)
			}
			if got, want := contents(t, base), contents(t, model); !slices.Equal(got, want) {
				t.Fatalf("step %d: base after Commit = %q, model %q", step, got, want)
			}
			if o.Pending() != 0 || o.Unapplied() != 0 {
				t.Fatalf("step %d: %d pending, %d unapplied after Commit", step, o.Pending(), o.Unapplied())
			}
			committed = copyKV(t, model)
		case op < 95:
			// The runtime's way: commit now, apply later (possibly after
			// more commits).
			o.Committed()
			if o.Pending() != 0 {
				t.Fatalf("step %d: %d pending writes after Committed", step, o.Pending())
			}
			committed = copyKV(t, model)
		case op < 97 && rng.IntN(3) > 0:
			// ... or in parts, one step at a time between other reads,
			// writes and commits: start, hand out a few keys at a time,
			// and once every key is handed out, apply them and end.
			switch {
			case !applying:
				o.StartApply()
				applying, allHanded = true, false
			case !allHanded:
				handed, allHanded = o.TakeApplyPart(handed, partSize(rng, 4))
			default:
				applyHanded()
				o.EndApply()
				applying = false
			}
		case op < 97:
			// ... then apply the unapplied values to the base itself, in no
			// particular order (after what an apply in parts handed out).
			applyHanded()
			applyWrites(t, base, o.TakeUnapplied())
			if o.Unapplied() != 0 {
				t.Fatalf("step %d: %d unapplied after TakeUnapplied", step, o.Unapplied())
			}
			if got, want := contents(t, base), contents(t, committed); !slices.Equal(got, want) {
				t.Fatalf("step %d: base after TakeUnapplied = %q, committed %q", step, got, want)
			}
		default:
			o.Discard()
			model = copyKV(t, committed)
		}
	}
}

// partSize is how many keys a test's TakeApplyPart asks for: 1 to most,
// or, one time in eight, the rest at once.
func partSize(rng *rand.Rand, most int) int {
	if rng.IntN(8) == 0 {
		return math.MaxInt
	}
	return 1 + rng.IntN(most)
}

// applyWrites applies ws to kv in order.
func applyWrites(t *testing.T, kv state.KV, ws []state.Write) {
	t.Helper()
	for _, w := range ws {
		var err error
		if w.Delete {
			err = kv.Delete(w.Key)
		} else {
			err = kv.Put(w.Key, w.Value)
		}
		if err != nil {
			t.Fatal(err)
		}
	}
}

// copyKV returns a MemKV with kv's contents.
func copyKV(t *testing.T, kv state.KV) state.KV {
	t.Helper()
	c := state.NewMemKV()
	it, _ := kv.Range(nil, nil)
	for it.Next() {
		if err := c.Put(it.Key(), it.Value()); err != nil {
			t.Fatal(err)
		}
	}
	if err := it.Close(); err != nil {
		t.Fatal(err)
	}
	return c
}

// countingKV counts the Gets that reach it.
type countingKV struct {
	state.KV
	gets int
}

func (c *countingKV) Get(key []byte) ([]byte, bool, error) {
	c.gets++
	return c.KV.Get(key)
}

func TestOverlayCache(t *testing.T) {
	mem := state.NewMemKV()
	fill(t, mem, "a", "1")
	base := &countingKV{KV: mem}
	budget := state.NewCacheBudget(1 << 10)
	o := state.NewCachedOverlay(base, budget)
	get := func(key, want string, wantOK bool) {
		t.Helper()
		got, ok, err := o.Get([]byte(key))
		if err != nil || ok != wantOK || string(got) != want {
			t.Fatalf("Get(%q) = %q, %v, %v; want %q, %v", key, got, ok, err, want, wantOK)
		}
	}
	// A value read once, and an absent key, are answered from the cache.
	get("a", "1", true)
	get("a", "1", true)
	get("x", "", false)
	get("x", "", false)
	if base.gets != 2 {
		t.Fatalf("base saw %d Gets, want 2 (one per key)", base.gets)
	}
	// Returned values are the caller's.
	v, _, _ := o.Get([]byte("a"))
	v[0] = 'X'
	get("a", "1", true)
	// Committed writes are cached without touching the base.
	if err := o.Put([]byte("x"), []byte("2")); err != nil {
		t.Fatal(err)
	}
	if err := o.Delete([]byte("a")); err != nil {
		t.Fatal(err)
	}
	o.Committed()
	get("x", "2", true)
	get("a", "", false)
	if ws := o.TakeUnapplied(); len(ws) != 2 {
		t.Fatalf("TakeUnapplied = %v, want the two committed writes", ws)
	}
	get("x", "2", true)
	get("a", "", false)
	if base.gets != 2 {
		t.Fatalf("base saw %d Gets after Committed, want still 2", base.gets)
	}
	// Discarded writes never reach the cache.
	if err := o.Put([]byte("x"), []byte("3")); err != nil {
		t.Fatal(err)
	}
	o.Discard()
	get("x", "2", true)
	// A write to the base behind the overlay's back is seen only after
	// ResetCache, which also returns the cache's memory.
	if err := mem.Put([]byte("x"), []byte("9")); err != nil {
		t.Fatal(err)
	}
	get("x", "2", true)
	if budget.Used() == 0 {
		t.Fatal("budget reports nothing used with cached entries")
	}
	o.ResetCache()
	if budget.Used() != 0 {
		t.Fatalf("budget reports %d bytes used after ResetCache, want 0", budget.Used())
	}
	get("x", "9", true)
	if base.gets != 3 {
		t.Fatalf("base saw %d Gets, want 3", base.gets)
	}
	// Filling the cache past its budget evicts: memory stays bounded and
	// every key still reads right.
	for i := range 200 {
		k := fmt.Appendf(nil, "k%03d", i)
		if err := o.Put(k, k); err != nil {
			t.Fatal(err)
		}
		if err := o.Commit(); err != nil {
			t.Fatal(err)
		}
		if budget.Used() > 1<<10 {
			t.Fatalf("after %d keys the cache uses %d bytes, over its 1024", i+1, budget.Used())
		}
	}
	before := base.gets
	for i := range 200 {
		k := fmt.Sprintf("k%03d", i)
		get(k, k, true)
	}
	if base.gets == before {
		t.Fatal("200 keys in a 1 KiB cache: expected some Gets to miss it")
	}
}

func TestOverlayUnlogged(t *testing.T) {
	o := state.NewOverlay(state.NewMemKV())
	take := func() []string { return writesOf(o.TakeUnlogged(nil)) }
	if got := take(); len(got) != 0 {
		t.Fatalf("TakeUnlogged on an empty overlay = %q", got)
	}
	write := func(op, key, val string) {
		t.Helper()
		var err error
		if op == "put" {
			err = o.Put([]byte(key), []byte(val))
		} else {
			err = o.Delete([]byte(key))
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	write("put", "a", "1")
	write("put", "b", "2")
	write("put", "a", "3") // rewritten before the take: once, latest value
	if got, want := take(), []string{"a=3", "b=2"}; !slices.Equal(got, want) {
		t.Fatalf("TakeUnlogged = %q, want %q", got, want)
	}
	if got := take(); len(got) != 0 {
		t.Fatalf("second TakeUnlogged = %q, want nothing new", got)
	}
	write("del", "c", "")
	write("del", "b", "") // logged before: handed out again
	write("put", "a", "4")
	write("put", "a", "5")
	if got, want := take(), []string{"c!", "b!", "a=5"}; !slices.Equal(got, want) {
		t.Fatalf("TakeUnlogged = %q, want %q", got, want)
	}
	if o.Pending() != 3 {
		t.Fatalf("Pending = %d, want 3", o.Pending())
	}
	// Handed-out slices stay valid when the key is written again.
	write("put", "d", "6")
	handed := o.TakeUnlogged(nil)
	write("put", "d", "7")
	if got, want := writesOf(handed), []string{"d=6"}; !slices.Equal(got, want) {
		t.Fatalf("handed-out write became %q, want %q", got, want)
	}
	o.Discard()
	if got := take(); len(got) != 0 {
		t.Fatalf("TakeUnlogged after Discard = %q, want nothing", got)
	}
	write("put", "a", "7")
	o.Committed()
	if got := take(); len(got) != 0 {
		t.Fatalf("TakeUnlogged after Committed = %q, want nothing", got)
	}
	write("put", "a", "8")
	if got, want := take(), []string{"a=8"}; !slices.Equal(got, want) {
		t.Fatalf("TakeUnlogged after the next write = %q, want %q", got, want)
	}
}

// TestOverlayHandedOutValuesStay checks that committed values handed out by
// TakeUnapplied and by an iterator's snapshot do not change when the keys
// are committed again (small values live inside the overlay's entries).
func TestOverlayHandedOutValuesStay(t *testing.T) {
	for _, cached := range []bool{false, true} {
		base := state.NewMemKV()
		o := state.NewOverlay(base)
		if cached {
			o = state.NewCachedOverlay(base, state.NewCacheBudget(1<<20))
		}
		long := strings.Repeat("x", 40) // not inline
		put := func(k, v string) {
			t.Helper()
			if err := o.Put([]byte(k), []byte(v)); err != nil {
				t.Fatal(err)
			}
		}
		put("a", "1")
		put("b", long)
		o.Committed()
		it, err := o.Range(nil, nil) // snapshot of the unapplied values
		if err != nil {
			t.Fatal(err)
		}
		taken := o.TakeUnapplied()
		put("a", "2")
		put("b", "3")
		o.Committed()
		if got, want := writesOf(taken), []string{"a=1", "b=" + long}; !slices.Equal(got, want) {
			t.Fatalf("cached=%v: TakeUnapplied result became %q after a later commit, want %q", cached, got, want)
		}
		if got, want := collect(t, it), []string{"a=1", "b=" + long}; !slices.Equal(got, want) {
			t.Fatalf("cached=%v: iterator saw %q, want the snapshot %q", cached, got, want)
		}
		v, ok, err := o.Get([]byte("a"))
		if err != nil || !ok || string(v) != "2" {
			t.Fatalf("cached=%v: Get(a) = %q, %v, %v; want 2", cached, v, ok, err)
		}
	}
}

// TestOverlayEvictionSharedBudget: two overlays share a budget that the
// other one's cached values fill. The overlay whose keys are all pending
// or unapplied has nothing to drop, so its writes and cache misses must
// not walk its table each time looking for something (a million-key
// state run once spent 86% of its CPU doing that).
func TestOverlayEvictionSharedBudget(t *testing.T) {
	b := state.NewCacheBudget(1 << 20)
	baseA, baseB := state.NewMemKV(), state.NewMemKV()
	for i := range 20_000 {
		if err := baseB.Put(fmt.Appendf(nil, "b%06d", i), []byte("v")); err != nil {
			t.Fatal(err)
		}
	}
	a, other := state.NewCachedOverlay(baseA, b), state.NewCachedOverlay(baseB, b)
	// a: a few thousand committed, unapplied keys.
	for i := range 3000 {
		if err := a.Put(fmt.Appendf(nil, "a%06d", i), []byte("x")); err != nil {
			t.Fatal(err)
		}
	}
	a.Committed()
	// other: more cached values than the budget holds, so it keeps
	// between seven eighths of the limit and the limit.
	for i := range 20_000 {
		if _, _, err := other.Get(fmt.Appendf(nil, "b%06d", i)); err != nil {
			t.Fatal(err)
		}
	}
	if b.Used() < b.Limit()-b.Limit()/8 {
		t.Fatalf("the budget holds %d bytes of %d; the test needs it full", b.Used(), b.Limit())
	}
	before := state.EvictScanned(a)
	const ops = 5000
	for i := range ops {
		k := fmt.Appendf(nil, "n%06d", i)
		if _, ok, err := a.Get(k); err != nil || ok {
			t.Fatalf("Get(%q) = %v, %v; want absent", k, ok, err)
		}
		if err := a.Put(k, []byte("y")); err != nil {
			t.Fatal(err)
		}
	}
	if n := state.EvictScanned(a) - before; n > ops {
		t.Fatalf("%d cache misses and writes made eviction visit %d slots; want at most one per operation", 2*ops, n)
	}
	// What a may drop it still drops: once its keys are applied, it
	// makes room when it caches more.
	a.Committed()
	for _, w := range a.TakeUnapplied() {
		if err := baseA.Put(w.Key, w.Value); err != nil {
			t.Fatal(err)
		}
	}
	if _, ok, err := a.Get([]byte("a000001")); err != nil || !ok {
		t.Fatalf("Get(a000001) after apply = %v, %v", ok, err)
	}
	if b.Used()-b.Unapplied() > b.Limit() {
		t.Fatalf("cache uses %d bytes (%d unapplied), over its limit %d", b.Used(), b.Unapplied(), b.Limit())
	}
}

// TestOverlayTableChurn streams new keys through a cached overlay whose
// budget holds about 9,000 of them, so every new key evicts an old one
// and leaves a tombstone. Its table must stay at the 16,384 slots that
// hold them under 70% load, rebuilt at that size when tombstones fill
// it, not doubled (as a rule of room for twice the live keys would).
func TestOverlayTableChurn(t *testing.T) {
	base := state.NewMemKV()
	o := state.NewCachedOverlay(base, state.NewCacheBudget(1_300_000))
	maxLive := 0
	for i := range 100_000 {
		k := fmt.Appendf(nil, "k%06d", i)
		if _, ok, err := o.Get(k); err != nil || ok {
			t.Fatalf("Get(%q) = %v, %v; want absent", k, ok, err)
		}
		if err := o.Put(k, []byte("1")); err != nil {
			t.Fatal(err)
		}
		if i%100 == 99 {
			o.Committed()
			for _, w := range o.TakeUnapplied() {
				if err := base.Put(w.Key, w.Value); err != nil {
					t.Fatal(err)
				}
			}
		}
		_, live := state.TableSize(o)
		maxLive = max(maxLive, live)
	}
	slots, _ := state.TableSize(o)
	// The test's premise: more live keys than half of 16,384 slots (the
	// old rule doubled from there) and at most five eighths of them.
	if maxLive <= 8192 || maxLive > 10240 {
		t.Fatalf("at most %d keys were in the table; the test needs 8,193-10,240", maxLive)
	}
	if slots != 16384 {
		t.Fatalf("the table has %d slots for at most %d keys; want 16384", slots, maxLive)
	}
}

// TestOverlayApplyInParts runs an apply in parts (StartApply,
// TakeApplyPart, EndApply) across writes, commits, discards and reads, and
// checks after every step that the base, plus what was handed out and not
// applied yet, plus the overlay's unapplied values, is what was committed:
// a key written again after its value was handed out must stay unapplied.
func TestOverlayApplyInParts(t *testing.T) {
	for _, limit := range []int64{0, 1 << 20, 2000} {
		t.Run(fmt.Sprintf("cache=%d", limit), func(t *testing.T) {
			rng := rand.New(rand.NewPCG(3, 4))
			base := state.NewMemKV()
			o := state.NewOverlay(base)
			if limit > 0 {
				o = state.NewCachedOverlay(base, state.NewCacheBudget(limit))
			}
			model, committed := state.NewMemKV(), state.NewMemKV()
			var handed []state.Write
			applying, allHanded, ends := false, false, 0
			for step := range 3000 {
				k := fmt.Appendf(nil, "k%02d", rng.IntN(60))
				switch op := rng.IntN(100); {
				case op < 45:
					v := fmt.Appendf(nil, "v%d", step)
					_ = o.Put(k, v)
					_ = model.Put(k, v)
				case op < 50:
					_ = o.Delete(k)
					_ = model.Delete(k)
				case op < 65:
					got, gotOK, _ := o.Get(k)
					want, wantOK, _ := model.Get(k)
					if gotOK != wantOK || string(got) != string(want) {
						t.Fatalf("step %d: Get(%q) = %q, %v; model %q, %v", step, k, got, gotOK, want, wantOK)
					}
				case op < 75:
					o.Committed()
					committed = copyKV(t, model)
				case op < 78:
					o.Discard()
					model = copyKV(t, committed)
				case !applying:
					if o.StartApply() > 0 {
						applying, allHanded = true, false
					}
				case !allHanded:
					handed, allHanded = o.TakeApplyPart(handed, partSize(rng, 8))
				default:
					applyWrites(t, base, handed)
					handed, applying = nil, false
					o.EndApply()
					ends++
					if limit == 0 {
						// Without a cache the overlay knows only the
						// pending and the unapplied keys.
						known := map[string]bool{}
						for _, ws := range [][]state.Write{o.UnorderedWrites(), state.UnappliedWrites(o)} {
							for _, w := range ws {
								known[string(w.Key)] = true
							}
						}
						if _, live := state.TableSize(o); live != len(known) {
							t.Fatalf("step %d: no cache, %d keys in the table after EndApply, want %d (pending or unapplied)", step, live, len(known))
						}
					}
				}
				seen := copyKV(t, base)
				applyWrites(t, seen, handed)
				applyWrites(t, seen, state.UnappliedWrites(o))
				if got, want := contents(t, seen), contents(t, committed); !slices.Equal(got, want) {
					t.Fatalf("step %d: base, handed-out and unapplied values = %q, committed %q", step, got, want)
				}
			}
			if ends < 20 {
				t.Fatalf("only %d applies in parts ended, want at least 20", ends)
			}
		})
	}
}
