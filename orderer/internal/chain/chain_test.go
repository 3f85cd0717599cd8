package chain

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/cairn-ledger/cairn/internal/block"
	"github.com/cairn-ledger/cairn/orderer/internal/blocksign"
	"github.com/cairn-ledger/cairn/orderer/internal/cutter"
	"github.com/cairn-ledger/cairn/orderer/internal/raftstore"
	cb "github.com/hyperledger/fabric-protos-go-apiv2/common"
	"github.com/hyperledger/fabric-protos-go-apiv2/orderer/etcdraft"
	pb "go.etcd.io/raft/v3/raftpb"
	"google.golang.org/protobuf/proto"
)

// memStore is an in-memory block store with the hash-chain check of the real one.
type memStore struct {
	mu     sync.Mutex
	blocks [][]byte
	synced int           // blocks made durable by Sync; crash keeps only these
	hold   chan struct{} // when set, appends wait for it to close
}

func newMemStore(genesis *cb.Block) *memStore {
	raw, _ := proto.Marshal(genesis)
	return &memStore{blocks: [][]byte{raw}}
}

func (s *memStore) AppendEncoded(raw []byte, b *cb.Block) error {
	if s.hold != nil {
		<-s.hold
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if b.Header.Number != uint64(len(s.blocks)) {
		return fmt.Errorf("append block %d at height %d", b.Header.Number, len(s.blocks))
	}
	got := &cb.Block{}
	if err := proto.Unmarshal(raw, got); err != nil || !proto.Equal(got, b) {
		return fmt.Errorf("append block %d: raw bytes are not the block (%v)", b.Header.Number, err)
	}
	s.blocks = append(s.blocks, bytes.Clone(raw))
	return nil
}

func (s *memStore) Sync() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.synced = len(s.blocks)
	return nil
}

func (s *memStore) syncedBlocks() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.synced
}

// crash drops the blocks appended since the last Sync, as a machine crash
// does to a store opened with blockstore's DeferSync.
func (s *memStore) crash() (lost int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	lost = len(s.blocks) - max(s.synced, 1)
	s.blocks = s.blocks[:max(s.synced, 1)]
	return lost
}

func (s *memStore) Height() uint64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return uint64(len(s.blocks))
}

func (s *memStore) Block(n uint64) (*cb.Block, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if n >= uint64(len(s.blocks)) {
		return nil, errors.New("not found")
	}
	b := &cb.Block{}
	return b, proto.Unmarshal(s.blocks[n], b)
}

func (s *memStore) raw(n uint64) []byte {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.blocks[n]
}

type testSigner struct{ key *ecdsa.PrivateKey }

func newSigner(t *testing.T) *testSigner {
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return &testSigner{k}
}

func (s *testSigner) Serialize() []byte { return []byte("orderer-identity") }
func (s *testSigner) Sign(msg []byte) ([]byte, error) {
	d := sha256.Sum256(msg)
	return ecdsa.SignASN1(rand.Reader, s.key, d[:])
}

// fakeClock fires timers and tickers only when Advance is called.
type fakeClock struct {
	mu     sync.Mutex
	now    time.Time
	timers []*fakeTimer
}

type fakeTimer struct {
	c        chan time.Time
	at       time.Time
	period   time.Duration
	stopped  bool
	clockRef *fakeClock
}

func (t *fakeTimer) C() <-chan time.Time { return t.c }
func (t *fakeTimer) Stop() bool {
	t.clockRef.mu.Lock()
	defer t.clockRef.mu.Unlock()
	was := !t.stopped
	t.stopped = true
	return was
}

func (c *fakeClock) add(d, period time.Duration) *fakeTimer {
	c.mu.Lock()
	defer c.mu.Unlock()
	t := &fakeTimer{c: make(chan time.Time, 1), at: c.now.Add(d), period: period, clockRef: c}
	c.timers = append(c.timers, t)
	return t
}

func (c *fakeClock) NewTimer(d time.Duration) Timer   { return c.add(d, 0) }
func (c *fakeClock) NewTicker(d time.Duration) Ticker { return tickerOf{c.add(d, d)} }

type tickerOf struct{ *fakeTimer }

func (t tickerOf) Stop() { t.fakeTimer.Stop() }

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
	for _, t := range c.timers {
		for !t.stopped && !t.at.After(c.now) {
			select {
			case t.c <- c.now:
			default:
			}
			if t.period == 0 {
				t.stopped = true
			} else {
				t.at = t.at.Add(t.period)
			}
		}
	}
}

// noTransport is the transport of a one-node group.
type noTransport struct{}

func (noTransport) Send([]*pb.Message) {}
func (noTransport) Forward(_ context.Context, _ uint64, envs [][]byte, _ uint64) []error {
	return slices.Repeat([]error{errors.New("no other consenters")}, len(envs))
}

func genesisBlock() *cb.Block {
	payload, _ := proto.Marshal(&cb.Payload{Header: &cb.Header{ChannelHeader: mustMarshal(&cb.ChannelHeader{Type: int32(cb.HeaderType_CONFIG), ChannelId: "ch"})}})
	env := mustMarshal(&cb.Envelope{Payload: payload})
	return block.New(0, nil, [][]byte{env})
}

func mustMarshal(m proto.Message) []byte {
	b, err := proto.Marshal(m)
	if err != nil {
		panic(err)
	}
	return b
}

// envOfSize builds an envelope whose payload+signature count is n bytes.
func envOfSize(tag string, n int) []byte {
	p := bytes.Repeat([]byte{'x'}, n-len(tag))
	return mustMarshal(&cb.Envelope{Payload: append([]byte(tag), p...)})
}

type node struct {
	chain  *Chain
	store  *memStore
	raft   *raftstore.Store
	cancel context.CancelFunc
	done   chan error
}

func (n *node) stop(t *testing.T) {
	n.cancel()
	if err := <-n.done; err != nil {
		t.Errorf("chain Run: %v", err)
	}
	n.raft.Close()
}

type chainOpts struct {
	id, n    uint64
	dir      string
	store    *memStore
	clock    Clock
	tr       Transport
	signer   *testSigner
	batch    cutter.Config
	timeout  time.Duration
	snapshot uint32
}

func startChain(t *testing.T, o chainOpts) *node {
	t.Helper()
	rs, err := raftstore.Open(o.dir, true)
	if err != nil {
		t.Fatal(err)
	}
	var ids []uint64
	for i := uint64(1); i <= o.n; i++ {
		ids = append(ids, i)
	}
	if o.timeout == 0 {
		o.timeout = time.Hour
	}
	c, err := New(Config{
		ChannelID: "ch", SelfID: o.id, Consenters: ids, NextConsenterID: o.n + 1,
		TickInterval: 10 * time.Millisecond, ElectionTick: 10, HeartbeatTick: 1,
		MaxInflightBlocks: 5, SnapshotIntervalSize: o.snapshot,
		Batch: o.batch, BatchTimeout: o.timeout,
		Store: o.store, Raft: rs, Transport: o.tr, Signer: o.signer, Clock: o.clock,
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()
	return &node{chain: c, store: o.store, raft: rs, cancel: cancel, done: done}
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

func order(t *testing.T, c *Chain, env []byte) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for {
		err := c.Order(ctx, env, 0)
		if err == nil {
			return
		}
		if !errors.Is(err, ErrNoLeader) || ctx.Err() != nil {
			t.Fatalf("order: %v", err)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// checkBlock verifies the hash chain, the signature and the metadata of block n.
func checkBlock(t *testing.T, s *memStore, n uint64, consenters []uint64, signers ...*testSigner) *cb.Block {
	t.Helper()
	b, err := s.Block(n)
	if err != nil {
		t.Fatal(err)
	}
	prev, _ := s.Block(n - 1)
	if b.Header.Number != n || !bytes.Equal(b.Header.PreviousHash, block.HeaderHash(prev.Header)) {
		t.Fatalf("block %d does not chain to %d", n, n-1)
	}
	if !bytes.Equal(b.Header.DataHash, block.DataHash(b.Data)) {
		t.Fatalf("block %d data hash mismatch", n)
	}
	obm, md, err := blocksign.OrdererMetadata(b)
	if err != nil || obm == nil {
		t.Fatalf("block %d: orderer metadata: %v", n, err)
	}
	if obm.LastConfig.GetIndex() != 0 {
		t.Errorf("block %d last config %d, want 0", n, obm.LastConfig.GetIndex())
	}
	if lc, err := block.LastConfigIndex(b); err != nil || lc != 0 {
		t.Errorf("block %d LastConfigIndex = %d, %v", n, lc, err)
	}
	rm := &etcdraft.BlockMetadata{}
	if err := proto.Unmarshal(obm.ConsenterMetadata, rm); err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(rm.ConsenterIds) != fmt.Sprint(consenters) || rm.NextConsenterId != uint64(len(consenters))+1 || rm.RaftIndex == 0 {
		t.Errorf("block %d raft metadata %v", n, rm)
	}
	if len(md.Signatures) != 1 {
		t.Fatalf("block %d has %d signatures", n, len(md.Signatures))
	}
	sh := &cb.SignatureHeader{}
	if err := proto.Unmarshal(md.Signatures[0].SignatureHeader, sh); err != nil || string(sh.Creator) != "orderer-identity" || len(sh.Nonce) == 0 {
		t.Fatalf("block %d signature header %v %v", n, sh, err)
	}
	d := sha256.Sum256(blocksign.SignedBytes(md.Value, md.Signatures[0].SignatureHeader, b.Header))
	verified := false
	for _, signer := range signers {
		verified = verified || ecdsa.VerifyASN1(&signer.key.PublicKey, d[:], md.Signatures[0].Signature)
	}
	if !verified {
		t.Fatalf("block %d signature does not verify", n)
	}
	lcMD := &cb.Metadata{}
	if err := proto.Unmarshal(b.Metadata.Metadata[cb.BlockMetadataIndex_LAST_CONFIG], lcMD); err != nil {
		t.Fatal(err)
	}
	return b
}

func TestSingleNodeCutsAndSignsBlocks(t *testing.T) {
	clk := &fakeClock{}
	signer := newSigner(t)
	st := newMemStore(genesisBlock())
	n := startChain(t, chainOpts{id: 1, n: 1, dir: t.TempDir(), store: st, clock: clk, tr: noTransport{}, signer: signer,
		batch: cutter.Config{MaxMessageCount: 3, PreferredMaxBytes: 1000}, timeout: 2 * time.Second})
	defer n.stop(t)
	waitFor(t, "leadership", func() bool { return n.chain.Status().Leader == 1 })

	for i := range 7 {
		order(t, n.chain, envOfSize(fmt.Sprintf("tx%d", i), 100))
	}
	waitFor(t, "two full blocks", func() bool { return st.Height() == 3 })
	// The seventh envelope waits for the batch timer.
	time.Sleep(20 * time.Millisecond)
	if st.Height() != 3 {
		t.Fatalf("height %d before batch timeout", st.Height())
	}
	clk.Advance(2 * time.Second)
	waitFor(t, "timeout block", func() bool { return st.Height() == 4 })

	want := []int{3, 3, 1}
	for i, w := range want {
		b := checkBlock(t, st, uint64(i+1), []uint64{1}, signer)
		if len(b.Data.Data) != w {
			t.Errorf("block %d has %d envelopes, want %d", i+1, len(b.Data.Data), w)
		}
	}

	// PreferredMaxBytes: an oversized envelope flushes the pending one and goes alone.
	order(t, n.chain, envOfSize("small", 100))
	order(t, n.chain, envOfSize("big", 1500))
	waitFor(t, "oversized blocks", func() bool { return st.Height() == 6 })
	b4 := checkBlock(t, st, 4, []uint64{1}, signer)
	b5 := checkBlock(t, st, 5, []uint64{1}, signer)
	if len(b4.Data.Data) != 1 || len(b5.Data.Data) != 1 || !bytes.HasPrefix(mustEnv(t, b5).Payload, []byte("big")) {
		t.Errorf("oversized envelope not cut alone: %d, %d", len(b4.Data.Data), len(b5.Data.Data))
	}
}

func mustEnv(t *testing.T, b *cb.Block) *cb.Envelope {
	env, err := block.Envelope(b, 0)
	if err != nil {
		t.Fatal(err)
	}
	return env
}

func TestRestartKeepsHeightAndContinues(t *testing.T) {
	clk := &fakeClock{}
	signer := newSigner(t)
	st := newMemStore(genesisBlock())
	dir := t.TempDir()
	opts := chainOpts{id: 1, n: 1, dir: dir, store: st, clock: clk, tr: noTransport{}, signer: signer,
		batch: cutter.Config{MaxMessageCount: 1, PreferredMaxBytes: 1000}, snapshot: 1}
	// Restart over the same raft directory and block store: the replayed log
	// must not rewrite blocks, and ordering continues at height 6.
	n := orderThenRestart(t, opts, 5)
	defer n.stop(t)
	waitFor(t, "leadership after restart", func() bool { return n.chain.Status().Leader == 1 })
	if h := st.Height(); h != 6 {
		t.Fatalf("height after restart %d, want 6", h)
	}
	order(t, n.chain, envOfSize("after", 10))
	waitFor(t, "block 6", func() bool { return st.Height() == 7 })
	for i := uint64(1); i < 7; i++ {
		checkBlock(t, st, i, []uint64{1}, signer)
	}
	if n.chain.Status().Term < 2 {
		t.Errorf("term %d after restart; hard state not persisted?", n.chain.Status().Term)
	}
}

// TestUnsyncedBlocksComeBackFromTheWAL: the block store syncs only before a
// raft snapshot; blocks a crash takes from it are applied again from the raft
// log, which keeps every entry after the snapshot.
func TestUnsyncedBlocksComeBackFromTheWAL(t *testing.T) {
	clk := &fakeClock{}
	signer := newSigner(t)
	st := newMemStore(genesisBlock())
	opts := chainOpts{id: 1, n: 1, dir: t.TempDir(), store: st, clock: clk, tr: noTransport{}, signer: signer,
		batch: cutter.Config{MaxMessageCount: 1, PreferredMaxBytes: 1000}, snapshot: 8000}
	n := startChain(t, opts)
	// Blocks of one envelope each until a snapshot has synced the store and
	// blocks were written after it (snapshots are taken by the block writer,
	// after however many blocks raft committed together).
	height := uint64(1)
	for i := 0; ; i++ {
		synced := st.syncedBlocks()
		if synced >= 2 && height > uint64(synced) {
			break
		}
		if i == 60 {
			t.Fatalf("after %d blocks: %d synced; the test needs a snapshot and blocks after it", height-1, synced)
		}
		order(t, n.chain, envOfSize(fmt.Sprintf("a%d", i), 600))
		height++
		waitFor(t, fmt.Sprintf("height %d", height), func() bool { return st.Height() == height })
	}
	n.stop(t)
	if lost := st.crash(); lost == 0 {
		t.Fatalf("every block was synced (%d); the test needs some after the last snapshot", st.synced)
	}

	n = startChain(t, opts)
	defer n.stop(t)
	waitFor(t, "the lost blocks applied again", func() bool { return st.Height() == height })
	order(t, n.chain, envOfSize("after", 10))
	waitFor(t, "one block more", func() bool { return st.Height() == height+1 })
	for i := uint64(1); i <= height; i++ {
		checkBlock(t, st, i, []uint64{1}, signer)
	}
}

// orderThenRestart starts a one-node chain, has it order that many blocks of
// one envelope each, stops it and starts it again over the same raft
// directory and block store.
func orderThenRestart(t *testing.T, opts chainOpts, blocks int) *node {
	t.Helper()
	n := startChain(t, opts)
	for i := range blocks {
		order(t, n.chain, envOfSize(fmt.Sprintf("a%d", i), 10))
	}
	waitFor(t, fmt.Sprintf("%d blocks", blocks), func() bool { return opts.store.Height() == uint64(blocks)+1 })
	n.stop(t)
	return startChain(t, opts)
}

// TestRestartedSingleNodeLeadsAtOnce: a one-node chain restarted with
// entries (the bootstrap membership among them) still to apply from its log
// campaigns as soon as they are applied, without waiting an election
// timeout (the clock never ticks here).
func TestRestartedSingleNodeLeadsAtOnce(t *testing.T) {
	st := newMemStore(genesisBlock())
	opts := chainOpts{id: 1, n: 1, dir: t.TempDir(), store: st, clock: &fakeClock{}, tr: noTransport{}, signer: newSigner(t),
		batch: cutter.Config{MaxMessageCount: 1, PreferredMaxBytes: 1000}}
	n := orderThenRestart(t, opts, 3)
	defer n.stop(t)
	waitFor(t, "leadership after the restart", func() bool { return n.chain.Status().Leader == 1 })
	order(t, n.chain, envOfSize("after", 10))
	waitFor(t, "block 4", func() bool { return st.Height() == 5 })
}

// TestBatchWaitsForBlocksInFlight: a batch handed over at once fills at most
// MaxInflightBlocks blocks ahead of the writer; the rest waits until blocks
// are written, then follows in order.
func TestBatchWaitsForBlocksInFlight(t *testing.T) {
	st := newMemStore(genesisBlock())
	hold := make(chan struct{})
	st.hold = hold
	n := startChain(t, chainOpts{id: 1, n: 1, dir: t.TempDir(), store: st, clock: &fakeClock{}, tr: noTransport{}, signer: newSigner(t),
		batch: cutter.Config{MaxMessageCount: 1, PreferredMaxBytes: 1000}})
	defer n.stop(t)
	waitFor(t, "leadership", func() bool { return n.chain.Status().Leader == 1 })
	envs := make([][]byte, 20) // one block each; MaxInflightBlocks is 5
	for i := range envs {
		envs[i] = envOfSize(fmt.Sprintf("b%d", i), 10)
	}
	done := make(chan []error, 1)
	go func() { done <- n.chain.OrderBatch(context.Background(), envs, 0) }()
	select {
	case errs := <-done:
		t.Fatalf("a batch of 20 one-envelope blocks was taken while no block could be written: %v", errs)
	case <-time.After(300 * time.Millisecond):
	}
	close(hold)
	for i, err := range <-done {
		if err != nil {
			t.Fatalf("envelope %d: %v", i, err)
		}
	}
	waitFor(t, "20 blocks", func() bool { return st.Height() == 21 })
	for i := range envs {
		b, err := st.Block(uint64(i + 1))
		if err != nil || !bytes.Equal(b.Data.Data[0], envs[i]) {
			t.Fatalf("block %d does not hold envelope %d (%v)", i+1, i, err)
		}
	}
}

func TestNoLeaderAndStopped(t *testing.T) {
	st := newMemStore(genesisBlock())
	clk := &fakeClock{}
	// Node 1 of 3 with nobody else reachable never elects a leader.
	n := startChain(t, chainOpts{id: 1, n: 3, dir: t.TempDir(), store: st, clock: clk, tr: noTransport{}, signer: newSigner(t),
		batch: cutter.Config{MaxMessageCount: 1, PreferredMaxBytes: 10}})
	waitFor(t, "running", func() bool { return n.chain.Status().Running })
	if err := n.chain.Order(context.Background(), []byte("x"), 0); !errors.Is(err, ErrNoLeader) {
		t.Fatalf("Order without leader: %v", err)
	}
	n.stop(t)
	if err := n.chain.Order(context.Background(), []byte("x"), 0); !errors.Is(err, ErrStopped) {
		t.Fatalf("Order after stop: %v", err)
	}
}

func TestConfigValidation(t *testing.T) {
	st := newMemStore(genesisBlock())
	rs, err := raftstore.Open(t.TempDir(), true)
	if err != nil {
		t.Fatal(err)
	}
	defer rs.Close()
	base := Config{ChannelID: "ch", SelfID: 1, Consenters: []uint64{1}, TickInterval: time.Millisecond, ElectionTick: 10, HeartbeatTick: 1,
		BatchTimeout: time.Second, Batch: cutter.Config{MaxMessageCount: 1, PreferredMaxBytes: 1}, Store: st, Raft: rs, Signer: newSigner(t), Transport: noTransport{}}
	if _, err := New(base); err != nil {
		t.Fatal(err)
	}
	for name, mut := range map[string]func(*Config){
		"not a consenter": func(c *Config) { c.SelfID = 2 },
		"ticks":           func(c *Config) { c.ElectionTick = 1 },
		"batch":           func(c *Config) { c.Batch.MaxMessageCount = 0 },
		"timeout":         func(c *Config) { c.BatchTimeout = 0 },
	} {
		c := base
		mut(&c)
		if _, err := New(c); err == nil {
			t.Errorf("%s: config accepted", name)
		}
	}
}

// A leader applying its own proposals recognises their bytes and skips
// hashing the data again; every block still checks out.
func TestLeaderTakesItsOwnBlocksBack(t *testing.T) {
	signer := newSigner(t)
	st := newMemStore(genesisBlock())
	n := startChain(t, chainOpts{id: 1, n: 1, dir: t.TempDir(), store: st, clock: &fakeClock{}, tr: noTransport{}, signer: signer,
		batch: cutter.Config{MaxMessageCount: 3, PreferredMaxBytes: 1000}})
	waitFor(t, "leadership", func() bool { return n.chain.Status().Leader == 1 })
	for i := range 9 {
		order(t, n.chain, envOfSize(fmt.Sprintf("tx%d", i), 100))
	}
	waitFor(t, "three blocks", func() bool { return st.Height() == 4 })
	n.stop(t)
	// Run has returned: its fields are safe to read.
	if left := len(n.chain.ownBlocks); left != 0 {
		t.Fatalf("%d of the leader's own blocks were not recognised when applied", left)
	}
	for i := uint64(1); i <= 3; i++ {
		checkBlock(t, st, i, []uint64{1}, signer)
	}
}

func TestTakeOwnBlockMatchesWholeContent(t *testing.T) {
	ch := &Chain{ownBlocks: [][]byte{[]byte("block a"), []byte("block b"), []byte("block c")}}
	for _, other := range []string{"block B", "block b ", "block ", ""} {
		if ch.takeOwnBlock([]byte(other)) {
			t.Fatalf("%q taken as an own block", other)
		}
	}
	if !ch.takeOwnBlock([]byte("block b")) {
		t.Fatal("own block not recognised")
	}
	// a was proposed before b and is forgotten: it never committed as is.
	if len(ch.ownBlocks) != 1 || string(ch.ownBlocks[0]) != "block c" {
		t.Fatalf("remembered after taking b: %q", ch.ownBlocks)
	}
}
