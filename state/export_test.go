package state

// SetRestoreFlushBytes sets the batch size at which r flushes on its own, so
// that tests can exercise automatic flushes with a few small writes.
func SetRestoreFlushBytes(r *Restorer, n int) { r.flushBytes = n }

// EvictScanned returns how many slots o's eviction scans visited.
func EvictScanned(o *Overlay) int { return o.evictScanned }

// TableSize returns how many slots o's hash table has and how many of them
// hold a key.
func TableSize(o *Overlay) (slots, live int) { return len(o.keys.slots), o.keys.live }

// UnappliedWrites returns the committed values of o's unapplied keys as
// writes, leaving them unapplied (not those an apply under way handed out).
func UnappliedWrites(o *Overlay) []Write {
	return o.appendCommitted(nil, o.unapplied[o.applyNext:], nil)
}
