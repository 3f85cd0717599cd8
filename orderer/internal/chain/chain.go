// Package chain owns one channel's ordering: a raft group (go.etcd.io/raft/v3,
// driven through RawNode) whose leader cuts envelopes into batches, builds and
// signs whole blocks and proposes them; every member appends each committed
// block verbatim to its block store, so all orderers hold byte-identical blocks.
//
// A node too far behind to be served from the leader's log receives a raft
// snapshot, which names the leader's last block; before applying it the chain
// pulls the missing blocks from other orderers through Config.Puller. A leader
// that sees a follower reject entries below what it had acknowledged (its data
// was wiped) compacts its log so that raft sends that follower a snapshot.
//
// Config updates (config.go): the leader orders a CONFIG envelope alone in its
// own block, after cutting the pending batch, re-validating it first if the
// configuration moved since it was validated, and takes no envelope until the
// block is applied. The block's raft metadata carries the new consenter IDs
// (Fabric's ComputeMembershipChanges); once applied, every node puts the new
// configuration in force and the leader proposes the raft AddNode/RemoveNode
// it implies. A leader that an update removes hands leadership over first; a
// node removed leaves once raft applies its removal, and Run returns
// ErrEvicted.
//
// Concurrency: all raft state, the block cutter and the batch timer belong to the
// goroutine running Run. Run also owns a writer goroutine that appends
// committed blocks to the block store, so a disk sync of a block does not
// stop the chain taking envelopes or persisting raft's log; Run stops it (after
// it wrote every queued block) before returning, and waits for it before a
// snapshot or a catch-up touches the store. Order, Step, Status, ReportUnreachable and
// ReportSnapshot may be called from any goroutine; they talk to Run through
// channels and return once Run has stopped. Run blocks while it pulls blocks for
// a snapshot (as Fabric's chain does); Step then waits.
package chain

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"time"

	"github.com/cairn-ledger/cairn/internal/block"
	"github.com/cairn-ledger/cairn/internal/channelconfig"
	"github.com/cairn-ledger/cairn/orderer/internal/blocksign"
	"github.com/cairn-ledger/cairn/orderer/internal/cutter"
	"github.com/cairn-ledger/cairn/orderer/internal/raftstore"
	cb "github.com/hyperledger/fabric-protos-go-apiv2/common"
	"github.com/hyperledger/fabric-protos-go-apiv2/orderer/etcdraft"
	"go.etcd.io/raft/v3"
	pb "go.etcd.io/raft/v3/raftpb"
	"go.etcd.io/raft/v3/tracker"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
)

// Errors callers branch on.
var (
	// ErrNoLeader: the group has no leader right now; the client may retry.
	ErrNoLeader = errors.New("no raft leader")
	// ErrStopped: the chain is not running.
	ErrStopped = errors.New("chain stopped")
	// ErrBadMessage: an envelope validated against an older configuration
	// fails against the one in force; it is not ordered.
	ErrBadMessage = errors.New("bad normal message")
)

// snapshotCatchUpEntries is how many entries stay in the log behind a snapshot,
// as in Fabric, so a follower slightly behind is served from the log.
const snapshotCatchUpEntries = 4

// BlockStore is the channel's durable block store.
type BlockStore interface {
	// AppendEncoded appends the next block: raw is its encoding (the raft
	// entry, written verbatim) and b what block.Unmarshal(raw) returned.
	AppendEncoded(raw []byte, b *cb.Block) error
	// Sync makes the appended blocks durable. The chain calls it before a
	// raft snapshot lets the WAL drop the entries that carried them, so the
	// store itself need not sync each append.
	Sync() error
	Height() uint64
	Block(n uint64) (*cb.Block, error)
}

// Transport carries this chain's traffic to the other consenters of the channel.
type Transport interface {
	// Send hands raft messages to their destinations without blocking. Lost
	// messages are fine: raft retransmits.
	Send(msgs []*pb.Message)
	// Forward hands envelopes, validated at config sequence seq, to the
	// chain of consenter `to` (the leader), all at once and in order, and
	// returns each one's outcome.
	Forward(ctx context.Context, to uint64, envs [][]byte, seq uint64) []error
}

// Puller fetches committed blocks that the raft log no longer holds from other
// orderers (package replicate, bound to this chain's block store).
type Puller interface {
	// Pull appends blocks Store.Height()..to to the block store, verified;
	// block `to` must have header hash wantHash. It returns once they are in,
	// or with an error when ctx ends or the store fails.
	Pull(ctx context.Context, to uint64, wantHash []byte) error
}

// Reporter is what a transport tells the chain about deliveries, so raft
// stops optimistic replication to an unreachable node and re-sends a lost
// snapshot. *Chain implements it.
type Reporter interface {
	ReportUnreachable(id uint64)
	ReportSnapshot(id uint64, ok bool)
}

// ReporterSetter is optionally implemented by a Transport that reports
// delivery failures; New hands it the chain.
type ReporterSetter interface {
	SetReporter(Reporter)
}

// Metrics receives the chain's events. BlockCommitted is called from the
// chain's block writer goroutine and the others from Run's, so an
// implementation must be safe for concurrent use.
type Metrics interface {
	BlockCut(channel, reason string)
	BlockCommitted(channel string, number uint64)
	Leader(channel string, isLeader bool)
}

// RaftMetrics is optionally implemented by a Config.Metrics that also counts
// leader changes seen by this node and block proposals raft refused.
type RaftMetrics interface {
	LeaderChanged(channel string)
	ProposalFailed(channel string)
}

// TermMetrics is optionally implemented by a Config.Metrics that also records
// the node's raft term (cairn network status shows it).
type TermMetrics interface {
	RaftTerm(channel string, term uint64)
}

// Config configures one chain. Consenters, Store, Raft, Signer and Transport
// are required.
type Config struct {
	ChannelID string
	// SelfID is this node's raft ID; Consenters are the voters' IDs, and
	// NextConsenterID goes into block metadata as Fabric's etcdraft keeps it.
	SelfID          uint64
	Consenters      []uint64
	NextConsenterID uint64

	TickInterval         time.Duration
	ElectionTick         int
	HeartbeatTick        int
	MaxInflightBlocks    int
	SnapshotIntervalSize uint32
	Batch                cutter.Config
	BatchTimeout         time.Duration

	// Members are the consenters' endpoints and certificates by raft ID (the
	// transport's members); config blocks that change them are compared with
	// them. Nil: unknown, and a config update changing consenters is refused.
	Members map[uint64]channelconfig.Consenter
	// Support is the channel configuration; nil: config envelopes are refused
	// and config blocks change only the batch parameters.
	Support ConfigSupport

	// Join: the raft store is fresh but the group already runs (the channel was
	// joined with a config block other than the genesis block): start without
	// bootstrapping and wait for the leader's snapshot or entries.
	Join bool
	// Puller fetches blocks behind a raft snapshot; nil leaves the chain
	// degraded when it falls behind one.
	Puller Puller

	Store     BlockStore
	Raft      *raftstore.Store
	Transport Transport
	Signer    blocksign.Signer
	Clock     Clock        // nil: RealClock
	Logger    *slog.Logger // nil: discard
	Metrics   Metrics      // nil: none
	Rand      io.Reader    // nil: crypto/rand (block signature nonces)
}

func (c *Config) validate() error {
	switch {
	case c.SelfID == 0:
		return errors.New("chain: SelfID must not be 0")
	case len(c.Consenters) == 0:
		return errors.New("chain: no consenters")
	case c.Store == nil || c.Raft == nil || c.Signer == nil || c.Transport == nil:
		return errors.New("chain: Store, Raft, Signer and Transport are required")
	case c.TickInterval <= 0:
		return errors.New("chain: TickInterval must be positive")
	case c.HeartbeatTick <= 0 || c.ElectionTick <= c.HeartbeatTick:
		return fmt.Errorf("chain: ElectionTick (%d) must be greater than HeartbeatTick (%d) > 0", c.ElectionTick, c.HeartbeatTick)
	case c.BatchTimeout <= 0:
		return errors.New("chain: BatchTimeout must be positive")
	}
	found := false
	for _, id := range c.Consenters {
		found = found || id == c.SelfID
	}
	if !found {
		return fmt.Errorf("chain: node %d is not among consenters %v", c.SelfID, c.Consenters)
	}
	return c.Batch.Validate()
}

// Status is a snapshot of the chain's raft state for health checks.
type Status struct {
	ID       uint64
	Leader   uint64
	State    string
	Term     uint64
	Height   uint64
	Running  bool
	Degraded string // why the chain cannot make progress on its own, if it cannot
	// CatchingUp is the block a snapshot named that the chain is pulling up to,
	// 0 when it is not pulling.
	CatchingUp uint64
}

type report struct {
	id       uint64
	snapshot bool // a snapshot report; otherwise unreachable
	ok       bool
}

// blockWrite is a committed block for the writer goroutine, a barrier whose
// done it closes once every earlier block is written, or a snapshot to take.
type blockWrite struct {
	raw   []byte
	b     *cb.Block
	index uint64
	done  chan struct{}
	// snap, when set, asks the writer for a raft snapshot once every block
	// queued before is written (takeSnapshotAt).
	snap *snapshotJob
}

// snapshotJob is a raft snapshot to take at an applied index.
type snapshotJob struct {
	index     uint64
	confState *pb.ConfState
}

// writeQueue is how many committed blocks may wait for the writer.
const writeQueue = 16

type submitReq struct {
	// envs is one CONFIG envelope, or normal envelopes to order in turn.
	envs   [][]byte
	sizes  []uint32 // envelopeSize of each normal envelope, computed by the caller
	config bool
	seq    uint64 // the config sequence envs were validated at
	// stopAtFirst: take no envelope after one that is refused (a forwarded
	// request is answered with the count of envelopes accepted in a row).
	stopAtFirst bool
	resp        chan submitResult
}

// submitResult answers a submitReq. errs[:handled] are the outcomes of the
// envelopes the leader handled. If it stopped early, errs[handled] is the
// refusal a retry may overcome (errNotLeader, errAbdicating, errBusy) that
// stopped it, or nil when stopAtFirst stopped it after a refusal.
type submitResult struct {
	errs    []error
	handled int
}

// Chain is one channel's raft consenter.
type Chain struct {
	cfg    Config
	log    *slog.Logger
	clock  Clock
	stepC  chan *pb.Message
	submit chan submitReq
	doneC  chan struct{}
	start  sync.Once

	mu      sync.Mutex
	status  Status
	reports []report      // guarded by mu; drained by Run
	reportC chan struct{} // capacity 1: reports are pending
	// leaderC is closed (and replaced) when status.Leader changes; guarded by mu.
	leaderC chan struct{}

	// Owned by Run.
	rn          *raft.RawNode
	cut         *cutter.Cutter
	timer       Timer
	confState   *pb.ConfState
	applied     uint64
	isLeader    bool
	lastLead    uint64 // raft leader last seen, to count leader changes
	catchUpTo   uint64 // a new leader accepts envelopes once applied reaches this
	lastCreated *cb.BlockHeader
	lastConfig  uint64
	// ownBlocks are the encoded blocks this node proposed and has not yet
	// applied. Applying an entry whose data equals one of them skips hashing
	// the block's data again: New hashed exactly these envelopes, and
	// comparing bytes costs a few percent of hashing them. (raft copies a
	// proposal's data, so the entry is never the same memory.)
	ownBlocks [][]byte
	// tip and tipHash are the header and header hash of the last block
	// applied: written to the store or queued for the writer.
	tip     *cb.BlockHeader
	tipHash []byte
	// writeC feeds committed blocks to the writer goroutine (writeBlocks),
	// which appends them to the store; writeErrC carries its first failure.
	// Both are nil until Run starts the writer.
	writeC    chan blockWrite
	writeErrC chan error
	// writtenC (capacity 1) wakes Run when the writer appended a block, as
	// that may let the leader take envelopes again (MaxInflightBlocks).
	writtenC chan struct{}
	proposed uint64 // entries proposed since the last Ready
	// persisting is the Ready whose hard state and entries the persister
	// goroutine is writing to the WAL (nil: none); persistC hands it over and
	// persistedC brings back the outcome. See handleReady.
	persisting *persistJob
	persistC   chan persistJob
	persistedC chan error
	snapBytes  uint64
	term       uint64 // last term reported to TermMetrics
	ticks      uint64
	snapSent   map[uint64]uint64 // follower -> tick a snapshot was sent at

	// Configuration changes (config.go).
	members        map[uint64]channelconfig.Consenter
	configInflight bool           // a config block or its raft change is not applied yet
	confChange     *pb.ConfChange // raft change of an applied config block, not applied yet
	confChangeAt   uint64         // tick it was last proposed at
	proposeCC      bool           // propose confChange after the current Ready
	evicting       bool           // a committed config block removed this node
	evictedAt      uint64
	abdicating     bool // transferring leadership before a config update removing this node
	abdicatedAt    uint64
}

// New checks cfg and returns a chain that starts when Run is called.
func New(cfg Config) (*Chain, error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	if cfg.Store.Height() == 0 {
		return nil, errors.New("chain: block store has no genesis block")
	}
	if cfg.MaxInflightBlocks <= 0 {
		cfg.MaxInflightBlocks = 5
	}
	c := &Chain{
		cfg:    cfg,
		log:    cfg.Logger,
		clock:  cfg.Clock,
		stepC:  make(chan *pb.Message, 256),
		submit: make(chan submitReq),
		doneC:  make(chan struct{}),
		cut:    cutter.New(cfg.Batch),

		reportC:  make(chan struct{}, 1),
		leaderC:  make(chan struct{}),
		snapSent: map[uint64]uint64{},
		members:  cloneMembers(cfg.Members),
	}
	if c.log == nil {
		c.log = slog.New(slog.DiscardHandler)
	}
	c.log = c.log.With("channel", cfg.ChannelID, "raft_id", cfg.SelfID)
	if c.clock == nil {
		c.clock = RealClock{}
	}
	c.status = Status{ID: cfg.SelfID, State: raft.StateFollower.String(), Height: cfg.Store.Height()}
	if rs, ok := cfg.Transport.(ReporterSetter); ok {
		rs.SetReporter(c)
	}
	return c, nil
}

// ReportUnreachable tells raft that messages to node id are not getting
// through (the transport's stream broke or its queue overflowed). It never
// blocks.
func (c *Chain) ReportUnreachable(id uint64) { c.queueReport(report{id: id}) }

// ReportSnapshot tells raft whether a snapshot message to node id was
// delivered; after a failure the leader sends it again. It never blocks.
func (c *Chain) ReportSnapshot(id uint64, ok bool) {
	c.queueReport(report{id: id, snapshot: true, ok: ok})
}

func (c *Chain) queueReport(r report) {
	c.mu.Lock()
	if len(c.reports) < 1024 {
		c.reports = append(c.reports, r)
	}
	c.mu.Unlock()
	select {
	case c.reportC <- struct{}{}:
	default:
	}
}

func (c *Chain) applyReports() {
	c.mu.Lock()
	rs := c.reports
	c.reports = nil
	c.mu.Unlock()
	for _, r := range rs {
		switch {
		case !r.snapshot:
			c.rn.ReportUnreachable(r.id)
		case r.ok:
			delete(c.snapSent, r.id)
			c.rn.ReportSnapshot(r.id, raft.SnapshotFinish)
		default:
			delete(c.snapSent, r.id)
			c.rn.ReportSnapshot(r.id, raft.SnapshotFailure)
		}
	}
}

// Status reports the chain's current raft view.
func (c *Chain) Status() Status {
	c.mu.Lock()
	defer c.mu.Unlock()
	s := c.status
	s.Height = c.cfg.Store.Height()
	return s
}

// Step hands a raft message received from another consenter to the chain.
func (c *Chain) Step(ctx context.Context, m *pb.Message) error {
	select {
	case c.stepC <- m:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	case <-c.doneC:
		return ErrStopped
	}
}

// Order hands an envelope validated at config sequence seq to the consenter:
// to this node's cutter when it leads, otherwise forwarded to the leader. The
// leader validates it again if the configuration moved since (Fabric's
// ProcessNormalMsg in etcdraft's ordered). It returns once the envelope is
// accepted for ordering, not once it is in a block.
func (c *Chain) Order(ctx context.Context, env []byte, seq uint64) error {
	return c.OrderBatch(ctx, [][]byte{env}, seq)[0]
}

// OrderBatch is Order for envelopes to be ordered one after the other, in one
// hand-over to the chain's goroutine or one pipelined forward to the leader;
// errs[i] is what Order would have returned for envelope i.
func (c *Chain) OrderBatch(ctx context.Context, envs [][]byte, seq uint64) (errs []error) {
	return c.submitEnvelopes(ctx, submitReq{envs: envs, seq: seq})
}

// Configure hands a CONFIG envelope, validated against config sequence seq,
// to the consenter: the leader re-validates it if the configuration moved
// since, then orders it alone in a block. Followers forward it to the leader.
func (c *Chain) Configure(ctx context.Context, env []byte, seq uint64) error {
	return c.submitEnvelopes(ctx, submitReq{envs: [][]byte{env}, config: true, seq: seq})[0]
}

// Submit hands over envelopes another consenter validated at config sequence
// seq and forwarded to the chain in one request, in order: CONFIG envelopes
// are configured, runs of others ordered in one hand-over each. It stops at
// the first refusal and returns how many were accepted and that refusal.
func (c *Chain) Submit(ctx context.Context, envs [][]byte, seq uint64) (int, error) {
	accepted := 0
	for len(envs) > 0 {
		n := 1
		config := IsConfigEnvelope(envs[0])
		for !config && n < len(envs) && !IsConfigEnvelope(envs[n]) {
			n++
		}
		errs := c.submitEnvelopes(ctx, submitReq{envs: envs[:n], config: config, seq: seq, stopAtFirst: true})
		for _, err := range errs {
			if err != nil {
				return accepted, err
			}
			accepted++
		}
		envs = envs[n:]
	}
	return accepted, nil
}

// errEarlierRefused answers, under stopAtFirst, the envelopes after a refused one.
var errEarlierRefused = errors.New("not ordered: an envelope before it in the request was refused")

// submitEnvelopes hands req's envelopes to the leader, this node's goroutine
// or another consenter's, and returns each one's outcome.
func (c *Chain) submitEnvelopes(ctx context.Context, req submitReq) []error {
	errs := make([]error, len(req.envs))
	off := 0 // errs[:off] are decided
	fail := func(err error) []error {
		for i := off; i < len(errs); i++ {
			errs[i] = err
		}
		return errs
	}
	for attempt := 0; attempt < 3; attempt++ {
		select {
		case <-c.doneC:
			return fail(ErrStopped)
		default:
		}
		c.mu.Lock()
		st, leaderC := c.status, c.leaderC
		c.mu.Unlock()
		switch st.Leader {
		case raft.None:
			return fail(ErrNoLeader)
		case c.cfg.SelfID:
		default:
			c.forward(ctx, st.Leader, req.envs[off:], req.seq, req.stopAtFirst, errs[off:])
			return errs
		}
		if req.sizes == nil && !req.config {
			// Here, not on the chain's goroutine.
			req.sizes = make([]uint32, len(req.envs))
			for i, env := range req.envs {
				req.sizes[i] = envelopeSize(env)
			}
		}
		sub := req
		sub.envs = req.envs[off:]
		if sub.sizes != nil {
			sub.sizes = req.sizes[off:]
		}
		sub.resp = make(chan submitResult, 1)
		select {
		case c.submit <- sub:
		case <-leaderC:
			// This node stopped leading while the chain took no envelopes
			// (blocks in flight): a follower never takes them, so ask again
			// who leads rather than wait for ctx.
			continue
		case <-ctx.Done():
			return fail(ctx.Err())
		case <-c.doneC:
			return fail(ErrStopped)
		}
		// Handed over: the chain's goroutine answers at once, and what it
		// took is ordered whatever ctx does now, so wait for the answer
		// rather than report taken envelopes as failed.
		var res submitResult
		select {
		case res = <-sub.resp:
		case <-c.doneC:
			return fail(ErrStopped)
		}
		copy(errs[off:], res.errs[:res.handled])
		off += res.handled
		if off == len(errs) {
			return errs
		}
		retry := res.errs[res.handled]
		switch {
		case retry == nil: // stopAtFirst after a refusal
			return fail(errEarlierRefused)
		case errors.Is(retry, errBusy):
			attempt-- // the rest waits until the leader takes envelopes again
			continue
		case errors.Is(retry, errNotLeader):
			continue // leadership moved between Status and submit
		case errors.Is(retry, errAbdicating):
			// Wait for the new leader, then hand it the envelopes.
			select {
			case <-leaderC:
			case <-ctx.Done():
				return fail(ctx.Err())
			case <-c.doneC:
				return fail(ErrStopped)
			}
			attempt--
			continue
		}
	}
	return fail(ErrNoLeader)
}

// forward hands envelopes validated at config sequence seq to the leader
// and fills errs with their outcomes. Under stopAtFirst they go one at a
// time and the first refusal ends it; otherwise all are forwarded at once,
// pipelined.
func (c *Chain) forward(ctx context.Context, leader uint64, envs [][]byte, seq uint64, stopAtFirst bool, errs []error) {
	wrap := func(err error) error {
		if err == nil {
			return nil
		}
		return fmt.Errorf("forward to leader %d: %w", leader, err)
	}
	if !stopAtFirst {
		for i, err := range c.cfg.Transport.Forward(ctx, leader, envs, seq) {
			errs[i] = wrap(err)
		}
		return
	}
	for i, env := range envs {
		if errs[i] = wrap(c.cfg.Transport.Forward(ctx, leader, [][]byte{env}, seq)[0]); errs[i] != nil {
			for j := i + 1; j < len(errs); j++ {
				errs[j] = errEarlierRefused
			}
			return
		}
	}
}

// orderSubmitted runs a submitted request's envelopes through the leader's
// cutter, in order. It stops at a refusal that a retry may overcome (the
// leadership moved, or the leader stopped taking envelopes after the
// blocks this request filled), and under stopAtFirst at any refusal.
func (c *Chain) orderSubmitted(req submitReq) submitResult {
	res := submitResult{errs: make([]error, len(req.envs))}
	for i, env := range req.envs {
		if i > 0 && !c.accepting() {
			// Too many blocks in flight (or a config block): the rest
			// waits, as a submission arriving now would.
			res.errs[i] = errBusy
			return res
		}
		var err error
		if req.config {
			err = c.orderConfig(env, req.seq)
		} else {
			err = c.ordered(env, req.sizes[i], req.seq)
		}
		res.errs[i] = err
		if errors.Is(err, errNotLeader) || errors.Is(err, errAbdicating) {
			return res
		}
		res.handled = i + 1
		if err != nil && req.stopAtFirst {
			return res
		}
	}
	return res
}

var errNotLeader = errors.New("not the leader")

// errBusy stops a submitted batch where the leader stopped taking envelopes
// (MaxInflightBlocks, a config block in flight); the rest is handed over
// again once it takes them.
var errBusy = errors.New("leader not taking envelopes now")

// Run drives the raft group until ctx is cancelled. It may be called once.
func (c *Chain) Run(ctx context.Context) error {
	err := errors.New("chain: Run called twice")
	c.start.Do(func() { err = c.run(ctx) })
	return err
}

func (c *Chain) run(ctx context.Context) error {
	defer func() {
		c.mu.Lock()
		c.status.Running = false
		c.status.Leader = raft.None
		c.mu.Unlock()
		if c.cfg.Metrics != nil {
			c.cfg.Metrics.Leader(c.cfg.ChannelID, false)
		}
		close(c.doneC)
	}()
	if err := c.startRaft(); err != nil {
		return err
	}
	// A snapshot persisted ahead of the block store (the store lost blocks):
	// pull them before raft applies anything after it.
	if snap, err := c.cfg.Raft.Snapshot(); err == nil && !raft.IsEmptySnap(snap) {
		if err := c.catchUp(ctx, snap); err != nil {
			return stopErr(ctx, err)
		}
	}
	// Committed blocks are appended by a writer goroutine, so the chain goes
	// on taking envelopes and stepping raft while the disk syncs a block.
	// Raft's own log is persisted before Advance, on this goroutine.
	var wg sync.WaitGroup
	c.writeC = make(chan blockWrite, writeQueue)
	c.writeErrC = make(chan error, 1)
	c.writtenC = make(chan struct{}, 1)
	wg.Add(1)
	go func() {
		defer wg.Done()
		c.writeBlocks()
	}()
	defer func() {
		// Blocks still queued are committed: write them before stopping.
		close(c.writeC)
		wg.Wait()
	}()

	c.mu.Lock()
	c.status.Running = true
	c.mu.Unlock()

	ticker := c.clock.NewTicker(c.cfg.TickInterval)
	defer ticker.Stop()
	defer c.stopTimer()

	if err := c.handleReady(ctx); err != nil {
		return stopErr(ctx, err)
	}
	if len(c.cfg.Consenters) == 1 && !c.cfg.Join {
		// A single voter need not wait for an election timeout. Raft refuses to
		// campaign before the bootstrap membership is applied, hence after the
		// first Ready.
		if err := c.rn.Campaign(); err != nil {
			return fmt.Errorf("chain %s: campaign: %w", c.cfg.ChannelID, err)
		}
		if err := c.handleReady(ctx); err != nil {
			return stopErr(ctx, err)
		}
	}
	// From here on the persister writes steady Readys to the WAL while this
	// goroutine goes on taking envelopes and raft messages (handleReady).
	// Not before: the Readys of a restart apply what the log holds, and a
	// single voter campaigns only once they are applied.
	c.persistC = make(chan persistJob, 1)
	c.persistedC = make(chan error, 1)
	wg.Add(1)
	go func() {
		defer wg.Done()
		for j := range c.persistC {
			c.persistedC <- c.cfg.Raft.Persist(j.rd.HardState, j.rd.Entries)
		}
	}()
	// Runs before the writer's deferred stop, which waits for both. A Ready
	// still being persisted is abandoned with the chain: raft reloads
	// whatever the WAL holds at the next start.
	defer close(c.persistC)
	for {
		var submitC chan submitReq
		if c.accepting() {
			submitC = c.submit
		}
		var timerC <-chan time.Time
		if c.timer != nil {
			timerC = c.timer.C()
		}
		var persistedC chan error
		if c.persisting != nil {
			persistedC = c.persistedC
		}
		select {
		case <-ctx.Done():
			c.log.Info("raft chain stopping")
			return nil
		case <-ticker.C():
			c.rn.Tick()
			c.ticks++
			c.checkSnapshotsSent()
			c.maybeProposeConfChange()
			if c.abdicating && c.ticks-c.abdicatedAt >= uint64(2*c.cfg.ElectionTick) {
				c.log.Warn("leadership transfer did not complete; taking envelopes again")
				c.abdicating = false
			}
			if c.evictionDue() {
				c.log.Info("removed from the channel's consenters and raft no longer reaches this node; stopping")
				return ErrEvicted
			}
		case <-c.reportC:
			c.applyReports()
		case err := <-c.writeErrC:
			return err
		case err := <-persistedC:
			if err := c.finishReady(ctx, err); err != nil {
				return stopErr(ctx, err)
			}
		case <-c.writtenC:
		case m := <-c.stepC:
			c.step(m)
		case req := <-submitC:
			req.resp <- c.orderSubmitted(req)
		case <-timerC:
			c.timer = nil
			if b := c.cut.Cut(); len(b.Envelopes) > 0 && c.isLeader {
				c.propose(b)
			}
		}
		if err := c.handleReady(ctx); err != nil {
			return stopErr(ctx, err)
		}
	}
}

// stopErr turns the error of an interrupted blocking step into a clean stop
// when ctx ended.
func stopErr(ctx context.Context, err error) error {
	if ctx.Err() != nil {
		return nil
	}
	return err
}

// step hands a message from another node to raft, guarding against a peer
// that lost its raft data (a wiped and re-joined consenter):
//   - on a follower, a heartbeat may carry a commit index beyond this node's
//     log (the leader remembers what the node had acknowledged before); raft
//     would panic, so the commit is capped at the local log;
//   - on the leader, a rejection below the follower's acknowledged index means
//     the follower's log is gone; raft never probes below that index, so the
//     leader compacts its log past it to make raft send a snapshot.
func (c *Chain) step(m *pb.Message) {
	switch {
	case m.GetType() == pb.MsgHeartbeat:
		// The stored log, not entries being persisted: raft may have
		// replaced those meanwhile, and a lower cap is always safe.
		if last, err := c.cfg.Raft.LastIndex(); err == nil && m.GetCommit() > last {
			c.log.Debug("heartbeat commit beyond the local log capped", "commit", m.GetCommit(), "last", last)
			m.Commit = &last
		}
	case m.GetType() == pb.MsgAppResp && m.GetReject() && c.isLeader:
		c.followerLostLog(m)
	}
	if err := c.rn.Step(m); err != nil {
		c.log.Debug("raft step", "from", m.GetFrom(), "type", m.GetType().String(), "err", err)
	}
}

func (c *Chain) followerLostLog(m *pb.Message) {
	pr, ok := c.rn.Status().Progress[m.GetFrom()]
	if !ok || m.GetRejectHint() >= pr.Match {
		return
	}
	c.log.Warn("follower rejected entries it had acknowledged; its raft data was lost", "follower", m.GetFrom(), "match", pr.Match, "hint", m.GetRejectHint())
	if c.applied > pr.Match {
		c.compactPast(pr.Match)
		return
	}
	// Nothing applied beyond what the follower had: an empty entry moves the
	// log on so it can be compacted past that point at the next rejection.
	if last := c.lastIndex(); last+c.proposed <= pr.Match {
		if err := c.rn.Propose(nil); err == nil {
			c.proposed++
		}
	}
}

// compactPast compacts the raft log beyond index i, taking a snapshot at the
// applied index if the stored one is older.
func (c *Chain) compactPast(i uint64) {
	snap, err := c.cfg.Raft.Snapshot()
	if err != nil {
		c.log.Error("read snapshot", "err", err)
		return
	}
	if snap.GetMetadata().GetIndex() <= i {
		c.takeSnapshotKeep(0)
		return
	}
	if err := c.cfg.Raft.Compact(snap.GetMetadata().GetIndex()); err != nil {
		c.log.Error("compact raft log", "err", err)
	}
}

// checkSnapshotsSent reports a snapshot as failed when the follower it went to
// still waits for one long after it was sent (the message was lost), so the
// leader sends it again. The transport may report sooner through
// ReportSnapshot.
func (c *Chain) checkSnapshotsSent() {
	if len(c.snapSent) == 0 {
		return
	}
	if !c.isLeader {
		clear(c.snapSent)
		return
	}
	if c.ticks%uint64(c.cfg.HeartbeatTick) != 0 {
		return
	}
	limit := uint64(4 * c.cfg.ElectionTick)
	prs := c.rn.Status().Progress
	for id, at := range c.snapSent {
		pr, ok := prs[id]
		switch {
		case !ok || pr.State != tracker.StateSnapshot:
			delete(c.snapSent, id)
		case c.ticks-at >= limit:
			delete(c.snapSent, id)
			c.log.Info("snapshot to follower not acknowledged; sending again", "follower", id)
			c.rn.ReportSnapshot(id, raft.SnapshotFailure)
		}
	}
}

func (c *Chain) startRaft() error {
	store := c.cfg.Raft
	snap, err := store.Snapshot()
	if err != nil {
		return fmt.Errorf("chain %s: read snapshot: %w", c.cfg.ChannelID, err)
	}
	c.applied = snap.GetMetadata().GetIndex()
	c.confState = snap.GetMetadata().GetConfState()
	last, err := c.cfg.Store.Block(c.cfg.Store.Height() - 1)
	if err != nil {
		return fmt.Errorf("chain %s: read last block: %w", c.cfg.ChannelID, err)
	}
	c.lastConfig = lastConfigOf(last)
	c.setTip(last.Header)

	rn, err := raft.NewRawNode(&raft.Config{
		ID:              c.cfg.SelfID,
		ElectionTick:    c.cfg.ElectionTick,
		HeartbeatTick:   c.cfg.HeartbeatTick,
		Storage:         store,
		Applied:         c.applied,
		MaxSizePerMsg:   1 << 20,
		MaxInflightMsgs: 256,
		PreVote:         true,
		CheckQuorum:     true,
		// Envelopes reach the leader through the cluster transport. Raft
		// forwarding a proposal instead would let a node that stepped down
		// while a Ready was being persisted (it still believes it leads
		// until the next Ready) hand the new leader a block built on its
		// own tip; raft drops such a proposal now.
		DisableProposalForwarding: true,
		// A leader that applies its own removal steps down, so the others
		// elect a new one at once.
		StepDownOnRemoval: true,
		Logger:            raftLogger{c.log.With("component", "raft")},
	})
	if err != nil {
		return fmt.Errorf("chain %s: start raft: %w", c.cfg.ChannelID, err)
	}
	c.rn = rn
	if store.Fresh() && c.cfg.Join {
		c.log.Info("joined a running raft group; waiting for the leader", "height", c.cfg.Store.Height())
	} else if store.Fresh() {
		peers := make([]raft.Peer, len(c.cfg.Consenters))
		for i, id := range c.cfg.Consenters {
			peers[i] = raft.Peer{ID: id}
		}
		if err := rn.Bootstrap(peers); err != nil {
			return fmt.Errorf("chain %s: bootstrap raft: %w", c.cfg.ChannelID, err)
		}
		c.log.Info("raft group bootstrapped", "consenters", c.cfg.Consenters)
	} else {
		c.log.Info("raft restarted from disk", "applied", c.applied, "height", c.cfg.Store.Height())
	}
	return nil
}

// lastConfigOf reads the last config index a block carries; a config block (the
// genesis block) is its own last config.
func lastConfigOf(b *cb.Block) uint64 {
	if block.IsConfig(b) {
		return b.GetHeader().GetNumber()
	}
	if n, err := block.LastConfigIndex(b); err == nil {
		return n
	}
	return 0
}

func (c *Chain) accepting() bool {
	// While a Ready is being persisted its role change is not applied yet,
	// but raft may already have stepped down (a message from a newer term).
	if c.persisting != nil && c.isLeader && c.rn.BasicStatus().RaftState != raft.StateLeader {
		return false
	}
	if !c.isLeader || c.applied < c.catchUpTo || c.lastCreated == nil || c.configInflight || c.abdicating {
		return false
	}
	written := c.cfg.Store.Height() - 1
	return c.lastCreated.Number-written < uint64(c.cfg.MaxInflightBlocks)
}

// ordered runs one envelope of the given envelopeSize, validated at config
// sequence seq, through the cutter on the leader. An envelope validated
// against an older configuration is validated again first (its creator may
// have lost write access), as Fabric's etcdraft chain does; that costs a
// signature check on this goroutine, but only for envelopes in flight across
// a config change.
func (c *Chain) ordered(env []byte, size uint32, seq uint64) error {
	if !c.isLeader {
		return errNotLeader
	}
	if sup := c.cfg.Support; sup != nil {
		if current := sup.Bundle().Sequence(); seq != current {
			if err := sup.ProcessNormal(env); err != nil {
				if m, ok := c.cfg.Metrics.(RaftMetrics); ok {
					m.ProposalFailed(c.cfg.ChannelID)
				}
				return fmt.Errorf("%w: no longer valid at config sequence %d: %v", ErrBadMessage, current, err)
			}
		}
	}
	batches, pending := c.cut.Ordered(env, size)
	for _, b := range batches {
		c.propose(b)
	}
	switch {
	case pending && c.timer == nil:
		c.timer = c.clock.NewTimer(c.cfg.BatchTimeout)
	case !pending:
		c.stopTimer()
	}
	return nil
}

// envelopeSize is the size Fabric's block cutter counts: payload plus
// signature, as decoding the envelope would give them, or len(raw) for bytes
// that do not decode. It walks the wire format instead of decoding, so neither
// field is copied.
func envelopeSize(raw []byte) uint32 {
	const (
		fieldPayload   = 1
		fieldSignature = 2
	)
	var payload, signature int
	for b := raw; len(b) > 0; {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 || num > protowire.MaxValidNumber {
			return uint32(len(raw))
		}
		b = b[n:]
		if typ == protowire.BytesType && (num == fieldPayload || num == fieldSignature) {
			v, m := protowire.ConsumeBytes(b)
			if m < 0 {
				return uint32(len(raw))
			}
			// A repeated scalar field: the last occurrence wins, as in proto.Unmarshal.
			if num == fieldPayload {
				payload = len(v)
			} else {
				signature = len(v)
			}
			b = b[m:]
			continue
		}
		m := protowire.ConsumeFieldValue(num, typ, b)
		if m < 0 {
			return uint32(len(raw))
		}
		b = b[m:]
	}
	return uint32(payload + signature)
}

func (c *Chain) stopTimer() {
	if c.timer != nil {
		c.timer.Stop()
		c.timer = nil
	}
}

// propose builds, signs and proposes the next block from a batch.
func (c *Chain) propose(batch cutter.Batch) {
	if c.proposeBlock(batch.Envelopes, c.cfg.Consenters, c.cfg.NextConsenterID, false, string(batch.Reason)) && c.cfg.Metrics != nil {
		c.cfg.Metrics.BlockCut(c.cfg.ChannelID, string(batch.Reason))
	}
}

// proposeBlock builds, signs and proposes the next block holding envs, with
// the given raft consenter IDs in its metadata; a config block is its own last
// config. It reports whether raft took the proposal.
func (c *Chain) proposeBlock(envs [][]byte, ids []uint64, next uint64, config bool, reason string) bool {
	prev := c.lastCreated
	b := block.New(prev.Number+1, block.HeaderHash(prev), envs)
	last := c.lastIndex()
	md, err := proto.Marshal(&etcdraft.BlockMetadata{
		ConsenterIds:    ids,
		NextConsenterId: next,
		// The index this proposal's entry gets: every earlier entry is stored,
		// being persisted (handleReady drained them) or proposed since.
		RaftIndex: last + c.proposed + 1,
	})
	if err != nil {
		c.log.Error("encode raft block metadata", "block", b.Header.Number, "err", err)
		return false
	}
	lastConfig := c.lastConfig
	if config {
		lastConfig = b.Header.Number
	}
	if err := blocksign.Sign(b, c.cfg.Signer, lastConfig, md, c.cfg.Rand); err != nil {
		c.log.Error("sign block; batch dropped", "block", b.Header.Number, "envelopes", len(envs), "err", err)
		return false
	}
	data, err := proto.Marshal(b)
	if err != nil {
		c.log.Error("encode block; batch dropped", "block", b.Header.Number, "err", err)
		return false
	}
	if err := c.rn.Propose(data); err != nil {
		if rm, ok := c.cfg.Metrics.(RaftMetrics); ok {
			rm.ProposalFailed(c.cfg.ChannelID)
		}
		c.log.Warn("raft dropped block proposal", "block", b.Header.Number, "envelopes", len(envs), "err", err)
		return false
	}
	c.proposed++
	c.lastCreated = b.Header
	if len(c.ownBlocks) == maxOwnBlocks {
		c.ownBlocks = append(c.ownBlocks[:0], c.ownBlocks[1:]...)
	}
	c.ownBlocks = append(c.ownBlocks, data)
	c.log.Debug("block proposed", "block", b.Header.Number, "envelopes", len(envs), "reason", reason)
	return true
}

// persistJob is a Ready handed to the persister goroutine.
type persistJob struct {
	rd    raft.Ready
	early bool   // its messages were sent before the write (a leader's)
	last  uint64 // index of its last entry; 0 without entries
}

// handleReady works through raft's Readys. A steady Ready (see steady) is
// written to the WAL by the persister goroutine: the leader sends its
// messages first (raft thesis 10.2.1), and Run goes on taking envelopes,
// stepping messages and ticking while the disk syncs, as etcd's raft.Node
// allows between Ready and Advance; finishReady completes it once written.
// Any other Ready (a snapshot, a change of role, term or vote) is handled here
// from start to end. No Ready is taken while one is being persisted.
func (c *Chain) handleReady(ctx context.Context) error {
	for c.persisting == nil && c.rn.HasReady() {
		rd := c.rn.Ready()
		if c.persistC != nil && c.steady(rd) {
			j := persistJob{rd: rd, early: c.isLeader}
			if n := len(rd.Entries); n > 0 {
				j.last = rd.Entries[n-1].GetIndex()
			}
			if j.early {
				c.send(rd.Messages)
			}
			c.proposed = 0
			c.persisting = &j
			c.persistC <- j // the persister is idle: it answered the previous job
			break
		}
		if rd.Snapshot != nil && !raft.IsEmptySnap(rd.Snapshot) {
			// Blocks first: once the snapshot is saved raft no longer has the
			// entries that carried them.
			if err := c.catchUp(ctx, rd.Snapshot); err != nil {
				return err
			}
			// Saving the snapshot lets the raft store drop older log
			// segments: the blocks they carried must be on disk first.
			c.flushWrites()
			if err := c.cfg.Store.Sync(); err != nil {
				return fmt.Errorf("chain %s: sync block store before a snapshot: %w", c.cfg.ChannelID, err)
			}
		}
		// The leader sends before it persists (raft thesis 10.2.1): followers
		// write the entries while it does. Not when this Ready changes its
		// term or vote, or makes it step down: those messages must follow
		// the write.
		early := c.isLeader && c.leaderMessagesFirst(rd)
		if early {
			c.send(rd.Messages)
		}
		if err := c.cfg.Raft.Save(rd.HardState, rd.Entries, rd.Snapshot); err != nil {
			return fmt.Errorf("chain %s: %w", c.cfg.ChannelID, err)
		}
		c.proposed = 0
		if rd.Snapshot != nil && !raft.IsEmptySnap(rd.Snapshot) {
			c.applySnapshot(rd.Snapshot)
		}
		if rd.SoftState != nil {
			c.softState(rd.SoftState)
		}
		if !early {
			c.send(rd.Messages)
		}
		if err := c.apply(rd.CommittedEntries); err != nil {
			return err
		}
		c.rn.Advance(rd)
		c.maybeProposeConfChange()
	}
	c.publishStatus()
	return nil
}

// finishReady completes the Ready the persister wrote (err: how the write
// went): raft's in-memory log takes its entries, a follower sends its
// messages (acknowledgements must follow the write), committed blocks are
// applied, and raft is told; the next Ready, if any, is taken.
func (c *Chain) finishReady(ctx context.Context, err error) error {
	j := c.persisting
	c.persisting = nil
	if err != nil {
		return fmt.Errorf("chain %s: %w", c.cfg.ChannelID, err)
	}
	if err := c.cfg.Raft.Remember(j.rd.HardState, j.rd.Entries); err != nil {
		return fmt.Errorf("chain %s: %w", c.cfg.ChannelID, err)
	}
	if !j.early {
		c.send(j.rd.Messages)
	}
	if err := c.apply(j.rd.CommittedEntries); err != nil {
		return err
	}
	c.rn.Advance(j.rd)
	c.maybeProposeConfChange()
	return c.handleReady(ctx)
}

// steady reports whether a Ready may be persisted while Run goes on: it
// carries no snapshot and changes neither the node's role nor its term or
// vote, so nothing Run does meanwhile depends on its outcome.
func (c *Chain) steady(rd raft.Ready) bool {
	if rd.SoftState != nil || (rd.Snapshot != nil && !raft.IsEmptySnap(rd.Snapshot)) {
		return false
	}
	return c.keepsTermAndVote(rd)
}

// keepsTermAndVote reports whether a Ready leaves the stored term and vote as
// they are.
func (c *Chain) keepsTermAndVote(rd raft.Ready) bool {
	if rd.HardState == nil || raft.IsEmptyHardState(rd.HardState) {
		return true
	}
	prev := c.cfg.Raft.HardState()
	return rd.HardState.GetTerm() == prev.GetTerm() && rd.HardState.GetVote() == prev.GetVote()
}

// lastIndex is the index of the last raft entry this node has: in the
// in-memory log or being persisted.
func (c *Chain) lastIndex() uint64 {
	last, _ := c.cfg.Raft.LastIndex()
	if c.persisting != nil {
		last = max(last, c.persisting.last)
	}
	return last
}

// publishStatus makes raft's view (leader, state, term) visible to Status
// and the metrics.
func (c *Chain) publishStatus() {
	st := c.rn.BasicStatus()
	c.mu.Lock()
	if c.status.Leader != st.Lead {
		close(c.leaderC)
		c.leaderC = make(chan struct{})
	}
	c.status.Leader = st.Lead
	c.status.State = st.RaftState.String()
	c.status.Term = st.GetTerm()
	c.mu.Unlock()
	if tm, ok := c.cfg.Metrics.(TermMetrics); ok && st.GetTerm() != c.term {
		c.term = st.GetTerm()
		tm.RaftTerm(c.cfg.ChannelID, c.term)
	}
}

// leaderMessagesFirst reports whether a leader's Ready may have its messages
// sent before it is persisted: it neither changes term or vote nor ends the
// leadership.
func (c *Chain) leaderMessagesFirst(rd raft.Ready) bool {
	if rd.SoftState != nil && rd.SoftState.RaftState != raft.StateLeader {
		return false
	}
	return c.keepsTermAndVote(rd)
}

// send hands raft messages to the transport, noting snapshots sent.
func (c *Chain) send(msgs []*pb.Message) {
	if len(msgs) == 0 {
		return
	}
	for _, m := range msgs {
		if m.GetType() == pb.MsgSnap {
			c.snapSent[m.GetTo()] = c.ticks
		}
	}
	c.cfg.Transport.Send(msgs)
}

func (c *Chain) softState(ss *raft.SoftState) {
	if ss.Lead != c.lastLead {
		c.lastLead = ss.Lead
		if rm, ok := c.cfg.Metrics.(RaftMetrics); ok && ss.Lead != raft.None {
			rm.LeaderChanged(c.cfg.ChannelID)
		}
	}
	leader := ss.RaftState == raft.StateLeader
	if leader == c.isLeader {
		return
	}
	c.isLeader = leader
	if c.cfg.Metrics != nil {
		c.cfg.Metrics.Leader(c.cfg.ChannelID, leader)
	}
	if leader {
		// Accept envelopes only after every entry of earlier terms is applied,
		// so the next block builds on the true chain tip.
		last := c.lastIndex()
		c.catchUpTo = last
		c.lastCreated = nil
		c.ownBlocks = nil
		c.log.Info("became raft leader", "term", c.rn.BasicStatus().GetTerm(), "catch_up_to", last)
		c.maybeReady()
		return
	}
	// Pending envelopes were acknowledged as handed over, not as ordered; like
	// Fabric, a deposed leader drops them.
	if n := c.cut.Pending(); n > 0 {
		c.log.Warn("lost leadership; dropping pending envelopes", "count", n)
	}
	c.cut.Reset()
	c.stopTimer()
	c.lastCreated = nil
	c.ownBlocks = nil
	c.abdicating = false
	c.log.Info("no longer raft leader", "leader", ss.Lead)
}

// maybeReady lets a new leader start cutting once it has caught up.
func (c *Chain) maybeReady() {
	if !c.isLeader || c.lastCreated != nil || c.applied < c.catchUpTo {
		return
	}
	c.lastCreated = c.tip
	// A config block whose raft change is not applied yet (the previous
	// leader's, or one from before a restart): propose it again.
	c.confChange = c.pendingConfChange()
	c.configInflight = c.confChange != nil
	c.proposeCC = c.confChange != nil
}

func (c *Chain) apply(ents []*pb.Entry) error {
	for _, e := range ents {
		switch e.GetType() {
		case pb.EntryNormal:
			if len(e.Data) > 0 {
				c.writeBlock(e.Data, e.GetIndex())
			}
		case pb.EntryConfChange:
			cc := &pb.ConfChange{}
			if err := proto.Unmarshal(e.Data, cc); err != nil {
				return fmt.Errorf("chain %s: decode conf change at %d: %w", c.cfg.ChannelID, e.GetIndex(), err)
			}
			c.confState = c.rn.ApplyConfChange(cc)
			c.applied = e.GetIndex()
			if err := c.confChangeApplied(cc); err != nil {
				return err
			}
		case pb.EntryConfChangeV2:
			cc := &pb.ConfChangeV2{}
			if err := proto.Unmarshal(e.Data, cc); err != nil {
				return fmt.Errorf("chain %s: decode conf change at %d: %w", c.cfg.ChannelID, e.GetIndex(), err)
			}
			c.confState = c.rn.ApplyConfChange(cc)
		}
		c.applied = e.GetIndex()
	}
	c.maybeReady()
	if len(ents) > 0 && c.cfg.SnapshotIntervalSize > 0 && c.snapBytes >= uint64(c.cfg.SnapshotIntervalSize) {
		// The writer takes it once the blocks before are written: syncing
		// the block store and the snapshot's own writes take tens of
		// milliseconds, during which this goroutine goes on ordering.
		c.snapBytes = 0
		c.writeC <- blockWrite{snap: &snapshotJob{index: c.applied, confState: proto.Clone(c.confState).(*pb.ConfState)}}
	}
	return nil
}

// writeBlock applies a committed block: checks it extends the tip and hands
// it to the writer goroutine. Blocks already in the store (entries replayed
// after a restart) are skipped; a block that does not extend the tip is logged
// and skipped rather than written, so the store never forks.
func (c *Chain) writeBlock(data []byte, index uint64) {
	// The block's envelopes stay slices of the entry: it is written as is
	// and raft never modifies an entry's data.
	decode := block.UnmarshalShared
	if c.takeOwnBlock(data) {
		decode = block.UnmarshalOwn
	}
	b, err := decode(data)
	if err != nil {
		c.log.Error("committed entry is not a block; skipped", "raft_index", index, "err", err)
		return
	}
	height := c.tip.GetNumber() + 1
	n := b.Header.Number
	if n < height {
		return
	}
	if n > height {
		c.log.Error("committed block leaves a gap; skipped", "block", n, "height", height, "raft_index", index)
		return
	}
	if !bytes.Equal(b.Header.PreviousHash, c.tipHash) {
		c.log.Error("committed block does not extend the chain; skipped", "block", n, "raft_index", index)
		return
	}
	// The writer drains the queue whatever happens, so this send waits at
	// most for the disk. raft does not modify an entry's data once handed out.
	c.writeC <- blockWrite{raw: data, b: b, index: index}
	c.setTip(b.Header)
	if block.IsConfig(b) {
		c.lastConfig = n
		c.configApplied(b)
	}
	c.snapBytes += uint64(len(data))
}

// maxOwnBlocks bounds ownBlocks: proposals that never commit (a leader
// deposed with blocks in flight) must not pile up.
const maxOwnBlocks = 16

// takeOwnBlock reports whether data is an encoded block this node proposed,
// and forgets it and every proposal before it (entries apply in order, so an
// earlier proposal still remembered never committed as proposed).
func (c *Chain) takeOwnBlock(data []byte) bool {
	for i, own := range c.ownBlocks {
		if bytes.Equal(own, data) {
			c.ownBlocks = append(c.ownBlocks[:0], c.ownBlocks[i+1:]...)
			return true
		}
	}
	return false
}

// writeBlocks is the writer goroutine: it appends queued blocks to the store
// until writeC is closed. After a failure it reports the error once on
// writeErrC and writes nothing more (the chain stops), but still releases
// barriers.
func (c *Chain) writeBlocks() {
	var failed error
	for w := range c.writeC {
		if w.done != nil {
			close(w.done)
			continue
		}
		if failed != nil {
			continue
		}
		if w.snap != nil {
			c.takeSnapshotAt(*w.snap, snapshotCatchUpEntries)
			continue
		}
		n := w.b.Header.Number
		// writeBlock checked the data hash (or the leader built the block
		// itself); the store writes raw as is.
		if err := c.cfg.Store.AppendEncoded(w.raw, w.b); err != nil {
			failed = fmt.Errorf("chain %s: append block %d: %w", c.cfg.ChannelID, n, err)
			c.writeErrC <- failed // capacity 1, sent once
			continue
		}
		select {
		case c.writtenC <- struct{}{}:
		default:
		}
		if c.cfg.Metrics != nil {
			c.cfg.Metrics.BlockCommitted(c.cfg.ChannelID, n)
		}
		c.log.Debug("block committed", "block", n, "envelopes", len(w.b.Data.Data), "raft_index", w.index)
	}
}

// flushWrites returns once every block handed to the writer is in the store
// (or the writer failed). It does nothing before Run starts the writer.
func (c *Chain) flushWrites() {
	if c.writeC == nil {
		return
	}
	done := make(chan struct{})
	c.writeC <- blockWrite{done: done}
	<-done
}

func (c *Chain) setTip(h *cb.BlockHeader) {
	c.tip, c.tipHash = h, block.HeaderHash(h)
}

// takeSnapshotKeep takes a raft snapshot at the applied index now, on Run's
// goroutine, keeping keep entries before it in the log.
func (c *Chain) takeSnapshotKeep(keep uint64) {
	// The log is compacted past blocks only once they are in the store.
	c.flushWrites()
	c.takeSnapshotAt(snapshotJob{index: c.applied, confState: c.confState}, keep)
	c.snapBytes = 0
}

// takeSnapshotAt makes the blocks written so far durable and records a raft
// snapshot at j.index carrying the last of them, keeping keep entries before
// it. Every block up to j.index must be written. It runs on the writer
// goroutine (snapshots by size) or on Run's with the writer drained; the raft
// store serialises it with the WAL writes of the persister.
func (c *Chain) takeSnapshotAt(j snapshotJob, keep uint64) {
	if err := c.cfg.Store.Sync(); err != nil {
		c.log.Error("snapshot: sync block store", "err", err)
		return
	}
	last, err := c.cfg.Store.Block(c.cfg.Store.Height() - 1)
	if err != nil {
		c.log.Error("snapshot: read last block", "err", err)
		return
	}
	data, err := proto.Marshal(last)
	if err != nil {
		c.log.Error("snapshot: encode last block", "err", err)
		return
	}
	if err := c.cfg.Raft.TakeSnapshot(j.index, j.confState, data, keep); err != nil {
		c.log.Error("take snapshot", "index", j.index, "err", err)
		return
	}
	c.log.Info("raft snapshot taken", "index", j.index, "block", last.Header.Number)
}

// catchUp pulls the blocks up to the one a snapshot names, when the block
// store is behind it. Only a failing store or the end of ctx stop it; without
// a Puller (or with a snapshot that carries no block) the chain is marked
// degraded and goes on.
func (c *Chain) catchUp(ctx context.Context, snap *pb.Snapshot) error {
	b := &cb.Block{}
	if err := proto.Unmarshal(snap.Data, b); err != nil || b.GetHeader() == nil {
		c.log.Error("snapshot carries no block", "index", snap.GetMetadata().GetIndex(), "err", err)
		return nil
	}
	c.flushWrites() // the puller appends to the store too
	num, h := b.Header.Number, c.cfg.Store.Height()
	if h > num {
		return nil
	}
	if c.cfg.Puller == nil {
		msg := fmt.Sprintf("behind a raft snapshot at block %d with height %d and no block replication", num, h)
		c.log.Error(msg)
		c.setStatus(func(s *Status) { s.Degraded = msg })
		return nil
	}
	c.log.Info("behind a raft snapshot; pulling blocks from other orderers", "from", h, "to", num, "snapshot_index", snap.GetMetadata().GetIndex())
	c.setStatus(func(s *Status) { s.CatchingUp = num })
	defer c.setStatus(func(s *Status) { s.CatchingUp = 0 })
	start := time.Now()
	if err := c.cfg.Puller.Pull(ctx, num, block.HeaderHash(b.Header)); err != nil {
		return fmt.Errorf("chain %s: pull blocks %d..%d: %w", c.cfg.ChannelID, h, num, err)
	}
	last, err := c.cfg.Store.Block(c.cfg.Store.Height() - 1)
	if err != nil {
		return fmt.Errorf("chain %s: read last block: %w", c.cfg.ChannelID, err)
	}
	c.lastConfig = lastConfigOf(last)
	c.setTip(last.Header)
	c.setStatus(func(s *Status) { s.Degraded = "" })
	c.log.Info("caught up with the snapshot", "height", c.cfg.Store.Height(), "took", time.Since(start))
	return nil
}

func (c *Chain) setStatus(f func(*Status)) {
	c.mu.Lock()
	f(&c.status)
	c.mu.Unlock()
}

// applySnapshot takes over the snapshot's raft position; catchUp has already
// brought the block store up to the snapshot's block.
func (c *Chain) applySnapshot(snap *pb.Snapshot) {
	c.applied = snap.GetMetadata().GetIndex()
	c.confState = snap.GetMetadata().GetConfState()
	c.snapBytes = 0
}
