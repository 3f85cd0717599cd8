package peer

import (
	"context"
	"fmt"
	"path/filepath"
	"time"

	cb "github.com/hyperledger/fabric-protos-go-apiv2/common"
	"github.com/hyperledger/fabric-protos-go-apiv2/ledger/rwset/kvrwset"
	"google.golang.org/grpc"

	"github.com/cairn-ledger/cairn/gateway"
	"github.com/cairn-ledger/cairn/internal/channelconfig"
	"github.com/cairn-ledger/cairn/peer/internal/lifecycle"
	"github.com/cairn-ledger/cairn/peer/internal/membership"
	"github.com/cairn-ledger/cairn/peer/internal/validator"
	mpb "github.com/cairn-ledger/cairn/protos/membershippb"
)

// MembershipConfig configures how the peer learns the other peers of its
// channels (docs/membership.md).
type MembershipConfig struct {
	// Endpoint is the host:port other peers reach this peer at, as the
	// channel's anchor peers name it; empty: the bound listen address.
	Endpoint string `yaml:"endpoint"`
	// Interval is the time between refreshes (default 5s).
	Interval time.Duration `yaml:"interval"`
	// Expiry is how long a peer may go unanswered before the gateway stops
	// planning with it (default three intervals).
	Expiry time.Duration `yaml:"expiry"`
}

// network is the peer's membership and the gateway's view of it.
type network struct {
	p   *Peer
	svc *membership.Service
	gw  *gateway.Server
}

// newNetwork builds the peer's membership service; boundAddr is the bound
// gRPC listen address.
func (p *Peer) newNetwork(boundAddr string) (*network, error) {
	endpoint := p.cfg.Membership.Endpoint
	if endpoint == "" {
		endpoint = boundAddr
	}
	svc, err := membership.New(membership.Config{
		Endpoint: endpoint,
		Signer:   p.signer,
		TLSCert:  p.tlsCert,
		Local:    membershipLocal{p},
		Interval: p.cfg.Membership.Interval,
		Expiry:   p.cfg.Membership.Expiry,
		Logger:   p.log.With("component", "membership"),
	})
	if err != nil {
		return nil, fmt.Errorf("peer membership: %w", err)
	}
	return &network{p: p, svc: svc}, nil
}

// gatewayNetwork is the gateway's view of the channels.
func (n *network) gatewayNetwork() gateway.Network { return gatewayNetwork{n} }

// attach serves the Membership service on the peer's gRPC server and takes
// over closing the gateway's connections when the peer stops.
func (n *network) attach(gs *grpc.Server, gw *gateway.Server) {
	mpb.RegisterMembershipServer(gs, n.svc)
	n.gw = gw
}

// run refreshes the membership until ctx ends, then closes the gateway's
// connections to orderers and other peers.
func (n *network) run(ctx context.Context) {
	if err := n.svc.Run(ctx); err != nil {
		n.p.log.Error("membership stopped", "error", err)
	}
	if n.gw != nil {
		if err := n.gw.Close(); err != nil {
			n.p.log.Warn("close gateway connections", "error", err)
		}
	}
}

// membershipLocal describes the local peer to the membership service.
type membershipLocal struct{ p *Peer }

func (l membershipLocal) ChannelIDs() []string { return l.p.ChannelIDs() }

func (l membershipLocal) Bundle(id string) (*channelconfig.Bundle, bool) {
	ch, ok := l.p.channel(id)
	if !ok {
		return nil, false
	}
	return ch.Bundle(), true
}

func (l membershipLocal) Height(id string) uint64 {
	ch, ok := l.p.channel(id)
	if !ok {
		return 0
	}
	return ch.Ledger().Height()
}

// Chaincodes lists the committed chaincodes this peer can run: its
// organisation approved a package for the committed sequence and the
// package is installed here, as Fabric's peers advertise them.
func (l membershipLocal) Chaincodes(id string) []membership.Chaincode {
	ch, ok := l.p.channel(id)
	if !ok {
		return nil
	}
	qe, err := ch.Ledger().NewQueryExecutor()
	if err != nil {
		return nil
	}
	defer qe.Done()
	defs, err := lifecycle.Definitions(qe)
	if err != nil {
		l.p.log.Warn("list chaincode definitions", "channel", id, "error", err)
		return nil
	}
	dir := filepath.Join(l.p.cfg.DataDir, "chaincodes")
	var out []membership.Chaincode
	for _, d := range defs {
		pkg, ok, err := lifecycle.ApprovedPackageID(qe, d.Name, d.Sequence, l.p.cfg.MSPID)
		if err != nil || !ok || pkg == "" || !lifecycle.PackageInstalled(dir, pkg) {
			continue
		}
		out = append(out, membership.Chaincode{Name: d.Name, Version: d.Version, Sequence: d.Sequence})
	}
	return out
}

// gatewayNetwork adapts the membership and the channels to gateway.Network.
type gatewayNetwork struct{ n *network }

func (g gatewayNetwork) Peers(id string) []gateway.Peer {
	var out []gateway.Peer
	for _, m := range g.n.svc.Peers(id) {
		gp := gateway.Peer{
			Address: m.Endpoint, MSPID: m.MSPID, Identity: m.Identity, TLSRootCerts: m.TLSRootCerts,
			Height: m.Height, Local: m.Local,
		}
		for _, cc := range m.Chaincodes {
			gp.Chaincodes = append(gp.Chaincodes, cc.Name)
		}
		out = append(out, gp)
	}
	return out
}

func (g gatewayNetwork) Bundle(id string) (*channelconfig.Bundle, error) {
	ch, ok := g.n.p.channel(id)
	if !ok {
		return nil, fmt.Errorf("%w: %s", gateway.ErrChannelNotFound, id)
	}
	return ch.Bundle(), nil
}

func (g gatewayNetwork) EndorsementPolicy(id, ns string, writes []*kvrwset.KVWrite) (*cb.SignaturePolicyEnvelope, string, error) {
	ch, ok := g.n.p.channel(id)
	if !ok {
		return nil, "", fmt.Errorf("%w: %s", gateway.ErrChannelNotFound, id)
	}
	return ch.EndorsementPolicy(ns, writes)
}

// refreshTimeout bounds a refresh the gateway asks for while planning, so
// that an unreachable peer delays an Endorse call only so long.
const refreshTimeout = 2 * time.Second

func (g gatewayNetwork) Refresh(ctx context.Context, _ string) {
	ctx, cancel := context.WithTimeout(ctx, refreshTimeout)
	defer cancel()
	g.n.svc.RefreshNow(ctx)
}

func (g gatewayNetwork) KeyValidationParameter(id, ns, key string) ([]byte, error) {
	ch, ok := g.n.p.channel(id)
	if !ok {
		return nil, fmt.Errorf("%w: %s", gateway.ErrChannelNotFound, id)
	}
	qe, err := ch.Ledger().NewQueryExecutor()
	if err != nil {
		return nil, err
	}
	defer qe.Done()
	md, err := qe.GetStateMetadata(ns, key)
	if err != nil {
		return nil, err
	}
	return md[validator.ValidationParameterKey], nil
}
