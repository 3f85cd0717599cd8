// Package launcher starts and keeps alive the chaincode the peer runs
// itself. Launch builds an installed package (package builder) and then,
// depending on the build:
//
//   - runs it as a child process (the golang builder's binary or an external
//     builder's bin/run), which dials the peer's ChaincodeSupport.Register
//     with a TLS client certificate issued for that start by the peer's
//     chaincode CA; its output goes to the peer's log, one record per line,
//     tagged with the package ID; if it exits it is restarted with
//     exponential backoff;
//   - or, when the release holds chaincode/server/connection.json, dials the
//     chaincode server (chaincode as a service), opens Chaincode.Connect and
//     hands the stream to the Server; if the stream ends it re-dials with
//     backoff.
//
// Launch is on demand and idempotent: concurrent callers for one package
// share one build and one runtime. A package whose chaincode registered on
// its own (a process started by someone else, e.g. the local network
// tooling, or Fabric's dev mode) is never launched: the supervisor checks
// the Registry before every start and steps aside when the package is
// already served. Before a restart it first gives the stopped chaincode's own
// registration time to go (Config.StaleRegistration).
//
// # Concurrency
//
// Launcher is safe for concurrent use. Every runtime has one supervising
// goroutine, owned by the Launcher; Close stops them all — terminating
// each child's whole process group (SIGTERM, then SIGKILL after a grace
// period) so no chaincode process outlives the peer — and returns only once
// they have exited.
package launcher

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"sync"
	"syscall"
	"time"

	pb "github.com/hyperledger/fabric-protos-go-apiv2/peer"
	"google.golang.org/grpc"
	"google.golang.org/grpc/connectivity"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/cairn-ledger/cairn/chaincode/ccpackage"
	"github.com/cairn-ledger/cairn/peer/internal/builder"
	"github.com/cairn-ledger/cairn/peer/internal/chaincode"
)

// ErrClosed: the launcher has been closed.
var ErrClosed = errors.New("chaincode launcher is closed")

// Packages reads installed chaincode packages.
type Packages interface {
	Package(packageID string) ([]byte, error)
}

// Builder builds packages (builder.Builder).
type Builder interface {
	Build(ctx context.Context, packageID string, pkg []byte) (*builder.Instance, error)
}

// Server serves a chaincode stream the peer dialled (chaincode.Support).
type Server interface {
	Serve(stream chaincode.Stream) error
}

// Registry tells whether a chaincode with a package ID is connected.
type Registry interface {
	Registered(packageID string) bool
}

// Config configures a Launcher.
type Config struct {
	Packages Packages
	Builder  Builder
	Server   Server
	Registry Registry
	// CA issues the chaincode's TLS client certificates.
	CA *CA
	// PeerAddress is where chaincode processes dial the peer (host:port).
	PeerAddress string
	// PeerRootCert (PEM) verifies the peer's TLS certificate.
	PeerRootCert []byte
	// MSPID is the peer's organisation (CORE_PEER_LOCALMSPID).
	MSPID string
	// RunDir holds the run metadata folders of running chaincode (required).
	RunDir string
	// CertValidity is how long an issued client certificate is valid; default 24h.
	CertValidity time.Duration
	// MinBackoff and MaxBackoff bound the wait before a restart or re-dial;
	// defaults 500ms and 30s. A runtime that stayed up for StableAfter
	// (default 1m) restarts after MinBackoff again.
	MinBackoff, MaxBackoff, StableAfter time.Duration
	// StaleRegistration (default 5s) is how long a restart waits for the
	// registration of the chaincode that stopped to go away before taking a
	// registration still there for someone else's: the peer notices a dead
	// chaincode stream only when its handler next reads from it, which can be
	// after the process's exit is known.
	StaleRegistration time.Duration
	// TermTimeout is how long a stopping process may take after SIGTERM
	// before its group is killed; default 5s (Fabric's value).
	TermTimeout time.Duration
	Logger      *slog.Logger
}

// Validate reports the first missing setting.
func (c Config) Validate() error {
	switch {
	case c.Packages == nil || c.Builder == nil || c.Server == nil || c.Registry == nil:
		return errors.New("launcher: packages, builder, server and registry are required")
	case c.CA == nil:
		return errors.New("launcher: chaincode CA is required")
	case c.PeerAddress == "" || len(c.PeerRootCert) == 0:
		return errors.New("launcher: peer address and root certificate are required")
	case c.RunDir == "":
		return errors.New("launcher: run directory is required")
	}
	return nil
}

func (c Config) withDefaults() Config {
	if c.CertValidity <= 0 {
		c.CertValidity = 24 * time.Hour
	}
	if c.MinBackoff <= 0 {
		c.MinBackoff = 500 * time.Millisecond
	}
	if c.MaxBackoff < c.MinBackoff {
		c.MaxBackoff = max(30*time.Second, c.MinBackoff)
	}
	if c.StableAfter <= 0 {
		c.StableAfter = time.Minute
	}
	if c.StaleRegistration <= 0 {
		c.StaleRegistration = 5 * time.Second
	}
	if c.TermTimeout <= 0 {
		c.TermTimeout = 5 * time.Second
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	return c
}

// Launcher launches chaincode. Create it with New; Close stops everything.
type Launcher struct {
	cfg Config
	log *slog.Logger

	// ctx is the root of every runtime; Close cancels it.
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu       sync.Mutex
	closed   bool
	runtimes map[string]*runtime
}

// runtime is one supervised chaincode.
type runtime struct {
	packageID string
	started   chan struct{} // closed after the first start attempt
	err       error         // why it could not start; valid once started is closed

	mu  sync.Mutex
	pid int
}

// New returns a Launcher; it starts nothing until Launch.
func New(cfg Config) (*Launcher, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	if err := os.MkdirAll(cfg.RunDir, 0o700); err != nil {
		return nil, fmt.Errorf("create chaincode run directory: %w", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	return &Launcher{cfg: cfg, log: cfg.Logger, ctx: ctx, cancel: cancel, runtimes: map[string]*runtime{}}, nil
}

// Launch makes sure the chaincode of packageID is running or being dialled,
// building it first if needed. It returns once the first start was
// attempted, with the reason if the package cannot be built or started; the
// caller then waits for the chaincode to register. Launching a package that
// is already supervised returns at once.
func (l *Launcher) Launch(ctx context.Context, packageID string) error {
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return ErrClosed
	}
	r, ok := l.runtimes[packageID]
	if !ok {
		r = &runtime{packageID: packageID, started: make(chan struct{})}
		l.runtimes[packageID] = r
		l.wg.Add(1)
		go func() {
			defer l.wg.Done()
			defer l.forget(r)
			l.supervise(r)
		}()
	}
	l.mu.Unlock()
	select {
	case <-r.started:
		return r.err
	case <-ctx.Done():
		return fmt.Errorf("launch chaincode %s: %w", packageID, ctx.Err())
	}
}

// PID is the process ID of the running chaincode process of packageID, for
// operators and tests; ok is false when no process of it is running.
func (l *Launcher) PID(packageID string) (pid int, ok bool) {
	l.mu.Lock()
	r := l.runtimes[packageID]
	l.mu.Unlock()
	if r == nil {
		return 0, false
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.pid, r.pid != 0
}

// Close stops every runtime and waits for them; Launch fails afterwards.
func (l *Launcher) Close() {
	l.mu.Lock()
	l.closed = true
	l.mu.Unlock()
	l.cancel()
	l.wg.Wait()
}

func (l *Launcher) forget(r *runtime) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.runtimes[r.packageID] == r {
		delete(l.runtimes, r.packageID)
	}
}

// supervise builds the package and keeps it running until the launcher
// closes, the build fails, or someone else serves the package.
func (l *Launcher) supervise(r *runtime) {
	once := sync.Once{}
	markStarted := func(err error) {
		once.Do(func() { r.err = err; close(r.started) })
	}
	defer markStarted(ErrClosed) // any exit before the first start

	inst, err := l.build(r.packageID)
	if err != nil {
		markStarted(err)
		return
	}
	conn, isServer, err := inst.Server()
	if err != nil {
		markStarted(fmt.Errorf("launch chaincode %s: %w", r.packageID, err))
		return
	}
	log := l.log.With("package_id", r.packageID, "builder", inst.Builder)
	backoff := l.cfg.MinBackoff
	restarting := false
	for {
		if restarting {
			l.awaitDeregistration(r.packageID)
		}
		restarting = true
		if l.cfg.Registry.Registered(r.packageID) {
			log.Info("chaincode is already registered; not launching it")
			markStarted(nil)
			return
		}
		began := time.Now()
		var err error
		if isServer {
			err = l.dialAndServe(r, conn, log, func() { markStarted(nil) })
		} else {
			err = l.runProcess(r, inst, log, func(err error) { markStarted(err) })
		}
		if errors.Is(err, builder.ErrNoRun) {
			markStarted(err)
			return
		}
		if l.ctx.Err() != nil {
			return
		}
		if time.Since(began) >= l.cfg.StableAfter {
			backoff = l.cfg.MinBackoff
		}
		log.Warn("chaincode stopped; restarting", "error", err, "backoff", backoff.String())
		select {
		case <-time.After(backoff):
		case <-l.ctx.Done():
			return
		}
		backoff = min(2*backoff, l.cfg.MaxBackoff)
	}
}

// awaitDeregistration waits, up to StaleRegistration, until packageID is no
// longer registered or the launcher closes.
func (l *Launcher) awaitDeregistration(packageID string) {
	deadline := time.Now().Add(l.cfg.StaleRegistration)
	for l.cfg.Registry.Registered(packageID) && time.Now().Before(deadline) {
		select {
		case <-time.After(20 * time.Millisecond):
		case <-l.ctx.Done():
			return
		}
	}
}

func (l *Launcher) build(packageID string) (*builder.Instance, error) {
	pkg, err := l.cfg.Packages.Package(packageID)
	if err != nil {
		return nil, fmt.Errorf("launch chaincode %s: %w", packageID, err)
	}
	inst, err := l.cfg.Builder.Build(l.ctx, packageID, pkg)
	if err != nil {
		return nil, fmt.Errorf("launch chaincode %s: %w", packageID, err)
	}
	return inst, nil
}

// runProcess starts the chaincode process once and waits for it to exit or
// for the launcher to close. started reports the outcome of the start.
func (l *Launcher) runProcess(r *runtime, inst *builder.Instance, log *slog.Logger, started func(error)) error {
	runDir, err := os.MkdirTemp(l.cfg.RunDir, builder.SanitizePackageID(r.packageID)+"-")
	if err != nil {
		started(fmt.Errorf("launch chaincode %s: %w", r.packageID, err))
		return err
	}
	defer os.RemoveAll(runDir)
	certPEM, keyPEM, err := l.cfg.CA.Issue(r.packageID, l.cfg.CertValidity)
	if err != nil {
		started(fmt.Errorf("launch chaincode %s: %w", r.packageID, err))
		return err
	}
	cmd, err := inst.Command(runDir, builder.RunConfig{
		PackageID:   r.packageID,
		PeerAddress: l.cfg.PeerAddress,
		ClientCert:  string(certPEM),
		ClientKey:   string(keyPEM),
		RootCert:    string(l.cfg.PeerRootCert),
		MSPID:       l.cfg.MSPID,
	})
	if err != nil {
		started(err)
		return err
	}
	stdout := builder.NewLogWriter(log, slog.LevelInfo, "chaincode output", "stream", "stdout")
	stderr := builder.NewLogWriter(log, slog.LevelInfo, "chaincode output", "stream", "stderr")
	defer stdout.Close()
	defer stderr.Close()
	cmd.Stdout, cmd.Stderr = stdout, stderr
	cmd.WaitDelay = time.Second
	if err := cmd.Start(); err != nil {
		err = fmt.Errorf("start chaincode %s: %w", r.packageID, err)
		started(err)
		return err
	}
	pid := cmd.Process.Pid
	r.mu.Lock()
	r.pid = pid
	r.mu.Unlock()
	defer func() {
		r.mu.Lock()
		r.pid = 0
		r.mu.Unlock()
	}()
	log.Info("chaincode process started", "pid", pid)
	started(nil)

	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	select {
	case err := <-exited:
		// The leader is gone; take down anything it left in its group.
		_ = syscall.Kill(-pid, syscall.SIGKILL)
		return fmt.Errorf("chaincode process %d exited: %w", pid, exitErr(err))
	case <-l.ctx.Done():
	}
	_ = syscall.Kill(-pid, syscall.SIGTERM)
	select {
	case <-exited:
	case <-time.After(l.cfg.TermTimeout):
		log.Warn("chaincode process ignored SIGTERM; killing it", "pid", pid)
	}
	// Kill the whole group even when the leader left in time: its children
	// must not outlive the peer.
	_ = syscall.Kill(-pid, syscall.SIGKILL)
	select {
	case <-exited:
	case <-time.After(l.cfg.TermTimeout):
		log.Error("chaincode process did not exit after SIGKILL", "pid", pid)
	}
	return l.ctx.Err()
}

func exitErr(err error) error {
	if err == nil {
		return errors.New("exit status 0")
	}
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return errors.New(ee.ProcessState.String())
	}
	return err
}

// dialAndServe dials a chaincode server once and serves the stream until it
// ends. connected is called once the first dial was attempted.
func (l *Launcher) dialAndServe(r *runtime, conn ccpackage.Connection, log *slog.Logger, attempted func()) error {
	defer attempted()
	creds, err := transportCredentials(conn)
	if err != nil {
		return fmt.Errorf("chaincode %s server %s: %w", r.packageID, conn.Address, err)
	}
	cc, err := grpc.NewClient(conn.Address, grpc.WithTransportCredentials(creds),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(100<<20), grpc.MaxCallSendMsgSize(100<<20)))
	if err != nil {
		return fmt.Errorf("chaincode %s server %s: %w", r.packageID, conn.Address, err)
	}
	defer cc.Close()
	if err := waitReady(l.ctx, cc, builder.DialTimeout(conn)); err != nil {
		return fmt.Errorf("dial chaincode %s server %s: %w", r.packageID, conn.Address, err)
	}
	// The stream's context is cancelled once Serve returns, which ends the
	// RPC and so the Server's receiving goroutine (chaincode.Support.Serve).
	ctx, cancel := context.WithCancel(l.ctx)
	defer cancel()
	stream, err := pb.NewChaincodeClient(cc).Connect(ctx)
	if err != nil {
		return fmt.Errorf("connect to chaincode %s server %s: %w", r.packageID, conn.Address, err)
	}
	log.Info("connected to chaincode server", "address", conn.Address)
	attempted()
	err = l.cfg.Server.Serve(stream)
	if err == nil {
		err = errors.New("stream ended")
	}
	return fmt.Errorf("chaincode %s server %s: %w", r.packageID, conn.Address, err)
}

func waitReady(ctx context.Context, cc *grpc.ClientConn, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	cc.Connect()
	for {
		s := cc.GetState()
		if s == connectivity.Ready {
			return nil
		}
		if !cc.WaitForStateChange(ctx, s) {
			return fmt.Errorf("not ready after %s (state %s)", timeout, s)
		}
	}
}

// transportCredentials applies connection.json's TLS settings.
func transportCredentials(conn ccpackage.Connection) (credentials.TransportCredentials, error) {
	if !conn.TLSRequired {
		return insecure.NewCredentials(), nil
	}
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM([]byte(conn.RootCert)) {
		return nil, errors.New("root_cert holds no PEM certificate")
	}
	cfg := &tls.Config{MinVersion: tls.VersionTLS12, RootCAs: roots}
	if conn.ClientAuthRequired {
		pair, err := tls.X509KeyPair([]byte(conn.ClientCert), []byte(conn.ClientKey))
		if err != nil {
			return nil, fmt.Errorf("client key pair: %w", err)
		}
		cfg.Certificates = []tls.Certificate{pair}
	}
	return credentials.NewTLS(cfg), nil
}
