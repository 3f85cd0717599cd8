package launcher

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"testing/fstest"
	"time"

	"github.com/cairn-ledger/cairn/chaincode/ccpackage"
	"github.com/cairn-ledger/cairn/peer/internal/builder"
	"github.com/cairn-ledger/cairn/peer/internal/chaincode"
)

type packages map[string][]byte

func (p packages) Package(id string) ([]byte, error) {
	if pkg, ok := p[id]; ok {
		return pkg, nil
	}
	return nil, errors.New("chaincode install package not found")
}

type registry struct{ registered atomic.Bool }

func (r *registry) Registered(string) bool { return r.registered.Load() }

type noServer struct{}

func (noServer) Serve(chaincode.Stream) error { return errors.New("not used") }

// processHarness launches a package whose bin/run starts a grandchild and
// waits, recording the pids it starts in logDir.
type processHarness struct {
	l      *Launcher
	id     string
	logDir string
	reg    *registry
}

func newProcessHarness(t *testing.T, opts ...func(*Config)) *processHarness {
	t.Helper()
	logDir := t.TempDir()
	bdir := t.TempDir()
	if err := os.Mkdir(filepath.Join(bdir, "bin"), 0o755); err != nil {
		t.Fatal(err)
	}
	scripts := map[string]string{
		"detect": "exit 0\n",
		"build":  "exit 0\n",
		"run": `sleep 300 &
echo $! > "$LOG_DIR/child.$$"
test -s "$2/chaincode.json"
echo $$ >> "$LOG_DIR/pids"
wait
`,
	}
	for name, body := range scripts {
		if err := os.WriteFile(filepath.Join(bdir, "bin", name), []byte("#!/bin/sh\n"+body), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	env := map[string]string{"PATH": os.Getenv("PATH"), "LOG_DIR": logDir}
	b, err := builder.New(builder.Config{
		Dir:       t.TempDir(),
		External:  []builder.External{{Name: "sh", Path: bdir, PropagateEnvironment: []string{"LOG_DIR"}}},
		LookupEnv: func(k string) (string, bool) { v, ok := env[k]; return v, ok },
	})
	if err != nil {
		t.Fatal(err)
	}
	code, err := ccpackage.CodeArchive(fstest.MapFS{"x": {Data: []byte("x")}}, "src")
	if err != nil {
		t.Fatal(err)
	}
	pkg, err := ccpackage.Write(ccpackage.Metadata{Type: "sh", Label: "sh_1"}, code)
	if err != nil {
		t.Fatal(err)
	}
	id := ccpackage.PackageID("sh_1", pkg)
	ca, err := NewCA("test", nil)
	if err != nil {
		t.Fatal(err)
	}
	reg := &registry{}
	cfg := Config{
		Packages: packages{id: pkg}, Builder: b, Server: noServer{}, Registry: reg, CA: ca,
		PeerAddress: "127.0.0.1:1", PeerRootCert: ca.CertPEM(), MSPID: "Org1MSP", RunDir: t.TempDir(),
		MinBackoff: 50 * time.Millisecond, MaxBackoff: 200 * time.Millisecond, TermTimeout: time.Second,
	}
	for _, o := range opts {
		o(&cfg)
	}
	l, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(l.Close)
	return &processHarness{l: l, id: id, logDir: logDir, reg: reg}
}

func (h *processHarness) pids(t *testing.T) []int {
	data, _ := os.ReadFile(filepath.Join(h.logDir, "pids"))
	var out []int
	for _, f := range strings.Fields(string(data)) {
		n, err := strconv.Atoi(f)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, n)
	}
	return out
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// alive reports whether pid runs; a zombie (dead, not yet reaped by an init
// that may not reap in a container) counts as dead.
func alive(pid int) bool {
	if syscall.Kill(pid, 0) != nil {
		return false
	}
	stat, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return false
	}
	if i := strings.LastIndexByte(string(stat), ')'); i > 0 && i+2 < len(stat) {
		return stat[i+2] != 'Z'
	}
	return true
}

// TestSupervisedProcess: a killed chaincode process is restarted, and Close
// leaves no process of its group behind.
func TestSupervisedProcess(t *testing.T) {
	h := newProcessHarness(t)
	ctx := context.Background()
	if err := h.l.Launch(ctx, h.id); err != nil {
		t.Fatal(err)
	}
	if err := h.l.Launch(ctx, h.id); err != nil { // idempotent
		t.Fatal(err)
	}
	waitFor(t, "first process", func() bool { return len(h.pids(t)) == 1 })
	first := h.pids(t)[0]
	if pid, ok := h.l.PID(h.id); !ok || pid != first {
		t.Fatalf("PID() = %d, %v; want %d", pid, ok, first)
	}
	if err := syscall.Kill(first, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "restart", func() bool { return len(h.pids(t)) == 2 })
	second := h.pids(t)[1]
	child := readPid(t, filepath.Join(h.logDir, "child."+strconv.Itoa(second)))
	if !alive(second) || !alive(child) {
		t.Fatal("restarted process is not running")
	}
	h.l.Close()
	if alive(second) || alive(child) {
		t.Fatalf("process %d or its child %d outlived Close", second, child)
	}
	if err := h.l.Launch(ctx, h.id); !errors.Is(err, ErrClosed) {
		t.Fatalf("Launch after Close: %v", err)
	}
}

func readPid(t *testing.T, path string) int {
	t.Helper()
	var data []byte
	waitFor(t, path, func() bool {
		data, _ = os.ReadFile(path)
		return len(strings.TrimSpace(string(data))) > 0
	})
	n, err := strconv.Atoi(strings.TrimSpace(string(data)))
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// TestAlreadyRegistered: a package someone else serves is not launched.
func TestAlreadyRegistered(t *testing.T) {
	h := newProcessHarness(t)
	h.reg.registered.Store(true)
	if err := h.l.Launch(context.Background(), h.id); err != nil {
		t.Fatal(err)
	}
	time.Sleep(200 * time.Millisecond)
	if len(h.pids(t)) != 0 {
		t.Fatal("launched a chaincode that was already registered")
	}
}

// TestRestartAwaitsStaleRegistration: the registration of a chaincode
// process that died can outlive it (the peer notices the dead stream only
// when its handler next reads); the restart waits for it to go away instead
// of taking it for someone else's and leaving the package unserved.
func TestRestartAwaitsStaleRegistration(t *testing.T) {
	h := newProcessHarness(t)
	if err := h.l.Launch(context.Background(), h.id); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "first process", func() bool { return len(h.pids(t)) == 1 })
	h.reg.registered.Store(true) // the process registered
	if err := syscall.Kill(h.pids(t)[0], syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	// The supervisor notices the exit (PID goes), then several backoffs
	// pass before the peer drops the dead registration.
	waitFor(t, "the exit to be noticed", func() bool { _, ok := h.l.PID(h.id); return !ok })
	time.Sleep(300 * time.Millisecond)
	if n := len(h.pids(t)); n != 1 {
		t.Fatalf("%d processes started while the old registration stood", n)
	}
	h.reg.registered.Store(false)
	waitFor(t, "restart", func() bool { return len(h.pids(t)) == 2 })
}

// TestRestartStepsAsideForLastingRegistration: a registration that outlasts
// StaleRegistration after the process stopped is someone else's, and the
// supervisor steps aside as it does at the first start.
func TestRestartStepsAsideForLastingRegistration(t *testing.T) {
	h := newProcessHarness(t, func(c *Config) { c.StaleRegistration = 200 * time.Millisecond })
	if err := h.l.Launch(context.Background(), h.id); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "first process", func() bool { return len(h.pids(t)) == 1 })
	h.reg.registered.Store(true)
	if err := syscall.Kill(h.pids(t)[0], syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the supervisor to step aside", func() bool {
		h.l.mu.Lock()
		defer h.l.mu.Unlock()
		return h.l.runtimes[h.id] == nil
	})
	if n := len(h.pids(t)); n != 1 {
		t.Fatalf("%d processes started for a package someone else serves", n)
	}
}

func TestLaunchErrors(t *testing.T) {
	h := newProcessHarness(t)
	err := h.l.Launch(context.Background(), "missing_1:"+strings.Repeat("0", 64))
	if err == nil || !strings.Contains(err.Error(), "install package not found") {
		t.Fatalf("Launch of a package not installed: %v", err)
	}
}

func TestCAIssue(t *testing.T) {
	ca, err := NewCA("peer0", nil)
	if err != nil {
		t.Fatal(err)
	}
	certPEM, keyPEM, err := ca.Issue(strings.Repeat("x", 100), time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if len(certPEM) == 0 || len(keyPEM) == 0 {
		t.Fatal("empty key pair")
	}
}
