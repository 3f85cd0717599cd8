package channelconfig_test

import (
	"bytes"
	"os"
	"testing"
	"time"

	"github.com/cairn-ledger/cairn/internal/block"
	"github.com/cairn-ledger/cairn/internal/channelconfig"
	"github.com/cairn-ledger/cairn/internal/cryptogen"
	"github.com/cairn-ledger/cairn/internal/netconfig"
)

func testNetwork(t *testing.T) (*netconfig.Network, string) {
	t.Helper()
	net := netconfig.Default()
	net.OrdererOrgs[0].Orderers[0].Port = 7050
	net.OrdererOrgs[0].Orderers[0].ClusterPort = 7060
	net.PeerOrgs[0].Peers[0].Port = 7051
	net.PeerOrgs = append(net.PeerOrgs, netconfig.PeerOrg{
		Name: "Org2", MSPID: "Org2MSP", Domain: "org2.example.com",
		Peers: []netconfig.Node{{Name: "peer0", Host: "127.0.0.1", Port: 9051}},
	})
	net.Channel.BatchSize.MaxMessageCount = 42
	net.Channel.BatchTimeout = netconfig.Duration(300 * time.Millisecond)
	dir := t.TempDir()
	if err := cryptogen.Generate(net, dir); err != nil {
		t.Fatal(err)
	}
	return net, dir
}

// TestGenesisRoundTrip builds a genesis block with fabric-config and reads it
// back: every part the orderer and peer rely on must survive.
func TestGenesisRoundTrip(t *testing.T) {
	net, dir := testNetwork(t)
	gb, err := channelconfig.Genesis(net, dir)
	if err != nil {
		t.Fatal(err)
	}
	if gb.Header.Number != 0 || !block.IsConfig(gb) {
		t.Fatal("genesis is not config block 0")
	}
	if !bytes.Equal(gb.Header.DataHash, block.DataHash(gb.Data)) {
		t.Fatal("genesis data hash does not match its data")
	}
	b, err := channelconfig.FromBlock(gb)
	if err != nil {
		t.Fatal(err)
	}
	if b.ChannelID() != "mychannel" || b.Sequence() != 0 {
		t.Fatalf("channel %q sequence %d", b.ChannelID(), b.Sequence())
	}
	o := b.Orderer()
	if o.MaxMessageCount != 42 || o.BatchTimeout != 300*time.Millisecond || o.AbsoluteMaxBytes != 10<<20 || o.PreferredMaxBytes != 2<<20 {
		t.Fatalf("batch parameters %+v", o)
	}
	if len(o.Consenters) != 1 || o.Consenters[0].Host != "127.0.0.1" || o.Consenters[0].Port != 7060 {
		t.Fatalf("consenters %+v", o.Consenters)
	}
	tlsCert, err := os.ReadFile(cryptogen.Layout{Root: dir}.NodeTLSCertPath(false, "example.com", "orderer0.example.com"))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(bytes.TrimSpace(o.Consenters[0].ServerTLSCert), bytes.TrimSpace(tlsCert)) {
		t.Fatal("consenter server TLS certificate is not the orderer's TLS certificate")
	}
	if len(o.Endpoints) != 1 || o.Endpoints[0] != "127.0.0.1:7050" {
		t.Fatalf("orderer endpoints %v", o.Endpoints)
	}
	if len(o.TLSRootCerts) != 1 {
		t.Fatalf("orderer TLS roots: %d", len(o.TLSRootCerts))
	}
	if o.Raft.TickInterval != 100*time.Millisecond || o.Raft.ElectionTick != 10 || o.Raft.HeartbeatTick != 1 {
		t.Fatalf("raft options %+v", o.Raft)
	}
	app := b.Application()
	if len(app.Orgs) != 2 {
		t.Fatalf("application orgs %+v", app.Orgs)
	}
	for _, org := range app.Orgs {
		if len(org.AnchorPeers) != 1 || len(org.TLSRootCerts) != 1 {
			t.Fatalf("org %s anchors %v roots %d", org.MSPID, org.AnchorPeers, len(org.TLSRootCerts))
		}
	}
	if got := b.ACLPolicy("peer/Propose", "x"); got != "/Channel/Application/Writers" {
		t.Fatalf("peer/Propose ACL %q", got)
	}
	if got := b.ACLPolicy("no/such", "/Channel/Application/Readers"); got != "/Channel/Application/Readers" {
		t.Fatalf("default ACL %q", got)
	}
	for _, path := range []string{
		"/Channel/Readers", "/Channel/Writers", "/Channel/Admins",
		"/Channel/Application/Readers", "/Channel/Application/Writers", "/Channel/Application/Admins",
		"/Channel/Application/Endorsement", "/Channel/Application/LifecycleEndorsement",
		"/Channel/Application/Org1MSP/Endorsement", "/Channel/Application/Org2MSP/Admins",
		"/Channel/Orderer/BlockValidation", "/Channel/Orderer/Writers",
	} {
		if _, err := b.Policies().Policy(path); err != nil {
			t.Errorf("policy %s: %v", path, err)
		}
	}
	if ids := b.MSPs().IDs(); len(ids) != 3 {
		t.Fatalf("MSPs %v, want OrdererMSP, Org1MSP, Org2MSP", ids)
	}
}

// TestGenesisPolicies checks the standard policies behave: the user of Org1
// satisfies Writers, a peer does not; the orderer signs BlockValidation.
func TestGenesisPolicies(t *testing.T) {
	net, dir := testNetwork(t)
	gb, err := channelconfig.Genesis(net, dir)
	if err != nil {
		t.Fatal(err)
	}
	b, err := channelconfig.FromBlock(gb)
	if err != nil {
		t.Fatal(err)
	}
	l := cryptogen.Layout{Root: dir}
	sign := func(mspID, mspDir string) []policySigned {
		id := loadIdentity(t, mspID, mspDir)
		msg := []byte("hello")
		sig, err := id.Sign(msg)
		if err != nil {
			t.Fatal(err)
		}
		return []policySigned{{msg, id.Serialize(), sig}}
	}
	user := sign("Org1MSP", l.UserMSPDir(true, "org1.example.com", "User1"))
	peer := sign("Org1MSP", l.NodeMSPDir(true, "org1.example.com", "peer0.org1.example.com"))
	orderer := sign("OrdererMSP", l.NodeMSPDir(false, "example.com", "orderer0.example.com"))
	cases := []struct {
		path   string
		signed []policySigned
		ok     bool
	}{
		{"/Channel/Application/Writers", user, true},
		{"/Channel/Application/Writers", peer, false},
		{"/Channel/Application/Readers", peer, true},
		{"/Channel/Application/Org1MSP/Endorsement", peer, true},
		{"/Channel/Application/Org1MSP/Endorsement", user, false},
		{"/Channel/Application/Endorsement", peer, false}, // MAJORITY of 2 orgs needs both
		{"/Channel/Orderer/BlockValidation", orderer, true},
		{"/Channel/Orderer/BlockValidation", peer, false},
		{"/Channel/Writers", user, true},
	}
	for _, c := range cases {
		p, err := b.Policies().Policy(c.path)
		if err != nil {
			t.Fatal(err)
		}
		err = p.Evaluate(toSigned(c.signed))
		if (err == nil) != c.ok {
			t.Errorf("%s: err = %v, want ok=%v", c.path, err, c.ok)
		}
	}
}
