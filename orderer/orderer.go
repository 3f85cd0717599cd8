// Package orderer is Cairn's ordering service node: orderer.AtomicBroadcast
// (Broadcast, Deliver) over TLS gRPC, the channel participation REST API behind
// mutual TLS, and the operations endpoint (/healthz, /metrics). Each joined
// channel is ordered by its own raft group, whose members talk over the
// Cluster service (protos/cluster.proto), served on the main gRPC port or on
// a port of its own, and authenticated by their TLS client certificates. The private parts live in
// orderer/internal/...; this package only wires them.
//
// Concurrency: New binds the listeners; Run serves until its context is
// cancelled, then stops every server and chain and waits for them before
// returning. Addrs may be called from any goroutine after New.
package orderer

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/cairn-ledger/cairn/internal/comm"
	"github.com/cairn-ledger/cairn/internal/crypto"
	"github.com/cairn-ledger/cairn/internal/ops"
	"github.com/cairn-ledger/cairn/orderer/internal/broadcast"
	"github.com/cairn-ledger/cairn/orderer/internal/cluster"
	"github.com/cairn-ledger/cairn/orderer/internal/deliver"
	"github.com/cairn-ledger/cairn/orderer/internal/metrics"
	"github.com/cairn-ledger/cairn/orderer/internal/participation"
	"github.com/cairn-ledger/cairn/orderer/internal/registrar"
	"github.com/cairn-ledger/cairn/protos/leadershippb"
	ab "github.com/hyperledger/fabric-protos-go-apiv2/orderer"
	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// TLSConfig is the node's TLS identity. The certificate also identifies the node
// among a channel's raft consenters.
type TLSConfig struct {
	CertFile string `yaml:"certFile"`
	KeyFile  string `yaml:"keyFile"`
	// RootCAs verify client certificates on the gRPC endpoint when clients
	// present one (they need not); they must issue the other consenters' TLS
	// certificates. Without them client certificates are requested but not
	// verified: the cluster service pins consenter certificates either way.
	RootCAs []string `yaml:"rootCAs"`
}

// AdminConfig secures the channel participation API.
type AdminConfig struct {
	// ClientRootCAs issue the certificates admin clients must present.
	ClientRootCAs []string `yaml:"clientRootCAs"`
}

// ClusterConfig tunes the raft links to the other consenters; zero values take
// the cluster package's defaults.
type ClusterConfig struct {
	// SendBufferSize is how many raft messages queue per remote consenter
	// before new ones are dropped (Fabric's General.Cluster.SendBufferSize).
	SendBufferSize int `yaml:"sendBufferSize"`
	// MaxMessageSize bounds an inbound raft message or forwarded envelope.
	MaxMessageSize int `yaml:"maxMessageSize"`
	// SubmitTimeout bounds how long a follower waits for the leader to accept
	// a forwarded envelope (Fabric's General.Cluster.RPCTimeout).
	SubmitTimeout time.Duration `yaml:"submitTimeout"`
	// MinBackoff and MaxBackoff bound the wait between reconnections.
	MinBackoff time.Duration `yaml:"minBackoff"`
	MaxBackoff time.Duration `yaml:"maxBackoff"`
}

// Config configures an orderer node. Listen addresses may use port 0; Addrs
// reports the bound ones.
type Config struct {
	ListenAddress           string      `yaml:"listenAddress"`
	AdminListenAddress      string      `yaml:"adminListenAddress"`
	OperationsListenAddress string      `yaml:"operationsListenAddress"`
	DataDir                 string      `yaml:"dataDir"`
	TLS                     TLSConfig   `yaml:"tls"`
	Admin                   AdminConfig `yaml:"admin"`
	// ClusterListenAddress, when set, serves the raft cluster service on its
	// own port (the consenters' address in the channel config); empty serves it
	// on ListenAddress.
	ClusterListenAddress string `yaml:"clusterListenAddress"`
	// MSPID and MSPDir name the identity that signs blocks.
	MSPID  string `yaml:"mspId"`
	MSPDir string `yaml:"mspDir"`
	// DeliverTimeWindow is how far a Deliver request's timestamp may be from
	// this node's clock (Fabric's General.Authentication.TimeWindow).
	DeliverTimeWindow time.Duration `yaml:"deliverTimeWindow"`
	// Cluster tunes the links between the consenters.
	Cluster ClusterConfig `yaml:"cluster"`
	// ShutdownTimeout bounds the graceful stop of the servers.
	ShutdownTimeout time.Duration `yaml:"shutdownTimeout"`
	// NoSync skips fsync of block and raft stores: for tests only.
	NoSync bool `yaml:"noSync"`

	// Logger and Registry come from the binary, not from the file.
	Logger   *slog.Logger         `yaml:"-"`
	Registry *prometheus.Registry `yaml:"-"`
}

// DefaultConfig returns Fabric's usual ports and Cairn's defaults.
func DefaultConfig() Config {
	return Config{
		ListenAddress:           "0.0.0.0:7050",
		AdminListenAddress:      "0.0.0.0:7053",
		OperationsListenAddress: "127.0.0.1:8443",
		DeliverTimeWindow:       deliver.DefaultTimeWindow,
		ShutdownTimeout:         10 * time.Second,
	}
}

// Validate reports what is missing or inconsistent.
func (c Config) Validate() error {
	var errs []error
	need := func(v, name string) {
		if v == "" {
			errs = append(errs, fmt.Errorf("%s is required", name))
		}
	}
	need(c.ListenAddress, "listenAddress")
	need(c.AdminListenAddress, "adminListenAddress")
	need(c.OperationsListenAddress, "operationsListenAddress")
	need(c.DataDir, "dataDir")
	need(c.TLS.CertFile, "tls.certFile")
	need(c.TLS.KeyFile, "tls.keyFile")
	need(c.MSPID, "mspId")
	need(c.MSPDir, "mspDir")
	if len(c.Admin.ClientRootCAs) == 0 {
		errs = append(errs, errors.New("admin.clientRootCAs is required: the participation API needs mutual TLS"))
	}
	cl := c.Cluster
	if c.DeliverTimeWindow < 0 || c.ShutdownTimeout < 0 || cl.SubmitTimeout < 0 || cl.MinBackoff < 0 || cl.MaxBackoff < 0 {
		errs = append(errs, errors.New("durations must not be negative"))
	}
	if cl.SendBufferSize < 0 || cl.MaxMessageSize < 0 {
		errs = append(errs, errors.New("cluster sizes must not be negative"))
	}
	if len(errs) > 0 {
		return fmt.Errorf("orderer config: %w", errors.Join(errs...))
	}
	return nil
}

// Orderer is one ordering node.
type Orderer struct {
	cfg     Config
	log     *slog.Logger
	reg     *registrar.Registrar
	cluster *cluster.Cluster
	grpc    *grpc.Server
	admin   *http.Server
	ops     *ops.Server
	lis     net.Listener
	alis    net.Listener
	// cgrpc and clis serve the cluster on ClusterListenAddress; nil when it
	// shares the main server.
	cgrpc *grpc.Server
	clis  net.Listener
	ran   sync.Once
}

// Addrs are the bound listen addresses.
type Addrs struct {
	Broadcast  string // orderer.AtomicBroadcast (gRPC)
	Cluster    string // raft cluster service (gRPC); Broadcast unless configured apart
	Admin      string // channel participation API (HTTPS)
	Operations string // /healthz, /metrics (HTTP)
}

// New loads the node's identity and TLS material and binds its listeners.
// Run must be called to serve and, when it returns, to release them.
func New(cfg Config) (*Orderer, error) {
	def := DefaultConfig()
	if cfg.DeliverTimeWindow == 0 {
		cfg.DeliverTimeWindow = def.DeliverTimeWindow
	}
	if cfg.ShutdownTimeout == 0 {
		cfg.ShutdownTimeout = def.ShutdownTimeout
	}
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	log = log.With("component", "orderer")
	if cfg.Registry == nil {
		cfg.Registry = prometheus.NewRegistry()
	}

	signer, err := crypto.LoadSigningIdentity(cfg.MSPID, cfg.MSPDir)
	if err != nil {
		return nil, fmt.Errorf("orderer: %w", err)
	}
	tlsCert, err := os.ReadFile(cfg.TLS.CertFile)
	if err != nil {
		return nil, fmt.Errorf("orderer: %w", err)
	}
	keyPair, err := tls.LoadX509KeyPair(cfg.TLS.CertFile, cfg.TLS.KeyFile)
	if err != nil {
		return nil, fmt.Errorf("orderer: TLS key pair: %w", err)
	}
	serverTLS, err := comm.ServerTLS(cfg.TLS.CertFile, cfg.TLS.KeyFile, cfg.TLS.RootCAs, false)
	if err != nil {
		return nil, fmt.Errorf("orderer: broadcast TLS: %w", err)
	}
	// Client certificates are requested, not verified in the handshake, as
	// Fabric's orderer does without clientAuthRequired: Fabric tools that
	// present a self-signed certificate must reach Broadcast and Deliver,
	// which decide on signed envelopes; the cluster service pins the
	// consenters' certificates from the channel config itself.
	serverTLS.ClientAuth = tls.RequestClientCert
	adminTLS, err := comm.ServerTLS(cfg.TLS.CertFile, cfg.TLS.KeyFile, cfg.Admin.ClientRootCAs, true)
	if err != nil {
		return nil, fmt.Errorf("orderer: admin TLS: %w", err)
	}
	m, err := metrics.New(cfg.Registry)
	if err != nil {
		return nil, fmt.Errorf("orderer: %w", err)
	}
	chans := &clusterChannels{}
	cl, err := cluster.New(cluster.Config{
		ClientCert:     keyPair,
		Channels:       chans,
		SendQueueSize:  cfg.Cluster.SendBufferSize,
		MaxMessageSize: cfg.Cluster.MaxMessageSize,
		SubmitTimeout:  cfg.Cluster.SubmitTimeout,
		MinBackoff:     cfg.Cluster.MinBackoff,
		MaxBackoff:     cfg.Cluster.MaxBackoff,
		Logger:         log.With("service", "cluster"),
		Metrics:        m,
	})
	if err != nil {
		return nil, fmt.Errorf("orderer: %w", err)
	}
	reg, err := registrar.New(registrar.Config{
		DataDir: cfg.DataDir, TLSCert: tlsCert, ClientCert: &keyPair, Signer: signer, Transports: cl, Logger: log, Metrics: m, NoSync: cfg.NoSync,
	})
	if err != nil {
		return nil, fmt.Errorf("orderer: %w", err)
	}
	chans.r = reg // before any goroutine can use it: nothing runs before Run

	o := &Orderer{cfg: cfg, log: log, reg: reg, cluster: cl}
	o.grpc, err = comm.NewGRPCServer(serverTLS)
	if err != nil {
		return nil, fmt.Errorf("orderer: %w", err)
	}
	ab.RegisterAtomicBroadcastServer(o.grpc, &abServer{
		b: broadcast.New(broadcastChannels{reg}, log.With("service", "broadcast"), m),
		d: deliver.New(deliverChannels{reg}, log.With("service", "deliver"), nil, cfg.DeliverTimeWindow),
	})
	leadershippb.RegisterLeadershipServer(o.grpc, &leadershipServer{r: reg})
	if cfg.ClusterListenAddress == "" {
		cl.Register(o.grpc)
	} else {
		if o.cgrpc, err = comm.NewGRPCServer(serverTLS.Clone()); err != nil {
			return nil, fmt.Errorf("orderer: %w", err)
		}
		cl.Register(o.cgrpc)
	}
	o.admin = &http.Server{
		Handler:           participation.New(reg, log.With("service", "participation")),
		TLSConfig:         adminTLS,
		ReadHeaderTimeout: 10 * time.Second,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelDebug),
	}
	o.ops = ops.New(ops.Config{ListenAddress: cfg.OperationsListenAddress, Registry: cfg.Registry, Logger: log})
	o.ops.AddCheck("raft", o.raftHealth)

	if o.lis, err = net.Listen("tcp", cfg.ListenAddress); err != nil {
		return nil, fmt.Errorf("orderer: listen %s: %w", cfg.ListenAddress, err)
	}
	if o.alis, err = net.Listen("tcp", cfg.AdminListenAddress); err != nil {
		o.lis.Close()
		return nil, fmt.Errorf("orderer: admin listen %s: %w", cfg.AdminListenAddress, err)
	}
	if o.cgrpc != nil {
		if o.clis, err = net.Listen("tcp", cfg.ClusterListenAddress); err != nil {
			o.lis.Close()
			o.alis.Close()
			return nil, fmt.Errorf("orderer: cluster listen %s: %w", cfg.ClusterListenAddress, err)
		}
	}
	if err := o.ops.Start(); err != nil {
		o.closeListeners()
		return nil, fmt.Errorf("orderer: %w", err)
	}
	return o, nil
}

// Addrs reports the bound listen addresses.
func (o *Orderer) Addrs() Addrs {
	a := Addrs{Broadcast: o.lis.Addr().String(), Cluster: o.lis.Addr().String(), Admin: o.alis.Addr().String(), Operations: o.ops.Addr()}
	if o.clis != nil {
		a.Cluster = o.clis.Addr().String()
	}
	return a
}

func (o *Orderer) closeListeners() {
	o.lis.Close()
	o.alis.Close()
	if o.clis != nil {
		o.clis.Close()
	}
}

// Run opens the joined channels and serves until ctx is cancelled, then stops
// everything and returns. It may be called once.
func (o *Orderer) Run(ctx context.Context) error {
	err := errors.New("orderer: Run called twice")
	o.ran.Do(func() { err = o.run(ctx) })
	return err
}

func (o *Orderer) run(ctx context.Context) error {
	defer o.ops.Close()
	// Runs after the registrar stopped its chains, the only users of the links.
	defer o.cluster.Close()
	if err := o.reg.Start(); err != nil {
		o.closeListeners()
		o.reg.Stop()
		return fmt.Errorf("orderer: %w", err)
	}
	defer o.reg.Stop()

	var wg sync.WaitGroup
	errc := make(chan error, 3)
	wg.Add(2)
	go func() {
		defer wg.Done()
		if err := o.grpc.Serve(o.lis); err != nil {
			errc <- fmt.Errorf("orderer: broadcast server: %w", err)
		}
	}()
	go func() {
		defer wg.Done()
		if err := o.admin.ServeTLS(o.alis, "", ""); err != nil && !errors.Is(err, http.ErrServerClosed) {
			errc <- fmt.Errorf("orderer: admin server: %w", err)
		}
	}()
	if o.cgrpc != nil {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := o.cgrpc.Serve(o.clis); err != nil {
				errc <- fmt.Errorf("orderer: cluster server: %w", err)
			}
		}()
	}
	a := o.Addrs()
	o.log.Info("orderer serving", "broadcast", a.Broadcast, "cluster", a.Cluster, "admin", a.Admin, "operations", a.Operations)

	var runErr error
	select {
	case <-ctx.Done():
	case runErr = <-errc:
	}
	o.log.Info("orderer stopping")
	shutdownCtx, cancel := context.WithTimeout(context.Background(), o.cfg.ShutdownTimeout)
	defer cancel()
	// Deliver streams may wait forever for blocks: Stop cancels them rather than
	// waiting as GracefulStop would.
	o.grpc.Stop()
	if o.cgrpc != nil {
		o.cgrpc.Stop()
	}
	if err := o.admin.Shutdown(shutdownCtx); err != nil {
		o.admin.Close()
	}
	wg.Wait()
	return runErr
}

func (o *Orderer) raftHealth(context.Context) error {
	var bad []string
	for id, st := range o.reg.Statuses() {
		switch {
		case st.Degraded != "":
			bad = append(bad, fmt.Sprintf("%s: %s", id, st.Degraded))
		case !st.Running:
			bad = append(bad, id+": raft chain not running")
		case st.Leader == 0:
			bad = append(bad, id+": no raft leader")
		}
	}
	if len(bad) > 0 {
		sort.Strings(bad)
		return errors.New(strings.Join(bad, "; "))
	}
	return nil
}

// abServer adapts the broadcast and deliver handlers to the gRPC service and
// maps their errors to gRPC status in one place.
type abServer struct {
	ab.UnimplementedAtomicBroadcastServer
	b *broadcast.Handler
	d *deliver.Handler
}

func (s *abServer) Broadcast(stream ab.AtomicBroadcast_BroadcastServer) error {
	return grpcError(s.b.Handle(stream))
}

func (s *abServer) Deliver(stream ab.AtomicBroadcast_DeliverServer) error {
	return grpcError(s.d.Handle(stream))
}

func grpcError(err error) error {
	if err == nil {
		return nil
	}
	if _, ok := status.FromError(err); ok {
		return err
	}
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return status.FromContextError(err).Err()
	}
	return status.Error(codes.Internal, err.Error())
}

// leadershipServer tells Cairn gateways whether this node leads a channel's
// raft group, so that they submit to the leader rather than to a follower
// that would forward.
type leadershipServer struct {
	leadershippb.UnimplementedLeadershipServer
	r *registrar.Registrar
}

func (s *leadershipServer) Leader(_ context.Context, req *leadershippb.LeaderRequest) (*leadershippb.LeaderResponse, error) {
	leads, term, ok := s.r.Leads(req.GetChannelId())
	if !ok {
		return nil, status.Errorf(codes.NotFound, "channel %q is not served by this orderer", req.GetChannelId())
	}
	return &leadershippb.LeaderResponse{IsLeader: leads, Term: term}, nil
}

type broadcastChannels struct{ r *registrar.Registrar }

func (b broadcastChannels) Channel(id string) (broadcast.Channel, bool) {
	ch, ok := b.r.Channel(id)
	if !ok {
		return nil, false
	}
	return ch, true
}

type deliverChannels struct{ r *registrar.Registrar }

func (d deliverChannels) Channel(id string) (deliver.Channel, bool) {
	ch, ok := d.r.Channel(id)
	if !ok {
		return nil, false
	}
	return ch, true
}

// clusterChannels lets the cluster server reach the registrar's channels.
type clusterChannels struct{ r *registrar.Registrar }

func (c *clusterChannels) Channel(id string) (cluster.Channel, bool) {
	ch, ok := c.r.Channel(id)
	if !ok {
		return nil, false
	}
	return ch, true
}
