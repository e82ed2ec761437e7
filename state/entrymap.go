package state

// entryMap maps keys to overlay entries. Keys of up to smallKeyLen bytes
// live in the map slot itself, so a lookup compares them without reading
// a key stored elsewhere in memory (one cache miss fewer per read of a
// large store); longer keys go to a map keyed by string.
type entryMap struct {
	small map[smallKey]*entry
	large map[string]*entry
}

const smallKeyLen = 15

// smallKey is a key of at most smallKeyLen bytes and its length.
type smallKey struct {
	b [smallKeyLen]byte
	n uint8
}

func newEntryMap() entryMap {
	return entryMap{small: map[smallKey]*entry{}, large: map[string]*entry{}}
}

func toSmall(key []byte) (smallKey, bool) {
	var k smallKey
	if len(key) > smallKeyLen {
		return k, false
	}
	copy(k.b[:], key)
	k.n = uint8(len(key))
	return k, true
}

func (m entryMap) get(key []byte) *entry {
	if k, ok := toSmall(key); ok {
		return m.small[k]
	}
	return m.large[string(key)]
}

func (m entryMap) put(e *entry) {
	if k, ok := toSmall(e.key); ok {
		m.small[k] = e
		return
	}
	m.large[string(e.key)] = e
}

func (m entryMap) delete(key []byte) {
	if k, ok := toSmall(key); ok {
		delete(m.small, k)
		return
	}
	delete(m.large, string(key))
}

// all calls fn for every entry until fn returns false. fn may delete the
// entry it was called for.
func (m entryMap) all(fn func(*entry) bool) {
	for _, e := range m.small {
		if !fn(e) {
			return
		}
	}
	for _, e := range m.large {
		if !fn(e) {
			return
		}
	}
}
