package channel

import (
	"context"
	"errors"
	"fmt"
	"sync"

	cb "github.com/hyperledger/fabric-protos-go-apiv2/common"
	pb "github.com/hyperledger/fabric-protos-go-apiv2/peer"

	"github.com/cairn-ledger/cairn/internal/block"
	"github.com/cairn-ledger/cairn/peer/internal/ledger"
	"github.com/cairn-ledger/cairn/peer/internal/validator"
)

// pipelineDepth is how many prepared blocks may wait for the committer: one
// being committed and one ready is enough to keep both stages busy.
const pipelineDepth = 2

// pipeline validates and commits blocks in two stages. The feeding goroutine
// (the puller's) runs add, which prepares a block (every signature check,
// on all cores) and queues it; the committer goroutine finishes validation
// against the state the block applies to and commits it. Block N+1 is thus
// prepared while block N commits. A config block is a barrier: it is
// validated against the configuration in force and committed before add
// returns, so the next block is verified and prepared with the configuration
// it installs (if its config transaction is VALID; otherwise with the one
// kept). A chaincode definition committed by
// block N is seen by block N+1 because Finish re-reads the policies Prepare
// read.
type pipeline struct {
	c     *Channel
	queue chan queued
	done  chan struct{} // closed when the committer has returned
	err   error         // the committer's error; read after done

	// Owned by the feeding goroutine: the number and header of the next
	// block to add.
	next uint64
	prev *cb.BlockHeader
}

type queued struct {
	p         *validator.Prepared
	committed chan struct{} // closed once committed, for config blocks
}

// runPipeline runs the committer while feed adds blocks. If feed returns nil
// the blocks it added are all committed before runPipeline returns.
func (c *Channel) runPipeline(ctx context.Context, feed func(context.Context, *pipeline) error) error {
	pl := &pipeline{c: c, queue: make(chan queued, pipelineDepth), done: make(chan struct{})}
	pl.next = c.ledger.Height()
	if pl.next > 0 {
		last, err := c.ledger.Block(pl.next - 1)
		if err != nil {
			return fmt.Errorf("last block: %w", err)
		}
		pl.prev = last.Header
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		defer close(pl.done)
		if pl.err = pl.commitLoop(ctx); pl.err != nil {
			cancel() // stop the feed, which may be waiting for blocks
		}
	}()
	err := feed(ctx, pl)
	if err == nil {
		close(pl.queue) // the committer drains the queue and returns
	} else {
		cancel()
	}
	wg.Wait()
	if pl.err != nil && !errors.Is(pl.err, context.Canceled) {
		return pl.err // the cause; the feed only saw its context end
	}
	if err != nil {
		return err
	}
	return pl.err
}

// tail is the number of the next block add expects and the header of the
// block before it.
func (pl *pipeline) tail() (uint64, *cb.BlockHeader) { return pl.next, pl.prev }

// add prepares verified block b, the next one, and queues it for commit; it
// returns the committer's error if the committer has stopped.
func (pl *pipeline) add(ctx context.Context, b *cb.Block) error {
	c := pl.c
	item := queued{}
	if block.IsConfig(b) {
		// The validator checks it against the configuration in force, which
		// is c.Bundle() here: earlier config blocks were waited for below.
		item.committed = make(chan struct{})
	}
	qe, err := c.ledger.NewQueryExecutor()
	if err != nil {
		return fmt.Errorf("validate block %d: %w", b.Header.Number, err)
	}
	item.p, err = c.cfg.Validator.Prepare(ctx, b, c.Bundle(), ledgerView{l: c.ledger, qe: qe}, &snapshotPolicies{qe: qe})
	qe.Done()
	if err != nil {
		return err
	}
	select {
	case pl.queue <- item:
	case <-pl.done:
		return pl.stopped()
	case <-ctx.Done():
		return ctx.Err()
	}
	pl.next, pl.prev = b.Header.Number+1, b.Header
	if item.committed != nil {
		select {
		case <-item.committed:
		case <-pl.done:
			return pl.stopped()
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return nil
}

func (pl *pipeline) stopped() error {
	if pl.err != nil {
		return pl.err
	}
	return fmt.Errorf("channel %s: committer stopped", pl.c.id)
}

// commitLoop commits queued blocks in order until the queue is closed and
// empty, a commit fails, or ctx ends.
func (pl *pipeline) commitLoop(ctx context.Context) error {
	for {
		select {
		case item, ok := <-pl.queue:
			if !ok {
				return nil
			}
			if err := pl.c.commit(ctx, item); err != nil {
				return err
			}
			if item.committed != nil {
				close(item.committed)
			}
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// commit finishes validating a prepared block against committed state and
// commits it, handing the ledger the read-write sets the validator decoded.
func (c *Channel) commit(ctx context.Context, item queued) error {
	b := item.p.Block()
	qe, err := c.ledger.NewQueryExecutor()
	if err != nil {
		return fmt.Errorf("validate block %d: %w", b.Header.Number, err)
	}
	results, err := c.cfg.Validator.Finish(ctx, item.p, ledgerView{l: c.ledger, qe: qe}, &snapshotPolicies{qe: qe})
	qe.Done()
	if err != nil {
		return err
	}
	codes := make([]pb.TxValidationCode, len(results))
	decoded := make([]*ledger.TxRWSet, len(results))
	for i, r := range results {
		codes[i] = r.Code
		if r.RWSet != nil {
			decoded[i] = &ledger.TxRWSet{Set: r.RWSet.Set, Namespaces: r.RWSet.Namespaces}
		}
	}
	final, err := c.ledger.CommitDecoded(b, codes, decoded)
	if err != nil {
		return fmt.Errorf("commit block %d: %w", b.Header.Number, err)
	}
	// Only a config transaction the validator found VALID installs its
	// configuration; the results carry it parsed. From here on the endorser,
	// deliver, gateway and puller (Bundle) and the validation of the next
	// blocks (add, after waiting for this commit) use it.
	if len(results) == 1 && results[0].Config != nil && final[0] == pb.TxValidationCode_VALID {
		c.bundle.Store(results[0].Config)
		c.log.Info("channel configuration updated", "block", b.Header.Number, "sequence", results[0].Config.Sequence())
	}
	valid := 0
	for _, code := range final {
		if code == pb.TxValidationCode_VALID {
			valid++
		}
	}
	c.log.Info("committed block", "block", b.Header.Number, "txs", len(final), "valid", valid)
	return nil
}
