package netconfig_test

import (
	"reflect"
	"strings"
	"testing"

	"github.com/cairn-ledger/cairn/internal/netconfig"
)

func TestGenerateDefaultSize(t *testing.T) {
	n, err := netconfig.Generate(1, 1, 1)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(n, netconfig.Default()) {
		t.Fatalf("Generate(1, 1, 1) = %+v, want Default() %+v", n, netconfig.Default())
	}
}

// TestConsortium: the default consortium is 3 orderers and two
// organisations with two peers each, valid as a network description.
func TestConsortium(t *testing.T) {
	n := netconfig.Consortium()
	if err := n.Validate(); err != nil {
		t.Fatal(err)
	}
	if got := len(n.OrdererOrgs[0].Orderers); got != 3 || n.OrdererOrgs[0].MSPID != "OrdererMSP" {
		t.Fatalf("orderers %d of %s, want 3 of OrdererMSP", got, n.OrdererOrgs[0].MSPID)
	}
	var orgs []string
	for _, o := range n.PeerOrgs {
		orgs = append(orgs, o.MSPID)
		if len(o.Peers) != 2 {
			t.Fatalf("%s has %d peers, want 2", o.MSPID, len(o.Peers))
		}
	}
	if !reflect.DeepEqual(orgs, []string{"Org1MSP", "Org2MSP"}) || n.Channel.Name != "mychannel" {
		t.Fatalf("organisations %v, channel %s", orgs, n.Channel.Name)
	}
}

func TestGenerateNames(t *testing.T) {
	n, err := netconfig.Generate(3, 2, 5)
	if err != nil {
		t.Fatal(err)
	}
	if len(n.OrdererOrgs) != 1 || n.OrdererOrgs[0].MSPID != "OrdererMSP" || n.OrdererOrgs[0].Domain != "example.com" {
		t.Fatalf("orderer orgs = %+v", n.OrdererOrgs)
	}
	var orderers []string
	for _, o := range n.OrdererOrgs[0].Orderers {
		orderers = append(orderers, o.FullName(n.OrdererOrgs[0].Domain))
	}
	if got, want := strings.Join(orderers, " "), "orderer0.example.com orderer1.example.com orderer2.example.com orderer3.example.com orderer4.example.com"; got != want {
		t.Fatalf("orderers = %s, want %s", got, want)
	}
	var peers []string
	for i, org := range n.PeerOrgs {
		wantMSP := "Org" + string(rune('1'+i)) + "MSP"
		if org.MSPID != wantMSP || !reflect.DeepEqual(org.Users, []string{"User1"}) {
			t.Fatalf("org %d = %+v, want MSP %s with User1", i, org, wantMSP)
		}
		for _, p := range org.Peers {
			if p.Host != "127.0.0.1" || p.Port != 0 {
				t.Fatalf("peer %s: host %q port %d, want 127.0.0.1 and a port picked at start", p.Name, p.Host, p.Port)
			}
			peers = append(peers, p.FullName(org.Domain))
		}
	}
	if got, want := strings.Join(peers, " "), "peer0.org1.example.com peer1.org1.example.com peer0.org2.example.com peer1.org2.example.com peer0.org3.example.com peer1.org3.example.com"; got != want {
		t.Fatalf("peers = %s, want %s", got, want)
	}
	if n.Channel.Name != "mychannel" {
		t.Fatalf("channel = %q", n.Channel.Name)
	}
}

func TestGenerateLimits(t *testing.T) {
	for _, tc := range []struct {
		orgs, peers, orderers int
		want                  string // "" = valid
	}{
		{netconfig.MaxOrgs, netconfig.MaxPeersPerOrg, netconfig.MaxOrderers, ""},
		{0, 1, 1, "organisations: 0 is outside 1..10"},
		{11, 1, 1, "organisations: 11 is outside 1..10"},
		{1, 0, 1, "peers per organisation: 0 is outside 1..8"},
		{1, 9, 1, "peers per organisation: 9 is outside 1..8"},
		{1, 1, 0, "orderers: 0 is outside 1..7"},
		{1, 1, 8, "orderers: 8 is outside 1..7"},
		{-1, -1, -1, "orderers: -1 is outside"},
	} {
		n, err := netconfig.Generate(tc.orgs, tc.peers, tc.orderers)
		switch {
		case tc.want == "" && err != nil:
			t.Errorf("Generate(%d, %d, %d): %v", tc.orgs, tc.peers, tc.orderers, err)
		case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
			t.Errorf("Generate(%d, %d, %d) error = %v, want it to mention %q", tc.orgs, tc.peers, tc.orderers, err, tc.want)
		case tc.want != "" && n != nil:
			t.Errorf("Generate(%d, %d, %d) returned a network with an error", tc.orgs, tc.peers, tc.orderers)
		}
	}
}

func TestValidateRejectsMSPIDsFabricConfigCannotName(t *testing.T) {
	n := netconfig.Default()
	n.PeerOrgs[0].MSPID = "Org_1MSP"
	if err := n.Validate(); err == nil || !strings.Contains(err.Error(), "Org_1MSP") {
		t.Fatalf("Validate() = %v, want an error naming the MSP ID", err)
	}
}
