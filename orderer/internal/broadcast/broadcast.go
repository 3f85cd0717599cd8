// Package broadcast owns the orderer's Broadcast RPC: it checks each envelope a
// client sends (structure, channel, size, /Channel/Writers) and hands accepted
// envelopes to the channel's consenter, answering every envelope with a Fabric
// status as Fabric 2.5's broadcast handler does. Rejections never end the stream.
//
// A CONFIG_UPDATE goes through the same size and /Channel/Writers checks, is
// then authorised and applied to the channel's configuration
// (Channel.ProposeConfig, Fabric's StandardChannel.ProcessConfigUpdateMsg),
// and the resulting CONFIG envelope, signed by the orderer, is checked for
// size again and handed to the consenter with Configure. Authorisation
// failures answer FORBIDDEN, other refusals BAD_REQUEST.
//
// Each stream is a pipeline: the goroutine that calls Handle receives
// envelopes, up to GOMAXPROCS workers check them (signature verification
// included), so one stream uses every core, and a responder
// goroutine hands the checked envelopes to the consenter and answers them
// strictly in the order they arrived. The responder hands over at once every
// envelope already checked behind the one it waited for: one trip to the
// consenter's goroutine for a run of them instead of one each. At most Window
// envelopes of one stream are in the pipeline; the receiver waits when it is
// full. Handle returns only after every goroutine of its stream has exited.
//
// A Handler is stateless and safe for concurrent use.
package broadcast

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"runtime"
	"sync"

	"github.com/cairn-ledger/cairn/internal/policy"
	cb "github.com/hyperledger/fabric-protos-go-apiv2/common"
	ab "github.com/hyperledger/fabric-protos-go-apiv2/orderer"
	"google.golang.org/protobuf/proto"
)

// WritersPolicy is the policy every normal transaction's creator must satisfy.
const WritersPolicy = "/Channel/Writers"

// DefaultWindow is the number of envelopes of one stream that may be checked
// or waiting for the consenter at once.
const DefaultWindow = 128

// Channel is what broadcast needs of a joined channel.
type Channel interface {
	// Evaluate checks signed data against the channel policy at path. It is
	// called from many goroutines at once.
	Evaluate(path string, signed []policy.SignedData) error
	// AbsoluteMaxBytes is the channel's BatchSize.AbsoluteMaxBytes.
	AbsoluteMaxBytes() uint32
	// ConfigSequence is the sequence of the configuration in force.
	ConfigSequence() uint64
	// OrderBatch hands envelopes accepted at config sequence seq to the
	// consenter, to be ordered one after the other; errs[i] says whether
	// envelope i was taken. It keeps the envelopes, not the envs slice,
	// which the responder reuses.
	OrderBatch(ctx context.Context, envs [][]byte, seq uint64) (errs []error)
	// ProposeConfig authorises a CONFIG_UPDATE against the configuration in
	// force and returns the CONFIG envelope it produces (signed by the
	// orderer) and the config sequence it was validated at. Errors matching
	// policy.ErrNotSatisfied are authorisation failures. It is called from
	// many goroutines at once.
	ProposeConfig(update *cb.Envelope) (config *cb.Envelope, seq uint64, err error)
	// Configure hands a CONFIG envelope validated at config sequence seq to
	// the consenter.
	Configure(ctx context.Context, config []byte, seq uint64) error
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
	window   int
}

// New returns a handler with DefaultWindow; logger and metrics may be nil.
func New(channels Channels, logger *slog.Logger, metrics Metrics) *Handler {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	return &Handler{channels: channels, log: logger, metrics: metrics, window: DefaultWindow}
}

// WithWindow returns a copy of h whose streams keep at most n envelopes (at
// least 1) in their pipeline.
func (h *Handler) WithWindow(n int) *Handler {
	c := *h
	c.window = max(1, n)
	return &c
}

// Stream is the server side of a Broadcast stream.
type Stream interface {
	Context() context.Context
	Recv() (*cb.Envelope, error)
	Send(*ab.BroadcastResponse) error
}

// inflight is one received envelope moving through a stream's pipeline.
type inflight struct {
	env     *cb.Envelope
	checked chan struct{} // closed once the fields below are set
	c       checked
}

// checked is the outcome of checking an envelope: a rejection, or the channel
// to order the re-encoded envelope on.
type checked struct {
	channelID string
	ch        Channel
	raw       []byte
	reject    *ab.BroadcastResponse
	config    bool   // raw is a CONFIG envelope
	seq       uint64 // the config sequence raw was validated at
}

// Handle serves one stream until the client closes it or it breaks. Every
// envelope received is answered, in order, unless the stream breaks first.
func (h *Handler) Handle(s Stream) error {
	ctx, cancel := context.WithCancel(s.Context())
	defer cancel()
	queue := make(chan *inflight, h.window)
	// Checks run on a few long-lived workers rather than a goroutine per
	// envelope: signature verification needs a deep stack, and growing a fresh
	// goroutine's stack for every envelope cost ~5 % of the leader's CPU.
	work := make(chan *inflight, h.window)
	var checks sync.WaitGroup
	for range min(h.window, runtime.GOMAXPROCS(0)) {
		checks.Add(1)
		go func() {
			defer checks.Done()
			for in := range work {
				in.c = h.check(in.env)
				close(in.checked)
			}
		}()
	}
	respErr := make(chan error, 1)
	go func() { respErr <- h.respond(ctx, cancel, s, queue) }()

	recvErr := func() error {
		for {
			env, err := s.Recv()
			if errors.Is(err, io.EOF) {
				return nil
			}
			if err != nil {
				return err
			}
			in := &inflight{env: env, checked: make(chan struct{})}
			// queue bounds the envelopes in the pipeline, so work (as large)
			// never blocks once queue accepted. The responder drains queue
			// until it is closed, even after a failed Send, so this never
			// blocks for good.
			queue <- in
			work <- in
		}
	}()
	close(work)
	close(queue)
	err := <-respErr
	checks.Wait()
	if err != nil {
		return err
	}
	return recvErr
}

// respond hands checked envelopes to their consenter and answers them, in
// arrival order, until queue is closed. After a failed Send it cancels the
// stream and only drains the queue.
func (h *Handler) respond(ctx context.Context, cancel context.CancelFunc, s Stream, queue <-chan *inflight) error {
	var (
		sendErr error
		held    *inflight // taken from queue while gathering, not handled yet
		closed  bool
		run     []*inflight
		raws    [][]byte
	)
	send := func(resp *ab.BroadcastResponse) {
		if sendErr != nil {
			return
		}
		if err := s.Send(resp); err != nil {
			sendErr = err
			cancel()
		}
	}
	for {
		in := held
		held = nil
		if in == nil {
			var ok bool
			if closed {
				return sendErr
			}
			if in, ok = <-queue; !ok {
				return sendErr
			}
		}
		<-in.checked
		if sendErr != nil {
			continue
		}
		run = append(run[:0], in)
		if batchable(in.c) {
			run, held, closed = gather(run, queue)
		}
		if len(run) == 1 {
			send(h.finish(ctx, in.c))
			continue
		}
		raws = raws[:0]
		for _, r := range run {
			raws = append(raws, r.c.raw)
		}
		for _, resp := range h.finishRun(ctx, run, raws) {
			send(resp)
		}
	}
}

// batchable reports whether a checked envelope may be ordered together with
// others: a normal envelope that passed its checks.
func batchable(c checked) bool { return c.reject == nil && !c.config }

// gather appends to run (one batchable envelope) the envelopes waiting in
// queue that are checked already and go to the same channel at the same
// config sequence, without waiting. It returns the first envelope it took
// that does not join the run (nil if none) and whether queue is closed.
func gather(run []*inflight, queue <-chan *inflight) (_ []*inflight, held *inflight, closed bool) {
	first := run[0].c
	for {
		select {
		case n, ok := <-queue:
			if !ok {
				return run, nil, true
			}
			select {
			case <-n.checked:
			default:
				return run, n, false
			}
			if !batchable(n.c) || n.c.ch != first.ch || n.c.seq != first.seq {
				return run, n, false
			}
			run = append(run, n)
		default:
			return run, nil, false
		}
	}
}

// Process checks one envelope and, if it passes, orders it.
func (h *Handler) Process(ctx context.Context, env *cb.Envelope) *ab.BroadcastResponse {
	return h.finish(ctx, h.check(env))
}

// finish orders a checked envelope and records the outcome.
func (h *Handler) finish(ctx context.Context, c checked) *ab.BroadcastResponse {
	resp := c.reject
	if resp == nil {
		resp = &ab.BroadcastResponse{Status: cb.Status_SUCCESS}
		if c.config {
			if err := c.ch.Configure(ctx, c.raw, c.seq); err != nil {
				resp = reject(cb.Status_SERVICE_UNAVAILABLE, "cannot order config update on channel %s: %v", c.channelID, err)
			}
		} else if err := c.ch.OrderBatch(ctx, [][]byte{c.raw}, c.seq)[0]; err != nil {
			resp = orderFailed(c.channelID, err)
		}
	}
	h.record(c.channelID, resp)
	return resp
}

// finishRun orders a run of batchable envelopes (raws are their encodings)
// in one hand-over and answers each with its own outcome.
func (h *Handler) finishRun(ctx context.Context, run []*inflight, raws [][]byte) []*ab.BroadcastResponse {
	c := run[0].c
	errs := c.ch.OrderBatch(ctx, raws, c.seq)
	resps := make([]*ab.BroadcastResponse, len(run))
	for i, r := range run {
		resps[i] = &ab.BroadcastResponse{Status: cb.Status_SUCCESS}
		if errs[i] != nil {
			resps[i] = orderFailed(r.c.channelID, errs[i])
		}
		h.record(r.c.channelID, resps[i])
	}
	return resps
}

func orderFailed(channelID string, err error) *ab.BroadcastResponse {
	return reject(cb.Status_SERVICE_UNAVAILABLE, "cannot order on channel %s: %v", channelID, err)
}

// record counts an answer and logs a rejection.
func (h *Handler) record(channelID string, resp *ab.BroadcastResponse) {
	if h.metrics != nil {
		h.metrics.BroadcastResult(channelID, resp.Status.String())
	}
	if resp.Status != cb.Status_SUCCESS {
		h.log.Debug("broadcast rejected", "channel", channelID, "status", resp.Status.String(), "info", resp.Info)
	}
}

func reject(status cb.Status, format string, args ...any) *ab.BroadcastResponse {
	return &ab.BroadcastResponse{Status: status, Info: fmt.Sprintf(format, args...)}
}

// check runs every test of an envelope that needs no consenter: structure,
// channel, type, size and the Writers policy (signature verification). It is
// safe to run for many envelopes at once.
func (h *Handler) check(env *cb.Envelope) checked {
	v := h.validate(env)
	if v.reject == nil && v.typ == cb.HeaderType_CONFIG_UPDATE {
		return h.configUpdate(v.channelID, v.ch, env)
	}
	return checked{channelID: v.channelID, ch: v.ch, raw: v.raw, reject: v.reject, seq: v.seq}
}

// Revalidate checks again, against the configuration in force, a normal
// envelope (raw, as ordered) that passed the checks at an older config
// sequence: structure, channel, size and /Channel/Writers (Fabric's
// ProcessNormalMsg). The chain calls it for envelopes in flight across a
// config change.
func (h *Handler) Revalidate(raw []byte) error {
	env := &cb.Envelope{}
	if err := proto.Unmarshal(raw, env); err != nil {
		return fmt.Errorf("envelope: %w", err)
	}
	v := h.validate(env)
	if v.reject != nil {
		return fmt.Errorf("%s: %s", v.reject.Status, v.reject.Info)
	}
	if v.typ == cb.HeaderType_CONFIG_UPDATE {
		return errors.New("a CONFIG_UPDATE is not a normal envelope")
	}
	return nil
}

// configUpdate turns a CONFIG_UPDATE that passed validate into the CONFIG
// envelope to order, as Fabric's ProcessConfigUpdateMsg: the update is
// authorised and applied, and the signed result checked for size again.
func (h *Handler) configUpdate(id string, ch Channel, env *cb.Envelope) checked {
	fail := func(r *ab.BroadcastResponse) checked { return checked{channelID: id, reject: r} }
	config, seq, err := ch.ProposeConfig(env)
	if errors.Is(err, policy.ErrNotSatisfied) {
		return fail(reject(cb.Status_FORBIDDEN, "%v", err))
	}
	if err != nil {
		return fail(reject(cb.Status_BAD_REQUEST, "%v", err))
	}
	if size := len(config.Payload) + len(config.Signature); uint64(size) > uint64(ch.AbsoluteMaxBytes()) {
		return fail(reject(cb.Status_BAD_REQUEST, "config update for channel %s refused: the config transaction is %d bytes and exceeds the maximum %d bytes", id, size, ch.AbsoluteMaxBytes()))
	}
	raw, err := proto.Marshal(config)
	if err != nil {
		return fail(reject(cb.Status_BAD_REQUEST, "cannot encode config envelope: %v", err))
	}
	return checked{channelID: id, ch: ch, raw: raw, config: true, seq: seq}
}

// validated is what validate found out about an envelope.
type validated struct {
	channelID string
	ch        Channel // nil when rejected
	raw       []byte  // the re-encoded envelope; nil for a CONFIG_UPDATE
	reject    *ab.BroadcastResponse
	typ       cb.HeaderType
	seq       uint64 // the config sequence the checks ran against (or older)
}

// validate checks an envelope's structure, channel, type, size and Writers
// signature; it also returns the envelope's header type. A CONFIG_UPDATE that
// passes is returned without its re-encoding: configUpdate goes on with it.
func (h *Handler) validate(env *cb.Envelope) validated {
	fail := func(id string, r *ab.BroadcastResponse) validated { return validated{channelID: id, reject: r} }
	if env == nil || len(env.Payload) == 0 {
		return fail("", reject(cb.Status_BAD_REQUEST, "message was empty"))
	}
	payload := &cb.Payload{}
	if err := proto.Unmarshal(env.Payload, payload); err != nil {
		return fail("", reject(cb.Status_BAD_REQUEST, "could not determine channel ID: bad payload: %v", err))
	}
	if payload.Header == nil {
		return fail("", reject(cb.Status_BAD_REQUEST, "could not determine channel ID: payload header is missing"))
	}
	chdr := &cb.ChannelHeader{}
	if err := proto.Unmarshal(payload.Header.ChannelHeader, chdr); err != nil {
		return fail("", reject(cb.Status_BAD_REQUEST, "could not determine channel ID: bad channel header: %v", err))
	}
	if chdr.ChannelId == "" {
		return fail("", reject(cb.Status_BAD_REQUEST, "could not determine channel ID: channel header has no channel ID"))
	}
	ch, ok := h.channels.Channel(chdr.ChannelId)
	if !ok {
		return fail("", reject(cb.Status_NOT_FOUND, "channel %s does not exist", chdr.ChannelId))
	}
	id := chdr.ChannelId
	switch cb.HeaderType(chdr.Type) {
	case cb.HeaderType_CONFIG, cb.HeaderType_ORDERER_TRANSACTION:
		return fail(id, reject(cb.Status_BAD_REQUEST, "message of type %s cannot be broadcast; submit a CONFIG_UPDATE", cb.HeaderType(chdr.Type)))
	}
	// Read before the checks: should the configuration change while they
	// run, the envelope is taken as validated at the older sequence and the
	// leader checks it again, never the other way round.
	seq := ch.ConfigSequence()

	if size := len(env.Payload) + len(env.Signature); uint64(size) > uint64(ch.AbsoluteMaxBytes()) {
		return fail(id, reject(cb.Status_REQUEST_ENTITY_TOO_LARGE, "message payload is %d bytes and exceeds maximum allowed %d bytes", size, ch.AbsoluteMaxBytes()))
	}

	shdr := &cb.SignatureHeader{}
	if err := proto.Unmarshal(payload.Header.SignatureHeader, shdr); err != nil {
		return fail(id, reject(cb.Status_BAD_REQUEST, "bad signature header: %v", err))
	}
	if len(shdr.Creator) == 0 {
		return fail(id, reject(cb.Status_BAD_REQUEST, "signature header has no creator"))
	}
	signed := []policy.SignedData{{Data: env.Payload, Identity: shdr.Creator, Signature: env.Signature}}
	if err := ch.Evaluate(WritersPolicy, signed); err != nil {
		h.log.Info("broadcast forbidden", "channel", id, "tx.id", chdr.TxId, "error", err.Error(), policy.LogAttr(err))
		return fail(id, reject(cb.Status_FORBIDDEN, "access denied: %s", policy.Explain(WritersPolicy, err)))
	}

	typ := cb.HeaderType(chdr.Type)
	if typ == cb.HeaderType_CONFIG_UPDATE {
		return validated{channelID: id, ch: ch, typ: typ, seq: seq}
	}
	raw, err := proto.Marshal(env)
	if err != nil {
		return fail(id, reject(cb.Status_BAD_REQUEST, "cannot re-encode envelope: %v", err))
	}
	return validated{channelID: id, ch: ch, raw: raw, typ: typ, seq: seq}
}
