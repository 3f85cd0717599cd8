package localnet_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/tls"
	"fmt"
	"path/filepath"
	"slices"
	"sort"
	"testing"
	"time"

	dpb "github.com/hyperledger/fabric-protos-go-apiv2/discovery"
	gpb "github.com/hyperledger/fabric-protos-go-apiv2/gossip"
	mspproto "github.com/hyperledger/fabric-protos-go-apiv2/msp"
	pb "github.com/hyperledger/fabric-protos-go-apiv2/peer"
	"google.golang.org/protobuf/proto"

	"github.com/cairn-ledger/cairn/internal/comm"
	"github.com/cairn-ledger/cairn/internal/crypto"
	"github.com/cairn-ledger/cairn/internal/cryptogen"
	"github.com/cairn-ledger/cairn/internal/localnet"
	"github.com/cairn-ledger/cairn/internal/netconfig"
)

// TestDiscoveryService queries Fabric's discovery.Discovery service of a peer
// of a 2-organisation × 2-peer network, building requests and decoding
// answers as Fabric's discovery client does: the configuration lists both
// organisations' MSPs and the orderer endpoints; the channel's peers are the
// four peers with their heights and the basic chaincode; basic's descriptor
// (MAJORITY of two organisations) has one group per organisation of two peers
// each and one layout needing one of each; the organisation's admin gets the
// local peers; and a client whose signature is not by its certificate's key
// is denied.
func TestDiscoveryService(t *testing.T) {
	nw, err := netconfig.Generate(2, 2, 1)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	var progress bytes.Buffer
	n, err := localnet.Up(ctx, localnet.Options{Dir: t.TempDir(), Binary: cairnBin, Network: nw, Progress: &progress, NoSync: true})
	if err != nil {
		t.Fatalf("network up: %v\n%s", err, progress.String())
	}
	t.Cleanup(func() {
		if err := n.Stop(); err != nil {
			t.Errorf("network stop: %v", err)
		}
	})

	layout := cryptogen.Layout{Root: filepath.Join(n.Dir, "crypto")}
	org1, org2 := nw.PeerOrgs[0], nw.PeerOrgs[1]
	user := loadDiscoveryClient(t, layout, org1, org1.Users[0])
	admin := loadDiscoveryClient(t, layout, org1, cryptogen.AdminUser)
	other := loadDiscoveryClient(t, layout, org2, org2.Users[0])
	target := n.Info.Organizations[0].Peers[0]
	cl := dialDiscovery(t, target, user.tls)

	var wantPeers []string
	for _, o := range n.Info.Organizations {
		for _, p := range o.Peers {
			wantPeers = append(wantPeers, o.MSPID+" "+p.Address)
		}
	}
	sort.Strings(wantPeers)

	// The peer learns the other peers and their chaincodes within a few
	// membership rounds; ask until it describes all four.
	req := &dpb.Request{Queries: []*dpb.Query{
		{Channel: n.Info.Channel, Query: &dpb.Query_ConfigQuery{ConfigQuery: &dpb.ConfigQuery{}}},
		{Channel: n.Info.Channel, Query: &dpb.Query_PeerQuery{PeerQuery: &dpb.PeerMembershipQuery{Filter: &pb.ChaincodeInterest{}}}},
		{Channel: n.Info.Channel, Query: &dpb.Query_CcQuery{CcQuery: &dpb.ChaincodeQuery{Interests: []*pb.ChaincodeInterest{{Chaincodes: []*pb.ChaincodeCall{{Name: "basic"}}}}}}},
	}}
	var resp *dpb.Response
	var peers []discoveredPeer
	for deadline := time.Now().Add(45 * time.Second); ; {
		resp, err = user.discover(ctx, cl, req, user.id.Sign)
		if err != nil {
			t.Fatal(err)
		}
		peers, err = decodeDiscoveredPeers(resp.Results[1].GetMembers())
		if err != nil {
			t.Fatalf("peers result %v: %v", resp.Results[1], err)
		}
		if len(peers) == 4 && allRun(peers, "basic") && resp.Results[2].GetCcQueryRes() != nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("peer describes %d peers %+v; endorsers: %v", len(peers), peers, resp.Results[2])
		}
		time.Sleep(500 * time.Millisecond)
	}

	// Configuration.
	conf := resp.Results[0].GetConfigResult()
	if conf == nil {
		t.Fatalf("config result: %v", resp.Results[0])
	}
	for _, id := range []string{"Org1MSP", "Org2MSP", "OrdererMSP"} {
		if conf.Msps[id] == nil || conf.Msps[id].GetName() != id || len(conf.Msps[id].GetRootCerts()) == 0 {
			t.Errorf("config result MSP %s: %v", id, conf.Msps[id])
		}
	}
	var gotOrderers, wantOrderers []string
	for _, ep := range conf.Orderers["OrdererMSP"].GetEndpoint() {
		gotOrderers = append(gotOrderers, fmt.Sprintf("%s:%d", ep.Host, ep.Port))
	}
	for _, o := range n.Info.Orderers {
		wantOrderers = append(wantOrderers, o.Address)
	}
	sort.Strings(gotOrderers)
	sort.Strings(wantOrderers)
	if !slices.Equal(gotOrderers, wantOrderers) {
		t.Errorf("orderer endpoints %v, want %v", gotOrderers, wantOrderers)
	}

	// Peers.
	var gotPeers []string
	for _, p := range peers {
		gotPeers = append(gotPeers, p.MSPID+" "+p.Endpoint)
		if p.Height < 2 {
			t.Errorf("peer %s reports height %d", p.Endpoint, p.Height)
		}
	}
	sort.Strings(gotPeers)
	if !slices.Equal(gotPeers, wantPeers) {
		t.Fatalf("peers %v, want %v", gotPeers, wantPeers)
	}

	// Endorsement descriptor of basic.
	descs := resp.Results[2].GetCcQueryRes().GetContent()
	if len(descs) != 1 || descs[0].GetChaincode() != "basic" {
		t.Fatalf("descriptors %v", descs)
	}
	d := descs[0]
	groupOrg := map[string]string{}
	for g, ps := range d.GetEndorsersByGroups() {
		var eps []string
		for _, p := range ps.GetPeers() {
			e, err := decodeDiscoveredPeer(p)
			if err != nil {
				t.Fatalf("endorser of group %s: %v", g, err)
			}
			if groupOrg[g] != "" && groupOrg[g] != e.MSPID {
				t.Fatalf("group %s mixes %s and %s", g, groupOrg[g], e.MSPID)
			}
			groupOrg[g] = e.MSPID
			eps = append(eps, e.Endpoint)
		}
		if len(eps) != 2 {
			t.Errorf("group %s (%s) has endorsers %v, want the organisation's 2 peers", g, groupOrg[g], eps)
		}
	}
	if orgs := sortedValues(groupOrg); !slices.Equal(orgs, []string{"Org1MSP", "Org2MSP"}) {
		t.Fatalf("groups by organisation %v", groupOrg)
	}
	if len(d.GetLayouts()) != 1 {
		t.Fatalf("layouts %v, want one", d.GetLayouts())
	}
	for g := range groupOrg {
		if d.GetLayouts()[0].GetQuantitiesByGroup()[g] != 1 || len(d.GetLayouts()[0].GetQuantitiesByGroup()) != 2 {
			t.Fatalf("layout %v, want one peer of each organisation", d.GetLayouts()[0].GetQuantitiesByGroup())
		}
	}

	// Local peers, as the organisation's admin (its own TLS session).
	acl := dialDiscovery(t, target, admin.tls)
	local, err := admin.discover(ctx, acl, &dpb.Request{Queries: []*dpb.Query{{Query: &dpb.Query_LocalPeers{LocalPeers: &dpb.LocalPeerQuery{}}}}}, admin.id.Sign)
	if err != nil {
		t.Fatal(err)
	}
	if m := local.Results[0].GetMembers(); m == nil || countPeers(m) != 4 {
		t.Fatalf("local peers: %v", local.Results[0])
	}

	// A signature by another key than the certificate's: every query denied.
	denied, err := user.discover(ctx, cl, req, other.id.Sign)
	if err != nil {
		t.Fatal(err)
	}
	for i, r := range denied.Results {
		if r.GetError().GetContent() != "access denied" {
			t.Errorf("query %d with a forged signature: %v, want access denied", i, r)
		}
	}
}

// discoveryClient is an enrollment identity and the TLS pair its
// application connects with.
type discoveryClient struct {
	id  *crypto.SigningIdentity
	tls tls.Certificate
}

func loadDiscoveryClient(t *testing.T, l cryptogen.Layout, org netconfig.PeerOrg, user string) discoveryClient {
	t.Helper()
	id, err := crypto.LoadSigningIdentity(org.MSPID, l.UserMSPDir(true, org.Domain, user))
	if err != nil {
		t.Fatal(err)
	}
	c, err := tls.LoadX509KeyPair(l.UserTLSCertPath(true, org.Domain, user), l.UserTLSKeyPath(true, org.Domain, user))
	if err != nil {
		t.Fatal(err)
	}
	return discoveryClient{id: id, tls: c}
}

func dialDiscovery(t *testing.T, p localnet.Peer, cert tls.Certificate) dpb.DiscoveryClient {
	t.Helper()
	pool, err := comm.CertPool(p.TLSRootCert)
	if err != nil {
		t.Fatal(err)
	}
	conn, err := comm.Dial(p.Address, &tls.Config{RootCAs: pool, ServerName: p.Name, Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return dpb.NewDiscoveryClient(conn)
}

// discover sends req as Fabric's discovery client does: the AuthInfo names
// the client's identity and the SHA-256 of its TLS certificate, and the
// marshalled request is signed (by sign, normally the identity's own key).
func (c discoveryClient) discover(ctx context.Context, cl dpb.DiscoveryClient, req *dpb.Request, sign func([]byte) ([]byte, error)) (*dpb.Response, error) {
	hash := sha256.Sum256(c.tls.Certificate[0])
	r := proto.Clone(req).(*dpb.Request)
	r.Authentication = &dpb.AuthInfo{ClientIdentity: c.id.Serialize(), ClientTlsCertHash: hash[:]}
	payload, err := proto.Marshal(r)
	if err != nil {
		return nil, err
	}
	sig, err := sign(payload)
	if err != nil {
		return nil, err
	}
	resp, err := cl.Discover(ctx, &dpb.SignedRequest{Payload: payload, Signature: sig})
	if err != nil {
		return nil, fmt.Errorf("discovery service refused our Request: %w", err)
	}
	if len(resp.GetResults()) != len(req.GetQueries()) {
		return nil, fmt.Errorf("sent %d queries but received %d responses back", len(req.GetQueries()), len(resp.GetResults()))
	}
	return resp, nil
}

// discoveredPeer is a peer as Fabric's discovery client reads it.
type discoveredPeer struct {
	MSPID      string
	Endpoint   string
	Height     uint64
	Chaincodes []string
}

func decodeDiscoveredPeers(m *dpb.PeerMembershipResult) ([]discoveredPeer, error) {
	var out []discoveredPeer
	for org, ps := range m.GetPeersByOrg() {
		for _, p := range ps.GetPeers() {
			dp, err := decodeDiscoveredPeer(p)
			if err != nil {
				return nil, err
			}
			if dp.MSPID != org {
				return nil, fmt.Errorf("peer %s of %s listed under %s", dp.Endpoint, dp.MSPID, org)
			}
			out = append(out, dp)
		}
	}
	return out, nil
}

// decodeDiscoveredPeer unmarshals the gossip envelopes' payloads and checks
// them as Fabric's client does (alive message with membership and
// timestamp; state info with timestamp and properties).
func decodeDiscoveredPeer(p *dpb.Peer) (discoveredPeer, error) {
	alive, state := &gpb.GossipMessage{}, &gpb.GossipMessage{}
	if err := proto.Unmarshal(p.GetMembershipInfo().GetPayload(), alive); err != nil {
		return discoveredPeer{}, err
	}
	if err := proto.Unmarshal(p.GetStateInfo().GetPayload(), state); err != nil {
		return discoveredPeer{}, err
	}
	am, si := alive.GetAliveMsg(), state.GetStateInfo()
	if am.GetMembership() == nil || am.GetTimestamp() == nil || si.GetTimestamp() == nil || si.GetProperties() == nil {
		return discoveredPeer{}, fmt.Errorf("incomplete gossip messages: %v / %v", am, si)
	}
	sid := &mspproto.SerializedIdentity{}
	if err := proto.Unmarshal(p.GetIdentity(), sid); err != nil {
		return discoveredPeer{}, err
	}
	dp := discoveredPeer{MSPID: sid.GetMspid(), Endpoint: am.GetMembership().GetEndpoint(), Height: si.GetProperties().GetLedgerHeight()}
	for _, cc := range si.GetProperties().GetChaincodes() {
		dp.Chaincodes = append(dp.Chaincodes, cc.GetName())
	}
	return dp, nil
}

func allRun(peers []discoveredPeer, cc string) bool {
	for _, p := range peers {
		if !slices.Contains(p.Chaincodes, cc) {
			return false
		}
	}
	return true
}

func countPeers(m *dpb.PeerMembershipResult) int {
	n := 0
	for _, ps := range m.GetPeersByOrg() {
		n += len(ps.GetPeers())
	}
	return n
}

func sortedValues(m map[string]string) []string {
	var out []string
	for _, v := range m {
		out = append(out, v)
	}
	sort.Strings(out)
	return out
}
