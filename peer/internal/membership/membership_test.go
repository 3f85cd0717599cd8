package membership_test

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"fmt"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/cairn-ledger/cairn/internal/channelconfig"
	"github.com/cairn-ledger/cairn/internal/comm"
	"github.com/cairn-ledger/cairn/internal/crypto"
	"github.com/cairn-ledger/cairn/internal/cryptogen"
	"github.com/cairn-ledger/cairn/internal/netconfig"
	"github.com/cairn-ledger/cairn/peer/internal/membership"
	mpb "github.com/cairn-ledger/cairn/protos/membershippb"
)

// fixture is channel mychannel of 2 organisations × 2 peers with real
// cryptogen material and genesis configuration; every peer has a bound
// listener (the anchor peers are each organisation's peer0).
type fixture struct {
	net    *netconfig.Network
	layout cryptogen.Layout
	bundle *channelconfig.Bundle
	lis    map[string]net.Listener // by full peer name
	addr   map[string]string
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	nc, err := netconfig.Generate(2, 2, 1)
	if err != nil {
		t.Fatal(err)
	}
	f := &fixture{net: nc, lis: map[string]net.Listener{}, addr: map[string]string{}}
	for i, org := range nc.PeerOrgs {
		for j, nd := range org.Peers {
			l, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { l.Close() })
			nc.PeerOrgs[i].Peers[j].Port = l.Addr().(*net.TCPAddr).Port
			full := nd.FullName(org.Domain)
			f.lis[full] = l
			f.addr[full] = l.Addr().String()
		}
	}
	nc.OrdererOrgs[0].Orderers[0].Port = 7050
	dir := t.TempDir()
	if err := cryptogen.Generate(nc, dir); err != nil {
		t.Fatal(err)
	}
	gb, err := channelconfig.Genesis(nc, dir)
	if err != nil {
		t.Fatal(err)
	}
	if f.bundle, err = channelconfig.FromBlock(gb); err != nil {
		t.Fatal(err)
	}
	f.layout = cryptogen.Layout{Root: dir}
	return f
}

func (f *fixture) org(full string) (netconfig.PeerOrg, bool) {
	for _, o := range f.net.PeerOrgs {
		if strings.HasSuffix(full, "."+o.Domain) {
			return o, true
		}
	}
	return netconfig.PeerOrg{}, false
}

func (f *fixture) identity(t *testing.T, full string) *crypto.SigningIdentity {
	t.Helper()
	o, _ := f.org(full)
	id, err := crypto.LoadSigningIdentity(o.MSPID, f.layout.NodeMSPDir(true, o.Domain, full))
	if err != nil {
		t.Fatal(err)
	}
	return id
}

func (f *fixture) tlsCert(t *testing.T, full string) tls.Certificate {
	t.Helper()
	o, _ := f.org(full)
	c, err := tls.LoadX509KeyPair(f.layout.NodeTLSCertPath(true, o.Domain, full), f.layout.NodeTLSKeyPath(true, o.Domain, full))
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func (f *fixture) clientCAs(t *testing.T) []string {
	var files []string
	for _, o := range f.net.PeerOrgs {
		files = append(files, f.layout.TLSCACertPath(true, o.Domain))
	}
	return files
}

// local is a fake local peer on mychannel.
type local struct {
	bundle *channelconfig.Bundle
	mu     sync.Mutex
	height uint64
	ccs    []membership.Chaincode
}

func (l *local) ChannelIDs() []string { return []string{"mychannel"} }
func (l *local) Bundle(id string) (*channelconfig.Bundle, bool) {
	return l.bundle, id == "mychannel"
}
func (l *local) Height(string) uint64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.height
}
func (l *local) Chaincodes(string) []membership.Chaincode {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]membership.Chaincode(nil), l.ccs...)
}

// node is a running membership service with its gRPC server.
type node struct {
	svc    *membership.Service
	local  *local
	cancel context.CancelFunc
	done   chan struct{}
}

func (f *fixture) start(t *testing.T, full string, height uint64) *node {
	t.Helper()
	o, _ := f.org(full)
	serverTLS, err := comm.ServerTLS(f.layout.NodeTLSCertPath(true, o.Domain, full), f.layout.NodeTLSKeyPath(true, o.Domain, full), f.clientCAs(t), false)
	if err != nil {
		t.Fatal(err)
	}
	loc := &local{bundle: f.bundle, height: height, ccs: []membership.Chaincode{{Name: "basic", Version: "1.0", Sequence: 1}}}
	svc, err := membership.New(membership.Config{
		Endpoint: f.addr[full],
		Signer:   f.identity(t, full),
		TLSCert:  f.tlsCert(t, full),
		Local:    loc,
		Interval: 100 * time.Millisecond,
		Expiry:   500 * time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	gs, err := comm.NewGRPCServer(serverTLS)
	if err != nil {
		t.Fatal(err)
	}
	mpb.RegisterMembershipServer(gs, svc)
	ctx, cancel := context.WithCancel(context.Background())
	n := &node{svc: svc, local: loc, cancel: cancel, done: make(chan struct{})}
	served := make(chan struct{})
	go func() { defer close(served); _ = gs.Serve(f.lis[full]) }()
	go func() {
		defer close(n.done)
		_ = svc.Run(ctx)
		gs.Stop()
		<-served
	}()
	t.Cleanup(n.stop)
	return n
}

func (n *node) stop() {
	n.cancel()
	<-n.done
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestPeersLearnEachOtherFromAnchors(t *testing.T) {
	f := newFixture(t)
	a := f.start(t, "peer0.org1.example.com", 5)
	b := f.start(t, "peer1.org1.example.com", 6) // not an anchor peer
	c := f.start(t, "peer0.org2.example.com", 7)
	for name, n := range map[string]*node{"peer0.org1": a, "peer1.org1": b, "peer0.org2": c} {
		waitFor(t, name+" to know all three peers", func() bool { return len(n.svc.Peers("mychannel")) == 3 })
	}
	snap := c.svc.Snapshot()["mychannel"]
	if len(snap["Org1MSP"]) != 2 || len(snap["Org2MSP"]) != 1 {
		t.Fatalf("snapshot %+v", snap)
	}
	for _, m := range snap["Org1MSP"] {
		want := map[string]uint64{f.addr["peer0.org1.example.com"]: 5, f.addr["peer1.org1.example.com"]: 6}[m.Endpoint]
		if m.Height != want || len(m.Chaincodes) != 1 || m.Chaincodes[0].Name != "basic" || len(m.TLSRootCerts) == 0 || m.Local {
			t.Errorf("member %+v", m)
		}
	}
	if self := snap["Org2MSP"][0]; !self.Local || self.Height != 7 {
		t.Errorf("self %+v", self)
	}

	// A new chaincode reaches the others without waiting for an interval.
	b.local.mu.Lock()
	b.local.ccs = append(b.local.ccs, membership.Chaincode{Name: "other", Version: "1", Sequence: 1})
	b.local.mu.Unlock()
	waitFor(t, "the new chaincode to be known", func() bool {
		for _, m := range a.svc.Peers("mychannel") {
			if m.Endpoint == f.addr["peer1.org1.example.com"] && len(m.Chaincodes) == 2 {
				return true
			}
		}
		return false
	})

	// A peer that stops answering leaves the snapshot.
	c.stop()
	waitFor(t, "peer0.org2 to be dropped", func() bool { return len(a.svc.Peers("mychannel")) == 2 })
}

// exchange calls a peer's Membership service with a hand-made request.
func exchange(t *testing.T, addr string, clientCert tls.Certificate, signer *crypto.SigningIdentity, roots []string, mutate func(*mpb.PeerInfo)) error {
	t.Helper()
	pool, err := comm.CertPool(roots...)
	if err != nil {
		t.Fatal(err)
	}
	cc, err := comm.Dial(addr, &tls.Config{Certificates: []tls.Certificate{clientCert}, RootCAs: pool, MinVersion: tls.VersionTLS12})
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	h := sha256.Sum256(clientCert.Certificate[0])
	info := &mpb.PeerInfo{
		Endpoint: "127.0.0.1:1", Identity: signer.Serialize(), TlsCertHash: h[:],
		Timestamp: time.Now().UnixNano(), Nonce: []byte("n"),
		Channels: []*mpb.ChannelState{{ChannelId: "mychannel", Height: 1}},
	}
	if mutate != nil {
		mutate(info)
	}
	raw, _ := proto.Marshal(info)
	sig, err := signer.Sign(raw)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_, err = mpb.NewMembershipClient(cc).Exchange(ctx, &mpb.SignedPeerInfo{Info: raw, Signature: sig}, grpc.WaitForReady(false))
	return err
}

func TestExchangeRefusesNonMembers(t *testing.T) {
	f := newFixture(t)
	f.start(t, "peer0.org1.example.com", 1)
	target := f.addr["peer0.org1.example.com"]
	roots := f.clientCAs(t)
	peerCert := f.tlsCert(t, "peer1.org2.example.com")
	peerID := f.identity(t, "peer1.org2.example.com")

	if err := exchange(t, target, peerCert, peerID, roots, nil); err != nil {
		t.Fatalf("a peer of Org2 was refused: %v", err)
	}

	o2 := f.net.PeerOrgs[1]
	user, err := crypto.LoadSigningIdentity(o2.MSPID, f.layout.UserMSPDir(true, o2.Domain, "User1"))
	if err != nil {
		t.Fatal(err)
	}
	ord := f.net.OrdererOrgs[0]
	ordFull := ord.Orderers[0].FullName(ord.Domain)
	orderer, err := crypto.LoadSigningIdentity(ord.MSPID, f.layout.NodeMSPDir(false, ord.Domain, ordFull))
	if err != nil {
		t.Fatal(err)
	}
	otherCert := f.tlsCert(t, "peer0.org2.example.com")
	for _, tc := range []struct {
		name   string
		signer *crypto.SigningIdentity
		mutate func(*mpb.PeerInfo)
		cert   tls.Certificate
		want   string
	}{
		{"a client identity", user, nil, peerCert, "not a peer"},
		{"the orderer organisation", orderer, nil, peerCert, "not an application organisation"},
		{"another peer's TLS certificate", peerID, func(i *mpb.PeerInfo) {
			h := sha256.Sum256(peerCert.Certificate[0])
			i.TlsCertHash = h[:]
		}, otherCert, "another TLS certificate"},
		{"a channel the callee is not on", peerID, func(i *mpb.PeerInfo) { i.Channels[0].ChannelId = "secret" }, peerCert, "not a peer of any common channel"},
		{"a stale request", peerID, func(i *mpb.PeerInfo) { i.Timestamp = time.Now().Add(-time.Hour).UnixNano() }, peerCert, "timestamp"},
		{"a forged signature", peerID, func(i *mpb.PeerInfo) { i.Identity = f.identity(t, "peer0.org2.example.com").Serialize() }, peerCert, "signature"},
	} {
		err := exchange(t, target, tc.cert, tc.signer, roots, tc.mutate)
		if status.Code(err) != codes.PermissionDenied || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want PermissionDenied mentioning %q", tc.name, err, tc.want)
		}
	}
}

func ExampleService_Snapshot() {
	var snap membership.Snapshot // channel → MSP ID → peers
	for channel, orgs := range snap {
		for mspID, peers := range orgs {
			fmt.Println(channel, mspID, len(peers))
		}
	}
	// Output:
}
