package gateway

import (
	"context"
	"fmt"
	"log/slog"

	"github.com/hyperledger/fabric-protos-go-apiv2/common"
	gp "github.com/hyperledger/fabric-protos-go-apiv2/gateway"
	"google.golang.org/grpc/codes"
)

func (s *Server) submit(ctx context.Context, req *gp.SubmitRequest) (*gp.SubmitResponse, error) {
	if req == nil {
		return nil, newRPCError(codes.InvalidArgument, "a submit request is required")
	}
	txn := req.GetPreparedTransaction()
	if txn == nil {
		return nil, newRPCError(codes.InvalidArgument, "a prepared transaction is required")
	}
	if len(txn.GetSignature()) == 0 {
		return nil, newRPCError(codes.InvalidArgument, "prepared transaction must be signed")
	}
	addresses, roots, err := s.cfg.Channels.OrdererEndpoints(req.GetChannelId())
	if err != nil {
		return nil, newRPCError(codes.FailedPrecondition, err.Error())
	}
	if len(addresses) == 0 {
		return nil, newRPCError(codes.Unavailable, "no orderer nodes available")
	}
	// Per-transaction logging is at Debug (as in Fabric's gateway) and the
	// logger with the transaction's attributes is built only for a message
	// that will be written: at Info, one line per submitted transaction cost
	// the peer a JSON encoding and a write(2) on the hot path.
	log := func() *slog.Logger { return s.log.With("channel", req.GetChannelId(), "txID", req.GetTransactionId()) }

	// Raft needs one orderer to accept the transaction. The raft leader,
	// when a Cairn orderer said which one leads, goes first: a follower would
	// only forward to it. The others follow in random order, as in Fabric,
	// so that gateways spread the load of a leaderless or Fabric service.
	channel := req.GetChannelId()
	order := s.orderers.Order(channel, addresses, roots, s.cfg.Perm(len(addresses)))
	var details []*gp.ErrorDetail
	for _, i := range order {
		address := addresses[i]
		if s.log.Enabled(ctx, slog.LevelDebug) {
			log().Debug("sending transaction to orderer", "endpoint", address)
		}
		bctx, cancel := context.WithTimeout(ctx, s.cfg.BroadcastTimeout)
		resp, err := s.orderers.Broadcast(bctx, address, roots, txn)
		cancel()
		if ctx.Err() != nil {
			log().Warn("submit call timed out while broadcasting to ordering service")
			return nil, newRPCError(codes.DeadlineExceeded, "submit timeout expired while broadcasting to ordering service")
		}
		if err != nil {
			s.orderers.ForgetLeader(channel, address)
			log().Warn("error sending transaction to orderer", "endpoint", address, "err", err)
			details = append(details, errorDetail(address, "", err.Error()))
			continue
		}
		st := resp.GetStatus()
		if st == common.Status_SUCCESS {
			return &gp.SubmitResponse{}, nil
		}
		msg := fmt.Sprintf("received unsuccessful response from orderer: status=%s, info=%s", common.Status_name[int32(st)], resp.GetInfo())
		log().Warn("unsuccessful response sending transaction to orderer", "endpoint", address, "status", st, "info", resp.GetInfo())
		if st >= 400 && st < 500 {
			// The transaction itself was refused; another orderer would refuse it too.
			return nil, newRPCError(codes.Aborted, msg)
		}
		// Fabric retries 5xx without recording them; recording them tells the
		// client why no orderer took the transaction. An orderer unable to
		// take it may have lost its leadership.
		s.orderers.ForgetLeader(channel, address)
		details = append(details, errorDetail(address, "", msg))
	}
	return nil, newRPCError(codes.Unavailable, "no orderers could successfully process transaction", details...)
}
