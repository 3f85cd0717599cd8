// Package cluster owns the links between the consenters of a channel: the
// server side of the Cluster.Step gRPC stream (protos/cluster.proto), which
// authenticates each sender by its TLS client certificate and hands raft
// messages and forwarded envelopes to the channel's chain, and the client side,
// one outgoing stream per remote consenter and channel, which implements
// chain.Transport.
//
// Authentication is by certificate pinning: a stream is accepted only from a
// peer whose TLS client certificate (DER) is the client or server certificate
// of a consenter of some channel this node consents on; each message is
// accepted only if that certificate belongs to a consenter of the message's
// channel, and a raft message only if its From is that consenter's raft ID and
// its To is this node's. Outgoing connections present this node's TLS
// certificate and accept only the consenter's own server certificate.
// Anything else is dropped with a logged reason; bytes from the network never
// stop the server.
//
// Concurrency: all methods are safe for concurrent use. Every goroutine the
// package starts belongs to the Cluster: Close stops them all and returns once
// they have exited. A channel's Transport may also be closed on its own.
package cluster

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/pem"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cairn-ledger/cairn/internal/channelconfig"
	"github.com/cairn-ledger/cairn/orderer/internal/chain"
	"github.com/cairn-ledger/cairn/protos/clusterpb"
	pb "go.etcd.io/raft/v3/raftpb"
	"google.golang.org/grpc"
)

// Defaults of Config.
const (
	DefaultSendQueueSize  = 256
	DefaultMaxMessageSize = 64 << 20
	DefaultSubmitTimeout  = 5 * time.Second
	DefaultMinBackoff     = 50 * time.Millisecond
	DefaultMaxBackoff     = 2 * time.Second
	// maxInflightSubmits bounds the forwarded envelopes one inbound stream
	// may have waiting on the chain (at least one full batch).
	maxInflightSubmits = 1024
	// maxSubmitBatch bounds the envelopes a follower forwards in one request.
	maxSubmitBatch = 256
)

// Channel is what the cluster needs of a joined channel.
type Channel interface {
	Step(ctx context.Context, m *pb.Message) error
	// Submit hands over, in order, the envelopes another consenter
	// forwarded in one request (normal or config envelopes; the chain tells
	// them apart) and returns how many, from the first, it accepted; err
	// says why the next one was not.
	Submit(ctx context.Context, envs [][]byte, seq uint64) (int, error)
}

// Channels looks up the joined channels.
type Channels interface {
	Channel(id string) (Channel, bool)
}

// Config configures a Cluster. ClientCert and Channels are required.
type Config struct {
	// ClientCert is this node's TLS key pair, presented on outgoing streams;
	// remote consenters know the node by it.
	ClientCert tls.Certificate
	// Channels receives what the server accepts.
	Channels Channels
	// SendQueueSize is how many raft messages wait per remote before new ones
	// are dropped (raft retransmits).
	SendQueueSize int
	// MaxMessageSize bounds an inbound raft message or envelope; larger ones
	// are dropped.
	MaxMessageSize int
	// SubmitTimeout bounds how long Forward waits for the leader's answer.
	SubmitTimeout time.Duration
	// MinBackoff and MaxBackoff bound the wait between reconnection attempts.
	MinBackoff time.Duration
	MaxBackoff time.Duration
	// DialOptions are added to every outgoing connection (tests).
	DialOptions []grpc.DialOption
	Logger      *slog.Logger
	// Metrics receives send outcomes; nil records nothing.
	Metrics Metrics
}

// Metrics receives what happens to outgoing cluster messages.
type Metrics interface {
	// SendError counts a message not delivered to a remote consenter
	// (reason: queue_full or stream).
	SendError(channel, reason string)
	// SendLatency records how long handing one message to the stream took.
	SendLatency(channel string, d time.Duration)
}

type noMetrics struct{}

func (noMetrics) SendError(string, string)          {}
func (noMetrics) SendLatency(string, time.Duration) {}

func (c *Config) setDefaults() {
	if c.Metrics == nil {
		c.Metrics = noMetrics{}
	}
	if c.SendQueueSize <= 0 {
		c.SendQueueSize = DefaultSendQueueSize
	}
	if c.MaxMessageSize <= 0 {
		c.MaxMessageSize = DefaultMaxMessageSize
	}
	if c.SubmitTimeout <= 0 {
		c.SubmitTimeout = DefaultSubmitTimeout
	}
	if c.MinBackoff <= 0 {
		c.MinBackoff = DefaultMinBackoff
	}
	if c.MaxBackoff < c.MinBackoff {
		c.MaxBackoff = max(DefaultMaxBackoff, c.MinBackoff)
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
}

// Cluster is this node's end of the links to the other consenters.
type Cluster struct {
	cfg Config
	log *slog.Logger
	// ctx is the root of every outgoing stream; Close cancels it.
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu       sync.Mutex
	closed   bool
	channels map[string]*Transport
}

// New checks cfg and returns a Cluster with no links yet.
func New(cfg Config) (*Cluster, error) {
	if len(cfg.ClientCert.Certificate) == 0 {
		return nil, errors.New("cluster: no client certificate")
	}
	if cfg.Channels == nil {
		return nil, errors.New("cluster: no channel lookup")
	}
	cfg.setDefaults()
	ctx, cancel := context.WithCancel(context.Background())
	return &Cluster{
		cfg: cfg, log: cfg.Logger,
		ctx: ctx, cancel: cancel, channels: map[string]*Transport{},
	}, nil
}

// Register adds the Cluster service to a gRPC server. The server must ask for
// client certificates (tls.RequestClientCert or stronger).
func (c *Cluster) Register(s grpc.ServiceRegistrar) {
	clusterpb.RegisterClusterServer(s, &server{c: c})
}

// Close stops every outgoing stream and waits for their goroutines.
func (c *Cluster) Close() {
	c.mu.Lock()
	c.closed = true
	c.channels = map[string]*Transport{}
	c.mu.Unlock()
	c.cancel()
	c.wg.Wait()
}

// member is one consenter of a channel as the cluster knows it.
type member struct {
	id       uint64
	endpoint string
	// certs are the DER client and server certificates that identify it.
	certs     [][]byte
	serverDER []byte
}

func (m *member) hasCert(der []byte) bool {
	for _, c := range m.certs {
		if bytes.Equal(c, der) {
			return true
		}
	}
	return false
}

// Transport links one channel's chain to the other consenters. It implements
// chain.Transport.
type Transport struct {
	c       *Cluster
	channel string
	self    uint64
	members map[uint64]*member
	remotes map[uint64]*remote
	once    sync.Once
	// owned are the remotes Close stops: all of remotes, less those a newer
	// Transport of the channel adopted.
	ownMu sync.Mutex
	owned map[uint64]*remote
	// reporter hears about dropped raft messages and snapshot deliveries;
	// nil until SetReporter.
	reporter atomic.Pointer[chain.Reporter]
}

var (
	_ chain.Transport      = (*Transport)(nil)
	_ chain.ReporterSetter = (*Transport)(nil)
)

// SetReporter makes the Transport tell r (the channel's chain) when a raft
// message to a consenter is dropped (ReportUnreachable: its send queue was
// full or its stream broke) and whether a snapshot was sent
// (ReportSnapshot: true once written to the stream, false if dropped). r's
// methods must not block; they are called from the streams' goroutines.
func (t *Transport) SetReporter(r chain.Reporter) {
	if r == nil {
		t.reporter.Store(nil)
		return
	}
	t.reporter.Store(&r)
}

// unreachable reports a raft message to node id that was dropped.
func (t *Transport) unreachable(id uint64, m *pb.Message) {
	r := t.reporter.Load()
	if r == nil {
		return
	}
	(*r).ReportUnreachable(id)
	if m.GetType() == pb.MessageType_MsgSnap {
		(*r).ReportSnapshot(id, false)
	}
}

// snapshotSent reports a snapshot written to node id's stream.
func (t *Transport) snapshotSent(id uint64) {
	if r := t.reporter.Load(); r != nil {
		(*r).ReportSnapshot(id, true)
	}
}

// Transport returns the links of channel channelID for consenter self, and
// makes the server accept that channel's traffic from the given consenters. It
// replaces (and closes) the channel's previous Transport. Consenters whose
// certificates do not parse are left out, and logged.
func (c *Cluster) Transport(channelID string, self uint64, consenters map[uint64]channelconfig.Consenter) chain.Transport {
	t := &Transport{
		c: c, channel: channelID, self: self,
		members: map[uint64]*member{}, remotes: map[uint64]*remote{}, owned: map[uint64]*remote{},
	}
	log := c.log.With("channel", channelID)
	for id, cons := range consenters {
		m := &member{id: id, endpoint: fmt.Sprintf("%s:%d", cons.Host, cons.Port)}
		if p, _ := pem.Decode(cons.ClientTLSCert); p != nil {
			m.certs = append(m.certs, p.Bytes)
		}
		if p, _ := pem.Decode(cons.ServerTLSCert); p != nil {
			m.certs = append(m.certs, p.Bytes)
			m.serverDER = p.Bytes
		}
		if len(m.certs) == 0 {
			log.Error("consenter has no PEM TLS certificate; ignored", "raft_id", id)
			continue
		}
		t.members[id] = m
	}

	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return t // sends are dropped, forwards fail
	}
	old := c.channels[channelID]
	c.channels[channelID] = t
	for id, m := range t.members {
		if id == self {
			continue
		}
		if m.serverDER == nil {
			log.Error("consenter has no server TLS certificate; cannot reach it", "raft_id", id)
			continue
		}
		// An unchanged consenter keeps its stream: closing it would fail the
		// envelopes forwarded on it but not yet answered, which the leader
		// may well have ordered (a client retrying them would order them
		// twice).
		if r := old.adopt(id, m); r != nil {
			r.owner.Store(t)
			t.remotes[id], t.owned[id] = r, r
			continue
		}
		r := newRemote(t, m, log.With("remote", id, "endpoint", m.endpoint))
		ctx, cancel := context.WithCancel(c.ctx)
		r.cancel = cancel
		t.remotes[id], t.owned[id] = r, r
		c.wg.Add(1)
		go func() {
			defer c.wg.Done()
			defer close(r.done)
			r.run(ctx)
		}()
	}
	c.mu.Unlock()
	if old != nil {
		old.Close()
	}
	return t
}

// adopt hands over the remote of consenter id, if this (older) Transport
// still runs one to the same endpoint with the same certificates; nil
// otherwise. t may be nil.
func (t *Transport) adopt(id uint64, m *member) *remote {
	if t == nil {
		return nil
	}
	t.ownMu.Lock()
	defer t.ownMu.Unlock()
	r, ok := t.owned[id]
	if !ok || !t.members[id].same(m) {
		return nil
	}
	delete(t.owned, id)
	return r
}

// same reports whether two members are the same consenter at the same
// endpoint with the same certificates.
func (m *member) same(o *member) bool {
	return m.endpoint == o.endpoint && bytes.Equal(m.serverDER, o.serverDER) &&
		slices.EqualFunc(m.certs, o.certs, bytes.Equal)
}

// Close stops the channel's outgoing streams it still owns and waits for
// them; the server stops accepting the channel's traffic unless a newer
// Transport replaced this one. It always returns nil.
func (t *Transport) Close() error {
	t.once.Do(func() {
		t.c.mu.Lock()
		if t.c.channels[t.channel] == t {
			delete(t.c.channels, t.channel)
		}
		t.c.mu.Unlock()
		t.ownMu.Lock()
		owned := t.owned
		t.owned = nil
		t.ownMu.Unlock()
		for _, r := range owned {
			r.cancel()
		}
		for _, r := range owned {
			<-r.done
		}
	})
	return nil
}

// Send queues raft messages for their destinations without blocking; a message
// for an unknown node or a full queue is dropped.
func (t *Transport) Send(msgs []*pb.Message) {
	for _, m := range msgs {
		r, ok := t.remotes[m.GetTo()]
		if !ok {
			t.c.log.Debug("raft message for an unknown node dropped", "channel", t.channel, "to", m.GetTo(), "type", m.GetType().String())
			continue
		}
		r.sendConsensus(m)
	}
}

// Forward hands envelopes validated at config sequence seq to consenter `to`
// for ordering, queued all at once and in order so that they travel in as
// few requests as possible, and waits for their answers, at most
// Config.SubmitTimeout; errs[i] is envelope i's.
func (t *Transport) Forward(ctx context.Context, to uint64, envs [][]byte, seq uint64) (errs []error) {
	r, ok := t.remotes[to]
	if !ok {
		return slices.Repeat([]error{fmt.Errorf("cluster: %w: node %d on channel %s", ErrUnknownNode, to, t.channel)}, len(envs))
	}
	errs = make([]error, len(envs))
	ctx, cancel := context.WithTimeout(ctx, t.c.cfg.SubmitTimeout)
	defer cancel()
	r.submit(ctx, envs, seq, errs)
	return errs
}

// lookup finds the consenter of channel ch holding certificate der, and the
// channel's Transport.
func (c *Cluster) lookup(ch string, der []byte) (*Transport, *member, error) {
	c.mu.Lock()
	t, ok := c.channels[ch]
	c.mu.Unlock()
	if !ok {
		return nil, nil, fmt.Errorf("%w: %q", ErrUnknownChannel, ch)
	}
	for _, m := range t.members {
		if m.hasCert(der) {
			return t, m, nil
		}
	}
	return nil, nil, fmt.Errorf("%w of channel %q", ErrNotConsenter, ch)
}

// knownCert reports whether der identifies a consenter of any channel.
func (c *Cluster) knownCert(der []byte) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, t := range c.channels {
		for _, m := range t.members {
			if m.hasCert(der) {
				return true
			}
		}
	}
	return false
}
