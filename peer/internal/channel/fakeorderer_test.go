package channel

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"log/slog"
	"net"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	cb "github.com/hyperledger/fabric-protos-go-apiv2/common"
	ab "github.com/hyperledger/fabric-protos-go-apiv2/orderer"
	pb "github.com/hyperledger/fabric-protos-go-apiv2/peer"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/proto"

	"github.com/cairn-ledger/cairn/internal/block"
	"github.com/cairn-ledger/cairn/internal/channelconfig"
	"github.com/cairn-ledger/cairn/internal/comm"
	"github.com/cairn-ledger/cairn/internal/crypto"
	"github.com/cairn-ledger/cairn/internal/cryptogen"
	"github.com/cairn-ledger/cairn/internal/envelope"
	"github.com/cairn-ledger/cairn/internal/netconfig"
	"github.com/cairn-ledger/cairn/peer/internal/puller"
	"github.com/cairn-ledger/cairn/peer/internal/validator"
)

// fakeOrderer is an in-test ordering node: it answers Deliver with blocks
// made by serve for the requested start number, over TLS with an orderer
// certificate of the test's crypto material. While closed is set it answers
// SERVICE_UNAVAILABLE instead.
type fakeOrderer struct {
	ab.UnimplementedAtomicBroadcastServer
	// serve returns the block number num, or nil when it has none yet.
	serve  func(num uint64) *cb.Block
	closed atomic.Bool
	served atomic.Int64 // blocks sent
	seeks  atomic.Int64 // Deliver streams opened
}

func (o *fakeOrderer) Deliver(stream ab.AtomicBroadcast_DeliverServer) error {
	o.seeks.Add(1)
	env, err := stream.Recv()
	if err != nil {
		return err
	}
	payload := &cb.Payload{}
	seek := &ab.SeekInfo{}
	if err := proto.Unmarshal(env.Payload, payload); err != nil {
		return err
	}
	if err := proto.Unmarshal(payload.Data, seek); err != nil {
		return err
	}
	if o.closed.Load() {
		return stream.Send(&ab.DeliverResponse{Type: &ab.DeliverResponse_Status{Status: cb.Status_SERVICE_UNAVAILABLE}})
	}
	for num := seek.GetStart().GetSpecified().GetNumber(); ; num++ {
		b := o.serve(num)
		if b == nil {
			<-stream.Context().Done() // BLOCK_UNTIL_READY: nothing more to send
			return nil
		}
		if err := stream.Send(&ab.DeliverResponse{Type: &ab.DeliverResponse_Block{Block: b}}); err != nil {
			return err
		}
		o.served.Add(1)
	}
}

// start serves o on lis with the TLS key pair of an orderer node.
func (o *fakeOrderer) start(t *testing.T, lis net.Listener, certFile, keyFile string) {
	t.Helper()
	tlsCfg, err := comm.ServerTLS(certFile, keyFile, nil, false)
	if err != nil {
		t.Fatal(err)
	}
	s, err := comm.NewGRPCServer(tlsCfg)
	if err != nil {
		t.Fatal(err)
	}
	ab.RegisterAtomicBroadcastServer(s, o)
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := s.Serve(lis); err != nil && !errors.Is(err, grpc.ErrServerStopped) {
			t.Errorf("fake orderer: %v", err)
		}
	}()
	t.Cleanup(func() { s.Stop(); <-done })
}

// fakeOrdererEnv is a two-organisation channel whose two orderers are fakes
// on local ports, the chain an honest orderer would deliver, and an Org1 peer
// channel created from the genesis block, not yet running.
type fakeOrdererEnv struct {
	peer    *Channel
	chain   []*cb.Block // blocks 0..n, signed by the orderer identity
	orderer *crypto.SigningIdentity
	peer1   *crypto.SigningIdentity
	bad     *fakeOrderer // orderer0
	honest  *fakeOrderer // orderer1
	logs    syncBuffer   // the peer channel's log
}

// syncBuffer is a bytes.Buffer safe for the logger's goroutines.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

func newFakeOrdererEnv(t *testing.T) *fakeOrdererEnv {
	t.Helper()
	dir := t.TempDir()
	var lis [2]net.Listener
	net1 := netconfig.Default()
	net1.OrdererOrgs[0].Orderers = nil
	for i := range lis {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		lis[i] = l
		net1.OrdererOrgs[0].Orderers = append(net1.OrdererOrgs[0].Orderers, netconfig.Node{
			Name: "orderer" + strconv.Itoa(i), Host: "127.0.0.1", Port: l.Addr().(*net.TCPAddr).Port,
		})
	}
	net1.PeerOrgs[0].Peers[0].Port = 7051
	net1.PeerOrgs = append(net1.PeerOrgs, netconfig.PeerOrg{
		Name: "Org2", MSPID: "Org2MSP", Domain: org2Domain,
		Peers: []netconfig.Node{{Name: "peer0", Host: "127.0.0.1", Port: 9051}},
		Users: []string{"User1"},
	})
	crypt := dir + "/crypto"
	if err := cryptogen.Generate(net1, crypt); err != nil {
		t.Fatal(err)
	}
	genesis, err := channelconfig.Genesis(net1, crypt)
	if err != nil {
		t.Fatal(err)
	}
	l := cryptogen.Layout{Root: crypt}
	load := func(mspID, mspDir string) *crypto.SigningIdentity {
		id, err := crypto.LoadSigningIdentity(mspID, mspDir)
		if err != nil {
			t.Fatal(err)
		}
		return id
	}

	// The honest chain: built on a scratch channel through the commit path
	// (define basic, then one write), then re-made as the orderer cuts it.
	scratch, err := Create(Config{Dir: dir + "/scratch", MSPID: "Org1MSP", Validator: validator.New(validator.Config{}), NoSync: true}, genesis)
	if err != nil {
		t.Fatal(err)
	}
	defer scratch.Close()
	e := &commitEnv{
		c:       scratch,
		peer1:   load("Org1MSP", l.NodeMSPDir(true, org1Domain, "peer0."+org1Domain)),
		peer2:   load("Org2MSP", l.NodeMSPDir(true, org2Domain, "peer0."+org2Domain)),
		user1:   load("Org1MSP", l.UserMSPDir(true, org1Domain, "User1")),
		orderer: load("OrdererMSP", l.NodeMSPDir(false, "example.com", "orderer0.example.com")),
	}
	e.defineBasic(t)
	w, _ := e.tx(t, txSpec{simulate: put("fake-orderer", "honest")})
	e.mustCommit(t, [][]byte{w}, VALID)
	env := &fakeOrdererEnv{orderer: e.orderer, peer1: e.peer1, chain: []*cb.Block{genesis}}
	for n := uint64(1); n < scratch.Ledger().Height(); n++ {
		stored, err := scratch.Ledger().Block(n)
		if err != nil {
			t.Fatal(err)
		}
		b := block.New(n, block.HeaderHash(env.chain[n-1].Header), stored.Data.Data)
		signBlock(t, b, e.orderer)
		env.chain = append(env.chain, b)
	}

	// The peer presents its TLS certificate to orderers, as peer.New sets up.
	clientCert, err := tls.LoadX509KeyPair(l.NodeTLSCertPath(true, org1Domain, "peer0."+org1Domain), l.NodeTLSKeyPath(true, org1Domain, "peer0."+org1Domain))
	if err != nil {
		t.Fatal(err)
	}
	env.peer, err = Create(Config{
		Dir: dir + "/peer", MSPID: "Org1MSP", Validator: validator.New(validator.Config{}), NoSync: true,
		Logger: slog.New(slog.NewTextHandler(&env.logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
		Puller: puller.Config{Signer: e.peer1, ClientCert: &clientCert, MinBackoff: 5 * time.Millisecond, MaxBackoff: 20 * time.Millisecond},
	}, genesis)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { env.peer.Close() })

	env.honest = &fakeOrderer{serve: env.honestBlock}
	env.honest.closed.Store(true)
	env.bad = &fakeOrderer{serve: env.honestBlock}
	for i, o := range []*fakeOrderer{env.bad, env.honest} {
		full := "orderer" + strconv.Itoa(i) + ".example.com"
		o.start(t, lis[i], l.NodeTLSCertPath(false, "example.com", full), l.NodeTLSKeyPath(false, "example.com", full))
	}
	return env
}

// honestBlock is block num of the honest chain, nil past its end.
func (e *fakeOrdererEnv) honestBlock(num uint64) *cb.Block {
	if num >= uint64(len(e.chain)) {
		return nil
	}
	return proto.Clone(e.chain[num]).(*cb.Block)
}

// signBlock sets b's SIGNATURES metadata as an orderer does: one signature by
// s over the metadata value, the signature header and the block header.
func signBlock(t *testing.T, b *cb.Block, s envelope.Signer) {
	t.Helper()
	nonce, err := envelope.NewNonce()
	if err != nil {
		t.Fatal(err)
	}
	md := &cb.Metadata{Value: marshal(t, &cb.OrdererBlockMetadata{LastConfig: &cb.LastConfig{Index: 0}})}
	sh := marshal(t, &cb.SignatureHeader{Creator: s.Serialize(), Nonce: nonce})
	sig, err := s.Sign(append(append(append([]byte{}, md.Value...), sh...), block.HeaderBytes(b.Header)...))
	if err != nil {
		t.Fatal(err)
	}
	md.Signatures = []*cb.MetadataSignature{{SignatureHeader: sh, Signature: sig}}
	b.Metadata.Metadata[cb.BlockMetadataIndex_SIGNATURES] = marshal(t, md)
}

// TestPullerRefusesForgedBlocksAndFailsOver runs a channel whose puller dials
// two fake orderers over TLS. The first serves a forged version of every
// block; the second is honest but unavailable at first. A forged block must
// never be committed: the height stays at the genesis block while the first
// orderer is the only one serving. Once the honest orderer opens, the puller
// fails over to it and commits its chain, VALID.
func TestPullerRefusesForgedBlocksAndFailsOver(t *testing.T) {
	tests := []struct {
		name   string
		forge  func(t *testing.T, e *fakeOrdererEnv, b *cb.Block)
		reason string // what the puller logs
	}{
		{"signed by a peer", func(t *testing.T, e *fakeOrdererEnv, b *cb.Block) { signBlock(t, b, e.peer1) }, "signatures"},
		{"broken previous hash", func(t *testing.T, e *fakeOrdererEnv, b *cb.Block) {
			b.Header.PreviousHash = bytes.Repeat([]byte{0xab}, 32)
			signBlock(t, b, e.orderer) // a genuine orderer signature over the broken header
		}, "previous hash"},
		{"tampered data", func(t *testing.T, e *fakeOrdererEnv, b *cb.Block) {
			b.Data.Data[0] = append(b.Data.Data[0], 0) // after the orderer signed the header
		}, "data hash"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newFakeOrdererEnv(t)
			// Forge every block up front, on the test goroutine.
			forged := make([]*cb.Block, len(e.chain))
			for n := 1; n < len(e.chain); n++ {
				forged[n] = e.honestBlock(uint64(n))
				tt.forge(t, e, forged[n])
			}
			e.bad.serve = func(num uint64) *cb.Block {
				if num == 0 || num >= uint64(len(forged)) {
					return nil
				}
				return proto.Clone(forged[num]).(*cb.Block)
			}

			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan error, 1)
			go func() { done <- e.peer.Run(ctx) }()
			defer func() {
				cancel()
				if err := <-done; err != nil {
					t.Errorf("Run: %v", err)
				}
			}()

			// Only the forger serves: its blocks are refused, again and again.
			// Each stream is dropped at its first forged block; the puller
			// reconnects with backoff.
			waitFor(t, 10*time.Second, func() bool { return e.bad.seeks.Load() >= 4 && e.honest.seeks.Load() >= 2 }, "the puller to try both orderers repeatedly")
			if h := e.peer.Ledger().Height(); h != 1 {
				t.Fatalf("height %d after %d forged blocks, want 1 (genesis only)", h, e.bad.served.Load())
			}
			if !strings.Contains(e.logs.String(), tt.reason) {
				t.Errorf("puller logs do not say why the block was refused (%q):\n%s", tt.reason, e.logs.String())
			}

			// The honest orderer opens: the puller fails over and commits its chain.
			e.honest.closed.Store(false)
			want := uint64(len(e.chain))
			waitFor(t, 10*time.Second, func() bool { return e.peer.Ledger().Height() == want }, "the honest chain to commit")
			for n := uint64(1); n < want; n++ {
				got, err := e.peer.Ledger().Block(n)
				if err != nil {
					t.Fatal(err)
				}
				if !bytes.Equal(block.HeaderHash(got.Header), block.HeaderHash(e.chain[n].Header)) {
					t.Fatalf("block %d is not the honest orderer's", n)
				}
				for i, c := range block.TxFilter(got) {
					if pb.TxValidationCode(c) != VALID {
						t.Fatalf("block %d tx %d is %v, want VALID", n, i, pb.TxValidationCode(c))
					}
				}
			}
			if v, _ := (&commitEnv{c: e.peer}).state(t, basic, "fake-orderer"); string(v) != "honest" {
				t.Fatalf("state fake-orderer = %q, want honest", v)
			}
			t.Logf("forged chain refused on %d streams (%d blocks sent); honest chain of %d blocks committed", e.bad.seeks.Load(), e.bad.served.Load(), want)
		})
	}
}

func waitFor(t *testing.T, timeout time.Duration, cond func() bool, what string) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", timeout, what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}
