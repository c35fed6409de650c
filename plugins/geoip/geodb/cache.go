package geodb

import (
	"net/netip"
	"sync"
)

// cacheSize bounds the lookup cache of one database; when full it is
// emptied. Entries are small (about 150 bytes), and lookups are by
// truncated prefix, so busy networks stay cached.
const cacheSize = 1 << 14

// cacheEntry is one cached lookup result.
type cacheEntry struct {
	rec   Record
	found bool
}

// db is one loaded database with a cache of its lookups; a reload
// replaces the whole value, so the cache never outlives its data.
type db struct {
	r reader

	mu    sync.Mutex
	cache map[netip.Addr]cacheEntry
}

// newDB wraps r with an empty cache.
func newDB(r reader) *db {
	return &db{r: r, cache: make(map[netip.Addr]cacheEntry)}
}

// describe names the database for logs.
func (d *db) describe() string { return d.r.describe() }

// lookup is reader.lookup through the cache. Errors are not cached.
func (d *db) lookup(addr netip.Addr, rec *Record) (bool, error) {
	d.mu.Lock()
	ce, ok := d.cache[addr]
	d.mu.Unlock()
	if ok {
		*rec = ce.rec
		return ce.found, nil
	}
	found, err := d.r.lookup(addr, rec)
	if err != nil {
		return false, err
	}
	ce = cacheEntry{found: found}
	if found {
		ce.rec = *rec
	}
	d.mu.Lock()
	if len(d.cache) >= cacheSize {
		clear(d.cache)
	}
	d.cache[addr] = ce
	d.mu.Unlock()
	return found, nil
}
