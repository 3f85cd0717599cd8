package cluster

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cairn-ledger/cairn/internal/comm"
	"github.com/cairn-ledger/cairn/protos/clusterpb"
	pb "go.etcd.io/raft/v3/raftpb"
	"google.golang.org/protobuf/proto"
)

// submission is a Forward waiting for the remote's answer.
type submission struct {
	env  []byte
	seq  uint64     // the config sequence env was validated at
	resp chan error // buffered 1
}

// remote is the outgoing stream of one channel to one consenter. Its run
// goroutine (re)connects with backoff and owns the stream; Send and Forward
// reach it through bounded queues.
type remote struct {
	c       *Cluster
	channel string
	// owner is the Transport the remote reports to; a membership change
	// hands an unchanged consenter's remote, stream and all, to the new
	// Transport (adopt), so envelopes in flight to it are not lost.
	owner     atomic.Pointer[Transport]
	cancel    context.CancelFunc // stops run
	done      chan struct{}      // closed when run has returned
	id        uint64
	endpoint  string
	serverDER []byte
	log       *slog.Logger
	// consensus holds raft messages still to encode: encoding (a copy of
	// every entry) happens on the stream's goroutine, not the chain's.
	consensus chan *pb.Message
	submits   chan *submission
	// carry is a submission batch took from submits but could not add to
	// its batch (another config sequence); the next request starts with it.
	// Only the session goroutine touches it.
	carry *submission

	mu      sync.Mutex
	pending map[uint64][]*submission // sent in one request, awaiting its SubmitResponse
	nextID  uint64
}

func newRemote(t *Transport, m *member, log *slog.Logger) *remote {
	r := &remote{
		c: t.c, channel: t.channel, done: make(chan struct{}),
		id: m.id, endpoint: m.endpoint, serverDER: m.serverDER, log: log,
		consensus: make(chan *pb.Message, t.c.cfg.SendQueueSize),
		submits:   make(chan *submission, t.c.cfg.SendQueueSize),
		pending:   map[uint64][]*submission{},
	}
	r.owner.Store(t)
	return r
}

// unreachable and snapshotSent report to the remote's current owner.
func (r *remote) unreachable(m *pb.Message) { r.owner.Load().unreachable(r.id, m) }
func (r *remote) snapshotSent()             { r.owner.Load().snapshotSent(r.id) }

// sendConsensus queues a raft message, dropping it (and reporting the node
// unreachable) if the queue is full. raft never modifies a message it handed
// out, so it is encoded later, by the stream's goroutine.
func (r *remote) sendConsensus(m *pb.Message) {
	select {
	case r.consensus <- m:
	default:
		r.log.Debug("send queue full; raft message dropped", "type", m.GetType().String())
		r.c.cfg.Metrics.SendError(r.channel, "queue_full")
		r.unreachable(m)
	}
}

// consensusRequest encodes a raft message for the stream; nil if it cannot be.
func (r *remote) consensusRequest(m *pb.Message) *clusterpb.StepRequest {
	payload, err := proto.Marshal(m)
	if err != nil {
		r.log.Error("raft message not encodable; dropped", "type", m.GetType().String(), "err", err)
		r.unreachable(m)
		return nil
	}
	return &clusterpb.StepRequest{Payload: &clusterpb.StepRequest_ConsensusRequest{
		ConsensusRequest: &clusterpb.ConsensusRequest{Channel: r.channel, Payload: payload},
	}}
}

// submit queues envelopes validated at config sequence seq, in order, and
// waits for the remote's answers, one per envelope, into errs.
func (r *remote) submit(ctx context.Context, envs [][]byte, seq uint64, errs []error) {
	ctxErr := func() error { return fmt.Errorf("cluster: forward to node %d: %w", r.id, ctx.Err()) }
	subs := make([]*submission, 0, len(envs))
queue:
	for _, env := range envs {
		s := &submission{env: env, seq: seq, resp: make(chan error, 1)}
		select {
		case r.submits <- s:
			subs = append(subs, s)
		case <-ctx.Done():
			break queue
		}
	}
	for i := range errs {
		if i >= len(subs) {
			errs[i] = ctxErr()
			continue
		}
		select {
		case errs[i] = <-subs[i].resp:
		case <-ctx.Done():
			errs[i] = ctxErr()
		}
	}
}

// tlsConfig presents this node's certificate and accepts only the remote's
// pinned server certificate: the channel config names it exactly, so no CA or
// host name check is needed.
func (r *remote) tlsConfig() *tls.Config {
	want := r.serverDER
	return &tls.Config{
		Certificates:       []tls.Certificate{r.c.cfg.ClientCert},
		MinVersion:         tls.VersionTLS12,
		InsecureSkipVerify: true, // replaced by the pinning below
		VerifyPeerCertificate: func(raw [][]byte, _ [][]*x509.Certificate) error {
			if len(raw) == 0 || !bytes.Equal(raw[0], want) {
				return errors.New("server certificate is not the consenter's")
			}
			return nil
		},
	}
}

func (r *remote) run(ctx context.Context) {
	defer func() {
		r.failPending(ErrStreamBroken)
		if r.carry != nil {
			r.carry.resp <- ErrStreamBroken
			r.carry = nil
		}
	}()
	conn, err := comm.Dial(r.endpoint, r.tlsConfig(), r.c.cfg.DialOptions...)
	if err != nil {
		r.log.Error("cannot create connection to consenter", "err", err)
		<-ctx.Done()
		return
	}
	defer conn.Close()
	client := clusterpb.NewClusterClient(conn)
	cfg := r.c.cfg
	backoff := cfg.MinBackoff
	for {
		began := time.Now()
		err := r.session(ctx, client)
		r.failPending(fmt.Errorf("%w: %v", ErrStreamBroken, err))
		if ctx.Err() != nil {
			return
		}
		// Messages queued meanwhile wait for the next stream; raft should
		// stop streaming entries optimistically until then.
		r.unreachable(nil)
		if time.Since(began) > cfg.MaxBackoff {
			backoff = cfg.MinBackoff
		}
		r.log.Debug("stream to consenter ended; reconnecting", "err", err, "backoff", backoff)
		timer := time.NewTimer(backoff)
		select {
		case <-ctx.Done():
			timer.Stop()
			return
		case <-timer.C:
		}
		backoff = min(2*backoff, cfg.MaxBackoff)
	}
}

// session runs one stream until it breaks or ctx ends.
func (r *remote) session(ctx context.Context, client clusterpb.ClusterClient) error {
	sctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	defer wg.Wait()
	defer cancel()
	stream, err := client.Step(sctx)
	if err != nil {
		return err
	}
	recvErr := make(chan error, 1)
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			resp, err := stream.Recv()
			if err != nil {
				recvErr <- err
				return
			}
			r.answer(resp.GetSubmitResponse())
		}
	}()
	for {
		var (
			req *clusterpb.StepRequest
			msg *pb.Message // the raft message req carries, if any
		)
		submits := r.submits
		if r.carry != nil {
			// A submission is waiting already: take it without blocking.
			ready := make(chan *submission, 1)
			ready <- r.carry
			r.carry, submits = nil, ready
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case err := <-recvErr:
			return err
		case msg = <-r.consensus:
			if req = r.consensusRequest(msg); req == nil {
				continue
			}
		case s := <-submits:
			batch := r.batch(s)
			envs := make([][]byte, len(batch))
			for i, b := range batch {
				envs[i] = b.env
			}
			r.mu.Lock()
			r.nextID++
			id := r.nextID
			r.pending[id] = batch
			r.mu.Unlock()
			req = &clusterpb.StepRequest{Payload: &clusterpb.StepRequest_SubmitRequest{
				SubmitRequest: &clusterpb.SubmitRequest{Channel: r.channel, Envelopes: envs, RequestId: id, ConfigSequence: s.seq},
			}}
		}
		began := time.Now()
		if err := stream.Send(req); err != nil {
			r.c.cfg.Metrics.SendError(r.channel, "stream")
			if msg != nil {
				r.unreachable(msg)
			}
			return err
		}
		r.c.cfg.Metrics.SendLatency(r.channel, time.Since(began))
		if msg.GetType() == pb.MessageType_MsgSnap {
			r.snapshotSent()
		}
	}
}

// batch adds to first the submissions already queued behind it that were
// validated at the same config sequence, up to maxSubmitBatch envelopes or
// half the remote's message size limit: under load a follower's streams
// forward many envelopes at once, and one message per batch instead of per
// envelope saves both ends most of the gRPC work.
func (r *remote) batch(first *submission) []*submission {
	batch := []*submission{first}
	size, limit := len(first.env), r.c.cfg.MaxMessageSize/2
	for len(batch) < maxSubmitBatch && size < limit {
		select {
		case s := <-r.submits:
			if s.seq != first.seq {
				r.carry = s
				return batch
			}
			batch = append(batch, s)
			size += len(s.env)
		default:
			return batch
		}
	}
	return batch
}

// answer completes the Forwards of one request: the remote accepted a prefix
// of its envelopes, and the status describes the first one it did not.
func (r *remote) answer(resp *clusterpb.SubmitResponse) {
	if resp == nil {
		return
	}
	r.mu.Lock()
	batch, ok := r.pending[resp.GetRequestId()]
	delete(r.pending, resp.GetRequestId())
	r.mu.Unlock()
	if !ok {
		return
	}
	accepted := int(resp.GetAccepted())
	if resp.GetStatus() == clusterpb.SubmitStatus_SUBMIT_STATUS_ACCEPTED {
		accepted = len(batch)
	}
	for i, s := range batch {
		var err error
		if i >= accepted {
			err = fmt.Errorf("%w: node %d: %s: %s", ErrRefused, r.id, resp.GetStatus(), resp.GetInfo())
		}
		s.resp <- err
	}
}

// failPending fails every sent submission still waiting for an answer.
func (r *remote) failPending(err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for id, batch := range r.pending {
		for _, s := range batch {
			s.resp <- err
		}
		delete(r.pending, id)
	}
}
