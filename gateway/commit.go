package gateway

import (
	"context"
	"errors"
	"fmt"

	"github.com/cairn-ledger/cairn/gateway/internal/ccevents"
	"github.com/cairn-ledger/cairn/internal/policy"
	gp "github.com/hyperledger/fabric-protos-go-apiv2/gateway"
	ab "github.com/hyperledger/fabric-protos-go-apiv2/orderer"
	"github.com/hyperledger/fabric-protos-go-apiv2/peer"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/proto"
)

func (s *Server) commitStatus(ctx context.Context, signed *gp.SignedCommitStatusRequest) (*gp.CommitStatusResponse, error) {
	if len(signed.GetRequest()) == 0 {
		return nil, newRPCError(codes.InvalidArgument, "a commit status request is required")
	}
	req := &gp.CommitStatusRequest{}
	if err := proto.Unmarshal(signed.GetRequest(), req); err != nil {
		return nil, newRPCError(codes.InvalidArgument, fmt.Sprintf("invalid status request: %v", err))
	}
	switch {
	case req.GetIdentity() == nil:
		return nil, newRPCError(codes.InvalidArgument, "no identity provided")
	case req.GetChannelId() == "":
		return nil, newRPCError(codes.InvalidArgument, "no channel ID provided")
	case req.GetTransactionId() == "":
		return nil, newRPCError(codes.InvalidArgument, "transaction ID should not be empty")
	}
	sd := []policy.SignedData{{Data: signed.GetRequest(), Identity: req.GetIdentity(), Signature: signed.GetSignature()}}
	if err := s.cfg.Channels.CheckACL(req.GetChannelId(), ResourceCommitStatus, sd); err != nil {
		return nil, newRPCError(codes.PermissionDenied, err.Error())
	}
	ledger, err := s.cfg.Channels.Ledger(req.GetChannelId())
	if err != nil {
		// Fabric reports lookup failures here as Aborted.
		return nil, newRPCError(codes.Aborted, err.Error())
	}
	if s.cfg.CommitStatusTimeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, s.cfg.CommitStatusTimeout)
		defer cancel()
	}
	txID := req.GetTransactionId()
	code, blockNum, err := ledger.WaitTxValidationCode(ctx, txID)
	if err != nil {
		if ctx.Err() != nil {
			return nil, fmt.Errorf("wait for transaction %s: %w", txID, err)
		}
		return nil, newRPCError(codes.Aborted, fmt.Sprintf("look up transaction %s: %v", txID, err))
	}
	return &gp.CommitStatusResponse{Result: code, BlockNumber: blockNum}, nil
}

func (s *Server) chaincodeEvents(signed *gp.SignedChaincodeEventsRequest, stream grpc.ServerStreamingServer[gp.ChaincodeEventsResponse]) error {
	if len(signed.GetRequest()) == 0 {
		return newRPCError(codes.InvalidArgument, "a chaincode events request is required")
	}
	req := &gp.ChaincodeEventsRequest{}
	if err := proto.Unmarshal(signed.GetRequest(), req); err != nil {
		return newRPCError(codes.InvalidArgument, fmt.Sprintf("invalid chaincode events request: %v", err))
	}
	sd := []policy.SignedData{{Data: signed.GetRequest(), Identity: req.GetIdentity(), Signature: signed.GetSignature()}}
	if err := s.cfg.Channels.CheckACL(req.GetChannelId(), ResourceChaincodeEvents, sd); err != nil {
		return newRPCError(codes.PermissionDenied, err.Error())
	}
	ledger, err := s.cfg.Channels.Ledger(req.GetChannelId())
	if err != nil {
		return newRPCError(codes.NotFound, err.Error())
	}
	next, err := eventsStart(ledger, req)
	if err != nil {
		return err
	}
	// Events up to and including AfterTransactionId in the first block were
	// already seen by the client (a checkpoint); skip them. Unlike Fabric, whose
	// matcher would skip every later event if the transaction is not in the
	// start block, the skip applies to the start block only.
	skipUntil := req.GetAfterTransactionId()
	ctx := stream.Context()
	for {
		if next >= ledger.Height() {
			if err := ledger.Wait(ctx, next); err != nil {
				if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
					return err
				}
				return newRPCError(codes.Aborted, err.Error())
			}
		}
		b, err := ledger.Block(next)
		if err != nil {
			return newRPCError(codes.Aborted, fmt.Sprintf("read block %d: %v", next, err))
		}
		all, err := ccevents.FromBlock(b)
		if err != nil {
			return newRPCError(codes.Aborted, err.Error())
		}
		if skipUntil != "" {
			for i, ev := range all {
				if ev.GetTxId() == skipUntil {
					all = all[i+1:]
					break
				}
			}
			skipUntil = ""
		}
		var events []*peer.ChaincodeEvent
		for _, ev := range all {
			if ev.GetChaincodeId() == req.GetChaincodeId() {
				events = append(events, ev)
			}
		}
		if len(events) > 0 {
			if err := stream.Send(&gp.ChaincodeEventsResponse{Events: events, BlockNumber: next}); err != nil {
				return fmt.Errorf("send events of block %d: %w", next, err)
			}
		}
		next++
	}
}

// eventsStart is the first block to read events from: the block holding
// AfterTransactionId if this peer has it, else the requested start position
// (NextCommit, the default, being the next block to commit).
func eventsStart(ledger Ledger, req *gp.ChaincodeEventsRequest) (uint64, error) {
	if txID := req.GetAfterTransactionId(); txID != "" {
		if _, n, found, err := ledger.TxValidationCode(txID); err == nil && found {
			return n, nil
		}
	}
	switch pos := req.GetStartPosition().GetType().(type) {
	case nil, *ab.SeekPosition_NextCommit:
		return ledger.Height(), nil
	case *ab.SeekPosition_Specified:
		return pos.Specified.GetNumber(), nil
	case *ab.SeekPosition_Oldest:
		// Not accepted by Fabric's gateway; harmless to support.
		return 0, nil
	case *ab.SeekPosition_Newest:
		if h := ledger.Height(); h > 0 {
			return h - 1, nil
		}
		return 0, nil
	default:
		return 0, newRPCError(codes.InvalidArgument, fmt.Sprintf("invalid start position type: %T", pos))
	}
}
