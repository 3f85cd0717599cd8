package gateway_test

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
	"math/big"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cairn-ledger/cairn/gateway"
	"github.com/cairn-ledger/cairn/internal/block"
	"github.com/cairn-ledger/cairn/internal/comm"
	"github.com/cairn-ledger/cairn/internal/envelope"
	"github.com/cairn-ledger/cairn/internal/policy"
	"github.com/hyperledger/fabric-protos-go-apiv2/common"
	"github.com/hyperledger/fabric-protos-go-apiv2/ledger/rwset"
	"github.com/hyperledger/fabric-protos-go-apiv2/ledger/rwset/kvrwset"
	"github.com/hyperledger/fabric-protos-go-apiv2/msp"
	ab "github.com/hyperledger/fabric-protos-go-apiv2/orderer"
	"github.com/hyperledger/fabric-protos-go-apiv2/peer"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/proto"
)

// testCA issues TLS server certificates for 127.0.0.1 and client identities.
type testCA struct {
	key  *ecdsa.PrivateKey
	cert *x509.Certificate
	pem  []byte
}

func newTestCA(t *testing.T) *testCA {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "test-ca", Organization: []string{"Org1"}},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	return &testCA{key: key, cert: cert, pem: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})}
}

func (ca *testCA) issue(t *testing.T, cn string, server bool) (*x509.Certificate, *ecdsa.PrivateKey) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	serial, _ := rand.Int(rand.Reader, big.NewInt(1<<62))
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: cn},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
	}
	if server {
		tmpl.IPAddresses = []net.IP{net.ParseIP("127.0.0.1")}
		tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	return cert, key
}

func (ca *testCA) serverTLS(t *testing.T) *tls.Config {
	cert, key := ca.issue(t, "server", true)
	return &tls.Config{
		Certificates: []tls.Certificate{{Certificate: [][]byte{cert.Raw}, PrivateKey: key, Leaf: cert}},
		MinVersion:   tls.VersionTLS12,
	}
}

func (ca *testCA) clientTLS() *tls.Config {
	pool := x509.NewCertPool()
	pool.AddCert(ca.cert)
	return &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
}

// serve runs services on a TLS gRPC server on 127.0.0.1:0 until the test ends.
func serve(t *testing.T, tlsCfg *tls.Config, register func(*grpc.Server)) string {
	t.Helper()
	srv, err := comm.NewGRPCServer(tlsCfg)
	if err != nil {
		t.Fatal(err)
	}
	register(srv)
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = srv.Serve(lis)
	}()
	t.Cleanup(func() {
		srv.Stop()
		<-done
	})
	return lis.Addr().String()
}

// signer is an ECDSA signing identity in Fabric's serialized form.
type signer struct {
	mspID string
	cert  *x509.Certificate
	key   *ecdsa.PrivateKey
}

func (s *signer) Serialize() []byte {
	raw, _ := proto.Marshal(&msp.SerializedIdentity{
		Mspid:   s.mspID,
		IdBytes: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: s.cert.Raw}),
	})
	return raw
}

func (s *signer) Sign(msg []byte) ([]byte, error) {
	digest := sha256.Sum256(msg)
	return ecdsa.SignASN1(rand.Reader, s.key, digest[:])
}

// fakeEndorser plays a chaincode whose behaviour is picked by the function name:
//
//	echo <v>          returns v
//	fail <msg>        chaincode error 500 "boom: msg"
//	peerfail          peer error: 500 without payload
//	emit <name> <v>   returns v and emits event name with payload v
//	conflict…         like emit/echo, but the fake orderer commits it as MVCC_READ_CONFLICT
//	write <k>…        writes keys k… of the invoked chaincode's namespace
//	call <cc>         reports (Interest) that it called chaincode cc
//
// down makes every call a peer error (retryable); skew makes its results
// differ from every other endorser's.
type fakeEndorser struct {
	signer envelope.Signer
	mu     sync.Mutex
	calls  int
	down   bool
	skew   bool
}

func (e *fakeEndorser) callCount() int {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.calls
}

func (e *fakeEndorser) ProcessProposal(ctx context.Context, sp *peer.SignedProposal) (*peer.ProposalResponse, error) {
	e.mu.Lock()
	e.calls++
	down, skew := e.down, e.skew
	e.mu.Unlock()
	if down {
		return &peer.ProposalResponse{Response: &peer.Response{Status: 500, Message: "peer is down for maintenance"}}, nil
	}
	p, err := envelope.UnpackProposal(sp)
	if err != nil {
		return &peer.ProposalResponse{Response: &peer.Response{Status: 500, Message: err.Error()}}, nil
	}
	args := p.Input.GetArgs()
	arg := func(i int) []byte {
		if i < len(args) {
			return args[i]
		}
		return nil
	}
	fn := string(arg(0))
	resp := &peer.Response{Status: 200, Payload: arg(1)}
	results := []byte("rwset")
	var event *peer.ChaincodeEvent
	var interest *peer.ChaincodeInterest
	switch strings.TrimPrefix(fn, "conflict") {
	case "fail":
		resp = &peer.Response{Status: 500, Message: "boom: " + string(arg(1))}
	case "peerfail":
		return &peer.ProposalResponse{Response: &peer.Response{Status: 500, Message: "access denied: channel [mychannel] creator org unknown"}}, nil
	case "emit":
		resp = &peer.Response{Status: 200, Payload: arg(2)}
		event = &peer.ChaincodeEvent{ChaincodeId: p.ChaincodeName, TxId: p.TxID(), EventName: string(arg(1)), Payload: arg(2)}
	case "write":
		kv := &kvrwset.KVRWSet{}
		for _, k := range args[1:] {
			kv.Writes = append(kv.Writes, &kvrwset.KVWrite{Key: string(k), Value: []byte("v")})
		}
		rawKV, _ := proto.Marshal(kv)
		results, _ = proto.Marshal(&rwset.TxReadWriteSet{DataModel: rwset.TxReadWriteSet_KV, NsRwset: []*rwset.NsReadWriteSet{{Namespace: p.ChaincodeName, Rwset: rawKV}}})
	case "call":
		interest = &peer.ChaincodeInterest{Chaincodes: []*peer.ChaincodeCall{{Name: p.ChaincodeName}, {Name: string(arg(1))}}}
	}
	if skew {
		resp = &peer.Response{Status: 200, Payload: []byte("skewed")}
	}
	pr, err := envelope.Endorse(p, e.signer, resp, results, event, &peer.ChaincodeID{Name: p.ChaincodeName, Version: "1"})
	if pr != nil {
		pr.Interest = interest
	}
	return pr, err
}

// fakeLedger is an in-memory committed chain.
type fakeLedger struct {
	mu      sync.Mutex
	blocks  []*common.Block
	txs     map[string]txInfo
	changed chan struct{} // closed and replaced on every append
}

type txInfo struct {
	code  peer.TxValidationCode
	block uint64
}

func newFakeLedger() *fakeLedger {
	l := &fakeLedger{txs: map[string]txInfo{}, changed: make(chan struct{})}
	l.append(nil, nil) // genesis stand-in
	return l
}

// append commits a block of envelopes with their validation codes.
func (l *fakeLedger) append(envs []*common.Envelope, codes []peer.TxValidationCode) {
	l.mu.Lock()
	defer l.mu.Unlock()
	data := make([][]byte, len(envs))
	filter := make([]byte, len(envs))
	for i, env := range envs {
		data[i], _ = proto.Marshal(env)
		filter[i] = byte(codes[i])
	}
	var prev []byte
	if n := len(l.blocks); n > 0 {
		prev = block.HeaderHash(l.blocks[n-1].Header)
	}
	b := block.New(uint64(len(l.blocks)), prev, data)
	block.SetTxFilter(b, filter)
	for i, env := range envs {
		if parsed, err := envelope.Parse(env); err == nil {
			if _, dup := l.txs[parsed.ChannelHeader.TxId]; !dup {
				l.txs[parsed.ChannelHeader.TxId] = txInfo{code: codes[i], block: b.Header.Number}
			}
		}
	}
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
		return nil, fmt.Errorf("block %d not committed", n)
	}
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

func (l *fakeLedger) TxValidationCode(txID string) (peer.TxValidationCode, uint64, bool, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	info, ok := l.txs[txID]
	return info.code, info.block, ok, nil
}

func (l *fakeLedger) WaitTxValidationCode(ctx context.Context, txID string) (peer.TxValidationCode, uint64, error) {
	for {
		h := l.Height() // before the look-up: a commit in between ends Wait at once
		if code, n, found, _ := l.TxValidationCode(txID); found {
			return code, n, nil
		}
		if err := l.Wait(ctx, h); err != nil {
			return 0, 0, err
		}
	}
}

// fakeChannels hosts one channel, "mychannel".
type fakeChannels struct {
	ledger    *fakeLedger
	orderers  []string
	rootCerts [][]byte

	mu   sync.Mutex
	deny map[string]bool // resources whose ACL check fails
	acl  []aclCall
}

type aclCall struct {
	channel, resource string
	signed            []policy.SignedData
}

func (c *fakeChannels) Ledger(channelID string) (gateway.Ledger, error) {
	if channelID != "mychannel" {
		return nil, fmt.Errorf("channel %q: %w", channelID, gateway.ErrChannelNotFound)
	}
	return c.ledger, nil
}

func (c *fakeChannels) OrdererEndpoints(channelID string) ([]string, [][]byte, error) {
	if channelID != "mychannel" {
		return nil, nil, fmt.Errorf("channel %q: %w", channelID, gateway.ErrChannelNotFound)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.orderers, c.rootCerts, nil
}

func (c *fakeChannels) setOrderers(addrs ...string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.orderers = addrs
}

func (c *fakeChannels) setDeny(resource string, deny bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.deny[resource] = deny
}

func (c *fakeChannels) aclCalls() []aclCall {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]aclCall(nil), c.acl...)
}

func (c *fakeChannels) CheckACL(channelID, resource string, signed []policy.SignedData) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.acl = append(c.acl, aclCall{channelID, resource, signed})
	if c.deny[resource] {
		return errors.New("access denied: policy /Channel/Application/Readers not satisfied")
	}
	return nil
}

// fakeOrderer accepts envelopes and commits each as its own block to the
// ledger, or queues them while held, or answers with a fixed failure status.
type fakeOrderer struct {
	ab.UnimplementedAtomicBroadcastServer
	ledger *fakeLedger

	mu       sync.Mutex
	status   common.Status // non-zero: reply with this instead of accepting
	hold     bool
	queue    []*common.Envelope
	received int
}

func (o *fakeOrderer) Broadcast(srv grpc.BidiStreamingServer[common.Envelope, ab.BroadcastResponse]) error {
	for {
		env, err := srv.Recv()
		if err != nil {
			return nil
		}
		o.mu.Lock()
		o.received++
		st := o.status
		if st == 0 {
			st = common.Status_SUCCESS
			if o.hold {
				o.queue = append(o.queue, env)
			} else {
				o.ledger.append([]*common.Envelope{env}, []peer.TxValidationCode{validationCode(env)})
			}
		}
		o.mu.Unlock()
		if err := srv.Send(&ab.BroadcastResponse{Status: st, Info: "fake orderer"}); err != nil {
			return err
		}
	}
}

func (o *fakeOrderer) setStatus(st common.Status) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.status = st
}

func (o *fakeOrderer) setHold(hold bool) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.hold = hold
}

func (o *fakeOrderer) receivedCount() int {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.received
}

// flush commits the held envelopes as one block.
func (o *fakeOrderer) flush() {
	o.mu.Lock()
	defer o.mu.Unlock()
	codes := make([]peer.TxValidationCode, len(o.queue))
	for i, env := range o.queue {
		codes[i] = validationCode(env)
	}
	o.ledger.append(o.queue, codes)
	o.queue = nil
}

func (o *fakeOrderer) queued() int {
	o.mu.Lock()
	defer o.mu.Unlock()
	return len(o.queue)
}

// validationCode is what the fake committer decides: transactions whose
// function starts with "conflict" lose an MVCC race.
func validationCode(env *common.Envelope) peer.TxValidationCode {
	parsed, err := envelope.Parse(env)
	if err != nil {
		return peer.TxValidationCode_BAD_PAYLOAD
	}
	tx, err := envelope.UnpackTransaction(parsed)
	if err != nil {
		return peer.TxValidationCode_BAD_PAYLOAD
	}
	spec := &peer.ChaincodeInvocationSpec{}
	if err := proto.Unmarshal(tx.ProposalPayload.Input, spec); err != nil {
		return peer.TxValidationCode_BAD_PAYLOAD
	}
	if args := spec.GetChaincodeSpec().GetInput().GetArgs(); len(args) > 0 && strings.HasPrefix(string(args[0]), "conflict") {
		return peer.TxValidationCode_MVCC_READ_CONFLICT
	}
	return peer.TxValidationCode_VALID
}
