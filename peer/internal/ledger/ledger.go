// Package ledger owns a peer's ledger for one channel: the block store (the
// source of truth), the versioned state database and the history index. It
// simulates transactions against committed state, building their read-write
// sets exactly as Fabric does; commits blocks with Fabric's MVCC and
// phantom-read validation; and answers the block and transaction queries the
// rest of the peer needs.
//
// Crash safety: Commit appends the block (with its final TRANSACTIONS_FILTER)
// to the block store first, then writes the block's state updates, history
// entries and the savepoint in one LevelDB batch. Open re-applies, from the
// stored blocks and their filters, any block the state database missed.
//
// Concurrency: Commit must be called by one goroutine at a time (a mutex
// enforces it). Simulators, query executors, history iterators and the
// query methods may be used from any number of goroutines concurrently with
// Commit; simulators and query executors read a snapshot taken when they
// were created, so they always see whole blocks. Height and Wait advance only
// once a block's state is applied.
package ledger

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"

	"github.com/hyperledger/fabric-protos-go-apiv2/common"
	"github.com/hyperledger/fabric-protos-go-apiv2/peer"

	"github.com/cairn-ledger/cairn/internal/block"
	"github.com/cairn-ledger/cairn/internal/blockstore"
	"github.com/cairn-ledger/cairn/peer/internal/ledger/statedb"
)

// Errors callers branch on.
var (
	// ErrClosed is returned once the ledger is closed.
	ErrClosed = errors.New("ledger: closed")
	// ErrWrongNumber reports a block that is not the next one.
	ErrWrongNumber = errors.New("ledger: block number is not the next height")
	// ErrStateAhead reports a state database holding blocks the block store
	// does not: the two directories do not belong together.
	ErrStateAhead = errors.New("ledger: state database is ahead of the block store")
	// ErrBroken reports a ledger whose last commit failed after the block was
	// stored; reopening it recovers.
	ErrBroken = errors.New("ledger: a previous commit failed half-way; reopen the ledger")
)

// blockStore is the subset of internal/blockstore the ledger uses.
type blockStore interface {
	Append(b *common.Block) error
	Height() uint64
	Block(n uint64) (*common.Block, error)
	BlockByHash(hash []byte) (*common.Block, error)
	BlockByTxID(txID string) (*common.Block, error)
	TxLocation(txID string) (blockNum uint64, txNum int, found bool, err error)
	Close() error
}

// Config configures a Ledger.
type Config struct {
	// Dir holds the channel's ledger: Dir/blocks and Dir/state.
	Dir string
	// Logger receives recovery and commit diagnostics; nil discards them.
	Logger *slog.Logger
	// NoSync skips fsync of blocks and state batches (tests, benchmarks).
	NoSync bool
	// Applied, if set, is called with the namespaces a committed block wrote
	// (values or metadata, valid transactions only), after those writes are in
	// state and before the block's height is published — before Wait returns
	// for it — so that caches of state can drop what changed in time. It runs
	// under the commit lock: it may read state but must not commit or close.
	Applied func(namespaces []string)
}

// Validate reports a config Open cannot use.
func (c Config) Validate() error {
	if c.Dir == "" {
		return errors.New("ledger: config: Dir is empty")
	}
	return nil
}

// Ledger is one channel's open ledger.
type Ledger struct {
	log    *slog.Logger
	blocks blockStore
	state  *statedb.DB

	applied func(namespaces []string) // Config.Applied

	// cmu serialises Commit and Close.
	cmu    sync.Mutex
	broken error
	closed bool
	// beforeApply, when set by a test, runs after the block is stored and
	// before its state is applied; an error stops Commit there, simulating a
	// crash between the two.
	beforeApply func() error

	// height counts blocks whose state is applied.
	height atomic.Uint64
	// nmu guards notify, closed and replaced on each commit so Wait needs no
	// polling; done is closed by Close.
	nmu    sync.Mutex
	notify chan struct{}
	done   chan struct{}

	// filters keeps the validation codes of the last blocks committed by this
	// Ledger, for TxValidationCode.
	filters recentFilters
	// waiters are the callers of WaitTxValidationCode.
	waiters txWaiters
}

// Open opens (creating if needed) the ledger in cfg.Dir and brings the state
// database up to the block store's height.
func Open(cfg Config) (*Ledger, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	bs, err := blockstore.Open(blockstore.Config{Dir: filepath.Join(cfg.Dir, "blocks"), NoSync: cfg.NoSync})
	if err != nil {
		return nil, fmt.Errorf("open ledger %s: %w", cfg.Dir, err)
	}
	l, err := open(cfg, bs)
	if err != nil {
		bs.Close()
		return nil, err
	}
	return l, nil
}

// open finishes Open over an already open block store, which the ledger then
// owns.
func open(cfg Config, bs blockStore) (*Ledger, error) {
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	st, err := statedb.Open(statedb.Config{Dir: filepath.Join(cfg.Dir, "state"), NoSync: cfg.NoSync})
	if err != nil {
		return nil, fmt.Errorf("open ledger %s: %w", cfg.Dir, err)
	}
	l := &Ledger{log: log, blocks: bs, state: st, applied: cfg.Applied, notify: make(chan struct{}), done: make(chan struct{})}
	if err := l.recover(); err != nil {
		st.Close()
		return nil, fmt.Errorf("open ledger %s: %w", cfg.Dir, err)
	}
	l.height.Store(bs.Height())
	return l, nil
}

// recover re-applies the stored blocks the state database has not seen,
// trusting their stored validation codes: MVCC already ran when they were
// committed, and re-running it against later state would give other answers.
func (l *Ledger) recover() error {
	sp, ok, err := l.state.Savepoint()
	if err != nil {
		return err
	}
	next := uint64(0)
	if ok {
		next = sp + 1
	}
	h := l.blocks.Height()
	if next > h {
		return fmt.Errorf("%w: state holds block %d, block store height is %d", ErrStateAhead, sp, h)
	}
	if next < h {
		l.log.Info("re-applying blocks missing from the state database", "from", next, "to", h-1)
	}
	for n := next; n < h; n++ {
		b, err := l.blocks.Block(n)
		if err != nil {
			return fmt.Errorf("recover block %d: %w", n, err)
		}
		filter := block.TxFilter(b)
		if len(filter) != len(b.GetData().GetData()) {
			return fmt.Errorf("recover block %d: transactions filter has %d entries for %d transactions", n, len(filter), len(b.GetData().GetData()))
		}
		codes := make([]peer.TxValidationCode, len(filter))
		for i, c := range filter {
			codes[i] = peer.TxValidationCode(c)
		}
		if err := l.applyBlock(b, codes, false); err != nil {
			return fmt.Errorf("recover block %d: %w", n, err)
		}
	}
	return nil
}

// applyBlock computes block b's updates against a fresh snapshot and writes
// them with the savepoint.
func (l *Ledger) applyBlock(b *common.Block, codes []peer.TxValidationCode, mvcc bool) error {
	snap, err := l.state.Snapshot()
	if err != nil {
		return err
	}
	defer snap.Release()
	u, err := prepareBlock(snap, b, codes, nil, mvcc)
	if err != nil {
		return err
	}
	return l.state.Apply(u.batch(), b.Header.Number)
}

// Commit validates and commits the next block. codes has one entry per
// envelope, filled by the peer's validator (signatures, policies, duplicate
// transaction IDs); transactions it left VALID are MVCC-checked here. Commit
// writes the final codes into the block's TRANSACTIONS_FILTER (modifying b),
// stores the block, applies the valid transactions' writes, and returns the
// final codes.
func (l *Ledger) Commit(b *common.Block, codes []peer.TxValidationCode) ([]peer.TxValidationCode, error) {
	return l.CommitDecoded(b, codes, nil)
}

// CommitDecoded is Commit for a caller that already decoded the read-write
// sets of the block's valid transactions: decoded[i], if not nil, is
// envelope i's set, which the ledger then does not decode again. The sets
// must be those the envelopes carry.
func (l *Ledger) CommitDecoded(b *common.Block, codes []peer.TxValidationCode, decoded []*TxRWSet) ([]peer.TxValidationCode, error) {
	l.cmu.Lock()
	defer l.cmu.Unlock()
	if l.closed {
		return nil, ErrClosed
	}
	if l.broken != nil {
		return nil, fmt.Errorf("%w: %v", ErrBroken, l.broken)
	}
	if b.GetHeader() == nil || b.GetData() == nil {
		return nil, errors.New("commit: block has no header or data")
	}
	num := b.Header.Number
	if h := l.blocks.Height(); num != h {
		return nil, fmt.Errorf("commit block %d: %w (height %d)", num, ErrWrongNumber, h)
	}
	if len(codes) != len(b.Data.Data) {
		return nil, fmt.Errorf("commit block %d: %d validation codes for %d transactions", num, len(codes), len(b.Data.Data))
	}
	final := slices.Clone(codes)
	filter := make([]byte, len(final))
	for i, c := range final {
		if c < 0 || c > 255 {
			return nil, fmt.Errorf("commit block %d: tx %d: validation code %d does not fit the filter", num, i, c)
		}
	}

	snap, err := l.state.Snapshot()
	if err != nil {
		return nil, fmt.Errorf("commit block %d: %w", num, err)
	}
	u, err := prepareBlock(snap, b, final, decoded, true)
	snap.Release()
	if err != nil {
		return nil, fmt.Errorf("commit block %d: %w", num, err)
	}
	for i, c := range final {
		filter[i] = byte(c)
	}
	if b.Metadata == nil {
		b.Metadata = &common.BlockMetadata{}
	}
	block.SetTxFilter(b, filter)
	if err := l.blocks.Append(b); err != nil {
		return nil, fmt.Errorf("commit block %d: store block: %w", num, err)
	}
	l.filters.put(num, slices.Clone(filter))
	// From here the block is durable; a failure leaves state behind the block
	// store, which only Open repairs.
	if l.beforeApply != nil {
		if err := l.beforeApply(); err != nil {
			l.broken = err
			return nil, fmt.Errorf("commit block %d: %w", num, err)
		}
	}
	if err := l.state.Apply(u.batch(), num); err != nil {
		l.broken = err
		return nil, fmt.Errorf("commit block %d: %w", num, err)
	}
	if l.applied != nil {
		l.applied(slices.Collect(maps.Keys(u.byNS)))
	}
	l.publish(num + 1)
	l.waiters.committed(b, final)
	return final, nil
}

func (l *Ledger) publish(height uint64) {
	l.nmu.Lock()
	l.height.Store(height)
	close(l.notify)
	l.notify = make(chan struct{})
	l.nmu.Unlock()
}

// Height is the number of committed blocks (block and state).
func (l *Ledger) Height() uint64 { return l.height.Load() }

// Wait returns once block n is committed (Height() > n), or with ctx's
// error, or ErrClosed when the ledger closes.
func (l *Ledger) Wait(ctx context.Context, n uint64) error {
	for {
		l.nmu.Lock()
		ch := l.notify
		l.nmu.Unlock()
		if l.height.Load() > n {
			return nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return ctx.Err()
		case <-l.done:
			return ErrClosed
		}
	}
}

// Block returns committed block n.
func (l *Ledger) Block(n uint64) (*common.Block, error) {
	return l.blocks.Block(n)
}

// BlockByHash returns the block whose header hash is hash.
func (l *Ledger) BlockByHash(hash []byte) (*common.Block, error) {
	return l.blocks.BlockByHash(hash)
}

// BlockByTxID returns the block holding the first transaction with txID.
func (l *Ledger) BlockByTxID(txID string) (*common.Block, error) {
	return l.blocks.BlockByTxID(txID)
}

// TxIDExists reports whether a transaction with txID is in a stored block,
// valid or not.
func (l *Ledger) TxIDExists(txID string) (bool, error) {
	_, _, found, err := l.blocks.TxLocation(txID)
	return found, err
}

// TxValidationCode returns the validation code the first transaction with
// txID got, read from its block's TRANSACTIONS_FILTER (kept in memory for the
// last blocks committed, read from the block store for older ones).
func (l *Ledger) TxValidationCode(txID string) (code peer.TxValidationCode, blockNum uint64, found bool, err error) {
	blockNum, txNum, found, err := l.blocks.TxLocation(txID)
	if err != nil || !found {
		return 0, 0, found, err
	}
	filter, ok := l.filters.get(blockNum)
	if !ok {
		b, err := l.blocks.Block(blockNum)
		if err != nil {
			return 0, 0, false, fmt.Errorf("validation code of %s: %w", txID, err)
		}
		filter = block.TxFilter(b)
	}
	if txNum < 0 || txNum >= len(filter) {
		return 0, 0, false, fmt.Errorf("validation code of %s: block %d filter has no entry %d", txID, blockNum, txNum)
	}
	return peer.TxValidationCode(filter[txNum]), blockNum, true, nil
}

// Close closes the state database and the block store. Simulators and
// iterators still open fail afterwards.
func (l *Ledger) Close() error {
	l.cmu.Lock()
	defer l.cmu.Unlock()
	if l.closed {
		return nil
	}
	l.closed = true
	close(l.done)
	return errors.Join(l.state.Close(), l.blocks.Close())
}

// StateDigest fingerprints the committed state (see statedb.Snapshot.Digest)
// at the current height; two peers with the same chain have the same digest.
func (l *Ledger) StateDigest() (digest []byte, keys int, height uint64, err error) {
	l.cmu.Lock()
	defer l.cmu.Unlock()
	if l.closed {
		return nil, 0, 0, ErrClosed
	}
	snap, err := l.state.Snapshot()
	if err != nil {
		return nil, 0, 0, err
	}
	defer snap.Release()
	digest, keys, err = snap.Digest()
	return digest, keys, l.Height(), err
}
