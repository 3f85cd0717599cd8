package ccdeploy

import (
	"context"
	"errors"
	"fmt"

	cb "github.com/hyperledger/fabric-protos-go-apiv2/common"
	gp "github.com/hyperledger/fabric-protos-go-apiv2/gateway"
	pb "github.com/hyperledger/fabric-protos-go-apiv2/peer"
	"google.golang.org/protobuf/proto"

	"github.com/cairn-ledger/cairn/internal/envelope"
)

const lifecycleCC = "_lifecycle"

// StatusError is a non-success response of a peer to a proposal.
type StatusError struct {
	Peer    string
	Fn      string
	Status  int32
	Message string
}

func (e *StatusError) Error() string {
	return fmt.Sprintf("%s on %s: status %d: %s", e.Fn, e.Peer, e.Status, e.Message)
}

// isNotFound reports a 404 answer (_lifecycle's "namespace is not defined").
func isNotFound(err error) bool {
	var se *StatusError
	return errors.As(err, &se) && se.Status == 404
}

// signedProposal builds and signs a proposal for chaincode cc on channel
// ("" for channel-less calls such as installs).
func signedProposal(signer envelope.Signer, channel, cc string, args ...[]byte) (*pb.SignedProposal, string, error) {
	prop, txID, err := envelope.NewProposal(channel, cc, args, nil, signer.Serialize())
	if err != nil {
		return nil, "", fmt.Errorf("build proposal: %w", err)
	}
	sp, err := envelope.SignProposal(prop, signer)
	if err != nil {
		return nil, "", fmt.Errorf("sign proposal: %w", err)
	}
	return sp, txID, nil
}

// endorse sends a signed proposal to one peer and checks its status.
func endorse(ctx context.Context, p Peer, fn string, sp *pb.SignedProposal) (*pb.ProposalResponse, error) {
	resp, err := pb.NewEndorserClient(p.Conn).ProcessProposal(ctx, sp)
	if err != nil {
		return nil, fmt.Errorf("%s on %s: %w", fn, p.Name, err)
	}
	if st := resp.GetResponse().GetStatus(); st < 200 || st >= 400 {
		return nil, &StatusError{Peer: p.Name, Fn: fn, Status: st, Message: resp.GetResponse().GetMessage()}
	}
	return resp, nil
}

// call evaluates a system chaincode function on one peer as signer and
// decodes the payload into out (when not nil). channel is "" for
// channel-less functions.
func call(ctx context.Context, p Peer, signer envelope.Signer, channel, cc, fn string, arg, out proto.Message) error {
	args := [][]byte{[]byte(fn)}
	if arg != nil {
		raw, err := proto.Marshal(arg)
		if err != nil {
			return fmt.Errorf("marshal %s arguments: %w", fn, err)
		}
		args = append(args, raw)
	}
	return callRaw(ctx, p, signer, channel, cc, fn, args, out)
}

func callRaw(ctx context.Context, p Peer, signer envelope.Signer, channel, cc, fn string, args [][]byte, out proto.Message) error {
	sp, _, err := signedProposal(signer, channel, cc, args...)
	if err != nil {
		return err
	}
	resp, err := endorse(ctx, p, fn, sp)
	if err != nil {
		return err
	}
	if out == nil {
		return nil
	}
	if err := proto.Unmarshal(resp.GetResponse().GetPayload(), out); err != nil {
		return fmt.Errorf("decode %s result from %s: %w", fn, p.Name, err)
	}
	return nil
}

// Committed transaction outcome.
type txResult struct {
	TxID  string
	Block uint64
}

// submit runs a _lifecycle transaction on channel: signed by signer,
// endorsed by every peer in endorsers (all must agree), sent to the
// ordering service through via's gateway, and waited for until it commits
// valid.
func submit(ctx context.Context, signer envelope.Signer, channel, fn string, arg proto.Message, endorsers []Peer, via Peer) (txResult, error) {
	raw, err := proto.Marshal(arg)
	if err != nil {
		return txResult{}, fmt.Errorf("marshal %s arguments: %w", fn, err)
	}
	sp, txID, err := signedProposal(signer, channel, lifecycleCC, []byte(fn), raw)
	if err != nil {
		return txResult{}, err
	}
	responses := make([]*pb.ProposalResponse, 0, len(endorsers))
	for _, p := range endorsers {
		resp, err := endorse(ctx, p, fn, sp)
		if err != nil {
			return txResult{}, fmt.Errorf("endorse: %w", err)
		}
		responses = append(responses, resp)
	}
	unpacked, err := envelope.UnpackProposal(sp)
	if err != nil {
		return txResult{}, err
	}
	env, err := envelope.NewTransaction(unpacked, responses)
	if err != nil {
		return txResult{}, fmt.Errorf("assemble %s transaction: %w", fn, err)
	}
	if env.Signature, err = signer.Sign(env.Payload); err != nil {
		return txResult{}, fmt.Errorf("sign %s transaction: %w", fn, err)
	}
	gw := gp.NewGatewayClient(via.Conn)
	if _, err := gw.Submit(ctx, &gp.SubmitRequest{TransactionId: txID, ChannelId: channel, PreparedTransaction: env}); err != nil {
		return txResult{}, fmt.Errorf("submit %s transaction %s through %s: %w", fn, txID, via.Name, err)
	}
	req, err := proto.Marshal(&gp.CommitStatusRequest{TransactionId: txID, ChannelId: channel, Identity: signer.Serialize()})
	if err != nil {
		return txResult{}, err
	}
	sig, err := signer.Sign(req)
	if err != nil {
		return txResult{}, fmt.Errorf("sign commit status request: %w", err)
	}
	st, err := gw.CommitStatus(ctx, &gp.SignedCommitStatusRequest{Request: req, Signature: sig})
	if err != nil {
		return txResult{}, fmt.Errorf("commit status of %s transaction %s: %w", fn, txID, err)
	}
	if st.Result != pb.TxValidationCode_VALID {
		return txResult{}, fmt.Errorf("%s transaction %s committed in block %d with status %s", fn, txID, st.BlockNumber, st.Result)
	}
	return txResult{TxID: txID, Block: st.BlockNumber}, nil
}

// height asks a peer for its ledger height on channel (qscc GetChainInfo).
func height(ctx context.Context, p Peer, signer envelope.Signer, channel string) (uint64, error) {
	ci := &cb.BlockchainInfo{}
	err := callRaw(ctx, p, signer, channel, "qscc", "GetChainInfo", [][]byte{[]byte("GetChainInfo"), []byte(channel)}, ci)
	if err != nil {
		return 0, err
	}
	return ci.Height, nil
}
