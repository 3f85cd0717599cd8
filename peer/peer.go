// Package peer is Cairn's peer node: it hosts the Endorser, Deliver, Gateway,
// Discovery, ChaincodeSupport and membership gRPC services on one TLS listener, the channels it has
// joined (each pulling, validating and committing blocks), the system
// chaincodes (cscc, qscc, _lifecycle) and an operations endpoint. New builds a
// peer from its Config; Run serves until its context ends and then stops
// everything it started.
package peer

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"

	cb "github.com/hyperledger/fabric-protos-go-apiv2/common"
	gp "github.com/hyperledger/fabric-protos-go-apiv2/gateway"
	pb "github.com/hyperledger/fabric-protos-go-apiv2/peer"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"google.golang.org/grpc"

	"github.com/cairn-ledger/cairn/gateway"
	"github.com/cairn-ledger/cairn/internal/comm"
	"github.com/cairn-ledger/cairn/internal/crypto"
	"github.com/cairn-ledger/cairn/internal/msp"
	"github.com/cairn-ledger/cairn/internal/ops"
	"github.com/cairn-ledger/cairn/internal/policy"
	"github.com/cairn-ledger/cairn/peer/internal/chaincode"
	"github.com/cairn-ledger/cairn/peer/internal/channel"
	"github.com/cairn-ledger/cairn/peer/internal/deliver"
	"github.com/cairn-ledger/cairn/peer/internal/endorser"
	"github.com/cairn-ledger/cairn/peer/internal/launcher"
	"github.com/cairn-ledger/cairn/peer/internal/lifecycle"
	"github.com/cairn-ledger/cairn/peer/internal/puller"
	"github.com/cairn-ledger/cairn/peer/internal/scc"
	"github.com/cairn-ledger/cairn/peer/internal/selfsig"
	"github.com/cairn-ledger/cairn/peer/internal/validator"
)

// Config is a peer's configuration file (peer.yaml).
type Config struct {
	// Name is the peer's full name, e.g. peer0.org1.example.com.
	Name string `yaml:"name"`
	// ListenAddress serves every gRPC service (port 0 picks a free port).
	ListenAddress string `yaml:"listenAddress"`
	// OperationsListenAddress serves /healthz and /metrics.
	OperationsListenAddress string `yaml:"operationsListenAddress"`
	// DataDir holds ledgers and installed chaincode packages.
	DataDir string `yaml:"dataDir"`
	// MSPID and MSPDir are the peer's organisation and local MSP folder
	// (signcerts, keystore, cacerts, config.yaml).
	MSPID  string `yaml:"mspId"`
	MSPDir string `yaml:"mspDir"`
	TLS    TLS    `yaml:"tls"`
	// ChaincodeExecuteTimeout bounds one chaincode execution (default 30s).
	ChaincodeExecuteTimeout time.Duration `yaml:"chaincodeExecuteTimeout"`
	// NoSync skips fsync on commit; for tests only.
	NoSync bool `yaml:"noSync"`
	// Membership configures how the peer learns the other peers of its
	// channels (peer/membership.go).
	Membership MembershipConfig `yaml:"membership"`
	// Chaincode configures how the peer builds and launches chaincode.
	Chaincode Chaincode `yaml:"chaincode"`
}

// TLS names the peer's TLS files.
type TLS struct {
	CertFile string `yaml:"certFile"`
	KeyFile  string `yaml:"keyFile"`
	// ClientRootCAs verify client certificates when clients present them
	// (chaincode processes, other nodes).
	ClientRootCAs []string `yaml:"clientRootCAs"`
	// RootCAs are extra roots trusted when dialling orderers, besides those in
	// the channel configuration.
	RootCAs []string `yaml:"rootCAs"`
	// RootCertFile is the CA that issued the peer's TLS certificate, handed
	// to the chaincode the peer launches so it can verify the peer (Fabric's
	// peer.tls.rootcert.file). Default: the local MSP's tlscacerts.
	RootCertFile string `yaml:"rootCertFile"`
}

// Validate reports the first unusable setting.
func (c *Config) Validate() error {
	var errs []error
	if c.ListenAddress == "" {
		errs = append(errs, errors.New("listenAddress is required"))
	}
	if c.DataDir == "" {
		errs = append(errs, errors.New("dataDir is required"))
	}
	if c.MSPID == "" || c.MSPDir == "" {
		errs = append(errs, errors.New("mspId and mspDir are required"))
	}
	if c.TLS.CertFile == "" || c.TLS.KeyFile == "" {
		errs = append(errs, errors.New("tls.certFile and tls.keyFile are required: Cairn serves TLS only"))
	}
	if err := c.Chaincode.Validate(); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// Deps are the process-wide facilities the binary passes in.
type Deps struct {
	Logger   *slog.Logger
	Registry *prometheus.Registry
	LogLevel *slog.LevelVar
	Version  string
	// LookupEnv reads the process environment for the variables chaincode
	// builders propagate; default os.LookupEnv.
	LookupEnv func(string) (string, bool)
}

// Peer is a configured peer node.
type Peer struct {
	cfg      Config
	log      *slog.Logger
	signer   *crypto.SigningIdentity
	localMSP *msp.Manager
	tlsCert  tls.Certificate

	lis  net.Listener
	grpc *grpc.Server
	ops  *ops.Server

	support   *chaincode.Support
	launcher  *launcher.Launcher // nil in chaincode dev mode
	validator *validator.Validator
	net       *network // membership and the gateway's view of the channels

	mu       sync.RWMutex
	channels map[string]*channel.Channel
	runCtx   context.Context // the context of Run, for channels joined while running
	wg       sync.WaitGroup
}

// New loads the peer's identity and TLS material, reopens the channels found
// in DataDir and binds its listeners. Nothing is served until Run.
func New(cfg Config, deps Deps) (*Peer, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("peer config: %w", err)
	}
	if deps.Logger == nil {
		deps.Logger = slog.New(slog.DiscardHandler)
	}
	if deps.Registry == nil {
		deps.Registry = prometheus.NewRegistry()
	}
	log := deps.Logger
	signer, err := crypto.LoadSigningIdentity(cfg.MSPID, cfg.MSPDir)
	if err != nil {
		return nil, fmt.Errorf("peer identity: %w", err)
	}
	mspConf, err := msp.LoadMSPConfigDir(cfg.MSPDir, cfg.MSPID)
	if err != nil {
		return nil, fmt.Errorf("local MSP: %w", err)
	}
	local, err := msp.New(mspConf)
	if err != nil {
		return nil, fmt.Errorf("local MSP: %w", err)
	}
	tlsCert, err := tls.LoadX509KeyPair(cfg.TLS.CertFile, cfg.TLS.KeyFile)
	if err != nil {
		return nil, fmt.Errorf("peer TLS key pair: %w", err)
	}
	serverTLS, err := comm.ServerTLS(cfg.TLS.CertFile, cfg.TLS.KeyFile, cfg.TLS.ClientRootCAs, false)
	if err != nil {
		return nil, err
	}
	ccCA, err := trustChaincodeCA(cfg, serverTLS)
	if err != nil {
		return nil, err
	}

	// Endorsements are signed through a memo so that validation need not
	// verify this peer's own signatures a second time.
	endorsing := selfsig.New(selfsig.Config{Signer: signer})
	p := &Peer{
		cfg:       cfg,
		log:       log,
		signer:    signer,
		localMSP:  msp.NewManager(local),
		tlsCert:   tlsCert,
		channels:  map[string]*channel.Channel{},
		validator: validator.New(validator.Config{Logger: log, OwnSignatures: endorsing}),
	}
	p.support = chaincode.New(chaincode.Config{Logger: log, ExecuteTimeout: cfg.ChaincodeExecuteTimeout})

	lc, err := lifecycle.New(lifecycle.Config{PackageDir: filepath.Join(cfg.DataDir, "chaincodes"), MSPID: cfg.MSPID, Logger: log})
	if err != nil {
		return nil, err
	}
	end := endorser.New(endorser.Config{
		Signer:    endorsing,
		LocalMSPs: p.localMSP,
		Channels:  channelsView{p},
		Runtime:   launchingRuntime{p},
		System: map[string]endorser.SystemChaincode{
			"cscc":              &scc.CSCC{Peer: sccPeer{p}},
			"qscc":              &scc.QSCC{Peer: sccPeer{p}},
			lifecycle.Namespace: lifecycleSCC{scc: lc, mspID: cfg.MSPID},
		},
		Logger: log,
	})

	if err := p.reopenChannels(); err != nil {
		return nil, err
	}

	lis, err := net.Listen("tcp", cfg.ListenAddress)
	if err != nil {
		return nil, fmt.Errorf("peer listen on %s: %w", cfg.ListenAddress, err)
	}
	p.lis = lis
	if p.launcher, err = newLauncher(cfg, deps, p.support, lc, ccCA, lis.Addr()); err != nil {
		lis.Close()
		return nil, err
	}
	gs, err := comm.NewGRPCServer(serverTLS)
	if err != nil {
		lis.Close()
		return nil, err
	}
	p.grpc = gs
	ordererTLS := &tls.Config{Certificates: []tls.Certificate{tlsCert}, MinVersion: tls.VersionTLS12}
	if len(cfg.TLS.RootCAs) > 0 {
		if ordererTLS.RootCAs, err = comm.CertPool(cfg.TLS.RootCAs...); err != nil {
			lis.Close()
			return nil, err
		}
	}
	if p.net, err = p.newNetwork(lis.Addr().String()); err != nil {
		lis.Close()
		return nil, err
	}
	gw, err := gateway.New(gateway.Config{
		Network:    p.net.gatewayNetwork(),
		Endorser:   end,
		Channels:   gatewayChannels{p},
		Address:    lis.Addr().String(),
		MSPID:      cfg.MSPID,
		Logger:     log,
		OrdererTLS: ordererTLS,
	})
	if err != nil {
		lis.Close()
		return nil, err
	}
	pb.RegisterEndorserServer(gs, end)
	pb.RegisterChaincodeSupportServer(gs, chaincodeSupportServer{ChaincodeSupportServer: p.support, roots: serverTLS.ClientCAs})
	pb.RegisterDeliverServer(gs, deliver.New(deliver.Config{Channels: deliverChannels{p}, Logger: log}))
	gp.RegisterGatewayServer(gs, gw)
	p.net.attach(gs, gw)
	p.serveDiscovery(gs)

	_ = deps.Registry.Register(collectors.NewGoCollector())
	p.ops = ops.New(ops.Config{
		ListenAddress: cfg.OperationsListenAddress,
		Registry:      deps.Registry,
		Logger:        log,
		Level:         deps.LogLevel,
		Version:       deps.Version,
	})
	p.ops.AddCheck("ledgers", func(context.Context) error { return p.checkLedgers() })
	return p, nil
}

// Addr is the bound gRPC address.
func (p *Peer) Addr() string { return p.lis.Addr().String() }

// OperationsAddr is the bound operations address, valid once Run started it.
func (p *Peer) OperationsAddr() string { return p.ops.Addr() }

// Run serves until ctx ends, then stops the servers and every channel loop.
func (p *Peer) Run(ctx context.Context) error {
	if p.cfg.OperationsListenAddress != "" {
		if err := p.ops.Start(); err != nil {
			return err
		}
		defer p.ops.Close()
	}
	p.mu.Lock()
	p.runCtx = ctx
	for _, ch := range p.channels {
		p.startChannel(ch)
	}
	p.mu.Unlock()
	p.wg.Add(1)
	go func() { defer p.wg.Done(); p.net.run(ctx) }()

	serveErr := make(chan error, 1)
	go func() { serveErr <- p.grpc.Serve(p.lis) }()
	p.log.Info("peer started", "address", p.Addr(), "operations", p.ops.Addr(), "channels", p.ChannelIDs())

	var err error
	select {
	case <-ctx.Done():
	case err = <-serveErr:
	}
	if p.launcher != nil {
		// Before support: the launcher ends the streams it dialled, which
		// support.Close waits for.
		p.launcher.Close()
	}
	p.support.Close()
	stopped := make(chan struct{})
	go func() { p.grpc.GracefulStop(); close(stopped) }()
	select {
	case <-stopped:
	case <-time.After(5 * time.Second):
		p.grpc.Stop()
		<-stopped
	}
	p.wg.Wait()
	p.mu.Lock()
	for id, ch := range p.channels {
		if cerr := ch.Close(); cerr != nil {
			p.log.Error("close channel", "channel", id, "error", cerr)
		}
	}
	p.mu.Unlock()
	p.log.Info("peer stopped")
	return err
}

func (p *Peer) channelConfig(id string) channel.Config {
	cert := p.tlsCert
	return channel.Config{
		Dir:       filepath.Join(p.cfg.DataDir, "ledgers", id),
		MSPID:     p.cfg.MSPID,
		Validator: p.validator,
		Puller:    puller.Config{Signer: p.signer, ClientCert: &cert},
		Logger:    p.log,
		NoSync:    p.cfg.NoSync,
	}
}

func (p *Peer) reopenChannels() error {
	dir := filepath.Join(p.cfg.DataDir, "ledgers")
	entries, err := os.ReadDir(dir)
	if os.IsNotExist(err) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("list ledgers: %w", err)
	}
	for _, e := range entries {
		if !e.IsDir() {
			continue
		}
		ch, err := channel.Open(p.channelConfig(e.Name()))
		if err != nil {
			return fmt.Errorf("reopen channel %s: %w", e.Name(), err)
		}
		p.channels[ch.ID()] = ch
	}
	return nil
}

// startChannel runs a channel's commit loop under the peer's Run; p.mu held.
func (p *Peer) startChannel(ch *channel.Channel) {
	if p.runCtx == nil {
		return
	}
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		if err := ch.Run(p.runCtx); err != nil {
			p.log.Error("channel stopped", "channel", ch.ID(), "error", err)
		}
	}()
}

// JoinChannel creates a channel from its genesis block and starts pulling blocks.
func (p *Peer) JoinChannel(genesis *cb.Block) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	probe, err := channelIDOf(genesis)
	if err != nil {
		return err
	}
	if _, exists := p.channels[probe]; exists {
		return fmt.Errorf("ledger [%s] already exists with state [ACTIVE]", probe)
	}
	ch, err := channel.Create(p.channelConfig(probe), genesis)
	if err != nil {
		return err
	}
	p.channels[ch.ID()] = ch
	p.startChannel(ch)
	p.log.Info("joined channel", "channel", ch.ID())
	return nil
}

// ChannelIDs lists joined channels in name order.
func (p *Peer) ChannelIDs() []string {
	p.mu.RLock()
	defer p.mu.RUnlock()
	ids := make([]string, 0, len(p.channels))
	for id := range p.channels {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	return ids
}

func (p *Peer) channel(id string) (*channel.Channel, bool) {
	p.mu.RLock()
	defer p.mu.RUnlock()
	ch, ok := p.channels[id]
	return ch, ok
}

func (p *Peer) checkLedgers() error {
	p.mu.RLock()
	defer p.mu.RUnlock()
	for id, ch := range p.channels {
		if ch.Ledger().Height() == 0 {
			return fmt.Errorf("channel %s has an empty ledger", id)
		}
	}
	return nil
}

// checkACL evaluates the policy Fabric associates with resource on a channel.
func (p *Peer) checkACL(channelID, resource string, signed []policy.SignedData) error {
	ch, ok := p.channel(channelID)
	if !ok {
		return fmt.Errorf("%w: %s", gateway.ErrChannelNotFound, channelID)
	}
	def := "/Channel/Application/Readers"
	if resource == "peer/Propose" || strings.HasPrefix(resource, "_lifecycle/") {
		def = "/Channel/Application/Writers"
	}
	// Event streams and gateway status queries serve clients acting now:
	// their certificates must be current, as Fabric's deliver sessions require.
	b := ch.Bundle()
	if err := policy.CheckCurrent(b.ACLPolicy(resource, def), b.MSPs(), signed, time.Now()); err != nil {
		return fmt.Errorf("access denied: %s: %w", resource, err)
	}
	return endorser.CheckACL(b, resource, def, signed)
}
