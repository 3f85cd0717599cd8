package ledger

import (
	"fmt"

	"github.com/hyperledger/fabric-protos-go-apiv2/common"
	"github.com/hyperledger/fabric-protos-go-apiv2/ledger/queryresult"
	"google.golang.org/protobuf/proto"

	"github.com/cairn-ledger/cairn/internal/block"
	"github.com/cairn-ledger/cairn/peer/internal/ledger/statedb"
)

// HistoryIterator yields the committed writes of one key, newest first. The
// index holds only (block, tx) heights; values, transaction IDs and
// timestamps are read back from the stored blocks, as Fabric does. It is not
// safe for concurrent use.
type HistoryIterator struct {
	l    *Ledger
	snap *statedb.Snapshot
	it   *statedb.HistoryIterator
	ns   string
	key  string

	// the last block read: consecutive entries are often in the same block.
	blk *common.Block
}

// Next returns the next modification, or (nil, nil) at the end.
func (h *HistoryIterator) Next() (*queryresult.KeyModification, error) {
	v, ok, err := h.it.Next()
	if err != nil || !ok {
		return nil, err
	}
	if h.blk == nil || h.blk.GetHeader().GetNumber() != v.BlockNum {
		b, err := h.l.blocks.Block(v.BlockNum)
		if err != nil {
			return nil, fmt.Errorf("history of %q/%q: read block %d: %w", h.ns, h.key, v.BlockNum, err)
		}
		h.blk = b
	}
	km, err := keyModification(h.blk, int(v.TxNum), h.ns, h.key)
	if err != nil {
		return nil, fmt.Errorf("history of %q/%q: block %d tx %d: %w", h.ns, h.key, v.BlockNum, v.TxNum, err)
	}
	return km, nil
}

// Close releases the iterator.
func (h *HistoryIterator) Close() {
	h.it.Close()
	h.snap.Release()
}

// keyModification finds the write of (ns, key) in transaction txNum of b.
func keyModification(b *common.Block, txNum int, ns, key string) (*queryresult.KeyModification, error) {
	env, err := block.Envelope(b, txNum)
	if err != nil {
		return nil, err
	}
	payload := &common.Payload{}
	if err := proto.Unmarshal(env.Payload, payload); err != nil {
		return nil, fmt.Errorf("payload: %w", err)
	}
	ch := &common.ChannelHeader{}
	if err := proto.Unmarshal(payload.GetHeader().GetChannelHeader(), ch); err != nil {
		return nil, fmt.Errorf("channel header: %w", err)
	}
	rws, err := RWSetFromEnvelope(env)
	if err != nil {
		return nil, err
	}
	nss, err := decodeRWSet(rws)
	if err != nil {
		return nil, err
	}
	// The last write of the key wins, matching how it was applied.
	var found *queryresult.KeyModification
	for _, n := range nss {
		if n.ns != ns {
			continue
		}
		for _, w := range n.kvs.Writes {
			if w.Key == key {
				found = &queryresult.KeyModification{TxId: ch.TxId, Value: w.Value, Timestamp: ch.Timestamp, IsDelete: w.IsDelete}
			}
		}
	}
	if found == nil {
		return nil, fmt.Errorf("indexed write of %q/%q not in the transaction", ns, key)
	}
	return found, nil
}
