// Package deliver owns the peer's Deliver gRPC service (protos.Deliver): full
// blocks (Deliver), filtered blocks (DeliverFiltered) and blocks with private
// data (DeliverWithPrivateData) read from the committed ledger of a channel, for
// seek requests as Fabric's common/deliver handles them, with the same status
// replies (BAD_REQUEST, NOT_FOUND, FORBIDDEN, SUCCESS).
//
// Concurrency: a *Server is safe for concurrent use; each stream is served on
// the gRPC handler's goroutine and starts no goroutines of its own. A stream
// waiting for blocks ends when its client goes away.
package deliver

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"time"

	"github.com/cairn-ledger/cairn/internal/block"
	"github.com/cairn-ledger/cairn/internal/policy"
	"github.com/hyperledger/fabric-protos-go-apiv2/common"
	ab "github.com/hyperledger/fabric-protos-go-apiv2/orderer"
	"github.com/hyperledger/fabric-protos-go-apiv2/peer"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/proto"
)

// Ledger is the committed chain of one channel as the deliver service reads
// it. Implementations must be comparable (a pointer, typically): the server
// tells ledgers apart with == to share the responses built for their blocks.
type Ledger interface {
	Height() uint64
	Block(n uint64) (*common.Block, error)
	Wait(ctx context.Context, n uint64) error // returns when Height() > n, or ctx.Err()
}

// Channels resolves the channels this peer hosts and their access control.
type Channels interface {
	// Ledger returns the channel's ledger; any error means the channel is
	// unknown to this peer (NOT_FOUND).
	Ledger(channelID string) (Ledger, error)
	// CheckACL evaluates the channel's policy for resource against signatures.
	CheckACL(channelID, resource string, signed []policy.SignedData) error
}

// ACL resources, named as in Fabric's core/aclmgmt/resources.
const (
	ResourceBlock         = "event/Block"
	ResourceFilteredBlock = "event/FilteredBlock"
)

// DefaultTimeWindow is how far a request's timestamp may be from the peer's
// clock, as Fabric's peer.authentication.timewindow.
const DefaultTimeWindow = 15 * time.Minute

// Config configures a Server. Channels is required.
type Config struct {
	Channels Channels
	// Logger receives the service's logs; nil discards them.
	Logger *slog.Logger
	// TimeWindow bounds the skew between a request's timestamp and Now.
	TimeWindow time.Duration
	// Now is the clock; nil uses time.Now.
	Now func() time.Time
}

// Server implements peer.DeliverServer.
type Server struct {
	peer.UnimplementedDeliverServer
	cfg Config
	log *slog.Logger
	// filtered is shared by the DeliverFiltered streams.
	filtered shared
}

var _ peer.DeliverServer = (*Server)(nil)

// New returns a deliver server.
func New(cfg Config) *Server {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.TimeWindow <= 0 {
		cfg.TimeWindow = DefaultTimeWindow
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	return &Server{cfg: cfg, log: cfg.Logger}
}

type stream = grpc.BidiStreamingServer[common.Envelope, peer.DeliverResponse]

// blockSender turns one committed block into the response a stream type
// sends. With cache set, the streams of that type share their responses.
type blockSender struct {
	build func(b *common.Block) (*peer.DeliverResponse, error)
	cache *shared
}

// Deliver streams full blocks.
func (s *Server) Deliver(srv stream) error {
	return s.handle(srv, ResourceBlock, blockSender{build: func(b *common.Block) (*peer.DeliverResponse, error) {
		return &peer.DeliverResponse{Type: &peer.DeliverResponse_Block{Block: b}}, nil
	}})
}

// DeliverFiltered streams filtered blocks: transaction IDs, types, validation
// codes and chaincode events without their payloads.
func (s *Server) DeliverFiltered(srv stream) error {
	return s.handle(srv, ResourceFilteredBlock, blockSender{build: func(b *common.Block) (*peer.DeliverResponse, error) {
		fb, err := FilterBlock(b)
		if err != nil {
			return nil, err
		}
		return &peer.DeliverResponse{Type: &peer.DeliverResponse_FilteredBlock{FilteredBlock: fb}}, nil
	}, cache: &s.filtered})
}

// DeliverWithPrivateData streams blocks with the private data the client may
// read. Cairn's walking skeleton has no private data store yet, so the map is
// always empty.
func (s *Server) DeliverWithPrivateData(srv stream) error {
	return s.handle(srv, ResourceBlock, blockSender{build: func(b *common.Block) (*peer.DeliverResponse, error) {
		return &peer.DeliverResponse{Type: &peer.DeliverResponse_BlockAndPrivateData{
			BlockAndPrivateData: &peer.BlockAndPrivateData{Block: b},
		}}, nil
	}})
}

// handle serves seek requests on one stream until the client hangs up or a
// request ends with a status other than SUCCESS, as Fabric's deliver handler.
func (s *Server) handle(srv stream, resource string, send blockSender) error {
	for {
		env, err := srv.Recv()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
		st, err := s.deliverBlocks(srv, resource, env, send)
		if err != nil {
			return err
		}
		err = srv.Send(&peer.DeliverResponse{Type: &peer.DeliverResponse_Status{Status: st}})
		if st != common.Status_SUCCESS || err != nil {
			return err
		}
	}
}

// deliverBlocks serves one seek request. A non-nil error ends the stream
// without a status reply (the client went away or a send failed).
func (s *Server) deliverBlocks(srv stream, resource string, env *common.Envelope, send blockSender) (common.Status, error) {
	ctx := srv.Context()
	req, st := s.parseRequest(env)
	if st != common.Status_SUCCESS {
		return st, nil
	}
	log := s.log.With("channel", req.channelID)
	ledger, err := s.cfg.Channels.Ledger(req.channelID)
	if err != nil {
		log.Debug("rejecting deliver: channel not found", "err", err)
		return common.Status_NOT_FOUND, nil
	}
	if err := s.cfg.Channels.CheckACL(req.channelID, resource, req.signed); err != nil {
		log.Warn("client authorization revoked for deliver request", "resource", resource, "err", err)
		return common.Status_FORBIDDEN, nil
	}
	seek := &ab.SeekInfo{}
	if err := proto.Unmarshal(req.data, seek); err != nil {
		log.Warn("malformed seek info", "err", err)
		return common.Status_BAD_REQUEST, nil
	}
	if seek.GetStart() == nil || seek.GetStop() == nil {
		log.Warn("seek info without start or stop")
		return common.Status_BAD_REQUEST, nil
	}

	height := ledger.Height()
	var next uint64
	switch pos := seek.Start.GetType().(type) {
	case *ab.SeekPosition_Oldest:
		next = 0
	case *ab.SeekPosition_Newest:
		next = last(height)
	case *ab.SeekPosition_Specified:
		next = pos.Specified.GetNumber()
	case *ab.SeekPosition_NextCommit:
		next = height
	default:
		log.Warn("seek info with unknown start type")
		return common.Status_BAD_REQUEST, nil
	}
	var stop uint64
	switch pos := seek.Stop.GetType().(type) {
	case *ab.SeekPosition_Oldest:
		stop = next
	case *ab.SeekPosition_Newest:
		// Seeking only the newest block must send exactly one block, even if
		// another commits meanwhile.
		if proto.Equal(seek.Start, seek.Stop) {
			stop = next
		} else {
			stop = last(ledger.Height())
		}
	case *ab.SeekPosition_Specified:
		stop = pos.Specified.GetNumber()
		if stop < next {
			log.Warn("seek info with start after stop", "start", next, "stop", stop)
			return common.Status_BAD_REQUEST, nil
		}
	case *ab.SeekPosition_NextCommit:
		stop = height
	default:
		log.Warn("seek info with unknown stop type")
		return common.Status_BAD_REQUEST, nil
	}

	for {
		if seek.Behavior == ab.SeekInfo_FAIL_IF_NOT_READY && next >= ledger.Height() {
			return common.Status_NOT_FOUND, nil
		}
		if next >= ledger.Height() {
			if err := ledger.Wait(ctx, next); err != nil {
				return common.Status_INTERNAL_SERVER_ERROR, fmt.Errorf("wait for block %d: %w", next, err)
			}
		}
		resp, config, st, err := s.response(ledger, next, send, log)
		if st != common.Status_SUCCESS || err != nil {
			return st, err
		}
		// A config block may change who may read the channel: check again, as
		// Fabric's session access control does on config sequence changes.
		if config {
			if err := s.cfg.Channels.CheckACL(req.channelID, resource, req.signed); err != nil {
				log.Warn("client authorization revoked for deliver request", "resource", resource, "err", err)
				return common.Status_FORBIDDEN, nil
			}
		}
		if err := srv.Send(resp); err != nil {
			return common.Status_INTERNAL_SERVER_ERROR, fmt.Errorf("send block %d: %w", next, err)
		}
		if next == stop {
			return common.Status_SUCCESS, nil
		}
		next++
	}
}

// response is what a stream of send's type sends for committed block n, and
// whether that block is a config block; from send's shared cache when another
// stream built it already.
func (s *Server) response(ledger Ledger, n uint64, send blockSender, log *slog.Logger) (*peer.DeliverResponse, bool, common.Status, error) {
	if send.cache != nil {
		if resp, config, ok := send.cache.get(ledger, n); ok {
			return resp, config, common.Status_SUCCESS, nil
		}
	}
	b, err := ledger.Block(n)
	if err != nil {
		log.Error("read block", "block", n, "err", err)
		return nil, false, common.Status_SERVICE_UNAVAILABLE, nil
	}
	resp, err := send.build(b)
	if err != nil {
		return nil, false, common.Status_INTERNAL_SERVER_ERROR, fmt.Errorf("prepare block %d: %w", n, err)
	}
	config := block.IsConfig(b)
	if send.cache != nil {
		send.cache.put(ledger, n, resp, config)
	}
	return resp, config, common.Status_SUCCESS, nil
}

func last(height uint64) uint64 {
	if height == 0 {
		return 0
	}
	return height - 1
}

type request struct {
	channelID string
	data      []byte
	signed    []policy.SignedData
}

// parseRequest takes a seek envelope apart, answering BAD_REQUEST for anything
// malformed or outside the time window.
func (s *Server) parseRequest(env *common.Envelope) (*request, common.Status) {
	payload := &common.Payload{}
	if err := proto.Unmarshal(env.GetPayload(), payload); err != nil {
		s.log.Warn("deliver envelope without payload", "err", err)
		return nil, common.Status_BAD_REQUEST
	}
	if payload.GetHeader() == nil {
		s.log.Warn("deliver envelope with bad header")
		return nil, common.Status_BAD_REQUEST
	}
	chdr := &common.ChannelHeader{}
	if err := proto.Unmarshal(payload.Header.GetChannelHeader(), chdr); err != nil {
		s.log.Warn("deliver envelope with malformed channel header", "err", err)
		return nil, common.Status_BAD_REQUEST
	}
	if chdr.GetTimestamp() == nil {
		s.log.Warn("deliver envelope without timestamp")
		return nil, common.Status_BAD_REQUEST
	}
	skew := s.cfg.Now().Sub(chdr.GetTimestamp().AsTime())
	if skew < -s.cfg.TimeWindow || skew > s.cfg.TimeWindow {
		s.log.Warn("deliver envelope timestamp outside time window", "skew", skew, "window", s.cfg.TimeWindow)
		return nil, common.Status_BAD_REQUEST
	}
	shdr := &common.SignatureHeader{}
	if err := proto.Unmarshal(payload.Header.GetSignatureHeader(), shdr); err != nil {
		s.log.Warn("deliver envelope with malformed signature header", "err", err)
		return nil, common.Status_BAD_REQUEST
	}
	return &request{
		channelID: chdr.GetChannelId(),
		data:      payload.GetData(),
		signed:    []policy.SignedData{{Data: env.GetPayload(), Identity: shdr.GetCreator(), Signature: env.GetSignature()}},
	}, common.Status_SUCCESS
}
