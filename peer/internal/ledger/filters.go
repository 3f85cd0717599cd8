package ledger

import "sync"

// recentFilterBlocks is how many of the last committed blocks keep their
// TRANSACTIONS_FILTER in memory. Commit-status look-ups (the gateway's
// CommitStatus, one per submitted transaction) almost always ask about a block
// committed moments ago; without the copy each look-up read and decoded the
// whole block (structure and data hash checks) to read one byte.
const recentFilterBlocks = 256

// recentFilters holds the final validation codes of the most recently
// committed blocks, by block number modulo its size. Safe for concurrent use.
type recentFilters struct {
	mu      sync.RWMutex
	nums    [recentFilterBlocks]uint64
	filters [recentFilterBlocks][]byte
}

// put records block num's filter; the caller must not modify it afterwards.
func (r *recentFilters) put(num uint64, filter []byte) {
	i := num % recentFilterBlocks
	r.mu.Lock()
	r.nums[i], r.filters[i] = num, filter
	r.mu.Unlock()
}

// get returns block num's filter if it is still held.
func (r *recentFilters) get(num uint64) ([]byte, bool) {
	i := num % recentFilterBlocks
	r.mu.RLock()
	defer r.mu.RUnlock()
	if r.filters[i] == nil || r.nums[i] != num {
		return nil, false
	}
	return r.filters[i], true
}
