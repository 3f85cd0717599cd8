package localnet

import (
	"os"
	"slices"
	"testing"

	"github.com/cairn-ledger/cairn/internal/cryptogen"
	"github.com/cairn-ledger/cairn/internal/netconfig"
)

func TestProcessorsPerNode(t *testing.T) {
	tests := []struct {
		processes, cpus, want int
	}{
		{4, 2, 0},   // 3 orderers + a benchmark: Go's default, every core
		{8, 2, 1},   // 3 orderers, 2 peers, 2 chaincodes, a client on 2 cores
		{12, 2, 1},  // the default consortium on 2 cores
		{12, 8, 2},  // the default consortium on 8 cores
		{8, 16, 8},  // 4 Ps per core over all processes
		{100, 2, 1}, // never below one
	}
	for _, tc := range tests {
		if got := processorsPerNode(tc.processes, tc.cpus); got != tc.want {
			t.Errorf("processorsPerNode(%d, %d) = %d, want %d", tc.processes, tc.cpus, got, tc.want)
		}
	}
}

func TestProcessCount(t *testing.T) {
	n := &Network{net: netconfig.Consortium()}
	if got := n.processCount(); got != 12 { // 3 orderers, 4 peers, 4 chaincodes, a client
		t.Fatalf("default consortium: %d processes, want 12", got)
	}
	n.opts.OrderersOnly = true
	if got := n.processCount(); got != 4 {
		t.Fatalf("orderers only: %d processes, want 4", got)
	}
}

func TestRuntimeEnv(t *testing.T) {
	n := &Network{goMaxProcs: 1}
	env := n.runtimeEnv([]string{"CORE_PEER_ADDRESS=x"})
	if !slices.Equal(env, []string{"CORE_PEER_ADDRESS=x", "GOMAXPROCS=1"}) {
		t.Fatalf("env %q", env)
	}
	n.goMaxProcs = 0
	if env := n.runtimeEnv(nil); len(env) != 0 {
		t.Fatalf("Go's default should add nothing, got %q", env)
	}
}

// TestInfoNamesExistingFiles checks that every file network.json names —
// users' enrollment and TLS client credentials, the orderer admin's
// included — exists in the generated crypto material.
func TestInfoNamesExistingFiles(t *testing.T) {
	n := &Network{Dir: t.TempDir(), net: netconfig.Consortium()}
	if err := cryptogen.Generate(n.net, n.cryptoDir()); err != nil {
		t.Fatal(err)
	}
	info := n.buildInfo()
	if len(info.OrdererOrganizations) != 1 || info.OrdererOrganizations[0].MSPID != "OrdererMSP" {
		t.Fatalf("orderer organisations %+v, want OrdererMSP", info.OrdererOrganizations)
	}
	var users []User
	for _, o := range info.Organizations {
		for _, u := range o.Users {
			users = append(users, u)
		}
	}
	users = append(users, info.OrdererOrganizations[0].Users["admin"])
	if len(users) != 5 { // admin and user1 of two organisations, the orderer admin
		t.Fatalf("%d users, want 5", len(users))
	}
	for _, u := range users {
		for _, f := range []string{u.Cert, u.Key, u.TLSCert, u.TLSKey} {
			if _, err := os.Stat(f); err != nil {
				t.Errorf("network.json names %q: %v", f, err)
			}
		}
	}
}
