package bench

import (
	"errors"
	"sync"

	pb "github.com/hyperledger/fabric-protos-go-apiv2/peer"
)

// errEventsEnded fails the transactions still waiting when a filtered block
// event stream ends.
var errEventsEnded = errors.New("the filtered block event stream ended before the transaction's block arrived")

// txOutcome is what a submitter learns about its transaction: its validation
// code and block, or why no status will come.
type txOutcome struct {
	code  pb.TxValidationCode
	block uint64
	err   error
}

// txEvents hands the validation codes read from one filtered block event
// stream to the submitters waiting for them, by transaction ID. It is how an
// application that listens to block events (as Fabric 1.4 SDKs' event hubs
// did) learns that its transactions committed, instead of one CommitStatus
// call per transaction.
type txEvents struct {
	mu      sync.Mutex
	waiting map[string]chan txOutcome
	ended   bool
}

func newTxEvents() *txEvents {
	return &txEvents{waiting: map[string]chan txOutcome{}}
}

// register must come before the transaction is submitted, so that its block
// cannot pass unnoticed; the channel receives exactly one outcome.
func (e *txEvents) register(txID string) <-chan txOutcome {
	ch := make(chan txOutcome, 1)
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.ended {
		ch <- txOutcome{err: errEventsEnded}
		return ch
	}
	e.waiting[txID] = ch
	return ch
}

// forget drops a registration whose transaction was never submitted.
func (e *txEvents) forget(txID string) {
	e.mu.Lock()
	delete(e.waiting, txID)
	e.mu.Unlock()
}

// deliver hands one block's codes to their waiters. The first transaction
// with an ID decides its code, as the peer's commit status does.
func (e *txEvents) deliver(b *pb.FilteredBlock) {
	e.mu.Lock()
	defer e.mu.Unlock()
	for _, tx := range b.GetFilteredTransactions() {
		if ch, ok := e.waiting[tx.GetTxid()]; ok {
			delete(e.waiting, tx.GetTxid())
			ch <- txOutcome{code: tx.GetTxValidationCode(), block: b.GetNumber()}
		}
	}
}

// run delivers the stream's blocks until it closes, then fails everything
// still waiting or registered later.
func (e *txEvents) run(blocks <-chan *pb.FilteredBlock) {
	for b := range blocks {
		e.deliver(b)
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	e.ended = true
	for id, ch := range e.waiting {
		ch <- txOutcome{err: errEventsEnded}
		delete(e.waiting, id)
	}
}
