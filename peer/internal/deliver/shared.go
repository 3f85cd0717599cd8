package deliver

import (
	"sync"

	"github.com/hyperledger/fabric-protos-go-apiv2/peer"
)

// sharedSize is how many recent blocks' responses a Server keeps. Streams
// following the chain ask for the newest blocks within moments of each other;
// a stream further behind recomputes what it needs.
const sharedSize = 16

// shared keeps the last responses built for recent blocks of each ledger, so
// that every stream following the chain reads and filters a block once
// between them instead of once each. A response depends only on the block, not
// on who asked (access is checked per stream before anything is sent), and
// gRPC only reads a message it sends, so one response serves every stream.
type shared struct {
	mu      sync.Mutex
	entries [sharedSize]sharedEntry
}

type sharedEntry struct {
	ledger Ledger // a rejoined channel has a new ledger, so old entries miss
	number uint64
	resp   *peer.DeliverResponse
	config bool // the block is a config block: the stream checks access again
}

func (c *shared) get(l Ledger, n uint64) (resp *peer.DeliverResponse, config, ok bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	e := &c.entries[n%sharedSize]
	if e.resp == nil || e.ledger != l || e.number != n {
		return nil, false, false
	}
	return e.resp, e.config, true
}

func (c *shared) put(l Ledger, n uint64, resp *peer.DeliverResponse, config bool) {
	c.mu.Lock()
	c.entries[n%sharedSize] = sharedEntry{ledger: l, number: n, resp: resp, config: config}
	c.mu.Unlock()
}
