// Package envelope owns the Fabric transaction formats above the block: nonces and
// transaction IDs, signed envelopes, proposals, proposal responses and endorsed
// transactions — both building them (clients, endorsers, the gateway) and taking
// them apart with every field checked (endorsers, orderers, validators). All
// functions are pure and safe for concurrent use; none trusts its input.
package envelope

import (
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"time"

	cb "github.com/hyperledger/fabric-protos-go-apiv2/common"
	pb "github.com/hyperledger/fabric-protos-go-apiv2/peer"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// Signer is a signing identity: its serialized msp.SerializedIdentity and a
// signature function (SHA-256 ECDSA, low-S) over arbitrary messages.
type Signer interface {
	Serialize() []byte
	Sign(msg []byte) ([]byte, error)
}

// ErrMalformed marks input that does not decode into the expected structure.
var ErrMalformed = errors.New("malformed message")

// ErrBadTxID marks a transaction ID that is not SHA-256(nonce ‖ creator).
var ErrBadTxID = errors.New("transaction ID does not match nonce and creator")

// NonceSize is the size of the random nonce in every signature header, as Fabric's.
const NonceSize = 24

// NewNonce returns a fresh random nonce.
func NewNonce() ([]byte, error) {
	n := make([]byte, NonceSize)
	if _, err := rand.Read(n); err != nil {
		return nil, fmt.Errorf("read random nonce: %w", err)
	}
	return n, nil
}

// TxID is the transaction ID Fabric derives from a signature header: lowercase
// hex of SHA-256(nonce ‖ creator).
func TxID(nonce, creator []byte) string {
	h := sha256.New()
	h.Write(nonce)
	h.Write(creator)
	return hex.EncodeToString(h.Sum(nil))
}

// CheckTxID reports ErrBadTxID unless txID is derived from nonce and creator.
func CheckTxID(txID string, nonce, creator []byte) error {
	if want := TxID(nonce, creator); txID != want {
		return fmt.Errorf("%w: got %q, want %q", ErrBadTxID, txID, want)
	}
	return nil
}

func malformed(what string, err error) error {
	if err != nil {
		return fmt.Errorf("%w: %s: %v", ErrMalformed, what, err)
	}
	return fmt.Errorf("%w: %s", ErrMalformed, what)
}

// NewSignedEnvelope wraps a message in a payload with a fresh channel and
// signature header of the given type and signs it.
func NewSignedEnvelope(typ cb.HeaderType, channelID string, signer Signer, msg proto.Message) (*cb.Envelope, error) {
	data, err := proto.Marshal(msg)
	if err != nil {
		return nil, fmt.Errorf("marshal envelope data: %w", err)
	}
	nonce, err := NewNonce()
	if err != nil {
		return nil, err
	}
	creator := signer.Serialize()
	ch := &cb.ChannelHeader{
		Type:      int32(typ),
		ChannelId: channelID,
		TxId:      TxID(nonce, creator),
		Timestamp: timestamppb.Now(),
	}
	payload, err := proto.Marshal(&cb.Payload{
		Header: &cb.Header{
			ChannelHeader:   mustMarshal(ch),
			SignatureHeader: mustMarshal(&cb.SignatureHeader{Creator: creator, Nonce: nonce}),
		},
		Data: data,
	})
	if err != nil {
		return nil, fmt.Errorf("marshal payload: %w", err)
	}
	sig, err := signer.Sign(payload)
	if err != nil {
		return nil, fmt.Errorf("sign envelope: %w", err)
	}
	return &cb.Envelope{Payload: payload, Signature: sig}, nil
}

// Parsed is an envelope taken apart down to its headers.
type Parsed struct {
	Envelope        *cb.Envelope
	Payload         *cb.Payload
	ChannelHeader   *cb.ChannelHeader
	SignatureHeader *cb.SignatureHeader
}

// Parse decodes an envelope's payload and headers, checking that each exists.
// It does not verify the signature.
func Parse(env *cb.Envelope) (*Parsed, error) {
	if env == nil || len(env.Payload) == 0 {
		return nil, malformed("envelope has no payload", nil)
	}
	payload := &cb.Payload{}
	if err := proto.Unmarshal(env.Payload, payload); err != nil {
		return nil, malformed("payload", err)
	}
	if payload.Header == nil {
		return nil, malformed("payload has no header", nil)
	}
	ch := &cb.ChannelHeader{}
	if err := proto.Unmarshal(payload.Header.ChannelHeader, ch); err != nil {
		return nil, malformed("channel header", err)
	}
	sh := &cb.SignatureHeader{}
	if err := proto.Unmarshal(payload.Header.SignatureHeader, sh); err != nil {
		return nil, malformed("signature header", err)
	}
	return &Parsed{Envelope: env, Payload: payload, ChannelHeader: ch, SignatureHeader: sh}, nil
}

// ProposalHash is Fabric's hash binding a proposal response to its proposal:
// SHA-256(channel header ‖ signature header ‖ chaincode proposal payload without
// the transient map), so private transient data never reaches the ledger.
func ProposalHash(header *cb.Header, cpp *pb.ChaincodeProposalPayload) ([]byte, error) {
	stripped, err := proto.Marshal(&pb.ChaincodeProposalPayload{Input: cpp.GetInput()})
	if err != nil {
		return nil, fmt.Errorf("marshal proposal payload: %w", err)
	}
	h := sha256.New()
	h.Write(header.GetChannelHeader())
	h.Write(header.GetSignatureHeader())
	h.Write(stripped)
	return h.Sum(nil), nil
}

// NewProposal builds an endorser-transaction proposal that invokes chaincode
// with args on a channel, with a fresh nonce and the derived tx ID.
func NewProposal(channelID, chaincode string, args [][]byte, transient map[string][]byte, creator []byte) (*pb.Proposal, string, error) {
	return newProposal(channelID, chaincode, &pb.ChaincodeInput{Args: args}, transient, creator)
}

// NewInitProposal is NewProposal for the invocation that initialises a
// chaincode whose definition requires it (ChaincodeInput.IsInit, Fabric's
// `peer chaincode invoke --isInit`).
func NewInitProposal(channelID, chaincode string, args [][]byte, transient map[string][]byte, creator []byte) (*pb.Proposal, string, error) {
	return newProposal(channelID, chaincode, &pb.ChaincodeInput{Args: args, IsInit: true}, transient, creator)
}

func newProposal(channelID, chaincode string, input *pb.ChaincodeInput, transient map[string][]byte, creator []byte) (*pb.Proposal, string, error) {
	nonce, err := NewNonce()
	if err != nil {
		return nil, "", err
	}
	txID := TxID(nonce, creator)
	ext := &pb.ChaincodeHeaderExtension{ChaincodeId: &pb.ChaincodeID{Name: chaincode}}
	ch := &cb.ChannelHeader{
		Type:      int32(cb.HeaderType_ENDORSER_TRANSACTION),
		ChannelId: channelID,
		TxId:      txID,
		Timestamp: timestamppb.New(time.Now()),
		Extension: mustMarshal(ext),
	}
	spec := &pb.ChaincodeInvocationSpec{ChaincodeSpec: &pb.ChaincodeSpec{
		Type:        pb.ChaincodeSpec_GOLANG,
		ChaincodeId: &pb.ChaincodeID{Name: chaincode},
		Input:       input,
	}}
	cpp := &pb.ChaincodeProposalPayload{Input: mustMarshal(spec), TransientMap: transient}
	prop := &pb.Proposal{
		Header: mustMarshal(&cb.Header{
			ChannelHeader:   mustMarshal(ch),
			SignatureHeader: mustMarshal(&cb.SignatureHeader{Creator: creator, Nonce: nonce}),
		}),
		Payload: mustMarshal(cpp),
	}
	return prop, txID, nil
}

// SignProposal signs a proposal's bytes.
func SignProposal(prop *pb.Proposal, signer Signer) (*pb.SignedProposal, error) {
	raw, err := proto.Marshal(prop)
	if err != nil {
		return nil, fmt.Errorf("marshal proposal: %w", err)
	}
	sig, err := signer.Sign(raw)
	if err != nil {
		return nil, fmt.Errorf("sign proposal: %w", err)
	}
	return &pb.SignedProposal{ProposalBytes: raw, Signature: sig}, nil
}

// Proposal is a signed proposal taken apart and checked for shape.
type Proposal struct {
	Signed          *pb.SignedProposal
	Proposal        *pb.Proposal
	Header          *cb.Header
	ChannelHeader   *cb.ChannelHeader
	SignatureHeader *cb.SignatureHeader
	Payload         *pb.ChaincodeProposalPayload
	Spec            *pb.ChaincodeInvocationSpec
	// ChaincodeName is the chaincode the proposal invokes.
	ChaincodeName string
	// Input is the invocation's arguments (function name first).
	Input *pb.ChaincodeInput
}

// TxID is the proposal's transaction ID.
func (p *Proposal) TxID() string { return p.ChannelHeader.TxId }

// ChannelID is the channel the proposal targets ("" for channel-less system calls).
func (p *Proposal) ChannelID() string { return p.ChannelHeader.ChannelId }

// Creator is the serialized identity that signed the proposal.
func (p *Proposal) Creator() []byte { return p.SignatureHeader.Creator }

// Hash is the proposal hash endorsements bind to.
func (p *Proposal) Hash() ([]byte, error) { return ProposalHash(p.Header, p.Payload) }

// SignedData is the signature over the proposal, for policy evaluation.
func (p *Proposal) SignedData() (data, identity, signature []byte) {
	return p.Signed.ProposalBytes, p.SignatureHeader.Creator, p.Signed.Signature
}

// UnpackProposal decodes a signed proposal and checks it is a well-formed
// endorser transaction proposal with a tx ID derived from its nonce and creator.
// The signature itself is checked by the caller against the creator's MSP.
func UnpackProposal(sp *pb.SignedProposal) (*Proposal, error) {
	if sp == nil || len(sp.ProposalBytes) == 0 {
		return nil, malformed("signed proposal is empty", nil)
	}
	if len(sp.Signature) == 0 {
		return nil, malformed("signed proposal has no signature", nil)
	}
	prop := &pb.Proposal{}
	if err := proto.Unmarshal(sp.ProposalBytes, prop); err != nil {
		return nil, malformed("proposal", err)
	}
	hdr := &cb.Header{}
	if err := proto.Unmarshal(prop.Header, hdr); err != nil {
		return nil, malformed("proposal header", err)
	}
	ch := &cb.ChannelHeader{}
	if err := proto.Unmarshal(hdr.ChannelHeader, ch); err != nil {
		return nil, malformed("channel header", err)
	}
	if ch.Type != int32(cb.HeaderType_ENDORSER_TRANSACTION) && ch.Type != int32(cb.HeaderType_CONFIG) {
		return nil, malformed(fmt.Sprintf("proposal header type %s is not ENDORSER_TRANSACTION", cb.HeaderType(ch.Type)), nil)
	}
	sh := &cb.SignatureHeader{}
	if err := proto.Unmarshal(hdr.SignatureHeader, sh); err != nil {
		return nil, malformed("signature header", err)
	}
	if len(sh.Creator) == 0 {
		return nil, malformed("signature header has no creator", nil)
	}
	if len(sh.Nonce) == 0 {
		return nil, malformed("signature header has no nonce", nil)
	}
	if err := CheckTxID(ch.TxId, sh.Nonce, sh.Creator); err != nil {
		return nil, err
	}
	ext := &pb.ChaincodeHeaderExtension{}
	if err := proto.Unmarshal(ch.Extension, ext); err != nil {
		return nil, malformed("chaincode header extension", err)
	}
	cpp := &pb.ChaincodeProposalPayload{}
	if err := proto.Unmarshal(prop.Payload, cpp); err != nil {
		return nil, malformed("chaincode proposal payload", err)
	}
	spec := &pb.ChaincodeInvocationSpec{}
	if err := proto.Unmarshal(cpp.Input, spec); err != nil {
		return nil, malformed("chaincode invocation spec", err)
	}
	name := ext.GetChaincodeId().GetName()
	if name == "" {
		name = spec.GetChaincodeSpec().GetChaincodeId().GetName()
	}
	if name == "" {
		return nil, malformed("proposal names no chaincode", nil)
	}
	input := spec.GetChaincodeSpec().GetInput()
	if input == nil {
		input = &pb.ChaincodeInput{}
	}
	return &Proposal{
		Signed: sp, Proposal: prop, Header: hdr, ChannelHeader: ch, SignatureHeader: sh,
		Payload: cpp, Spec: spec, ChaincodeName: name, Input: input,
	}, nil
}

// ResponsePayload is the serialized ProposalResponsePayload of a simulation:
// the proposal's hash and, as its extension, the ChaincodeAction holding the
// read-write set, the chaincode event (nil for none), the chaincode's response
// and its ID.
func ResponsePayload(p *Proposal, resp *pb.Response, results []byte, event *pb.ChaincodeEvent, ccID *pb.ChaincodeID) ([]byte, error) {
	hash, err := p.Hash()
	if err != nil {
		return nil, err
	}
	action := &pb.ChaincodeAction{Results: results, Response: resp, ChaincodeId: ccID}
	if event != nil {
		action.Events = mustMarshal(event)
	}
	prp, err := proto.Marshal(&pb.ProposalResponsePayload{ProposalHash: hash, Extension: mustMarshal(action)})
	if err != nil {
		return nil, fmt.Errorf("marshal proposal response payload: %w", err)
	}
	return prp, nil
}

// Endorse builds and signs a proposal response: the endorser's signature covers
// the response payload (ResponsePayload) followed by its serialized identity,
// as Fabric verifies.
func Endorse(p *Proposal, signer Signer, resp *pb.Response, results []byte, event *pb.ChaincodeEvent, ccID *pb.ChaincodeID) (*pb.ProposalResponse, error) {
	prp, err := ResponsePayload(p, resp, results, event, ccID)
	if err != nil {
		return nil, err
	}
	endorser := signer.Serialize()
	sig, err := signer.Sign(append(append([]byte{}, prp...), endorser...))
	if err != nil {
		return nil, fmt.Errorf("sign endorsement: %w", err)
	}
	return &pb.ProposalResponse{
		Version:     1,
		Timestamp:   timestamppb.Now(),
		Response:    resp,
		Payload:     prp,
		Endorsement: &pb.Endorsement{Endorser: endorser, Signature: sig},
	}, nil
}

// NewTransaction assembles the unsigned transaction envelope from a proposal and
// its endorsements, as the gateway returns it from Endorse for the client to
// sign. All responses must carry the same payload and a successful status.
func NewTransaction(p *Proposal, responses []*pb.ProposalResponse) (*cb.Envelope, error) {
	if len(responses) == 0 {
		return nil, errors.New("no proposal responses to assemble")
	}
	first := responses[0]
	endorsements := make([]*pb.Endorsement, 0, len(responses))
	for i, r := range responses {
		if r.GetResponse().GetStatus() < 200 || r.GetResponse().GetStatus() >= 400 {
			return nil, fmt.Errorf("proposal response %d has status %d: %s", i, r.GetResponse().GetStatus(), r.GetResponse().GetMessage())
		}
		if !bytes.Equal(r.Payload, first.Payload) {
			return nil, fmt.Errorf("proposal response %d differs from the first: endorsers computed different results", i)
		}
		if r.Endorsement == nil {
			return nil, fmt.Errorf("proposal response %d carries no endorsement", i)
		}
		endorsements = append(endorsements, r.Endorsement)
	}
	actionPayload := &pb.ChaincodeActionPayload{
		ChaincodeProposalPayload: mustMarshal(&pb.ChaincodeProposalPayload{Input: p.Payload.Input}),
		Action:                   &pb.ChaincodeEndorsedAction{ProposalResponsePayload: first.Payload, Endorsements: endorsements},
	}
	tx := &pb.Transaction{Actions: []*pb.TransactionAction{{
		Header:  p.Header.SignatureHeader,
		Payload: mustMarshal(actionPayload),
	}}}
	payload, err := proto.Marshal(&cb.Payload{Header: p.Header, Data: mustMarshal(tx)})
	if err != nil {
		return nil, fmt.Errorf("marshal transaction payload: %w", err)
	}
	return &cb.Envelope{Payload: payload}, nil
}

// Transaction is an endorser transaction taken apart for validation.
type Transaction struct {
	*Parsed
	Tx                      *pb.Transaction
	ActionPayload           *pb.ChaincodeActionPayload
	ProposalResponsePayload *pb.ProposalResponsePayload
	Action                  *pb.ChaincodeAction
	ProposalPayload         *pb.ChaincodeProposalPayload
}

// Endorsements are the endorsements of the transaction's (single) action.
func (t *Transaction) Endorsements() []*pb.Endorsement {
	return t.ActionPayload.GetAction().GetEndorsements()
}

// Event is the chaincode event of the transaction, nil if none.
func (t *Transaction) Event() (*pb.ChaincodeEvent, error) {
	if len(t.Action.Events) == 0 {
		return nil, nil
	}
	ev := &pb.ChaincodeEvent{}
	if err := proto.Unmarshal(t.Action.Events, ev); err != nil {
		return nil, malformed("chaincode event", err)
	}
	return ev, nil
}

// UnpackTransaction decodes an endorser transaction down to its chaincode action.
// Fabric transactions carry exactly one action.
func UnpackTransaction(parsed *Parsed) (*Transaction, error) {
	tx := &pb.Transaction{}
	if err := proto.Unmarshal(parsed.Payload.Data, tx); err != nil {
		return nil, malformed("transaction", err)
	}
	if len(tx.Actions) != 1 {
		return nil, malformed(fmt.Sprintf("transaction has %d actions, want 1", len(tx.Actions)), nil)
	}
	actionPayload := &pb.ChaincodeActionPayload{}
	if err := proto.Unmarshal(tx.Actions[0].Payload, actionPayload); err != nil {
		return nil, malformed("chaincode action payload", err)
	}
	if actionPayload.Action == nil {
		return nil, malformed("chaincode action payload has no action", nil)
	}
	prp := &pb.ProposalResponsePayload{}
	if err := proto.Unmarshal(actionPayload.Action.ProposalResponsePayload, prp); err != nil {
		return nil, malformed("proposal response payload", err)
	}
	action := &pb.ChaincodeAction{}
	if err := proto.Unmarshal(prp.Extension, action); err != nil {
		return nil, malformed("chaincode action", err)
	}
	cpp := &pb.ChaincodeProposalPayload{}
	if err := proto.Unmarshal(actionPayload.ChaincodeProposalPayload, cpp); err != nil {
		return nil, malformed("chaincode proposal payload", err)
	}
	return &Transaction{Parsed: parsed, Tx: tx, ActionPayload: actionPayload, ProposalResponsePayload: prp, Action: action, ProposalPayload: cpp}, nil
}

// mustMarshal marshals messages this package builds itself from well-typed
// values; protobuf marshalling of such values cannot fail.
func mustMarshal(m proto.Message) []byte {
	b, err := proto.Marshal(m)
	if err != nil {
		panic(fmt.Sprintf("envelope: marshal %T: %v", m, err))
	}
	return b
}
