package gateway

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"sync"

	"github.com/cairn-ledger/cairn/internal/envelope"
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

// group is a set of interchangeable endorsers (peers of one organisation): one
// endorsement from the group is enough, the others are fallbacks tried in order.
type group []target

// planner chooses who must endorse a proposal: one endorsement from every
// group. The multi-organisation planner (discovery over the chaincode's
// endorsement policy) replaces localPlan later without touching Endorse.
type planner func(channelID, chaincode string) ([]group, error)

// localPlan is the walking skeleton's plan: the local peer endorses alone.
func (s *Server) localPlan(string, string) ([]group, error) {
	return []group{{s.local()}}, nil
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
// the gRPC code (OK for success), the message for the ErrorDetail, and whether
// another peer of the same group may be tried.
func responseStatus(pr *peer.ProposalResponse, err error) (code codes.Code, msg string, retry bool) {
	if err != nil {
		if pr == nil {
			// No response at all: the peer is unreachable or failed; another may not be.
			return codes.Unavailable, err.Error(), true
		}
		return codes.FailedPrecondition, err.Error(), false
	}
	st := pr.GetResponse().GetStatus()
	if st < 200 || st >= 400 {
		if pr.GetPayload() == nil && st == 500 {
			// A 500 without a payload comes from the peer, not the chaincode:
			// the same proposal may succeed elsewhere.
			return codes.Aborted, pr.GetResponse().GetMessage(), true
		}
		return codes.Unknown, fmt.Sprintf("chaincode response %d, %s", st, pr.GetResponse().GetMessage()), false
	}
	return codes.OK, "", false
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
	groups, err := s.plan()(p.ChannelID(), p.ChaincodeName)
	if err != nil {
		return nil, newRPCError(codes.FailedPrecondition, err.Error())
	}
	if len(groups) == 0 || len(groups[0]) == 0 {
		return nil, newRPCError(codes.FailedPrecondition, "no peers available to evaluate transaction")
	}
	var details []*gp.ErrorDetail
	var code codes.Code
	for _, t := range groups[0] {
		pr, err := s.call(ctx, t, req.GetProposedTransaction())
		if ctx.Err() != nil {
			log.Warn("evaluate call timed out while processing request")
			return nil, newRPCError(codes.DeadlineExceeded, "evaluate timeout expired")
		}
		var msg string
		var retry bool
		code, msg, retry = responseStatus(pr, err)
		if code == codes.OK {
			return &gp.EvaluateResponse{Result: evaluationResult(pr)}, nil
		}
		log.Debug("evaluate call to endorser failed", "endorserAddress", t.address, "endorserMspid", t.mspID, "error", msg)
		details = append(details, errorDetail(t.address, t.mspID, msg))
		if !retry {
			return nil, newRPCError(code, "evaluate call to endorser returned error: "+msg, details...)
		}
	}
	return nil, newRPCError(code, "failed to evaluate transaction, see attached details for more info", details...)
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

func (s *Server) plan() planner { return s.localPlan }

func (s *Server) endorse(ctx context.Context, req *gp.EndorseRequest) (*gp.EndorseResponse, error) {
	if req == nil {
		return nil, newRPCError(codes.InvalidArgument, "an endorse request is required")
	}
	if len(req.GetProposedTransaction().GetProposalBytes()) == 0 {
		return nil, newRPCError(codes.InvalidArgument, "the proposed transaction must contain a signed proposal")
	}
	p, err := unpackProposal(req.GetProposedTransaction(), req.GetChannelId(), req.GetTransactionId())
	if err != nil {
		return nil, err
	}
	log := s.log.With("channel", p.ChannelID(), "chaincode", p.ChaincodeName, "txID", p.TxID())
	groups, err := s.plan()(p.ChannelID(), p.ChaincodeName)
	if err != nil {
		return nil, newRPCError(codes.FailedPrecondition, err.Error())
	}
	if len(groups) == 0 {
		return nil, newRPCError(codes.FailedPrecondition, "no endorsers available for transaction")
	}

	results := make([]groupResult, len(groups))
	var wg sync.WaitGroup
	for i, g := range groups {
		wg.Go(func() { results[i] = s.endorseGroup(ctx, g, req.GetProposedTransaction(), log) })
	}
	wg.Wait()
	if ctx.Err() != nil {
		log.Warn("endorse call timed out while collecting endorsements")
		return nil, newRPCError(codes.DeadlineExceeded, "endorsement timeout expired while collecting endorsements")
	}

	var details []*gp.ErrorDetail
	var responses []*peer.ProposalResponse
	failed := false
	for _, r := range results {
		details = append(details, r.details...)
		if r.response == nil {
			failed = true
			continue
		}
		if len(responses) > 0 && !bytes.Equal(responses[0].GetPayload(), r.response.GetPayload()) {
			log.Warn("proposal response payloads differ", "endorserAddress", r.target.address, "endorserMspid", r.target.mspID)
			details = append(details, errorDetail(r.target.address, r.target.mspID, "ProposalResponsePayloads do not match"))
			failed = true
			continue
		}
		responses = append(responses, r.response)
	}
	if failed {
		// Fabric words the failure of the first (local) endorsement differently
		// from failing to complete a multi-organisation plan.
		if len(groups) == 1 {
			return nil, newRPCError(codes.Aborted, "failed to endorse transaction, see attached details for more info", details...)
		}
		return nil, newRPCError(codes.Aborted, "failed to collect enough transaction endorsements, see attached details for more info", details...)
	}
	tx, err := envelope.NewTransaction(p, responses)
	if err != nil {
		return nil, newRPCError(codes.Aborted, fmt.Sprintf("failed to assemble transaction: %s", err))
	}
	return &gp.EndorseResponse{PreparedTransaction: tx}, nil
}

type groupResult struct {
	target   target
	response *peer.ProposalResponse // nil if no peer of the group endorsed
	details  []*gp.ErrorDetail
}

// endorseGroup gets one endorsement from a group, trying its peers in order.
func (s *Server) endorseGroup(ctx context.Context, g group, sp *peer.SignedProposal, log *slog.Logger) groupResult {
	var res groupResult
	for _, t := range g {
		res.target = t
		pr, err := s.call(ctx, t, sp)
		if ctx.Err() != nil {
			return res
		}
		code, msg, _ := responseStatus(pr, err)
		if code == codes.OK {
			res.response = pr
			return res
		}
		log.Warn("endorse call to endorser failed", "endorserAddress", t.address, "endorserMspid", t.mspID, "error", msg)
		// As Fabric, any failure moves on to the group's next peer.
		res.details = append(res.details, errorDetail(t.address, t.mspID, msg))
	}
	return res
}
