package gateway

import (
	"context"
	"errors"

	"github.com/cairn-ledger/cairn/internal/envelope"
	gp "github.com/hyperledger/fabric-protos-go-apiv2/gateway"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/protoadapt"
)

// rpcError is a failure whose gRPC code, message and details must reach the
// client exactly as Fabric's gateway words them, because the SDKs show the
// message and details to applications and some tests match on them.
type rpcError struct {
	code    codes.Code
	msg     string
	details []*gp.ErrorDetail
}

func (e *rpcError) Error() string { return e.msg }

func newRPCError(code codes.Code, msg string, details ...*gp.ErrorDetail) error {
	return &rpcError{code: code, msg: msg, details: details}
}

func errorDetail(address, mspID, msg string) *gp.ErrorDetail {
	return &gp.ErrorDetail{Address: address, MspId: mspID, Message: msg}
}

// toStatus is the gateway service's one mapping from errors to gRPC statuses.
// Handlers return rpcErrors for every failure Fabric words specifically; the
// rest are classified by cause.
func toStatus(err error) error {
	if err == nil {
		return nil
	}
	var re *rpcError
	if errors.As(err, &re) {
		st := status.New(re.code, re.msg)
		if len(re.details) > 0 {
			msgs := make([]protoadapt.MessageV1, len(re.details))
			for i, d := range re.details {
				msgs[i] = d
			}
			if withDetails, derr := st.WithDetails(msgs...); derr == nil {
				st = withDetails
			}
		}
		return st.Err()
	}
	if _, ok := status.FromError(err); ok {
		return err
	}
	switch {
	case errors.Is(err, context.DeadlineExceeded):
		return status.Error(codes.DeadlineExceeded, err.Error())
	case errors.Is(err, context.Canceled):
		return status.Error(codes.Canceled, err.Error())
	case errors.Is(err, ErrChannelNotFound):
		return status.Error(codes.NotFound, err.Error())
	case errors.Is(err, envelope.ErrMalformed), errors.Is(err, envelope.ErrBadTxID):
		return status.Error(codes.InvalidArgument, err.Error())
	}
	return status.Error(codes.Unknown, err.Error())
}
