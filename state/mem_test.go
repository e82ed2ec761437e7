package state_test

import (
	"bytes"
	"fmt"
	"slices"
	"testing"

	"github.com/onceflow/onceflow/state"
)

// collect drains it into "key=value" strings and closes it.
func collect(t *testing.T, it state.Iterator) []string {
	t.Helper()
	var got []string
	for it.Next() {
		got = append(got, fmt.Sprintf("%s=%s", it.Key(), it.Value()))
	}
	if err := it.Err(); err != nil {
		t.Fatalf("Err() = %v", err)
	}
	if err := it.Close(); err != nil {
		t.Fatalf("Close() = %v", err)
	}
	return got
}

func fill(t *testing.T, kv state.KV, pairs ...string) {
	t.Helper()
	for i := 0; i < len(pairs); i += 2 {
		if err := kv.Put([]byte(pairs[i]), []byte(pairs[i+1])); err != nil {
			t.Fatalf("Put(%q) = %v", pairs[i], err)
		}
	}
}

func TestMemKVGetPutDelete(t *testing.T) {
	kv := state.NewMemKV()
	fill(t, kv, "b", "2", "a", "1", "c", "3", "b", "22")
	if err := kv.Delete([]byte("c")); err != nil {
		t.Fatal(err)
	}
	if err := kv.Delete([]byte("missing")); err != nil {
		t.Fatalf("Delete(missing) = %v, want nil", err)
	}
	tests := []struct {
		key    string
		want   string
		wantOK bool
	}{
		{"a", "1", true},
		{"b", "22", true},
		{"c", "", false},
		{"zz", "", false},
	}
	for _, tt := range tests {
		got, ok, err := kv.Get([]byte(tt.key))
		if err != nil || ok != tt.wantOK || string(got) != tt.want {
			t.Errorf("Get(%q) = %q, %v, %v; want %q, %v, nil", tt.key, got, ok, err, tt.want, tt.wantOK)
		}
	}
	all, _ := kv.Range(nil, nil)
	if got, want := collect(t, all), []string{"a=1", "b=22"}; !slices.Equal(got, want) {
		t.Errorf("contents = %q, want %q", got, want)
	}
}

func TestMemKVCopies(t *testing.T) {
	kv := state.NewMemKV()
	key, val := []byte("k"), []byte("v1")
	fill(t, kv, "k", "v1")
	if err := kv.Put(key, val); err != nil {
		t.Fatal(err)
	}
	key[0], val[0] = 'X', 'X' // caller reuses its buffers
	got, _, _ := kv.Get([]byte("k"))
	if string(got) != "v1" {
		t.Fatalf("Get after caller mutation = %q, want %q", got, "v1")
	}
	got[0] = 'Y' // caller owns the returned value
	again, _, _ := kv.Get([]byte("k"))
	if string(again) != "v1" {
		t.Fatalf("Get after mutating returned value = %q, want %q", again, "v1")
	}
	it, _ := kv.Range(nil, nil)
	if !it.Next() {
		t.Fatal("Next() = false")
	}
	it.Value()[0] = 'Z' // forbidden by contract, but must not corrupt the store
	_ = it.Close()
	again, _, _ = kv.Get([]byte("k"))
	if string(again) != "v1" {
		t.Fatalf("Get after mutating iterator value = %q, want %q", again, "v1")
	}
}

func TestMemKVEmptyValue(t *testing.T) {
	kv := state.NewMemKV()
	if err := kv.Put([]byte("k"), nil); err != nil {
		t.Fatal(err)
	}
	got, ok, err := kv.Get([]byte("k"))
	if err != nil || !ok || len(got) != 0 {
		t.Fatalf("Get = %q, %v, %v; want empty, true, nil", got, ok, err)
	}
}

func TestMemKVRange(t *testing.T) {
	kv := state.NewMemKV()
	fill(t, kv, "a", "1", "ab", "2", "b", "3", "ba", "4", "c", "5")
	tests := []struct {
		name       string
		start, end []byte
		want       []string
	}{
		{"unbounded", nil, nil, []string{"a=1", "ab=2", "b=3", "ba=4", "c=5"}},
		{"from b", []byte("b"), nil, []string{"b=3", "ba=4", "c=5"}},
		{"to b exclusive", nil, []byte("b"), []string{"a=1", "ab=2"}},
		{"between keys", []byte("aa"), []byte("bb"), []string{"ab=2", "b=3", "ba=4"}},
		{"empty start is first key", []byte{}, []byte("ab"), []string{"a=1"}},
		{"start equals end", []byte("b"), []byte("b"), nil},
		{"start after end", []byte("c"), []byte("a"), nil},
		{"past the end", []byte("d"), nil, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			it, err := kv.Range(tt.start, tt.end)
			if err != nil {
				t.Fatal(err)
			}
			if got := collect(t, it); !slices.Equal(got, tt.want) {
				t.Errorf("Range(%q, %q) = %q, want %q", tt.start, tt.end, got, tt.want)
			}
		})
	}
}

func TestMemKVPrefixScan(t *testing.T) {
	kv := state.NewMemKV()
	fill(t, kv, "a", "1", "ab", "2", "abc", "3", "ac", "4", "b", "5",
		"\xff", "6", "\xff\xff", "7", "\xff\xffa", "8")
	tests := []struct {
		prefix string
		want   []string
	}{
		{"ab", []string{"ab=2", "abc=3"}},
		{"a", []string{"a=1", "ab=2", "abc=3", "ac=4"}},
		{"abcd", nil},
		{"", []string{"a=1", "ab=2", "abc=3", "ac=4", "b=5", "\xff=6", "\xff\xff=7", "\xff\xffa=8"}},
		{"\xff\xff", []string{"\xff\xff=7", "\xff\xffa=8"}},
	}
	for _, tt := range tests {
		it, err := kv.PrefixScan([]byte(tt.prefix))
		if err != nil {
			t.Fatal(err)
		}
		if got := collect(t, it); !slices.Equal(got, tt.want) {
			t.Errorf("PrefixScan(%q) = %q, want %q", tt.prefix, got, tt.want)
		}
	}
}

func TestMemKVIteratorSnapshot(t *testing.T) {
	kv := state.NewMemKV()
	fill(t, kv, "a", "1", "b", "2", "c", "3")
	it, _ := kv.Range(nil, nil)
	if !it.Next() || !bytes.Equal(it.Key(), []byte("a")) {
		t.Fatalf("first key = %q, want %q", it.Key(), "a")
	}
	// Writes during iteration do not change what the iterator sees.
	fill(t, kv, "bb", "x", "c", "33")
	if err := kv.Delete([]byte("b")); err != nil {
		t.Fatal(err)
	}
	var got []string
	for it.Next() {
		got = append(got, fmt.Sprintf("%s=%s", it.Key(), it.Value()))
	}
	_ = it.Close()
	if want := []string{"b=2", "c=3"}; !slices.Equal(got, want) {
		t.Errorf("rest of iteration = %q, want %q", got, want)
	}
	if it.Next() {
		t.Error("Next() after Close = true, want false")
	}
	all, _ := kv.Range(nil, nil)
	if got, want := collect(t, all), []string{"a=1", "bb=x", "c=33"}; !slices.Equal(got, want) {
		t.Errorf("contents after writes = %q, want %q", got, want)
	}
}
