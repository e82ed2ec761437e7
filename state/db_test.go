package state_test

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/onceflow/onceflow/state"
)

func openMem(t *testing.T, fs vfs.FS, app string) *state.DB {
	t.Helper()
	db, err := state.OpenDB("data", app, &state.Options{FS: fs})
	if err != nil {
		t.Fatalf("OpenDB() = %v", err)
	}
	return db
}

// damageFile overwrites the first file of dir whose name starts with prefix
// with garbage, or removes it when garbage is nil.
func damageFile(t *testing.T, fs vfs.FS, prefix string, garbage []byte) {
	t.Helper()
	names, err := fs.List("data")
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range names {
		if !strings.HasPrefix(n, prefix) {
			continue
		}
		path := fs.PathJoin("data", n)
		if garbage == nil {
			if err := fs.Remove(path); err != nil {
				t.Fatal(err)
			}
			return
		}
		f, err := fs.Create(path, vfs.WriteCategoryUnspecified)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := f.Write(garbage); err != nil {
			t.Fatal(err)
		}
		if err := f.Close(); err != nil {
			t.Fatal(err)
		}
		return
	}
	t.Fatalf("no file %s* in %v", prefix, names)
}

func TestOpenDBBadDirectory(t *testing.T) {
	tests := []struct {
		name    string
		prepare func(t *testing.T, fs vfs.FS) // leaves a closed database in "data"
		want    error
	}{
		{
			name: "another application",
			prepare: func(t *testing.T, fs vfs.FS) {
				if err := openMem(t, fs, "other").Close(); err != nil {
					t.Fatal(err)
				}
			},
			want: state.ErrForeignState,
		},
		{
			name: "pebble database without marker",
			prepare: func(t *testing.T, fs vfs.FS) {
				pdb, err := pebble.Open("data", &pebble.Options{FS: fs, Logger: quietLogger{}})
				if err != nil {
					t.Fatal(err)
				}
				if err := pdb.Set([]byte("k"), []byte("v"), pebble.Sync); err != nil {
					t.Fatal(err)
				}
				if err := pdb.Close(); err != nil {
					t.Fatal(err)
				}
			},
			want: state.ErrForeignState,
		},
		{
			name: "garbage manifest",
			prepare: func(t *testing.T, fs vfs.FS) {
				if err := openMem(t, fs, "app").Close(); err != nil {
					t.Fatal(err)
				}
				damageFile(t, fs, "MANIFEST-", []byte("this is not a manifest"))
			},
			want: state.ErrCorruptState,
		},
		{
			name: "missing manifest",
			prepare: func(t *testing.T, fs vfs.FS) {
				if err := openMem(t, fs, "app").Close(); err != nil {
					t.Fatal(err)
				}
				damageFile(t, fs, "MANIFEST-", nil)
			},
			want: state.ErrCorruptState,
		},
		{
			name: "garbage options file",
			prepare: func(t *testing.T, fs vfs.FS) {
				if err := openMem(t, fs, "app").Close(); err != nil {
					t.Fatal(err)
				}
				damageFile(t, fs, "OPTIONS-", []byte("garbage"))
			},
			want: state.ErrCorruptState,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fs := vfs.NewMem()
			tt.prepare(t, fs)
			db, err := state.OpenDB("data", "app", &state.Options{FS: fs})
			if !errors.Is(err, tt.want) {
				if db != nil {
					_ = db.Close()
				}
				t.Fatalf("OpenDB() = %v, want %v", err, tt.want)
			}
			if other := map[error]error{state.ErrForeignState: state.ErrCorruptState, state.ErrCorruptState: state.ErrForeignState}[tt.want]; errors.Is(err, other) {
				t.Errorf("OpenDB() = %v, also wraps %v", err, other)
			}
			// The runtime's recovery: wipe, reopen empty, restore.
			if err := state.WipeDir(fs, "data"); err != nil {
				t.Fatalf("WipeDir() = %v", err)
			}
			db = openMem(t, fs, "app")
			defer db.Close()
			if _, ok, err := db.Checkpoint("s", 0); ok || err != nil {
				t.Errorf("Checkpoint() after wipe = %v, %v", ok, err)
			}
			r := db.Restorer("s", 0)
			if err := r.Put([]byte("k"), []byte("v")); err != nil {
				t.Fatal(err)
			}
			if err := r.Flush(3); err != nil {
				t.Fatalf("Flush() = %v", err)
			}
			if got := contents(t, db.KV("s", 0)); fmt.Sprint(got) != "[k=v]" {
				t.Errorf("after restore: %v", got)
			}
		})
	}
}

// quietLogger discards pebble's log output in tests that open pebble directly.
type quietLogger struct{}

func (quietLogger) Infof(string, ...any)         {}
func (quietLogger) Errorf(string, ...any)        {}
func (quietLogger) Fatalf(f string, args ...any) { panic(fmt.Sprintf(f, args...)) }

func TestOpenDBLockedIsNotCorrupt(t *testing.T) {
	fs := vfs.NewMem()
	db := openMem(t, fs, "app")
	defer db.Close()
	_, err := state.OpenDB("data", "app", &state.Options{FS: fs})
	if err == nil {
		t.Fatal("second OpenDB() on a locked directory succeeded")
	}
	if errors.Is(err, state.ErrCorruptState) || errors.Is(err, state.ErrForeignState) {
		t.Fatalf("OpenDB() = %v: a locked directory must not be wiped", err)
	}
}

func TestOpenDBEmptyAppID(t *testing.T) {
	if _, err := state.OpenDB("data", "", &state.Options{FS: vfs.NewMem()}); err == nil {
		t.Fatal("OpenDB with an empty application id succeeded")
	}
}

func TestDBClosed(t *testing.T) {
	db := openMem(t, vfs.NewMem(), "app")
	kv := db.KV("s", 0)
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	var c state.Commit
	c.SetCheckpoint("s", 0, 1)
	checks := map[string]error{
		"Close":         db.Close(),
		"Commit":        db.Commit(&c),
		"DropPartition": db.DropPartition("s", 0),
		"Put":           kv.Put([]byte("k"), nil),
		"Delete":        kv.Delete([]byte("k")),
		"ApplyBatch":    kv.(state.BatchApplier).ApplyBatch([]state.Write{{Key: []byte("k")}}),
		"Flush":         db.Restorer("s", 0).Flush(1),
	}
	_, _, checks["Get"] = kv.Get([]byte("k"))
	_, checks["Range"] = kv.Range(nil, nil)
	_, _, checks["Checkpoint"] = db.Checkpoint("s", 0)
	for name, err := range checks {
		if !errors.Is(err, state.ErrClosed) {
			t.Errorf("%s after Close = %v, want ErrClosed", name, err)
		}
	}
}

// TestKVOverlayCommit checks the convenience path: an Overlay over db.KV
// commits through BatchApplier, without a checkpoint.
func TestKVOverlayCommit(t *testing.T) {
	db := openMem(t, vfs.NewMem(), "app")
	defer db.Close()
	kv := db.KV("s", 0)
	fill(t, kv, "a", "1", "b", "2")
	o := state.NewOverlay(kv)
	fill(t, o, "c", "3")
	if err := o.Delete([]byte("a")); err != nil {
		t.Fatal(err)
	}
	if got := contents(t, kv); fmt.Sprint(got) != "[a=1 b=2]" {
		t.Fatalf("before commit: %v", got)
	}
	if err := o.Commit(); err != nil {
		t.Fatal(err)
	}
	if got := contents(t, kv); fmt.Sprint(got) != "[b=2 c=3]" {
		t.Fatalf("after commit: %v", got)
	}
	if _, ok, _ := db.Checkpoint("s", 0); ok {
		t.Error("ApplyBatch recorded a checkpoint")
	}
}

// TestKVIterator covers iterator lifetimes: snapshot semantics, empty and
// 0xff bounds, double Close, and that keys never carry the prefix.
func TestKVIterator(t *testing.T) {
	db := openMem(t, vfs.NewMem(), "app")
	defer db.Close()
	kv := db.KV("s", 0)
	fill(t, kv, "a", "1", "\xff", "ff", "\xff\xff", "ffff", "", "empty")
	fill(t, db.KV("s", 1), "a", "other")

	it, err := kv.Range(nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	fill(t, kv, "b", "added after the iterator") // not seen: snapshot
	if got := collect(t, it); fmt.Sprint(got) != "[=empty a=1 \xff=ff \xff\xff=ffff]" {
		t.Errorf("Range(nil, nil) = %q", got)
	}
	if err := it.Close(); err != nil {
		t.Errorf("second Close() = %v", err)
	}
	if it.Next() || it.Key() != nil || it.Value() != nil {
		t.Error("closed iterator still positioned")
	}

	it, err = kv.PrefixScan([]byte("\xff"))
	if err != nil {
		t.Fatal(err)
	}
	if got := collect(t, it); fmt.Sprint(got) != "[\xff=ff \xff\xff=ffff]" {
		t.Errorf("PrefixScan(ff) = %q", got)
	}
	it, err = kv.Range([]byte{}, []byte("a"))
	if err != nil {
		t.Fatal(err)
	}
	if got := collect(t, it); fmt.Sprint(got) != "[=empty]" {
		t.Errorf("Range(\"\", a) = %q", got)
	}
}

// TestConcurrentTasks runs several tasks on their own goroutines, each
// committing into its own partition, and checks the end state. Run with
// -race.
func TestConcurrentTasks(t *testing.T) {
	db := openMem(t, vfs.NewMem(), "app")
	defer db.Close()
	const tasks, commits = 4, 25
	var wg sync.WaitGroup
	errs := make(chan error, tasks)
	for p := range int32(tasks) {
		wg.Go(func() {
			o := state.NewOverlay(db.KV("s", p))
			for i := range commits {
				if err := o.Put([]byte(fmt.Sprintf("k%02d", i)), []byte(strconv.Itoa(i))); err != nil {
					errs <- err
					return
				}
				var c state.Commit
				c.Add("s", p, o.Writes())
				c.SetCheckpoint("s", p, int64(i))
				if err := db.Commit(&c); err != nil {
					errs <- err
					return
				}
				o.Discard()
				if _, _, err := db.Checkpoint("s", p); err != nil {
					errs <- err
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	for p := range int32(tasks) {
		if got := len(contents(t, db.KV("s", p))); got != commits {
			t.Errorf("partition %d has %d keys, want %d", p, got, commits)
		}
		if off, ok, err := db.Checkpoint("s", p); off != commits-1 || !ok || err != nil {
			t.Errorf("Checkpoint(s, %d) = %d, %v, %v", p, off, ok, err)
		}
	}
}

// TestCrashConsistency commits, crashes keeping a random part of the
// unsynced data, and checks after every crash that each store-partition's
// data is exactly what its checkpoint says: commit i writes key k<i> and sets
// key "last" to i, with checkpoint i. Every third round runs with
// SyncOnCommit and must lose nothing; the others run with NoSync and may lose
// a tail of commits, never a part of one.
func TestCrashConsistency(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	fs := vfs.NewCrashableMem()
	policy := func(round int) state.SyncPolicy {
		if round%3 == 0 {
			return state.SyncOnCommit
		}
		return state.NoSync
	}
	opts := &state.Options{FS: fs, Sync: policy(0)}
	db, err := state.OpenDB("data", "app", opts)
	if err != nil {
		t.Fatal(err)
	}
	next := map[int32]int64{0: 0, 1: 0}
	lost := 0 // partition-rounds that lost commits
	for round := range 30 {
		for range 1 + rng.IntN(5) {
			var c state.Commit
			for p := range int32(2) {
				i := next[p]
				c.Add("s", p, []state.Write{
					{Key: []byte("last"), Value: []byte(strconv.FormatInt(i, 10))},
					{Key: []byte(fmt.Sprintf("k%03d", i)), Value: []byte("x")},
				})
				c.SetCheckpoint("s", p, i)
				next[p] = i + 1
			}
			if err := db.Commit(&c); err != nil {
				t.Fatal(err)
			}
		}
		clone := fs.CrashClone(vfs.CrashCloneCfg{UnsyncedDataPercent: rng.IntN(101), RNG: rng})
		_ = db.Close() // the crashed process's handle
		fs = clone
		opts.FS, opts.Sync = fs, policy(round+1)
		db, err = state.OpenDB("data", "app", opts)
		if err != nil {
			t.Fatalf("round %d: reopen after crash: %v", round, err)
		}
		for p := range int32(2) {
			off, ok, err := db.Checkpoint("s", p)
			if err != nil {
				t.Fatal(err)
			}
			want := []string{}
			if ok {
				for i := range off + 1 {
					want = append(want, fmt.Sprintf("k%03d=x", i))
				}
				want = append(want, fmt.Sprintf("last=%d", off))
			} else {
				off = -1
			}
			got := contents(t, db.KV("s", p))
			if got == nil {
				got = []string{}
			}
			if fmt.Sprint(got) != fmt.Sprint(want) {
				t.Fatalf("round %d partition %d: checkpoint %d (ok=%v) but data %v", round, p, off, ok, got)
			}
			if off+1 < next[p] {
				if policy(round) == state.SyncOnCommit {
					t.Fatalf("round %d partition %d: SyncOnCommit lost commits %d..%d", round, p, off+1, next[p]-1)
				}
				lost++
			}
			next[p] = off + 1 // the runtime replays from checkpoint+1
		}
	}
	if lost == 0 {
		t.Error("no NoSync crash lost a commit; the test does not exercise crashes")
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
}
