package state_test

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/onceflow/onceflow/state"
)

// TestSortWrites compares SortWrites with a plain stable sort by key, over
// keys that share long prefixes, differ only in trailing zero bytes, are
// empty, or are longer than the eight bytes compared first.
func TestSortWrites(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	alphabet := []byte{0x00, 0x01, 'a', 0xff}
	for round := range 200 {
		n := rng.IntN(300)
		ws := make([]state.Write, n)
		for i := range ws {
			k := make([]byte, rng.IntN(12))
			for j := range k {
				k[j] = alphabet[rng.IntN(len(alphabet))]
			}
			ws[i] = state.Write{Key: k, Value: fmt.Appendf(nil, "%d", i)}
		}
		want := slices.Clone(ws)
		slices.SortStableFunc(want, func(a, b state.Write) int { return bytes.Compare(a.Key, b.Key) })
		state.SortWrites(ws)
		for i := range ws {
			if !bytes.Equal(ws[i].Key, want[i].Key) || !bytes.Equal(ws[i].Value, want[i].Value) {
				t.Fatalf("round %d: position %d is %q=%q, want %q=%q", round, i, ws[i].Key, ws[i].Value, want[i].Key, want[i].Value)
			}
		}
	}
}

func BenchmarkSortWrites(b *testing.B) {
	rng := rand.New(rand.NewPCG(1, 2))
	ws := make([]state.Write, 60_000)
	for i := range ws {
		ws[i] = state.Write{Key: fmt.Appendf(nil, "w%06d", rng.IntN(100_000))}
	}
	work := make([]state.Write, len(ws))
	b.Run("SortWrites", func(b *testing.B) {
		for b.Loop() {
			copy(work, ws)
			state.SortWrites(work)
		}
	})
	b.Run("SortFunc", func(b *testing.B) {
		for b.Loop() {
			copy(work, ws)
			slices.SortFunc(work, func(a, b state.Write) int { return bytes.Compare(a.Key, b.Key) })
		}
	})
}
