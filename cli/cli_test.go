package cli

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/cairn-ledger/cairn/internal/block"
	"github.com/cairn-ledger/cairn/internal/channelconfig"
)

const testNetworkYAML = `
ordererOrganizations:
  - name: Orderer
    mspId: OrdererMSP
    domain: example.com
    orderers:
      - {name: orderer0, host: 127.0.0.1, port: 7050, adminPort: 7053, operationsPort: 9443}
organizations:
  - name: Org1
    mspId: Org1MSP
    domain: org1.example.com
    peers:
      - {name: peer0, host: 127.0.0.1, port: 7051, operationsPort: 9444}
    users: [User1]
channel:
  name: mychannel
  batchTimeout: 2s
  batchSize: {maxMessageCount: 10, absoluteMaxBytes: 1 MB, preferredMaxBytes: 512 KB}
`

// TestCryptoAndGenesisCommands runs the two commands an operator uses to
// prepare a network by hand and checks what they write.
func TestCryptoAndGenesisCommands(t *testing.T) {
	dir := t.TempDir()
	cfg := filepath.Join(dir, "network.yaml")
	if err := os.WriteFile(cfg, []byte(testNetworkYAML), 0o644); err != nil {
		t.Fatal(err)
	}
	crypto := filepath.Join(dir, "crypto")
	if code := Main([]string{"crypto", "generate", "--config", cfg, "--out", crypto}); code != 0 {
		t.Fatalf("crypto generate exited %d", code)
	}
	for _, p := range []string{
		"peerOrganizations/org1.example.com/peers/peer0.org1.example.com/msp/signcerts/peer0.org1.example.com-cert.pem",
		"peerOrganizations/org1.example.com/peers/peer0.org1.example.com/msp/config.yaml",
		"peerOrganizations/org1.example.com/users/User1@org1.example.com/msp/keystore/priv_sk",
		"ordererOrganizations/example.com/orderers/orderer0.example.com/tls/server.crt",
	} {
		if _, err := os.Stat(filepath.Join(crypto, p)); err != nil {
			t.Fatal(err)
		}
	}
	out := filepath.Join(dir, "mychannel.block")
	if code := Main([]string{"channel", "genesis", "--config", cfg, "--crypto", crypto, "--channel", "mychannel", "--out", out}); code != 0 {
		t.Fatalf("channel genesis exited %d", code)
	}
	raw, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	b, err := block.Unmarshal(raw)
	if err != nil {
		t.Fatal(err)
	}
	bundle, err := channelconfig.FromBlock(b)
	if err != nil {
		t.Fatal(err)
	}
	o := bundle.Orderer()
	if bundle.ChannelID() != "mychannel" || o.MaxMessageCount != 10 || o.AbsoluteMaxBytes != 1<<20 || o.PreferredMaxBytes != 512<<10 {
		t.Fatalf("genesis: channel %s batch %+v", bundle.ChannelID(), o)
	}
	// A second generate into the same folder refuses to overwrite keys.
	if code := Main([]string{"crypto", "generate", "--config", cfg, "--out", crypto}); code == 0 {
		t.Fatal("crypto generate overwrote existing material")
	}
	// A bad description is an error, not a crash.
	bad := filepath.Join(dir, "bad.yaml")
	if err := os.WriteFile(bad, []byte("organizations: [{name: x}]\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if code := Main([]string{"crypto", "generate", "--config", bad, "--out", filepath.Join(dir, "c2")}); code == 0 {
		t.Fatal("crypto generate accepted an invalid description")
	}
}
