package replicate_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cairn-ledger/cairn/internal/block"
	"github.com/cairn-ledger/cairn/internal/channelconfig"
	"github.com/cairn-ledger/cairn/internal/crypto"
	"github.com/cairn-ledger/cairn/internal/cryptogen"
	"github.com/cairn-ledger/cairn/internal/envelope"
	"github.com/cairn-ledger/cairn/internal/netconfig"
	"github.com/cairn-ledger/cairn/internal/policy"
	"github.com/cairn-ledger/cairn/orderer/internal/blocksign"
	"github.com/cairn-ledger/cairn/orderer/internal/deliver"
	"github.com/cairn-ledger/cairn/orderer/internal/replicate"
	cb "github.com/hyperledger/fabric-protos-go-apiv2/common"
	ab "github.com/hyperledger/fabric-protos-go-apiv2/orderer"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/proto"
)

const channelID = "mychannel"

type fixture struct {
	orderer, peer, user *crypto.SigningIdentity
	blocks              []*cb.Block // 0..n, correctly signed
}

func newFixture(t testing.TB, n int) *fixture {
	t.Helper()
	dir := t.TempDir()
	net := netconfig.Default()
	net.OrdererOrgs[0].Orderers[0].Port = 7050
	net.PeerOrgs[0].Peers[0].Port = 7051
	if err := cryptogen.Generate(net, dir); err != nil {
		t.Fatal(err)
	}
	genesis, err := channelconfig.Genesis(net, dir)
	if err != nil {
		t.Fatal(err)
	}
	l := cryptogen.Layout{Root: dir}
	load := func(mspID, mspDir string) *crypto.SigningIdentity {
		id, err := crypto.LoadSigningIdentity(mspID, mspDir)
		if err != nil {
			t.Fatal(err)
		}
		return id
	}
	f := &fixture{
		orderer: load("OrdererMSP", l.NodeMSPDir(false, "example.com", "orderer0.example.com")),
		peer:    load("Org1MSP", l.NodeMSPDir(true, "org1.example.com", "peer0.org1.example.com")),
		user:    load("Org1MSP", l.UserMSPDir(true, "org1.example.com", "User1")),
		blocks:  []*cb.Block{genesis},
	}
	for i := 1; i <= n; i++ {
		f.blocks = append(f.blocks, f.next(t, f.blocks[i-1], fmt.Sprintf("tx-%d", i), f.orderer))
	}
	return f
}

// next builds and signs the block after prev.
func (f *fixture) next(t testing.TB, prev *cb.Block, value string, signer blocksign.Signer) *cb.Block {
	t.Helper()
	env, err := envelope.NewSignedEnvelope(cb.HeaderType_ENDORSER_TRANSACTION, channelID, f.user, &cb.ConfigValue{Value: []byte(value)})
	if err != nil {
		t.Fatal(err)
	}
	raw, _ := proto.Marshal(env)
	b := block.New(prev.Header.Number+1, block.HeaderHash(prev.Header), [][]byte{raw})
	if err := blocksign.Sign(b, signer, 0, nil, nil); err != nil {
		t.Fatal(err)
	}
	return b
}

// ledger is an in-memory Ledger.
type ledger struct {
	mu     sync.Mutex
	blocks []*cb.Block
}

func (l *ledger) Height() uint64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	return uint64(len(l.blocks))
}

func (l *ledger) Block(n uint64) (*cb.Block, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if n >= uint64(len(l.blocks)) {
		return nil, errors.New("no such block")
	}
	return l.blocks[n], nil
}

func (l *ledger) Append(b *cb.Block) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if b.Header.Number != uint64(len(l.blocks)) {
		return fmt.Errorf("append %d at height %d", b.Header.Number, len(l.blocks))
	}
	l.blocks = append(l.blocks, b)
	return nil
}

// server is a Deliver service over plain TCP serving fixed blocks, using the
// orderer's own deliver handler; it counts the streams it served.
type server struct {
	ab.UnimplementedAtomicBroadcastServer
	h       *deliver.Handler
	blocks  []*cb.Block
	streams atomic.Int32
	addr    string
}

func (s *server) Deliver(stream ab.AtomicBroadcast_DeliverServer) error {
	s.streams.Add(1)
	return s.h.Handle(stream)
}

func (s *server) Channel(id string) (deliver.Channel, bool) { return s, id == channelID }

func (s *server) Evaluate(string, []policy.SignedData) error { return nil }
func (s *server) Height() uint64                             { return uint64(len(s.blocks)) }
func (s *server) Block(n uint64) (*cb.Block, error)          { return s.blocks[n], nil }
func (s *server) Wait(ctx context.Context, n uint64) error {
	<-ctx.Done()
	return ctx.Err()
}

func serve(t *testing.T, blocks []*cb.Block) *server {
	t.Helper()
	s := &server{blocks: blocks}
	s.h = deliver.New(s, nil, nil, 0)
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	g := grpc.NewServer()
	ab.RegisterAtomicBroadcastServer(g, s)
	done := make(chan struct{})
	go func() { defer close(done); g.Serve(lis) }()
	t.Cleanup(func() { g.Stop(); <-done })
	s.addr = lis.Addr().String()
	return s
}

func newReplicator(t *testing.T, f *fixture, addrs func() []string) *replicate.Replicator {
	t.Helper()
	r, err := replicate.New(replicate.Config{
		ChannelID: channelID,
		Signer:    f.orderer,
		Endpoints: func() ([]string, [][]byte) { return addrs(), nil },
		Dial: func(addr string, _ [][]byte) (*grpc.ClientConn, error) {
			return grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
		},
		MinBackoff:    5 * time.Millisecond,
		MaxBackoff:    20 * time.Millisecond,
		RecvTimeout:   2 * time.Second,
		FollowTimeout: 200 * time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func clone(bs []*cb.Block) []*cb.Block {
	out := make([]*cb.Block, len(bs))
	for i, b := range bs {
		out[i] = proto.Clone(b).(*cb.Block)
	}
	return out
}

func sameBlocks(t *testing.T, got, want []*cb.Block) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%d blocks, want %d", len(got), len(want))
	}
	for i := range got {
		g, _ := proto.Marshal(got[i])
		w, _ := proto.Marshal(want[i])
		if !bytes.Equal(g, w) {
			t.Fatalf("block %d differs", i)
		}
	}
}

// TestPullRefusesBadBlocks serves a chain with one bad block from one
// orderer: the replicator stops before it, and completes from a good orderer.
func TestPullRefusesBadBlocks(t *testing.T) {
	const n, bad = 6, 4
	f := newFixture(t, n)
	tests := []struct {
		name   string
		spoil  func(t *testing.T, bs []*cb.Block)
		height uint64 // the ledger's height once the bad orderer is exhausted
	}{
		{name: "tampered data", height: bad, spoil: func(t *testing.T, bs []*cb.Block) {
			bs[bad].Data.Data[0] = append(bs[bad].Data.Data[0], 0)
		}},
		{name: "signed by a peer", height: bad, spoil: func(t *testing.T, bs []*cb.Block) {
			bs[bad] = f.next(t, bs[bad-1], "tx-4", f.peer)
		}},
		{name: "signed by a client", height: bad, spoil: func(t *testing.T, bs []*cb.Block) {
			bs[bad] = f.next(t, bs[bad-1], "tx-4", f.user)
		}},
		{name: "tampered signature", height: bad, spoil: func(t *testing.T, bs []*cb.Block) {
			_, md, err := blocksign.OrdererMetadata(bs[bad])
			if err != nil {
				t.Fatal(err)
			}
			md.Signatures[0].Signature[10] ^= 1
			bs[bad].Metadata.Metadata[cb.BlockMetadataIndex_SIGNATURES], _ = proto.Marshal(md)
		}},
		{name: "broken chain", height: bad, spoil: func(t *testing.T, bs []*cb.Block) {
			// A well-signed block that follows another block 3.
			other := f.next(t, bs[bad-2], "forked", f.orderer)
			bs[bad] = f.next(t, other, "tx-4", f.orderer)
		}},
		{name: "wrong last hash", height: n, spoil: func(t *testing.T, bs []*cb.Block) {
			// Every block valid, but the chain ends elsewhere than asked.
			bs[n] = f.next(t, bs[n-1], "other tip", f.orderer)
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			spoilt := clone(f.blocks)
			tc.spoil(t, spoilt)
			badSrv := serve(t, spoilt)
			goodSrv := serve(t, f.blocks)
			addrs := []string{badSrv.addr}
			var mu sync.Mutex
			r := newReplicator(t, f, func() []string { mu.Lock(); defer mu.Unlock(); return addrs })
			l := &ledger{blocks: []*cb.Block{f.blocks[0]}}
			want := block.HeaderHash(f.blocks[n].Header)

			ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
			err := r.Pull(ctx, l, n, want)
			cancel()
			if !errors.Is(err, context.DeadlineExceeded) {
				t.Fatalf("Pull from the bad orderer alone: %v", err)
			}
			if l.Height() != tc.height {
				t.Fatalf("height %d after the bad orderer, want %d", l.Height(), tc.height)
			}
			if badSrv.streams.Load() < 2 {
				t.Errorf("bad orderer served %d streams; the replicator should retry", badSrv.streams.Load())
			}

			mu.Lock()
			addrs = []string{badSrv.addr, goodSrv.addr}
			mu.Unlock()
			ctx, cancel = context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			if err := r.Pull(ctx, l, n, want); err != nil {
				t.Fatalf("Pull with a good orderer: %v", err)
			}
			sameBlocks(t, l.blocks, f.blocks)
		})
	}
}

// TestPullFromEmptyLedger onboards: block 0 onward into an empty ledger,
// ending at the expected hash.
func TestPullFromEmptyLedger(t *testing.T) {
	f := newFixture(t, 5)
	srv := serve(t, f.blocks)
	r := newReplicator(t, f, func() []string { return []string{"127.0.0.1:1", srv.addr} })
	l := &ledger{}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := r.Pull(ctx, l, 4, f.blocks[5].Header.PreviousHash); err != nil {
		t.Fatal(err)
	}
	sameBlocks(t, l.blocks, f.blocks[:5])
}

// TestFollow pulls blocks as they appear and switches away from a silent
// orderer.
func TestFollow(t *testing.T) {
	f := newFixture(t, 5)
	stale := serve(t, f.blocks[:2]) // knows only blocks 0 and 1
	srv := serve(t, f.blocks)
	r := newReplicator(t, f, func() []string { return []string{stale.addr, srv.addr} })
	l := &ledger{blocks: []*cb.Block{f.blocks[0]}}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.Follow(ctx, l) }()
	deadline := time.Now().Add(10 * time.Second)
	for l.Height() < 6 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Fatalf("Follow: %v", err)
	}
	sameBlocks(t, l.blocks, f.blocks)
}
