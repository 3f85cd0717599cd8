package cli

import (
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/cairn-ledger/cairn/internal/localnet"
)

// TestNetworkRuntimeEnv: a chaincode service a benchmark adds gets the
// GOMAXPROCS the network gave its peers, and nothing when the network left Go's
// default or has no processes.json.
func TestNetworkRuntimeEnv(t *testing.T) {
	dir := t.TempDir()
	if env := networkRuntimeEnv(dir); env != nil {
		t.Fatalf("no processes.json: %q", env)
	}
	write := func(body string) {
		t.Helper()
		if err := os.WriteFile(filepath.Join(dir, localnet.StateFile), []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write(`{"processes":[{"name":"orderer0","role":"orderer","env":["GOMAXPROCS=3"]},{"name":"peer0","role":"peer","env":["A=b","GOMAXPROCS=1"]}]}`)
	if env := networkRuntimeEnv(dir); !slices.Equal(env, []string{"GOMAXPROCS=1"}) {
		t.Fatalf("env %q, want the peer's GOMAXPROCS=1", env)
	}
	write(`{"processes":[{"name":"peer0","role":"peer","env":["A=b"]}]}`)
	if env := networkRuntimeEnv(dir); env != nil {
		t.Fatalf("Go's default should add nothing, got %q", env)
	}
}
