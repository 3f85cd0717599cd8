package deliver_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"maps"
	"math"
	"math/big"
	"net"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/cairn-ledger/cairn/internal/block"
	"github.com/cairn-ledger/cairn/internal/comm"
	"github.com/cairn-ledger/cairn/internal/envelope"
	"github.com/cairn-ledger/cairn/internal/policy"
	"github.com/cairn-ledger/cairn/peer/internal/deliver"
	"github.com/hyperledger/fabric-gateway/pkg/client"
	"github.com/hyperledger/fabric-gateway/pkg/identity"
	"github.com/hyperledger/fabric-protos-go-apiv2/common"
	"github.com/hyperledger/fabric-protos-go-apiv2/msp"
	ab "github.com/hyperledger/fabric-protos-go-apiv2/orderer"
	"github.com/hyperledger/fabric-protos-go-apiv2/peer"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"
)

type signer struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
}

func (s *signer) Serialize() []byte {
	raw, _ := proto.Marshal(&msp.SerializedIdentity{Mspid: "Org1MSP", IdBytes: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: s.cert.Raw})})
	return raw
}

func (s *signer) Sign(msg []byte) ([]byte, error) {
	d := sha256.Sum256(msg)
	return ecdsa.SignASN1(rand.Reader, s.key, d[:])
}

type fakeLedger struct {
	mu      sync.Mutex
	blocks  []*common.Block
	changed chan struct{}
	reads   map[uint64]int // Block calls by block number
}

func (l *fakeLedger) append(b *common.Block) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.blocks = append(l.blocks, b)
	close(l.changed)
	l.changed = make(chan struct{})
}

func (l *fakeLedger) Height() uint64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	return uint64(len(l.blocks))
}

func (l *fakeLedger) Block(n uint64) (*common.Block, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if n >= uint64(len(l.blocks)) {
		return nil, fmt.Errorf("no block %d", n)
	}
	if l.reads == nil {
		l.reads = map[uint64]int{}
	}
	l.reads[n]++
	return l.blocks[n], nil
}

func (l *fakeLedger) Wait(ctx context.Context, n uint64) error {
	for {
		l.mu.Lock()
		h, ch := uint64(len(l.blocks)), l.changed
		l.mu.Unlock()
		if h > n {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-ch:
		}
	}
}

type fakeChannels struct {
	ledger *fakeLedger
	mu     sync.Mutex
	deny   bool
	calls  []string
	signed []policy.SignedData
}

func (c *fakeChannels) Ledger(ch string) (deliver.Ledger, error) {
	if ch != "mychannel" {
		return nil, errors.New("channel not found")
	}
	return c.ledger, nil
}

func (c *fakeChannels) CheckACL(ch, resource string, signed []policy.SignedData) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.calls = append(c.calls, resource)
	c.signed = signed
	if c.deny {
		return errors.New("policy not satisfied")
	}
	return nil
}

func (c *fakeChannels) setDeny(d bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.deny = d
}

func (c *fakeChannels) lastCall() (string, []policy.SignedData) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.calls) == 0 {
		return "", nil
	}
	return c.calls[len(c.calls)-1], c.signed
}

type harness struct {
	ledger   *fakeLedger
	channels *fakeChannels
	client   peer.DeliverClient
	conn     *grpc.ClientConn
	signer   *signer
	txIDs    []string // transactions of block 1
}

func newKey(t *testing.T) *ecdsa.PrivateKey {
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func certFor(t *testing.T, key *ecdsa.PrivateKey, parent *x509.Certificate, parentKey *ecdsa.PrivateKey, cn string, ca, server bool) *x509.Certificate {
	t.Helper()
	serial, _ := rand.Int(rand.Reader, big.NewInt(1<<62))
	tmpl := &x509.Certificate{
		SerialNumber: serial, Subject: pkix.Name{CommonName: cn},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign, IsCA: ca, BasicConstraintsValid: true,
	}
	if server {
		tmpl.IPAddresses = []net.IP{net.ParseIP("127.0.0.1")}
		tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}
	}
	if parent == nil {
		parent, parentKey = tmpl, key
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, &key.PublicKey, parentKey)
	if err != nil {
		t.Fatal(err)
	}
	c, _ := x509.ParseCertificate(der)
	return c
}

// endorsedTx builds a signed endorser transaction, with a chaincode event if
// eventName is set.
func endorsedTx(t *testing.T, s *signer, eventName string) (*common.Envelope, string) {
	t.Helper()
	prop, txID, err := envelope.NewProposal("mychannel", "basic", [][]byte{[]byte("fn")}, nil, s.Serialize())
	if err != nil {
		t.Fatal(err)
	}
	sp, err := envelope.SignProposal(prop, s)
	if err != nil {
		t.Fatal(err)
	}
	p, err := envelope.UnpackProposal(sp)
	if err != nil {
		t.Fatal(err)
	}
	var ev *peer.ChaincodeEvent
	if eventName != "" {
		ev = &peer.ChaincodeEvent{ChaincodeId: "basic", TxId: txID, EventName: eventName, Payload: []byte("secret payload")}
	}
	pr, err := envelope.Endorse(p, s, &peer.Response{Status: 200}, nil, ev, &peer.ChaincodeID{Name: "basic"})
	if err != nil {
		t.Fatal(err)
	}
	env, err := envelope.NewTransaction(p, []*peer.ProposalResponse{pr})
	if err != nil {
		t.Fatal(err)
	}
	env.Signature, _ = s.Sign(env.Payload)
	return env, txID
}

func marshal(m proto.Message) []byte {
	b, _ := proto.Marshal(m)
	return b
}

// newHarness serves a ledger of three blocks: 0 (empty), 1 (a valid
// transaction with an event and an MVCC-invalid one without), 2 (one valid
// transaction).
func newHarness(t *testing.T) *harness {
	t.Helper()
	caKey := newKey(t)
	caCert := certFor(t, caKey, nil, nil, "ca", true, false)
	srvKey := newKey(t)
	srvCert := certFor(t, srvKey, caCert, caKey, "peer", false, true)
	userKey := newKey(t)
	s := &signer{cert: certFor(t, userKey, caCert, caKey, "User1", false, false), key: userKey}

	ledger := &fakeLedger{changed: make(chan struct{})}
	ledger.append(block.New(0, nil, nil))
	tx1, id1 := endorsedTx(t, s, "created")
	tx2, id2 := endorsedTx(t, s, "")
	b1 := block.New(1, block.HeaderHash(ledger.blocks[0].Header), [][]byte{marshal(tx1), marshal(tx2)})
	block.SetTxFilter(b1, []byte{byte(peer.TxValidationCode_VALID), byte(peer.TxValidationCode_MVCC_READ_CONFLICT)})
	ledger.append(b1)
	tx3, _ := endorsedTx(t, s, "")
	b2 := block.New(2, block.HeaderHash(b1.Header), [][]byte{marshal(tx3)})
	block.SetTxFilter(b2, []byte{0})
	ledger.append(b2)

	channels := &fakeChannels{ledger: ledger}
	srv := deliver.New(deliver.Config{Channels: channels})
	gs, err := comm.NewGRPCServer(&tls.Config{
		Certificates: []tls.Certificate{{Certificate: [][]byte{srvCert.Raw}, PrivateKey: srvKey}},
		MinVersion:   tls.VersionTLS12,
	})
	if err != nil {
		t.Fatal(err)
	}
	peer.RegisterDeliverServer(gs, srv)
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = gs.Serve(lis)
	}()
	pool := x509.NewCertPool()
	pool.AddCert(caCert)
	conn, err := comm.Dial(lis.Addr().String(), &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		conn.Close()
		gs.Stop()
		<-done
	})
	return &harness{ledger: ledger, channels: channels, client: peer.NewDeliverClient(conn), conn: conn, signer: s, txIDs: []string{id1, id2}}
}

func specified(n uint64) *ab.SeekPosition {
	return &ab.SeekPosition{Type: &ab.SeekPosition_Specified{Specified: &ab.SeekSpecified{Number: n}}}
}

var (
	oldest = &ab.SeekPosition{Type: &ab.SeekPosition_Oldest{Oldest: &ab.SeekOldest{}}}
	newest = &ab.SeekPosition{Type: &ab.SeekPosition_Newest{Newest: &ab.SeekNewest{}}}
)

func (h *harness) seekEnvelope(t *testing.T, channel string, start, stop *ab.SeekPosition, behavior ab.SeekInfo_SeekBehavior) *common.Envelope {
	t.Helper()
	env, err := envelope.NewSignedEnvelope(common.HeaderType_DELIVER_SEEK_INFO, channel, h.signer, &ab.SeekInfo{Start: start, Stop: stop, Behavior: behavior})
	if err != nil {
		t.Fatal(err)
	}
	return env
}

type openFunc func(ctx context.Context, opts ...grpc.CallOption) (grpc.BidiStreamingClient[common.Envelope, peer.DeliverResponse], error)

// seek sends one request and collects responses up to and including the status.
func seek(t *testing.T, open openFunc, env *common.Envelope) ([]*peer.DeliverResponse, common.Status) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	stream, err := open(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := stream.Send(env); err != nil {
		t.Fatal(err)
	}
	var got []*peer.DeliverResponse
	for {
		resp, err := stream.Recv()
		if err != nil {
			t.Fatalf("recv: %v", err)
		}
		if st, ok := resp.Type.(*peer.DeliverResponse_Status); ok {
			return got, st.Status
		}
		got = append(got, resp)
	}
}

func blockNumbers(t *testing.T, resps []*peer.DeliverResponse) []uint64 {
	t.Helper()
	var out []uint64
	for _, r := range resps {
		switch v := r.Type.(type) {
		case *peer.DeliverResponse_Block:
			out = append(out, v.Block.Header.Number)
		case *peer.DeliverResponse_FilteredBlock:
			out = append(out, v.FilteredBlock.Number)
		case *peer.DeliverResponse_BlockAndPrivateData:
			out = append(out, v.BlockAndPrivateData.Block.Header.Number)
		default:
			t.Fatalf("unexpected response %T", v)
		}
	}
	return out
}

func TestSeekVariants(t *testing.T) {
	h := newHarness(t)
	tests := []struct {
		name        string
		start, stop *ab.SeekPosition
		behavior    ab.SeekInfo_SeekBehavior
		want        []uint64
		status      common.Status
	}{
		{"oldest to newest", oldest, newest, ab.SeekInfo_BLOCK_UNTIL_READY, []uint64{0, 1, 2}, common.Status_SUCCESS},
		{"newest only", newest, newest, ab.SeekInfo_BLOCK_UNTIL_READY, []uint64{2}, common.Status_SUCCESS},
		{"specified range", specified(1), specified(2), ab.SeekInfo_BLOCK_UNTIL_READY, []uint64{1, 2}, common.Status_SUCCESS},
		{"oldest stop", specified(1), oldest, ab.SeekInfo_BLOCK_UNTIL_READY, []uint64{1}, common.Status_SUCCESS},
		{"past the end, fail if not ready", specified(5), specified(5), ab.SeekInfo_FAIL_IF_NOT_READY, nil, common.Status_NOT_FOUND},
		{"max stop, fail if not ready", specified(1), specified(math.MaxUint64), ab.SeekInfo_FAIL_IF_NOT_READY, []uint64{1, 2}, common.Status_NOT_FOUND},
		{"start after stop", specified(2), specified(1), ab.SeekInfo_BLOCK_UNTIL_READY, nil, common.Status_BAD_REQUEST},
		{"missing stop", specified(0), nil, ab.SeekInfo_BLOCK_UNTIL_READY, nil, common.Status_BAD_REQUEST},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			resps, st := seek(t, h.client.Deliver, h.seekEnvelope(t, "mychannel", tc.start, tc.stop, tc.behavior))
			if st != tc.status {
				t.Fatalf("status %v, want %v", st, tc.status)
			}
			if got := blockNumbers(t, resps); fmt.Sprint(got) != fmt.Sprint(tc.want) {
				t.Fatalf("blocks %v, want %v", got, tc.want)
			}
		})
	}
}

func TestBlockUntilReadyWaitsForCommit(t *testing.T) {
	h := newHarness(t)
	go func() {
		time.Sleep(100 * time.Millisecond)
		b := block.New(3, nil, nil)
		h.ledger.append(b)
	}()
	resps, st := seek(t, h.client.Deliver, h.seekEnvelope(t, "mychannel", specified(3), specified(3), ab.SeekInfo_BLOCK_UNTIL_READY))
	if st != common.Status_SUCCESS || fmt.Sprint(blockNumbers(t, resps)) != "[3]" {
		t.Fatalf("status %v blocks %v", st, blockNumbers(t, resps))
	}
}

func TestRejections(t *testing.T) {
	h := newHarness(t)
	_, st := seek(t, h.client.Deliver, h.seekEnvelope(t, "otherchannel", oldest, newest, ab.SeekInfo_BLOCK_UNTIL_READY))
	if st != common.Status_NOT_FOUND {
		t.Errorf("unknown channel: %v", st)
	}
	_, st = seek(t, h.client.Deliver, &common.Envelope{Payload: []byte{0xff, 0xff}})
	if st != common.Status_BAD_REQUEST {
		t.Errorf("malformed: %v", st)
	}
	stale := &common.Envelope{Payload: marshal(&common.Payload{
		Header: &common.Header{ChannelHeader: marshal(&common.ChannelHeader{
			ChannelId: "mychannel", Type: int32(common.HeaderType_DELIVER_SEEK_INFO),
			Timestamp: timestamppb.New(time.Now().Add(-time.Hour)),
		})},
		Data: marshal(&ab.SeekInfo{Start: oldest, Stop: newest}),
	})}
	_, st = seek(t, h.client.Deliver, stale)
	if st != common.Status_BAD_REQUEST {
		t.Errorf("stale timestamp: %v", st)
	}

	h.channels.setDeny(true)
	env := h.seekEnvelope(t, "mychannel", oldest, newest, ab.SeekInfo_BLOCK_UNTIL_READY)
	_, st = seek(t, h.client.Deliver, env)
	if st != common.Status_FORBIDDEN {
		t.Errorf("denied: %v", st)
	}
	res, signed := h.channels.lastCall()
	if res != deliver.ResourceBlock || len(signed) != 1 || string(signed[0].Data) != string(env.Payload) ||
		string(signed[0].Signature) != string(env.Signature) || string(signed[0].Identity) != string(h.signer.Serialize()) {
		t.Errorf("ACL check %q with %+v", res, signed)
	}
	_, st = seek(t, h.client.DeliverFiltered, h.seekEnvelope(t, "mychannel", oldest, newest, ab.SeekInfo_BLOCK_UNTIL_READY))
	if res, _ := h.channels.lastCall(); st != common.Status_FORBIDDEN || res != deliver.ResourceFilteredBlock {
		t.Errorf("filtered denied: %v, resource %q", st, res)
	}
}

func TestFilteredBlocks(t *testing.T) {
	h := newHarness(t)
	resps, st := seek(t, h.client.DeliverFiltered, h.seekEnvelope(t, "mychannel", specified(1), specified(1), ab.SeekInfo_BLOCK_UNTIL_READY))
	if st != common.Status_SUCCESS || len(resps) != 1 {
		t.Fatalf("status %v, %d responses", st, len(resps))
	}
	fb := resps[0].GetFilteredBlock()
	want := &peer.FilteredBlock{
		ChannelId: "mychannel",
		Number:    1,
		FilteredTransactions: []*peer.FilteredTransaction{
			{
				Txid: h.txIDs[0], Type: common.HeaderType_ENDORSER_TRANSACTION, TxValidationCode: peer.TxValidationCode_VALID,
				Data: &peer.FilteredTransaction_TransactionActions{TransactionActions: &peer.FilteredTransactionActions{
					ChaincodeActions: []*peer.FilteredChaincodeAction{{ChaincodeEvent: &peer.ChaincodeEvent{TxId: h.txIDs[0], ChaincodeId: "basic", EventName: "created"}}},
				}},
			},
			{
				Txid: h.txIDs[1], Type: common.HeaderType_ENDORSER_TRANSACTION, TxValidationCode: peer.TxValidationCode_MVCC_READ_CONFLICT,
				Data: &peer.FilteredTransaction_TransactionActions{TransactionActions: &peer.FilteredTransactionActions{}},
			},
		},
	}
	if !proto.Equal(fb, want) {
		t.Fatalf("filtered block\n got %v\nwant %v", fb, want)
	}
}

func TestDeliverWithPrivateData(t *testing.T) {
	h := newHarness(t)
	resps, st := seek(t, h.client.DeliverWithPrivateData, h.seekEnvelope(t, "mychannel", specified(2), specified(2), ab.SeekInfo_BLOCK_UNTIL_READY))
	if st != common.Status_SUCCESS || len(resps) != 1 {
		t.Fatalf("status %v, %d responses", st, len(resps))
	}
	bp := resps[0].GetBlockAndPrivateData()
	if bp == nil || bp.Block.Header.Number != 2 || len(bp.PrivateDataMap) != 0 {
		t.Fatalf("response %v", resps[0])
	}
}

// TestFabricGatewayClientBlockEvents drives the service with the official
// client's block event APIs, which speak Deliver to the peer directly.
func TestFabricGatewayClientBlockEvents(t *testing.T) {
	h := newHarness(t)
	id, err := identity.NewX509Identity("Org1MSP", h.signer.cert)
	if err != nil {
		t.Fatal(err)
	}
	sign, err := identity.NewPrivateKeySign(h.signer.key)
	if err != nil {
		t.Fatal(err)
	}
	gw, err := client.Connect(id, client.WithSign(sign), client.WithClientConnection(h.conn))
	if err != nil {
		t.Fatal(err)
	}
	defer gw.Close()
	network := gw.GetNetwork("mychannel")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()

	blocks, err := network.BlockEvents(ctx, client.WithStartBlock(1))
	if err != nil {
		t.Fatal(err)
	}
	for want := uint64(1); want <= 2; want++ {
		select {
		case b := <-blocks:
			if b.GetHeader().GetNumber() != want {
				t.Fatalf("block %d, want %d", b.GetHeader().GetNumber(), want)
			}
		case <-time.After(5 * time.Second):
			t.Fatal("no block")
		}
	}

	filtered, err := network.FilteredBlockEvents(ctx, client.WithStartBlock(1))
	if err != nil {
		t.Fatal(err)
	}
	select {
	case fb := <-filtered:
		if fb.Number != 1 || len(fb.FilteredTransactions) != 2 || fb.FilteredTransactions[0].Txid != h.txIDs[0] {
			t.Fatalf("filtered block %v", fb)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no filtered block")
	}
	// A block committed later reaches the open stream.
	h.ledger.append(block.New(3, nil, nil))
	select {
	case fb := <-filtered:
		if fb.Number != 2 {
			t.Fatalf("filtered block %d, want 2", fb.Number)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no filtered block 2")
	}
	select {
	case fb := <-filtered:
		if fb.Number != 3 {
			t.Fatalf("filtered block %d, want 3", fb.Number)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no filtered block 3")
	}
}

func FuzzFilterBlock(f *testing.F) {
	b := block.New(1, nil, [][]byte{{0x0a, 0x00}, {0xff}})
	block.SetTxFilter(b, []byte{0})
	f.Add(marshal(b))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, raw []byte) {
		b := &common.Block{}
		if proto.Unmarshal(raw, b) != nil {
			return
		}
		_, _ = deliver.FilterBlock(b)
	})
}

// TestFilteredStreamsShareEachBlock: filtered streams following the chain
// read and filter each block once between them and get the same filtered
// blocks; each stream still has its access checked again at a config block.
// Full-block streams do not share the filtered responses.
func TestFilteredStreamsShareEachBlock(t *testing.T) {
	h := newHarness(t)
	cfgEnv, err := envelope.NewSignedEnvelope(common.HeaderType_CONFIG, "mychannel", h.signer, &common.ConfigEnvelope{})
	if err != nil {
		t.Fatal(err)
	}
	b3 := block.New(3, block.HeaderHash(h.ledger.blocks[2].Header), [][]byte{marshal(cfgEnv)})
	block.SetTxFilter(b3, []byte{0})
	h.ledger.append(b3)
	aclCalls := func() int {
		h.channels.mu.Lock()
		defer h.channels.mu.Unlock()
		return len(h.channels.calls)
	}

	var first []*peer.DeliverResponse
	for i := range 3 {
		before := aclCalls()
		resps, st := seek(t, h.client.DeliverFiltered, h.seekEnvelope(t, "mychannel", oldest, specified(3), ab.SeekInfo_BLOCK_UNTIL_READY))
		if st != common.Status_SUCCESS || !slices.Equal(blockNumbers(t, resps), []uint64{0, 1, 2, 3}) {
			t.Fatalf("stream %d: status %v, blocks %v", i, st, blockNumbers(t, resps))
		}
		if n := aclCalls() - before; n != 2 {
			t.Errorf("stream %d: %d access checks, want 2 (the request and the config block)", i, n)
		}
		if i == 0 {
			first = resps
			continue
		}
		for j := range resps {
			if !proto.Equal(resps[j], first[j]) {
				t.Errorf("stream %d, block %d: %v, first stream got %v", i, j, resps[j], first[j])
			}
		}
	}
	if got := h.ledger.reads; !maps.Equal(got, map[uint64]int{0: 1, 1: 1, 2: 1, 3: 1}) {
		t.Errorf("block reads %v, want each block read once", got)
	}
	if first[3].GetFilteredBlock().GetFilteredTransactions()[0].GetType() != common.HeaderType_CONFIG {
		t.Errorf("block 3 filtered as %v", first[3])
	}

	resps, st := seek(t, h.client.Deliver, h.seekEnvelope(t, "mychannel", oldest, specified(3), ab.SeekInfo_BLOCK_UNTIL_READY))
	if st != common.Status_SUCCESS || len(resps) != 4 || resps[1].GetBlock() == nil {
		t.Fatalf("full blocks: status %v, %d responses, block 1 %v", st, len(resps), resps[1])
	}
	if got := h.ledger.reads; !maps.Equal(got, map[uint64]int{0: 2, 1: 2, 2: 2, 3: 2}) {
		t.Errorf("block reads after a full-block stream %v, want 2 each", got)
	}
}
