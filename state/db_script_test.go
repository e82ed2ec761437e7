package state_test

import (
	"fmt"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/onceflow/onceflow/state"
)

// TestScripts runs the data-driven scripts of testdata/db against a DB on a
// crashable in-memory filesystem.
//
// Commands (store and part name a store-partition; its overlay is created on
// first use over db.KV(store, part) and stands for the task's pending batch):
//
//	open [sync=nosync] [app=ID]      open the DB (default app "app")
//	close | reopen                   close the DB; close and open it again
//	crash                            clone the filesystem as a machine crash
//	                                 would leave it (only synced data), drop
//	                                 the open DB and overlays, open the clone
//	wipe                             state.WipeDir on the directory
//	put store=S part=P KEY VALUE     pending put in the overlay
//	delete store=S part=P KEY        pending delete in the overlay
//	get store=S part=P KEY [view=db] read through the overlay (or db.KV)
//	scan store=S part=P [FROM TO] [prefix=X] [view=db]
//	                                 Range(FROM, TO) ("-" is nil) or
//	                                 PrefixScan(X); through the overlay or db.KV
//	commit [checkpoint=S/P:OFF,...]  db.Commit of every overlay's writes and
//	                                 the checkpoints, then Discard
//	abort                            Discard every overlay
//	checkpoint store=S part=P        db.Checkpoint
//	restore store=S part=P K=V,K2=,... checkpoint=N [flushbytes=N] [noflush] [nosync]
//	                                 Restorer Put (Delete for an empty value),
//	                                 then Flush(N) unless noflush
//	                                 (FlushUnsynced(N) with nosync)
//	sync                             db.Sync
//	drop store=S part=P              db.DropPartition
func TestScripts(t *testing.T) {
	files, err := filepath.Glob("testdata/db/*.txt")
	if err != nil || len(files) == 0 {
		t.Fatalf("no scripts: %v", err)
	}
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			h := &harness{t: t, fs: vfs.NewCrashableMem(), dir: "data", overlays: map[storePart]*state.Overlay{}}
			defer h.closeDB()
			runScript(t, f, []string{"store", "part", "sync", "app", "view", "prefix", "checkpoint", "flushbytes"}, h.run)
		})
	}
}

type storePart struct {
	store string
	part  int32
}

type harness struct {
	t        *testing.T
	fs       *vfs.MemFS
	dir      string
	opts     state.Options
	app      string
	db       *state.DB
	overlays map[storePart]*state.Overlay
}

func (h *harness) closeDB() error {
	clear(h.overlays)
	if h.db == nil {
		return nil
	}
	db := h.db
	h.db = nil
	return db.Close()
}

func (h *harness) open() error {
	db, err := state.OpenDB(h.dir, h.app, &h.opts)
	if err != nil {
		return err
	}
	h.db = db
	return nil
}

func (h *harness) storePart(c scriptCmd) (storePart, error) {
	store, ok := c.args["store"]
	if !ok {
		return storePart{}, fmt.Errorf("missing store=")
	}
	p, err := strconv.ParseInt(c.args["part"], 10, 32)
	if err != nil {
		return storePart{}, fmt.Errorf("bad part=: %w", err)
	}
	return storePart{store: store, part: int32(p)}, nil
}

func (h *harness) overlay(sp storePart) *state.Overlay {
	o, ok := h.overlays[sp]
	if !ok {
		o = state.NewOverlay(h.db.KV(sp.store, sp.part))
		h.overlays[sp] = o
	}
	return o
}

// view returns the KV a read command reads: the overlay, or db.KV with view=db.
func (h *harness) view(c scriptCmd, sp storePart) state.KV {
	if c.args["view"] == "db" {
		return h.db.KV(sp.store, sp.part)
	}
	return h.overlay(sp)
}

func (h *harness) run(c scriptCmd) string {
	out, err := h.exec(c)
	if err != nil {
		return "error: " + err.Error()
	}
	return out
}

func (h *harness) exec(c scriptCmd) (string, error) {
	switch c.name {
	case "open":
		if h.db != nil {
			return "", fmt.Errorf("already open")
		}
		h.app = "app"
		if a, ok := c.args["app"]; ok {
			h.app = a
		}
		h.opts = state.Options{FS: h.fs}
		if c.args["sync"] == "nosync" {
			h.opts.Sync = state.NoSync
		}
		return "", h.open()
	case "close":
		return "", h.closeDB()
	case "reopen":
		if err := h.closeDB(); err != nil {
			return "", err
		}
		return "", h.open()
	case "crash":
		// Clone first: the clone holds exactly what was synced at this moment.
		clone := h.fs.CrashClone(vfs.CrashCloneCfg{})
		_ = h.closeDB() // the crashed process's handle; its result does not matter
		h.fs = clone
		h.opts.FS = clone
		return "", h.open()
	case "sync":
		return "", h.db.Sync()
	case "wipe":
		return "", state.WipeDir(h.fs, h.dir)
	case "commit":
		return "", h.commit(c)
	case "abort":
		for _, o := range h.overlays {
			o.Discard()
		}
		return "", nil
	}
	if h.db == nil {
		return "", fmt.Errorf("not open")
	}
	sp, err := h.storePart(c)
	if err != nil {
		return "", err
	}
	switch c.name {
	case "put":
		if len(c.posit) != 2 {
			return "", fmt.Errorf("want KEY VALUE")
		}
		return "", h.overlay(sp).Put([]byte(c.posit[0]), []byte(c.posit[1]))
	case "delete":
		if len(c.posit) != 1 {
			return "", fmt.Errorf("want KEY")
		}
		return "", h.overlay(sp).Delete([]byte(c.posit[0]))
	case "get":
		if len(c.posit) != 1 {
			return "", fmt.Errorf("want KEY")
		}
		v, ok, err := h.view(c, sp).Get([]byte(c.posit[0]))
		if err != nil || !ok {
			return "not found", err
		}
		return string(v), nil
	case "scan":
		return h.scan(c, sp)
	case "checkpoint":
		off, ok, err := h.db.Checkpoint(sp.store, sp.part)
		if err != nil || !ok {
			return "none", err
		}
		return strconv.FormatInt(off, 10), nil
	case "restore":
		return "", h.restore(c, sp)
	case "drop":
		delete(h.overlays, sp)
		return "", h.db.DropPartition(sp.store, sp.part)
	}
	return "", fmt.Errorf("unknown command %q", c.name)
}

func (h *harness) scan(c scriptCmd, sp storePart) (string, error) {
	kv := h.view(c, sp)
	var it state.Iterator
	var err error
	switch {
	case c.has("prefix"):
		it, err = kv.PrefixScan([]byte(c.args["prefix"]))
	case len(c.posit) == 2:
		bound := func(s string) []byte {
			if s == "-" {
				return nil
			}
			return []byte(s)
		}
		it, err = kv.Range(bound(c.posit[0]), bound(c.posit[1]))
	case len(c.posit) == 0:
		it, err = kv.Range(nil, nil)
	default:
		return "", fmt.Errorf("want FROM TO or nothing")
	}
	if err != nil {
		return "", err
	}
	var lines []string
	for it.Next() {
		lines = append(lines, fmt.Sprintf("%s=%s", it.Key(), it.Value()))
	}
	if err := it.Close(); err != nil {
		return "", err
	}
	if len(lines) == 0 {
		return "(empty)", nil
	}
	return strings.Join(lines, "\n"), nil
}

func (h *harness) commit(c scriptCmd) error {
	if h.db == nil {
		return fmt.Errorf("not open")
	}
	var cm state.Commit
	sps := make([]storePart, 0, len(h.overlays))
	for sp := range h.overlays {
		sps = append(sps, sp)
	}
	slices.SortFunc(sps, func(a, b storePart) int {
		return strings.Compare(fmt.Sprint(a), fmt.Sprint(b))
	})
	for _, sp := range sps {
		cm.Add(sp.store, sp.part, h.overlays[sp].Writes())
	}
	if cps := c.args["checkpoint"]; cps != "" {
		for _, cp := range strings.Split(cps, ",") {
			spec, offStr, ok := strings.Cut(cp, ":")
			store, partStr, ok2 := strings.Cut(spec, "/")
			part, err1 := strconv.ParseInt(partStr, 10, 32)
			off, err2 := strconv.ParseInt(offStr, 10, 64)
			if !ok || !ok2 || err1 != nil || err2 != nil {
				return fmt.Errorf("bad checkpoint %q, want STORE/PART:OFFSET", cp)
			}
			cm.SetCheckpoint(store, int32(part), off)
		}
	}
	if err := h.db.Commit(&cm); err != nil {
		return err
	}
	for _, o := range h.overlays {
		o.Discard()
	}
	return nil
}

func (h *harness) restore(c scriptCmd, sp storePart) error {
	r := h.db.Restorer(sp.store, sp.part)
	if fb, ok := c.args["flushbytes"]; ok {
		n, err := strconv.Atoi(fb)
		if err != nil {
			return fmt.Errorf("bad flushbytes: %w", err)
		}
		state.SetRestoreFlushBytes(r, n)
	}
	noFlush, noSync := false, false
	for _, p := range c.posit {
		switch p {
		case "noflush":
			noFlush = true
			continue
		case "nosync":
			noSync = true
			continue
		}
		for _, kv := range strings.Split(p, ",") {
			k, v, ok := strings.Cut(kv, "=")
			if !ok {
				return fmt.Errorf("bad pair %q, want K=V", kv)
			}
			var err error
			if v == "" {
				err = r.Delete([]byte(k))
			} else {
				err = r.Put([]byte(k), []byte(v))
			}
			if err != nil {
				return err
			}
		}
	}
	if noFlush {
		return nil
	}
	off, err := strconv.ParseInt(c.args["checkpoint"], 10, 64)
	if err != nil {
		return fmt.Errorf("bad checkpoint=: %w", err)
	}
	if noSync {
		return r.FlushUnsynced(off)
	}
	return r.Flush(off)
}
