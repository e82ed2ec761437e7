package state_test

import (
	"strings"
	"testing"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/onceflow/onceflow/state"
)

func TestOptionsValidate(t *testing.T) {
	tests := []struct {
		name string
		opts state.Options
		want []string // substrings, one per expected problem; nil means valid
	}{
		{name: "zero value", opts: state.Options{}},
		{name: "explicit", opts: state.Options{CacheSize: 1 << 20, MemTableSize: 1 << 20, Sync: state.NoSync, FS: vfs.NewMem()}},
		{name: "negative cache", opts: state.Options{CacheSize: -1}, want: []string{"CacheSize (-1) must not be negative"}},
		{name: "small memtable", opts: state.Options{MemTableSize: 1024}, want: []string{"MemTableSize (1024) must be between"}},
		{name: "huge memtable", opts: state.Options{MemTableSize: 4 << 30}, want: []string{"MemTableSize (4294967296) must be between"}},
		{name: "one memtable", opts: state.Options{MemTableStopWrites: 1}, want: []string{"MemTableStopWrites (1) must be at least 2"}},
		{name: "negative memtables", opts: state.Options{MemTableStopWrites: -3}, want: []string{"MemTableStopWrites (-3) must be at least 2"}},
		{name: "bad sync", opts: state.Options{Sync: 7}, want: []string{"Sync (SyncPolicy(7)) must be SyncOnCommit or NoSync"}},
		{
			name: "every problem at once",
			opts: state.Options{CacheSize: -5, MemTableSize: 1, MemTableStopWrites: 1, Sync: -1},
			want: []string{"CacheSize (-5)", "MemTableSize (1)", "MemTableStopWrites (1)", "Sync (SyncPolicy(-1))"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.opts.Validate()
			if tt.want == nil {
				if err != nil {
					t.Fatalf("Validate() = %v, want nil", err)
				}
				return
			}
			if err == nil {
				t.Fatalf("Validate() = nil, want %q", tt.want)
			}
			lines := strings.Split(err.Error(), "\n")
			if len(lines) != len(tt.want) {
				t.Fatalf("Validate() reported %d problems, want %d:\n%v", len(lines), len(tt.want), err)
			}
			for i, w := range tt.want {
				if !strings.Contains(lines[i], w) {
					t.Errorf("problem %d = %q, want it to contain %q", i, lines[i], w)
				}
			}
			// OpenDB reports the same problems before touching the filesystem.
			o := tt.opts
			o.FS = vfs.NewMem()
			if _, err := state.OpenDB("d", "app", &o); err == nil || !strings.Contains(err.Error(), tt.want[0]) {
				t.Errorf("OpenDB() = %v, want the validation error", err)
			}
		})
	}
}

func TestOptionsEnsureDefaults(t *testing.T) {
	var o state.Options
	o.EnsureDefaults()
	if o.CacheSize != 64<<20 || o.MemTableSize != 16<<20 || o.MemTableStopWrites != 4 || o.Sync != state.SyncOnCommit || o.FS != vfs.Default || o.Logger == nil {
		t.Errorf("EnsureDefaults() = %+v", o)
	}
	// Non-zero values, even invalid ones, are kept for Validate to report.
	o = state.Options{CacheSize: -1, MemTableSize: 1 << 20, MemTableStopWrites: 1}
	o.EnsureDefaults()
	if o.CacheSize != -1 || o.MemTableSize != 1<<20 || o.MemTableStopWrites != 1 {
		t.Errorf("EnsureDefaults() changed set fields: %+v", o)
	}
}
