package localnet_test

import (
	"bytes"
	"context"
	"encoding/json"
	"net"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hyperledger/fabric-chaincode-go/v2/shim"
	pb "github.com/hyperledger/fabric-protos-go-apiv2/peer"
	"google.golang.org/grpc"

	"github.com/cairn-ledger/cairn/chaincode/basic"
	"github.com/cairn-ledger/cairn/internal/ccdeploy"
	"github.com/cairn-ledger/cairn/internal/localnet"
	"github.com/cairn-ledger/cairn/internal/netconfig"
)

// startChaincodeServer serves the basic contract as chaincode-as-a-service
// on a loopback port for the package of label, and returns the address and
// the package ID the peers know it by.
func startChaincodeServer(t *testing.T, label string) (addr, packageID string) {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr = lis.Addr().String()
	// The same bytes `cairn chaincode deploy --ccaas ADDR` packages, so the
	// same package ID.
	pkg, err := ccdeploy.PackageCCaaS(label, ccdeploy.CCaaSOptions{Address: addr, DialTimeout: "10s"})
	if err != nil {
		t.Fatal(err)
	}
	if packageID, err = ccdeploy.PackageID(pkg); err != nil {
		t.Fatal(err)
	}
	cc, err := basic.NewChaincode()
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer()
	pb.RegisterChaincodeServer(srv, &shim.ChaincodeServer{CCID: packageID, Address: addr, CC: cc})
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = srv.Serve(lis)
	}()
	t.Cleanup(func() {
		srv.Stop()
		<-done
	})
	return addr, packageID
}

// cairnChaincode runs `cairn chaincode ARGS... --network dir` and logs its output.
func cairnChaincode(t *testing.T, dir string, args ...string) (stdout, stderr string, err error) {
	t.Helper()
	stdout, stderr, err = cairnChaincodeQuiet(dir, args...)
	t.Logf("cairn chaincode %s\n%s%s", strings.Join(args, " "), stdout, stderr)
	return stdout, stderr, err
}

func cairnChaincodeQuiet(dir string, args ...string) (stdout, stderr string, err error) {
	cmd := exec.Command(cairnBin, append(append([]string{"chaincode"}, args...), "--network", dir)...)
	var o, e bytes.Buffer
	cmd.Stdout, cmd.Stderr = &o, &e
	err = cmd.Run()
	return o.String(), e.String(), err
}

func mustContain(t *testing.T, out string, want ...string) {
	t.Helper()
	for _, w := range want {
		if !strings.Contains(out, w) {
			t.Fatalf("output lacks %q:\n%s", w, out)
		}
	}
}

// TestChaincodeDeployCLI drives the chaincode commands a user runs against a
// two-organisation network: deploy a ccaas chaincode, deploy it again
// unchanged (nothing to do) and with a new policy (sequence 2), list it,
// report differing approvals by field, and invoke and query it.
func TestChaincodeDeployCLI(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a network")
	}
	nc, err := netconfig.Generate(2, 1, 1)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var progress bytes.Buffer
	n, err := localnet.Up(ctx, localnet.Options{Dir: t.TempDir(), Binary: cairnBin, Network: nc, Progress: &progress, NoSync: true})
	if err != nil {
		t.Fatalf("network up: %v\n%s", err, progress.String())
	}
	t.Cleanup(func() {
		if err := n.Stop(); err != nil {
			t.Errorf("network stop: %v", err)
		}
	})
	dir := n.Dir
	addr, id := startChaincodeServer(t, "assets_1.0")
	peers := []string{n.Info.Organizations[0].Peers[0].Name, n.Info.Organizations[1].Peers[0].Name}

	// A new chaincode: every step, every peer and every organisation.
	out, _, err := cairnChaincode(t, dir, "deploy", "--name", "assets", "--ccaas", addr, "--policy", "OR('Org1MSP.peer','Org2MSP.peer')")
	if err != nil {
		t.Fatalf("deploy: %v", err)
	}
	mustContain(t, out, "as sequence 1", id,
		peers[0]+" (Org1MSP): installed", peers[1]+" (Org2MSP): installed",
		"Org1MSP: approved (block", "Org2MSP: approved (block",
		"checking commit readiness", "committed in block",
		peers[0]+" (Org1MSP): reports assets version 1.0 sequence 1",
		peers[1]+" (Org2MSP): reports assets version 1.0 sequence 1")

	// Unchanged: nothing to do.
	out, _, err = cairnChaincode(t, dir, "deploy", "--name", "assets", "--ccaas", addr, "--policy", "OR('Org1MSP.peer','Org2MSP.peer')")
	if err != nil {
		t.Fatalf("deploy again: %v", err)
	}
	mustContain(t, out, "nothing to do")

	// A new policy: upgrade to sequence 2 with the same package.
	out, _, err = cairnChaincode(t, dir, "deploy", "--name", "assets", "--ccaas", addr, "--policy", "OR('Org1MSP.member','Org2MSP.member')")
	if err != nil {
		t.Fatalf("deploy with a new policy: %v", err)
	}
	mustContain(t, out, "from sequence 1 to 2 (changed: policy)", "already installed",
		peers[0]+" (Org1MSP): reports assets version 1.0 sequence 2",
		peers[1]+" (Org2MSP): reports assets version 1.0 sequence 2")

	out, _, err = cairnChaincode(t, dir, "list", "--json")
	if err != nil {
		t.Fatalf("list: %v", err)
	}
	var listing struct {
		Installed []struct {
			Peer      string `json:"peer"`
			Installed []struct {
				PackageID string `json:"packageId"`
			} `json:"installed"`
		} `json:"installed"`
		Committed []struct {
			Name      string          `json:"name"`
			Sequence  int64           `json:"sequence"`
			Policy    string          `json:"policy"`
			Approvals map[string]bool `json:"approvals"`
		} `json:"committed"`
	}
	if err := json.Unmarshal([]byte(out), &listing); err != nil {
		t.Fatalf("list --json: %v\n%s", err, out)
	}
	if len(listing.Installed) != 2 {
		t.Fatalf("list shows %d peers, want 2", len(listing.Installed))
	}
	for _, p := range listing.Installed {
		found := false
		for _, pkg := range p.Installed {
			found = found || pkg.PackageID == id
		}
		if !found {
			t.Fatalf("%s does not list package %s", p.Peer, id)
		}
	}
	var assets bool
	for _, c := range listing.Committed {
		if c.Name != "assets" {
			continue
		}
		assets = true
		if c.Sequence != 2 || !strings.Contains(c.Policy, "Org2MSP.member") || !c.Approvals["Org1MSP"] || !c.Approvals["Org2MSP"] {
			t.Fatalf("committed assets = %+v", c)
		}
	}
	if !assets {
		t.Fatalf("list does not show committed chaincode assets: %s", out)
	}

	// package + install on one organisation's peers; text listing of one peer.
	pkgFile := filepath.Join(t.TempDir(), "extra.tar.gz")
	raw, err := exec.Command(cairnBin, "chaincode", "package", pkgFile, "--label", "extra_1", "--ccaas", "127.0.0.1:1").Output()
	if err != nil {
		t.Fatalf("package: %v", err)
	}
	extraID := strings.TrimSpace(string(raw))
	out, errOut, err := cairnChaincode(t, dir, "install", pkgFile, "--org", "Org2MSP")
	if err != nil {
		t.Fatalf("install: %v", err)
	}
	if strings.TrimSpace(out) != extraID || !strings.Contains(errOut, peers[1]+" (Org2MSP): installed") || strings.Contains(errOut, peers[0]) {
		t.Fatalf("install printed %q / %q, want package ID %s installed on %s only", out, errOut, extraID, peers[1])
	}
	out, _, err = cairnChaincode(t, dir, "list", "--peer", peers[1])
	if err != nil {
		t.Fatalf("list: %v", err)
	}
	mustContain(t, out, "Package ID: "+extraID+", Label: extra_1",
		"Name: assets, Version: 1.0, Sequence: 2, Policy: OR('Org1MSP.member', 'Org2MSP.member')")

	// Approvals that differ: the commit names the differing fields.
	if _, _, err := cairnChaincode(t, dir, "approve", "--org", "Org1MSP", "--name", "other", "--version", "1.0", "--package-id", id); err != nil {
		t.Fatalf("approve for Org1MSP: %v", err)
	}
	_, errOut, err = cairnChaincode(t, dir, "approve", "--org", "Org2MSP", "--name", "other", "--version", "2.0", "--policy", "OR('Org2MSP.member')")
	if err != nil {
		t.Fatalf("approve for Org2MSP: %v", err)
	}
	mustContain(t, errOut, "not ready to commit", "differ in: version, policy")
	_, errOut, err = cairnChaincode(t, dir, "commit", "--name", "other", "--version", "1.0")
	if err == nil {
		t.Fatal("commit of a definition only one of two organisations approved succeeded")
	}
	mustContain(t, errOut, "approved by 1 of 2", "differ in: version, policy", `Org2MSP approved version "2.0"`)

	// The peers dial the chaincode server themselves (ccaas); the first
	// query may arrive while they connect.
	deadline := time.Now().Add(30 * time.Second)
	for {
		_, errOut, err = cairnChaincodeQuiet(dir, "query", "--name", "assets", "GetAllAssets")
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("query never succeeded: %v\n%s", err, errOut)
		}
		time.Sleep(500 * time.Millisecond)
	}
	out, _, err = cairnChaincode(t, dir, "invoke", "--name", "assets", "--org", "Org2MSP", "CreateAsset", "asset-cli", "blue", "5", "Tomoko", "300")
	if err != nil {
		t.Fatalf("invoke: %v", err)
	}
	mustContain(t, out, "tx ID: ", "validation code: VALID")
	out, _, err = cairnChaincode(t, dir, "query", "--name", "assets", "ReadAsset", "asset-cli")
	if err != nil {
		t.Fatalf("query: %v", err)
	}
	mustContain(t, out, `"Color":"blue"`)

	// A definition committed with --init-required runs only its Init first
	// (invoke --init, Fabric's --isInit), and only once per version.
	initAddr, _ := startChaincodeServer(t, "initassets_1.0")
	if out, _, err = cairnChaincode(t, dir, "deploy", "--name", "initassets", "--ccaas", initAddr, "--init-required"); err != nil {
		t.Fatalf("deploy --init-required: %v\n%s", err, out)
	}
	var stderr string
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(500 * time.Millisecond) {
		_, stderr, err = cairnChaincodeQuiet(dir, "invoke", "--name", "initassets", "CreateAsset", "before-init", "red", "1", "Ana", "1")
		if err != nil && strings.Contains(stderr+err.Error(), "must call as init first") || time.Now().After(deadline) {
			break
		}
	}
	if err == nil || !strings.Contains(stderr+err.Error(), "has not been initialized for this version, must call as init first") {
		t.Fatalf("invoke before init: %v\n%s", err, stderr)
	}
	if out, _, err = cairnChaincode(t, dir, "invoke", "--name", "initassets", "--init", "InitLedger"); err != nil {
		t.Fatalf("invoke --init: %v", err)
	}
	mustContain(t, out, "validation code: VALID")
	if out, _, err = cairnChaincode(t, dir, "invoke", "--name", "initassets", "CreateAsset", "after-init", "red", "1", "Ana", "1"); err != nil {
		t.Fatalf("invoke after init: %v", err)
	}
	mustContain(t, out, "validation code: VALID")
	if _, stderr, err = cairnChaincodeQuiet(dir, "invoke", "--name", "initassets", "--init", "InitLedger"); err == nil || !strings.Contains(stderr+err.Error(), "is already initialized but called as init") {
		t.Fatalf("second invoke --init: %v\n%s", err, stderr)
	}
}
