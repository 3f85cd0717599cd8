package gateway

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sort"
	"strings"
	"sync"

	"github.com/cairn-ledger/cairn/internal/envelope"
	"github.com/cairn-ledger/cairn/internal/plan"
	cb "github.com/hyperledger/fabric-protos-go-apiv2/common"
	gp "github.com/hyperledger/fabric-protos-go-apiv2/gateway"
	"github.com/hyperledger/fabric-protos-go-apiv2/peer"
	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/proto"
)

// target is one endorsing peer the gateway can send a proposal to.
type target struct {
	endorser Endorser
	address  string
	mspID    string
}

func (s *Server) local() target {
	return target{endorser: s.cfg.Endorser, address: s.cfg.Address, mspID: s.cfg.MSPID}
}

// unpackProposal checks a proposal a client sent for evaluation or endorsement
// and that the request's channel and transaction IDs agree with it.
func unpackProposal(sp *peer.SignedProposal, channelID, txID string) (*envelope.Proposal, error) {
	p, err := envelope.UnpackProposal(sp)
	if err != nil {
		return nil, newRPCError(codes.InvalidArgument, fmt.Sprintf("failed to unpack transaction proposal: %s", err))
	}
	if p.ChannelID() == "" {
		return nil, newRPCError(codes.InvalidArgument, "failed to unpack transaction proposal: no channel id provided")
	}
	if channelID != "" && channelID != p.ChannelID() {
		return nil, newRPCError(codes.InvalidArgument, fmt.Sprintf("failed to unpack transaction proposal: request channel %q does not match proposal channel %q", channelID, p.ChannelID()))
	}
	if txID != "" && txID != p.TxID() {
		return nil, newRPCError(codes.InvalidArgument, fmt.Sprintf("failed to unpack transaction proposal: request transaction ID %q does not match proposal transaction ID %q", txID, p.TxID()))
	}
	return p, nil
}

// responseStatus classifies what an endorser returned as Fabric's gateway does:
// the gRPC code (OK for success), the message for the ErrorDetail, whether
// Evaluate may try another peer, and whether the connection to the peer
// should be dropped (it did not answer at all).
func responseStatus(pr *peer.ProposalResponse, err error) (code codes.Code, msg string, retry, remove bool) {
	if err != nil {
		if pr == nil {
			// No response at all: the peer is unreachable or failed; another may not be.
			return codes.Unavailable, err.Error(), true, true
		}
		return codes.FailedPrecondition, err.Error(), false, false
	}
	st := pr.GetResponse().GetStatus()
	if st < 200 || st >= 400 {
		if pr.GetPayload() == nil && st == 500 {
			// A 500 without a payload comes from the peer, not the chaincode:
			// the same proposal may succeed elsewhere.
			return codes.Aborted, pr.GetResponse().GetMessage(), true, false
		}
		return codes.Unknown, fmt.Sprintf("chaincode response %d, %s", st, pr.GetResponse().GetMessage()), false, false
	}
	return codes.OK, "", false, false
}

// call sends the proposal to one target, bounded by the endorsement timeout.
func (s *Server) call(ctx context.Context, t target, sp *peer.SignedProposal) (*peer.ProposalResponse, error) {
	ctx, cancel := context.WithTimeout(ctx, s.cfg.EndorsementTimeout)
	defer cancel()
	return t.endorser.ProcessProposal(ctx, sp)
}

func (s *Server) evaluate(ctx context.Context, req *gp.EvaluateRequest) (*gp.EvaluateResponse, error) {
	if req == nil {
		return nil, newRPCError(codes.InvalidArgument, "an evaluate request is required")
	}
	p, err := unpackProposal(req.GetProposedTransaction(), req.GetChannelId(), req.GetTransactionId())
	if err != nil {
		return nil, err
	}
	log := s.log.With("channel", p.ChannelID(), "chaincode", p.ChaincodeName, "txID", p.TxID())
	v, err := s.view(p.ChannelID())
	if err != nil {
		return nil, newRPCError(codes.Unavailable, err.Error())
	}
	targetOrgs := req.GetTargetOrganizations()
	transientProtected := false
	if len(p.Payload.GetTransientMap()) > 0 && len(targetOrgs) == 0 {
		// Transient data stays in the gateway's organisation unless the
		// client names others.
		targetOrgs = []string{s.cfg.MSPID}
		transientProtected = true
	}
	candidates := s.evaluators(v, p.ChaincodeName, targetOrgs)
	if len(candidates) == 0 {
		// The membership may not know yet that a chaincode just committed
		// runs (even on this peer): refresh once, as policyPlan does.
		if v, err = s.refreshed(ctx, p.ChannelID()); err == nil {
			candidates = s.evaluators(v, p.ChaincodeName, targetOrgs)
		}
	}
	if len(candidates) == 0 {
		msg := fmt.Sprintf("no peers available to evaluate chaincode %s in channel %s", p.ChaincodeName, p.ChannelID())
		if transientProtected {
			msg = "no endorsers found in the gateway's organization; retry specifying target organization(s) to protect transient data: " + msg
		}
		return nil, newRPCError(codes.FailedPrecondition, msg)
	}
	var details []*gp.ErrorDetail
	var code codes.Code
	for _, c := range candidates {
		t := v.targets[c.Address]
		pr, err := s.call(ctx, t, req.GetProposedTransaction())
		if ctx.Err() != nil {
			log.Warn("evaluate call timed out while processing request")
			return nil, newRPCError(codes.DeadlineExceeded, "evaluate timeout expired")
		}
		var msg string
		var retry, remove bool
		code, msg, retry, remove = responseStatus(pr, err)
		if code == codes.OK {
			return &gp.EvaluateResponse{Result: evaluationResult(pr)}, nil
		}
		log.Debug("evaluate call to endorser failed", "endorserAddress", t.address, "endorserMspid", t.mspID, "error", msg)
		details = append(details, errorDetail(t.address, t.mspID, msg))
		if remove {
			s.forget(c)
		}
		if !retry {
			return nil, newRPCError(code, "evaluate call to endorser returned error: "+msg, details...)
		}
	}
	return nil, newRPCError(code, "failed to evaluate transaction, see attached details for more info", details...)
}

// evaluators lists the peers to try for an evaluation, in order: those of
// the gateway's organisation (highest ledger height first, the local peer
// first among equals), then those of the other organisations by height, as
// Fabric's gateway; only peers that run the chaincode, and only of
// targetOrgs when given. System chaincodes answer about the peer they run
// on (its ledger height, its channels, its installed packages), so they are
// evaluated on the local peer alone.
func (s *Server) evaluators(v *channelView, chaincode string, targetOrgs []string) []plan.Peer {
	if isSystemChaincode(chaincode) {
		if len(targetOrgs) > 0 && !slices.Contains(targetOrgs, s.cfg.MSPID) {
			return nil
		}
		return []plan.Peer{{Address: s.cfg.Address, MSPID: s.cfg.MSPID, Local: true}}
	}
	orgs := byOrg(v.withChaincodes(chaincode))
	if len(targetOrgs) == 0 {
		for org := range orgs {
			targetOrgs = append(targetOrgs, org)
		}
	}
	var local, others []plan.Peer
	for _, org := range targetOrgs {
		if org == s.cfg.MSPID {
			local = orgs[org]
		} else {
			others = append(others, orgs[org]...)
		}
	}
	sort.SliceStable(others, func(i, j int) bool {
		if others[i].Height != others[j].Height {
			return others[i].Height > others[j].Height
		}
		return others[i].Address < others[j].Address
	})
	return append(local, others...)
}

// forget drops the connection to a remote peer that did not answer.
func (s *Server) forget(p plan.Peer) {
	if !p.Local && p.Address != s.cfg.Address {
		s.endorsers.Forget(p.Address)
	}
}

// evaluationResult is the response to hand the client: the chaincode's own
// response from the proposal response payload is preferred, because a peer's
// Response.Payload need not be the transaction result.
func evaluationResult(pr *peer.ProposalResponse) *peer.Response {
	result := proto.Clone(pr.GetResponse()).(*peer.Response)
	if result == nil {
		result = &peer.Response{}
	}
	prp := &peer.ProposalResponsePayload{}
	if err := proto.Unmarshal(pr.GetPayload(), prp); err != nil {
		return result
	}
	action := &peer.ChaincodeAction{}
	if err := proto.Unmarshal(prp.GetExtension(), action); err != nil {
		return result
	}
	result.Payload = action.GetResponse().GetPayload()
	return result
}

func (s *Server) endorse(ctx context.Context, req *gp.EndorseRequest) (*gp.EndorseResponse, error) {
	if req == nil {
		return nil, newRPCError(codes.InvalidArgument, "an endorse request is required")
	}
	sp := req.GetProposedTransaction()
	if len(sp.GetProposalBytes()) == 0 {
		return nil, newRPCError(codes.InvalidArgument, "the proposed transaction must contain a signed proposal")
	}
	p, err := unpackProposal(sp, req.GetChannelId(), req.GetTransactionId())
	if err != nil {
		return nil, err
	}
	log := s.log.With("channel", p.ChannelID(), "chaincode", p.ChaincodeName, "txID", p.TxID())
	v, err := s.view(p.ChannelID())
	if err != nil {
		return nil, newRPCError(codes.Unavailable, err.Error())
	}
	run := &endorsement{s: s, v: v, sp: sp, cc: p.ChaincodeName, log: log}

	var pl *plan.Plan
	if orgs := req.GetEndorsingOrganizations(); len(orgs) > 0 {
		// The client names the endorsing organisations and answers for the
		// policy being met.
		if pl, err = s.planForOrgs(v, p.ChaincodeName, orgs); err != nil {
			// Stale membership (see evaluate): refresh once and plan again.
			if v, err = s.refreshed(ctx, p.ChannelID()); err == nil {
				run.v = v
				pl, err = s.planForOrgs(v, p.ChaincodeName, orgs)
			}
		}
		if err != nil {
			return nil, newRPCError(codes.Unavailable, err.Error())
		}
	} else if pl, err = run.planFromFirstEndorser(ctx, p); err != nil {
		return nil, err
	}

	for pl.Completed() == nil {
		endorsers := pl.Endorsers()
		if endorsers == nil {
			break
		}
		var wg sync.WaitGroup
		for _, e := range endorsers {
			wg.Go(func() {
				for {
					if run.ask(ctx, pl, e) || ctx.Err() != nil {
						return
					}
					next, ok := pl.Retry(e)
					if !ok {
						return
					}
					e = next
				}
			})
		}
		wg.Wait()
		if ctx.Err() != nil {
			log.Warn("endorse call timed out while collecting endorsements", "numEndorsers", len(endorsers))
			return nil, newRPCError(codes.DeadlineExceeded, "endorsement timeout expired while collecting endorsements")
		}
	}
	responses := pl.Completed()
	if responses == nil {
		return nil, newRPCError(codes.Aborted, "failed to collect enough transaction endorsements, see attached details for more info", run.errorDetails()...)
	}
	tx, err := envelope.NewTransaction(p, responses)
	if err != nil {
		return nil, newRPCError(codes.Aborted, fmt.Sprintf("failed to assemble transaction: %s", err))
	}
	return &gp.EndorseResponse{PreparedTransaction: tx}, nil
}

// endorsement is the state of one Endorse call shared by the goroutines
// asking peers.
type endorsement struct {
	s   *Server
	v   *channelView // replaced only while planning, before peers are asked
	sp  *peer.SignedProposal
	cc  string
	log *slog.Logger

	mu      sync.Mutex
	details []*gp.ErrorDetail
}

func (e *endorsement) addDetail(t target, msg string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.details = append(e.details, errorDetail(t.address, t.mspID, msg))
}

func (e *endorsement) errorDetails() []*gp.ErrorDetail {
	e.mu.Lock()
	defer e.mu.Unlock()
	return append([]*gp.ErrorDetail(nil), e.details...)
}

// ask sends the proposal to one peer of the plan and records the outcome;
// false means another peer of its group should be asked.
func (e *endorsement) ask(ctx context.Context, pl *plan.Plan, p plan.Peer) bool {
	t := e.v.targets[p.Address]
	pr, err := e.s.call(ctx, t, e.sp)
	if ctx.Err() != nil {
		return false
	}
	code, msg, _, remove := responseStatus(pr, err)
	if code != codes.OK {
		e.log.Warn("endorse call to endorser failed", "endorserAddress", t.address, "endorserMspid", t.mspID, "error", msg)
		e.addDetail(t, msg)
		if remove {
			e.s.forget(p)
		}
		return false
	}
	if !pl.Endorsed(p, pr) {
		e.log.Warn("proposal response payloads do not match", "endorserAddress", t.address, "endorserMspid", t.mspID)
		e.addDetail(t, "ProposalResponsePayloads do not match")
		return false
	}
	return true
}

// planFromFirstEndorser is Fabric's gateway strategy: run the proposal on a
// peer of the gateway's own organisation (or, if it has none that runs the
// chaincode, on one the chaincode's policy allows), then plan the remaining
// endorsements from what that endorsement reveals — the namespaces and keys
// it writes and the chaincodes it called — and count it in the plan.
func (e *endorsement) planFromFirstEndorser(ctx context.Context, p *envelope.Proposal) (*plan.Plan, error) {
	s, v := e.s, e.v
	cc := p.ChaincodeName
	var first *plan.Plan
	if own := byOrg(v.withChaincodes(cc))[s.cfg.MSPID]; len(own) > 0 {
		first = plan.New([]plan.Layout{{s.cfg.MSPID: 1}}, map[string][]plan.Peer{s.cfg.MSPID: own})
	} else {
		if len(p.Payload.GetTransientMap()) > 0 {
			return nil, newRPCError(codes.FailedPrecondition, "no endorsers found in the gateway's organization; retry specifying endorsing organization(s) to protect transient data")
		}
		var err error
		if first, err = e.policyPlan(ctx, nil); err != nil {
			return nil, err
		}
	}
	endorsers := first.Endorsers()
	if len(endorsers) == 0 {
		return nil, newRPCError(codes.FailedPrecondition, "no combination of peers can be derived which satisfy the endorsement policy: no peers available")
	}
	fe := endorsers[0]
	var firstResponse *peer.ProposalResponse
	for firstResponse == nil {
		t := v.targets[fe.Address]
		pr, err := s.call(ctx, t, e.sp)
		if ctx.Err() != nil {
			e.log.Warn("endorse call timed out while collecting first endorsement")
			return nil, newRPCError(codes.DeadlineExceeded, "endorsement timeout expired while collecting first endorsement")
		}
		code, msg, _, remove := responseStatus(pr, err)
		if code == codes.OK {
			firstResponse = pr
			break
		}
		e.log.Warn("endorse call to endorser failed", "endorserAddress", t.address, "endorserMspid", t.mspID, "error", msg)
		e.addDetail(t, msg)
		if remove {
			s.forget(fe)
		}
		next, ok := first.Retry(fe)
		if !ok {
			return nil, newRPCError(codes.Aborted, "failed to endorse transaction, see attached details for more info", e.errorDetails()...)
		}
		fe = next
	}

	if s.cfg.Network == nil {
		// Alone on the channel as far as the gateway knows: the local
		// endorsement is the plan.
		pl := plan.New([]plan.Layout{{"local": 1}}, map[string][]plan.Peer{"local": {fe}})
		pl.Endorsed(fe, firstResponse)
		return pl, nil
	}
	pl, err := e.policyPlan(ctx, firstResponse)
	if err != nil {
		return nil, err
	}
	pl.Prefer(fe)
	pl.Endorsed(fe, firstResponse)
	if pl.Completed() == nil && !pl.Viable() {
		return nil, newRPCError(codes.FailedPrecondition, "failed to select a set of endorsers that satisfy the endorsement policy due to unavailability of peers")
	}
	return pl, nil
}

// policyPlan plans endorsements from the policies a transaction must
// satisfy: derived from its first endorsement when given, else the invoked
// chaincode's own policy. When the peers known cannot satisfy them, the
// membership may be stale (a chaincode just committed, a peer just joined):
// it is refreshed once and the planning repeated, where Fabric's gateway
// would fail until gossip caught up.
func (e *endorsement) policyPlan(ctx context.Context, first *peer.ProposalResponse) (*plan.Plan, error) {
	s := e.s
	fail := func(err error) error {
		return newRPCError(codes.FailedPrecondition, "no combination of peers can be derived which satisfy the endorsement policy: "+err.Error())
	}
	if e.v.bundle == nil {
		return nil, fail(errors.New("no channel configuration"))
	}
	channelID, cc := e.v.bundle.ChannelID(), e.cc
	var reqs []plan.Requirement
	ccs := []string{cc}
	var err error
	if first != nil {
		reqs, ccs, err = s.requirements(channelID, cc, first)
	} else {
		var spe *cb.SignaturePolicyEnvelope
		var ref string
		if spe, ref, err = s.cfg.Network.EndorsementPolicy(channelID, cc, nil); err == nil {
			reqs = []plan.Requirement{{Signature: spe, Ref: ref}}
		}
	}
	if err != nil {
		return nil, fail(err)
	}
	layouts, groups, err := plan.Layouts(e.v.bundle.Config().GetChannelGroup(), reqs, e.v.withChaincodes(ccs...))
	if errors.Is(err, plan.ErrUnsatisfiable) {
		e.log.Debug("refreshing membership after planning failed", "error", err)
		v, verr := s.refreshed(ctx, channelID)
		if verr != nil {
			return nil, fail(verr)
		}
		e.v = v
		layouts, groups, err = plan.Layouts(v.bundle.Config().GetChannelGroup(), reqs, v.withChaincodes(ccs...))
	}
	if err != nil {
		return nil, fail(err)
	}
	return plan.New(layouts, groups), nil
}

// refreshed brings the channel's membership up to date and returns the new
// view of it.
func (s *Server) refreshed(ctx context.Context, channelID string) (*channelView, error) {
	s.cfg.Network.Refresh(ctx, channelID)
	return s.view(channelID)
}

// planForOrgs is a plan of one layout: one peer of each named organisation.
func (s *Server) planForOrgs(v *channelView, cc string, orgs []string) (*plan.Plan, error) {
	peers := byOrg(v.withChaincodes(cc))
	layout := plan.Layout{}
	groups := map[string][]plan.Peer{}
	var missing []string
	for _, org := range orgs {
		if ps, ok := peers[org]; ok {
			layout[org] = 1
			groups[org] = ps
		} else {
			missing = append(missing, org)
		}
	}
	if len(missing) > 0 {
		return nil, fmt.Errorf("failed to find any endorsing peers for org(s): %s", strings.Join(missing, ", "))
	}
	return plan.New([]plan.Layout{layout}, groups), nil
}
