package chain

import (
	"errors"
	"testing"
	"time"

	"github.com/cairn-ledger/cairn/orderer/internal/cutter"
	"github.com/cairn-ledger/cairn/orderer/internal/raftstore"
	cb "github.com/hyperledger/fabric-protos-go-apiv2/common"
)

// failingStore is a memStore whose appends fail once fail is set.
type failingStore struct {
	*memStore
	fail error
}

func (s *failingStore) AppendEncoded(raw []byte, b *cb.Block) error {
	s.mu.Lock()
	err := s.fail
	s.mu.Unlock()
	if err != nil {
		return err
	}
	return s.memStore.AppendEncoded(raw, b)
}

// A block store that fails stops the chain with the store's error: blocks are
// written by the chain's writer goroutine, which reports the failure to Run.
func TestStoreFailureStopsChain(t *testing.T) {
	diskFull := errors.New("disk full")
	st := &failingStore{memStore: newMemStore(genesisBlock())}
	rs, err := raftstore.Open(t.TempDir(), true)
	if err != nil {
		t.Fatal(err)
	}
	defer rs.Close()
	c, err := New(Config{
		ChannelID: "ch", SelfID: 1, Consenters: []uint64{1}, NextConsenterID: 2,
		TickInterval: 10 * time.Millisecond, ElectionTick: 10, HeartbeatTick: 1,
		Batch: cutter.Config{MaxMessageCount: 1, PreferredMaxBytes: 1000}, BatchTimeout: time.Hour,
		Store: st, Raft: rs, Transport: noTransport{}, Signer: newSigner(t),
	})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- c.Run(t.Context()) }()
	waitFor(t, "leadership", func() bool { return c.Status().Leader == 1 })
	order(t, c, envOfSize("ok", 100))
	waitFor(t, "block 1", func() bool { return st.Height() == 2 })

	st.mu.Lock()
	st.fail = diskFull
	st.mu.Unlock()
	// The chain may stop before Order returns: either answer is fine.
	if err := c.Order(t.Context(), envOfSize("lost", 100), 0); err != nil && !errors.Is(err, ErrStopped) {
		t.Fatalf("Order: %v", err)
	}
	select {
	case err := <-done:
		if !errors.Is(err, diskFull) {
			t.Fatalf("Run returned %v, want the store's error", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("chain still runs after its block store failed")
	}
	if h := st.Height(); h != 2 {
		t.Fatalf("height %d after the failed append, want 2", h)
	}
}
