package msp

import (
	"sync"
	"sync/atomic"
)

// identityCache is a bounded map from serialized identity bytes to validated
// identities, evicting with the CLOCK (second chance) algorithm: a hit only sets
// an atomic flag under a read lock, so concurrent verifiers do not contend.
// Only successful validations are cached; failures are cheap to repeat and
// caching them would let garbage evict real members.
type identityCache struct {
	size  int
	mu    sync.RWMutex
	items map[string]*cacheEntry
	ring  []*cacheEntry
	hand  int
}

type cacheEntry struct {
	key        string
	id         *Identity
	referenced atomic.Bool
}

func newIdentityCache(size int) *identityCache {
	if size < 0 {
		size = 0
	}
	return &identityCache{size: size, items: make(map[string]*cacheEntry, size)}
}

func (c *identityCache) get(key []byte) (*Identity, bool) {
	if c.size == 0 {
		return nil, false
	}
	c.mu.RLock()
	e, ok := c.items[string(key)]
	c.mu.RUnlock()
	if !ok {
		return nil, false
	}
	e.referenced.Store(true)
	return e.id, true
}

func (c *identityCache) put(id *Identity) {
	if c.size == 0 {
		return
	}
	key := string(id.serialized)
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, ok := c.items[key]; ok {
		return
	}
	e := &cacheEntry{key: key, id: id}
	if len(c.ring) < c.size {
		c.ring = append(c.ring, e)
		c.items[key] = e
		return
	}
	for {
		victim := c.ring[c.hand]
		if victim.referenced.CompareAndSwap(true, false) {
			c.hand = (c.hand + 1) % c.size
			continue
		}
		delete(c.items, victim.key)
		c.ring[c.hand] = e
		c.items[key] = e
		c.hand = (c.hand + 1) % c.size
		return
	}
}

func (c *identityCache) len() int {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return len(c.items)
}
