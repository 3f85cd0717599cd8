// Package endorser owns the peer's Endorser service (ProcessProposal): it checks
// a signed proposal (shape, tx ID, creator MSP and signature, channel ACL,
// duplicate tx ID), simulates it — on a system chaincode or a user chaincode
// process — against the channel state, and returns the response signed by the
// peer with the resulting read-write set. As in Fabric, failures are answered as
// ProposalResponses with status 500 and a message, not as gRPC errors; a
// chaincode's own error status from 500 up also carries the (unendorsed)
// response payload, which is how a gateway tells it from the peer's failures.
//
// User chaincode may call other chaincodes (InvokeChaincode): the endorser
// resolves each callee for the chaincode runtime (callees.go) and reports the
// chaincodes a proposal called in ProposalResponse.Interest, from which a
// gateway plans whose endorsements the transaction needs.
//
// Endorser is safe for concurrent use; each proposal is simulated on its own
// simulator.
package endorser

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"unicode/utf8"

	pb "github.com/hyperledger/fabric-protos-go-apiv2/peer"
	"google.golang.org/protobuf/proto"

	"github.com/cairn-ledger/cairn/internal/channelconfig"
	"github.com/cairn-ledger/cairn/internal/envelope"
	"github.com/cairn-ledger/cairn/internal/msp"
	"github.com/cairn-ledger/cairn/internal/policy"
	"github.com/cairn-ledger/cairn/peer/internal/chaincode"
	"github.com/cairn-ledger/cairn/peer/internal/ledger"
	"github.com/cairn-ledger/cairn/peer/internal/lifecycle"
)

// Channel is what endorsement needs of one joined channel.
type Channel interface {
	Bundle() *channelconfig.Bundle
	NewTxSimulator(txID string) (*ledger.TxSimulator, error)
	TxIDExists(txID string) (bool, error)
	// ChaincodePackageID resolves the chaincode process that serves a committed
	// chaincode for this peer's organisation.
	ChaincodePackageID(name string) (string, error)
	// ChaincodeInfo is ChaincodePackageID with the committed definition.
	ChaincodeInfo(name string) (string, *lifecycle.ChaincodeDefinition, error)
}

// InitializedKey is the key, in a chaincode's own namespace, where the
// version of its definition that was initialised is recorded when the
// definition requires initialisation (Fabric's InitializedKeyName).
const InitializedKey = "\x00" + string(utf8.MaxRune) + "initialized"

// Channels finds joined channels.
type Channels interface {
	Channel(id string) (Channel, bool)
}

// Runtime executes user chaincode.
type Runtime interface {
	Execute(ctx context.Context, inv chaincode.Invocation, sim chaincode.TxSimulator) (*chaincode.Result, error)
}

// Invocation is a call of a system chaincode.
type Invocation struct {
	Proposal *envelope.Proposal
	Creator  *msp.Identity
	// Channel is nil for channel-less proposals (e.g. cscc JoinChain, InstallChaincode).
	Channel Channel
	// Sim records the state the call reads and writes; nil without a channel.
	Sim *ledger.TxSimulator
}

// SystemChaincode is a chaincode built into the peer (cscc, qscc, _lifecycle).
type SystemChaincode interface {
	Invoke(ctx context.Context, inv Invocation) *pb.Response
}

// Config configures the endorser.
type Config struct {
	Signer envelope.Signer
	// LocalMSPs validates creators of channel-less proposals (the peer's own org).
	LocalMSPs *msp.Manager
	Channels  Channels
	Runtime   Runtime
	System    map[string]SystemChaincode
	Logger    *slog.Logger
}

// Endorser serves ProcessProposal.
type Endorser struct {
	pb.UnimplementedEndorserServer
	cfg Config
}

// New returns an Endorser.
func New(cfg Config) *Endorser {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	return &Endorser{cfg: cfg}
}

func failed(status int32, format string, args ...any) *pb.ProposalResponse {
	return &pb.ProposalResponse{Response: &pb.Response{Status: status, Message: fmt.Sprintf(format, args...)}}
}

// ProcessProposal endorses a proposal.
func (e *Endorser) ProcessProposal(ctx context.Context, sp *pb.SignedProposal) (*pb.ProposalResponse, error) {
	prop, err := envelope.UnpackProposal(sp)
	if err != nil {
		return failed(500, "invalid proposal: %v", err), nil
	}
	resp, err := e.process(ctx, prop)
	if err != nil {
		e.cfg.Logger.Warn("proposal refused", proposalAttrs(prop, "error", err, policy.LogAttr(err))...)
		return failed(500, "%v", err), nil
	}
	if s := resp.GetResponse().GetStatus(); s >= 400 {
		e.cfg.Logger.Info("chaincode returned an error", proposalAttrs(prop, "status", s, "message", resp.GetResponse().GetMessage())...)
	}
	return resp, nil
}

// proposalAttrs are the attributes of a log line about prop, then more. They
// are built only when a line is logged: a Logger.With per proposal cost ~1 %
// of the peer's CPU per endorsement even though an endorsed proposal logs
// nothing.
func proposalAttrs(prop *envelope.Proposal, more ...any) []any {
	return append([]any{"tx.id", prop.TxID(), "channel", prop.ChannelID(), "chaincode", prop.ChaincodeName}, more...)
}

func (e *Endorser) process(ctx context.Context, prop *envelope.Proposal) (*pb.ProposalResponse, error) {
	var (
		ch      Channel
		creator *msp.Identity
		err     error
	)
	data, ident, sig := prop.SignedData()
	if prop.ChannelID() == "" {
		if _, ok := e.cfg.System[prop.ChaincodeName]; !ok {
			return nil, fmt.Errorf("chaincode %s cannot be invoked without a channel", prop.ChaincodeName)
		}
		if creator, err = e.cfg.LocalMSPs.Deserialize(ident); err != nil {
			return nil, fmt.Errorf("access denied: creator: %w", err)
		}
	} else {
		var ok bool
		if ch, ok = e.cfg.Channels.Channel(prop.ChannelID()); !ok {
			return nil, fmt.Errorf("channel %s not found", prop.ChannelID())
		}
		if creator, err = ch.Bundle().MSPs().Deserialize(ident); err != nil {
			return nil, fmt.Errorf("access denied: creator: %w", err)
		}
	}
	if err := creator.Verify(data, sig); err != nil {
		return nil, fmt.Errorf("access denied: proposal signature of %s: %w", creator, err)
	}
	if ch != nil {
		if exists, err := ch.TxIDExists(prop.TxID()); err != nil {
			return nil, fmt.Errorf("look up tx ID: %w", err)
		} else if exists {
			return nil, fmt.Errorf("duplicate transaction found [%s]. Creator [%s]", prop.TxID(), creator)
		}
		if _, sys := e.cfg.System[prop.ChaincodeName]; !sys {
			// System chaincodes apply their own per-function ACLs. The
			// signature was verified just above with the channel's MSPs:
			// verifying it again would cost a tenth of an endorsement.
			if err := CheckACL(ch.Bundle(), "peer/Propose", "/Channel/Application/Writers", []policy.SignedData{{Data: data, Identity: ident, Signature: sig, SignatureVerified: true}}); err != nil {
				return nil, err
			}
		}
	}

	var sim *ledger.TxSimulator
	if ch != nil {
		if sim, err = ch.NewTxSimulator(prop.TxID()); err != nil {
			return nil, fmt.Errorf("start simulation: %w", err)
		}
		defer sim.Done()
	}

	var (
		resp  *pb.Response
		event *pb.ChaincodeEvent
		cc    *callees // nil for system chaincodes
	)
	// The action names the chaincode with the version of its definition, or
	// Fabric's "syscc" for a system chaincode, as Fabric's endorser does.
	ccID := &pb.ChaincodeID{Name: prop.ChaincodeName, Version: systemChaincodeVersion}
	if sys, ok := e.cfg.System[prop.ChaincodeName]; ok {
		resp = sys.Invoke(ctx, Invocation{Proposal: prop, Creator: creator, Channel: ch, Sim: sim})
	} else {
		pkgID, def, err := ch.ChaincodeInfo(prop.ChaincodeName)
		if err != nil {
			return nil, fmt.Errorf("make sure the chaincode %s has been successfully defined on channel %s and try again: %w", prop.ChaincodeName, prop.ChannelID(), err)
		}
		ccID.Version = def.Version
		isInit, err := checkInit(prop.ChaincodeName, def, prop.Input.GetIsInit(), sim)
		if err != nil {
			return nil, err
		}
		cc = &callees{
			e: e, channel: ch, channelID: prop.ChannelID(),
			signed: []policy.SignedData{{Data: data, Identity: ident, Signature: sig}},
		}
		res, err := e.cfg.Runtime.Execute(ctx, chaincode.Invocation{
			PackageID:      pkgID,
			Namespace:      prop.ChaincodeName,
			ChannelID:      prop.ChannelID(),
			TxID:           prop.TxID(),
			SignedProposal: prop.Signed,
			Input:          prop.Input,
			Init:           isInit,
			Callees:        cc,
		}, simulator{sim})
		if err != nil {
			return nil, fmt.Errorf("error in simulation: %w", err)
		}
		resp, event = res.Response, res.Event
	}
	if resp == nil {
		return nil, errors.New("chaincode returned no response")
	}
	if resp.Status >= 400 {
		return chaincodeError(prop, resp, sim, ccID, cc)
	}
	results, err := simulationResults(sim)
	if err != nil {
		return nil, err
	}
	pr, err := envelope.Endorse(prop, e.cfg.Signer, resp, results, event, ccID)
	if err != nil {
		return nil, err
	}
	pr.Interest = interest(prop.ChaincodeName, cc.called())
	return pr, nil
}

// chaincodeError is the unendorsed answer to a chaincode that returned an
// error status, as Fabric's endorser gives it: from 500 (shim.ERROR) up, with
// the response payload (proposal hash, the read-write set so far, no event)
// and the chaincode interest; from 400 to 499, the bare response. The payload
// is how a gateway tells a chaincode's error (reported as "chaincode response
// 500, <message>", gRPC Unknown on Evaluate, not retried on another peer) from
// the peer's own failures, which come without one.
func chaincodeError(prop *envelope.Proposal, resp *pb.Response, sim *ledger.TxSimulator, ccID *pb.ChaincodeID, cc *callees) (*pb.ProposalResponse, error) {
	if resp.Status < 500 {
		return &pb.ProposalResponse{Response: resp}, nil
	}
	results, err := simulationResults(sim)
	if err != nil {
		return nil, err
	}
	prp, err := envelope.ResponsePayload(prop, resp, results, nil, ccID)
	if err != nil {
		return nil, err
	}
	return &pb.ProposalResponse{Response: resp, Payload: prp, Interest: interest(prop.ChaincodeName, cc.called())}, nil
}

// systemChaincodeVersion is the version Fabric gives every system chaincode.
const systemChaincodeVersion = "syscc"

// simulationResults is the serialized read-write set of a simulation; nil
// for a channel-less proposal, which has no simulator.
func simulationResults(sim *ledger.TxSimulator) ([]byte, error) {
	if sim == nil {
		return nil, nil
	}
	rws, err := sim.Results()
	if err != nil {
		return nil, fmt.Errorf("simulation results: %w", err)
	}
	results, err := proto.Marshal(rws)
	if err != nil {
		return nil, fmt.Errorf("marshal simulation results: %w", err)
	}
	return results, nil
}

// interest is the ChaincodeInterest Fabric returns with an endorsement: the
// proposal's chaincode and every chaincode it called on the channel. Unlike
// Fabric, which derives it from the read-write set, collections and
// state-based endorsement keys are not reported (private data is not
// supported yet).
func interest(top string, called []string) *pb.ChaincodeInterest {
	ci := &pb.ChaincodeInterest{Chaincodes: []*pb.ChaincodeCall{{Name: top}}}
	for _, name := range called {
		if name != top {
			ci.Chaincodes = append(ci.Chaincodes, &pb.ChaincodeCall{Name: name})
		}
	}
	return ci
}

// initState is the part of a transaction simulator checkInit uses.
type initState interface {
	GetState(ns, key string) ([]byte, error)
	SetState(ns, key string, value []byte) error
}

// checkInit applies a definition's init-required rule as Fabric's
// ChaincodeSupport.CheckInvocation does: while the version in force has not
// been initialised, only an invocation marked IsInit may run (as the
// chaincode's Init, recording the version under InitializedKey in the same
// transaction); afterwards, or for a definition without the rule, IsInit is
// refused. It reports whether to run the chaincode's Init.
func checkInit(name string, def *lifecycle.ChaincodeDefinition, isInit bool, sim initState) (bool, error) {
	if !def.InitRequired {
		if isInit {
			return false, fmt.Errorf("chaincode '%s' does not require initialization but called as init", name)
		}
		return false, nil
	}
	done, err := sim.GetState(name, InitializedKey)
	if err != nil {
		return false, fmt.Errorf("read the initialization of chaincode %s: %w", name, err)
	}
	needs := string(done) != def.Version
	switch {
	case isInit && !needs:
		return false, fmt.Errorf("chaincode '%s' is already initialized but called as init", name)
	case !isInit && needs:
		return false, fmt.Errorf("chaincode '%s' has not been initialized for this version, must call as init first", name)
	case isInit:
		if err := sim.SetState(name, InitializedKey, []byte(def.Version)); err != nil {
			return false, fmt.Errorf("record the initialization of chaincode %s: %w", name, err)
		}
		return true, nil
	}
	return false, nil
}

// CheckACL evaluates the channel policy guarding resource (Fabric's ACL names,
// e.g. "peer/Propose"), or def when the channel names none.
func CheckACL(b *channelconfig.Bundle, resource, def string, signed []policy.SignedData) error {
	path := b.ACLPolicy(resource, def)
	p, err := b.Policies().Policy(path)
	if err != nil {
		return fmt.Errorf("access denied: %s: %w", resource, err)
	}
	if err := p.Evaluate(signed); err != nil {
		return fmt.Errorf("access denied: %s: %w", resource, err)
	}
	return nil
}

// simulator adapts the ledger's simulator to the chaincode runtime's interface
// (the two packages declare their iterator types independently).
type simulator struct{ *ledger.TxSimulator }

func (s simulator) GetStateRangeScanIterator(ns, start, end string) (chaincode.ResultsIterator, error) {
	return s.TxSimulator.GetStateRangeScanIterator(ns, start, end)
}

// GetHistoryForKey gives chaincode GetHistoryForKey access to the ledger's
// history index.
func (s simulator) GetHistoryForKey(ns, key string) (chaincode.HistoryIterator, error) {
	it, err := s.TxSimulator.GetHistoryForKey(ns, key)
	if err != nil {
		return nil, err
	}
	return it, nil
}

var (
	_ chaincode.TxSimulator    = simulator{}
	_ chaincode.HistoryQuerier = simulator{}
)
