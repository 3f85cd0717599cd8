package chain

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/cairn-ledger/cairn/orderer/internal/cutter"
	"github.com/cairn-ledger/cairn/orderer/internal/raftstore"
)

// termMetrics records what the chain reports, including the optional term.
type termMetrics struct {
	mu     sync.Mutex
	leader bool
	terms  []uint64
}

func (m *termMetrics) BlockCut(string, string)       {}
func (m *termMetrics) BlockCommitted(string, uint64) {}
func (m *termMetrics) Leader(_ string, isLeader bool) {
	m.mu.Lock()
	m.leader = isLeader
	m.mu.Unlock()
}
func (m *termMetrics) RaftTerm(channel string, t uint64) {
	m.mu.Lock()
	m.terms = append(m.terms, t)
	m.mu.Unlock()
}

func (m *termMetrics) snapshot() (bool, []uint64) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.leader, append([]uint64(nil), m.terms...)
}

// TestReportsRaftTerm checks that a chain whose Metrics implements
// TermMetrics reports each new term once, matching Status.
func TestReportsRaftTerm(t *testing.T) {
	rs, err := raftstore.Open(t.TempDir(), true)
	if err != nil {
		t.Fatal(err)
	}
	defer rs.Close()
	m := &termMetrics{}
	c, err := New(Config{
		ChannelID: "ch", SelfID: 1, Consenters: []uint64{1}, NextConsenterID: 2,
		TickInterval: 10 * time.Millisecond, ElectionTick: 10, HeartbeatTick: 1,
		Batch: cutter.Config{MaxMessageCount: 10, PreferredMaxBytes: 1000}, BatchTimeout: time.Hour,
		Store: newMemStore(genesisBlock()), Raft: rs, Transport: noTransport{}, Signer: newSigner(t),
		Clock: &fakeClock{}, Metrics: m,
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	}()
	waitFor(t, "leadership reported", func() bool { l, _ := m.snapshot(); return l })
	waitFor(t, "term reported", func() bool {
		_, terms := m.snapshot()
		return len(terms) > 0 && terms[len(terms)-1] == c.Status().Term
	})
	_, terms := m.snapshot()
	for i := 1; i < len(terms); i++ {
		if terms[i] <= terms[i-1] {
			t.Fatalf("terms reported %v: want each new term once, increasing", terms)
		}
	}
	if terms[len(terms)-1] == 0 {
		t.Fatalf("leader reported term 0")
	}
}
