package gateway_test

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"os"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hyperledger/fabric-gateway/pkg/client"
	"github.com/hyperledger/fabric-gateway/pkg/identity"
	cb "github.com/hyperledger/fabric-protos-go-apiv2/common"
	gp "github.com/hyperledger/fabric-protos-go-apiv2/gateway"
	"github.com/hyperledger/fabric-protos-go-apiv2/ledger/rwset/kvrwset"
	mspproto "github.com/hyperledger/fabric-protos-go-apiv2/msp"
	ab "github.com/hyperledger/fabric-protos-go-apiv2/orderer"
	"github.com/hyperledger/fabric-protos-go-apiv2/peer"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/proto"

	"github.com/cairn-ledger/cairn/gateway"
	"github.com/cairn-ledger/cairn/internal/channelconfig"
	"github.com/cairn-ledger/cairn/internal/comm"
	"github.com/cairn-ledger/cairn/internal/crypto"
	"github.com/cairn-ledger/cairn/internal/cryptogen"
	"github.com/cairn-ledger/cairn/internal/envelope"
	"github.com/cairn-ledger/cairn/internal/netconfig"
	"github.com/cairn-ledger/cairn/internal/policy"
)

// fakeNetwork is the gateway's view of a three-organisation channel: a real
// configuration bundle (cryptogen material, Cairn's genesis policies) and
// chaincode policies set by each test.
type fakeNetwork struct {
	bundle *channelconfig.Bundle

	mu        sync.Mutex
	peers     []gateway.Peer
	policies  map[string]string // namespace → DSL, or a channel policy path
	keys      map[string][]byte // namespace/key → validation parameter
	refreshed int
	onRefresh func(*fakeNetwork) // called by Refresh with mu held, if set
}

func (n *fakeNetwork) Peers(string) []gateway.Peer {
	n.mu.Lock()
	defer n.mu.Unlock()
	return slices.Clone(n.peers)
}

func (n *fakeNetwork) Bundle(id string) (*channelconfig.Bundle, error) {
	if id != "mychannel" {
		return nil, fmt.Errorf("%w: %s", gateway.ErrChannelNotFound, id)
	}
	return n.bundle, nil
}

func (n *fakeNetwork) EndorsementPolicy(_, ns string, writes []*kvrwset.KVWrite) (*cb.SignaturePolicyEnvelope, string, error) {
	if ns == "_lifecycle" {
		// What peer/internal/lifecycle.ValidationPolicyForWrites decides.
		for _, w := range writes {
			if rest, ok := strings.CutPrefix(w.Key, "approvals/"); ok {
				return nil, "/Channel/Application/" + strings.SplitN(rest, "/", 2)[0] + "/Endorsement", nil
			}
		}
		return nil, "/Channel/Application/LifecycleEndorsement", nil
	}
	n.mu.Lock()
	p, ok := n.policies[ns]
	n.mu.Unlock()
	if !ok {
		return nil, "", fmt.Errorf("chaincode %s is not defined", ns)
	}
	if strings.HasPrefix(p, "/") {
		return nil, p, nil
	}
	spe, err := policy.ParseDSL(p)
	return spe, "", err
}

func (n *fakeNetwork) KeyValidationParameter(_, ns, key string) ([]byte, error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.keys[ns+"/"+key], nil
}

func (n *fakeNetwork) Refresh(context.Context, string) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.refreshed++
	if n.onRefresh != nil {
		n.onRefresh(n)
	}
}

// orgNet is a gateway of Org1 in a channel of three organisations with two
// peers each; every peer is a fakeEndorser, the remote ones served over TLS
// with their cryptogen certificates.
type orgNet struct {
	net       *fakeNetwork
	endorsers map[string]*fakeEndorser // by peer address
	addrOf    map[string]string        // "peer1.org2" → address
	contract  *client.Contract
	gw        *client.Gateway
}

const localAddress = "peer0.org1.example.com:7051"

func newOrgNet(t *testing.T) *orgNet {
	t.Helper()
	nc, err := netconfig.Generate(3, 2, 1)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	if err := cryptogen.Generate(nc, dir); err != nil {
		t.Fatal(err)
	}
	for i := range nc.PeerOrgs {
		for j := range nc.PeerOrgs[i].Peers {
			nc.PeerOrgs[i].Peers[j].Port = 7051 + 10*i + j // anchor peers only; never dialled
		}
	}
	for j := range nc.OrdererOrgs[0].Orderers {
		nc.OrdererOrgs[0].Orderers[j].Port = 7050
	}
	gb, err := channelconfig.Genesis(nc, dir)
	if err != nil {
		t.Fatal(err)
	}
	bundle, err := channelconfig.FromBlock(gb)
	if err != nil {
		t.Fatal(err)
	}
	l := cryptogen.Layout{Root: dir}
	on := &orgNet{
		net:       &fakeNetwork{bundle: bundle, policies: map[string]string{}, keys: map[string][]byte{}},
		endorsers: map[string]*fakeEndorser{},
		addrOf:    map[string]string{},
	}
	var local *fakeEndorser
	for i, org := range nc.PeerOrgs {
		roots, err := os.ReadFile(l.TLSCACertPath(true, org.Domain))
		if err != nil {
			t.Fatal(err)
		}
		for j, nd := range org.Peers {
			full := nd.FullName(org.Domain)
			id, err := crypto.LoadSigningIdentity(org.MSPID, l.NodeMSPDir(true, org.Domain, full))
			if err != nil {
				t.Fatal(err)
			}
			fe := &fakeEndorser{signer: id}
			addr := localAddress
			if i == 0 && j == 0 {
				local = fe
			} else {
				tlsCert, err := tls.LoadX509KeyPair(l.NodeTLSCertPath(true, org.Domain, full), l.NodeTLSKeyPath(true, org.Domain, full))
				if err != nil {
					t.Fatal(err)
				}
				addr = serve(t, &tls.Config{Certificates: []tls.Certificate{tlsCert}, MinVersion: tls.VersionTLS12},
					func(s *grpc.Server) { peer.RegisterEndorserServer(s, fe) })
			}
			on.endorsers[addr] = fe
			on.addrOf[fmt.Sprintf("peer%d.org%d", j, i+1)] = addr
			on.net.peers = append(on.net.peers, gateway.Peer{
				Address: addr, MSPID: org.MSPID, Identity: id.Serialize(), TLSRootCerts: [][]byte{roots},
				Height: 10, Chaincodes: []string{"basic", "other"}, Local: i == 0 && j == 0,
			})
		}
	}

	ca := newTestCA(t)
	ledger := newFakeLedger()
	ord := &fakeOrderer{ledger: ledger}
	ordAddr := serve(t, ca.serverTLS(t), func(s *grpc.Server) { ab.RegisterAtomicBroadcastServer(s, ord) })
	srv, err := gateway.New(gateway.Config{
		Endorser:           local,
		Channels:           &fakeChannels{ledger: ledger, orderers: []string{ordAddr}, rootCerts: [][]byte{ca.pem}, deny: map[string]bool{}},
		Network:            on.net,
		Address:            localAddress,
		MSPID:              "Org1MSP",
		EndorsementTimeout: 5 * time.Second,
		OrdererTLS:         &tls.Config{MinVersion: tls.VersionTLS12},
		PeerTLS:            &tls.Config{MinVersion: tls.VersionTLS12},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := srv.Close(); err != nil {
			t.Error(err)
		}
	})
	gwAddr := serve(t, ca.serverTLS(t), func(s *grpc.Server) { gp.RegisterGatewayServer(s, srv) })
	conn, err := comm.Dial(gwAddr, ca.clientTLS())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	user, err := crypto.LoadSigningIdentity("Org1MSP", l.UserMSPDir(true, "org1.example.com", "User1"))
	if err != nil {
		t.Fatal(err)
	}
	cert, err := identity.CertificateFromPEM(user.CertPEM)
	if err != nil {
		t.Fatal(err)
	}
	xid, err := identity.NewX509Identity("Org1MSP", cert)
	if err != nil {
		t.Fatal(err)
	}
	gw, err := client.Connect(xid, client.WithSign(user.Sign), client.WithClientConnection(conn))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { gw.Close() })
	on.gw = gw
	on.contract = gw.GetNetwork("mychannel").GetContract("basic")
	return on
}

func (on *orgNet) setPolicy(ns, p string) {
	on.net.mu.Lock()
	defer on.net.mu.Unlock()
	on.net.policies[ns] = p
}

// endorse returns the MSP IDs (sorted) and addresses of the endorsers of a
// prepared transaction.
func endorse(t *testing.T, contract *client.Contract, fn string, args ...string) ([]string, []string, error) {
	t.Helper()
	prop, err := contract.NewProposal(fn, client.WithArguments(args...))
	if err != nil {
		t.Fatal(err)
	}
	txn, err := prop.Endorse()
	if err != nil {
		return nil, nil, err
	}
	raw, err := txn.Bytes()
	if err != nil {
		t.Fatal(err)
	}
	prepared := &gp.PreparedTransaction{}
	if err := proto.Unmarshal(raw, prepared); err != nil {
		t.Fatal(err)
	}
	parsed, err := envelope.Parse(prepared.Envelope)
	if err != nil {
		t.Fatal(err)
	}
	tx, err := envelope.UnpackTransaction(parsed)
	if err != nil {
		t.Fatal(err)
	}
	var msps, certs []string
	for _, e := range tx.Endorsements() {
		si := &mspproto.SerializedIdentity{}
		if err := proto.Unmarshal(e.Endorser, si); err != nil {
			t.Fatal(err)
		}
		msps = append(msps, si.Mspid)
		certs = append(certs, string(si.IdBytes))
	}
	sort.Strings(msps)
	return msps, certs, nil
}

func TestEndorsePlansFromChaincodePolicy(t *testing.T) {
	on := newOrgNet(t)
	for _, tc := range []struct {
		policy string
		want   []string
	}{
		{"AND('Org1MSP.peer','Org3MSP.peer')", []string{"Org1MSP", "Org3MSP"}},
		{"OR('Org1MSP.peer','Org2MSP.peer')", []string{"Org1MSP"}},
		{"OR('Org2MSP.peer','Org3MSP.peer')", []string{"Org_"}},        // Org2 or Org3
		{"OutOf(2,'Org1MSP.peer','Org2MSP.peer','Org3MSP.peer')", nil}, // Org1 and one other
		{"OutOf(3,'Org1MSP.peer','Org2MSP.peer','Org3MSP.peer')", []string{"Org1MSP", "Org2MSP", "Org3MSP"}},
		{"/Channel/Application/Endorsement", nil}, // MAJORITY of 3: Org1 and one other
	} {
		on.setPolicy("basic", tc.policy)
		got, _, err := endorse(t, on.contract, "echo", "x")
		if err != nil {
			t.Fatalf("%s: %v", tc.policy, err)
		}
		otherOnly := len(tc.want) == 1 && tc.want[0] == "Org_"
		if otherOnly {
			if len(got) != 1 || got[0] == "Org1MSP" {
				t.Errorf("%s: endorsed by %v, want one of Org2MSP, Org3MSP", tc.policy, got)
			}
			continue
		}
		if tc.want == nil && !org1AndOneOther(got) || tc.want != nil && !slices.Equal(got, tc.want) {
			t.Errorf("%s: endorsed by %v, want %v", tc.policy, got, tc.want)
		}
	}
}

// org1AndOneOther: the layouts preferred are those with the gateway's own
// organisation, whose first endorsement counts; which other organisation
// completes a two-of-three layout is not specified.
func org1AndOneOther(msps []string) bool {
	return len(msps) == 2 && msps[0] == "Org1MSP" && msps[1] != "Org1MSP"
}

func TestEndorseAddsKeyLevelPolicies(t *testing.T) {
	on := newOrgNet(t)
	on.setPolicy("basic", "OR('Org1MSP.peer')")
	spe, err := policy.ParseDSL("AND('Org3MSP.peer')")
	if err != nil {
		t.Fatal(err)
	}
	raw, _ := proto.Marshal(spe)
	on.net.keys["basic/guarded"] = raw
	// One key with a key-level policy and one without: both policies apply.
	got, _, err := endorse(t, on.contract, "write", "guarded", "plain")
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(got, []string{"Org1MSP", "Org3MSP"}) {
		t.Fatalf("endorsed by %v, want Org1MSP (chaincode) and Org3MSP (key)", got)
	}
	// Only the guarded key: its policy alone, as validation checks it.
	got, _, err = endorse(t, on.contract, "write", "guarded")
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(got, []string{"Org3MSP"}) {
		t.Fatalf("endorsed by %v, want Org3MSP only", got)
	}
}

func TestEndorseAddsCalledChaincodePolicy(t *testing.T) {
	on := newOrgNet(t)
	on.setPolicy("basic", "OR('Org1MSP.peer')")
	on.setPolicy("other", "AND('Org2MSP.peer')")
	got, _, err := endorse(t, on.contract, "call", "other")
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(got, []string{"Org1MSP", "Org2MSP"}) {
		t.Fatalf("endorsed by %v, want Org1MSP and Org2MSP (called chaincode)", got)
	}
}

func TestEndorseLifecycle(t *testing.T) {
	on := newOrgNet(t)
	lc := on.gw.GetNetwork("mychannel").GetContract("_lifecycle")
	// A definition: LifecycleEndorsement, MAJORITY of three.
	got, _, err := endorse(t, lc, "write", "definitions/basic")
	if err != nil {
		t.Fatal(err)
	}
	if !org1AndOneOther(got) {
		t.Fatalf("definition endorsed by %v, want a majority with the gateway's org", got)
	}
	// An approval: the approving organisation's peers alone.
	got, _, err = endorse(t, lc, "write", "approvals/Org1MSP/basic#1")
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(got, []string{"Org1MSP"}) {
		t.Fatalf("approval endorsed by %v, want Org1MSP only", got)
	}
}

func TestEndorseRetriesAnotherPeerOfTheOrganisation(t *testing.T) {
	on := newOrgNet(t)
	on.setPolicy("basic", "AND('Org1MSP.peer','Org2MSP.peer')")
	peer0, peer1 := on.addrOf["peer0.org2"], on.addrOf["peer1.org2"]
	// Equal heights: addresses decide the order; make the first one fail.
	first, second := peer0, peer1
	if second < first {
		first, second = second, first
	}
	on.endorsers[first].down = true
	got, _, err := endorse(t, on.contract, "echo", "x")
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(got, []string{"Org1MSP", "Org2MSP"}) {
		t.Fatalf("endorsed by %v", got)
	}
	if on.endorsers[first].callCount() != 1 || on.endorsers[second].callCount() != 1 {
		t.Fatalf("calls: %s %d, %s %d; want one each", first, on.endorsers[first].callCount(), second, on.endorsers[second].callCount())
	}
}

func TestEndorseFailingOrganisation(t *testing.T) {
	on := newOrgNet(t)
	on.setPolicy("basic", "AND('Org1MSP.peer','Org2MSP.peer')")
	for _, p := range []string{"peer0.org2", "peer1.org2"} {
		on.endorsers[on.addrOf[p]].down = true
	}
	_, err := on.contract.SubmitTransaction("echo", "x")
	var endorseErr *client.EndorseError
	if !errors.As(err, &endorseErr) {
		t.Fatalf("error %T %v, want *client.EndorseError", err, err)
	}
	st := statusOf(t, err)
	if st.Code() != codes.Aborted || st.Message() != "failed to collect enough transaction endorsements, see attached details for more info" {
		t.Fatalf("status %v %q", st.Code(), st.Message())
	}
	ds := details(st)
	var addrs []string
	for _, d := range ds {
		if d.MspId != "Org2MSP" || d.Message != "peer is down for maintenance" {
			t.Errorf("detail %v", d)
		}
		addrs = append(addrs, d.Address)
	}
	want := []string{on.addrOf["peer0.org2"], on.addrOf["peer1.org2"]}
	sort.Strings(addrs)
	sort.Strings(want)
	if !slices.Equal(addrs, want) {
		t.Fatalf("details name %v, want %v", addrs, want)
	}
}

func TestEndorseMismatchingResults(t *testing.T) {
	on := newOrgNet(t)
	on.setPolicy("basic", "AND('Org1MSP.peer','Org2MSP.peer')")
	for _, p := range []string{"peer0.org2", "peer1.org2"} {
		on.endorsers[on.addrOf[p]].skew = true
	}
	_, _, err := endorse(t, on.contract, "echo", "x")
	st := statusOf(t, err)
	if st.Code() != codes.Aborted || st.Message() != "failed to collect enough transaction endorsements, see attached details for more info" {
		t.Fatalf("status %v %q", st.Code(), st.Message())
	}
	ds := details(st)
	if len(ds) != 2 {
		t.Fatalf("details %v, want one per Org2 peer", ds)
	}
	for _, d := range ds {
		if d.MspId != "Org2MSP" || d.Message != "ProposalResponsePayloads do not match" {
			t.Errorf("detail %v", d)
		}
	}
}

func TestEndorsingOrganizationsOverridePlan(t *testing.T) {
	on := newOrgNet(t)
	on.setPolicy("basic", "AND('Org1MSP.peer','Org2MSP.peer')")
	prop, err := on.contract.NewProposal("echo", client.WithArguments("x"), client.WithEndorsingOrganizations("Org3MSP"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := prop.Endorse(); err != nil {
		t.Fatal(err)
	}
	for addr, e := range on.endorsers {
		want := 0
		if addr == on.addrOf["peer0.org3"] || addr == on.addrOf["peer1.org3"] {
			want = -1 // one of the two
		}
		if want == 0 && e.callCount() != 0 {
			t.Errorf("%s asked, want only an Org3 peer", addr)
		}
	}
	if on.endorsers[on.addrOf["peer0.org3"]].callCount()+on.endorsers[on.addrOf["peer1.org3"]].callCount() != 1 {
		t.Error("want exactly one Org3 endorsement")
	}
	prop, err = on.contract.NewProposal("echo", client.WithArguments("x"), client.WithEndorsingOrganizations("Org9MSP"))
	if err != nil {
		t.Fatal(err)
	}
	_, err = prop.Endorse()
	if st := statusOf(t, err); st.Code() != codes.Unavailable || st.Message() != "failed to find any endorsing peers for org(s): Org9MSP" {
		t.Fatalf("status %v %q", st.Code(), st.Message())
	}
}

func TestEvaluatePrefersHighestPeerOfOwnOrganisation(t *testing.T) {
	on := newOrgNet(t)
	on.setPolicy("basic", "OR('Org1MSP.peer')")
	on.net.mu.Lock()
	for i := range on.net.peers {
		switch on.net.peers[i].Address {
		case on.addrOf["peer1.org1"]:
			on.net.peers[i].Height = 12
		case on.addrOf["peer0.org2"]:
			on.net.peers[i].Height = 20 // higher, but another organisation
		}
	}
	on.net.mu.Unlock()
	if _, err := on.contract.EvaluateTransaction("echo", "x"); err != nil {
		t.Fatal(err)
	}
	if n := on.endorsers[on.addrOf["peer1.org1"]].callCount(); n != 1 {
		t.Fatalf("peer1.org1 (highest of Org1) asked %d times, want 1", n)
	}
	// The local peer is preferred at equal height.
	on.net.mu.Lock()
	for i := range on.net.peers {
		on.net.peers[i].Height = 10
	}
	on.net.mu.Unlock()
	if _, err := on.contract.EvaluateTransaction("echo", "x"); err != nil {
		t.Fatal(err)
	}
	if n := on.endorsers[localAddress].callCount(); n != 1 {
		t.Fatalf("local peer asked %d times, want 1", n)
	}
	// Org1 does not run the chaincode: the highest other peer evaluates.
	on.net.mu.Lock()
	for i := range on.net.peers {
		if on.net.peers[i].MSPID == "Org1MSP" {
			on.net.peers[i].Chaincodes = nil
		}
		if on.net.peers[i].Address == on.addrOf["peer1.org3"] {
			on.net.peers[i].Height = 15
		}
	}
	on.net.mu.Unlock()
	if _, err := on.contract.EvaluateTransaction("echo", "x"); err != nil {
		t.Fatal(err)
	}
	if n := on.endorsers[on.addrOf["peer1.org3"]].callCount(); n != 1 {
		t.Fatalf("peer1.org3 (highest peer running the chaincode) asked %d times, want 1", n)
	}
}

func TestEndorseRefreshesMembershipWhenUnsatisfiable(t *testing.T) {
	on := newOrgNet(t)
	on.setPolicy("basic", "AND('Org1MSP.peer','Org2MSP.peer')")
	on.net.mu.Lock()
	for i := range on.net.peers {
		if on.net.peers[i].MSPID == "Org2MSP" {
			on.net.peers[i].Chaincodes = nil // not known to run it (yet)
		}
	}
	on.net.mu.Unlock()
	_, _, err := endorse(t, on.contract, "echo", "x")
	st := statusOf(t, err)
	if st.Code() != codes.FailedPrecondition || !strings.HasPrefix(st.Message(), "no combination of peers can be derived which satisfy the endorsement policy") {
		t.Fatalf("status %v %q", st.Code(), st.Message())
	}
	if on.net.refreshed != 1 {
		t.Fatalf("membership refreshed %d times, want once", on.net.refreshed)
	}
}

// TestStaleMembershipRefreshedForEvaluateAndNamedOrgs: right after a
// chaincode is committed the membership may not list it yet, even for the
// local peer; evaluations and endorsements by named organisations refresh it
// once instead of failing, as planning from the policy does.
func TestStaleMembershipRefreshedForEvaluateAndNamedOrgs(t *testing.T) {
	on := newOrgNet(t)
	on.setPolicy("basic", "OR('Org1MSP.peer','Org2MSP.peer')")
	forget := func() {
		on.net.mu.Lock()
		defer on.net.mu.Unlock()
		known := map[string][]string{}
		for i := range on.net.peers {
			known[on.net.peers[i].Address] = on.net.peers[i].Chaincodes
			on.net.peers[i].Chaincodes = nil
		}
		on.net.onRefresh = func(n *fakeNetwork) {
			for i := range n.peers {
				n.peers[i].Chaincodes = known[n.peers[i].Address]
			}
		}
	}

	forget()
	if _, err := on.contract.EvaluateTransaction("echo", "x"); err != nil {
		t.Fatalf("evaluate with stale membership: %v", err)
	}
	if on.net.refreshed != 1 {
		t.Fatalf("membership refreshed %d times for the evaluation, want once", on.net.refreshed)
	}

	forget()
	prop, err := on.contract.NewProposal("echo", client.WithArguments("x"), client.WithEndorsingOrganizations("Org1MSP"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := prop.Endorse(); err != nil {
		t.Fatalf("endorse by a named organisation with stale membership: %v", err)
	}
	if on.net.refreshed != 2 {
		t.Fatalf("membership refreshed %d times in all, want twice", on.net.refreshed)
	}
}
