package localnet_test

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/binary"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/hyperledger/fabric-gateway/pkg/client"
	cb "github.com/hyperledger/fabric-protos-go-apiv2/common"
	gp "github.com/hyperledger/fabric-protos-go-apiv2/gateway"
	mspproto "github.com/hyperledger/fabric-protos-go-apiv2/msp"
	pb "github.com/hyperledger/fabric-protos-go-apiv2/peer"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/cairn-ledger/cairn/chaincode/shimcheck"
	"github.com/cairn-ledger/cairn/internal/ccdeploy"
	"github.com/cairn-ledger/cairn/internal/channelconfig"
	"github.com/cairn-ledger/cairn/internal/comm"
	"github.com/cairn-ledger/cairn/internal/crypto"
	"github.com/cairn-ledger/cairn/internal/cryptogen"
	"github.com/cairn-ledger/cairn/internal/envelope"
	"github.com/cairn-ledger/cairn/internal/localnet"
	"github.com/cairn-ledger/cairn/internal/netconfig"
	"github.com/cairn-ledger/cairn/internal/policy"
)

// Issue 5's first acceptance test: chaincode/shimcheck, a contract calling
// every shim API, deployed in both of Fabric's connection modes on a
// two-organisation network and driven through the official Fabric Gateway
// client, with every result checked.
//
// What is not observable at this level, and where it is covered instead: the
// message types on the wire (WRITE_BATCH_STATE chunking, GET_STATE_MULTIPLE,
// QUERY_STATE_NEXT / QUERY_STATE_CLOSE counts) are counted in
// peer/internal/chaincode/shimcheck_test.go; here the same shim calls run and
// their results are checked. KEEPALIVE: Fabric's peer sends one every
// chaincode.keepalive seconds, off by default; Cairn's peer has no such
// setting and never sends one, and a keepalive from the chaincode is checked
// to be ignored in peer/internal/chaincode/protocol_test.go.

const (
	scOtherChannel = "otherchannel"
	// scPolicy lets either organisation endorse shimcheck, so a key-level
	// policy naming one of them is what makes the difference.
	scPolicy = "OR('Org1MSP.peer','Org2MSP.peer')"
)

// TestShimcheckThroughGateway brings up 1 orderer and 2 organisations × 1
// peer, creates a second channel, and for each connection mode deploys
// shimcheck on both channels and exercises every function:
//   - golang: a Go module package the peers build with the local toolchain
//     and launch themselves (the chaincode dials ChaincodeSupport.Register);
//   - ccaas: shimcheck.ServeCCaaS in this process behind mutual TLS, deployed
//     as a ccaas package (the peers dial Chaincode.Connect).
func TestShimcheckThroughGateway(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a network and builds chaincode")
	}
	start := time.Now()
	// The peers inherit this environment and hand it to the golang builder:
	// the package's go.sum pins everything and the module cache holds it, so
	// the build needs no network (and must not wait for one).
	t.Setenv("GOPROXY", "off")
	pkgDir := shimcheckModule(t)

	nw, err := netconfig.Generate(2, 1, 1)
	if err != nil {
		t.Fatal(err)
	}
	nw.Channel.BatchTimeout = netconfig.Duration(100 * time.Millisecond)
	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Minute)
	defer cancel()
	var progress bytes.Buffer
	n, err := localnet.Up(ctx, localnet.Options{Dir: t.TempDir(), Binary: cairnBin, Network: nw, Progress: &progress, NoSync: true})
	if err != nil {
		t.Fatalf("network up: %v\n%s", err, progress.String())
	}
	t.Cleanup(func() {
		if t.Failed() {
			for _, p := range n.Processes() {
				if p.Role == "peer" {
					logTail(t, p.Log, 60)
				}
			}
		}
		if err := n.Stop(); err != nil {
			t.Errorf("network stop: %v", err)
		}
	})
	t.Logf("network up after %v", time.Since(start).Round(time.Millisecond))

	sn := &scNet{n: n, nw: nw}
	sn.createChannel(ctx, t, scOtherChannel)
	t.Logf("channel %s created after %v", scOtherChannel, time.Since(start).Round(time.Millisecond))

	t.Run("golang", func(t *testing.T) {
		pkg, err := ccdeploy.PackageGoModule("shimcheck_golang", pkgDir)
		if err != nil {
			t.Fatal(err)
		}
		sn.deploy(ctx, t, "scgo", pkg)
		sn.builtBy(t, "shimcheck_golang", "golang")
		sn.exercise(ctx, t, "scgo")
	})
	t.Logf("golang mode done after %v", time.Since(start).Round(time.Millisecond))
	t.Run("ccaas", func(t *testing.T) {
		pkg := serveShimcheckCCaaS(t, "shimcheck_ccaas")
		sn.deploy(ctx, t, "scaas", pkg)
		sn.builtBy(t, "shimcheck_ccaas", "ccaas")
		sn.exercise(ctx, t, "scaas")
	})
	t.Logf("ccaas mode done after %v", time.Since(start).Round(time.Millisecond))
}

// shimcheckGoMain is the wrapper module's main: cmd/shimcheck's, which the
// package cannot name directly (the golang builder builds a package of the
// module it is given).
const shimcheckGoMain = `// Command shimcheckcc runs chaincode/shimcheck as Go chaincode.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/cairn-ledger/cairn/chaincode/shimcheck"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := shimcheck.Run(ctx, os.Args[1:], os.Getenv, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "shimcheck chaincode:", err)
		os.Exit(1)
	}
}
`

// shimcheckModule writes the Go module the golang package holds and returns
// its folder.
//
// shimcheck lives inside the cairn module, and packaging the whole module
// would put every role's source into code.tar.gz. Instead a tiny wrapper
// module requires github.com/cairn-ledger/cairn and replaces it with this
// repository's absolute path: the peers build on this machine, so the path
// resolves for them, and with go.sum complete (go mod tidy, seeded with the
// repository's go.sum) and the shared module cache, the builder's
// `go build -mod=readonly` needs no network. The package is therefore only
// buildable here, which is all a test needs. A warm-up build with the
// builder's flags fills the build cache, so the peers' builds (and the first
// invocation, which launches the chaincode within the execute timeout) take
// seconds.
func shimcheckModule(t *testing.T) string {
	t.Helper()
	repo, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	goVersion := ""
	for line := range strings.SplitSeq(string(scReadFile(t, filepath.Join(repo, "go.mod"))), "\n") {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), "go "); ok {
			goVersion = strings.TrimSpace(v)
			break
		}
	}
	if goVersion == "" {
		t.Fatal("no go directive in the repository's go.mod")
	}
	dir := filepath.Join(t.TempDir(), "shimcheckcc")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	gomod := fmt.Sprintf("module example.com/shimcheckcc\n\ngo %s\n\nrequire github.com/cairn-ledger/cairn v0.0.0\n\nreplace github.com/cairn-ledger/cairn => %s\n", goVersion, repo)
	files := map[string][]byte{
		"go.mod":  []byte(gomod),
		"go.sum":  scReadFile(t, filepath.Join(repo, "go.sum")),
		"main.go": []byte(shimcheckGoMain),
	}
	for name, data := range files {
		if err := os.WriteFile(filepath.Join(dir, name), data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	goCmd := func(args ...string) {
		t.Helper()
		cmd := exec.Command("go", args...)
		cmd.Dir = dir
		cmd.Env = append(os.Environ(), "GOPROXY=off")
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("go %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
	// -e: the test dependencies of shimcheck's dependencies are not in the
	// module cache, and the build does not need them.
	goCmd("mod", "tidy", "-e")
	warm := filepath.Join(t.TempDir(), "shimcheckcc")
	goCmd("build", "-mod=readonly", "-trimpath", "-o", warm, ".")
	return dir
}

// serveShimcheckCCaaS serves shimcheck as an external service on a loopback
// port behind mutual TLS (a test CA issues its server certificate and the
// peers' client certificate) and returns the ccaas package pointing at it.
func serveShimcheckCCaaS(t *testing.T, label string) []byte {
	t.Helper()
	ca := newSCTestCA(t)
	dir := t.TempDir()
	write := func(name string, data []byte) string {
		path := filepath.Join(dir, name)
		if err := os.WriteFile(path, data, 0o600); err != nil {
			t.Fatal(err)
		}
		return path
	}
	srvCert, srvKey := ca.issue(t, false)
	cliCert, cliKey := ca.issue(t, true)
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	pkg, err := ccdeploy.PackageCCaaS(label, ccdeploy.CCaaSOptions{
		Address: lis.Addr().String(), DialTimeout: "10s",
		RootCertFile:   write("ca.pem", ca.certPEM),
		ClientCertFile: write("client.pem", cliCert), ClientKeyFile: write("client.key", cliKey),
	})
	if err != nil {
		t.Fatal(err)
	}
	id, err := ccdeploy.PackageID(pkg)
	if err != nil {
		t.Fatal(err)
	}
	tlsCfg, err := shimcheck.ServerTLSConfig(srvKey, srvCert, ca.certPEM)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- shimcheck.ServeCCaaS(ctx, shimcheck.CCaaSConfig{ChaincodeID: id, Listener: lis, TLS: tlsCfg})
	}()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("ServeCCaaS: %v", err)
			}
		case <-time.After(10 * time.Second):
			t.Error("ServeCCaaS did not stop")
		}
	})
	return pkg
}

// scTestCA is an in-memory CA for the chaincode server's TLS.
type scTestCA struct {
	cert    *x509.Certificate
	key     *ecdsa.PrivateKey
	certPEM []byte
}

func newSCTestCA(t *testing.T) *scTestCA {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "shimcheck test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return &scTestCA{cert: cert, key: key, certPEM: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})}
}

// issue returns a PEM certificate and key: a server certificate for
// 127.0.0.1, or a client certificate.
func (ca *scTestCA) issue(t *testing.T, client bool) (certPEM, keyPEM []byte) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	serial, err := rand.Int(rand.Reader, big.NewInt(1<<62))
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial, Subject: pkix.Name{CommonName: "shimcheck"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}, DNSNames: []string{"localhost"},
	}
	if client {
		tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}
		tmpl.IPAddresses, tmpl.DNSNames = nil, nil
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	pkcs8, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: pkcs8})
}

// scNet is the network the shimcheck test runs on.
type scNet struct {
	n  *localnet.Network
	nw *netconfig.Network // as Up filled it in (ports)
}

func (s *scNet) layout() cryptogen.Layout {
	return cryptogen.Layout{Root: filepath.Join(s.n.Dir, "crypto")}
}

// createChannel creates a channel with the same members and parameters as
// the network's own, as `cairn network up` does: the orderers join through
// the channel participation API (authenticated as the orderer
// organisation's admin, as osnadmin is) and the peers with cscc JoinChain
// signed by their organisation's admin.
func (s *scNet) createChannel(ctx context.Context, t *testing.T, name string) {
	t.Helper()
	l := s.layout()
	desc := *s.nw
	desc.Channel.Name = name
	block, err := channelconfig.Genesis(&desc, l.Root)
	if err != nil {
		t.Fatal(err)
	}
	genesis, err := proto.Marshal(block)
	if err != nil {
		t.Fatal(err)
	}
	for _, org := range s.nw.OrdererOrgs {
		tlsCfg, err := comm.ClientTLS([]string{l.TLSCACertPath(false, org.Domain)},
			l.UserTLSCertPath(false, org.Domain, cryptogen.AdminUser), l.UserTLSKeyPath(false, org.Domain, cryptogen.AdminUser), "")
		if err != nil {
			t.Fatal(err)
		}
		hc := &http.Client{Transport: &http.Transport{TLSClientConfig: tlsCfg}, Timeout: 30 * time.Second}
		for _, nd := range org.Orderers {
			url := fmt.Sprintf("https://%s:%d/participation/v1/channels", nd.Host, nd.AdminPort)
			if err := localnet.PostConfigBlock(ctx, hc, url, genesis); err != nil {
				t.Fatalf("join %s to %s: %v", nd.FullName(org.Domain), name, err)
			}
		}
		hc.CloseIdleConnections()
	}
	for _, org := range s.nw.PeerOrgs {
		for _, nd := range org.Peers {
			conn, admin := s.adminConn(t, org, nd)
			prop, _, err := envelope.NewProposal("", "cscc", [][]byte{[]byte("JoinChain"), genesis}, nil, admin.Serialize())
			if err != nil {
				t.Fatal(err)
			}
			sp, err := envelope.SignProposal(prop, admin)
			if err != nil {
				t.Fatal(err)
			}
			resp, err := pb.NewEndorserClient(conn).ProcessProposal(ctx, sp)
			if err != nil {
				t.Fatalf("JoinChain %s on %s: %v", name, nd.FullName(org.Domain), err)
			}
			if resp.GetResponse().GetStatus() != 200 {
				t.Fatalf("JoinChain %s on %s: status %d: %s", name, nd.FullName(org.Domain), resp.GetResponse().GetStatus(), resp.GetResponse().GetMessage())
			}
		}
	}
}

// adminConn connects to a peer as its organisation's admin; the connection
// is closed when the test ends.
func (s *scNet) adminConn(t *testing.T, org netconfig.PeerOrg, nd netconfig.Node) (*grpc.ClientConn, *crypto.SigningIdentity) {
	t.Helper()
	l := s.layout()
	admin, err := crypto.LoadSigningIdentity(org.MSPID, l.UserMSPDir(true, org.Domain, cryptogen.AdminUser))
	if err != nil {
		t.Fatal(err)
	}
	tlsCfg, err := comm.ClientTLS([]string{l.TLSCACertPath(true, org.Domain)},
		l.UserTLSCertPath(true, org.Domain, cryptogen.AdminUser), l.UserTLSKeyPath(true, org.Domain, cryptogen.AdminUser), nd.FullName(org.Domain))
	if err != nil {
		t.Fatal(err)
	}
	conn, err := comm.Dial(nd.Address(), tlsCfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn, admin
}

// deploy installs pkg on every peer and defines it as chaincode name on both
// channels (internal/ccdeploy, the flow of `cairn chaincode deploy`), then
// waits until it answers on every peer of both channels.
func (s *scNet) deploy(ctx context.Context, t *testing.T, name string, pkg []byte) {
	t.Helper()
	pol, err := ccdeploy.ParsePolicy(scPolicy)
	if err != nil {
		t.Fatal(err)
	}
	for _, ch := range []string{s.n.Info.Channel, scOtherChannel} {
		cfg := ccdeploy.Config{Channel: ch}
		for _, org := range s.nw.PeerOrgs {
			o := ccdeploy.Org{MSPID: org.MSPID}
			for _, nd := range org.Peers {
				conn, admin := s.adminConn(t, org, nd)
				o.Admin = admin
				o.Peers = append(o.Peers, ccdeploy.Peer{Name: nd.FullName(org.Domain), Conn: conn})
			}
			cfg.Orgs = append(cfg.Orgs, o)
		}
		d, err := ccdeploy.New(cfg)
		if err != nil {
			t.Fatal(err)
		}
		started := time.Now()
		if _, err := d.Deploy(ctx, ccdeploy.Request{Name: name, Version: "1.0", Package: pkg, Policy: pol}); err != nil {
			t.Fatalf("deploy %s on %s: %v", name, ch, err)
		}
		t.Logf("deployed %s on %s in %v", name, ch, time.Since(started).Round(time.Millisecond))
	}
	// The first invocation on each peer launches the chaincode (golang:
	// build and start the process; ccaas: dial the server); the peers
	// launch at the same time.
	started := time.Now()
	orgs := s.n.Info.Organizations
	errs := make(chan error, len(orgs))
	for oi := range orgs {
		go func() { errs <- s.waitAnswers(ctx, t, oi, name) }()
	}
	for range orgs {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	t.Logf("%s answered on every peer after %v", name, time.Since(started).Round(time.Millisecond))
}

// waitAnswers waits until chaincode name answers on both channels on the
// first peer of organisation oi.
func (s *scNet) waitAnswers(ctx context.Context, t *testing.T, oi int, name string) error {
	gw, conn, err := localnet.ConnectGateway(s.n.Info, oi, 0, "user1")
	if err != nil {
		return err
	}
	defer conn.Close()
	defer gw.Close()
	mspID := s.n.Info.Organizations[oi].MSPID
	for _, ch := range []string{s.n.Info.Channel, scOtherChannel} {
		c := gw.GetNetwork(ch).GetContract(name)
		for {
			_, err := c.EvaluateWithContext(ctx, "Context")
			if err == nil {
				break
			}
			if ctx.Err() != nil {
				return fmt.Errorf("%s never answered on %s of %s: %s", name, ch, mspID, errorText(err))
			}
			t.Logf("%s on %s of %s not ready: %s", name, ch, mspID, errorText(err))
			time.Sleep(500 * time.Millisecond)
		}
	}
	return nil
}

// builtBy checks that every peer built the package of label itself, with
// its built-in builder named builder (build-info.json, Fabric's layout).
func (s *scNet) builtBy(t *testing.T, label, builder string) {
	t.Helper()
	for _, org := range s.nw.PeerOrgs {
		for _, nd := range org.Peers {
			pattern := filepath.Join(s.n.Dir, "nodes", nd.FullName(org.Domain), "data", "externalbuilder", "builds", label+"*", "build-info.json")
			found, _ := filepath.Glob(pattern)
			if len(found) != 1 {
				t.Fatalf("%s: %d builds of %s (%s)", nd.FullName(org.Domain), len(found), label, pattern)
			}
			if info := string(scReadFile(t, found[0])); !strings.Contains(info, `"builder_name":"`+builder+`"`) {
				t.Fatalf("%s built %s with %s, want builder %s", nd.FullName(org.Domain), label, info, builder)
			}
		}
	}
}

// scClient drives one shimcheck chaincode through the Fabric Gateway client
// of Org1's peer, as Org1's user1.
type scClient struct {
	ctx      context.Context
	n        *localnet.Network
	info     *localnet.Info
	conn     *grpc.ClientConn
	network  *client.Network
	contract *client.Contract
}

func (c *scClient) on(t *testing.T) *scTB { return &scTB{t: t, c: c} }

// scTB is an scClient reporting to one (sub)test.
type scTB struct {
	t *testing.T
	c *scClient
}

// eval evaluates fn and returns its result, failing the test on an error.
func (s *scTB) eval(fn string, args ...string) string {
	s.t.Helper()
	out, err := s.c.contract.EvaluateWithContext(s.c.ctx, fn, client.WithArguments(args...))
	if err != nil {
		s.t.Fatalf("evaluate %s%q: %s", fn, args, errorText(err))
	}
	return string(out)
}

// evalFails evaluates fn and fails the test unless it fails with an error
// whose text holds every want.
func (s *scTB) evalFails(fn string, args []string, want ...string) {
	s.t.Helper()
	out, err := s.c.contract.EvaluateWithContext(s.c.ctx, fn, client.WithArguments(args...))
	if err == nil {
		s.t.Fatalf("evaluate %s%q = %q, want an error saying %q", fn, args, out, want)
	}
	scWantError(s.t, fmt.Sprintf("evaluate %s%q", fn, args), err, want...)
}

func scWantError(t *testing.T, what string, err error, want ...string) {
	t.Helper()
	text := errorText(err)
	for _, w := range want {
		if !strings.Contains(text, w) {
			t.Errorf("%s: error does not say %q: %s", what, w, text)
		}
	}
}

// submitAsync endorses and submits fn; planning failures right after a
// deploy (a peer's membership not yet knowing the other organisation runs
// the chaincode) are retried briefly.
func (s *scTB) submitAsync(fn string, args []string, opts ...client.ProposalOption) (string, *client.Commit) {
	s.t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	opts = append([]client.ProposalOption{client.WithArguments(args...)}, opts...)
	for {
		out, commit, err := s.c.contract.SubmitAsyncWithContext(s.c.ctx, fn, opts...)
		if err == nil {
			return string(out), commit
		}
		if st, ok := status.FromError(err); ok && st.Code() == codes.FailedPrecondition && time.Now().Before(deadline) {
			s.t.Logf("%s: %s (retrying)", fn, st.Message())
			time.Sleep(250 * time.Millisecond)
			continue
		}
		s.t.Fatalf("submit %s%q: %s", fn, args, errorText(err))
	}
}

func (s *scTB) status(fn string, commit *client.Commit) *client.Status {
	s.t.Helper()
	st, err := commit.StatusWithContext(s.c.ctx)
	if err != nil {
		s.t.Fatalf("%s commit status: %v", fn, err)
	}
	return st
}

// submit submits fn, waits for it to commit VALID and returns its result.
func (s *scTB) submit(fn string, args ...string) (string, *client.Status) {
	s.t.Helper()
	out, commit := s.submitAsync(fn, args)
	st := s.status(fn, commit)
	if !st.Successful {
		s.t.Fatalf("%s%q committed %s", fn, args, st.Code)
	}
	return out, st
}

// synced waits until every peer has committed the block of st. Commit
// status comes from Org1's peer; Org2's may still be a block behind, and
// endorsing there would read older state (a payload mismatch with Org1's
// endorsement, or an MVCC conflict at commit), in Fabric as here.
func (s *scTB) synced(st *client.Status) {
	s.t.Helper()
	waitAllPeersAt(s.c.ctx, s.t, s.c.n, st.BlockNumber+1)
}

// submitAll submits calls concurrently (one block, mostly) and waits for
// every one to commit VALID.
func (s *scTB) submitAll(calls ...[]string) {
	s.t.Helper()
	commits := make([]*client.Commit, len(calls))
	for i, c := range calls {
		_, commits[i] = s.submitAsync(c[0], c[1:])
	}
	for i, c := range commits {
		if st := s.status(calls[i][0], c); !st.Successful {
			s.t.Fatalf("%q committed %s", calls[i], st.Code)
		}
	}
}

// exercise runs every shimcheck function of chaincode name.
func (s *scNet) exercise(ctx context.Context, t *testing.T, name string) {
	gw, conn, err := localnet.ConnectGateway(s.n.Info, 0, 0, "user1")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { gw.Close(); conn.Close() })
	network := gw.GetNetwork(s.n.Info.Channel)
	c := &scClient{ctx: ctx, n: s.n, info: s.n.Info, conn: conn, network: network, contract: network.GetContract(name)}
	channel := s.n.Info.Channel

	t.Run("PutGet Get", func(t *testing.T) {
		s := c.on(t)
		if got, _ := s.submit("PutGet", "a1", "v1"); got != "" {
			t.Fatalf("first PutGet = %q, want no committed value", got)
		}
		if got, _ := s.submit("PutGet", "a1", "v2"); got != "v1" {
			t.Fatalf("PutGet = %q, want the committed v1 (a transaction does not read its own writes)", got)
		}
		if got := s.eval("Get", "a1"); got != "v2" {
			t.Fatalf("Get = %q, want v2", got)
		}
		if got := s.eval("Get", "missing"); got != "" {
			t.Fatalf("Get missing = %q", got)
		}
	})
	t.Run("Delete", func(t *testing.T) {
		s := c.on(t)
		s.submitAll([]string{"PutGet", "d1", "x"}, []string{"PutGet", "d2", "y"}, []string{"PutGet", "d3", "z"})
		s.submit("Delete", "d1", "d2")
		if got := s.eval("GetMultiple", "d1", "d2", "d3"); got != ",,z" {
			t.Fatalf("after Delete d1 d2: GetMultiple = %q, want \",,z\"", got)
		}
	})
	t.Run("Batch GetMultiple Range RangePaged", func(t *testing.T) {
		s := c.on(t)
		// 250 writes: WRITE_BATCH_STATE in several chunks; 250 results:
		// several QUERY_STATE_NEXT batches at the peer's default of 100.
		if got, _ := s.submit("Batch", "b", "250"); got != "250" {
			t.Fatalf("Batch = %q", got)
		}
		if got := s.eval("GetMultiple", "b0000", "nope", "b0249", "b0100"); got != "v0,,v249,v100" {
			t.Fatalf("GetMultiple = %q", got)
		}
		keys := strings.Split(s.eval("Range", "b0000", "b9999"), ",")
		if len(keys) != 250 || keys[0] != "b0000" || keys[249] != "b0249" {
			t.Fatalf("Range = %d keys %q…, want b0000..b0249", len(keys), keys[:min(3, len(keys))])
		}
		if got := s.eval("Range", "b0010", "b0013"); got != "b0010,b0011,b0012" {
			t.Fatalf("Range [b0010, b0013) = %q", got)
		}
		// Pages with bookmarks and response metadata (fetched count).
		bookmark, total := "", 0
		for page := 0; ; page++ {
			got := s.eval("RangePaged", "b0000", "b9999", "100", bookmark)
			parts := strings.Split(got, shimcheck.Separator)
			if len(parts) != 3 {
				t.Fatalf("RangePaged = %q", got)
			}
			pageKeys := strings.Split(parts[0], ",")
			wantCount := []int{100, 100, 50}[page]
			if len(pageKeys) != wantCount || parts[1] != fmt.Sprint(wantCount) || pageKeys[0] != fmt.Sprintf("b%04d", page*100) {
				t.Fatalf("page %d: %d keys from %s, fetched %s; want %d from b%04d", page, len(pageKeys), pageKeys[0], parts[1], wantCount, page*100)
			}
			total += len(pageKeys)
			bookmark = parts[2]
			if page < 2 && bookmark != fmt.Sprintf("b%04d", (page+1)*100) {
				t.Fatalf("page %d bookmark = %q, want b%04d", page, bookmark, (page+1)*100)
			}
			if page == 2 {
				if bookmark != "" {
					t.Fatalf("last page bookmark = %q, want none", bookmark)
				}
				break
			}
		}
		// A page smaller than what is left closes the iterator early
		// (QUERY_STATE_CLOSE).
		if got := s.eval("RangePaged", "b0000", "b9999", "3", ""); got != "b0000,b0001,b0002|3|b0003" {
			t.Fatalf("RangePaged size 3 = %q", got)
		}
	})
	t.Run("composite keys", func(t *testing.T) {
		s := c.on(t)
		s.submitAll(
			[]string{"CompositePut", "color", "a1", "blue", "a1"},
			[]string{"CompositePut", "color", "a2", "blue", "a2"},
			[]string{"CompositePut", "color", "a3", "blue", "a3"},
			[]string{"CompositePut", "color", "a4", "red", "a4"},
		)
		if got := s.eval("Composite", "color", "blue"); got != "blue/a1=a1,blue/a2=a2,blue/a3=a3" {
			t.Fatalf("Composite color blue = %q", got)
		}
		if got := s.eval("Composite", "color"); got != "blue/a1=a1,blue/a2=a2,blue/a3=a3,red/a4=a4" {
			t.Fatalf("Composite color = %q", got)
		}
		bookmark := "\x00color\x00blue\x00a3\x00"
		if got := s.eval("CompositePaged", "color", "2", "", "blue"); got != "blue/a1=a1,blue/a2=a2|2|"+bookmark {
			t.Fatalf("CompositePaged page 1 = %q", got)
		}
		if got := s.eval("CompositePaged", "color", "2", bookmark, "blue"); got != "blue/a3=a3|1|" {
			t.Fatalf("CompositePaged page 2 = %q", got)
		}
		// Composite keys stay out of plain ranges, as in Fabric.
		if got := s.eval("Range", "", ""); strings.Contains(got, "color") {
			t.Fatalf("Range over everything lists composite keys: %q", got)
		}
	})
	t.Run("History", func(t *testing.T) {
		s := c.on(t)
		var want []string
		for _, step := range [][]string{{"PutGet", "h", "v1"}, {"PutGet", "h", "v2"}, {"Delete", "h"}, {"PutGet", "h", "v3"}} {
			_, st := s.submit(step[0], step[1:]...)
			entry := st.TransactionID + ":" + strings.Join(step[2:], "") + ":" + fmt.Sprint(step[0] == "Delete")
			want = append([]string{entry}, want...) // newest first
		}
		if got := s.eval("History", "h"); got != strings.Join(want, ",") {
			t.Fatalf("History h =\n%s\nwant\n%s", got, strings.Join(want, ","))
		}
		if got := s.eval("History", "never-written"); got != "" {
			t.Fatalf("History of a key never written = %q", got)
		}
	})
	t.Run("state-based endorsement", func(t *testing.T) {
		s := c.on(t)
		spe, err := policy.ParseDSL("OR('Org2MSP.peer')")
		if err != nil {
			t.Fatal(err)
		}
		org2Only := string(mustMarshal(t, spe))
		s.submit("PutGet", "sbe", "v0")
		got, st := s.submit("Metadata", "sbe", org2Only)
		if got != "" {
			t.Fatalf("Metadata = %q, want no committed validation parameter yet", got)
		}
		s.synced(st)
		// Evaluating Metadata writes nothing and returns the committed one.
		if got := s.eval("Metadata", "sbe", "ignored"); got != org2Only {
			t.Fatalf("committed validation parameter = %x, want %x", got, org2Only)
		}

		// Org1 alone satisfies the chaincode policy but not the key's.
		_, commit := s.submitAsync("PutGet", []string{"sbe", "by-org1"}, client.WithEndorsingOrganizations("Org1MSP"))
		if st := s.status("PutGet", commit); st.Code != pb.TxValidationCode_ENDORSEMENT_POLICY_FAILURE {
			t.Fatalf("write endorsed by Org1 only committed %s, want ENDORSEMENT_POLICY_FAILURE", st.Code)
		}
		_, commit = s.submitAsync("PutGet", []string{"sbe", "by-org2"}, client.WithEndorsingOrganizations("Org2MSP"))
		st = s.status("PutGet", commit)
		if st.Code != pb.TxValidationCode_VALID {
			t.Fatalf("write endorsed by Org2 committed %s, want VALID", st.Code)
		}
		if got := endorsingMSPs(t, c.network, st); !slices.Equal(got, []string{"Org2MSP"}) {
			t.Fatalf("endorsed by %v, want Org2MSP", got)
		}
		s.synced(st)
		// Left to itself, the gateway plans from the key-level policy.
		_, st = s.submit("PutGet", "sbe", "planned")
		if got := endorsingMSPs(t, c.network, st); !slices.Contains(got, "Org2MSP") {
			t.Fatalf("gateway-planned write endorsed by %v, want Org2MSP among them", got)
		}
		if got := s.eval("Get", "sbe"); got != "planned" {
			t.Fatalf("Get sbe = %q, want planned (the Org1-only write must not apply)", got)
		}
		// History holds the valid value writes only: not the invalid
		// transaction, and not the metadata-only one (Fabric's history
		// database indexes key writes).
		var values []string
		for _, e := range strings.Split(s.eval("History", "sbe"), ",") {
			parts := strings.Split(e, ":")
			values = append(values, parts[len(parts)-2])
		}
		if !slices.Equal(values, []string{"planned", "by-org2", "v0"}) {
			t.Fatalf("History sbe values = %q, want planned, by-org2, v0", values)
		}
		// Keys without a key-level policy keep the chaincode's: Org1 alone is enough.
		_, commit = s.submitAsync("PutGet", []string{"no-sbe", "x"}, client.WithEndorsingOrganizations("Org1MSP"))
		if st := s.status("PutGet", commit); !st.Successful {
			t.Fatalf("write to a key without key-level policy endorsed by Org1 committed %s", st.Code)
		}
	})
	t.Run("rich query refused on LevelDB", func(t *testing.T) {
		s := c.on(t)
		// Fabric's message for a rich query on a LevelDB peer.
		s.evalFails("Query", []string{`{"selector":{}}`}, "GET_QUERY_RESULT failed", "ExecuteQuery not supported for leveldb")
		s.evalFails("Query", []string{`{"selector":{}}`, "paged"}, "ExecuteQuery not supported for leveldb")
	})
	t.Run("private data refused", func(t *testing.T) {
		s := c.on(t)
		for _, op := range []string{"get", "hash", "range", "put", "del", "purge", "metadata"} {
			s.evalFails("Private", []string{op}, "private data is not supported yet")
		}
		_, _, err := c.contract.SubmitAsyncWithContext(ctx, "Private", client.WithArguments("put"))
		var endorseErr *client.EndorseError
		if !errors.As(err, &endorseErr) {
			t.Fatalf("submit Private put: %v, want an EndorseError", err)
		}
		scWantError(t, "submit Private put", err, "private data is not supported yet")
	})
	t.Run("transient", func(t *testing.T) {
		out, err := c.contract.EvaluateWithContext(ctx, "Transient", client.WithArguments("secret"),
			client.WithTransient(map[string][]byte{"secret": []byte("s3\x00binary")}))
		if err != nil || string(out) != "s3\x00binary" {
			t.Fatalf("Transient = %q, %s", out, scErr(err))
		}
		c.on(t).evalFails("Transient", []string{"secret"}, `no transient value "secret"`)
	})
	t.Run("decorations", func(t *testing.T) {
		// The Fabric Gateway client sets no decorations and the peer (like
		// Fabric's default decorator) adds none.
		c.on(t).evalFails("Decoration", []string{"deco"}, `no decoration "deco"`)
		// Decorations a client puts in the proposal's input reach the
		// chaincode, as through Fabric's default decorator.
		if got := scEvaluateDecorated(t, c, map[string][]byte{"deco": []byte("rated")}, "Decoration", "deco"); got != "rated" {
			t.Fatalf("Decoration = %q, want rated", got)
		}
	})
	t.Run("Creator", func(t *testing.T) {
		got := c.on(t).eval("Creator")
		id := &mspproto.SerializedIdentity{}
		if err := proto.Unmarshal([]byte(got), id); err != nil {
			t.Fatal(err)
		}
		if id.Mspid != "Org1MSP" || !bytes.Equal(id.IdBytes, readPEM(t, c.info.Organizations[0].Users["user1"].Cert)) {
			t.Fatalf("Creator = %s / %q, want Org1MSP and user1's certificate", id.Mspid, id.IdBytes)
		}
	})
	t.Run("Timestamp Binding SignedProposal Context", func(t *testing.T) {
		for _, fn := range []string{"Timestamp", "Binding", "SignedProposal", "Context"} {
			prop, err := c.contract.NewProposal(fn)
			if err != nil {
				t.Fatal(err)
			}
			out, err := prop.EvaluateWithContext(ctx)
			if err != nil {
				t.Fatalf("%s: %s", fn, errorText(err))
			}
			sp, hdr := scProposal(t, prop)
			switch fn {
			case "Timestamp":
				want := hdr.ch.GetTimestamp().AsTime().UTC().Format(time.RFC3339Nano)
				if string(out) != want {
					t.Fatalf("Timestamp = %s, want the proposal's %s", out, want)
				}
			case "Binding":
				// Fabric's binding: SHA-256(nonce ‖ creator ‖ epoch, 8 bytes little-endian).
				epoch := make([]byte, 8)
				binary.LittleEndian.PutUint64(epoch, hdr.ch.GetEpoch())
				sum := sha256.Sum256(slices.Concat(hdr.sig.GetNonce(), hdr.sig.GetCreator(), epoch))
				if string(out) != hex.EncodeToString(sum[:]) {
					t.Fatalf("Binding = %s, want %x", out, sum)
				}
			case "SignedProposal":
				got := &pb.SignedProposal{}
				if err := proto.Unmarshal(out, got); err != nil || !proto.Equal(got, sp) {
					t.Fatalf("SignedProposal differs from the one the client signed (%v)", err)
				}
			case "Context":
				if want := channel + shimcheck.Separator + prop.TransactionID(); string(out) != want {
					t.Fatalf("Context = %q, want %q", out, want)
				}
			}
		}
	})
	t.Run("events", func(t *testing.T) {
		s := c.on(t)
		evCtx, evCancel := context.WithTimeout(ctx, time.Minute)
		defer evCancel()
		events, err := c.network.ChaincodeEvents(evCtx, name)
		if err != nil {
			t.Fatal(err)
		}
		_, st := s.submit("Event", "Moved", "payload\x00bytes")
		// Replayed from the commit block too, in case the stream started late.
		replay, err := c.network.ChaincodeEvents(evCtx, name, client.WithStartBlock(st.BlockNumber))
		if err != nil {
			t.Fatal(err)
		}
		for _, ch := range []<-chan *client.ChaincodeEvent{events, replay} {
			select {
			case ev, ok := <-ch:
				if !ok {
					t.Fatal("event stream closed")
				}
				if ev.ChaincodeName != name || ev.EventName != "Moved" || string(ev.Payload) != "payload\x00bytes" ||
					ev.TransactionID != st.TransactionID || ev.BlockNumber != st.BlockNumber {
					t.Fatalf("event = %+v, want Moved from %s in block %d", ev, st.TransactionID, st.BlockNumber)
				}
			case <-evCtx.Done():
				t.Fatal("no chaincode event received")
			}
		}
	})
	t.Run("Invoke same channel", func(t *testing.T) {
		s := c.on(t)
		id := fmt.Sprintf("%s-asset-%d", name, time.Now().UnixNano())
		_, st := s.submit("Invoke", "basic", "", "CreateAsset", id, "blue", "5", "Tomoko", "300")
		// The transaction wrote basic's namespace, whose MAJORITY policy
		// needs both organisations: the gateway planned for it.
		if got := endorsingMSPs(t, c.network, st); !slices.Equal(got, []string{"Org1MSP", "Org2MSP"}) {
			t.Fatalf("Invoke of basic endorsed by %v, want both organisations", got)
		}
		raw, err := c.network.GetContract("basic").EvaluateWithContext(ctx, "ReadAsset", client.WithArguments(id))
		if err != nil || !strings.Contains(string(raw), `"Color":"blue"`) {
			t.Fatalf("basic ReadAsset %s = %s, %s: the callee's write is not in its namespace", id, raw, scErr(err))
		}
		if got := s.eval("Invoke", "basic", channel, "ReadAsset", id); !strings.Contains(got, `"Owner":"Tomoko"`) {
			t.Fatalf("Invoke basic ReadAsset = %q", got)
		}
		s.evalFails("Invoke", []string{"basic", "", "ReadAsset", "no-such-asset"}, "invoke basic: status 500", "no-such-asset does not exist")
		s.evalFails("Invoke", []string{"nope", "", "Anything"}, "nope")
	})
	t.Run("Invoke other channel is read-only", func(t *testing.T) {
		s := c.on(t)
		other := &scTB{t: t, c: &scClient{ctx: ctx, n: c.n, info: c.info, contract: gw.GetNetwork(scOtherChannel).GetContract(name)}}
		other.submit("PutGet", "x", "over there")
		if got := s.eval("Invoke", name, scOtherChannel, "Get", "x"); got != "over there" {
			t.Fatalf("Invoke %s on %s Get x = %q", name, scOtherChannel, got)
		}
		if got := s.eval("Get", "x"); got != "" {
			t.Fatalf("Get x on %s = %q: the channels' states are not separate", channel, got)
		}
		// Reading another channel does not stop the transaction from
		// committing (those reads are not validated, as in Fabric).
		if got, _ := s.submit("Invoke", name, scOtherChannel, "Get", "x"); got != "over there" {
			t.Fatalf("submitted Invoke %s on %s Get x = %q", name, scOtherChannel, got)
		}
		s.evalFails("Invoke", []string{name, scOtherChannel, "PutGet", "x", "y"}, "read-only")
		out, _, err := c.contract.SubmitAsyncWithContext(ctx, "Invoke", client.WithArguments(name, scOtherChannel, "Batch", "p", "3"))
		if err == nil {
			t.Fatalf("a write to %s through a chaincode call was endorsed (%q)", scOtherChannel, out)
		}
		scWantError(t, "submit Invoke other channel Batch", err, "read-only")
		if got := other.eval("Get", "x"); got != "over there" {
			t.Fatalf("Get x on %s = %q after refused writes", scOtherChannel, got)
		}
	})
	t.Run("Fail and unknown function", func(t *testing.T) {
		s := c.on(t)
		s.evalFails("Fail", []string{"boom"}, "boom")
		s.evalFails("NoSuchFunction", nil, `unknown function "NoSuchFunction"`)
	})
}

func scReadFile(t *testing.T, path string) []byte {
	t.Helper()
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return raw
}

func scErr(err error) string {
	if err == nil {
		return "<nil>"
	}
	return errorText(err)
}

type scHeaders struct {
	ch  *cb.ChannelHeader
	sig *cb.SignatureHeader
}

// scProposal decodes a proposal the client signed (and sent).
func scProposal(t *testing.T, prop *client.Proposal) (*pb.SignedProposal, scHeaders) {
	t.Helper()
	raw, err := prop.Bytes()
	if err != nil {
		t.Fatal(err)
	}
	ptx := &gp.ProposedTransaction{}
	if err := proto.Unmarshal(raw, ptx); err != nil {
		t.Fatal(err)
	}
	p := &pb.Proposal{}
	hdr := &cb.Header{}
	ch := &cb.ChannelHeader{}
	sig := &cb.SignatureHeader{}
	if proto.Unmarshal(ptx.GetProposal().GetProposalBytes(), p) != nil || proto.Unmarshal(p.Header, hdr) != nil ||
		proto.Unmarshal(hdr.ChannelHeader, ch) != nil || proto.Unmarshal(hdr.SignatureHeader, sig) != nil {
		t.Fatal("cannot decode the client's proposal")
	}
	return ptx.GetProposal(), scHeaders{ch: ch, sig: sig}
}

// scEvaluateDecorated evaluates fn with decorations in the proposal's
// chaincode input, which the Fabric Gateway client cannot set: it builds
// the proposal with the client, adds them, signs it as user1 and calls the
// Gateway service's Evaluate itself.
func scEvaluateDecorated(t *testing.T, c *scClient, decorations map[string][]byte, fn string, args ...string) string {
	t.Helper()
	prop, err := c.contract.NewProposal(fn, client.WithArguments(args...))
	if err != nil {
		t.Fatal(err)
	}
	raw, err := prop.Bytes()
	if err != nil {
		t.Fatal(err)
	}
	ptx := &gp.ProposedTransaction{}
	p := &pb.Proposal{}
	cpp := &pb.ChaincodeProposalPayload{}
	cis := &pb.ChaincodeInvocationSpec{}
	if proto.Unmarshal(raw, ptx) != nil || proto.Unmarshal(ptx.GetProposal().GetProposalBytes(), p) != nil ||
		proto.Unmarshal(p.Payload, cpp) != nil || proto.Unmarshal(cpp.Input, cis) != nil {
		t.Fatal("cannot decode the client's proposal")
	}
	cis.ChaincodeSpec.Input.Decorations = decorations
	cpp.Input = mustMarshal(t, cis)
	p.Payload = mustMarshal(t, cpp)
	propBytes := mustMarshal(t, p)
	_, sign := gatewayIdentity(t, "Org1MSP", c.info.Organizations[0].Users["user1"])
	digest := sha256.Sum256(propBytes)
	sig, err := sign(digest[:])
	if err != nil {
		t.Fatal(err)
	}
	resp, err := gp.NewGatewayClient(c.conn).Evaluate(c.ctx, &gp.EvaluateRequest{
		TransactionId: prop.TransactionID(), ChannelId: c.network.Name(),
		ProposedTransaction: &pb.SignedProposal{ProposalBytes: propBytes, Signature: sig},
	})
	if err != nil {
		t.Fatalf("decorated %s: %s", fn, errorText(err))
	}
	if resp.GetResult().GetStatus() != 200 {
		t.Fatalf("decorated %s: status %d: %s", fn, resp.GetResult().GetStatus(), resp.GetResult().GetMessage())
	}
	return string(resp.GetResult().GetPayload())
}
