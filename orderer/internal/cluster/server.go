package cluster

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
	"sync/atomic"

	"github.com/cairn-ledger/cairn/protos/clusterpb"
	"go.etcd.io/raft/v3"
	pb "go.etcd.io/raft/v3/raftpb"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
)

// Reasons an inbound stream or message is refused. The server logs them; a
// caller of Forward may see ErrUnknownNode and the remote's refusals.
var (
	ErrNoClientCert   = errors.New("no TLS client certificate")
	ErrUnknownCert    = errors.New("TLS client certificate is not a consenter's")
	ErrUnknownChannel = errors.New("not a consenter of channel")
	ErrNotConsenter   = errors.New("sender is not a consenter")
	ErrWrongSender    = errors.New("raft message From does not match the sender's consenter ID")
	ErrWrongReceiver  = errors.New("raft message To is not this node")
	ErrTooLarge       = errors.New("message too large")
	ErrMalformed      = errors.New("malformed message")
	ErrUnknownNode    = errors.New("no link to node")
	ErrRefused        = errors.New("submit refused by remote")
	ErrStreamBroken   = errors.New("stream to remote broken")
)

// inbound is a validated StepRequest.
type inbound struct {
	channel string
	t       *Transport
	sender  uint64
	msg     *pb.Message // a consensus request
	envs    [][]byte    // a submit request's envelopes, in order
	seq     uint64      // the config sequence envs were validated at
	reqID   uint64
}

// inspect decodes and authorises one request from the peer holding
// certificate der. It is the trust boundary: whatever req holds, it returns an
// inbound or an error, never panics.
func (c *Cluster) inspect(der []byte, req *clusterpb.StepRequest) (inbound, error) {
	switch p := req.GetPayload().(type) {
	case *clusterpb.StepRequest_ConsensusRequest:
		cr := p.ConsensusRequest
		in := inbound{channel: cr.GetChannel()}
		t, m, err := c.lookup(in.channel, der)
		if err != nil {
			return in, err
		}
		in.t, in.sender = t, m.id
		if len(cr.GetPayload()) > c.cfg.MaxMessageSize {
			return in, fmt.Errorf("%w: raft message of %d bytes, limit %d", ErrTooLarge, len(cr.GetPayload()), c.cfg.MaxMessageSize)
		}
		msg := &pb.Message{}
		if err := proto.Unmarshal(cr.GetPayload(), msg); err != nil {
			return in, fmt.Errorf("%w: raft message: %v", ErrMalformed, err)
		}
		if err := checkRaftMessage(msg); err != nil {
			return in, err
		}
		if msg.GetFrom() != m.id {
			return in, fmt.Errorf("%w: From %d, sender %d", ErrWrongSender, msg.GetFrom(), m.id)
		}
		if msg.GetTo() != t.self {
			return in, fmt.Errorf("%w: To %d, this node %d", ErrWrongReceiver, msg.GetTo(), t.self)
		}
		in.msg = msg
		return in, nil
	case *clusterpb.StepRequest_SubmitRequest:
		sr := p.SubmitRequest
		in := inbound{channel: sr.GetChannel(), reqID: sr.GetRequestId()}
		t, m, err := c.lookup(in.channel, der)
		if err != nil {
			return in, err
		}
		in.t, in.sender = t, m.id
		if len(sr.GetEnvelopes()) == 0 {
			return in, fmt.Errorf("%w: submit without envelopes", ErrMalformed)
		}
		total := 0
		for i, env := range sr.GetEnvelopes() {
			total += len(env)
			if total > c.cfg.MaxMessageSize {
				return in, fmt.Errorf("%w: forwarded envelopes of more than %d bytes", ErrTooLarge, c.cfg.MaxMessageSize)
			}
			if !wellFormedEnvelope(env) {
				return in, fmt.Errorf("%w: forwarded envelope %d", ErrMalformed, i)
			}
		}
		in.envs, in.seq = sr.GetEnvelopes(), sr.GetConfigSequence()
		return in, nil
	default:
		return inbound{}, fmt.Errorf("%w: empty request", ErrMalformed)
	}
}

// wellFormedEnvelope reports whether raw decodes as a cb.Envelope with a
// non-empty payload. It walks the wire format without copying: the sending
// consenter already checked the envelope in full (signature included) before
// forwarding it over this authenticated stream, so the leader neither decodes
// nor verifies it again.
func wellFormedEnvelope(raw []byte) bool {
	payload := false
	for len(raw) > 0 {
		num, typ, n := protowire.ConsumeTag(raw)
		if n < 0 || num > protowire.MaxValidNumber {
			return false
		}
		raw = raw[n:]
		m := protowire.ConsumeFieldValue(num, typ, raw)
		if m < 0 {
			return false
		}
		if num == 1 && typ == protowire.BytesType { // payload; the last one counts
			v, _ := protowire.ConsumeBytes(raw)
			payload = len(v) > 0
		}
		raw = raw[m:]
	}
	return payload
}

// checkRaftMessage refuses what a remote consenter never legitimately sends:
// unknown or node-local message types, and a zero sender.
func checkRaftMessage(m *pb.Message) error {
	if m.Type == nil {
		return fmt.Errorf("%w: raft message without a type", ErrMalformed)
	}
	if _, ok := pb.MessageType_name[int32(m.GetType())]; !ok {
		return fmt.Errorf("%w: raft message type %d", ErrMalformed, m.GetType())
	}
	if raft.IsLocalMsg(m.GetType()) {
		return fmt.Errorf("%w: local raft message %s", ErrMalformed, m.GetType())
	}
	if m.GetFrom() == raft.None {
		return fmt.Errorf("%w: raft message from node 0", ErrMalformed)
	}
	if m.GetType() != pb.MessageType_MsgSnap && m.Snapshot != nil && len(m.Snapshot.GetData()) > 0 {
		return fmt.Errorf("%w: snapshot in a %s", ErrMalformed, m.GetType())
	}
	return nil
}

// server adapts the Cluster to the gRPC service.
type server struct {
	clusterpb.UnimplementedClusterServer
	c *Cluster
}

func peerCert(ctx context.Context) ([]byte, error) {
	p, ok := peer.FromContext(ctx)
	if !ok {
		return nil, ErrNoClientCert
	}
	info, ok := p.AuthInfo.(credentials.TLSInfo)
	if !ok || len(info.State.PeerCertificates) == 0 {
		return nil, ErrNoClientCert
	}
	return info.State.PeerCertificates[0].Raw, nil
}

func (s *server) Step(stream clusterpb.Cluster_StepServer) error {
	return grpcError(s.c.serve(stream))
}

// serve handles one inbound stream until the peer closes it or it breaks.
func (c *Cluster) serve(stream clusterpb.Cluster_StepServer) error {
	ctx := stream.Context()
	der, err := peerCert(ctx)
	if err != nil {
		return err
	}
	if !c.knownCert(der) {
		return ErrUnknownCert
	}
	addr := "unknown"
	if p, ok := peer.FromContext(ctx); ok {
		addr = p.Addr.String()
	}
	log := c.log.With("peer", addr)

	var (
		sendMu sync.Mutex
		// inflight counts the forwarded envelopes accepted but not yet
		// answered (at most maxInflightSubmits); submits queues their
		// requests, in arrival order, for the one goroutine that hands them
		// to the chain, so a follower's envelopes are ordered in the order it
		// forwarded them. A request holds at least one envelope, so submits
		// never fills up.
		inflight atomic.Int64
		submits  = make(chan inbound, maxInflightSubmits)
		done     = make(chan struct{})
	)
	respond := func(r *clusterpb.SubmitResponse) {
		sendMu.Lock()
		defer sendMu.Unlock()
		if err := stream.Send(&clusterpb.StepResponse{Payload: &clusterpb.StepResponse_SubmitResponse{SubmitResponse: r}}); err != nil {
			log.Debug("submit response not sent", "err", err)
		}
	}
	go func() {
		defer close(done)
		for in := range submits {
			c.order(ctx, in, respond)
			inflight.Add(-int64(len(in.envs)))
		}
	}()
	defer func() {
		close(submits)
		<-done
	}()
	for {
		req, err := stream.Recv()
		if err != nil {
			return err
		}
		in, err := c.inspect(der, req)
		if err != nil {
			log.Warn("cluster message dropped", "channel", in.channel, "sender", in.sender, "reason", err)
			if req.GetSubmitRequest() != nil {
				respond(&clusterpb.SubmitResponse{Channel: in.channel, RequestId: in.reqID, Status: clusterpb.SubmitStatus_SUBMIT_STATUS_REJECTED, Info: err.Error()})
			}
			continue
		}
		if in.msg != nil {
			ch, ok := c.cfg.Channels.Channel(in.channel)
			if !ok {
				log.Debug("cluster message for a channel not open here dropped", "channel", in.channel)
				continue
			}
			if err := ch.Step(ctx, in.msg); err != nil {
				log.Debug("raft message not stepped", "channel", in.channel, "err", err)
			}
			continue
		}
		// Ordering may wait for the chain; consensus traffic on this stream
		// (which the chain may be waiting for) must keep flowing meanwhile, so
		// a submit beyond the in-flight bound is refused rather than waited for.
		if n := int64(len(in.envs)); inflight.Load()+n <= maxInflightSubmits {
			inflight.Add(n)
			submits <- in
		} else {
			respond(&clusterpb.SubmitResponse{Channel: in.channel, RequestId: in.reqID, Status: clusterpb.SubmitStatus_SUBMIT_STATUS_UNAVAILABLE, Info: "too many forwarded envelopes in flight"})
		}
	}
}

// order hands a request's forwarded envelopes, in order, to their channel's
// chain and answers how many it accepted.
func (c *Cluster) order(ctx context.Context, in inbound, respond func(*clusterpb.SubmitResponse)) {
	resp := &clusterpb.SubmitResponse{Channel: in.channel, RequestId: in.reqID, Status: clusterpb.SubmitStatus_SUBMIT_STATUS_ACCEPTED}
	ch, ok := c.cfg.Channels.Channel(in.channel)
	if !ok {
		resp.Status, resp.Info = clusterpb.SubmitStatus_SUBMIT_STATUS_REJECTED, "channel not found"
		respond(resp)
		return
	}
	octx, cancel := context.WithTimeout(ctx, c.cfg.SubmitTimeout)
	defer cancel()
	// The chain stops at the first refusal: the sender answers the rest
	// unavailable, and ordering later envelopes would reorder them.
	accepted, err := ch.Submit(octx, in.envs, in.seq)
	resp.Accepted = uint32(accepted)
	if err != nil {
		resp.Status, resp.Info = clusterpb.SubmitStatus_SUBMIT_STATUS_UNAVAILABLE, err.Error()
	}
	respond(resp)
}

// grpcError maps the server's errors to gRPC status, in one place.
func grpcError(err error) error {
	switch {
	case err == nil, errors.Is(err, io.EOF):
		return nil
	case errors.Is(err, ErrNoClientCert):
		return status.Error(codes.Unauthenticated, err.Error())
	case errors.Is(err, ErrUnknownCert):
		return status.Error(codes.PermissionDenied, err.Error())
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		return status.FromContextError(err).Err()
	}
	if _, ok := status.FromError(err); ok {
		return err
	}
	return status.Error(codes.Internal, err.Error())
}
