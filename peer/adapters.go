package peer

import (
	"context"
	"fmt"

	cb "github.com/hyperledger/fabric-protos-go-apiv2/common"
	pb "github.com/hyperledger/fabric-protos-go-apiv2/peer"

	"github.com/cairn-ledger/cairn/gateway"
	"github.com/cairn-ledger/cairn/internal/block"
	"github.com/cairn-ledger/cairn/internal/policy"
	"github.com/cairn-ledger/cairn/peer/internal/deliver"
	"github.com/cairn-ledger/cairn/peer/internal/endorser"
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
