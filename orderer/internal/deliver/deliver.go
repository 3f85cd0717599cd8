// Package deliver owns the orderer's Deliver RPC: it reads a client's signed
// SeekInfo request, checks it against /Channel/Readers and streams the requested
// range of blocks, waiting for blocks not yet written when asked to, following
// Fabric's common/deliver handler. A stream ends when the stop block is sent,
// when the client goes away, or when the server cancels the stream's context.
//
// A Handler is safe for concurrent use; each stream is served by the gRPC
// goroutine that calls Handle.
package deliver

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"time"

	"github.com/cairn-ledger/cairn/internal/policy"
	cb "github.com/hyperledger/fabric-protos-go-apiv2/common"
	ab "github.com/hyperledger/fabric-protos-go-apiv2/orderer"
	"google.golang.org/protobuf/proto"
)

// ReadersPolicy is the policy a deliver request's signer must satisfy.
const ReadersPolicy = "/Channel/Readers"

// DefaultTimeWindow is how far a request's timestamp may be from the orderer's
// clock, as Fabric's General.Authentication.TimeWindow.
const DefaultTimeWindow = 15 * time.Minute

// Channel is what deliver needs of a joined channel.
type Channel interface {
	Evaluate(path string, signed []policy.SignedData) error
	Height() uint64
	Block(n uint64) (*cb.Block, error)
	// Wait returns when block n exists (Height() > n), or with an error when
	// ctx ends or the channel goes away.
	Wait(ctx context.Context, n uint64) error
}

// Channels looks channels up by ID.
type Channels interface {
	Channel(id string) (Channel, bool)
}

// Stream is the server side of a Deliver stream.
type Stream interface {
	Context() context.Context
	Recv() (*cb.Envelope, error)
	Send(*ab.DeliverResponse) error
}

// Handler serves Deliver streams.
type Handler struct {
	channels   Channels
	log        *slog.Logger
	now        func() time.Time
	timeWindow time.Duration
}

// New returns a handler. now and logger may be nil; timeWindow 0 means
// DefaultTimeWindow.
func New(channels Channels, logger *slog.Logger, now func() time.Time, timeWindow time.Duration) *Handler {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	if now == nil {
		now = time.Now
	}
	if timeWindow == 0 {
		timeWindow = DefaultTimeWindow
	}
	return &Handler{channels: channels, log: logger, now: now, timeWindow: timeWindow}
}

// Handle serves seek requests on one stream until a request fails, the client
// closes the stream or the stream's context ends.
func (h *Handler) Handle(s Stream) error {
	ctx := s.Context()
	for {
		env, err := s.Recv()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
		status, err := h.deliverBlocks(ctx, s, env)
		if err != nil {
			return err
		}
		if err := s.Send(&ab.DeliverResponse{Type: &ab.DeliverResponse_Status{Status: status}}); err != nil {
			return err
		}
		if status != cb.Status_SUCCESS {
			return nil
		}
	}
}

// errStream marks errors of the stream itself, which end Handle.
type errStream struct{ error }

func (h *Handler) deliverBlocks(ctx context.Context, s Stream, env *cb.Envelope) (cb.Status, error) {
	status, reason, err := h.serve(ctx, s, env)
	var se errStream
	if errors.As(err, &se) {
		return 0, se.error
	}
	if status != cb.Status_SUCCESS {
		h.log.Debug("deliver request ended", "status", status.String(), "reason", reason)
	}
	return status, nil
}

func (h *Handler) serve(ctx context.Context, s Stream, env *cb.Envelope) (cb.Status, string, error) {
	payload := &cb.Payload{}
	if err := proto.Unmarshal(env.GetPayload(), payload); err != nil {
		return cb.Status_BAD_REQUEST, "bad payload: " + err.Error(), nil
	}
	if payload.Header == nil {
		return cb.Status_BAD_REQUEST, "payload header is missing", nil
	}
	chdr := &cb.ChannelHeader{}
	if err := proto.Unmarshal(payload.Header.ChannelHeader, chdr); err != nil {
		return cb.Status_BAD_REQUEST, "bad channel header: " + err.Error(), nil
	}
	if cb.HeaderType(chdr.Type) != cb.HeaderType_DELIVER_SEEK_INFO {
		return cb.Status_BAD_REQUEST, fmt.Sprintf("header type %d is not DELIVER_SEEK_INFO", chdr.Type), nil
	}
	if chdr.Timestamp == nil {
		return cb.Status_BAD_REQUEST, "channel header in envelope must contain timestamp", nil
	}
	if d := h.now().Sub(chdr.Timestamp.AsTime()); d > h.timeWindow || d < -h.timeWindow {
		return cb.Status_BAD_REQUEST, fmt.Sprintf("envelope timestamp %s is more than %s apart from the orderer's clock", chdr.Timestamp.AsTime(), h.timeWindow), nil
	}
	ch, ok := h.channels.Channel(chdr.ChannelId)
	if !ok {
		return cb.Status_NOT_FOUND, "channel " + chdr.ChannelId + " not found", nil
	}
	shdr := &cb.SignatureHeader{}
	if err := proto.Unmarshal(payload.Header.SignatureHeader, shdr); err != nil {
		return cb.Status_BAD_REQUEST, "bad signature header: " + err.Error(), nil
	}
	signed := []policy.SignedData{{Data: env.Payload, Identity: shdr.Creator, Signature: env.Signature}}
	if err := ch.Evaluate(ReadersPolicy, signed); err != nil {
		h.log.Info("deliver forbidden", "channel", chdr.ChannelId, "error", err.Error(), policy.LogAttr(err))
		return cb.Status_FORBIDDEN, "access denied: " + policy.Explain(ReadersPolicy, err), nil
	}
	seek := &ab.SeekInfo{}
	if err := proto.Unmarshal(payload.Data, seek); err != nil {
		return cb.Status_BAD_REQUEST, "bad seek info: " + err.Error(), nil
	}
	if seek.Start == nil || seek.Stop == nil {
		return cb.Status_BAD_REQUEST, "seek info is missing start or stop", nil
	}

	height := ch.Height()
	var start, stop uint64
	switch p := seek.Start.Type.(type) {
	case *ab.SeekPosition_Oldest:
		start = 0
	case *ab.SeekPosition_Newest:
		start = height - 1
	case *ab.SeekPosition_Specified:
		start = p.Specified.GetNumber()
	case *ab.SeekPosition_NextCommit:
		start = height
	default:
		return cb.Status_BAD_REQUEST, "unknown start position", nil
	}
	switch p := seek.Stop.Type.(type) {
	case *ab.SeekPosition_Oldest:
		stop = 0
	case *ab.SeekPosition_Newest:
		stop = height - 1
		if _, ok := seek.Start.Type.(*ab.SeekPosition_Newest); ok {
			stop = start
		}
	case *ab.SeekPosition_Specified:
		stop = p.Specified.GetNumber()
	case *ab.SeekPosition_NextCommit:
		stop = height
	default:
		return cb.Status_BAD_REQUEST, "unknown stop position", nil
	}
	if stop < start {
		return cb.Status_BAD_REQUEST, fmt.Sprintf("stop %d is before start %d", stop, start), nil
	}

	for n := start; ; n++ {
		if ch.Height() <= n {
			if seek.Behavior == ab.SeekInfo_FAIL_IF_NOT_READY {
				return cb.Status_NOT_FOUND, fmt.Sprintf("block %d does not exist yet", n), nil
			}
			if err := ch.Wait(ctx, n); err != nil {
				if ctx.Err() != nil {
					return 0, "", errStream{ctx.Err()}
				}
				return cb.Status_SERVICE_UNAVAILABLE, "waiting for block: " + err.Error(), nil
			}
		}
		b, err := ch.Block(n)
		if err != nil {
			return cb.Status_SERVICE_UNAVAILABLE, fmt.Sprintf("read block %d: %v", n, err), nil
		}
		if seek.ContentType == ab.SeekInfo_HEADER_WITH_SIG {
			b = &cb.Block{Header: b.Header, Metadata: b.Metadata}
		}
		if err := s.Send(&ab.DeliverResponse{Type: &ab.DeliverResponse_Block{Block: b}}); err != nil {
			return 0, "", errStream{err}
		}
		if n == stop || n == math.MaxUint64 {
			return cb.Status_SUCCESS, "", nil
		}
	}
}
