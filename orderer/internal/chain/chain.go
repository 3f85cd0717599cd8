// Package chain owns one channel's ordering: a raft group (go.etcd.io/raft/v3,
// driven through RawNode) whose leader cuts envelopes into batches, builds and
// signs whole blocks and proposes them; every member appends each committed
// block verbatim to its block store, so all orderers hold byte-identical blocks.
//
// Concurrency: all raft state, the block cutter and the batch timer belong to the
// goroutine running Run. Order, Step and Status may be called from any goroutine;
// they talk to Run through channels and return once Run has stopped.
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
	"github.com/cairn-ledger/cairn/orderer/internal/blocksign"
	"github.com/cairn-ledger/cairn/orderer/internal/cutter"
	"github.com/cairn-ledger/cairn/orderer/internal/raftstore"
	cb "github.com/hyperledger/fabric-protos-go-apiv2/common"
	"github.com/hyperledger/fabric-protos-go-apiv2/orderer/etcdraft"
	"go.etcd.io/raft/v3"
	pb "go.etcd.io/raft/v3/raftpb"
	"google.golang.org/protobuf/proto"
)

// Errors callers branch on.
var (
	// ErrNoLeader: the group has no leader right now; the client may retry.
	ErrNoLeader = errors.New("no raft leader")
	// ErrStopped: the chain is not running.
	ErrStopped = errors.New("chain stopped")
)

// snapshotCatchUpEntries is how many entries stay in the log behind a snapshot,
// as in Fabric, so a follower slightly behind is served from the log.
const snapshotCatchUpEntries = 4

// BlockStore is the channel's durable block store.
type BlockStore interface {
	Append(b *cb.Block) error
	Height() uint64
	Block(n uint64) (*cb.Block, error)
}

// Transport carries this chain's traffic to the other consenters of the channel.
type Transport interface {
	// Send hands raft messages to their destinations without blocking. Lost
	// messages are fine: raft retransmits.
	Send(msgs []*pb.Message)
	// Forward hands an envelope to the chain of consenter `to` (the leader).
	Forward(ctx context.Context, to uint64, env []byte) error
}

// Metrics receives the chain's events.
type Metrics interface {
	BlockCut(channel, reason string)
	BlockCommitted(channel string, number uint64)
	Leader(channel string, isLeader bool)
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
}

type submitReq struct {
	env  []byte
	resp chan error
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

	mu     sync.Mutex
	status Status

	// Owned by Run.
	rn          *raft.RawNode
	cut         *cutter.Cutter
	timer       Timer
	confState   *pb.ConfState
	applied     uint64
	isLeader    bool
	catchUpTo   uint64 // a new leader accepts envelopes once applied reaches this
	lastCreated *cb.BlockHeader
	lastConfig  uint64
	proposed    uint64 // entries proposed since the last Ready
	snapBytes   uint64
	term        uint64 // last term reported to TermMetrics
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
	}
	if c.log == nil {
		c.log = slog.New(slog.DiscardHandler)
	}
	c.log = c.log.With("channel", cfg.ChannelID, "raft_id", cfg.SelfID)
	if c.clock == nil {
		c.clock = RealClock{}
	}
	c.status = Status{ID: cfg.SelfID, State: raft.StateFollower.String(), Height: cfg.Store.Height()}
	return c, nil
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

// Order hands a validated envelope to the consenter: to this node's cutter when
// it leads, otherwise forwarded to the leader. It returns once the envelope is
// accepted for ordering, not once it is in a block.
func (c *Chain) Order(ctx context.Context, env []byte) error {
	for attempt := 0; attempt < 3; attempt++ {
		select {
		case <-c.doneC:
			return ErrStopped
		default:
		}
		st := c.Status()
		switch st.Leader {
		case raft.None:
			return ErrNoLeader
		case c.cfg.SelfID:
		default:
			if err := c.cfg.Transport.Forward(ctx, st.Leader, env); err != nil {
				return fmt.Errorf("forward to leader %d: %w", st.Leader, err)
			}
			return nil
		}
		req := submitReq{env: env, resp: make(chan error, 1)}
		select {
		case c.submit <- req:
		case <-ctx.Done():
			return ctx.Err()
		case <-c.doneC:
			return ErrStopped
		}
		select {
		case err := <-req.resp:
			if errors.Is(err, errNotLeader) {
				continue // leadership moved between Status and submit
			}
			return err
		case <-ctx.Done():
			return ctx.Err()
		case <-c.doneC:
			return ErrStopped
		}
	}
	return ErrNoLeader
}

var errNotLeader = errors.New("not the leader")

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
	c.mu.Lock()
	c.status.Running = true
	c.mu.Unlock()

	ticker := c.clock.NewTicker(c.cfg.TickInterval)
	defer ticker.Stop()
	defer c.stopTimer()

	if err := c.handleReady(); err != nil {
		return err
	}
	if len(c.cfg.Consenters) == 1 {
		// A single voter need not wait for an election timeout. Raft refuses to
		// campaign before the bootstrap membership is applied, hence after the
		// first Ready.
		if err := c.rn.Campaign(); err != nil {
			return fmt.Errorf("chain %s: campaign: %w", c.cfg.ChannelID, err)
		}
		if err := c.handleReady(); err != nil {
			return err
		}
	}
	for {
		var submitC chan submitReq
		if c.accepting() {
			submitC = c.submit
		}
		var timerC <-chan time.Time
		if c.timer != nil {
			timerC = c.timer.C()
		}
		select {
		case <-ctx.Done():
			c.log.Info("raft chain stopping")
			return nil
		case <-ticker.C():
			c.rn.Tick()
		case m := <-c.stepC:
			if err := c.rn.Step(m); err != nil {
				c.log.Debug("raft step", "from", m.GetFrom(), "type", m.GetType().String(), "err", err)
			}
		case req := <-submitC:
			req.resp <- c.ordered(req.env)
		case <-timerC:
			c.timer = nil
			if b := c.cut.Cut(); len(b.Envelopes) > 0 {
				c.propose(b)
			}
		}
		if err := c.handleReady(); err != nil {
			return err
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
		Logger:          raftLogger{c.log.With("component", "raft")},
	})
	if err != nil {
		return fmt.Errorf("chain %s: start raft: %w", c.cfg.ChannelID, err)
	}
	c.rn = rn
	if store.Fresh() {
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
	if !c.isLeader || c.applied < c.catchUpTo || c.lastCreated == nil {
		return false
	}
	written := c.cfg.Store.Height() - 1
	return c.lastCreated.Number-written < uint64(c.cfg.MaxInflightBlocks)
}

// ordered runs one envelope through the cutter on the leader.
func (c *Chain) ordered(env []byte) error {
	if !c.isLeader {
		return errNotLeader
	}
	batches, pending := c.cut.Ordered(env, envelopeSize(env))
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

// envelopeSize is the size Fabric's block cutter counts: payload plus signature.
func envelopeSize(raw []byte) uint32 {
	env := &cb.Envelope{}
	if err := proto.Unmarshal(raw, env); err != nil {
		return uint32(len(raw))
	}
	return uint32(len(env.Payload) + len(env.Signature))
}

func (c *Chain) stopTimer() {
	if c.timer != nil {
		c.timer.Stop()
		c.timer = nil
	}
}

// propose builds, signs and proposes the next block from a batch.
func (c *Chain) propose(batch cutter.Batch) {
	prev := c.lastCreated
	b := block.New(prev.Number+1, block.HeaderHash(prev), batch.Envelopes)
	last, _ := c.cfg.Raft.LastIndex()
	md, err := proto.Marshal(&etcdraft.BlockMetadata{
		ConsenterIds:    c.cfg.Consenters,
		NextConsenterId: c.cfg.NextConsenterID,
		// The index this proposal's entry gets: every earlier entry is persisted
		// (handleReady drained them) or proposed since.
		RaftIndex: last + c.proposed + 1,
	})
	if err != nil {
		c.log.Error("encode raft block metadata", "block", b.Header.Number, "err", err)
		return
	}
	if err := blocksign.Sign(b, c.cfg.Signer, c.lastConfig, md, c.cfg.Rand); err != nil {
		c.log.Error("sign block; batch dropped", "block", b.Header.Number, "envelopes", len(batch.Envelopes), "err", err)
		return
	}
	data, err := proto.Marshal(b)
	if err != nil {
		c.log.Error("encode block; batch dropped", "block", b.Header.Number, "err", err)
		return
	}
	if err := c.rn.Propose(data); err != nil {
		c.log.Warn("raft dropped block proposal", "block", b.Header.Number, "envelopes", len(batch.Envelopes), "err", err)
		return
	}
	c.proposed++
	c.lastCreated = b.Header
	if c.cfg.Metrics != nil {
		c.cfg.Metrics.BlockCut(c.cfg.ChannelID, string(batch.Reason))
	}
	c.log.Debug("block proposed", "block", b.Header.Number, "envelopes", len(batch.Envelopes), "reason", batch.Reason)
}

func (c *Chain) handleReady() error {
	for c.rn.HasReady() {
		rd := c.rn.Ready()
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
		if len(rd.Messages) > 0 {
			c.cfg.Transport.Send(rd.Messages)
		}
		if err := c.apply(rd.CommittedEntries); err != nil {
			return err
		}
		c.rn.Advance(rd)
	}
	st := c.rn.BasicStatus()
	c.mu.Lock()
	c.status.Leader = st.Lead
	c.status.State = st.RaftState.String()
	c.status.Term = st.GetTerm()
	c.mu.Unlock()
	if tm, ok := c.cfg.Metrics.(TermMetrics); ok && st.GetTerm() != c.term {
		c.term = st.GetTerm()
		tm.RaftTerm(c.cfg.ChannelID, c.term)
	}
	return nil
}

func (c *Chain) softState(ss *raft.SoftState) {
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
		last, _ := c.cfg.Raft.LastIndex()
		c.catchUpTo = last
		c.lastCreated = nil
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
	c.log.Info("no longer raft leader", "leader", ss.Lead)
}

// maybeReady lets a new leader start cutting once it has caught up.
func (c *Chain) maybeReady() {
	if !c.isLeader || c.lastCreated != nil || c.applied < c.catchUpTo {
		return
	}
	last, err := c.cfg.Store.Block(c.cfg.Store.Height() - 1)
	if err != nil {
		c.log.Error("read chain tip", "err", err)
		return
	}
	c.lastCreated = last.Header
}

func (c *Chain) apply(ents []*pb.Entry) error {
	for _, e := range ents {
		switch e.GetType() {
		case pb.EntryNormal:
			if len(e.Data) > 0 {
				if err := c.writeBlock(e.Data, e.GetIndex()); err != nil {
					return err
				}
			}
		case pb.EntryConfChange:
			cc := &pb.ConfChange{}
			if err := proto.Unmarshal(e.Data, cc); err != nil {
				return fmt.Errorf("chain %s: decode conf change at %d: %w", c.cfg.ChannelID, e.GetIndex(), err)
			}
			c.confState = c.rn.ApplyConfChange(cc)
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
		c.takeSnapshot()
	}
	return nil
}

// writeBlock appends a committed block. Blocks already in the store (entries
// replayed after a restart) are skipped; a block that does not extend the tip
// is logged and skipped rather than written, so the store never forks.
func (c *Chain) writeBlock(data []byte, index uint64) error {
	b, err := block.Unmarshal(data)
	if err != nil {
		c.log.Error("committed entry is not a block; skipped", "raft_index", index, "err", err)
		return nil
	}
	height := c.cfg.Store.Height()
	n := b.Header.Number
	if n < height {
		return nil
	}
	if n > height {
		c.log.Error("committed block leaves a gap; skipped", "block", n, "height", height, "raft_index", index)
		return nil
	}
	prev, err := c.cfg.Store.Block(height - 1)
	if err != nil {
		return fmt.Errorf("chain %s: read block %d: %w", c.cfg.ChannelID, height-1, err)
	}
	if !bytes.Equal(b.Header.PreviousHash, block.HeaderHash(prev.Header)) {
		c.log.Error("committed block does not extend the chain; skipped", "block", n, "raft_index", index)
		return nil
	}
	if err := c.cfg.Store.Append(b); err != nil {
		return fmt.Errorf("chain %s: append block %d: %w", c.cfg.ChannelID, n, err)
	}
	c.snapBytes += uint64(len(data))
	if c.cfg.Metrics != nil {
		c.cfg.Metrics.BlockCommitted(c.cfg.ChannelID, n)
	}
	c.log.Debug("block committed", "block", n, "envelopes", len(b.Data.Data), "raft_index", index)
	return nil
}

func (c *Chain) takeSnapshot() {
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
	if err := c.cfg.Raft.TakeSnapshot(c.applied, c.confState, data, snapshotCatchUpEntries); err != nil {
		c.log.Error("take snapshot", "index", c.applied, "err", err)
		return
	}
	c.snapBytes = 0
	c.log.Info("raft snapshot taken", "index", c.applied, "block", last.Header.Number)
}

// applySnapshot handles a snapshot sent by the leader to a node too far behind
// to catch up from the log. The snapshot names the leader's last block; blocks
// up to it must be pulled from other orderers, which the cluster replication
// (not part of this package yet) will do.
func (c *Chain) applySnapshot(snap *pb.Snapshot) {
	c.applied = snap.GetMetadata().GetIndex()
	c.confState = snap.GetMetadata().GetConfState()
	b := &cb.Block{}
	if err := proto.Unmarshal(snap.Data, b); err != nil {
		c.log.Error("snapshot carries no block", "err", err)
		return
	}
	if h := c.cfg.Store.Height(); h <= b.GetHeader().GetNumber() {
		msg := fmt.Sprintf("behind a raft snapshot at block %d with height %d; block replication is needed", b.GetHeader().GetNumber(), h)
		c.log.Error(msg)
		c.mu.Lock()
		c.status.Degraded = msg
		c.mu.Unlock()
	}
}
