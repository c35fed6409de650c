package rollup

import (
	"container/list"
	"sync"

	"github.com/vigie-dev/vigie/storage"
)

// cacheKey names one stored rollup.
type cacheKey struct {
	site  string
	kind  storage.RollupKind
	index uint32
}

// cached is a decoded rollup as queries use it (read-only): a bucket or
// hour decisions; both nil when nothing is stored.
type cached struct {
	b *bucket
	d *decisionSet
}

// cache keeps decoded stored rollups, least recently used first out, under
// a byte budget. golang-lru (already a dependency) bounds entries by
// count, not cost, and decoded buckets range from bytes to megabytes;
// ristretto's admission is probabilistic, so a repeated query could miss.
// Hence this small list.
type cache struct {
	mu   sync.Mutex
	max  int64
	used int64
	ll   *list.List // of *cacheItem, most recent first
	m    map[cacheKey]*list.Element
	// gen changes at every invalidation: a value read before it must not
	// be cached after it.
	gen uint64
}

type cacheItem struct {
	key  cacheKey
	val  cached
	cost int64
}

func newCache(max int64) *cache {
	return &cache{max: max, ll: list.New(), m: map[cacheKey]*list.Element{}}
}

// generation returns the current generation, taken before reading the
// store.
func (c *cache) generation() uint64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.gen
}

// get returns the cached value of k.
func (c *cache) get(k cacheKey) (cached, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.m[k]
	if !ok {
		return cached{}, false
	}
	c.ll.MoveToFront(e)
	return e.Value.(*cacheItem).val, true
}

// put caches v for k unless an invalidation happened since generation gen.
func (c *cache) put(k cacheKey, v cached, cost int64, gen uint64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if gen != c.gen || cost > c.max {
		return
	}
	if e, ok := c.m[k]; ok {
		c.remove(e)
	}
	c.m[k] = c.ll.PushFront(&cacheItem{key: k, val: v, cost: cost})
	c.used += cost
	for c.used > c.max {
		c.remove(c.ll.Back())
	}
}

func (c *cache) remove(e *list.Element) {
	it := e.Value.(*cacheItem)
	c.ll.Remove(e)
	delete(c.m, it.key)
	c.used -= it.cost
}

// invalidate drops keys and starts a new generation.
func (c *cache) invalidate(keys []cacheKey) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.gen++
	for _, k := range keys {
		if e, ok := c.m[k]; ok {
			c.remove(e)
		}
	}
}
