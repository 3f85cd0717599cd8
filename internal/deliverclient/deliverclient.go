// Package deliverclient owns the simplest client of the Deliver protocol: send
// one signed seek request and hand every block to a callback until the server
// answers with a status. Load generators and tests use it; the peer's block
// puller and the orderer's replicator keep their own streams (failover,
// prefetch, verification). Safe for concurrent use; it holds no state.
package deliverclient

import (
	"context"
	"fmt"

	cb "github.com/hyperledger/fabric-protos-go-apiv2/common"
	ab "github.com/hyperledger/fabric-protos-go-apiv2/orderer"
	"google.golang.org/grpc"

	"github.com/cairn-ledger/cairn/internal/envelope"
)

// Seek asks conn's AtomicBroadcast Deliver for the blocks seek names on
// channel, signed by signer, and calls fn for each block in order. It returns
// nil when the server ends with SUCCESS, an error naming any other status, or
// the stream's error (ctx's when it is cancelled).
func Seek(ctx context.Context, conn grpc.ClientConnInterface, channel string, signer envelope.Signer, seek *ab.SeekInfo, fn func(*cb.Block)) error {
	env, err := envelope.NewSignedEnvelope(cb.HeaderType_DELIVER_SEEK_INFO, channel, signer, seek)
	if err != nil {
		return err
	}
	stream, err := ab.NewAtomicBroadcastClient(conn).Deliver(ctx)
	if err != nil {
		return fmt.Errorf("open deliver stream: %w", err)
	}
	if err := stream.Send(env); err != nil {
		return fmt.Errorf("send seek request: %w", err)
	}
	for {
		resp, err := stream.Recv()
		if err != nil {
			return err
		}
		switch r := resp.Type.(type) {
		case *ab.DeliverResponse_Block:
			fn(r.Block)
		case *ab.DeliverResponse_Status:
			if r.Status != cb.Status_SUCCESS {
				return fmt.Errorf("deliver answered %s", r.Status)
			}
			return nil
		}
	}
}
