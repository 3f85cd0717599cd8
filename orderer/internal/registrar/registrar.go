// Package registrar owns the set of channels this orderer serves: joining one
// from its genesis config block, re-opening joined channels at start, removing
// one, and looking channels up for broadcast and deliver. Each channel has a
// block store and, when this node is a consenter, a raft chain whose goroutine
// the registrar owns.
//
// On disk, every channel lives in DataDir/channels/<name>/ (blocks/ and raft/).
// A join is built under a hidden name and renamed into place, and a removal is
// renamed away before deletion, so a crash never leaves a half-joined channel.
//
// Joining with a config block other than the genesis block (Fabric's "join
// with the latest config block") onboards the channel: the join block is kept
// in join.block while blocks 0..N-1 are pulled from the other orderers
// (package replicate) and checked to end at the join block's PreviousHash;
// then the join block is appended and the channel starts as usual. An
// onboarding channel reports status "onboarding", is not served to broadcast,
// deliver or the cluster, and resumes onboarding after a restart. A follower
// (not a consenter) keeps pulling new blocks from the other orderers.
//
// Config updates: a channel turns a CONFIG_UPDATE into a CONFIG envelope
// signed by this node (ProposeConfig, internal/configtx) and hands it to its
// chain (Configure). Each committed config block puts its configuration in
// force (policies, batch parameters, replication endpoints). As in Fabric
// 2.5, a consenter that a config block removes stops its chain and stays on
// as a follower, pulling blocks; a follower that a config block names as a
// consenter stops pulling and starts a chain that joins the raft group.
//
// Concurrency: all methods are safe for concurrent use. Start must be called
// before the others and Stop last; Stop waits for every chain goroutine.
package registrar

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cairn-ledger/cairn/internal/block"
	"github.com/cairn-ledger/cairn/internal/blockstore"
	"github.com/cairn-ledger/cairn/internal/channelconfig"
	"github.com/cairn-ledger/cairn/internal/configtx"
	"github.com/cairn-ledger/cairn/internal/envelope"
	"github.com/cairn-ledger/cairn/internal/fsutil"
	"github.com/cairn-ledger/cairn/internal/policy"
	"github.com/cairn-ledger/cairn/orderer/internal/blocksign"
	"github.com/cairn-ledger/cairn/orderer/internal/broadcast"
	"github.com/cairn-ledger/cairn/orderer/internal/chain"
	"github.com/cairn-ledger/cairn/orderer/internal/cutter"
	"github.com/cairn-ledger/cairn/orderer/internal/participation"
	"github.com/cairn-ledger/cairn/orderer/internal/raftstore"
	"github.com/cairn-ledger/cairn/orderer/internal/replicate"
	cb "github.com/hyperledger/fabric-protos-go-apiv2/common"
	"github.com/hyperledger/fabric-protos-go-apiv2/orderer/etcdraft"
	pb "go.etcd.io/raft/v3/raftpb"
	"google.golang.org/protobuf/proto"
)

// Relations and statuses reported by the participation API.
const (
	RelationConsenter = "consenter"
	RelationFollower  = "follower"
	StatusActive      = "active"
	StatusOnboarding  = "onboarding"
	StatusFailed      = "failed"
)

// joinBlockFile holds the join block of a channel that is onboarding.
const joinBlockFile = "join.block"

// ErrFollower: this node is not a consenter of the channel and cannot order.
var ErrFollower = errors.New("this orderer is not a consenter of the channel")

// Metrics is what the registrar's chains report to, plus dropping a channel.
type Metrics interface {
	chain.Metrics
	Forget(channel string)
}

// Transports gives a chain its link to the other consenters of a channel. The
// cluster transport implements it; nil means no links (one-node groups work).
// A returned Transport that is also an io.Closer is closed once its chain has
// stopped.
type Transports interface {
	Transport(channelID string, self uint64, consenters map[uint64]channelconfig.Consenter) chain.Transport
}

// Config configures a Registrar.
type Config struct {
	DataDir string
	// TLSCert is this node's TLS server certificate (PEM); it identifies the
	// node among a channel's consenters.
	TLSCert    []byte
	Signer     blocksign.Signer
	Transports Transports
	Logger     *slog.Logger
	Metrics    Metrics
	Clock      chain.Clock
	// ClientCert is this node's TLS key pair, presented to the other orderers
	// when pulling blocks from them.
	ClientCert *tls.Certificate
	// Replicate tunes block pulling; zero values take package replicate's
	// defaults.
	Replicate ReplicateConfig
	// NoSync skips fsync in the block and raft stores (tests only).
	NoSync bool
}

// ReplicateConfig tunes how blocks are pulled from the other orderers.
type ReplicateConfig struct {
	MinBackoff, MaxBackoff time.Duration
	RecvTimeout            time.Duration
	FollowTimeout          time.Duration
	Dial                   replicate.Dialer // tests
}

// Registrar is the set of channels.
type Registrar struct {
	cfg     Config
	log     *slog.Logger
	selfDER []byte
	ctx     context.Context // root of every chain; cancelled by Stop
	cancel  context.CancelFunc
	wg      sync.WaitGroup

	mu       sync.Mutex
	channels map[string]*Channel
	removing map[string]bool
}

// Channel is one joined channel.
//
// id, dir, store, signer, cancel and done are fixed at creation. status, join
// and relation are guarded by Registrar.mu. bundle and chain change when
// config blocks are committed and are read atomically. raft and links belong
// to the channel's goroutine (serve), and to close once it has exited.
type Channel struct {
	id     string
	dir    string
	store  *blockstore.Store
	signer blocksign.Signer
	cancel context.CancelFunc
	done   chan struct{} // closed when the channel's goroutine has exited

	status   string
	join     *cb.Block // the join block while onboarding
	relation string
	bundle   atomic.Pointer[channelconfig.Bundle]
	chain    atomic.Pointer[chain.Chain] // nil for a follower
	raft     *raftstore.Store
	links    io.Closer // the chain's Transport, if closable

	selfMu    sync.Mutex
	selfAddrs map[string]bool // this node's consenter endpoints, never replicated from
}

// setup is what prepare builds for a channel.
type setup struct {
	relation string
	bundle   *channelconfig.Bundle
	raft     *raftstore.Store
	chain    *chain.Chain
	links    io.Closer
}

// apply installs what prepare built; the caller holds Registrar.mu or has not
// published the channel yet.
func (ch *Channel) apply(s *setup) {
	ch.relation, ch.raft, ch.links = s.relation, s.raft, s.links
	ch.bundle.Store(s.bundle)
	ch.chain.Store(s.chain)
}

// New checks cfg; Start opens the channels.
func New(cfg Config) (*Registrar, error) {
	if cfg.DataDir == "" {
		return nil, errors.New("registrar: DataDir is empty")
	}
	if cfg.Signer == nil {
		return nil, errors.New("registrar: no signer")
	}
	p, _ := pem.Decode(cfg.TLSCert)
	if p == nil {
		return nil, errors.New("registrar: TLS certificate is not PEM")
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Registrar{cfg: cfg, log: log, selfDER: p.Bytes, channels: map[string]*Channel{}, removing: map[string]bool{}}, nil
}

func (r *Registrar) channelsDir() string { return filepath.Join(r.cfg.DataDir, "channels") }

// Start cleans up interrupted joins and removals and re-opens every joined
// channel.
func (r *Registrar) Start() error {
	r.ctx, r.cancel = context.WithCancel(context.Background())
	dir := r.channelsDir()
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return fmt.Errorf("registrar: %w", err)
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		return fmt.Errorf("registrar: %w", err)
	}
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), ".") {
			if err := os.RemoveAll(filepath.Join(dir, e.Name())); err != nil {
				return fmt.Errorf("registrar: clean up %s: %w", e.Name(), err)
			}
			continue
		}
		ch, err := r.open(e.Name())
		if err != nil {
			return err
		}
		r.mu.Lock()
		r.channels[ch.id] = ch
		info := ch.info()
		r.mu.Unlock()
		r.log.Info("channel re-opened", "channel", ch.id, "height", info.Height, "relation", info.ConsensusRelation, "status", info.Status)
	}
	return nil
}

// Stop halts every chain, waits for them and closes the stores.
func (r *Registrar) Stop() {
	if r.cancel == nil {
		return
	}
	r.cancel()
	r.wg.Wait()
	r.mu.Lock()
	defer r.mu.Unlock()
	for id, ch := range r.channels {
		ch.close()
		delete(r.channels, id)
	}
}

// open opens the stores of a joined channel and starts its goroutine: the
// raft chain, the follower's block pulling, or onboarding first.
func (r *Registrar) open(id string) (*Channel, error) {
	dir := filepath.Join(r.channelsDir(), id)
	// Deliver never looks up tx IDs; the raft WAL keeps each block durable
	// until the chain syncs the store before a snapshot.
	store, err := blockstore.Open(blockstore.Config{Dir: filepath.Join(dir, "blocks"), NoSync: r.cfg.NoSync, DeferSync: true, NoTxIndex: true})
	if err != nil {
		return nil, fmt.Errorf("channel %s: %w", id, err)
	}
	ctx, cancel := context.WithCancel(r.ctx)
	ch := &Channel{id: id, dir: dir, store: store, signer: r.cfg.Signer, cancel: cancel, done: make(chan struct{}), status: StatusActive, selfAddrs: map[string]bool{}}
	fail := func(err error) (*Channel, error) {
		close(ch.done) // no goroutine runs
		ch.close()
		return nil, fmt.Errorf("channel %s: %w", id, err)
	}
	jb, err := readJoinBlock(dir)
	if err != nil {
		return fail(err)
	}
	if jb != nil && store.Height() <= jb.Header.Number {
		bundle, err := channelconfig.FromBlock(jb)
		if err != nil {
			return fail(err)
		}
		ch.status, ch.join, ch.relation = StatusOnboarding, jb, r.relationOf(bundle)
		ch.bundle.Store(bundle)
	} else {
		if jb != nil {
			// Onboarding finished but the file outlived it.
			if err := os.Remove(filepath.Join(dir, joinBlockFile)); err != nil {
				return fail(err)
			}
		}
		st, err := r.prepare(ch)
		if err != nil {
			return fail(err)
		}
		ch.apply(st)
	}
	r.wg.Add(1)
	go r.serve(ctx, ch)
	return ch, nil
}

// serve is a channel's goroutine: it onboards the channel if needed, then
// runs its chain or, for a follower, pulls its blocks, until ctx ends.
func (r *Registrar) serve(ctx context.Context, ch *Channel) {
	defer r.wg.Done()
	defer close(ch.done)
	log := r.log.With("channel", ch.id)
	if ch.join != nil {
		if err := r.onboard(ctx, ch); err != nil {
			if ctx.Err() == nil {
				log.Error("onboarding failed", "err", err)
				r.setStatus(ch, StatusFailed)
			}
			return
		}
		st, err := r.prepare(ch)
		if err != nil {
			log.Error("starting the channel after onboarding failed", "err", err)
			r.setStatus(ch, StatusFailed)
			return
		}
		r.mu.Lock()
		ch.apply(st)
		ch.status, ch.join = StatusActive, nil
		r.mu.Unlock()
		log.Info("channel onboarded", "height", ch.store.Height(), "relation", ch.relation)
	}
	for ctx.Err() == nil {
		if c := ch.chain.Load(); c != nil {
			err := c.Run(ctx)
			if !errors.Is(err, chain.ErrEvicted) {
				if err != nil {
					log.Error("raft chain stopped with an error", "err", err)
				}
				return
			}
			if err := r.demote(ch); err != nil {
				log.Error("leaving the consenters failed", "err", err)
				r.setStatus(ch, StatusFailed)
				return
			}
			log.Info("removed from the consenters by a config block; following the channel", "height", ch.store.Height())
			continue
		}
		if err := r.follow(ctx, ch); !errors.Is(err, errPromoted) {
			if err != nil && ctx.Err() == nil {
				log.Error("pulling blocks stopped", "err", err)
			}
			return
		}
		st, err := r.prepare(ch)
		if err != nil {
			log.Error("starting the raft chain of a new consenter failed", "err", err)
			r.setStatus(ch, StatusFailed)
			return
		}
		r.mu.Lock()
		ch.apply(st)
		r.mu.Unlock()
		log.Info("named a consenter by a config block; joining the raft group", "height", ch.store.Height())
	}
}

// errPromoted ends a follower's pulling when a config block names this node
// a consenter.
var errPromoted = errors.New("this node became a consenter of the channel")

// follow pulls the channel's blocks as a follower until ctx ends or a pulled
// config block names this node a consenter (errPromoted), as Fabric's
// follower chain does before switching to etcdraft.
func (r *Registrar) follow(ctx context.Context, ch *Channel) error {
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	rep, err := r.replicator(ch)
	if err != nil {
		return err
	}
	l := followLedger{Store: ch.store, onConfig: func(b *cb.Block) {
		bundle, err := channelconfig.FromBlock(b)
		if err != nil {
			r.log.Error("pulled config block does not parse", "channel", ch.id, "block", b.Header.Number, "err", err)
			return
		}
		ch.bundle.Store(bundle)
		ch.learnSelf(r, bundle)
		if r.relationOf(bundle) == RelationConsenter {
			cancel(errPromoted)
		}
	}}
	err = rep.Follow(ctx, l)
	if cause := context.Cause(ctx); errors.Is(cause, errPromoted) {
		return errPromoted
	}
	return err
}

// followLedger tells the follower about each config block it appends.
type followLedger struct {
	*blockstore.Store
	onConfig func(*cb.Block)
}

func (l followLedger) Append(b *cb.Block) error {
	if err := l.Store.Append(b); err != nil {
		return err
	}
	if block.IsConfig(b) {
		l.onConfig(b)
	}
	return nil
}

// demote turns an evicted consenter into a follower: its links and raft
// store are closed and the raft data deleted (should a later config add the
// node again, it joins with a new raft ID and a fresh log, as Fabric's
// etcdraft requires).
func (r *Registrar) demote(ch *Channel) error {
	if ch.links != nil {
		ch.links.Close()
	}
	var err error
	if ch.raft != nil {
		err = ch.raft.Close()
	}
	r.mu.Lock()
	ch.chain.Store(nil)
	ch.raft, ch.links = nil, nil
	ch.relation = RelationFollower
	r.mu.Unlock()
	if err != nil {
		return fmt.Errorf("close raft store: %w", err)
	}
	// Without its raft log the store is the only copy of the blocks.
	if err := ch.store.Sync(); err != nil {
		return fmt.Errorf("sync block store: %w", err)
	}
	if err := os.RemoveAll(filepath.Join(ch.dir, "raft")); err != nil {
		return fmt.Errorf("remove raft data: %w", err)
	}
	return nil
}

func (r *Registrar) setStatus(ch *Channel, status string) {
	r.mu.Lock()
	ch.status = status
	r.mu.Unlock()
}

// onboard pulls blocks 0..N-1 before join block N and appends it.
func (r *Registrar) onboard(ctx context.Context, ch *Channel) error {
	jb := ch.join
	rep, err := r.replicator(ch)
	if err != nil {
		return err
	}
	r.log.Info("onboarding: pulling blocks from other orderers", "channel", ch.id, "from", ch.store.Height(), "join_block", jb.Header.Number)
	start := time.Now()
	if err := rep.Pull(ctx, ch.store, jb.Header.Number-1, jb.Header.PreviousHash); err != nil {
		return err
	}
	if err := ch.store.Append(jb); err != nil {
		return fmt.Errorf("append join block %d: %w", jb.Header.Number, err)
	}
	// The store syncs on demand (DeferSync): the blocks must be on disk
	// before the join block file that would let onboarding start again goes.
	if err := ch.store.Sync(); err != nil {
		return fmt.Errorf("sync onboarded blocks: %w", err)
	}
	if err := os.Remove(filepath.Join(ch.dir, joinBlockFile)); err != nil {
		return err
	}
	r.log.Info("onboarding: blocks pulled", "channel", ch.id, "height", ch.store.Height(), "took", time.Since(start))
	return nil
}

func readJoinBlock(dir string) (*cb.Block, error) {
	raw, err := os.ReadFile(filepath.Join(dir, joinBlockFile))
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	b, err := block.Unmarshal(raw)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", joinBlockFile, err)
	}
	return b, nil
}

// replicator pulls the channel's blocks from the orderers the configuration
// in force names, except this node.
func (r *Registrar) replicator(ch *Channel) (*replicate.Replicator, error) {
	ch.learnSelf(r, ch.bundle.Load())
	endpoints := func() ([]string, [][]byte) {
		oc := ch.bundle.Load().Orderer()
		addrs := append([]string(nil), oc.Endpoints...)
		if len(addrs) == 0 {
			for _, c := range oc.Consenters {
				addrs = append(addrs, fmt.Sprintf("%s:%d", c.Host, c.Port))
			}
		}
		ch.selfMu.Lock()
		addrs = slices.DeleteFunc(addrs, func(a string) bool { return ch.selfAddrs[a] })
		ch.selfMu.Unlock()
		return addrs, oc.TLSRootCerts
	}
	rc := r.cfg.Replicate
	return replicate.New(replicate.Config{
		ChannelID:     ch.id,
		Signer:        r.cfg.Signer,
		ClientCert:    r.cfg.ClientCert,
		Endpoints:     endpoints,
		Dial:          rc.Dial,
		MinBackoff:    rc.MinBackoff,
		MaxBackoff:    rc.MaxBackoff,
		RecvTimeout:   rc.RecvTimeout,
		FollowTimeout: rc.FollowTimeout,
		Logger:        r.log,
	})
}

// storePuller binds a replicator to a channel's block store for its chain.
type storePuller struct {
	rep   *replicate.Replicator
	store *blockstore.Store
}

func (p storePuller) Pull(ctx context.Context, to uint64, wantHash []byte) error {
	return p.rep.Pull(ctx, p.store, to, wantHash)
}

// learnSelf remembers the endpoints at which a configuration names this node
// a consenter, so replication never dials this node itself, even after it
// left the consenters.
func (ch *Channel) learnSelf(r *Registrar, bundle *channelconfig.Bundle) {
	ch.selfMu.Lock()
	defer ch.selfMu.Unlock()
	for _, c := range bundle.Orderer().Consenters {
		if r.isSelf(c) {
			ch.selfAddrs[fmt.Sprintf("%s:%d", c.Host, c.Port)] = true
		}
	}
}

func (r *Registrar) relationOf(bundle *channelconfig.Bundle) string {
	for _, c := range bundle.Orderer().Consenters {
		if r.isSelf(c) {
			return RelationConsenter
		}
	}
	return RelationFollower
}

// prepare reads a channel's configuration from its block store and, when this
// node is a consenter, opens its raft store and builds its chain.
func (r *Registrar) prepare(ch *Channel) (_ *setup, err error) {
	last, err := ch.store.LastBlock()
	if err != nil {
		return nil, err
	}
	cfgNum := uint64(0)
	if !block.IsConfig(last) {
		if cfgNum, err = block.LastConfigIndex(last); err != nil {
			return nil, err
		}
	} else {
		cfgNum = last.Header.Number
	}
	cfgBlock, err := ch.store.Block(cfgNum)
	if err != nil {
		return nil, fmt.Errorf("read config block %d: %w", cfgNum, err)
	}
	bundle, err := channelconfig.FromBlock(cfgBlock)
	if err != nil {
		return nil, err
	}
	st := &setup{bundle: bundle, relation: RelationFollower}
	oc := bundle.Orderer()
	ids, next, err := consenterIDs(last, len(oc.Consenters))
	if err != nil {
		return nil, err
	}
	self := uint64(0)
	members := map[uint64]channelconfig.Consenter{}
	for i, c := range oc.Consenters {
		members[ids[i]] = c
		if r.isSelf(c) {
			self = ids[i]
		}
	}
	if self == 0 {
		return st, nil
	}
	st.relation = RelationConsenter

	rs, err := raftstore.Open(filepath.Join(ch.dir, "raft"), r.cfg.NoSync)
	if err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			if st.links != nil {
				st.links.Close()
			}
			rs.Close()
		}
	}()
	var tr chain.Transport = noTransport{}
	if r.cfg.Transports != nil {
		l := newLinks(r.cfg.Transports, ch.id, self, members)
		tr, st.links = l, l
	}
	var m chain.Metrics
	if r.cfg.Metrics != nil {
		m = r.cfg.Metrics
	}
	ch.bundle.Store(bundle) // the chain's Support reads it
	rep, err := r.replicator(ch)
	if err != nil {
		return nil, err
	}
	c, err := chain.New(chain.Config{
		ChannelID:            ch.id,
		SelfID:               self,
		Consenters:           ids,
		NextConsenterID:      next,
		Members:              members,
		Support:              support{ch},
		TickInterval:         oc.Raft.TickInterval,
		ElectionTick:         int(oc.Raft.ElectionTick),
		HeartbeatTick:        int(oc.Raft.HeartbeatTick),
		MaxInflightBlocks:    int(oc.Raft.MaxInflightBlocks),
		SnapshotIntervalSize: oc.Raft.SnapshotIntervalSize,
		Batch:                cutter.Config{MaxMessageCount: oc.MaxMessageCount, PreferredMaxBytes: oc.PreferredMaxBytes},
		BatchTimeout:         oc.BatchTimeout,
		// A fresh raft store over more than the genesis block: the channel
		// was onboarded into a running group.
		Join:      rs.Fresh() && ch.store.Height() > 1,
		Puller:    storePuller{rep: rep, store: ch.store},
		Store:     ch.store,
		Raft:      rs,
		Transport: tr,
		Signer:    r.cfg.Signer,
		Clock:     r.cfg.Clock,
		Logger:    r.log,
		Metrics:   m,
	})
	if err != nil {
		return nil, err
	}
	st.raft, st.chain = rs, c
	return st, nil
}

// consenterIDs reads the raft IDs of the consenters from the last block's
// etcdraft.BlockMetadata, or assigns 1..n as Fabric does for a genesis block.
func consenterIDs(last *cb.Block, n int) ([]uint64, uint64, error) {
	obm, _, err := blocksign.OrdererMetadata(last)
	if err != nil {
		return nil, 0, err
	}
	if obm != nil && len(obm.ConsenterMetadata) > 0 {
		md := &etcdraft.BlockMetadata{}
		if err := proto.Unmarshal(obm.ConsenterMetadata, md); err != nil {
			return nil, 0, fmt.Errorf("block %d raft metadata: %w", last.Header.Number, err)
		}
		if len(md.ConsenterIds) != n {
			return nil, 0, fmt.Errorf("block %d names %d consenters, the config %d", last.Header.Number, len(md.ConsenterIds), n)
		}
		return md.ConsenterIds, md.NextConsenterId, nil
	}
	ids := make([]uint64, n)
	for i := range ids {
		ids[i] = uint64(i + 1)
	}
	return ids, uint64(n + 1), nil
}

func (r *Registrar) isSelf(c channelconfig.Consenter) bool {
	for _, pemBytes := range [][]byte{c.ServerTLSCert, c.ClientTLSCert} {
		if p, _ := pem.Decode(pemBytes); p != nil && bytes.Equal(p.Bytes, r.selfDER) {
			return true
		}
	}
	return false
}

func (ch *Channel) close() {
	if ch.cancel != nil {
		ch.cancel()
	}
	<-ch.done
	if ch.links != nil {
		ch.links.Close()
	}
	if ch.raft != nil {
		ch.raft.Close()
	}
	ch.store.Close()
}

// Join creates a channel from a config block and starts serving it: at once
// for the genesis block; for a later config block after onboarding, which
// runs in the channel's goroutine (Info reports status "onboarding" until it
// ends).
func (r *Registrar) Join(_ context.Context, b *cb.Block) (participation.ChannelInfo, error) {
	if err := block.CheckStructure(b); err != nil {
		return participation.ChannelInfo{}, err
	}
	if !block.IsConfig(b) {
		return participation.ChannelInfo{}, errors.New("block is not a config block")
	}
	bundle, err := channelconfig.FromBlock(b)
	if err != nil {
		return participation.ChannelInfo{}, err
	}
	id := bundle.ChannelID()
	if err := participation.ValidateChannelID(id); err != nil {
		return participation.ChannelInfo{}, err
	}
	if len(bundle.Orderer().Consenters) == 0 {
		return participation.ChannelInfo{}, errors.New("channel configuration has no etcdraft consenters")
	}

	r.mu.Lock()
	if _, ok := r.channels[id]; ok {
		r.mu.Unlock()
		return participation.ChannelInfo{}, fmt.Errorf("%w: %s", participation.ErrChannelAlreadyExists, id)
	}
	if r.removing[id] {
		r.mu.Unlock()
		return participation.ChannelInfo{}, fmt.Errorf("%w: %s", participation.ErrChannelPendingRemove, id)
	}
	// Reserve the name while the stores are built outside the lock.
	r.removing[id] = true
	r.mu.Unlock()
	defer func() {
		r.mu.Lock()
		delete(r.removing, id)
		r.mu.Unlock()
	}()

	final := filepath.Join(r.channelsDir(), id)
	tmp := filepath.Join(r.channelsDir(), ".join-"+id)
	if err := os.RemoveAll(tmp); err != nil {
		return participation.ChannelInfo{}, err
	}
	store, err := blockstore.Open(blockstore.Config{Dir: filepath.Join(tmp, "blocks"), NoSync: r.cfg.NoSync})
	if err != nil {
		return participation.ChannelInfo{}, err
	}
	if b.Header.Number == 0 {
		err = store.Append(b)
	} else {
		// Onboarding: the blocks before the join block come from other orderers.
		err = fsutil.WriteFileAtomic(filepath.Join(tmp, joinBlockFile), mustMarshalBlock(b), 0o640, true, "")
	}
	if cerr := store.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, final)
	}
	if err != nil {
		os.RemoveAll(tmp)
		return participation.ChannelInfo{}, fmt.Errorf("write join block of %s: %w", id, err)
	}
	ch, err := r.open(id)
	if err != nil {
		os.RemoveAll(final)
		return participation.ChannelInfo{}, err
	}
	r.mu.Lock()
	r.channels[id] = ch
	info := ch.info()
	r.mu.Unlock()
	r.log.Info("channel joined", "channel", id, "relation", info.ConsensusRelation, "status", info.Status, "join_block", b.Header.Number)
	return info, nil
}

func mustMarshalBlock(b *cb.Block) []byte {
	raw, err := proto.Marshal(b)
	if err != nil {
		// b was decoded from bytes and checked; encoding it cannot fail.
		panic(fmt.Sprintf("registrar: encode a decoded block: %v", err))
	}
	return raw
}

// Remove stops a channel and deletes its data.
func (r *Registrar) Remove(_ context.Context, id string) error {
	r.mu.Lock()
	ch, ok := r.channels[id]
	if !ok {
		pending := r.removing[id]
		r.mu.Unlock()
		if pending {
			return fmt.Errorf("%w: %s", participation.ErrChannelPendingRemove, id)
		}
		return fmt.Errorf("%w: %s", participation.ErrChannelNotExist, id)
	}
	delete(r.channels, id)
	r.removing[id] = true
	r.mu.Unlock()
	defer func() {
		r.mu.Lock()
		delete(r.removing, id)
		r.mu.Unlock()
	}()

	ch.close()
	if r.cfg.Metrics != nil {
		r.cfg.Metrics.Forget(id)
	}
	gone := filepath.Join(r.channelsDir(), ".remove-"+id)
	if err := os.Rename(filepath.Join(r.channelsDir(), id), gone); err != nil {
		return fmt.Errorf("remove channel %s: %w", id, err)
	}
	if err := os.RemoveAll(gone); err != nil {
		return fmt.Errorf("remove channel %s: %w", id, err)
	}
	return nil
}

// Info describes a channel, onboarding or not.
func (r *Registrar) Info(id string) (participation.ChannelInfo, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	ch, ok := r.channels[id]
	if !ok {
		return participation.ChannelInfo{}, fmt.Errorf("%w: %s", participation.ErrChannelNotExist, id)
	}
	return ch.info(), nil
}

// List returns the joined channels' names, sorted.
func (r *Registrar) List() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	names := make([]string, 0, len(r.channels))
	for id := range r.channels {
		names = append(names, id)
	}
	sort.Strings(names)
	return names
}

// Channel looks up a joined channel that is active (not onboarding).
func (r *Registrar) Channel(id string) (*Channel, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	ch, ok := r.channels[id]
	if !ok || ch.status != StatusActive {
		return nil, false
	}
	return ch, true
}

// Leads reports whether this node leads the raft group of the active channel
// id, with its raft term; ok is false when the channel is not joined or still
// onboarding. A follower of the channel (not a consenter) never leads.
func (r *Registrar) Leads(id string) (leads bool, term uint64, ok bool) {
	ch, ok := r.Channel(id)
	if !ok {
		return false, 0, false
	}
	c := ch.chain.Load()
	if c == nil {
		return false, 0, true
	}
	st := c.Status()
	return st.Running && st.Leader != 0 && st.Leader == st.ID, st.Term, true
}

// Statuses reports every consenter chain's raft status, by channel.
func (r *Registrar) Statuses() map[string]chain.Status {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := map[string]chain.Status{}
	for id, ch := range r.channels {
		if c := ch.chain.Load(); c != nil {
			out[id] = c.Status()
		}
	}
	return out
}

// info describes the channel; the caller holds Registrar.mu.
func (ch *Channel) info() participation.ChannelInfo {
	return participation.ChannelInfo{Name: ch.id, ConsensusRelation: ch.relation, Status: ch.status, Height: ch.store.Height()}
}

// Evaluate checks signed data against a policy of the channel.
func (ch *Channel) Evaluate(path string, signed []policy.SignedData) error {
	b := ch.bundle.Load()
	p, err := b.Policies().Policy(path)
	if err != nil {
		return err
	}
	// Broadcast and Deliver clients must hold a current certificate.
	if err := policy.CheckCurrent(path, b.MSPs(), signed, time.Now()); err != nil {
		return err
	}
	return p.Evaluate(signed)
}

// AbsoluteMaxBytes is the channel's largest accepted envelope.
func (ch *Channel) AbsoluteMaxBytes() uint32 { return ch.bundle.Load().Orderer().AbsoluteMaxBytes }

// ConfigSequence is the sequence of the configuration in force.
func (ch *Channel) ConfigSequence() uint64 { return ch.bundle.Load().Sequence() }

// OrderBatch hands envelopes validated at config sequence seq to the
// channel's consenter in one go, to be ordered one after the other;
// errs[i] is envelope i's outcome.
func (ch *Channel) OrderBatch(ctx context.Context, envs [][]byte, seq uint64) (errs []error) {
	c := ch.chain.Load()
	if c == nil {
		return slices.Repeat([]error{ErrFollower}, len(envs))
	}
	return c.OrderBatch(ctx, envs, seq)
}

// Submit hands envelopes another consenter validated at config sequence seq
// and forwarded in one request to the channel's chain, which tells config
// envelopes from others (for the cluster transport). It returns how many,
// from the first, the chain accepted.
func (ch *Channel) Submit(ctx context.Context, envs [][]byte, seq uint64) (int, error) {
	c := ch.chain.Load()
	if c == nil {
		return 0, ErrFollower
	}
	return c.Submit(ctx, envs, seq)
}

// ProposeConfig authorises a CONFIG_UPDATE envelope against the
// configuration in force (internal/configtx) and returns the CONFIG envelope
// that installs the resulting configuration, signed by this node as Fabric's
// msgprocessor does, and the config sequence it was validated at. Errors
// matching policy.ErrNotSatisfied are authorisation failures.
func (ch *Channel) ProposeConfig(update *cb.Envelope) (*cb.Envelope, uint64, error) {
	b := ch.bundle.Load()
	ce, err := configtx.ProposeUpdate(b, update)
	if err != nil {
		return nil, 0, err
	}
	env, err := envelope.NewSignedEnvelope(cb.HeaderType_CONFIG, ch.id, ch.signer, ce)
	if err != nil {
		return nil, 0, fmt.Errorf("sign config envelope: %w", err)
	}
	return env, b.Sequence(), nil
}

// Configure hands a CONFIG envelope validated at config sequence seq to the
// channel's chain.
func (ch *Channel) Configure(ctx context.Context, env []byte, seq uint64) error {
	c := ch.chain.Load()
	if c == nil {
		return ErrFollower
	}
	return c.Configure(ctx, env, seq)
}

// Height is the number of blocks in the channel's store.
func (ch *Channel) Height() uint64 { return ch.store.Height() }

// Block reads block n.
func (ch *Channel) Block(n uint64) (*cb.Block, error) { return ch.store.Block(n) }

// Wait returns when block n is written.
func (ch *Channel) Wait(ctx context.Context, n uint64) error { return ch.store.Wait(ctx, n) }

// Step hands a raft message from another consenter to the channel's chain (for
// the cluster transport).
func (ch *Channel) Step(ctx context.Context, m *pb.Message) error {
	c := ch.chain.Load()
	if c == nil {
		return ErrFollower
	}
	return c.Step(ctx, m)
}

type noTransport struct{}

func (noTransport) Send([]*pb.Message) {}
func (noTransport) Forward(_ context.Context, _ uint64, envs [][]byte, _ uint64) []error {
	return slices.Repeat([]error{errors.New("no cluster transport configured")}, len(envs))
}

// support is a channel's configuration as its chain sees it.
type support struct{ ch *Channel }

func (s support) Bundle() *channelconfig.Bundle { return s.ch.bundle.Load() }

// ProcessConfig re-validates a CONFIG envelope against the configuration in
// force: its LastUpdate is proposed again (Fabric's ProcessConfigMsg).
func (s support) ProcessConfig(raw []byte) ([]byte, error) {
	env := &cb.Envelope{}
	if err := proto.Unmarshal(raw, env); err != nil {
		return nil, fmt.Errorf("config envelope: %w", err)
	}
	p, err := envelope.Parse(env)
	if err != nil {
		return nil, fmt.Errorf("config envelope: %w", err)
	}
	if typ := cb.HeaderType(p.ChannelHeader.Type); typ != cb.HeaderType_CONFIG {
		return nil, fmt.Errorf("envelope of type %s is not a config envelope", typ)
	}
	ce := &cb.ConfigEnvelope{}
	if err := proto.Unmarshal(p.Payload.Data, ce); err != nil {
		return nil, fmt.Errorf("config envelope: %w", err)
	}
	if ce.LastUpdate == nil {
		return nil, errors.New("config envelope has no last update")
	}
	fresh, _, err := s.ch.ProposeConfig(ce.LastUpdate)
	if err != nil {
		return nil, err
	}
	out, err := proto.Marshal(fresh)
	if err != nil {
		return nil, fmt.Errorf("encode config envelope: %w", err)
	}
	return out, nil
}

// ProcessNormal re-validates a normal envelope against the configuration in
// force with Broadcast's own checks (Fabric's ProcessNormalMsg).
func (s support) ProcessNormal(raw []byte) error {
	return broadcast.New(ownChannel{s.ch}, nil, nil).Revalidate(raw)
}

// ownChannel resolves only the channel itself: an envelope naming another
// channel fails revalidation as NOT_FOUND.
type ownChannel struct{ ch *Channel }

func (o ownChannel) Channel(id string) (broadcast.Channel, bool) {
	if id != o.ch.id {
		return nil, false
	}
	return o.ch, true
}

func (s support) ConfigCommitted(b *channelconfig.Bundle) {
	s.ch.bundle.Store(b)
}

// links is a chain's Transport whose member set follows config blocks: each
// change asks Transports for a new Transport (which replaces the channel's
// previous one in the cluster) and hands it the chain as reporter.
type links struct {
	ts      Transports
	channel string
	self    uint64

	mu       sync.Mutex
	cur      chain.Transport
	reporter chain.Reporter
	closed   bool
}

var (
	_ chain.Transport      = (*links)(nil)
	_ chain.ReporterSetter = (*links)(nil)
	_ chain.MemberSetter   = (*links)(nil)
)

func newLinks(ts Transports, channel string, self uint64, members map[uint64]channelconfig.Consenter) *links {
	return &links{ts: ts, channel: channel, self: self, cur: ts.Transport(channel, self, members)}
}

func (l *links) current() chain.Transport {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.cur
}

func (l *links) Send(msgs []*pb.Message) { l.current().Send(msgs) }

func (l *links) Forward(ctx context.Context, to uint64, envs [][]byte, seq uint64) []error {
	return l.current().Forward(ctx, to, envs, seq)
}

func (l *links) SetReporter(r chain.Reporter) {
	l.mu.Lock()
	l.reporter = r
	cur := l.cur
	l.mu.Unlock()
	if rs, ok := cur.(chain.ReporterSetter); ok {
		rs.SetReporter(r)
	}
}

// SetMembers replaces the channel's links with links to members.
func (l *links) SetMembers(members map[uint64]channelconfig.Consenter) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return
	}
	old := l.cur
	l.cur = l.ts.Transport(l.channel, l.self, members)
	if rs, ok := l.cur.(chain.ReporterSetter); ok && l.reporter != nil {
		rs.SetReporter(l.reporter)
	}
	if c, ok := old.(io.Closer); ok {
		c.Close()
	}
}

func (l *links) Close() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.closed = true
	if c, ok := l.cur.(io.Closer); ok {
		return c.Close()
	}
	return nil
}
