package cluster

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"runtime"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/cairn-ledger/cairn/internal/channelconfig"
	"github.com/cairn-ledger/cairn/protos/clusterpb"
	cb "github.com/hyperledger/fabric-protos-go-apiv2/common"
	pb "go.etcd.io/raft/v3/raftpb"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
)

// node is a test TLS identity with a self-signed certificate (the cluster
// pins certificates, so no CA is needed).
type node struct {
	cert tls.Certificate
	pem  []byte
}

func newNode(t testing.TB, name string) node {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()),
		Subject:      pkix.Name{CommonName: name},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		IPAddresses:  []net.IP{net.ParseIP("127.0.0.1")},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	return node{
		cert: tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key},
		pem:  pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
	}
}

func (n node) consenter(addr string) channelconfig.Consenter {
	host, port, _ := net.SplitHostPort(addr)
	p, _ := strconv.Atoi(port)
	return channelconfig.Consenter{Host: host, Port: uint32(p), ClientTLSCert: n.pem, ServerTLSCert: n.pem}
}

// fakeChannel records what the server hands to a chain.
type fakeChannel struct {
	mu       sync.Mutex
	stepped  chan *pb.Message
	orderErr error
	ordered  chan []byte
	hold     chan struct{} // when set, Submit waits for it to close
	holding  int           // Submits waiting on hold
	seqs     []uint64      // config sequences of the submitted envelopes
	refuse   []byte        // an envelope Submit refuses
}

func newFakeChannel() *fakeChannel {
	return &fakeChannel{stepped: make(chan *pb.Message, 100), ordered: make(chan []byte, 100)}
}

func (f *fakeChannel) Step(_ context.Context, m *pb.Message) error {
	f.stepped <- m
	return nil
}

// Submit takes the envelopes one by one, as a chain orders them, stopping at
// the first refusal.
func (f *fakeChannel) Submit(ctx context.Context, envs [][]byte, seq uint64) (int, error) {
	for i, env := range envs {
		if err := f.submitOne(ctx, env, seq); err != nil {
			return i, err
		}
	}
	return len(envs), nil
}

func (f *fakeChannel) submitOne(ctx context.Context, env []byte, seq uint64) error {
	f.mu.Lock()
	err, hold := f.orderErr, f.hold
	f.mu.Unlock()
	if hold != nil {
		f.mu.Lock()
		f.holding++
		f.mu.Unlock()
		select {
		case <-hold:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	if err != nil {
		return err
	}
	if f.refuse != nil && string(env) == string(f.refuse) {
		return errors.New("refused by the chain")
	}
	f.ordered <- env
	f.mu.Lock()
	f.seqs = append(f.seqs, seq)
	f.mu.Unlock()
	return nil
}

type fakeChannels map[string]*fakeChannel

func (f fakeChannels) Channel(id string) (Channel, bool) {
	ch, ok := f[id]
	return ch, ok
}

// peerNode is a Cluster served on 127.0.0.1:0.
type peerNode struct {
	node
	c    *Cluster
	addr string
	ch   *fakeChannel
}

func startPeer(t *testing.T, n node) *peerNode {
	t.Helper()
	fc := newFakeChannel()
	c, err := New(Config{ClientCert: n.cert, Channels: fakeChannels{"ch": fc}, MaxMessageSize: 1 << 10, MinBackoff: 10 * time.Millisecond, MaxBackoff: 50 * time.Millisecond, SubmitTimeout: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer(grpc.Creds(credentials.NewTLS(&tls.Config{Certificates: []tls.Certificate{n.cert}, ClientAuth: tls.RequestClientCert, MinVersion: tls.VersionTLS12})))
	c.Register(srv)
	done := make(chan struct{})
	go func() {
		defer close(done)
		srv.Serve(lis)
	}()
	t.Cleanup(func() {
		srv.Stop()
		<-done
		c.Close()
	})
	return &peerNode{node: n, c: c, addr: lis.Addr().String(), ch: fc}
}

func raftMsg(typ pb.MessageType, from, to uint64) *pb.Message {
	return &pb.Message{Type: &typ, From: &from, To: &to, Term: proto.Uint64(1)}
}

func consensusReq(t testing.TB, ch string, m *pb.Message) *clusterpb.StepRequest {
	raw, err := proto.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return &clusterpb.StepRequest{Payload: &clusterpb.StepRequest_ConsensusRequest{ConsensusRequest: &clusterpb.ConsensusRequest{Channel: ch, Payload: raw}}}
}

func submitReq(ch string, env []byte) *clusterpb.StepRequest {
	return &clusterpb.StepRequest{Payload: &clusterpb.StepRequest_SubmitRequest{SubmitRequest: &clusterpb.SubmitRequest{Channel: ch, Envelopes: [][]byte{env}, RequestId: 7}}}
}

func TestInspect(t *testing.T) {
	a, b, stranger := newNode(t, "a"), newNode(t, "b"), newNode(t, "stranger")
	c, err := New(Config{ClientCert: a.cert, Channels: fakeChannels{}, MaxMessageSize: 1 << 10})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	// Unreachable endpoints: the remotes only retry in the background.
	c.Transport("ch", 1, map[uint64]channelconfig.Consenter{1: a.consenter("127.0.0.1:1"), 2: b.consenter("127.0.0.1:1")})
	bDER := b.cert.Certificate[0]
	env, _ := proto.Marshal(&cb.Envelope{Payload: []byte("payload"), Signature: []byte("sig")})
	big := &pb.Message{Type: pb.MessageType_MsgApp.Enum(), From: proto.Uint64(2), To: proto.Uint64(1), Entries: []*pb.Entry{{Data: make([]byte, 2<<10)}}}

	for _, tc := range []struct {
		name string
		der  []byte
		req  *clusterpb.StepRequest
		want error
	}{
		{"heartbeat", bDER, consensusReq(t, "ch", raftMsg(pb.MessageType_MsgHeartbeat, 2, 1)), nil},
		{"submit", bDER, submitReq("ch", env), nil},
		{"empty request", bDER, &clusterpb.StepRequest{}, ErrMalformed},
		{"unknown channel", bDER, consensusReq(t, "other", raftMsg(pb.MessageType_MsgHeartbeat, 2, 1)), ErrUnknownChannel},
		{"stranger", stranger.cert.Certificate[0], consensusReq(t, "ch", raftMsg(pb.MessageType_MsgHeartbeat, 2, 1)), ErrNotConsenter},
		{"stranger submit", stranger.cert.Certificate[0], submitReq("ch", env), ErrNotConsenter},
		{"wrong From", bDER, consensusReq(t, "ch", raftMsg(pb.MessageType_MsgHeartbeat, 1, 1)), ErrWrongSender},
		{"From 0", bDER, consensusReq(t, "ch", raftMsg(pb.MessageType_MsgHeartbeat, 0, 1)), ErrMalformed},
		{"wrong To", bDER, consensusReq(t, "ch", raftMsg(pb.MessageType_MsgHeartbeat, 2, 3)), ErrWrongReceiver},
		{"local type", bDER, consensusReq(t, "ch", raftMsg(pb.MessageType_MsgHup, 2, 1)), ErrMalformed},
		{"unknown type", bDER, consensusReq(t, "ch", raftMsg(pb.MessageType(999), 2, 1)), ErrMalformed},
		{"oversized", bDER, consensusReq(t, "ch", big), ErrTooLarge},
		{"oversized submit", bDER, submitReq("ch", make([]byte, 2<<10)), ErrTooLarge},
		{"garbage payload", bDER, &clusterpb.StepRequest{Payload: &clusterpb.StepRequest_ConsensusRequest{ConsensusRequest: &clusterpb.ConsensusRequest{Channel: "ch", Payload: []byte{0xff, 0xff}}}}, ErrMalformed},
		{"garbage envelope", bDER, submitReq("ch", []byte{0xff, 0xff}), ErrMalformed},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := c.inspect(tc.der, tc.req)
			if !errors.Is(err, tc.want) {
				t.Fatalf("inspect: %v, want %v", err, tc.want)
			}
		})
	}
}

func TestStreamRefusesUnknownCertificates(t *testing.T) {
	a, b, stranger := newNode(t, "a"), newNode(t, "b"), newNode(t, "stranger")
	pa := startPeer(t, a)
	pa.c.Transport("ch", 1, map[uint64]channelconfig.Consenter{1: a.consenter(pa.addr), 2: b.consenter("127.0.0.1:1")})

	for _, tc := range []struct {
		name  string
		certs []tls.Certificate
		want  codes.Code
	}{
		{"stranger", []tls.Certificate{stranger.cert}, codes.PermissionDenied},
		{"no certificate", nil, codes.Unauthenticated},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cc, err := grpc.NewClient(pa.addr, grpc.WithTransportCredentials(credentials.NewTLS(&tls.Config{Certificates: tc.certs, InsecureSkipVerify: true})))
			if err != nil {
				t.Fatal(err)
			}
			defer cc.Close()
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			s, err := clusterpb.NewClusterClient(cc).Step(ctx)
			if err != nil {
				t.Fatal(err)
			}
			s.Send(consensusReq(t, "ch", raftMsg(pb.MessageType_MsgHeartbeat, 2, 1)))
			_, err = s.Recv()
			if status.Code(err) != tc.want {
				t.Fatalf("Recv: %v, want %v", err, tc.want)
			}
		})
	}
	select {
	case m := <-pa.ch.stepped:
		t.Fatalf("message from an unauthenticated peer reached the chain: %v", m)
	default:
	}
}

func TestSendAndForward(t *testing.T) {
	pa, pb1 := startPeer(t, newNode(t, "a")), startPeer(t, newNode(t, "b"))
	members := map[uint64]channelconfig.Consenter{1: pa.consenter(pa.addr), 2: pb1.consenter(pb1.addr)}
	ta := pa.c.Transport("ch", 1, members)
	pb1.c.Transport("ch", 2, members)

	// Messages flow once the stream is up; raft would retransmit, so do we.
	deadline := time.After(5 * time.Second)
	got := false
	for !got {
		ta.Send([]*pb.Message{raftMsg(pb.MessageType_MsgHeartbeat, 1, 2)})
		select {
		case m := <-pb1.ch.stepped:
			if m.GetFrom() != 1 || m.GetTo() != 2 || m.GetType() != pb.MessageType_MsgHeartbeat {
				t.Fatalf("stepped %v", m)
			}
			got = true
		case <-time.After(50 * time.Millisecond):
		case <-deadline:
			t.Fatal("no raft message arrived")
		}
	}

	// A message claiming another sender, or too large, is dropped; the
	// stream keeps working.
	bigMsg := raftMsg(pb.MessageType_MsgApp, 1, 2)
	bigMsg.Entries = []*pb.Entry{{Data: make([]byte, 2<<10)}}
	ta.Send([]*pb.Message{raftMsg(pb.MessageType_MsgHeartbeat, 3, 2), bigMsg, raftMsg(pb.MessageType_MsgHeartbeatResp, 1, 2)})
	for waiting := true; waiting; {
		select {
		case m := <-pb1.ch.stepped:
			switch {
			case m.GetType() == pb.MessageType_MsgHeartbeat && m.GetFrom() == 1:
				// A late copy from the retry loop above.
			case m.GetType() != pb.MessageType_MsgHeartbeatResp:
				t.Fatalf("stepped %v %v, want only the valid heartbeat response", m.GetType(), m.GetFrom())
			default:
				waiting = false
			}
		case <-time.After(5 * time.Second):
			t.Fatal("valid message after dropped ones did not arrive")
		}
	}

	env, _ := proto.Marshal(&cb.Envelope{Payload: []byte("tx"), Signature: []byte("sig")})
	ctx := context.Background()
	if err := forwardOne(ta, ctx, 2, env, 5); err != nil {
		t.Fatalf("Forward: %v", err)
	}
	if got := <-pb1.ch.ordered; string(got) != string(env) {
		t.Fatal("forwarded envelope changed")
	}
	pb1.ch.mu.Lock()
	if len(pb1.ch.seqs) != 1 || pb1.ch.seqs[0] != 5 {
		t.Fatalf("forwarded envelope reached the chain with config sequences %v, want [5]", pb1.ch.seqs)
	}
	pb1.ch.mu.Unlock()

	// Envelopes forwarded together are queued at once and answered one by
	// one; the chain takes them in order up to the first it refuses, and
	// that one and those after it fail.
	batch := make([][]byte, 5)
	for i := range batch {
		batch[i], _ = proto.Marshal(&cb.Envelope{Payload: fmt.Appendf(nil, "tx%d", i), Signature: []byte("sig")})
	}
	for i, err := range ta.Forward(ctx, 2, batch, 5) {
		if err != nil {
			t.Fatalf("Forward of envelope %d of a batch: %v", i, err)
		}
		if got := <-pb1.ch.ordered; string(got) != string(batch[i]) {
			t.Fatalf("batch envelope %d reached the chain out of order", i)
		}
	}
	pb1.ch.mu.Lock()
	pb1.ch.refuse = batch[2]
	pb1.ch.mu.Unlock()
	errs := ta.Forward(ctx, 2, batch, 5)
	for i, err := range errs {
		if (i < 2) != (err == nil) || (err != nil && !errors.Is(err, ErrRefused)) {
			t.Fatalf("outcomes of a batch refused at envelope 2: %v", errs)
		}
	}
	for range 2 {
		<-pb1.ch.ordered
	}
	pb1.ch.mu.Lock()
	pb1.ch.refuse = nil
	pb1.ch.orderErr = errors.New("no raft leader")
	pb1.ch.mu.Unlock()
	if err := forwardOne(ta, ctx, 2, env, 5); !errors.Is(err, ErrRefused) {
		t.Fatalf("Forward to a node that cannot order: %v", err)
	}
	if err := forwardOne(ta, ctx, 2, []byte{0xff}, 5); !errors.Is(err, ErrRefused) {
		t.Fatalf("Forward of garbage: %v", err)
	}
	if err := forwardOne(ta, ctx, 9, env, 5); !errors.Is(err, ErrUnknownNode) {
		t.Fatalf("Forward to an unknown node: %v", err)
	}

	// While the chain holds forwarded envelopes, more than the in-flight bound
	// are refused at once and raft traffic on the same stream still flows.
	hold := make(chan struct{})
	pb1.ch.mu.Lock()
	pb1.ch.orderErr, pb1.ch.hold = nil, hold
	pb1.ch.mu.Unlock()
	results := make(chan error, maxInflightSubmits+1)
	for range maxInflightSubmits + 1 {
		go func() { results <- forwardOne(ta, ctx, 2, env, 5) }()
	}
	select {
	case err := <-results:
		if !errors.Is(err, ErrRefused) {
			t.Fatalf("Forward beyond the in-flight bound: %v", err)
		}
	case <-time.After(time.Second):
		t.Fatal("Forward beyond the in-flight bound waited")
	}
	ta.Send([]*pb.Message{raftMsg(pb.MessageType_MsgAppResp, 1, 2)})
	select {
	case m := <-pb1.ch.stepped:
		if m.GetType() != pb.MessageType_MsgAppResp {
			t.Fatalf("stepped %v", m.GetType())
		}
	case <-time.After(5 * time.Second):
		t.Fatal("raft message stuck behind held submits")
	}
	close(hold)
	// Forwards travel in batches, and a batch that would cross the bound is
	// refused whole, so more than one Forward may have been refused; every
	// other one is ordered, and no more than the bound were held.
	accepted := 0
	for range maxInflightSubmits {
		err := <-results
		if err == nil {
			accepted++
			<-pb1.ch.ordered
			continue
		}
		if !errors.Is(err, ErrRefused) {
			t.Fatalf("held Forward: %v", err)
		}
	}
	if accepted == 0 {
		t.Fatal("no held Forward was ordered")
	}

	// Closing the transport stops its links; the server then refuses the
	// channel's traffic.
	ta.(*Transport).Close()
	if _, _, err := pa.c.lookup("ch", pb1.cert.Certificate[0]); !errors.Is(err, ErrUnknownChannel) {
		t.Fatalf("after Close: %v", err)
	}
}

func TestForwardTimesOutWhenRemoteIsDown(t *testing.T) {
	a, b := newNode(t, "a"), newNode(t, "b")
	before := runtime.NumGoroutine()
	c, err := New(Config{ClientCert: a.cert, Channels: fakeChannels{}, SubmitTimeout: 200 * time.Millisecond, MinBackoff: 10 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	lis, _ := net.Listen("tcp", "127.0.0.1:0")
	dead := lis.Addr().String()
	lis.Close()
	tr := c.Transport("ch", 1, map[uint64]channelconfig.Consenter{1: a.consenter(dead), 2: b.consenter(dead)})
	start := time.Now()
	if err := forwardOne(tr, context.Background(), 2, []byte("x"), 0); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Forward: %v", err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Fatalf("Forward took %v", d)
	}
	for range 2 * DefaultSendQueueSize { // a full queue drops, never blocks
		tr.Send([]*pb.Message{raftMsg(pb.MessageType_MsgHeartbeat, 1, 2)})
	}
	c.Close()
	// Close waited for the links; what gRPC's closed connections leave ends soon.
	for deadline := time.Now().Add(5 * time.Second); runtime.NumGoroutine() > before; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("%d goroutines after Close, %d before", runtime.NumGoroutine(), before)
		}
	}
}

func FuzzClusterMessage(f *testing.F) {
	a, b := newNode(f, "a"), newNode(f, "b")
	c, err := New(Config{ClientCert: a.cert, Channels: fakeChannels{}, MaxMessageSize: 4 << 10})
	if err != nil {
		f.Fatal(err)
	}
	defer c.Close()
	c.Transport("ch", 1, map[uint64]channelconfig.Consenter{1: a.consenter("127.0.0.1:1"), 2: b.consenter("127.0.0.1:1")})
	der := b.cert.Certificate[0]
	env, _ := proto.Marshal(&cb.Envelope{Payload: []byte("p"), Signature: []byte("s")})
	app := raftMsg(pb.MessageType_MsgApp, 2, 1)
	app.Entries = []*pb.Entry{{Term: proto.Uint64(1), Index: proto.Uint64(2), Data: []byte("block")}}
	snap := raftMsg(pb.MessageType_MsgSnap, 2, 1)
	snap.Snapshot = &pb.Snapshot{Data: []byte("block"), Metadata: &pb.SnapshotMetadata{Index: proto.Uint64(5), Term: proto.Uint64(1)}}
	for _, req := range []*clusterpb.StepRequest{
		consensusReq(f, "ch", raftMsg(pb.MessageType_MsgHeartbeat, 2, 1)),
		consensusReq(f, "ch", app),
		consensusReq(f, "ch", snap),
		consensusReq(f, "ch", raftMsg(pb.MessageType_MsgVote, 3, 1)),
		submitReq("ch", env),
		{},
	} {
		raw, _ := proto.Marshal(req)
		f.Add(raw)
	}
	f.Fuzz(func(t *testing.T, raw []byte) {
		req := &clusterpb.StepRequest{}
		if proto.Unmarshal(raw, req) != nil {
			return
		}
		in, err := c.inspect(der, req)
		if err != nil {
			return
		}
		switch {
		case in.msg != nil:
			if in.msg.GetFrom() != 2 || in.msg.GetTo() != 1 || in.sender != 2 {
				t.Fatalf("accepted %v from sender %d", in.msg, in.sender)
			}
		case len(in.envs) == 0:
			t.Fatal("accepted a request with neither message nor envelope")
		default:
			for _, env := range in.envs {
				if !wellFormedEnvelope(env) {
					t.Fatalf("accepted a malformed forwarded envelope %x", env)
				}
			}
		}
	})
}

// FuzzWellFormedEnvelope checks the copy-free envelope check against a full
// decode.
func FuzzWellFormedEnvelope(f *testing.F) {
	env, _ := proto.Marshal(&cb.Envelope{Payload: []byte("p"), Signature: []byte("s")})
	f.Add(env)
	f.Add(append(append([]byte{}, env...), 0x0a, 0x00)) // a second, empty payload wins
	f.Add([]byte{0x08, 0x01})                           // payload number, varint type: unknown field
	f.Add([]byte{0xff})
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, raw []byte) {
		e := &cb.Envelope{}
		want := proto.Unmarshal(raw, e) == nil && len(e.GetPayload()) > 0
		if got := wellFormedEnvelope(raw); got != want {
			t.Fatalf("wellFormedEnvelope = %v, full decode says %v", got, want)
		}
	})
}

// TestMembershipChangeKeepsStreams: when a config block changes the
// consenter set, the new Transport takes over the streams to consenters that
// did not change, so an envelope forwarded just before (sent, not yet
// answered) is still answered, rather than failed and retried by its client
// while the leader orders it anyway.
func TestMembershipChangeKeepsStreams(t *testing.T) {
	pa, pb1, pc := startPeer(t, newNode(t, "a")), startPeer(t, newNode(t, "b")), startPeer(t, newNode(t, "c"))
	members := map[uint64]channelconfig.Consenter{1: pa.consenter(pa.addr), 2: pb1.consenter(pb1.addr)}
	ta := pa.c.Transport("ch", 1, members)
	pb1.c.Transport("ch", 2, members)

	hold := make(chan struct{})
	pb1.ch.mu.Lock()
	pb1.ch.hold = hold
	pb1.ch.mu.Unlock()
	env, _ := proto.Marshal(&cb.Envelope{Payload: []byte("tx"), Signature: []byte("sig")})
	result := make(chan error, 1)
	go func() { result <- forwardOne(ta, context.Background(), 2, env, 1) }()
	// Wait until the leader's chain holds it: the request was sent.
	deadline := time.Now().Add(5 * time.Second)
	for {
		pb1.ch.mu.Lock()
		waiting := pb1.ch.holding > 0
		pb1.ch.mu.Unlock()
		if waiting {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("forwarded envelope did not reach the remote chain")
		}
		time.Sleep(5 * time.Millisecond)
	}

	// Consenter 3 joins: node 2 is unchanged, so its stream is kept.
	grown := map[uint64]channelconfig.Consenter{1: members[1], 2: members[2], 3: pc.consenter(pc.addr)}
	ta2 := pa.c.Transport("ch", 1, grown)
	close(hold)
	if err := <-result; err != nil {
		t.Fatalf("envelope forwarded before the membership change: %v", err)
	}
	if got := <-pb1.ch.ordered; string(got) != string(env) {
		t.Fatal("forwarded envelope changed")
	}
	// The adopted stream now belongs to the new Transport and still works.
	if err := forwardOne(ta2, context.Background(), 2, env, 1); err != nil {
		t.Fatalf("forward after the change: %v", err)
	}
	<-pb1.ch.ordered
	// A consenter whose endpoint changed gets a new stream, on which
	// forwards work too.
	moved := map[uint64]channelconfig.Consenter{1: members[1], 2: pc.consenter(pc.addr)}
	pc.c.Transport("ch", 2, moved)
	ta3 := pa.c.Transport("ch", 1, moved)
	if err := forwardOne(ta3, context.Background(), 2, env, 1); err != nil {
		t.Fatalf("forward to a consenter at a new endpoint: %v", err)
	}
	<-pc.ch.ordered
}

// forwardOne forwards a single envelope and returns its outcome.
func forwardOne(t interface {
	Forward(context.Context, uint64, [][]byte, uint64) []error
}, ctx context.Context, to uint64, env []byte, seq uint64) error {
	return t.Forward(ctx, to, [][]byte{env}, seq)[0]
}
