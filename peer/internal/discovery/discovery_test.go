package discovery_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	cb "github.com/hyperledger/fabric-protos-go-apiv2/common"
	dpb "github.com/hyperledger/fabric-protos-go-apiv2/discovery"
	pb "github.com/hyperledger/fabric-protos-go-apiv2/peer"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	grpcpeer "google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/cairn-ledger/cairn/internal/channelconfig"
	"github.com/cairn-ledger/cairn/internal/comm"
	"github.com/cairn-ledger/cairn/internal/crypto"
	"github.com/cairn-ledger/cairn/internal/cryptogen"
	"github.com/cairn-ledger/cairn/internal/msp"
	"github.com/cairn-ledger/cairn/internal/netconfig"
	"github.com/cairn-ledger/cairn/internal/policy"
	"github.com/cairn-ledger/cairn/peer/internal/discovery"
)

const channelID = "mychannel"

// fixture is channel mychannel of 2 organisations × 2 peers with real
// cryptogen material and Cairn's genesis configuration (Endorsement MAJORITY
// of each organisation's OR('OrgN.peer'), Writers OR(admin, client)), seen
// from peer0.org1.
type fixture struct {
	net    *netconfig.Network
	layout cryptogen.Layout
	bundle *channelconfig.Bundle
	ccs    map[string]*discovery.Chaincode
	peers  []discovery.Peer
	svc    *discovery.Service
}

func newFixture(t testing.TB) *fixture {
	t.Helper()
	nc, err := netconfig.Generate(2, 2, 1)
	if err != nil {
		t.Fatal(err)
	}
	for i := range nc.PeerOrgs {
		for j := range nc.PeerOrgs[i].Peers {
			nc.PeerOrgs[i].Peers[j].Port = 7051 + 10*i + j
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
	f := &fixture{net: nc, layout: cryptogen.Layout{Root: dir}}
	if f.bundle, err = channelconfig.FromBlock(gb); err != nil {
		t.Fatal(err)
	}
	org1Only := mustDSL(t, "OR('Org1MSP.peer')")
	f.ccs = map[string]*discovery.Chaincode{
		"basic": {Name: "basic", Version: "1.0", PolicyRef: "/Channel/Application/Endorsement"},
		"org1":  {Name: "org1", Version: "2.0", Policy: org1Only},
		"priv": {Name: "priv", Version: "1.0", PolicyRef: "/Channel/Application/Endorsement",
			Collections: &pb.CollectionConfigPackage{Config: []*pb.CollectionConfig{{
				Payload: &pb.CollectionConfig_StaticCollectionConfig{StaticCollectionConfig: &pb.StaticCollectionConfig{
					Name:             "org1only",
					MemberOrgsPolicy: &pb.CollectionPolicyConfig{Payload: &pb.CollectionPolicyConfig_SignaturePolicy{SignaturePolicy: mustDSL(t, "OR('Org1MSP.member')")}},
					EndorsementPolicy: &pb.ApplicationPolicy{Type: &pb.ApplicationPolicy_SignaturePolicy{
						SignaturePolicy: org1Only,
					}},
				}},
			}}}},
	}
	for i, org := range nc.PeerOrgs {
		for j, nd := range org.Peers {
			full := nd.FullName(org.Domain)
			id, err := crypto.LoadSigningIdentity(org.MSPID, f.layout.NodeMSPDir(true, org.Domain, full))
			if err != nil {
				t.Fatal(err)
			}
			p := discovery.Peer{Endpoint: nd.Address(), MSPID: org.MSPID, Identity: id.Serialize(), Height: uint64(10 + j)}
			p.Chaincodes = []discovery.ChaincodeVersion{{Name: "basic", Version: "1.0"}, {Name: "priv", Version: "1.0"}}
			if i == 0 {
				p.Chaincodes = append(p.Chaincodes, discovery.ChaincodeVersion{Name: "org1", Version: "2.0"})
			}
			f.peers = append(f.peers, p)
		}
	}
	org := nc.PeerOrgs[0]
	mc, err := msp.LoadMSPConfigDir(f.layout.NodeMSPDir(true, org.Domain, org.Peers[0].FullName(org.Domain)), org.MSPID)
	if err != nil {
		t.Fatal(err)
	}
	local, err := msp.New(mc)
	if err != nil {
		t.Fatal(err)
	}
	f.svc = discovery.New(discovery.Config{
		Channels:   fakeChannels{f},
		Membership: fakeMembership{f},
		LocalMSPs:  msp.NewManager(local),
		LocalMSPID: org.MSPID,
		Now:        func() time.Time { return time.Unix(1700000000, 0) },
	})
	return f
}

func mustDSL(t testing.TB, s string) *cb.SignaturePolicyEnvelope {
	t.Helper()
	spe, err := policy.ParseDSL(s)
	if err != nil {
		t.Fatal(err)
	}
	return spe
}

type fakeChannels struct{ f *fixture }

func (c fakeChannels) ChannelIDs() []string { return []string{channelID} }

func (c fakeChannels) Bundle(id string) (*channelconfig.Bundle, bool) {
	return c.f.bundle, id == channelID
}

func (c fakeChannels) Chaincode(id, name string) (*discovery.Chaincode, bool, error) {
	cc, ok := c.f.ccs[name]
	return cc, ok && id == channelID, nil
}

type fakeMembership struct{ f *fixture }

func (m fakeMembership) Peers(id string) []discovery.Peer {
	if id != channelID {
		return nil
	}
	return m.f.peers
}

// client is a user of an organisation: its enrollment identity and TLS pair.
type client struct {
	id  *crypto.SigningIdentity
	tls tls.Certificate
}

func (f *fixture) client(t testing.TB, orgIndex int, user string) client {
	t.Helper()
	org := f.net.PeerOrgs[orgIndex]
	id, err := crypto.LoadSigningIdentity(org.MSPID, f.layout.UserMSPDir(true, org.Domain, user))
	if err != nil {
		t.Fatal(err)
	}
	c, err := tls.LoadX509KeyPair(f.layout.UserTLSCertPath(true, org.Domain, user), f.layout.UserTLSKeyPath(true, org.Domain, user))
	if err != nil {
		t.Fatal(err)
	}
	return client{id: id, tls: c}
}

func (c client) auth() *dpb.AuthInfo {
	return &dpb.AuthInfo{ClientIdentity: c.id.Serialize(), ClientTlsCertHash: certHash(c.tls.Certificate[0])}
}

// tlsContext is the context of a call on a connection where the client
// presented cert (nil: none).
func tlsContext(cert []byte) context.Context {
	st := tls.ConnectionState{}
	if cert != nil {
		c, err := x509.ParseCertificate(cert)
		if err != nil {
			panic(err)
		}
		st.PeerCertificates = []*x509.Certificate{c}
	}
	return grpcpeer.NewContext(context.Background(), &grpcpeer.Peer{
		Addr:     &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 1},
		AuthInfo: credentials.TLSInfo{State: st},
	})
}

// discover calls the service directly on a TLS context of c's certificate.
func (f *fixture) discover(t *testing.T, c client, r *clientRequest) *dpb.Response {
	t.Helper()
	sr, err := r.signed(c.auth(), c.id.Sign)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := f.svc.Discover(tlsContext(c.tls.Certificate[0]), sr)
	if err != nil {
		t.Fatalf("Discover: %v", err)
	}
	if len(resp.GetResults()) != len(r.req.GetQueries()) {
		t.Fatalf("%d results for %d queries", len(resp.GetResults()), len(r.req.GetQueries()))
	}
	return resp
}

// TestFabricClientOverTLS serves the service on a mutual-TLS gRPC listener
// and queries it with the Fabric-style client: configuration, peers,
// endorsers and the local peers, in one request (the local query as the
// organisation's admin).
func TestFabricClientOverTLS(t *testing.T) {
	f := newFixture(t)
	org := f.net.PeerOrgs[0]
	peer0 := org.Peers[0].FullName(org.Domain)
	var roots []string
	for _, o := range f.net.PeerOrgs {
		roots = append(roots, f.layout.TLSCACertPath(true, o.Domain))
	}
	serverTLS, err := comm.ServerTLS(f.layout.NodeTLSCertPath(true, org.Domain, peer0), f.layout.NodeTLSKeyPath(true, org.Domain, peer0), roots, false)
	if err != nil {
		t.Fatal(err)
	}
	gs, err := comm.NewGRPCServer(serverTLS)
	if err != nil {
		t.Fatal(err)
	}
	dpb.RegisterDiscoveryServer(gs, f.svc)
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { defer close(done); _ = gs.Serve(lis) }()
	t.Cleanup(func() { gs.Stop(); <-done })

	admin := f.client(t, 0, cryptogen.AdminUser)
	pool, err := comm.CertPool(f.layout.TLSCACertPath(true, org.Domain))
	if err != nil {
		t.Fatal(err)
	}
	conn, err := comm.Dial(lis.Addr().String(), &tls.Config{RootCAs: pool, ServerName: peer0, Certificates: []tls.Certificate{admin.tls}, MinVersion: tls.VersionTLS12})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	req := newClientRequest().ofChannel(channelID).addConfigQuery().addPeersQuery().
		addEndorsersQuery(&pb.ChaincodeInterest{Chaincodes: []*pb.ChaincodeCall{{Name: "basic"}}}).addLocalPeersQuery()
	resp, err := send(ctx, dpb.NewDiscoveryClient(conn), req, admin.auth(), admin.id.Sign)
	if err != nil {
		t.Fatal(err)
	}

	conf := resp.Results[0].GetConfigResult()
	if conf == nil {
		t.Fatalf("config query: %v", resp.Results[0])
	}
	if got := sortedKeys(conf.Msps); !slices.Equal(got, []string{"OrdererMSP", "Org1MSP", "Org2MSP"}) {
		t.Fatalf("config MSPs %v", got)
	}
	if eps := conf.Orderers["OrdererMSP"].GetEndpoint(); len(eps) != 1 || eps[0].Host != "127.0.0.1" || eps[0].Port != 7050 {
		t.Fatalf("orderer endpoints %v", eps)
	}
	if len(conf.Msps["Org2MSP"].GetTlsRootCerts()) == 0 {
		t.Fatal("Org2MSP has no TLS roots in the config result")
	}

	peers, err := decodePeers(resp.Results[1].GetMembers(), true)
	if err != nil {
		t.Fatalf("peers query %v: %v", resp.Results[1], err)
	}
	if got := describePeers(peers); got != "Org1MSP 127.0.0.1:7051 h10 [basic:1.0 org1:2.0 priv:1.0]; Org1MSP 127.0.0.1:7052 h11 [basic:1.0 org1:2.0 priv:1.0]; "+
		"Org2MSP 127.0.0.1:7061 h10 [basic:1.0 priv:1.0]; Org2MSP 127.0.0.1:7062 h11 [basic:1.0 priv:1.0]" {
		t.Fatalf("peers: %s", got)
	}

	desc := resp.Results[2].GetCcQueryRes()
	if desc == nil || len(desc.Content) != 1 {
		t.Fatalf("endorsers query: %v", resp.Results[2])
	}
	d, err := decodeDescriptor(desc.Content[0])
	if err != nil {
		t.Fatal(err)
	}
	if got := describeDescriptor(d); got != "basic: {Org1MSP×1 Org2MSP×1} groups Org1MSP[127.0.0.1:7052 127.0.0.1:7051] Org2MSP[127.0.0.1:7062 127.0.0.1:7061]" {
		t.Fatalf("descriptor: %s", got)
	}

	local, err := decodePeers(resp.Results[3].GetMembers(), false)
	if err != nil {
		t.Fatalf("local peers %v: %v", resp.Results[3], err)
	}
	if len(local) != 4 || local[0].HasState {
		t.Fatalf("local peers: %+v", local)
	}
}

// TestRefusals checks what Fabric refuses for the whole request (a gRPC
// error) and what for one query (an Error result).
func TestRefusals(t *testing.T) {
	f := newFixture(t)
	user := f.client(t, 0, "User1")
	admin2 := f.client(t, 1, cryptogen.AdminUser)
	configQuery := newClientRequest().ofChannel(channelID).addConfigQuery()

	t.Run("request", func(t *testing.T) {
		good, err := configQuery.signed(user.auth(), user.id.Sign)
		if err != nil {
			t.Fatal(err)
		}
		noAuth, _ := configQuery.signed(nil, user.id.Sign)
		noID, _ := configQuery.signed(&dpb.AuthInfo{ClientTlsCertHash: certHash(user.tls.Certificate[0])}, user.id.Sign)
		wrongHash, _ := configQuery.signed(&dpb.AuthInfo{ClientIdentity: user.id.Serialize(), ClientTlsCertHash: certHash(admin2.tls.Certificate[0])}, user.id.Sign)
		unbound, _ := configQuery.signed(&dpb.AuthInfo{ClientIdentity: user.id.Serialize()}, user.id.Sign)
		for _, tc := range []struct {
			name string
			ctx  context.Context
			req  *dpb.SignedRequest
			want string
		}{
			{"garbage payload", tlsContext(user.tls.Certificate[0]), &dpb.SignedRequest{Payload: []byte{0xff, 0xff}}, "failed parsing request"},
			{"no auth info", tlsContext(user.tls.Certificate[0]), noAuth, "access denied, no authentication info in request"},
			{"no identity", tlsContext(user.tls.Certificate[0]), noID, "access denied, client identity wasn't supplied"},
			{"no client certificate", tlsContext(nil), good, "client didn't send a TLS certificate"},
			{"no TLS at all", context.Background(), good, "client didn't send a TLS certificate"},
			{"hash of another certificate", tlsContext(user.tls.Certificate[0]), wrongHash, "client claimed TLS hash doesn't match computed TLS hash from gRPC stream"},
			{"no hash claimed, another certificate", tlsContext(admin2.tls.Certificate[0]), unbound, ""},
			{"no hash claimed, no TLS", context.Background(), unbound, ""},
		} {
			resp, err := f.svc.Discover(tc.ctx, tc.req)
			if tc.want == "" {
				// Accepted, as by Fabric's peers: the config query is answered.
				if err != nil || len(resp.GetResults()) != 1 || resp.GetResults()[0].GetConfigResult() == nil {
					t.Errorf("%s: %v, %v; want the channel's configuration", tc.name, resp, err)
				}
				continue
			}
			if s, _ := status.FromError(err); s.Code() != codes.Unknown || !strings.HasPrefix(s.Message(), tc.want) {
				t.Errorf("%s: %v, want Unknown %q", tc.name, err, tc.want)
			}
		}
	})

	t.Run("query", func(t *testing.T) {
		peer := f.peerClient(t)
		for _, tc := range []struct {
			name string
			c    client
			sign signer
			req  *clientRequest
			want []string // per query: "" for a result, else the error
		}{
			{"user of the channel", user, user.id.Sign, newClientRequest().ofChannel(channelID).addConfigQuery().addPeersQuery(), []string{"", ""}},
			{"signature by another key", user, admin2.id.Sign, newClientRequest().ofChannel(channelID).addConfigQuery(), []string{"access denied"}},
			{"channel not joined", user, user.id.Sign, newClientRequest().ofChannel("other").addConfigQuery(), []string{"access denied"}},
			{"peer identity is no Writer", peer, peer.id.Sign, newClientRequest().ofChannel(channelID).addConfigQuery(), []string{"access denied"}},
			{"local query as a user", user, user.id.Sign, newClientRequest().addLocalPeersQuery(), []string{"access denied"}},
			{"local query as the other org's admin", admin2, admin2.id.Sign, newClientRequest().addLocalPeersQuery(), []string{"access denied"}},
			{"config query without channel", f.client(t, 0, cryptogen.AdminUser), f.client(t, 0, cryptogen.AdminUser).id.Sign,
				newClientRequest().addConfigQuery(), []string{"unknown or missing request type"}},
			{"local query on a channel", user, user.id.Sign, &clientRequest{req: &dpb.Request{Queries: []*dpb.Query{{
				Channel: channelID, Query: &dpb.Query_LocalPeers{LocalPeers: &dpb.LocalPeerQuery{}},
			}}}}, []string{"unknown or missing request type"}},
			{"empty query", user, user.id.Sign, &clientRequest{req: &dpb.Request{Queries: []*dpb.Query{{Channel: channelID}}}}, []string{"unknown or missing request type"}},
			{"empty chaincode query", user, user.id.Sign, newClientRequest().ofChannel(channelID).addEndorsersQuery(), []string{"chaincode query must have at least one chaincode interest"}},
			{"interest without chaincodes", user, user.id.Sign, newClientRequest().ofChannel(channelID).addEndorsersQuery(&pb.ChaincodeInterest{}),
				[]string{"chaincode interest must contain at least one chaincode"}},
			{"unnamed chaincode", user, user.id.Sign, newClientRequest().ofChannel(channelID).addEndorsersQuery(&pb.ChaincodeInterest{Chaincodes: []*pb.ChaincodeCall{{}}}),
				[]string{"chaincode name in interest cannot be empty"}},
		} {
			sr, err := tc.req.signed(tc.c.auth(), tc.sign)
			if err != nil {
				t.Fatal(err)
			}
			resp, err := f.svc.Discover(tlsContext(tc.c.tls.Certificate[0]), sr)
			if err != nil {
				t.Fatalf("%s: %v", tc.name, err)
			}
			var got []string
			for _, r := range resp.GetResults() {
				got = append(got, r.GetError().GetContent())
			}
			if !slices.Equal(got, tc.want) {
				t.Errorf("%s: results %q, want %q", tc.name, got, tc.want)
			}
		}
	})
}

// peerClient is peer1.org1 acting as a client: a channel member, not a Writer.
func (f *fixture) peerClient(t *testing.T) client {
	t.Helper()
	org := f.net.PeerOrgs[0]
	full := org.Peers[1].FullName(org.Domain)
	id, err := crypto.LoadSigningIdentity(org.MSPID, f.layout.NodeMSPDir(true, org.Domain, full))
	if err != nil {
		t.Fatal(err)
	}
	c, err := tls.LoadX509KeyPair(f.layout.NodeTLSCertPath(true, org.Domain, full), f.layout.NodeTLSKeyPath(true, org.Domain, full))
	if err != nil {
		t.Fatal(err)
	}
	return client{id: id, tls: c}
}

// TestEndorsementDescriptors covers policies, chains of chaincodes,
// collections and key-level policies.
func TestEndorsementDescriptors(t *testing.T) {
	f := newFixture(t)
	user := f.client(t, 1, "User1")
	both := mustDSL(t, "AND('Org1MSP.peer','Org2MSP.peer')")
	twoOfOrg1 := mustDSL(t, "AND('Org1MSP.peer','Org1MSP.member')")
	org2Only := mustDSL(t, "OR('Org2MSP.peer')")
	call := func(name string) *pb.ChaincodeCall { return &pb.ChaincodeCall{Name: name} }
	for _, tc := range []struct {
		name  string
		calls []*pb.ChaincodeCall
		want  string
	}{
		{"MAJORITY of two organisations", []*pb.ChaincodeCall{call("basic")},
			"basic: {Org1MSP×1 Org2MSP×1} groups Org1MSP[127.0.0.1:7052 127.0.0.1:7051] Org2MSP[127.0.0.1:7062 127.0.0.1:7061]"},
		{"signature policy of one organisation", []*pb.ChaincodeCall{call("org1")},
			"org1: {Org1MSP×1} groups Org1MSP[127.0.0.1:7052 127.0.0.1:7051]"},
		{"chain: peers must run both, policies combine", []*pb.ChaincodeCall{call("org1"), call("basic")},
			"failed constructing descriptor"},
		{"AND within one signature policy adds up", []*pb.ChaincodeCall{call("org1"), {Name: "org1", KeyPolicies: []*cb.SignaturePolicyEnvelope{twoOfOrg1}}},
			"org1: {Org1MSP×2} groups Org1MSP[127.0.0.1:7052 127.0.0.1:7051]"},
		{"chain of chaincodes every peer runs", []*pb.ChaincodeCall{call("basic"), call("priv")},
			"basic: {Org1MSP×1 Org2MSP×1} groups Org1MSP[127.0.0.1:7052 127.0.0.1:7051] Org2MSP[127.0.0.1:7062 127.0.0.1:7061]"},
		{"key-level policy replaces the namespace policy", []*pb.ChaincodeCall{{Name: "basic", DisregardNamespacePolicy: true, KeyPolicies: []*cb.SignaturePolicyEnvelope{org2Only}}},
			"basic: {Org2MSP×1} groups Org2MSP[127.0.0.1:7062 127.0.0.1:7061]"},
		{"key-level policy needing a peer without the chaincode", []*pb.ChaincodeCall{{Name: "org1", KeyPolicies: []*cb.SignaturePolicyEnvelope{both}}},
			"failed constructing descriptor"},
		{"disregard without replacement", []*pb.ChaincodeCall{{Name: "basic", DisregardNamespacePolicy: true}}, "failed constructing descriptor"},
		{"collection readers only, MAJORITY unreachable", []*pb.ChaincodeCall{{Name: "priv", CollectionNames: []string{"org1only"}}}, "failed constructing descriptor"},
		{"collection written without private reads", []*pb.ChaincodeCall{{Name: "priv", CollectionNames: []string{"org1only"}, NoPrivateReads: true}},
			"priv: {Org1MSP×1 Org2MSP×1} groups Org1MSP[127.0.0.1:7052 127.0.0.1:7051] Org2MSP[127.0.0.1:7062 127.0.0.1:7061]"},
		{"unknown collection", []*pb.ChaincodeCall{{Name: "priv", CollectionNames: []string{"nope"}}}, "failed constructing descriptor"},
		{"unknown chaincode", []*pb.ChaincodeCall{call("nope")}, "failed constructing descriptor"},
	} {
		resp := f.discover(t, user, newClientRequest().ofChannel(channelID).addEndorsersQuery(&pb.ChaincodeInterest{Chaincodes: tc.calls}))
		r := resp.Results[0]
		if e := r.GetError(); e != nil {
			if !strings.HasPrefix(e.Content, tc.want) {
				t.Errorf("%s: error %q, want %q", tc.name, e.Content, tc.want)
			}
			continue
		}
		d, err := decodeDescriptor(r.GetCcQueryRes().GetContent()[0])
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		if got := describeDescriptor(d); got != tc.want {
			t.Errorf("%s:\n got %s\nwant %s", tc.name, got, tc.want)
		}
	}
}

// TestPeersQueryFilter checks that a chaincode filter keeps the peers able
// to run the chaincode, and that an undefined chaincode is an error.
func TestPeersQueryFilter(t *testing.T) {
	f := newFixture(t)
	user := f.client(t, 0, "User1")
	resp := f.discover(t, user, newClientRequest().ofChannel(channelID).
		addPeersQuery(&pb.ChaincodeCall{Name: "org1"}).addPeersQuery(&pb.ChaincodeCall{Name: "nope"}))
	peers, err := decodePeers(resp.Results[0].GetMembers(), true)
	if err != nil {
		t.Fatal(err)
	}
	if got := describePeers(peers); !strings.HasPrefix(got, "Org1MSP 127.0.0.1:7051") || strings.Contains(got, "Org2MSP") {
		t.Fatalf("peers running org1: %s", got)
	}
	if got := resp.Results[1].GetError().GetContent(); got != "No metadata was found for chaincode nope in channel mychannel" {
		t.Fatalf("undefined chaincode: %q", got)
	}
}

// TestConfigResultGlobalOrdererAddresses checks the fallback to the
// channel-wide OrdererAddresses when no orderer organisation lists its own.
func TestConfigResultGlobalOrdererAddresses(t *testing.T) {
	f := newFixture(t)
	c := proto.Clone(f.bundle.Config()).(*cb.Config)
	for _, g := range c.ChannelGroup.Groups["Orderer"].Groups {
		delete(g.Values, "Endpoints")
	}
	raw, err := proto.Marshal(&cb.OrdererAddresses{Addresses: []string{"o1.example.com:7050", "o2.example.com:8050"}})
	if err != nil {
		t.Fatal(err)
	}
	c.ChannelGroup.Values["OrdererAddresses"] = &cb.ConfigValue{Value: raw}
	res, err := discovery.ConfigResult(c)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, ep := range res.Orderers["OrdererMSP"].GetEndpoint() {
		got = append(got, fmt.Sprintf("%s:%d", ep.Host, ep.Port))
	}
	if !slices.Equal(got, []string{"o1.example.com:7050", "o2.example.com:8050"}) {
		t.Fatalf("orderer endpoints %v", got)
	}
	if _, err := discovery.ConfigResult(&cb.Config{ChannelGroup: &cb.ConfigGroup{}}); err == nil {
		t.Fatal("a config without orderer and application groups gave a result")
	}
}

// FuzzDiscover feeds arbitrary request bytes, signed or not, to Discover: it
// must answer or refuse, never panic.
func FuzzDiscover(f *testing.F) {
	fx := newFixture(f)
	user := fx.client(f, 0, "User1")
	for _, r := range []*clientRequest{
		newClientRequest().ofChannel(channelID).addConfigQuery().addPeersQuery(&pb.ChaincodeCall{Name: "basic"}),
		newClientRequest().ofChannel(channelID).addEndorsersQuery(&pb.ChaincodeInterest{Chaincodes: []*pb.ChaincodeCall{{Name: "basic"}, {Name: "priv", CollectionNames: []string{"org1only"}}}}),
		newClientRequest().addLocalPeersQuery(),
	} {
		sr, err := r.signed(user.auth(), user.id.Sign)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(sr.Payload, sr.Signature)
	}
	f.Add([]byte{}, []byte{})
	ctx := tlsContext(user.tls.Certificate[0])
	f.Fuzz(func(t *testing.T, payload, sig []byte) {
		_, _ = fx.svc.Discover(ctx, &dpb.SignedRequest{Payload: payload, Signature: sig})
	})
}

func sortedKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

func describePeers(ps []decodedPeer) string {
	var parts []string
	for _, p := range ps {
		parts = append(parts, fmt.Sprintf("%s %s h%d %v", p.MSPID, p.Endpoint, p.Height, sortedStrings(p.Chaincodes)))
	}
	sort.Strings(parts)
	return strings.Join(parts, "; ")
}

func sortedStrings(s []string) []string {
	s = slices.Clone(s)
	sort.Strings(s)
	return s
}

// describeDescriptor renders a descriptor with groups named by their peers'
// organisation: "cc: {Org1MSP×1 Org2MSP×1} groups Org1MSP[endpoints in
// order]…". A group named in no layout's peers renders as "Org?[]".
func describeDescriptor(d *decodedDescriptor) string {
	orgOf := map[string]string{}
	for g, ps := range d.Groups {
		if len(ps) > 0 {
			orgOf[g] = ps[0].MSPID
		}
	}
	var layouts []string
	for _, l := range d.Layouts {
		var parts []string
		for g, n := range l {
			parts = append(parts, fmt.Sprintf("%s×%d", orgOf[g], n))
		}
		sort.Strings(parts)
		layouts = append(layouts, "{"+strings.Join(parts, " ")+"}")
	}
	var groups []string
	for g, ps := range d.Groups {
		var eps []string
		for _, p := range ps {
			eps = append(eps, p.Endpoint)
		}
		groups = append(groups, fmt.Sprintf("%s%v", orgOf[g], eps))
	}
	sort.Strings(groups)
	return fmt.Sprintf("%s: %s groups %s", d.Chaincode, strings.Join(layouts, " "), strings.Join(groups, " "))
}
