package localnet

import (
	"slices"
	"testing"

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
