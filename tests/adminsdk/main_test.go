package adminsdk_test

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"flag"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/hyperledger/fabric-admin-sdk/pkg/chaincode"
	adminid "github.com/hyperledger/fabric-admin-sdk/pkg/identity"
	"github.com/hyperledger/fabric-gateway/pkg/client"
	gwid "github.com/hyperledger/fabric-gateway/pkg/identity"
	lb "github.com/hyperledger/fabric-protos-go-apiv2/peer/lifecycle"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"

	"github.com/cairn-ledger/cairn/chaincode/shimcheck"
)

// cairnBin is the cairn binary the tests start networks with, built once by
// TestMain.
var cairnBin string

// TestMain builds cairn in the parent module, with its own go.mod and
// go.sum, so the binary is the one the main module ships rather than one
// rebuilt against this module's newer fabric-gateway. With -short no test
// starts a network and nothing is built.
func TestMain(m *testing.M) {
	flag.Parse()
	if testing.Short() {
		os.Exit(m.Run())
	}
	os.Exit(buildAndRun(m))
}

func buildAndRun(m *testing.M) int {
	dir, err := os.MkdirTemp("", "cairn-adminsdk-bin")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(dir)
	cairnBin = filepath.Join(dir, "cairn")
	build := exec.Command("go", "build", "-o", cairnBin, "./cmd/cairn")
	build.Dir = filepath.Join("..", "..")
	build.Env = append(os.Environ(), "GOWORK=off")
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "build cairn:", err)
		return 1
	}
	return m.Run()
}

// waitFor polls cond until it holds, failing the test with cond's last
// explanation when ctx ends.
func waitFor(ctx context.Context, t *testing.T, what string, cond func() (bool, string)) {
	t.Helper()
	for {
		ok, why := cond()
		if ok {
			return
		}
		select {
		case <-ctx.Done():
			t.Fatalf("%s: %s (%v)", what, why, ctx.Err())
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// installChaincode packages the shimcheck chaincode as a service with the
// SDK, serves it until the test ends (every peer dials this one server),
// installs the package on each organisation's peer with the SDK, checks
// what the peers report about it, and returns its package ID.
func installChaincode(ctx context.Context, t *testing.T, orgs []*orgAdmin) string {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { lis.Close() }) // ServeCCaaS closes it too; this covers a failure before
	pkg := packageCCaaS(t, lis.Addr().String())
	packageID, err := chaincode.PackageID(bytes.NewReader(pkg))
	if err != nil {
		t.Fatalf("PackageID: %v", err)
	}
	if want := chaincode.GetPackageID(ccLabel, pkg); packageID != want {
		t.Fatalf("PackageID = %q, GetPackageID = %q", packageID, want)
	}
	serveChaincode(t, lis, packageID)

	for _, org := range orgs {
		res, err := org.peer.Install(ctx, bytes.NewReader(pkg))
		if err != nil {
			t.Fatalf("%s Install: %v", org.mspID, err)
		}
		if res.GetPackageId() != packageID || res.GetLabel() != ccLabel {
			t.Fatalf("%s Install = {%q %q}, want {%q %q}", org.mspID, res.GetPackageId(), res.GetLabel(), packageID, ccLabel)
		}
		installed, err := org.peer.QueryInstalled(ctx)
		if err != nil {
			t.Fatalf("%s QueryInstalled: %v", org.mspID, err)
		}
		if !slices.ContainsFunc(installed.GetInstalledChaincodes(), func(c *lb.QueryInstalledChaincodesResult_InstalledChaincode) bool {
			return c.GetPackageId() == packageID && c.GetLabel() == ccLabel
		}) {
			t.Fatalf("%s QueryInstalled does not list %s: %v", org.mspID, packageID, installed)
		}
		got, err := org.peer.GetInstalled(ctx, packageID)
		if err != nil {
			t.Fatalf("%s GetInstalled: %v", org.mspID, err)
		}
		if !bytes.Equal(got, pkg) {
			t.Fatalf("%s GetInstalled returned %d bytes, not the %d installed", org.mspID, len(got), len(pkg))
		}
	}
	return packageID
}

// packageCCaaS writes a ccaas package with the SDK's PackageCCAAS, whose
// connection.json points the peers at address, and returns its bytes.
func packageCCaaS(t *testing.T, address string) []byte {
	t.Helper()
	dir := t.TempDir()
	err := chaincode.PackageCCAAS(
		chaincode.Connection{Address: address, DialTimeout: "10s"},
		chaincode.Metadata{Type: "ccaas", Label: ccLabel},
		dir, "adminsdk.tar.gz")
	if err != nil {
		t.Fatalf("PackageCCAAS: %v", err)
	}
	pkg, err := os.ReadFile(filepath.Join(dir, "adminsdk.tar.gz"))
	if err != nil {
		t.Fatal(err)
	}
	return pkg
}

// serveChaincode runs the shimcheck chaincode as an external service on lis
// until the test ends.
func serveChaincode(t *testing.T, lis net.Listener, packageID string) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- shimcheck.ServeCCaaS(ctx, shimcheck.CCaaSConfig{ChaincodeID: packageID, Listener: lis})
	}()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("chaincode server: %v", err)
		}
	})
}

// networkInfo is the part of the network folder's network.json (written by
// cairn network up; see internal/localnet/info.go) that the test reads, and
// the folder itself.
type networkInfo struct {
	// Dir is the network folder (network.yaml, crypto/, network.json).
	Dir           string `json:"-"`
	Channel       string `json:"channel"`
	Organizations []struct {
		MSPID string `json:"mspId"`
		Peers []struct {
			Name        string `json:"name"`
			Address     string `json:"address"`
			TLSRootCert string `json:"tlsRootCert"`
		} `json:"peers"`
		Users map[string]struct {
			Cert string `json:"cert"`
			Key  string `json:"key"`
		} `json:"users"`
	} `json:"organizations"`
	Orderers []struct {
		Name         string `json:"name"`
		Address      string `json:"address"`
		AdminAddress string `json:"adminAddress"`
		TLSRootCert  string `json:"tlsRootCert"`
	} `json:"orderers"`
}

// startNetwork starts a network of two organisations with one peer each and
// one orderer with `cairn network up --detach`, stopped with `cairn network
// down` when the test ends, and connects each organisation's admin to its
// peer.
func startNetwork(ctx context.Context, t *testing.T) (*networkInfo, []*orgAdmin) {
	t.Helper()
	return startNetworkWith(ctx, t, 1)
}

// startNetworkWith is startNetwork with the given number of Raft orderers.
func startNetworkWith(ctx context.Context, t *testing.T, orderers int) (*networkInfo, []*orgAdmin) {
	t.Helper()
	dir := t.TempDir()
	t.Cleanup(func() {
		out, err := exec.Command(cairnBin, "network", "down", "--dir", dir).CombinedOutput()
		if err != nil {
			t.Errorf("cairn network down: %v\n%s", err, out)
		}
	})
	began := time.Now()
	up := exec.CommandContext(ctx, cairnBin, "network", "up", "--dir", dir, "--detach",
		"--orgs", "2", "--peers-per-org", "1", "--orderers", strconv.Itoa(orderers))
	if out, err := up.CombinedOutput(); err != nil {
		t.Fatalf("cairn network up: %v\n%s", err, out)
	}
	t.Logf("cairn network up --detach: %s", time.Since(began).Round(time.Millisecond))

	raw, err := os.ReadFile(filepath.Join(dir, "network.json"))
	if err != nil {
		t.Fatal(err)
	}
	var info networkInfo
	if err := json.Unmarshal(raw, &info); err != nil {
		t.Fatalf("parse network.json: %v", err)
	}
	if len(info.Organizations) != 2 || len(info.Orderers) != orderers {
		t.Fatalf("network.json has %d organisations and %d orderers, want 2 and %d", len(info.Organizations), len(info.Orderers), orderers)
	}
	info.Dir = dir
	orgs := make([]*orgAdmin, len(info.Organizations))
	for i := range info.Organizations {
		orgs[i] = connectAdmin(t, &info, i)
	}
	return &info, orgs
}

// orgAdmin is one organisation's administrator: the SDK's Peer (install,
// peer queries) and Gateway (channel lifecycle) over one connection to the
// organisation's peer, and that connection and signing identity for the
// SDK's functions that take them (channel, discovery).
type orgAdmin struct {
	mspID   string
	peer    *chaincode.Peer
	gateway *chaincode.Gateway
	conn    *grpc.ClientConn
	id      adminid.SigningIdentity
}

func connectAdmin(t *testing.T, info *networkInfo, org int) *orgAdmin {
	t.Helper()
	o := info.Organizations[org]
	cert, err := adminid.ReadCertificate(o.Users["admin"].Cert)
	if err != nil {
		t.Fatal(err)
	}
	key, err := adminid.ReadPrivateKey(o.Users["admin"].Key)
	if err != nil {
		t.Fatal(err)
	}
	id, err := adminid.NewPrivateKeySigningIdentity(o.MSPID, cert, key)
	if err != nil {
		t.Fatal(err)
	}
	conn := dialPeer(t, info, org)
	return &orgAdmin{mspID: o.MSPID, peer: chaincode.NewPeer(conn, id), gateway: chaincode.NewGateway(conn, id), conn: conn, id: id}
}

// connectUser connects the fabric-gateway client as user1 of the
// organisation, to its peer.
func connectUser(t *testing.T, info *networkInfo, org int) *client.Gateway {
	t.Helper()
	o := info.Organizations[org]
	certPEM, err := os.ReadFile(o.Users["user1"].Cert)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := gwid.CertificateFromPEM(certPEM)
	if err != nil {
		t.Fatal(err)
	}
	id, err := gwid.NewX509Identity(o.MSPID, cert)
	if err != nil {
		t.Fatal(err)
	}
	keyPEM, err := os.ReadFile(o.Users["user1"].Key)
	if err != nil {
		t.Fatal(err)
	}
	key, err := gwid.PrivateKeyFromPEM(keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	sign, err := gwid.NewPrivateKeySign(key)
	if err != nil {
		t.Fatal(err)
	}
	gw, err := client.Connect(id, client.WithSign(sign), client.WithClientConnection(dialPeer(t, info, org)),
		client.WithEvaluateTimeout(30*time.Second), client.WithEndorseTimeout(30*time.Second),
		client.WithSubmitTimeout(30*time.Second), client.WithCommitStatusTimeout(time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { gw.Close() })
	return gw
}

// dialPeer opens a TLS connection to the organisation's first peer, closed
// when the test ends.
func dialPeer(t *testing.T, info *networkInfo, org int) *grpc.ClientConn {
	t.Helper()
	p := info.Organizations[org].Peers[0]
	rootPEM, err := os.ReadFile(p.TLSRootCert)
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(rootPEM) {
		t.Fatalf("%s holds no PEM certificate", p.TLSRootCert)
	}
	conn, err := grpc.NewClient(p.Address, grpc.WithTransportCredentials(credentials.NewTLS(
		&tls.Config{RootCAs: roots, ServerName: p.Name, MinVersion: tls.VersionTLS12})))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}
