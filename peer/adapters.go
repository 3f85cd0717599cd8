package peer

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"time"

	cb "github.com/hyperledger/fabric-protos-go-apiv2/common"
	pb "github.com/hyperledger/fabric-protos-go-apiv2/peer"

	"github.com/cairn-ledger/cairn/gateway"
	"github.com/cairn-ledger/cairn/internal/block"
	"github.com/cairn-ledger/cairn/internal/policy"
	"github.com/cairn-ledger/cairn/peer/internal/builder"
	"github.com/cairn-ledger/cairn/peer/internal/chaincode"
	"github.com/cairn-ledger/cairn/peer/internal/deliver"
	"github.com/cairn-ledger/cairn/peer/internal/endorser"
	"github.com/cairn-ledger/cairn/peer/internal/launcher"
	"github.com/cairn-ledger/cairn/peer/internal/ledger"
	"github.com/cairn-ledger/cairn/peer/internal/lifecycle"
)

// The services of the peer each declare the small view of the peer they need;
// these adapters give them that view.

type channelsView struct{ p *Peer }

func (v channelsView) Channel(id string) (endorser.Channel, bool) {
	ch, ok := v.p.channel(id)
	if !ok {
		return nil, false
	}
	return ch, true
}

type sccPeer struct{ p *Peer }

func (s sccPeer) JoinChannel(genesis *cb.Block) error { return s.p.JoinChannel(genesis) }
func (s sccPeer) ChannelIDs() []string                { return s.p.ChannelIDs() }
func (s sccPeer) Channel(id string) (endorser.Channel, bool) {
	return channelsView(s).Channel(id)
}
func (s sccPeer) LedgerOf(id string) (*ledger.Ledger, bool) {
	ch, ok := s.p.channel(id)
	if !ok {
		return nil, false
	}
	return ch.Ledger(), true
}

type gatewayChannels struct{ p *Peer }

func (g gatewayChannels) Ledger(id string) (gateway.Ledger, error) {
	ch, ok := g.p.channel(id)
	if !ok {
		return nil, fmt.Errorf("%w: %s", gateway.ErrChannelNotFound, id)
	}
	return ch.Ledger(), nil
}

func (g gatewayChannels) OrdererEndpoints(id string) ([]string, [][]byte, error) {
	ch, ok := g.p.channel(id)
	if !ok {
		return nil, nil, fmt.Errorf("%w: %s", gateway.ErrChannelNotFound, id)
	}
	o := ch.Bundle().Orderer()
	return o.Endpoints, o.TLSRootCerts, nil
}

func (g gatewayChannels) CheckACL(id, resource string, signed []policy.SignedData) error {
	return g.p.checkACL(id, resource, signed)
}

type deliverChannels struct{ p *Peer }

func (d deliverChannels) Ledger(id string) (deliver.Ledger, error) {
	ch, ok := d.p.channel(id)
	if !ok {
		return nil, fmt.Errorf("channel %s not found", id)
	}
	return ch.Ledger(), nil
}

func (d deliverChannels) CheckACL(id, resource string, signed []policy.SignedData) error {
	return d.p.checkACL(id, resource, signed)
}

// lifecycleSCC adapts the _lifecycle chaincode to the endorser's calling
// convention and applies Fabric's ACLs to its channel functions.
type lifecycleSCC struct {
	scc   *lifecycle.SCC
	mspID string
}

func (l lifecycleSCC) Invoke(ctx context.Context, inv endorser.Invocation) *pb.Response {
	li := lifecycle.Invocation{
		Args:           inv.Proposal.Input.Args,
		CreatorMSPID:   inv.Creator.MSPID(),
		CreatorIsAdmin: inv.Creator.MSPID() == l.mspID && inv.Creator.IsAdmin(),
	}
	if inv.Channel != nil {
		bundle := inv.Channel.Bundle()
		li.ChannelID = bundle.ChannelID()
		li.State = inv.Sim
		for _, o := range bundle.Application().Orgs {
			li.OrgMSPIDs = append(li.OrgMSPIDs, o.MSPID)
		}
		if len(li.Args) > 0 {
			data, ident, sig := inv.Proposal.SignedData()
			if err := endorser.CheckACL(bundle, "_lifecycle/"+string(li.Args[0]), "/Channel/Application/Writers",
				[]policy.SignedData{{Data: data, Identity: ident, Signature: sig}}); err != nil {
				return &pb.Response{Status: 500, Message: err.Error()}
			}
		}
	}
	return l.scc.Invoke(ctx, li)
}

func channelIDOf(b *cb.Block) (string, error) {
	id, err := block.ChannelID(b)
	if err != nil {
		return "", fmt.Errorf("genesis block: %w", err)
	}
	if id == "" {
		return "", fmt.Errorf("genesis block names no channel")
	}
	return id, nil
}

// Chaincode modes (Fabric's chaincode.mode / --peer-chaincodedev).
const (
	// ChaincodeModeNet: the peer builds and launches installed chaincode on
	// demand, unless a chaincode for the package registered on its own.
	ChaincodeModeNet = "net"
	// ChaincodeModeDev: the peer never launches chaincode; it waits (up to
	// chaincodeExecuteTimeout) for the chaincode to register.
	ChaincodeModeDev = "dev"
)

// Chaincode configures chaincode building and launching (core.yaml's
// chaincode section).
type Chaincode struct {
	// Mode is "net" (default) or "dev".
	Mode string `yaml:"mode"`
	// ExternalBuilders are tried in order before the built-in builders.
	ExternalBuilders []ExternalBuilder `yaml:"externalBuilders"`
	// GolangBuilder enables the built-in golang builder (default true).
	GolangBuilder *bool `yaml:"golangBuilder"`
	// CCaaSBuilder enables the built-in ccaas builder (default true).
	CCaaSBuilder *bool `yaml:"ccaasBuilder"`
	// BuildTimeout bounds one build (default 5m).
	BuildTimeout time.Duration `yaml:"buildTimeout"`
	// PeerAddress is the address launched chaincode dials; default the
	// peer's listen address (127.0.0.1 when it listens on all interfaces).
	PeerAddress string `yaml:"peerAddress"`
}

// ExternalBuilder is one external builder (core.yaml chaincode.externalBuilders).
type ExternalBuilder struct {
	Name string `yaml:"name"`
	// Path holds bin/detect, bin/build and optionally bin/release, bin/run.
	Path string `yaml:"path"`
	// PropagateEnvironment names peer environment variables the builder's
	// programs see, besides LD_LIBRARY_PATH, LIBPATH, PATH and TMPDIR.
	PropagateEnvironment []string `yaml:"propagateEnvironment"`
}

// Validate reports the first unusable chaincode setting.
func (c Chaincode) Validate() error {
	if c.Mode != "" && c.Mode != ChaincodeModeNet && c.Mode != ChaincodeModeDev {
		return fmt.Errorf("chaincode.mode %q: want %q or %q", c.Mode, ChaincodeModeNet, ChaincodeModeDev)
	}
	return c.builderConfig("builds", nil).Validate()
}

func (c Chaincode) builderConfig(dir string, lookupEnv func(string) (string, bool)) builder.Config {
	on := func(b *bool) bool { return b == nil || *b }
	bc := builder.Config{
		Dir:       dir,
		Golang:    on(c.GolangBuilder),
		CCaaS:     on(c.CCaaSBuilder),
		Timeout:   c.BuildTimeout,
		LookupEnv: lookupEnv,
	}
	for _, e := range c.ExternalBuilders {
		bc.External = append(bc.External, builder.External{Name: e.Name, Path: e.Path, PropagateEnvironment: e.PropagateEnvironment})
	}
	return bc
}

// newLauncher wires the builders and the launcher; nil in dev mode.
func newLauncher(cfg Config, deps Deps, support *chaincode.Support, lc *lifecycle.SCC, ca *launcher.CA, addr net.Addr) (*launcher.Launcher, error) {
	if cfg.Chaincode.Mode == ChaincodeModeDev {
		return nil, nil
	}
	lookupEnv := deps.LookupEnv
	if lookupEnv == nil {
		lookupEnv = os.LookupEnv
	}
	bc := cfg.Chaincode.builderConfig(filepath.Join(cfg.DataDir, "externalbuilder", "builds"), lookupEnv)
	bc.Logger = deps.Logger
	b, err := builder.New(bc)
	if err != nil {
		return nil, fmt.Errorf("chaincode builders: %w", err)
	}
	root, err := peerRootCert(cfg)
	if err != nil {
		return nil, err
	}
	peerAddr := cfg.Chaincode.PeerAddress
	if peerAddr == "" {
		peerAddr = dialableAddress(addr)
	}
	l, err := launcher.New(launcher.Config{
		Packages:     installedPackages{lc},
		Builder:      b,
		Server:       support,
		Registry:     registry{support},
		CA:           ca,
		PeerAddress:  peerAddr,
		PeerRootCert: root,
		MSPID:        cfg.MSPID,
		RunDir:       filepath.Join(cfg.DataDir, "externalbuilder", "run"),
		Logger:       deps.Logger,
	})
	if err != nil {
		return nil, fmt.Errorf("chaincode launcher: %w", err)
	}
	return l, nil
}

// peerRootCert is the PEM that lets launched chaincode verify the peer:
// tls.rootCertFile, else the local MSP's tlscacerts, else the peer's own
// TLS certificate (Go accepts a trusted leaf as its own root).
func peerRootCert(cfg Config) ([]byte, error) {
	if cfg.TLS.RootCertFile != "" {
		data, err := os.ReadFile(cfg.TLS.RootCertFile)
		if err != nil {
			return nil, fmt.Errorf("peer TLS root certificate: %w", err)
		}
		return data, nil
	}
	files, _ := filepath.Glob(filepath.Join(cfg.MSPDir, "tlscacerts", "*"))
	var out []byte
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			return nil, fmt.Errorf("peer TLS root certificate: %w", err)
		}
		out = append(out, data...)
	}
	if len(out) > 0 {
		return out, nil
	}
	data, err := os.ReadFile(cfg.TLS.CertFile)
	if err != nil {
		return nil, fmt.Errorf("peer TLS certificate: %w", err)
	}
	return data, nil
}

// dialableAddress turns a listener address into one a local process can
// dial: an unspecified host (0.0.0.0, ::) becomes loopback.
func dialableAddress(addr net.Addr) string {
	host, port, err := net.SplitHostPort(addr.String())
	if err != nil {
		return addr.String()
	}
	if ip := net.ParseIP(host); ip == nil || ip.IsUnspecified() {
		host = "127.0.0.1"
	}
	return net.JoinHostPort(host, port)
}

// installedPackages gives the launcher the packages _lifecycle installed.
type installedPackages struct{ lc *lifecycle.SCC }

func (i installedPackages) Package(packageID string) ([]byte, error) {
	return i.lc.InstalledPackage(packageID)
}

// registry tells the launcher whether a chaincode is connected.
type registry struct{ s *chaincode.Support }

func (r registry) Registered(packageID string) bool {
	// WaitRegistered answers at once for a registered package; a context
	// that is already over makes it return at once otherwise too.
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	return r.s.WaitRegistered(ctx, packageID) == nil
}

// launchingRuntime is the endorser's chaincode runtime: it executes on the
// registered chaincode, and when none is registered first launches the
// package (unless in dev mode) and waits for it to register, all within the
// chaincode execute timeout. A chaincode registered by someone else (e.g. a
// process the local network started) is used as it is.
type launchingRuntime struct{ p *Peer }

func (r launchingRuntime) Execute(ctx context.Context, inv chaincode.Invocation, sim chaincode.TxSimulator) (*chaincode.Result, error) {
	res, err := r.p.support.Execute(ctx, inv, sim)
	if !errors.Is(err, chaincode.ErrNotRegistered) {
		return res, err
	}
	timeout := r.p.cfg.ChaincodeExecuteTimeout
	if timeout <= 0 {
		timeout = 30 * time.Second
	}
	wctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	if r.p.launcher != nil {
		if err := r.p.launcher.Launch(wctx, inv.PackageID); err != nil {
			return nil, fmt.Errorf("execute %s: %w", inv.Namespace, err)
		}
	}
	if err := r.p.support.WaitRegistered(wctx, inv.PackageID); err != nil {
		return nil, fmt.Errorf("execute %s: chaincode %s did not register within %s: %w", inv.Namespace, inv.PackageID, timeout, err)
	}
	return r.p.support.Execute(ctx, inv, sim)
}
