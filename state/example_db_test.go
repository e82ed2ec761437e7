package state_test

import (
	"fmt"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/onceflow/onceflow/state"
)

// The runtime's commit path: a task writes into an Overlay over its
// store-partition; after the Kafka transaction commits, the pending writes and
// the changelog offset they reflect are applied in one batch.
func ExampleDB_Commit() {
	db, err := state.OpenDB("state", "my-app", &state.Options{FS: vfs.NewMem()})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer db.Close()

	pending := state.NewOverlay(db.KV("counts", 0))
	_ = pending.Put([]byte("alice"), []byte("1"))

	var c state.Commit
	c.Add("counts", 0, pending.Writes())
	c.SetCheckpoint("counts", 0, 41)
	if err := db.Commit(&c); err != nil {
		fmt.Println(err)
		return
	}
	pending.Discard() // applied by db.Commit

	v, _, _ := db.KV("counts", 0).Get([]byte("alice"))
	off, _, _ := db.Checkpoint("counts", 0)
	fmt.Printf("alice=%s checkpoint=%d\n", v, off)
	// Output: alice=1 checkpoint=41
}
