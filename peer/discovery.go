package peer

import (
	"fmt"

	dpb "github.com/hyperledger/fabric-protos-go-apiv2/discovery"
	"google.golang.org/grpc"

	"github.com/cairn-ledger/cairn/internal/channelconfig"
	"github.com/cairn-ledger/cairn/peer/internal/discovery"
	"github.com/cairn-ledger/cairn/peer/internal/lifecycle"
)

// serveDiscovery registers Fabric's discovery.Discovery service on the
// peer's gRPC server, answering from the peer's channels and membership
// (docs/membership.md, "Discovery service").
func (p *Peer) serveDiscovery(gs *grpc.Server) {
	dpb.RegisterDiscoveryServer(gs, discovery.New(discovery.Config{
		Channels:   discoveryChannels{p},
		Membership: discoveryMembership{p},
		LocalMSPs:  p.localMSP,
		LocalMSPID: p.cfg.MSPID,
		Logger:     p.log.With("component", "discovery"),
	}))
}

// discoveryChannels adapts the peer's channels to discovery.Channels.
type discoveryChannels struct{ p *Peer }

func (d discoveryChannels) ChannelIDs() []string { return d.p.ChannelIDs() }

func (d discoveryChannels) Bundle(id string) (*channelconfig.Bundle, bool) {
	ch, ok := d.p.channel(id)
	if !ok {
		return nil, false
	}
	return ch.Bundle(), true
}

func (d discoveryChannels) Chaincode(id, name string) (*discovery.Chaincode, bool, error) {
	ch, ok := d.p.channel(id)
	if !ok {
		return nil, false, nil
	}
	qe, err := ch.Ledger().NewQueryExecutor()
	if err != nil {
		return nil, false, fmt.Errorf("read channel %s state: %w", id, err)
	}
	defer qe.Done()
	def, ok, err := lifecycle.Definition(qe, name)
	if err != nil || !ok {
		return nil, false, err
	}
	spe, ref, err := def.EndorsementPolicy()
	if err != nil {
		return nil, false, fmt.Errorf("chaincode %s: %w", name, err)
	}
	return &discovery.Chaincode{
		Name: def.Name, Version: def.Version, Policy: spe, PolicyRef: ref, Collections: def.Collections,
	}, true, nil
}

// discoveryMembership adapts the peer's membership to discovery.Membership.
type discoveryMembership struct{ p *Peer }

func (d discoveryMembership) Peers(id string) []discovery.Peer {
	var out []discovery.Peer
	for _, m := range d.p.net.svc.Peers(id) {
		dp := discovery.Peer{Endpoint: m.Endpoint, MSPID: m.MSPID, Identity: m.Identity, Height: m.Height}
		for _, cc := range m.Chaincodes {
			dp.Chaincodes = append(dp.Chaincodes, discovery.ChaincodeVersion{Name: cc.Name, Version: cc.Version})
		}
		out = append(out, dp)
	}
	return out
}
