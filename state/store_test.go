package state_test

import (
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"testing"

	"github.com/onceflow/onceflow/state"
)

type stringCodec struct{}

func (stringCodec) Serialize(v string) ([]byte, error)   { return []byte(v), nil }
func (stringCodec) Deserialize(b []byte) (string, error) { return string(b), nil }

type uint64Codec struct{}

func (uint64Codec) Serialize(v uint64) ([]byte, error) {
	return binary.BigEndian.AppendUint64(nil, v), nil
}

func (uint64Codec) Deserialize(b []byte) (uint64, error) {
	if len(b) != 8 {
		return 0, fmt.Errorf("want 8 bytes, got %d", len(b))
	}
	return binary.BigEndian.Uint64(b), nil
}

// decimalCodec stores ints as decimal text and rejects keys it cannot encode.
type decimalCodec struct{}

func (decimalCodec) Serialize(v int) ([]byte, error) {
	if v < 0 {
		return nil, errors.New("negative")
	}
	return []byte(strconv.Itoa(v)), nil
}

func (decimalCodec) Deserialize(b []byte) (int, error) { return strconv.Atoi(string(b)) }

func drain[K, V any](t *testing.T, it state.KeyValueIterator[K, V]) []string {
	t.Helper()
	var got []string
	for it.Next() {
		got = append(got, fmt.Sprintf("%v=%v", it.Key(), it.Value()))
	}
	if err := it.Close(); err != nil {
		t.Fatalf("Close() = %v", err)
	}
	return got
}

func TestKeyValueStore(t *testing.T) {
	kv := state.NewMemKV()
	s := state.NewKeyValueStore[string, uint64]("counts", kv, stringCodec{}, uint64Codec{})
	if s.Name() != "counts" {
		t.Fatalf("Name() = %q, want %q", s.Name(), "counts")
	}
	for _, p := range []struct {
		k string
		v uint64
	}{{"user:b", 2}, {"user:a", 1}, {"item:x", 10}, {"user:c", 3}, {"zeta", 26}} {
		if err := s.Put(p.k, p.v); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Delete("user:c"); err != nil {
		t.Fatal(err)
	}

	v, ok, err := s.Get("user:b")
	if err != nil || !ok || v != 2 {
		t.Fatalf("Get(user:b) = %d, %v, %v; want 2, true, nil", v, ok, err)
	}
	v, ok, err = s.Get("user:c")
	if err != nil || ok || v != 0 {
		t.Fatalf("Get(user:c) = %d, %v, %v; want 0, false, nil", v, ok, err)
	}
	raw, _, _ := kv.Get([]byte("item:x"))
	if want := []byte{0, 0, 0, 0, 0, 0, 0, 10}; !slices.Equal(raw, want) {
		t.Fatalf("raw bytes of item:x = %v, want %v", raw, want)
	}

	all, err := s.All()
	if err != nil {
		t.Fatal(err)
	}
	if got, want := drain(t, all), []string{"item:x=10", "user:a=1", "user:b=2", "zeta=26"}; !slices.Equal(got, want) {
		t.Errorf("All() = %q, want %q", got, want)
	}
	rng, err := s.Range("user:", "user:b")
	if err != nil {
		t.Fatal(err)
	}
	if got, want := drain(t, rng), []string{"user:a=1"}; !slices.Equal(got, want) {
		t.Errorf("Range(user:, user:b) = %q, want %q", got, want)
	}
	// The zero string serializes to an empty (not unbounded) lower bound.
	rng, err = s.Range("", "user:a")
	if err != nil {
		t.Fatal(err)
	}
	if got, want := drain(t, rng), []string{"item:x=10"}; !slices.Equal(got, want) {
		t.Errorf("Range(\"\", user:a) = %q, want %q", got, want)
	}
	pfx, err := s.PrefixScan("user:")
	if err != nil {
		t.Fatal(err)
	}
	if got, want := drain(t, pfx), []string{"user:a=1", "user:b=2"}; !slices.Equal(got, want) {
		t.Errorf("PrefixScan(user:) = %q, want %q", got, want)
	}
}

func TestKeyValueStoreDecodeErrors(t *testing.T) {
	kv := state.NewMemKV()
	fill(t, kv, "1", "10", "2", "20", "3", "bad", "4", "40")
	s := state.NewKeyValueStore[int, int]("nums", kv, decimalCodec{}, decimalCodec{})

	_, _, err := s.Get(3)
	if want := `state: store "nums": deserialize value: strconv.Atoi: parsing "bad": invalid syntax`; err == nil || err.Error() != want {
		t.Fatalf("Get(3) error = %v, want %s", err, want)
	}
	if !errors.Is(err, strconv.ErrSyntax) {
		t.Errorf("Get(3) error does not wrap strconv.ErrSyntax")
	}

	it, err := s.All()
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for it.Next() {
		got = append(got, fmt.Sprintf("%d=%d", it.Key(), it.Value()))
	}
	if want := []string{"1=10", "2=20"}; !slices.Equal(got, want) {
		t.Errorf("pairs before decode error = %q, want %q", got, want)
	}
	want := `state: store "nums": deserialize value: strconv.Atoi: parsing "bad": invalid syntax`
	if err := it.Err(); err == nil || err.Error() != want {
		t.Errorf("Err() = %v, want %s", err, want)
	}
	if it.Next() {
		t.Error("Next() after decode error = true, want false")
	}
	if err := it.Close(); err == nil || err.Error() != want {
		t.Errorf("Close() = %v, want %s", err, want)
	}

	err = s.Put(-1, 1)
	if want := `state: store "nums": serialize key: negative`; err == nil || err.Error() != want {
		t.Errorf("Put(-1) error = %v, want %s", err, want)
	}
	err = s.Put(1, -1)
	if want := `state: store "nums": serialize value: negative`; err == nil || err.Error() != want {
		t.Errorf("Put(1, -1) error = %v, want %s", err, want)
	}
	_, err = s.Range(-1, 2)
	if want := `state: store "nums": serialize key: negative`; err == nil || err.Error() != want {
		t.Errorf("Range(-1, 2) error = %v, want %s", err, want)
	}
}

// failingKV fails every operation, to check that errors are wrapped.
type failingKV struct{ err error }

func (f failingKV) Get([]byte) ([]byte, bool, error)          { return nil, false, f.err }
func (f failingKV) Put(_, _ []byte) error                     { return f.err }
func (f failingKV) Delete([]byte) error                       { return f.err }
func (f failingKV) Range(_, _ []byte) (state.Iterator, error) { return nil, f.err }
func (f failingKV) PrefixScan([]byte) (state.Iterator, error) { return nil, f.err }

func TestKeyValueStoreKVErrors(t *testing.T) {
	boom := errors.New("boom")
	s := state.NewKeyValueStore[string, string]("s", failingKV{boom}, stringCodec{}, stringCodec{})
	_, _, getErr := s.Get("k")
	_, rangeErr := s.Range("a", "b")
	_, allErr := s.All()
	_, prefixErr := s.PrefixScan("a")
	tests := []struct {
		op   string
		err  error
		want string
	}{
		{"Get", getErr, `state: store "s": get: boom`},
		{"Put", s.Put("k", "v"), `state: store "s": put: boom`},
		{"Delete", s.Delete("k"), `state: store "s": delete: boom`},
		{"Range", rangeErr, `state: store "s": range: boom`},
		{"All", allErr, `state: store "s": range: boom`},
		{"PrefixScan", prefixErr, `state: store "s": prefix scan: boom`},
	}
	for _, tt := range tests {
		if tt.err == nil || tt.err.Error() != tt.want {
			t.Errorf("%s error = %v, want %s", tt.op, tt.err, tt.want)
		}
		if !errors.Is(tt.err, boom) {
			t.Errorf("%s error does not wrap the KV error", tt.op)
		}
	}
}
