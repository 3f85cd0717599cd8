package peer

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"testing/fstest"
	"time"

	"github.com/hyperledger/fabric-chaincode-go/v2/shim"
	"github.com/hyperledger/fabric-protos-go-apiv2/ledger/queryresult"
	pb "github.com/hyperledger/fabric-protos-go-apiv2/peer"
	lb "github.com/hyperledger/fabric-protos-go-apiv2/peer/lifecycle"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/protobuf/proto"

	"github.com/cairn-ledger/cairn/chaincode/basic"
	"github.com/cairn-ledger/cairn/chaincode/ccpackage"
	"github.com/cairn-ledger/cairn/internal/cryptogen"
	"github.com/cairn-ledger/cairn/internal/netconfig"
	"github.com/cairn-ledger/cairn/peer/internal/chaincode"
	"github.com/cairn-ledger/cairn/peer/internal/lifecycle"
)

const (
	launchOrg    = "org1.example.com"
	launchPeer   = "peer0.org1.example.com"
	launchMSPID  = "Org1MSP"
	launchChanID = "mychannel"
)

// launchPeerEnv is a running peer (no channels: the test drives its chaincode
// runtime directly, as the endorser does) plus its crypto material.
type launchPeerEnv struct {
	p      *Peer
	layout cryptogen.Layout
	dir    string
	txN    atomic.Int64
}

func newLaunchPeer(t *testing.T, packages ...[]byte) *launchPeerEnv {
	t.Helper()
	dir := t.TempDir()
	nw := netconfig.Default()
	cryptoDir := filepath.Join(dir, "crypto")
	if err := cryptogen.Generate(nw, cryptoDir); err != nil {
		t.Fatal(err)
	}
	l := cryptogen.Layout{Root: cryptoDir}
	dataDir := filepath.Join(dir, "data")
	// Install as the admin would, through _lifecycle's InstallChaincode.
	lc, err := lifecycle.New(lifecycle.Config{PackageDir: filepath.Join(dataDir, "chaincodes"), MSPID: launchMSPID})
	if err != nil {
		t.Fatal(err)
	}
	for _, pkg := range packages {
		args, err := proto.Marshal(&lb.InstallChaincodeArgs{ChaincodeInstallPackage: pkg})
		if err != nil {
			t.Fatal(err)
		}
		resp := lc.Invoke(context.Background(), lifecycle.Invocation{
			Args: [][]byte{[]byte(lifecycle.InstallChaincodeFuncName), args}, CreatorMSPID: launchMSPID, CreatorIsAdmin: true,
		})
		if resp.Status != 200 {
			t.Fatalf("install: %d %s", resp.Status, resp.Message)
		}
	}
	cfg := Config{
		Name:          launchPeer,
		ListenAddress: "127.0.0.1:0",
		DataDir:       dataDir,
		MSPID:         launchMSPID,
		MSPDir:        l.NodeMSPDir(true, launchOrg, launchPeer),
		TLS: TLS{
			CertFile: l.NodeTLSCertPath(true, launchOrg, launchPeer),
			KeyFile:  l.NodeTLSKeyPath(true, launchOrg, launchPeer),
		},
		ChaincodeExecuteTimeout: 90 * time.Second,
		NoSync:                  true,
		Chaincode:               Chaincode{BuildTimeout: 3 * time.Minute},
	}
	log := slog.New(slog.NewTextHandler(testLogWriter{t}, &slog.HandlerOptions{Level: slog.LevelInfo}))
	p, err := New(cfg, Deps{Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- p.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
	})
	return &launchPeerEnv{p: p, layout: l, dir: dir}
}

type testLogWriter struct{ t *testing.T }

func (w testLogWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSpace(string(p)))
	return len(p), nil
}

// memSim is a TxSimulator over a map; block, when set, holds GetState.
type memSim struct {
	mu    sync.Mutex
	state map[string][]byte
	block func()
}

func newMemSim() *memSim { return &memSim{state: map[string][]byte{}} }

func (m *memSim) GetState(ns, key string) ([]byte, error) {
	if m.block != nil {
		m.block()
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.state[ns+"/"+key], nil
}

func (m *memSim) GetStateMultipleKeys(ns string, keys []string) ([][]byte, error) {
	out := make([][]byte, len(keys))
	for i, k := range keys {
		v, _ := m.GetState(ns, k)
		out[i] = v
	}
	return out, nil
}

func (m *memSim) SetState(ns, key string, value []byte) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.state[ns+"/"+key] = value
	return nil
}

func (m *memSim) DeleteState(ns, key string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	delete(m.state, ns+"/"+key)
	return nil
}

func (m *memSim) GetStateRangeScanIterator(string, string, string) (chaincode.ResultsIterator, error) {
	return emptyIter{}, nil
}
func (m *memSim) GetStateMetadata(string, string) (map[string][]byte, error) { return nil, nil }
func (m *memSim) SetStateMetadata(string, string, map[string][]byte) error   { return nil }

type emptyIter struct{}

func (emptyIter) Next() (*queryresult.KV, error) { return nil, nil }
func (emptyIter) Close()                         {}

func (e *launchPeerEnv) execute(ctx context.Context, packageID string, sim chaincode.TxSimulator, args ...string) (*chaincode.Result, error) {
	e.txN.Add(1)
	input := &pb.ChaincodeInput{}
	for _, a := range args {
		input.Args = append(input.Args, []byte(a))
	}
	return launchingRuntime{e.p}.Execute(ctx, chaincode.Invocation{
		PackageID: packageID,
		Namespace: "basic",
		ChannelID: launchChanID,
		TxID:      fmt.Sprintf("tx%d-%d", time.Now().UnixNano(), e.txN.Load()),
		Input:     input,
	}, sim)
}

// basicModule is the sample contract laid out as its own Go module, as a
// user would package it: basic.Source() plus a go.mod (the repository's
// requirements, so it builds from the local module cache) and go.sum.
func basicModule(t *testing.T) fs.FS {
	t.Helper()
	gomod, err := os.ReadFile("../go.mod")
	if err != nil {
		t.Fatal(err)
	}
	gosum, err := os.ReadFile("../go.sum")
	if err != nil {
		t.Fatal(err)
	}
	gomod = bytes.Replace(gomod, []byte("module github.com/cairn-ledger/cairn\n"), []byte("module github.com/cairn-ledger/cairn/chaincode/basic\n"), 1)
	m := fstest.MapFS{"go.mod": {Data: gomod}, "go.sum": {Data: gosum}}
	err = fs.WalkDir(basic.Source(), ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		data, err := fs.ReadFile(basic.Source(), p)
		m[p] = &fstest.MapFile{Data: data}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// call executes and requires a successful chaincode response.
func (e *launchPeerEnv) call(t *testing.T, ctx context.Context, packageID string, sim chaincode.TxSimulator, args ...string) string {
	t.Helper()
	res, err := e.execute(ctx, packageID, sim, args...)
	if err != nil {
		t.Fatal(err)
	}
	if res.Response.Status != 200 {
		t.Fatalf("chaincode answered %d: %s", res.Response.Status, res.Response.Message)
	}
	return string(res.Response.Payload)
}

// TestLaunchGolangChaincode: the peer builds the sample contract with the
// golang builder on first use, runs it as a supervised process, and after
// the process is SIGKILLed in the middle of a transaction fails that
// proposal clearly, restarts it and serves the next one.
func TestLaunchGolangChaincode(t *testing.T) {
	if testing.Short() {
		t.Skip("builds a chaincode with the Go toolchain")
	}
	pkg, err := ccpackage.Golang("basic_1.0", "github.com/cairn-ledger/cairn/chaincode/basic/cmd/basic", basicModule(t))
	if err != nil {
		t.Fatal(err)
	}
	id := ccpackage.PackageID("basic_1.0", pkg)
	env := newLaunchPeer(t, pkg)
	ctx := context.Background()
	sim := newMemSim()

	env.call(t, ctx, id, sim, "CreateAsset", "asset1", "blue", "5", "Tomoko", "300")
	if got := env.call(t, ctx, id, sim, "ReadAsset", "asset1"); !strings.Contains(got, `"Owner":"Tomoko"`) {
		t.Fatalf("ReadAsset = %s", got)
	}
	pid, ok := env.p.launcher.PID(id)
	if !ok {
		t.Fatal("no chaincode process")
	}

	// Kill the process while it waits for the peer to answer GetState.
	entered, release := make(chan struct{}), make(chan struct{})
	var once sync.Once
	blocking := &memSim{state: sim.state, block: func() {
		once.Do(func() { close(entered) })
		<-release
	}}
	errc := make(chan error, 1)
	go func() {
		_, err := env.execute(ctx, id, blocking, "ReadAsset", "asset1")
		errc <- err
	}()
	<-entered
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	// Let the peer see the stream end, then answer the GetState the dead
	// process asked for: Execute waits for a request it is serving.
	time.Sleep(500 * time.Millisecond)
	close(release)
	select {
	case err = <-errc:
	case <-time.After(30 * time.Second):
		t.Fatal("proposal did not fail after the chaincode died")
	}
	if !errors.Is(err, chaincode.ErrDisconnected) {
		t.Fatalf("proposal error = %v, want chaincode disconnected", err)
	}
	t.Logf("proposal during crash failed with: %v", err)

	deadline := time.Now().Add(30 * time.Second)
	for {
		if np, ok := env.p.launcher.PID(id); ok && np != pid && (registry{env.p.support}).Registered(id) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("chaincode process was not restarted")
		}
		time.Sleep(50 * time.Millisecond)
	}
	if got := env.call(t, ctx, id, sim, "ReadAsset", "asset1"); !strings.Contains(got, `"Owner":"Tomoko"`) {
		t.Fatalf("ReadAsset after restart = %s", got)
	}
}

// TestLaunchCCaaS: for a ccaas package the peer dials the chaincode server
// (the real shim's ChaincodeServer, over TLS) and serves the stream.
func TestLaunchCCaaS(t *testing.T) {
	dir := t.TempDir()
	nw := netconfig.Default()
	if err := cryptogen.Generate(nw, dir); err != nil {
		t.Fatal(err)
	}
	l := cryptogen.Layout{Root: dir}
	// The chaincode server reuses a node TLS pair of the test CA (valid for 127.0.0.1).
	pair, err := tls.LoadX509KeyPair(l.NodeTLSCertPath(true, launchOrg, launchPeer), l.NodeTLSKeyPath(true, launchOrg, launchPeer))
	if err != nil {
		t.Fatal(err)
	}
	rootPEM, err := os.ReadFile(l.TLSCACertPath(true, launchOrg))
	if err != nil {
		t.Fatal(err)
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	pkg, err := ccpackage.CCaaS("basic-svc_1", ccpackage.Connection{
		Address: lis.Addr().String(), DialTimeout: "5s", TLSRequired: true, RootCert: string(rootPEM),
	})
	if err != nil {
		t.Fatal(err)
	}
	id := ccpackage.PackageID("basic-svc_1", pkg)
	cc, err := basic.NewChaincode()
	if err != nil {
		t.Fatal(err)
	}
	gs := grpc.NewServer(grpc.Creds(credentials.NewTLS(&tls.Config{Certificates: []tls.Certificate{pair}, MinVersion: tls.VersionTLS12, ClientCAs: x509.NewCertPool()})))
	pb.RegisterChaincodeServer(gs, &shim.ChaincodeServer{CCID: id, Address: lis.Addr().String(), CC: cc})
	go func() { _ = gs.Serve(lis) }()
	t.Cleanup(gs.Stop)

	env := newLaunchPeer(t, pkg)
	ctx := context.Background()
	sim := newMemSim()
	env.call(t, ctx, id, sim, "CreateAsset", "asset9", "red", "1", "Max", "10")
	if got := env.call(t, ctx, id, sim, "ReadAsset", "asset9"); !strings.Contains(got, `"Owner":"Max"`) {
		t.Fatalf("ReadAsset = %s", got)
	}
}

// TestLaunchNotBuildable: a proposal for a package no builder can build
// (here the sample packaged without a go.mod, as localnet packages it) fails
// at once with the builder's reason instead of waiting out the timeout.
func TestLaunchNotBuildable(t *testing.T) {
	pkg, err := ccpackage.Golang("basic_2.0", "github.com/cairn-ledger/cairn/chaincode/basic", basic.Source())
	if err != nil {
		t.Fatal(err)
	}
	id := ccpackage.PackageID("basic_2.0", pkg)
	env := newLaunchPeer(t, pkg)
	_, err = env.execute(context.Background(), id, newMemSim(), "ReadAsset", "x")
	if err == nil || !strings.Contains(err.Error(), "no src/go.mod") {
		t.Fatalf("execute of an unbuildable package: %v", err)
	}
}
