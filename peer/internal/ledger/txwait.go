package ledger

import (
	"context"
	"fmt"
	"sync"

	"github.com/hyperledger/fabric-protos-go-apiv2/common"
	"github.com/hyperledger/fabric-protos-go-apiv2/peer"

	"github.com/cairn-ledger/cairn/internal/blockstore"
)

// txStatus is what a commit tells the callers waiting for one transaction.
type txStatus struct {
	code     peer.TxValidationCode
	blockNum uint64
}

// txWaiters holds the callers waiting for a transaction to commit, by tx ID.
// A commit hands each waiter its transaction's code directly, so a wait costs
// one wake-up however many blocks pass before it. (Waking every waiter on
// every block made each of them look its transaction up again: with many
// commit-status calls outstanding, every block cost one index read per
// caller.) Safe for concurrent use.
type txWaiters struct {
	mu sync.Mutex
	m  map[string][]chan txStatus
}

func (w *txWaiters) add(txID string, ch chan txStatus) {
	w.mu.Lock()
	if w.m == nil {
		w.m = map[string][]chan txStatus{}
	}
	w.m[txID] = append(w.m[txID], ch)
	w.mu.Unlock()
}

func (w *txWaiters) remove(txID string, ch chan txStatus) {
	w.mu.Lock()
	defer w.mu.Unlock()
	chs := w.m[txID]
	for i, c := range chs {
		if c == ch {
			chs = append(chs[:i], chs[i+1:]...)
			break
		}
	}
	if len(chs) == 0 {
		delete(w.m, txID)
	} else {
		w.m[txID] = chs
	}
}

// committed hands block b's final codes to the waiters of its transactions.
// Only a tx ID's first envelope in the block counts, as in the index
// TxValidationCode reads; a tx ID committed in an earlier block has no
// waiters left here, since its waiters found it when they looked it up.
func (w *txWaiters) committed(b *common.Block, codes []peer.TxValidationCode) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if len(w.m) == 0 {
		return
	}
	for i, raw := range b.GetData().GetData() {
		id, ok := blockstore.TxID(raw)
		if !ok || id == "" {
			continue
		}
		chs, ok := w.m[id]
		if !ok {
			continue
		}
		for _, ch := range chs {
			ch <- txStatus{code: codes[i], blockNum: b.GetHeader().GetNumber()} // buffered, one send per waiter
		}
		delete(w.m, id)
	}
}

// WaitTxValidationCode returns the validation code of the first transaction
// with txID and the number of its block, as TxValidationCode does, waiting
// for it to commit if it has not yet. It returns once the block's state is
// applied (Height() > its number), so the transaction's writes are readable.
// It returns ctx's error when ctx ends first and ErrClosed when the ledger
// closes.
func (l *Ledger) WaitTxValidationCode(ctx context.Context, txID string) (peer.TxValidationCode, uint64, error) {
	if txID == "" {
		return 0, 0, fmt.Errorf("wait for a transaction: empty tx ID")
	}
	// Register before looking up: a block published after the look-up
	// missed the transaction notifies this waiter, because notification
	// follows publication.
	ch := make(chan txStatus, 1)
	l.waiters.add(txID, ch)
	defer l.waiters.remove(txID, ch)
	code, blockNum, found, err := l.TxValidationCode(txID)
	if err != nil {
		return 0, 0, err
	}
	// The block store indexes a block before the state database applies
	// it; a caller told its transaction committed may read its writes at
	// once, so a block not yet published is waited for like any other.
	if found && blockNum < l.height.Load() {
		return code, blockNum, nil
	}
	select {
	case st := <-ch:
		return st.code, st.blockNum, nil
	case <-ctx.Done():
		return 0, 0, ctx.Err()
	case <-l.done:
		return 0, 0, ErrClosed
	}
}
