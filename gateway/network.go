package gateway

import (
	"context"
	"errors"
	"fmt"
	"slices"

	cb "github.com/hyperledger/fabric-protos-go-apiv2/common"
	"github.com/hyperledger/fabric-protos-go-apiv2/ledger/rwset"
	"github.com/hyperledger/fabric-protos-go-apiv2/ledger/rwset/kvrwset"
	"github.com/hyperledger/fabric-protos-go-apiv2/peer"
	"google.golang.org/protobuf/proto"

	"github.com/cairn-ledger/cairn/internal/channelconfig"
	"github.com/cairn-ledger/cairn/internal/plan"
)

// Network is what the gateway knows of a channel beyond the local peer: its
// peers (from the peer's membership) and the endorsement policies that decide
// which of them must endorse. Without one, the local peer endorses alone.
type Network interface {
	// Peers lists the channel's peers known to this one, the local peer
	// included (Local set).
	Peers(channelID string) []Peer
	// Bundle is the channel's configuration in force.
	Bundle(channelID string) (*channelconfig.Bundle, error)
	// EndorsementPolicy is the policy the writes of namespace ns must satisfy,
	// as validation decides it: the committed chaincode definition's, or for
	// _lifecycle the one its writes call for (an organisation's Endorsement
	// policy for an approval, LifecycleEndorsement for a definition).
	EndorsementPolicy(channelID, ns string, writes []*kvrwset.KVWrite) (spe *cb.SignaturePolicyEnvelope, ref string, err error)
	// KeyValidationParameter is the committed key-level endorsement policy
	// (VALIDATION_PARAMETER metadata) of a key, nil if it has none.
	KeyValidationParameter(channelID, ns, key string) ([]byte, error)
	// Refresh brings the channel's membership up to date now, returning when
	// done or when ctx ends.
	Refresh(ctx context.Context, channelID string)
}

// Peer is one peer of a channel as the gateway may ask it to endorse.
type Peer struct {
	Address string
	MSPID   string
	// Identity is the peer's serialized MSP identity.
	Identity []byte
	// TLSRootCerts are the PEM TLS roots of its organisation.
	TLSRootCerts [][]byte
	Height       uint64
	// Chaincodes are the chaincodes it can run on the channel.
	Chaincodes []string
	// Local marks the peer hosting this gateway.
	Local bool
}

// systemChaincodes every peer runs.
var systemChaincodes = []string{"_lifecycle", "cscc", "qscc"}

func isSystemChaincode(name string) bool { return slices.Contains(systemChaincodes, name) }

// remoteEndorser sends proposals to another peer over the gateway's pool.
type remoteEndorser struct {
	s     *Server
	addr  string
	roots [][]byte
}

func (r remoteEndorser) ProcessProposal(ctx context.Context, sp *peer.SignedProposal) (*peer.ProposalResponse, error) {
	return r.s.endorsers.ProcessProposal(ctx, r.addr, r.roots, sp)
}

// channelView is one planning's snapshot of a channel: its configuration
// and its peers, resolved to plan peers and to targets the gateway can call.
type channelView struct {
	bundle  *channelconfig.Bundle
	peers   []plan.Peer
	info    map[string]Peer // by address
	targets map[string]target
	// unfiltered: no membership, so nothing is known of the peers' chaincodes.
	unfiltered bool
}

// view snapshots a channel for planning; nil Network gives the local peer
// alone.
func (s *Server) view(channelID string) (*channelView, error) {
	local := s.local()
	v := &channelView{info: map[string]Peer{}, targets: map[string]target{}}
	if s.cfg.Network == nil {
		v.unfiltered = true
		v.peers = []plan.Peer{{Address: local.address, MSPID: local.mspID, Local: true}}
		v.info[local.address] = Peer{Address: local.address, MSPID: local.mspID, Local: true}
		v.targets[local.address] = local
		return v, nil
	}
	b, err := s.cfg.Network.Bundle(channelID)
	if err != nil {
		return nil, err
	}
	v.bundle = b
	for _, p := range s.cfg.Network.Peers(channelID) {
		pp := plan.Peer{Address: p.Address, MSPID: p.MSPID, Height: p.Height, Local: p.Local}
		if id, err := b.MSPs().Deserialize(p.Identity); err == nil {
			pp.Identity = id
		}
		t := target{endorser: remoteEndorser{s: s, addr: p.Address, roots: p.TLSRootCerts}, address: p.Address, mspID: p.MSPID}
		if p.Local {
			// The local peer is reached in process, under the gateway's own name.
			pp.Address, p.Address, t = local.address, local.address, local
			if pp.MSPID == "" {
				pp.MSPID, p.MSPID = local.mspID, local.mspID
			}
		}
		if _, dup := v.info[pp.Address]; dup {
			continue
		}
		v.peers = append(v.peers, pp)
		v.info[pp.Address] = p
		v.targets[pp.Address] = t
	}
	if _, ok := v.info[local.address]; !ok {
		// Membership has not described the local peer (yet); it is a peer of
		// the channel all the same.
		v.peers = append(v.peers, plan.Peer{Address: local.address, MSPID: local.mspID, Local: true})
		v.info[local.address] = Peer{Address: local.address, MSPID: local.mspID, Local: true}
		v.targets[local.address] = local
	}
	return v, nil
}

// withChaincodes returns the peers that can run every named chaincode.
func (v *channelView) withChaincodes(names ...string) []plan.Peer {
	var out []plan.Peer
	for _, p := range v.peers {
		info := v.info[p.Address]
		ok := true
		for _, n := range names {
			if !v.unfiltered && !isSystemChaincode(n) && !slices.Contains(info.Chaincodes, n) {
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

// byOrg groups peers by MSP ID, each group in Fabric's preference order.
func byOrg(peers []plan.Peer) map[string][]plan.Peer {
	out := map[string][]plan.Peer{}
	for _, p := range peers {
		out[p.MSPID] = append(out[p.MSPID], p)
	}
	for _, ps := range out {
		plan.SortPeers(ps)
	}
	return out
}

// requirements derives the endorsement policies a transaction must satisfy
// from its first endorsement, as the committing peers' validation will check
// them: for the invoked chaincode and every namespace written, each written
// key's key-level policy if it has one, and the namespace's policy for keys
// without (or when nothing is written to the invoked chaincode); plus the
// policies of the chaincodes the endorser reports the proposal called
// (ProposalResponse.Interest), as Fabric's gateway plans them. It also
// returns the chaincodes involved, which the endorsers must be able to run.
func (s *Server) requirements(channelID, invoked string, first *peer.ProposalResponse) ([]plan.Requirement, []string, error) {
	n := s.cfg.Network
	var reqs []plan.Requirement
	seenKeyPolicy := map[string]bool{}
	ccs := []string{invoked}
	addNamespace := func(ns string, writes []*kvrwset.KVWrite) error {
		spe, ref, err := n.EndorsementPolicy(channelID, ns, writes)
		if err != nil {
			return fmt.Errorf("endorsement policy of %s: %w", ns, err)
		}
		reqs = append(reqs, plan.Requirement{Signature: spe, Ref: ref})
		return nil
	}
	addKeyPolicy := func(raw []byte) error {
		if seenKeyPolicy[string(raw)] {
			return nil
		}
		seenKeyPolicy[string(raw)] = true
		spe := &cb.SignaturePolicyEnvelope{}
		if err := proto.Unmarshal(raw, spe); err != nil {
			return fmt.Errorf("key-level endorsement policy: %w", err)
		}
		reqs = append(reqs, plan.Requirement{Signature: spe})
		return nil
	}

	sets, err := namespaces(first)
	if err != nil {
		s.log.Debug("endorsement carries no readable read-write set; planning for the invoked chaincode only", "error", err)
	}
	if _, ok := sets[invoked]; !ok {
		sets[invoked] = &kvrwset.KVRWSet{}
	}
	for _, ns := range sortedNamespaces(sets) {
		kv := sets[ns]
		if ns != invoked && len(kv.GetWrites()) == 0 && len(kv.GetMetadataWrites()) == 0 {
			continue
		}
		if ns != invoked && !slices.Contains(ccs, ns) {
			ccs = append(ccs, ns)
		}
		keys := make([]string, 0, len(kv.GetWrites())+len(kv.GetMetadataWrites()))
		for _, w := range kv.GetWrites() {
			keys = append(keys, w.GetKey())
		}
		for _, w := range kv.GetMetadataWrites() {
			keys = append(keys, w.GetKey())
		}
		needNamespace := len(keys) == 0
		for _, k := range keys {
			vp, err := n.KeyValidationParameter(channelID, ns, k)
			if err != nil {
				return nil, nil, fmt.Errorf("key-level endorsement policy of %s/%q: %w", ns, k, err)
			}
			if len(vp) == 0 {
				needNamespace = true
				continue
			}
			if err := addKeyPolicy(vp); err != nil {
				return nil, nil, fmt.Errorf("key %s/%q: %w", ns, k, err)
			}
		}
		if needNamespace {
			if err := addNamespace(ns, kv.GetWrites()); err != nil {
				return nil, nil, err
			}
		}
	}
	for _, call := range first.GetInterest().GetChaincodes() {
		name := call.GetName()
		if name == "" || isSystemChaincode(name) {
			continue
		}
		for _, kp := range call.GetKeyPolicies() {
			raw, err := proto.Marshal(kp)
			if err != nil {
				return nil, nil, err
			}
			if err := addKeyPolicy(raw); err != nil {
				return nil, nil, err
			}
		}
		if slices.Contains(ccs, name) || call.GetDisregardNamespacePolicy() {
			continue
		}
		ccs = append(ccs, name)
		if err := addNamespace(name, sets[name].GetWrites()); err != nil {
			return nil, nil, err
		}
	}
	return reqs, ccs, nil
}

// namespaces decodes the public read-write sets of an endorsement by
// namespace.
func namespaces(pr *peer.ProposalResponse) (map[string]*kvrwset.KVRWSet, error) {
	out := map[string]*kvrwset.KVRWSet{}
	prp := &peer.ProposalResponsePayload{}
	if err := proto.Unmarshal(pr.GetPayload(), prp); err != nil {
		return out, fmt.Errorf("proposal response payload: %w", err)
	}
	action := &peer.ChaincodeAction{}
	if err := proto.Unmarshal(prp.GetExtension(), action); err != nil {
		return out, fmt.Errorf("chaincode action: %w", err)
	}
	txrw := &rwset.TxReadWriteSet{}
	if err := proto.Unmarshal(action.GetResults(), txrw); err != nil {
		return out, fmt.Errorf("read-write set: %w", err)
	}
	for _, ns := range txrw.GetNsRwset() {
		kv := &kvrwset.KVRWSet{}
		if err := proto.Unmarshal(ns.GetRwset(), kv); err != nil {
			return map[string]*kvrwset.KVRWSet{}, fmt.Errorf("read-write set of %s: %w", ns.GetNamespace(), err)
		}
		if _, dup := out[ns.GetNamespace()]; dup {
			return map[string]*kvrwset.KVRWSet{}, errors.New("namespace " + ns.GetNamespace() + " appears twice")
		}
		out[ns.GetNamespace()] = kv
	}
	return out, nil
}

func sortedNamespaces(m map[string]*kvrwset.KVRWSet) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}
