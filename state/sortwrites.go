package state

import (
	"bytes"
	"encoding/binary"
	"slices"
)

// SortWrites sorts ws by key, in place; writes with equal keys keep their
// relative order. It radix-sorts the keys' first eight bytes, held next to
// each write's index, and compares full keys only within runs that share
// those bytes: comparing scattered keys directly misses the CPU cache at
// almost every step, which made sorting a store's apply batch cost more
// than writing it to Pebble.
func SortWrites(ws []Write) {
	if len(ws) < 2 {
		return
	}
	ks := make([]sortKey, len(ws))
	for i, w := range ws {
		var p [8]byte
		copy(p[:], w.Key)
		ks[i] = sortKey{prefix: binary.BigEndian.Uint64(p[:]), i: int32(i)}
	}
	ks = radixSort(ks)
	// Runs of equal prefixes: order by the whole key (shorter first when
	// neither goes past the prefix), then by position.
	for lo := 0; lo < len(ks); {
		hi := lo + 1
		for hi < len(ks) && ks[hi].prefix == ks[lo].prefix {
			hi++
		}
		if hi-lo > 1 {
			slices.SortFunc(ks[lo:hi], func(a, b sortKey) int {
				if c := bytes.Compare(ws[a.i].Key, ws[b.i].Key); c != 0 {
					return c
				}
				return int(a.i - b.i)
			})
		}
		lo = hi
	}
	sorted := make([]Write, len(ws))
	for j, k := range ks {
		sorted[j] = ws[k.i]
	}
	copy(ws, sorted)
}

type sortKey struct {
	prefix uint64
	i      int32
}

// radixSort sorts ks by prefix, stably (so by index among equal prefixes,
// since ks starts in index order), one byte at a time from the lowest,
// skipping bytes that are the same in every key. It returns the sorted
// slice, which may be ks or a new one.
func radixSort(ks []sortKey) []sortKey {
	var counts [8][256]int
	for _, k := range ks {
		for d := range 8 {
			counts[d][byte(k.prefix>>(8*d))]++
		}
	}
	tmp := make([]sortKey, len(ks))
	for d := range 8 {
		c := &counts[d]
		if c[byte(ks[0].prefix>>(8*d))] == len(ks) {
			continue // every key has the same byte here
		}
		sum := 0
		for b := range c {
			c[b], sum = sum, sum+c[b]
		}
		for _, k := range ks {
			b := byte(k.prefix >> (8 * d))
			tmp[c[b]] = k
			c[b]++
		}
		ks, tmp = tmp, ks
	}
	return ks
}
