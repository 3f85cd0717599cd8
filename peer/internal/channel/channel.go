// Package channel owns one channel joined by a peer: its ledger, its current
// configuration bundle (replaced atomically when a config block whose config
// transaction the validator found VALID commits; an invalid one is committed
// marked INVALID_CONFIG_TRANSACTION and changes nothing) and
// the loop that pulls blocks from the orderers, validates and commits them.
// Run is owned by the peer and returns when its context ends; while it runs, a
// committer goroutine it owns finishes validation and commits block N while the
// puller's goroutine prepares block N+1 (pipeline.go). CommitBlocks runs the
// same pipeline over blocks the caller holds. The other methods are safe for
// concurrent use.
package channel

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"

	cb "github.com/hyperledger/fabric-protos-go-apiv2/common"
	"github.com/hyperledger/fabric-protos-go-apiv2/ledger/rwset/kvrwset"
	pb "github.com/hyperledger/fabric-protos-go-apiv2/peer"

	"github.com/cairn-ledger/cairn/internal/block"
	"github.com/cairn-ledger/cairn/internal/channelconfig"
	"github.com/cairn-ledger/cairn/internal/policy"
	"github.com/cairn-ledger/cairn/peer/internal/ledger"
	"github.com/cairn-ledger/cairn/peer/internal/lifecycle"
	"github.com/cairn-ledger/cairn/peer/internal/puller"
	"github.com/cairn-ledger/cairn/peer/internal/validator"
)

// Config configures a channel.
type Config struct {
	// Dir holds the channel's ledger.
	Dir string
	// MSPID is this peer's organisation.
	MSPID     string
	Validator *validator.Validator
	// Puller settings other than the orderers, which come from the channel config.
	Puller puller.Config
	Logger *slog.Logger
	// NoSync skips fsync (tests only).
	NoSync bool
}

// Channel is one joined channel.
type Channel struct {
	id     string
	cfg    Config
	log    *slog.Logger
	ledger *ledger.Ledger
	bundle atomic.Pointer[channelconfig.Bundle]
	defs   *definitionCache
}

// Create makes a new channel from its genesis block: it opens an empty ledger
// under cfg.Dir and commits the block.
func Create(cfg Config, genesis *cb.Block) (*Channel, error) {
	if genesis.GetHeader().GetNumber() != 0 || !block.IsConfig(genesis) {
		return nil, errors.New("join needs the channel's genesis config block (block 0)")
	}
	bundle, err := channelconfig.FromBlock(genesis)
	if err != nil {
		return nil, fmt.Errorf("genesis block: %w", err)
	}
	defs := newDefinitionCache()
	l, err := ledger.Open(ledger.Config{Dir: cfg.Dir, Logger: cfg.Logger, NoSync: cfg.NoSync, Applied: defs.applied})
	if err != nil {
		return nil, err
	}
	if l.Height() == 0 {
		if _, err := l.Commit(genesis, []pb.TxValidationCode{pb.TxValidationCode_VALID}); err != nil {
			l.Close()
			return nil, fmt.Errorf("commit genesis block: %w", err)
		}
	}
	return newChannel(cfg, bundle.ChannelID(), l, bundle, defs), nil
}

// Open reopens a channel whose ledger exists under cfg.Dir, recovering the
// configuration from the last config block.
func Open(cfg Config) (*Channel, error) {
	defs := newDefinitionCache()
	l, err := ledger.Open(ledger.Config{Dir: cfg.Dir, Logger: cfg.Logger, NoSync: cfg.NoSync, Applied: defs.applied})
	if err != nil {
		return nil, err
	}
	bundle, err := lastConfig(l)
	if err != nil {
		l.Close()
		return nil, err
	}
	return newChannel(cfg, bundle.ChannelID(), l, bundle, defs), nil
}

// newChannel wraps an open ledger; defs must be the cache the ledger's
// Applied hook feeds.
func newChannel(cfg Config, id string, l *ledger.Ledger, b *channelconfig.Bundle, defs *definitionCache) *Channel {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	c := &Channel{id: id, cfg: cfg, log: cfg.Logger.With("channel", id), ledger: l, defs: defs}
	c.bundle.Store(b)
	return c
}

// lastConfig finds the newest config block this peer applied: the last
// block's last-config pointer, or a backward scan when a block carries none
// (blocks from a genesis tool) or the block it points to was committed with
// its config transaction invalid (the orderer's pointer counts it; this peer
// kept the configuration before it).
func lastConfig(l *ledger.Ledger) (*channelconfig.Bundle, error) {
	h := l.Height()
	if h == 0 {
		return nil, errors.New("ledger is empty: the channel was never joined")
	}
	last, err := l.Block(h - 1)
	if err != nil {
		return nil, err
	}
	if idx, err := block.LastConfigIndex(last); err == nil {
		if cfgBlock, err := l.Block(idx); err == nil && appliedConfig(cfgBlock) {
			return channelconfig.FromBlock(cfgBlock)
		}
	}
	for n := h; n > 0; n-- {
		b, err := l.Block(n - 1)
		if err != nil {
			return nil, err
		}
		if appliedConfig(b) {
			return channelconfig.FromBlock(b)
		}
	}
	return nil, errors.New("ledger holds no valid config block")
}

// appliedConfig reports whether committed block b is a config block whose
// transaction was VALID (a block without a transactions filter, as a genesis
// tool writes it, counts as valid).
func appliedConfig(b *cb.Block) bool {
	if !block.IsConfig(b) {
		return false
	}
	f := block.TxFilter(b)
	return len(f) == 0 || pb.TxValidationCode(f[0]) == pb.TxValidationCode_VALID
}

// ID is the channel name.
func (c *Channel) ID() string { return c.id }

// Bundle is the configuration in force.
func (c *Channel) Bundle() *channelconfig.Bundle { return c.bundle.Load() }

// Ledger is the channel's ledger.
func (c *Channel) Ledger() *ledger.Ledger { return c.ledger }

// NewTxSimulator starts a simulation over the committed state.
func (c *Channel) NewTxSimulator(txID string) (*ledger.TxSimulator, error) {
	return c.ledger.NewTxSimulator(txID)
}

// TxIDExists reports whether a transaction with this ID is in the ledger.
func (c *Channel) TxIDExists(txID string) (bool, error) { return c.ledger.TxIDExists(txID) }

// ChaincodePackageID resolves the package this peer's organisation approved
// for the committed definition of chaincode name.
func (c *Channel) ChaincodePackageID(name string) (string, error) {
	pkg, _, err := c.ChaincodeInfo(name)
	return pkg, err
}

// ChaincodeInfo resolves the package this peer's organisation approved for
// the committed definition of chaincode name, and the definition itself
// (version, init-required) that endorsement needs.
func (c *Channel) ChaincodeInfo(name string) (string, *lifecycle.ChaincodeDefinition, error) {
	gen := c.defs.current()
	if e, ok := c.defs.get(name, gen); ok && e.approved {
		return e.packageID, e.def, nil
	}
	qe, err := c.ledger.NewQueryExecutor()
	if err != nil {
		return "", nil, err
	}
	defer qe.Done()
	def, ok, err := lifecycle.Definition(qe, name)
	if err != nil {
		return "", nil, err
	}
	if !ok {
		return "", nil, fmt.Errorf("chaincode %s is not defined", name)
	}
	pkg, ok, err := lifecycle.ApprovedPackageID(qe, name, def.Sequence, c.cfg.MSPID)
	if err != nil {
		return "", nil, err
	}
	if !ok || pkg == "" {
		return "", nil, fmt.Errorf("organisation %s approved no installed package for chaincode %s sequence %d", c.cfg.MSPID, name, def.Sequence)
	}
	c.defs.put(name, cachedDefinition{generation: gen, def: def, packageID: pkg, approved: true})
	return pkg, def, nil
}

// EndorsementPolicy implements validator.Policies over committed state.
func (c *Channel) EndorsementPolicy(ns string, writes []*kvrwset.KVWrite) (*cb.SignaturePolicyEnvelope, string, error) {
	if ns == lifecycle.Namespace {
		ref, err := lifecycle.ValidationPolicyForWrites(writes)
		return nil, ref, err
	}
	gen := c.defs.current()
	if e, ok := c.defs.get(ns, gen); ok {
		return e.def.EndorsementPolicy()
	}
	qe, err := c.ledger.NewQueryExecutor()
	if err != nil {
		return nil, "", err
	}
	defer qe.Done()
	def, ok, err := lifecycle.Definition(qe, ns)
	if err != nil {
		return nil, "", err
	}
	if !ok {
		return nil, "", fmt.Errorf("%w: %s", validator.ErrUndefined, ns)
	}
	c.defs.put(ns, cachedDefinition{generation: gen, def: def})
	return def.EndorsementPolicy()
}

func definedPolicy(qe *ledger.QueryExecutor, ns string) (*cb.SignaturePolicyEnvelope, string, error) {
	def, ok, err := lifecycle.Definition(qe, ns)
	if err != nil {
		return nil, "", err
	}
	if !ok {
		return nil, "", fmt.Errorf("%w: %s", validator.ErrUndefined, ns)
	}
	return def.EndorsementPolicy()
}

// Run pulls, validates and commits blocks until ctx ends.
func (c *Channel) Run(ctx context.Context) error {
	pcfg := c.cfg.Puller
	pcfg.ChannelID = c.id
	pcfg.Logger = c.log
	pcfg.Orderers = c.orderers
	p := puller.New(pcfg)
	err := c.runPipeline(ctx, func(ctx context.Context, pl *pipeline) error {
		next := func() (uint64, *cb.BlockHeader, puller.PolicySource) {
			n, prev := pl.tail()
			return n, prev, policySource{c.Bundle()}
		}
		return p.Run(ctx, next, pl.add)
	})
	if errors.Is(err, context.Canceled) {
		return nil
	}
	return err
}

// CommitBlocks validates and commits blocks, which must follow the ledger's
// height in order and have been verified as the puller does (structure, hash
// chain, orderer signatures), through the same pipeline as Run. It returns
// once the last one is committed. It is for tools and benchmarks that hold
// blocks already; it must not run concurrently with Run.
func (c *Channel) CommitBlocks(ctx context.Context, blocks []*cb.Block) error {
	return c.runPipeline(ctx, func(ctx context.Context, pl *pipeline) error {
		for _, b := range blocks {
			if n, _ := pl.tail(); b.GetHeader().GetNumber() != n {
				return fmt.Errorf("block %d given, want %d", b.GetHeader().GetNumber(), n)
			}
			if err := pl.add(ctx, b); err != nil {
				return err
			}
		}
		return nil
	})
}

// orderers is the puller's source of orderer endpoints and TLS roots: the
// configuration in force when it is called, which the puller does at each
// (re)connection, so a committed config block that moves the ordering service
// is followed from the next connection on.
func (c *Channel) orderers() ([]string, [][]byte) {
	o := c.Bundle().Orderer()
	return o.Endpoints, o.TLSRootCerts
}

type policySource struct{ b *channelconfig.Bundle }

func (p policySource) Policy(path string) (policy.Policy, error) { return p.b.Policies().Policy(path) }

// ledgerView is what the validator reads of the ledger: the tx ID index, and
// key metadata (key-level endorsement policies) from one state snapshot.
type ledgerView struct {
	l  *ledger.Ledger
	qe *ledger.QueryExecutor
}

func (v ledgerView) TxIDExists(txID string) (bool, error) { return v.l.TxIDExists(txID) }

func (v ledgerView) GetStateMetadata(ns, key string) (map[string][]byte, error) {
	return v.qe.GetStateMetadata(ns, key)
}

// snapshotPolicies implements validator.Policies over one state snapshot,
// resolving each chaincode's definition once: the snapshot does not move,
// and the _lifecycle policy depends only on the writes. It is safe for
// concurrent use and lives for one Prepare or Finish call.
type snapshotPolicies struct {
	qe    *ledger.QueryExecutor
	mu    sync.Mutex
	cache map[string]resolvedPolicy
}

type resolvedPolicy struct {
	spe *cb.SignaturePolicyEnvelope
	ref string
	err error
}

func (p *snapshotPolicies) EndorsementPolicy(ns string, writes []*kvrwset.KVWrite) (*cb.SignaturePolicyEnvelope, string, error) {
	if ns == lifecycle.Namespace {
		ref, err := lifecycle.ValidationPolicyForWrites(writes)
		return nil, ref, err
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	r, ok := p.cache[ns]
	if !ok {
		r.spe, r.ref, r.err = definedPolicy(p.qe, ns)
		if p.cache == nil {
			p.cache = make(map[string]resolvedPolicy)
		}
		p.cache[ns] = r
	}
	return r.spe, r.ref, r.err
}

// Close closes the ledger; Run must have returned.
func (c *Channel) Close() error { return c.ledger.Close() }
