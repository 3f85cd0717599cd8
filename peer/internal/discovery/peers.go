package discovery

import (
	"crypto/sha256"
	"fmt"
	"sort"

	dpb "github.com/hyperledger/fabric-protos-go-apiv2/discovery"
	gpb "github.com/hyperledger/fabric-protos-go-apiv2/gossip"
	mspproto "github.com/hyperledger/fabric-protos-go-apiv2/msp"
	pb "github.com/hyperledger/fabric-protos-go-apiv2/peer"
	"google.golang.org/protobuf/proto"

	"github.com/cairn-ledger/cairn/internal/channelconfig"
)

// channelPeers answers a PeerMembershipQuery: the channel's peers by
// organisation, only those that can run every chaincode of the filter (and
// may read its collections) when it names any.
func (s *Service) channelPeers(b *channelconfig.Bundle, filter *pb.ChaincodeInterest) *dpb.QueryResult {
	ch := b.ChannelID()
	all := s.cfg.Membership.Peers(ch)
	byOrg := map[string]*dpb.Peers{}
	for _, p := range all {
		if byOrg[p.MSPID] == nil {
			byOrg[p.MSPID] = &dpb.Peers{}
		}
	}
	peers := all
	if len(filter.GetChaincodes()) > 0 {
		f, err := s.chaincodeFilter(b, filter)
		if err != nil {
			s.log.Info("discovery peers query", "channel", ch, "error", err)
			return errorResult(err.Error())
		}
		peers = f.apply(peers)
	}
	for _, p := range peers {
		dp, err := s.describe(p, ch, true)
		if err != nil {
			s.log.Warn("discovery: peer left out", "channel", ch, "endpoint", p.Endpoint, "error", err)
			continue
		}
		byOrg[p.MSPID].Peers = append(byOrg[p.MSPID].Peers, dp)
	}
	return &dpb.QueryResult{Result: &dpb.QueryResult_Members{Members: &dpb.PeerMembershipResult{PeersByOrg: byOrg}}}
}

// localPeers answers a LocalPeerQuery: every peer this one knows, on any of
// its channels, itself included, with membership information only (as
// Fabric's local membership view has no channel).
func (s *Service) localPeers() *dpb.QueryResult {
	byOrg := map[string]*dpb.Peers{}
	seen := map[string]bool{}
	for _, ch := range s.cfg.Channels.ChannelIDs() {
		for _, p := range s.cfg.Membership.Peers(ch) {
			key := p.Endpoint + "\x00" + string(p.Identity)
			if seen[key] {
				continue
			}
			seen[key] = true
			dp, err := s.describe(p, "", false)
			if err != nil {
				s.log.Warn("discovery: peer left out", "endpoint", p.Endpoint, "error", err)
				continue
			}
			if byOrg[p.MSPID] == nil {
				byOrg[p.MSPID] = &dpb.Peers{}
			}
			byOrg[p.MSPID].Peers = append(byOrg[p.MSPID].Peers, dp)
		}
	}
	for _, ps := range byOrg {
		sort.SliceStable(ps.Peers, func(i, j int) bool { return endpointOf(ps.Peers[i]) < endpointOf(ps.Peers[j]) })
	}
	return &dpb.QueryResult{Result: &dpb.QueryResult_Members{Members: &dpb.PeerMembershipResult{PeersByOrg: byOrg}}}
}

func endpointOf(p *dpb.Peer) string {
	gm := &gpb.GossipMessage{}
	if proto.Unmarshal(p.GetMembershipInfo().GetPayload(), gm) != nil {
		return ""
	}
	return gm.GetAliveMsg().GetMembership().GetEndpoint()
}

// describe renders a peer as Fabric's discovery service does: its identity,
// an alive message (membership info) and, on a channel, a state info message.
func (s *Service) describe(p Peer, channelID string, withState bool) (*dpb.Peer, error) {
	pki, err := pkiID(p.Identity)
	if err != nil {
		return nil, err
	}
	ts := &gpb.PeerTime{IncNum: s.incarnation, SeqNum: uint64(s.cfg.Now().UnixNano())}
	alive, err := envelope(&gpb.GossipMessage{
		Tag: gpb.GossipMessage_EMPTY,
		Content: &gpb.GossipMessage_AliveMsg{AliveMsg: &gpb.AliveMessage{
			Membership: &gpb.Member{Endpoint: p.Endpoint, PkiId: pki},
			Timestamp:  ts,
		}},
	})
	if err != nil {
		return nil, err
	}
	out := &dpb.Peer{Identity: p.Identity, MembershipInfo: alive}
	if !withState {
		return out, nil
	}
	props := &gpb.Properties{LedgerHeight: p.Height}
	for _, cc := range p.Chaincodes {
		props.Chaincodes = append(props.Chaincodes, &gpb.Chaincode{Name: cc.Name, Version: cc.Version})
	}
	mac := sha256.Sum256(append(append([]byte(nil), pki...), channelID...))
	if out.StateInfo, err = envelope(&gpb.GossipMessage{
		Tag: gpb.GossipMessage_CHAN_OR_ORG,
		Content: &gpb.GossipMessage_StateInfo{StateInfo: &gpb.StateInfo{
			Timestamp:   ts,
			PkiId:       pki,
			Channel_MAC: mac[:],
			Properties:  props,
		}},
	}); err != nil {
		return nil, err
	}
	return out, nil
}

// pkiID is a peer's gossip PKI-ID as Fabric computes it: SHA-256 over the
// MSP ID followed by the identity bytes.
func pkiID(serialized []byte) ([]byte, error) {
	sid := &mspproto.SerializedIdentity{}
	if err := proto.Unmarshal(serialized, sid); err != nil {
		return nil, fmt.Errorf("peer identity: %w", err)
	}
	h := sha256.Sum256(append([]byte(sid.GetMspid()), sid.GetIdBytes()...))
	return h[:], nil
}

// envelope wraps a gossip message, unsigned: Cairn does not gossip, and
// Fabric's clients decode the payload without checking the signature.
func envelope(m *gpb.GossipMessage) (*gpb.Envelope, error) {
	raw, err := proto.MarshalOptions{Deterministic: true}.Marshal(m)
	if err != nil {
		return nil, fmt.Errorf("marshal gossip message: %w", err)
	}
	return &gpb.Envelope{Payload: raw}, nil
}
