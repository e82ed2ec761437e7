package state_test

import (
	"fmt"
	"math"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/onceflow/onceflow/state"
)

// windows drains it into "key@start=value" strings, start as an offset from
// t0 in minutes, and closes it.
func windows(t *testing.T, it state.WindowIterator[string, uint64], t0 time.Time) []string {
	t.Helper()
	got := []string{}
	for it.Next() {
		if loc := it.WindowStart().Location(); loc != time.UTC {
			t.Errorf("WindowStart() in %v, want UTC", loc)
		}
		got = append(got, fmt.Sprintf("%s@%v=%d", it.Key(), it.WindowStart().Sub(t0).Minutes(), it.Value()))
	}
	if err := it.Close(); err != nil {
		t.Fatalf("Close() = %v", err)
	}
	return got
}

func TestWindowStore(t *testing.T) {
	backends := map[string]func(t *testing.T) state.KV{
		"mem": func(*testing.T) state.KV { return state.NewMemKV() },
		"pebble": func(t *testing.T) state.KV {
			db := openMem(t, vfs.NewMem(), "app")
			t.Cleanup(func() { _ = db.Close() })
			return db.KV("windows", 3)
		},
		"overlay": func(t *testing.T) state.KV {
			db := openMem(t, vfs.NewMem(), "app")
			t.Cleanup(func() { _ = db.Close() })
			return state.NewOverlay(db.KV("windows", 3))
		},
	}
	t0 := time.Date(2026, 1, 2, 3, 4, 0, 0, time.UTC)
	m := func(n int) time.Time { return t0.Add(time.Duration(n) * time.Minute) }
	epochMinus := time.UnixMilli(-60_000) // before 1970: the sign flip keeps it first
	minT, maxT := time.UnixMilli(math.MinInt64/2), time.UnixMilli(math.MaxInt64/2)

	for name, newKV := range backends {
		t.Run(name, func(t *testing.T) {
			ws := state.NewWindowStore[string, uint64]("counts", newKV(t), stringCodec{}, uint64Codec{})
			if ws.Name() != "counts" {
				t.Errorf("Name() = %q", ws.Name())
			}
			puts := []struct {
				key   string
				start time.Time
				value uint64
			}{
				{"a", m(0), 1}, {"a", m(1), 2}, {"a", m(2), 3}, {"a", epochMinus, 4},
				{"b", m(1), 5}, {"ab", m(0), 6}, {"", m(0), 7},
				{"a", m(1), 20}, // overwrite
			}
			for _, p := range puts {
				if err := ws.Put(p.key, p.start, p.value); err != nil {
					t.Fatalf("Put(%q, %v) = %v", p.key, p.start, err)
				}
			}

			fetches := []struct {
				key   string
				start time.Time
				want  string
			}{
				{"a", m(1), "20 true"},
				{"a", m(1).Add(999 * time.Microsecond), "20 true"}, // millisecond precision
				{"a", m(3), "0 false"},
				{"ab", m(0), "6 true"},
				{"", m(0), "7 true"},
				{"c", m(0), "0 false"},
				{"a", epochMinus, "4 true"},
			}
			for _, f := range fetches {
				v, ok, err := ws.Fetch(f.key, f.start)
				if err != nil || fmt.Sprint(v, ok) != f.want {
					t.Errorf("Fetch(%q, %v) = %d, %v, %v; want %s", f.key, f.start, v, ok, err, f.want)
				}
			}

			ranges := []struct {
				name     string
				key      string
				from, to time.Time
				want     []string
			}{
				{"inclusive bounds", "a", m(0), m(1), []string{"a@0=1", "a@1=20"}},
				{"one window", "a", m(2), m(2), []string{"a@2=3"}},
				{"everything of a", "a", minT, maxT, []string{fmt.Sprintf("a@%v=4", epochMinus.Sub(t0).Minutes()), "a@0=1", "a@1=20", "a@2=3"}},
				{"not the keys a is a prefix of", "a", m(0), m(0), []string{"a@0=1"}},
				{"empty key", "", minT, maxT, []string{"@0=7"}},
				{"between windows", "a", m(1).Add(time.Second), m(2).Add(-time.Second), []string{}},
				{"to before from", "a", m(2), m(0), []string{}},
				{"absent key", "zz", minT, maxT, []string{}},
			}
			for _, r := range ranges {
				it, err := ws.FetchRange(r.key, r.from, r.to)
				if err != nil {
					t.Fatalf("%s: FetchRange() = %v", r.name, err)
				}
				if got := windows(t, it, t0); fmt.Sprint(got) != fmt.Sprint(r.want) {
					t.Errorf("%s: FetchRange(%q) = %v, want %v", r.name, r.key, got, r.want)
				}
			}

			// FetchAll orders by serialized key (length first), then start.
			it, err := ws.FetchAll(m(0), m(1))
			if err != nil {
				t.Fatal(err)
			}
			want := []string{"@0=7", "a@0=1", "a@1=20", "b@1=5", "ab@0=6"}
			if got := windows(t, it, t0); fmt.Sprint(got) != fmt.Sprint(want) {
				t.Errorf("FetchAll(0, 1) = %v, want %v", got, want)
			}

			removed, err := ws.ExpireBefore(m(1))
			if err != nil || removed != 4 {
				t.Errorf("ExpireBefore(1) = %d, %v; want 4", removed, err)
			}
			it, err = ws.FetchAll(minT, maxT)
			if err != nil {
				t.Fatal(err)
			}
			want = []string{"a@1=20", "a@2=3", "b@1=5"}
			if got := windows(t, it, t0); fmt.Sprint(got) != fmt.Sprint(want) {
				t.Errorf("after expiry FetchAll = %v, want %v", got, want)
			}
			if removed, err := ws.ExpireBefore(m(1)); err != nil || removed != 0 {
				t.Errorf("second ExpireBefore(1) = %d, %v; want 0", removed, err)
			}
		})
	}
}

func TestWindowStoreMalformedKey(t *testing.T) {
	kv := state.NewMemKV()
	fill(t, kv, "junk", "1")
	ws := state.NewWindowStore[string, uint64]("w", kv, stringCodec{}, uint64Codec{})
	it, err := ws.FetchAll(time.UnixMilli(0), time.UnixMilli(1))
	if err != nil {
		t.Fatal(err)
	}
	if it.Next() {
		t.Fatal("Next() = true on a malformed key")
	}
	if it.Err() == nil || it.Close() == nil {
		t.Error("no error for a malformed key")
	}
	if _, err := ws.ExpireBefore(time.UnixMilli(0)); err == nil {
		t.Error("ExpireBefore() on a malformed key succeeded")
	}
}
