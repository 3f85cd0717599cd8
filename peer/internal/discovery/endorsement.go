package discovery

import (
	"errors"
	"fmt"
	"sort"

	dpb "github.com/hyperledger/fabric-protos-go-apiv2/discovery"
	pb "github.com/hyperledger/fabric-protos-go-apiv2/peer"
	"google.golang.org/protobuf/encoding/prototext"

	"github.com/cairn-ledger/cairn/internal/channelconfig"
	"github.com/cairn-ledger/cairn/internal/msp"
	"github.com/cairn-ledger/cairn/internal/plan"
)

// endorsers answers a ChaincodeQuery: one descriptor per interest, in order.
// As in Fabric, one interest that cannot be described fails the whole query.
func (s *Service) endorsers(b *channelconfig.Bundle, q *dpb.ChaincodeQuery) *dpb.QueryResult {
	if err := validateChaincodeQuery(q); err != nil {
		return errorResult(err.Error())
	}
	res := &dpb.ChaincodeQueryResult{}
	for _, interest := range q.GetInterests() {
		desc, err := s.descriptor(b, interest)
		if err != nil {
			text := prototext.MarshalOptions{}.Format(interest)
			s.log.Info("discovery: no endorsement descriptor", "channel", b.ChannelID(), "interest", text, "error", err)
			return errorResult("failed constructing descriptor for " + text)
		}
		res.Content = append(res.Content, desc)
	}
	return &dpb.QueryResult{Result: &dpb.QueryResult_CcQueryRes{CcQueryRes: res}}
}

// validateChaincodeQuery refuses malformed queries with Fabric's messages.
func validateChaincodeQuery(q *dpb.ChaincodeQuery) error {
	if len(q.GetInterests()) == 0 {
		return errors.New("chaincode query must have at least one chaincode interest")
	}
	for _, in := range q.GetInterests() {
		if in == nil {
			return errors.New("chaincode interest is nil")
		}
		if len(in.GetChaincodes()) == 0 {
			return errors.New("chaincode interest must contain at least one chaincode")
		}
		for _, cc := range in.GetChaincodes() {
			if cc.GetName() == "" {
				return errors.New("chaincode name in interest cannot be empty")
			}
		}
	}
	return nil
}

// descriptor computes the endorsement descriptor of one chaincode interest.
func (s *Service) descriptor(b *channelconfig.Bundle, interest *pb.ChaincodeInterest) (*dpb.EndorsementDescriptor, error) {
	f, err := s.chaincodeFilter(b, interest)
	if err != nil {
		return nil, err
	}
	reqs, err := requirements(interest, f.defs)
	if err != nil {
		return nil, err
	}
	members := s.cfg.Membership.Peers(b.ChannelID())
	byEndpoint := map[string]Peer{}
	for _, p := range members {
		byEndpoint[p.Endpoint] = p
	}
	layouts, groups, err := viableLayouts(b, reqs, planPeers(b, f.apply(members)))
	if errors.Is(err, plan.ErrUnsatisfiable) {
		// Fabric tells apart peers missing from the channel and peers
		// missing the chaincode.
		if _, _, err2 := viableLayouts(b, reqs, planPeers(b, f.authorised(members))); err2 == nil {
			return nil, errors.New("required chaincodes are not installed on sufficient peers")
		}
		return nil, errors.New("no peer combination can satisfy the endorsement policy")
	}
	if err != nil {
		return nil, err
	}

	// Name the groups G0, G1, … in order of first use, as Fabric masks its
	// principals, so that the names say nothing of the peers.
	names := map[string]string{}
	desc := &dpb.EndorsementDescriptor{Chaincode: interest.GetChaincodes()[0].GetName(), EndorsersByGroups: map[string]*dpb.Peers{}}
	for _, l := range layouts {
		dl := &dpb.Layout{QuantitiesByGroup: map[string]uint32{}}
		keys := make([]string, 0, len(l))
		for g := range l {
			keys = append(keys, g)
		}
		sort.Strings(keys)
		for _, g := range keys {
			name, ok := names[g]
			if !ok {
				name = fmt.Sprintf("G%d", len(names))
				names[g] = name
			}
			dl.QuantitiesByGroup[name] = uint32(l[g])
		}
		desc.Layouts = append(desc.Layouts, dl)
	}
	for g, name := range names {
		ps := &dpb.Peers{}
		for _, pp := range groups[g] {
			dp, err := s.describe(byEndpoint[pp.Address], b.ChannelID(), true)
			if err != nil {
				return nil, fmt.Errorf("peer %s: %w", pp.Address, err)
			}
			ps.Peers = append(ps.Peers, dp)
		}
		desc.EndorsersByGroups[name] = ps
	}
	return desc, nil
}

// viableLayouts is plan.Layouts without the layouts that need more peers of
// a group than it has (Fabric only describes layouts the known peers can
// satisfy); ErrUnsatisfiable if none is left.
func viableLayouts(b *channelconfig.Bundle, reqs []plan.Requirement, peers []plan.Peer) ([]plan.Layout, map[string][]plan.Peer, error) {
	layouts, groups, err := plan.Layouts(b.Config().GetChannelGroup(), reqs, peers)
	if err != nil {
		return nil, nil, err
	}
	var out []plan.Layout
	used := map[string][]plan.Peer{}
	for _, l := range layouts {
		viable := true
		for g, n := range l {
			if n > len(groups[g]) {
				viable = false
				break
			}
		}
		if !viable {
			continue
		}
		out = append(out, l)
		for g := range l {
			used[g] = groups[g]
		}
	}
	if len(out) == 0 {
		return nil, nil, plan.ErrUnsatisfiable
	}
	return out, used, nil
}

// planPeers resolves peers' identities under the channel's MSPs; a peer whose
// identity does not deserialize satisfies no principal.
func planPeers(b *channelconfig.Bundle, peers []Peer) []plan.Peer {
	out := make([]plan.Peer, 0, len(peers))
	for _, p := range peers {
		pp := plan.Peer{Address: p.Endpoint, MSPID: p.MSPID, Height: p.Height}
		if id, err := b.MSPs().Deserialize(p.Identity); err == nil {
			pp.Identity = id
		}
		out = append(out, pp)
	}
	return out
}

// interestFilter selects the peers that can serve a chaincode interest: they
// run every chaincode of it, at the committed version, and may read every
// collection it reads.
type interestFilter struct {
	defs []*Chaincode // by position in the interest
	// readers holds, per collection read, the principals of its member
	// organisations; a peer must satisfy one principal of each.
	readers [][]*msp.Principal
	ids     *msp.Manager
}

func (s *Service) chaincodeFilter(b *channelconfig.Bundle, interest *pb.ChaincodeInterest) (*interestFilter, error) {
	f := &interestFilter{ids: b.MSPs()}
	for _, call := range interest.GetChaincodes() {
		def, ok, err := s.cfg.Channels.Chaincode(b.ChannelID(), call.GetName())
		if err != nil {
			return nil, fmt.Errorf("chaincode %s: %w", call.GetName(), err)
		}
		if !ok {
			// Fabric's message, capital included.
			return nil, fmt.Errorf("No metadata was found for chaincode %s in channel %s", call.GetName(), b.ChannelID())
		}
		f.defs = append(f.defs, def)
		if len(call.GetCollectionNames()) == 0 || call.GetNoPrivateReads() {
			continue
		}
		for _, name := range call.GetCollectionNames() {
			coll := collection(def, name)
			if coll == nil {
				return nil, fmt.Errorf("collection %s doesn't exist in collection config for chaincode %s", name, call.GetName())
			}
			var principals []*msp.Principal
			for _, id := range coll.GetMemberOrgsPolicy().GetSignaturePolicy().GetIdentities() {
				if p, err := msp.ParsePrincipal(id); err == nil {
					principals = append(principals, p)
				}
			}
			f.readers = append(f.readers, principals)
		}
	}
	return f, nil
}

// apply keeps the peers that run every chaincode and may read the
// collections.
func (f *interestFilter) apply(peers []Peer) []Peer {
	var out []Peer
	for _, p := range f.authorised(peers) {
		if f.runsAll(p) {
			out = append(out, p)
		}
	}
	return out
}

// authorised keeps the peers that may read the collections.
func (f *interestFilter) authorised(peers []Peer) []Peer {
	if len(f.readers) == 0 {
		return peers
	}
	var out []Peer
	for _, p := range peers {
		id, err := f.ids.Deserialize(p.Identity)
		if err != nil {
			continue
		}
		ok := true
		for _, principals := range f.readers {
			if !satisfiesAny(id, principals) {
				ok = false
				break
			}
		}
		if ok {
			out = append(out, p)
		}
	}
	return out
}

func (f *interestFilter) runsAll(p Peer) bool {
	for _, def := range f.defs {
		found := false
		for _, cc := range p.Chaincodes {
			if cc.Name == def.Name && cc.Version == def.Version {
				found = true
				break
			}
		}
		if !found {
			return false
		}
	}
	return true
}

func satisfiesAny(id *msp.Identity, principals []*msp.Principal) bool {
	for _, p := range principals {
		if id.Satisfies(p) == nil {
			return true
		}
	}
	return false
}

func collection(def *Chaincode, name string) *pb.StaticCollectionConfig {
	for _, c := range def.Collections.GetConfig() {
		if sc := c.GetStaticCollectionConfig(); sc.GetName() == name {
			return sc
		}
	}
	return nil
}

// requirements lists the policies an interest's endorsements must satisfy,
// as Fabric's discovery combines them: for each chaincode its endorsement
// policy (unless the call disregards it) and the endorsement policies of the
// collections it names, plus every key-level policy of the calls.
func requirements(interest *pb.ChaincodeInterest, defs []*Chaincode) ([]plan.Requirement, error) {
	var reqs []plan.Requirement
	for i, call := range interest.GetChaincodes() {
		def := defs[i]
		pols := []plan.Requirement{{Signature: def.Policy, Ref: def.PolicyRef}}
		for _, name := range call.GetCollectionNames() {
			coll := collection(def, name)
			if coll.GetEndorsementPolicy() == nil {
				continue
			}
			r, err := applicationPolicy(coll.GetEndorsementPolicy())
			if err != nil {
				return nil, fmt.Errorf("collection %s of chaincode %s: %w", name, call.GetName(), err)
			}
			pols = append(pols, r)
		}
		if call.GetDisregardNamespacePolicy() {
			if len(call.GetKeyPolicies()) == 0 && len(pols) == 1 {
				return nil, fmt.Errorf("requested to disregard chaincode %s's policy but key and collection policies are missing, either "+
					"disable DisregardNamespacePolicy or specify at least one key policy or at least one collection policy", call.GetName())
			}
			pols = pols[1:]
		}
		reqs = append(reqs, pols...)
		for _, kp := range call.GetKeyPolicies() {
			reqs = append(reqs, plan.Requirement{Signature: kp})
		}
	}
	return reqs, nil
}

func applicationPolicy(ap *pb.ApplicationPolicy) (plan.Requirement, error) {
	switch t := ap.GetType().(type) {
	case *pb.ApplicationPolicy_SignaturePolicy:
		if t.SignaturePolicy.GetRule() == nil {
			return plan.Requirement{}, errors.New("empty signature policy")
		}
		return plan.Requirement{Signature: t.SignaturePolicy}, nil
	case *pb.ApplicationPolicy_ChannelConfigPolicyReference:
		if t.ChannelConfigPolicyReference == "" {
			return plan.Requirement{}, errors.New("empty channel config policy reference")
		}
		return plan.Requirement{Ref: t.ChannelConfigPolicyReference}, nil
	}
	return plan.Requirement{}, errors.New("application policy has neither a signature policy nor a channel config policy reference")
}
