package registrar

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
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
	cb "github.com/hyperledger/fabric-protos-go-apiv2/common"
	ab "github.com/hyperledger/fabric-protos-go-apiv2/orderer"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/proto"
)

// source is a Deliver service serving fixed blocks.
type source struct {
	ab.UnimplementedAtomicBroadcastServer
	h      *deliver.Handler
	blocks []*cb.Block
}

func (s *source) Deliver(stream ab.AtomicBroadcast_DeliverServer) error { return s.h.Handle(stream) }
func (s *source) Channel(string) (deliver.Channel, bool)                { return s, true }
func (s *source) Evaluate(string, []policy.SignedData) error            { return nil }
func (s *source) Height() uint64                                        { return uint64(len(s.blocks)) }
func (s *source) Block(n uint64) (*cb.Block, error)                     { return s.blocks[n], nil }
func (s *source) Wait(ctx context.Context, _ uint64) error              { <-ctx.Done(); return ctx.Err() }

// TestOnboardWithLaterConfigBlock joins with config block N: the channel is
// "onboarding" while blocks 0..N-1 are pulled, then "active" with the same
// blocks; the node (not a consenter) is a follower.
func TestOnboardWithLaterConfigBlock(t *testing.T) {
	dir := t.TempDir()
	nc := netconfig.Default()
	nc.OrdererOrgs[0].Orderers[0].Port = 7050
	nc.PeerOrgs[0].Peers[0].Port = 7051
	if err := cryptogen.Generate(nc, dir); err != nil {
		t.Fatal(err)
	}
	genesis, err := channelconfig.Genesis(nc, dir)
	if err != nil {
		t.Fatal(err)
	}
	l := cryptogen.Layout{Root: dir}
	signer, err := crypto.LoadSigningIdentity("OrdererMSP", l.NodeMSPDir(false, "example.com", "orderer0.example.com"))
	if err != nil {
		t.Fatal(err)
	}
	user, err := crypto.LoadSigningIdentity("Org1MSP", l.UserMSPDir(true, "org1.example.com", "User1"))
	if err != nil {
		t.Fatal(err)
	}
	// Blocks 1..4 carry transactions; block 5 repeats the genesis config.
	blocks := []*cb.Block{genesis}
	for i := 1; i <= 5; i++ {
		data := genesis.Data.Data
		if i < 5 {
			env, err := envelope.NewSignedEnvelope(cb.HeaderType_ENDORSER_TRANSACTION, "mychannel", user, &cb.ConfigValue{Value: fmt.Appendf(nil, "tx-%d", i)})
			if err != nil {
				t.Fatal(err)
			}
			raw, _ := proto.Marshal(env)
			data = [][]byte{raw}
		}
		b := block.New(uint64(i), block.HeaderHash(blocks[i-1].Header), data)
		lastConfig := uint64(0)
		if i == 5 {
			lastConfig = 5
		}
		if err := blocksign.Sign(b, signer, lastConfig, nil, nil); err != nil {
			t.Fatal(err)
		}
		blocks = append(blocks, b)
	}

	src := &source{blocks: blocks[:5]}
	src.h = deliver.New(src, nil, nil, 0)
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	g := grpc.NewServer()
	ab.RegisterAtomicBroadcastServer(g, src)
	served := make(chan struct{})
	go func() { defer close(served); g.Serve(lis) }()
	defer func() { g.Stop(); <-served }()

	// A TLS certificate of no consenter: this node follows.
	tlsCert, err := os.ReadFile(l.UserTLSCertPath(false, "example.com", "Admin"))
	if err != nil {
		t.Fatal(err)
	}
	r, err := New(Config{
		DataDir: t.TempDir(),
		TLSCert: tlsCert,
		Signer:  signer,
		NoSync:  true,
		Replicate: ReplicateConfig{
			MinBackoff: 10 * time.Millisecond,
			Dial: func(string, [][]byte) (*grpc.ClientConn, error) {
				return grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
			},
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := r.Start(); err != nil {
		t.Fatal(err)
	}
	defer r.Stop()

	info, err := r.Join(context.Background(), blocks[5])
	if err != nil {
		t.Fatal(err)
	}
	if info.Status != StatusOnboarding && info.Status != StatusActive {
		t.Fatalf("status after join %q", info.Status)
	}
	if info.ConsensusRelation != RelationFollower {
		t.Errorf("relation %q", info.ConsensusRelation)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		info, err = r.Info("mychannel")
		if err != nil {
			t.Fatal(err)
		}
		if info.Status == StatusActive {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("still %q at height %d", info.Status, info.Height)
		}
		time.Sleep(10 * time.Millisecond)
	}
	ch, ok := r.Channel("mychannel")
	if !ok || ch.Height() != 6 {
		t.Fatalf("active channel missing or short: %v", ok)
	}
	for i, want := range blocks {
		got, err := ch.Block(uint64(i))
		if err != nil {
			t.Fatal(err)
		}
		g, _ := proto.Marshal(got)
		w, _ := proto.Marshal(want)
		if !bytes.Equal(g, w) {
			t.Fatalf("block %d differs", i)
		}
	}
}
