package chain

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/cairn-ledger/cairn/orderer/internal/cutter"
	pb "go.etcd.io/raft/v3/raftpb"
)

// memNet connects chains in one process. Each node has an inbox drained by its
// own goroutine, so a sender never blocks on a busy receiver; a full inbox drops
// messages, which raft tolerates. Isolated nodes neither send nor receive.
type memNet struct {
	mu       sync.Mutex
	chains   map[uint64]*Chain
	inbox    map[uint64]chan *pb.Message
	isolated map[uint64]bool
	wg       sync.WaitGroup
	ctx      context.Context
	cancel   context.CancelFunc
}

func newMemNet(ids ...uint64) *memNet {
	ctx, cancel := context.WithCancel(context.Background())
	n := &memNet{chains: map[uint64]*Chain{}, inbox: map[uint64]chan *pb.Message{}, isolated: map[uint64]bool{}, ctx: ctx, cancel: cancel}
	for _, id := range ids {
		n.inbox[id] = make(chan *pb.Message, 1024)
	}
	return n
}

func (n *memNet) attach(id uint64, c *Chain) {
	n.mu.Lock()
	n.chains[id] = c
	n.mu.Unlock()
	n.wg.Add(1)
	go func() {
		defer n.wg.Done()
		for {
			select {
			case m := <-n.inbox[id]:
				if err := c.Step(n.ctx, m); err != nil {
					return
				}
			case <-n.ctx.Done():
				return
			}
		}
	}()
}

func (n *memNet) close() {
	n.cancel()
	n.wg.Wait()
}

func (n *memNet) setIsolated(id uint64, v bool) {
	n.mu.Lock()
	n.isolated[id] = v
	n.mu.Unlock()
}

type memTransport struct {
	net  *memNet
	self uint64
}

func (t memTransport) Send(msgs []*pb.Message) {
	t.net.mu.Lock()
	defer t.net.mu.Unlock()
	for _, m := range msgs {
		if t.net.isolated[t.self] || t.net.isolated[m.GetTo()] {
			continue
		}
		select {
		case t.net.inbox[m.GetTo()] <- m:
		default:
		}
	}
}

func (t memTransport) Forward(ctx context.Context, to uint64, envs [][]byte, seq uint64) []error {
	t.net.mu.Lock()
	c, ok := t.net.chains[to]
	cut := t.net.isolated[t.self] || t.net.isolated[to]
	t.net.mu.Unlock()
	if !ok || cut {
		errs := make([]error, len(envs))
		for i := range errs {
			errs[i] = errors.New("unreachable")
		}
		return errs
	}
	return c.OrderBatch(ctx, envs, seq)
}

func TestThreeNodesAgreeOnIdenticalBlocks(t *testing.T) {
	net := newMemNet(1, 2, 3)
	signers := map[uint64]*testSigner{}
	nodes := map[uint64]*node{}
	genesis := genesisBlock()
	for id := uint64(1); id <= 3; id++ {
		signers[id] = newSigner(t)
		nodes[id] = startChain(t, chainOpts{id: id, n: 3, dir: t.TempDir(), store: newMemStore(genesis), clock: RealClock{},
			tr: memTransport{net, id}, signer: signers[id], batch: cutter.Config{MaxMessageCount: 2, PreferredMaxBytes: 1 << 20}, timeout: 50 * time.Millisecond})
		net.attach(id, nodes[id].chain)
	}
	defer func() {
		for _, n := range nodes {
			n.stop(t)
		}
		net.close()
	}()

	leader := func() uint64 {
		var l uint64
		waitFor(t, "a leader all agree on", func() bool {
			l = nodes[1].chain.Status().Leader
			for _, n := range nodes {
				if n.chain.Status().Leader != l {
					return false
				}
			}
			return l != 0
		})
		return l
	}
	l1 := leader()

	// Envelopes sent to every node, followers forward them to the leader.
	for i := range 9 {
		order(t, nodes[uint64(i%3)+1].chain, envOfSize(fmt.Sprintf("tx%d", i), 50))
	}
	waitFor(t, "all nodes at height 6", func() bool {
		for _, n := range nodes {
			if n.store.Height() != 6 {
				return false
			}
		}
		return true
	})

	// Leader failure: isolate the leader, a new one is elected and the chain
	// continues on the majority; the old leader catches up once it returns.
	net.setIsolated(l1, true)
	var l2 uint64
	waitFor(t, "new leader", func() bool {
		for id, n := range nodes {
			if id != l1 && n.chain.Status().Leader != 0 && n.chain.Status().Leader != l1 {
				l2 = n.chain.Status().Leader
				return true
			}
		}
		return false
	})
	order(t, nodes[l2].chain, envOfSize("after-failover-1", 50))
	order(t, nodes[l2].chain, envOfSize("after-failover-2", 50))
	net.setIsolated(l1, false)
	waitFor(t, "all nodes at height 7", func() bool {
		for _, n := range nodes {
			if n.store.Height() != 7 {
				return false
			}
		}
		return true
	})

	for num := uint64(1); num < 7; num++ {
		ref := nodes[1].store.raw(num)
		for id, n := range nodes {
			if !bytes.Equal(n.store.raw(num), ref) {
				t.Fatalf("block %d differs on node %d", num, id)
			}
		}
		// Every block is signed by whichever node led when it was cut.
		checkBlock(t, nodes[1].store, num, []uint64{1, 2, 3}, signers[1], signers[2], signers[3])
	}
}

// A submitter waiting for a leader that takes no envelopes (its blocks in
// flight cannot be written) is answered as soon as that node stops leading,
// not when the submitter's own context ends.
func TestSubmitterOnDeposedLeaderIsAnswered(t *testing.T) {
	net := newMemNet(1, 2, 3)
	hold := make(chan struct{})
	nodes := map[uint64]*node{}
	genesis := genesisBlock()
	for id := uint64(1); id <= 3; id++ {
		st := newMemStore(genesis)
		st.hold = hold // no block is written until the end
		nodes[id] = startChain(t, chainOpts{id: id, n: 3, dir: t.TempDir(), store: st, clock: RealClock{},
			tr: memTransport{net, id}, signer: newSigner(t), batch: cutter.Config{MaxMessageCount: 1, PreferredMaxBytes: 1 << 20}})
		net.attach(id, nodes[id].chain)
	}
	defer func() {
		close(hold)
		for _, n := range nodes {
			n.stop(t)
		}
		net.close()
	}()
	var l uint64
	waitFor(t, "a leader", func() bool { l = nodes[1].chain.Status().Leader; return l != 0 })
	leader := nodes[l].chain
	waitFor(t, "the leader to know it leads", func() bool { return leader.Status().Leader == l })

	// Five one-envelope blocks fill MaxInflightBlocks; the sixth envelope
	// waits for the leader to take envelopes again.
	envs := make([][]byte, 6)
	for i := range envs {
		envs[i] = envOfSize(fmt.Sprintf("d%d", i), 10)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	done := make(chan []error, 1)
	go func() { done <- leader.OrderBatch(ctx, envs, 0) }()
	select {
	case errs := <-done:
		t.Fatalf("the batch was answered while the leader took no envelopes: %v", errs)
	case <-time.After(200 * time.Millisecond):
	}

	// Cut off, the leader steps down (CheckQuorum) within a few election
	// timeouts and, alone, sees no leader.
	net.setIsolated(l, true)
	start := time.Now()
	var errs []error
	select {
	case errs = <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("the waiting envelope was not answered after its node stopped leading")
	}
	t.Logf("answered %s after the cut", time.Since(start).Round(time.Millisecond))
	for i, err := range errs[:5] {
		if err != nil {
			t.Errorf("envelope %d, taken before the cut: %v", i, err)
		}
	}
	if !errors.Is(errs[5], ErrNoLeader) {
		t.Errorf("the waiting envelope: %v, want ErrNoLeader", errs[5])
	}
	net.setIsolated(l, false)
}
