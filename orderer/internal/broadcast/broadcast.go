// Package broadcast owns the orderer's Broadcast RPC: it checks each envelope a
// client sends (structure, channel, size, /Channel/Writers) and hands accepted
// envelopes to the channel's consenter, answering every envelope with a Fabric
// status as Fabric 2.5's broadcast handler does. Rejections never end the stream.
//
// A Handler is stateless and safe for concurrent use; each stream is served by
// the gRPC goroutine that calls Handle.
package broadcast

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"

	"github.com/cairn-ledger/cairn/internal/policy"
	cb "github.com/hyperledger/fabric-protos-go-apiv2/common"
	ab "github.com/hyperledger/fabric-protos-go-apiv2/orderer"
	"google.golang.org/protobuf/proto"
)

// WritersPolicy is the policy every normal transaction's creator must satisfy.
const WritersPolicy = "/Channel/Writers"

// Channel is what broadcast needs of a joined channel.
type Channel interface {
	// Evaluate checks signed data against the channel policy at path.
	Evaluate(path string, signed []policy.SignedData) error
	// AbsoluteMaxBytes is the channel's BatchSize.AbsoluteMaxBytes.
	AbsoluteMaxBytes() uint32
	// Order hands an accepted envelope to the consenter.
	Order(ctx context.Context, env []byte) error
}

// Channels looks channels up by ID.
type Channels interface {
	Channel(id string) (Channel, bool)
}

// Metrics counts broadcast outcomes.
type Metrics interface {
	BroadcastResult(channel, status string)
}

// Handler serves Broadcast streams.
type Handler struct {
	channels Channels
	log      *slog.Logger
	metrics  Metrics
}

// New returns a handler; logger and metrics may be nil.
func New(channels Channels, logger *slog.Logger, metrics Metrics) *Handler {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	return &Handler{channels: channels, log: logger, metrics: metrics}
}

// Stream is the server side of a Broadcast stream.
type Stream interface {
	Context() context.Context
	Recv() (*cb.Envelope, error)
	Send(*ab.BroadcastResponse) error
}

// Handle serves one stream until the client closes it or it breaks.
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
		resp := h.Process(ctx, env)
		if err := s.Send(resp); err != nil {
			return err
		}
	}
}

// Process checks one envelope and, if it passes, orders it.
func (h *Handler) Process(ctx context.Context, env *cb.Envelope) *ab.BroadcastResponse {
	channelID, resp := h.process(ctx, env)
	if h.metrics != nil {
		h.metrics.BroadcastResult(channelID, resp.Status.String())
	}
	if resp.Status != cb.Status_SUCCESS {
		h.log.Debug("broadcast rejected", "channel", channelID, "status", resp.Status.String(), "info", resp.Info)
	}
	return resp
}

func reject(status cb.Status, format string, args ...any) *ab.BroadcastResponse {
	return &ab.BroadcastResponse{Status: status, Info: fmt.Sprintf(format, args...)}
}

func (h *Handler) process(ctx context.Context, env *cb.Envelope) (string, *ab.BroadcastResponse) {
	if env == nil || len(env.Payload) == 0 {
		return "", reject(cb.Status_BAD_REQUEST, "message was empty")
	}
	payload := &cb.Payload{}
	if err := proto.Unmarshal(env.Payload, payload); err != nil {
		return "", reject(cb.Status_BAD_REQUEST, "could not determine channel ID: bad payload: %v", err)
	}
	if payload.Header == nil {
		return "", reject(cb.Status_BAD_REQUEST, "could not determine channel ID: payload header is missing")
	}
	chdr := &cb.ChannelHeader{}
	if err := proto.Unmarshal(payload.Header.ChannelHeader, chdr); err != nil {
		return "", reject(cb.Status_BAD_REQUEST, "could not determine channel ID: bad channel header: %v", err)
	}
	if chdr.ChannelId == "" {
		return "", reject(cb.Status_BAD_REQUEST, "could not determine channel ID: channel header has no channel ID")
	}
	ch, ok := h.channels.Channel(chdr.ChannelId)
	if !ok {
		return "", reject(cb.Status_NOT_FOUND, "channel %s does not exist", chdr.ChannelId)
	}
	id := chdr.ChannelId
	switch cb.HeaderType(chdr.Type) {
	case cb.HeaderType_CONFIG_UPDATE:
		return id, reject(cb.Status_BAD_REQUEST, "config updates are not supported yet")
	case cb.HeaderType_CONFIG, cb.HeaderType_ORDERER_TRANSACTION:
		return id, reject(cb.Status_BAD_REQUEST, "message of type %s cannot be broadcast; submit a CONFIG_UPDATE", cb.HeaderType(chdr.Type))
	}

	if size := len(env.Payload) + len(env.Signature); uint64(size) > uint64(ch.AbsoluteMaxBytes()) {
		return id, reject(cb.Status_REQUEST_ENTITY_TOO_LARGE, "message payload is %d bytes and exceeds maximum allowed %d bytes", size, ch.AbsoluteMaxBytes())
	}

	shdr := &cb.SignatureHeader{}
	if err := proto.Unmarshal(payload.Header.SignatureHeader, shdr); err != nil {
		return id, reject(cb.Status_BAD_REQUEST, "bad signature header: %v", err)
	}
	if len(shdr.Creator) == 0 {
		return id, reject(cb.Status_BAD_REQUEST, "signature header has no creator")
	}
	signed := []policy.SignedData{{Data: env.Payload, Identity: shdr.Creator, Signature: env.Signature}}
	if err := ch.Evaluate(WritersPolicy, signed); err != nil {
		return id, reject(cb.Status_FORBIDDEN, "access denied: %s", policy.Explain(WritersPolicy, err))
	}

	raw, err := proto.Marshal(env)
	if err != nil {
		return id, reject(cb.Status_BAD_REQUEST, "cannot re-encode envelope: %v", err)
	}
	if err := ch.Order(ctx, raw); err != nil {
		return id, reject(cb.Status_SERVICE_UNAVAILABLE, "cannot order on channel %s: %v", id, err)
	}
	return id, &ab.BroadcastResponse{Status: cb.Status_SUCCESS}
}
