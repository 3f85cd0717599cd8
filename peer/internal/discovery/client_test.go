package discovery_test

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"

	dpb "github.com/hyperledger/fabric-protos-go-apiv2/discovery"
	gpb "github.com/hyperledger/fabric-protos-go-apiv2/gossip"
	mspproto "github.com/hyperledger/fabric-protos-go-apiv2/msp"
	pb "github.com/hyperledger/fabric-protos-go-apiv2/peer"
	"google.golang.org/protobuf/proto"
)

// This file is a discovery client written as Fabric's discovery/client
// builds requests and decodes answers (the fabric module is not a
// dependency): the Request carries the queries and an AuthInfo with the
// client's serialized identity and the SHA-256 of its TLS certificate; its
// marshalled bytes are the SignedRequest payload, signed by the client's key.
// Answers are decoded as Fabric's client decodes them: the gossip envelopes'
// payloads unmarshalled as GossipMessages and checked by its
// validateAliveMessage/validateStateInfoMessage rules, the endorsers'
// identities as SerializedIdentity.

// signer signs with the client's enrollment key.
type signer func(msg []byte) ([]byte, error)

// clientRequest builds a discovery request as Fabric's client.Request does.
type clientRequest struct {
	req     *dpb.Request
	channel string
}

func newClientRequest() *clientRequest { return &clientRequest{req: &dpb.Request{}} }

func (r *clientRequest) ofChannel(ch string) *clientRequest { r.channel = ch; return r }

func (r *clientRequest) addConfigQuery() *clientRequest {
	r.req.Queries = append(r.req.Queries, &dpb.Query{Channel: r.channel, Query: &dpb.Query_ConfigQuery{ConfigQuery: &dpb.ConfigQuery{}}})
	return r
}

func (r *clientRequest) addPeersQuery(chain ...*pb.ChaincodeCall) *clientRequest {
	r.req.Queries = append(r.req.Queries, &dpb.Query{Channel: r.channel, Query: &dpb.Query_PeerQuery{
		PeerQuery: &dpb.PeerMembershipQuery{Filter: &pb.ChaincodeInterest{Chaincodes: chain}},
	}})
	return r
}

func (r *clientRequest) addEndorsersQuery(interests ...*pb.ChaincodeInterest) *clientRequest {
	r.req.Queries = append(r.req.Queries, &dpb.Query{Channel: r.channel, Query: &dpb.Query_CcQuery{CcQuery: &dpb.ChaincodeQuery{Interests: interests}}})
	return r
}

func (r *clientRequest) addLocalPeersQuery() *clientRequest {
	r.req.Queries = append(r.req.Queries, &dpb.Query{Query: &dpb.Query_LocalPeers{LocalPeers: &dpb.LocalPeerQuery{}}})
	return r
}

// signed marshals the request with auth and signs it, as Client.Send does.
func (r *clientRequest) signed(auth *dpb.AuthInfo, sign signer) (*dpb.SignedRequest, error) {
	toSend := proto.Clone(r.req).(*dpb.Request)
	toSend.Authentication = auth
	payload, err := proto.Marshal(toSend)
	if err != nil {
		return nil, fmt.Errorf("failed marshaling Request to bytes: %w", err)
	}
	sig, err := sign(payload)
	if err != nil {
		return nil, fmt.Errorf("failed signing Request: %w", err)
	}
	return &dpb.SignedRequest{Payload: payload, Signature: sig}, nil
}

// send sends a request and checks there is one result per query.
func send(ctx context.Context, cl dpb.DiscoveryClient, r *clientRequest, auth *dpb.AuthInfo, sign signer) (*dpb.Response, error) {
	sr, err := r.signed(auth, sign)
	if err != nil {
		return nil, err
	}
	resp, err := cl.Discover(ctx, sr)
	if err != nil {
		return nil, fmt.Errorf("discovery service refused our Request: %w", err)
	}
	if len(resp.GetResults()) != len(r.req.GetQueries()) {
		return nil, fmt.Errorf("Sent %d queries but received %d responses back", len(r.req.GetQueries()), len(resp.GetResults()))
	}
	return resp, nil
}

// certHash is what Fabric's clients put in AuthInfo.ClientTlsCertHash.
func certHash(der []byte) []byte {
	h := sha256.Sum256(der)
	return h[:]
}

// decodedPeer is Fabric's client.Peer with its messages decoded.
type decodedPeer struct {
	MSPID      string
	Endpoint   string
	Height     uint64
	Chaincodes []string // name:version
	HasState   bool
}

// decodePeers decodes a PeerMembershipResult as Fabric's peersForChannel.
func decodePeers(res *dpb.PeerMembershipResult, withState bool) ([]decodedPeer, error) {
	var out []decodedPeer
	for org, ps := range res.GetPeersByOrg() {
		for _, p := range ps.GetPeers() {
			dp, err := decodePeer(p, withState)
			if err != nil {
				return nil, err
			}
			dp.MSPID = org
			out = append(out, dp)
		}
	}
	return out, nil
}

// decodeEndorser decodes one endorser as Fabric's client.endorser: both
// envelopes required, the MSP ID read from the identity.
func decodeEndorser(p *dpb.Peer) (decodedPeer, error) {
	if p.GetMembershipInfo() == nil || p.GetStateInfo() == nil {
		return decodedPeer{}, errors.New("received empty envelope(s) for endorsers")
	}
	dp, err := decodePeer(p, true)
	if err != nil {
		return decodedPeer{}, err
	}
	sid := &mspproto.SerializedIdentity{}
	if err := proto.Unmarshal(p.GetIdentity(), sid); err != nil {
		return decodedPeer{}, fmt.Errorf("failed unmarshalling peer's identity: %w", err)
	}
	dp.MSPID = sid.GetMspid()
	return dp, nil
}

func decodePeer(p *dpb.Peer, withState bool) (decodedPeer, error) {
	alive := &gpb.GossipMessage{}
	if err := proto.Unmarshal(p.GetMembershipInfo().GetPayload(), alive); err != nil {
		return decodedPeer{}, fmt.Errorf("failed unmarshalling alive message: %w", err)
	}
	am := alive.GetAliveMsg()
	switch {
	case am == nil:
		return decodedPeer{}, errors.New("message isn't an alive message")
	case am.GetMembership() == nil:
		return decodedPeer{}, errors.New("membership is empty")
	case am.GetTimestamp() == nil:
		return decodedPeer{}, errors.New("timestamp is nil")
	}
	dp := decodedPeer{Endpoint: am.GetMembership().GetEndpoint()}
	if !withState {
		return dp, nil
	}
	state := &gpb.GossipMessage{}
	if err := proto.Unmarshal(p.GetStateInfo().GetPayload(), state); err != nil {
		return decodedPeer{}, fmt.Errorf("failed unmarshalling stateInfo message: %w", err)
	}
	si := state.GetStateInfo()
	switch {
	case si == nil:
		return decodedPeer{}, errors.New("message isn't a stateInfo message")
	case si.GetTimestamp() == nil:
		return decodedPeer{}, errors.New("timestamp is nil")
	case si.GetProperties() == nil:
		return decodedPeer{}, errors.New("properties is nil")
	}
	dp.HasState = true
	dp.Height = si.GetProperties().GetLedgerHeight()
	for _, cc := range si.GetProperties().GetChaincodes() {
		dp.Chaincodes = append(dp.Chaincodes, cc.GetName()+":"+cc.GetVersion())
	}
	return dp, nil
}

// decodedDescriptor is an endorsement descriptor as Fabric's client keeps it,
// after checking that every group of a layout has endorsers.
type decodedDescriptor struct {
	Chaincode string
	Layouts   []map[string]int
	Groups    map[string][]decodedPeer
}

func decodeDescriptor(d *dpb.EndorsementDescriptor) (*decodedDescriptor, error) {
	out := &decodedDescriptor{Chaincode: d.GetChaincode(), Groups: map[string][]decodedPeer{}}
	for _, l := range d.GetLayouts() {
		m := map[string]int{}
		for g, n := range l.GetQuantitiesByGroup() {
			if _, ok := d.GetEndorsersByGroups()[g]; !ok {
				return nil, fmt.Errorf("group %s isn't mapped to endorsers, but exists in a layout", g)
			}
			m[g] = int(n)
		}
		out.Layouts = append(out.Layouts, m)
	}
	for g, ps := range d.GetEndorsersByGroups() {
		for _, p := range ps.GetPeers() {
			dp, err := decodeEndorser(p)
			if err != nil {
				return nil, fmt.Errorf("failed creating endorser object: %w", err)
			}
			out.Groups[g] = append(out.Groups[g], dp)
		}
	}
	return out, nil
}
