// Package orderers owns the gateway's client connections to ordering service
// nodes and the Broadcast exchanges over them. Connections are opened lazily,
// cached per address and TLS trust roots, and closed by Close.
//
// Each orderer gets one long-lived Broadcast stream that all concurrent
// submissions share: an orderer answers the envelopes of a stream in the order
// it received them, so callers queue for their response in send order. A
// stream per transaction (as Fabric's gateway opens) costs both sides a gRPC
// stream set-up and tear-down, and the orderer new handler goroutines whose
// stacks grow for the signature check, for every transaction. A stream that
// fails fails its waiting callers; the next Broadcast opens a new one.
//
// The pool also learns which orderer leads each channel's raft group (see
// Order), so that the gateway submits there and no follower has to forward.
//
// Concurrency: a *Pool is safe for concurrent use; Broadcast may run on many
// goroutines at once. The pool owns one receiving goroutine per open stream
// and one goroutine per round of leader questions under way; Close stops them
// and waits for them. Close must not race with Broadcast calls that should
// succeed: it closes connections in use.
package orderers

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/cairn-ledger/cairn/internal/comm"
	"github.com/hyperledger/fabric-protos-go-apiv2/common"
	ab "github.com/hyperledger/fabric-protos-go-apiv2/orderer"
	"google.golang.org/grpc"
	"google.golang.org/grpc/connectivity"
)

// Config configures a Pool.
type Config struct {
	// TLS is the client TLS configuration (client certificate for mutual TLS,
	// and the roots used when an endpoint comes with none of its own).
	TLS *tls.Config
	// DialOptions are extra gRPC dial options.
	DialOptions []grpc.DialOption
	// StallTimeout: a caller whose deadline passes after it waited at least
	// this long for the orderer's answer ends the stream it waited on, on the
	// view that the orderer stopped reading it (0: DefaultStallTimeout).
	StallTimeout time.Duration
	// LeaderRefresh is how old the pool's knowledge of a channel's raft
	// leader may grow before Order asks the orderers again
	// (0: DefaultLeaderRefresh).
	LeaderRefresh time.Duration
}

// Pool caches one gRPC connection and one Broadcast stream per orderer
// endpoint.
type Pool struct {
	cfg Config
	// ctx is the root of the pool's Broadcast streams, which outlive the
	// calls that open them; Close cancels it.
	ctx    context.Context
	cancel context.CancelFunc
	// receivers counts the streams' receiving goroutines.
	receivers sync.WaitGroup
	// askers counts the goroutines asking orderers who leads a channel.
	askers sync.WaitGroup

	mu      sync.Mutex
	conns   map[key]*grpc.ClientConn
	streams map[key]*stream
	leaders map[string]*leaderView // by channel
	closed  bool
}

type key struct {
	address string
	roots   [sha256.Size]byte
}

// DefaultStallTimeout is Config.StallTimeout when it is zero.
const DefaultStallTimeout = 5 * time.Second

// ErrClosed is returned by Broadcast after Close.
var ErrClosed = errors.New("orderer connection pool closed")

// NewPool returns an empty pool.
func NewPool(cfg Config) *Pool {
	if cfg.StallTimeout <= 0 {
		cfg.StallTimeout = DefaultStallTimeout
	}
	if cfg.LeaderRefresh <= 0 {
		cfg.LeaderRefresh = DefaultLeaderRefresh
	}
	ctx, cancel := context.WithCancel(context.Background())
	return &Pool{cfg: cfg, ctx: ctx, cancel: cancel, conns: make(map[key]*grpc.ClientConn), streams: make(map[key]*stream), leaders: make(map[string]*leaderView)}
}

// Broadcast sends one envelope to the orderer at address over the pool's
// Broadcast stream to it and returns the orderer's response to it.
// tlsRootCerts (PEM) are the channel's trust roots for the orderer's TLS
// certificate. If ctx ends first, Broadcast returns ctx's error; the envelope
// may still be ordered.
func (p *Pool) Broadcast(ctx context.Context, address string, tlsRootCerts [][]byte, env *common.Envelope) (*ab.BroadcastResponse, error) {
	k := poolKey(address, tlsRootCerts)
	for attempt := 0; ; attempt++ {
		s, err := p.stream(k, tlsRootCerts)
		if err != nil {
			return nil, err
		}
		sent := time.Now()
		done, err := s.send(ctx, env)
		if errors.Is(err, errBroken) && attempt == 0 {
			// The stream failed before this envelope was sent: open another.
			continue
		}
		if err != nil {
			return nil, err
		}
		select {
		case r := <-done:
			return r.resp, r.err
		case <-ctx.Done():
			if errors.Is(ctx.Err(), context.DeadlineExceeded) && time.Since(sent) >= p.cfg.StallTimeout {
				// An orderer that has not answered for so long may have
				// stopped reading the stream: end it, failing the other
				// callers waiting on it (their gateways try another orderer),
				// so that no one stays blocked behind it. A caller that went
				// away, or whose own deadline was short, leaves it alone.
				s.kill()
			}
			return nil, ctx.Err()
		}
	}
}

func poolKey(address string, roots [][]byte) key {
	h := sha256.New()
	for _, r := range roots {
		h.Write(r)
		h.Write([]byte{0})
	}
	k := key{address: address}
	copy(k.roots[:], h.Sum(nil))
	return k
}

// stream returns the open Broadcast stream for k, or a new one (opened by its
// first send) if there is none or it failed.
func (p *Pool) stream(k key, roots [][]byte) (*stream, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return nil, ErrClosed
	}
	if s, ok := p.streams[k]; ok && !s.failed() {
		return s, nil
	}
	conn, err := p.connLocked(k, roots)
	if err != nil {
		return nil, err
	}
	s := &stream{pool: p, address: k.address, conn: conn}
	p.streams[k] = s
	return s, nil
}

// startReceiver runs s's receiving goroutine, unless the pool is closed.
func (p *Pool) startReceiver(s *stream) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return ErrClosed
	}
	p.receivers.Add(1)
	go func() {
		defer p.receivers.Done()
		s.receive()
	}()
	return nil
}

func (p *Pool) connLocked(k key, roots [][]byte) (*grpc.ClientConn, error) {
	if c, ok := p.conns[k]; ok {
		return c, nil
	}
	tlsCfg := p.cfg.TLS.Clone()
	if tlsCfg == nil {
		tlsCfg = &tls.Config{MinVersion: tls.VersionTLS12}
	}
	if len(roots) > 0 {
		pool, err := comm.CertPoolFromPEM(roots...)
		if err != nil {
			return nil, fmt.Errorf("orderer %s TLS roots: %w", k.address, err)
		}
		tlsCfg.RootCAs = pool
	}
	c, err := comm.Dial(k.address, tlsCfg, p.cfg.DialOptions...)
	if err != nil {
		return nil, err
	}
	p.conns[k] = c
	return c, nil
}

// Close ends every stream (their waiting callers fail), closes every cached
// connection and waits for the streams' goroutines and any leader questions
// under way; later Broadcasts fail with ErrClosed.
func (p *Pool) Close() error {
	p.mu.Lock()
	p.closed = true
	p.cancel()
	var errs []error
	for k, c := range p.conns {
		if err := c.Close(); err != nil {
			errs = append(errs, fmt.Errorf("close connection to %s: %w", k.address, err))
		}
		delete(p.conns, k)
	}
	clear(p.streams)
	p.mu.Unlock()
	p.receivers.Wait()
	p.askers.Wait()
	return errors.Join(errs...)
}

// errBroken is returned by stream.send for a stream that failed before the
// envelope was sent.
var errBroken = errors.New("broadcast stream failed")

// result is the orderer's answer to one envelope.
type result struct {
	resp *ab.BroadcastResponse
	err  error
}

// stream is one long-lived Broadcast stream shared by concurrent callers.
type stream struct {
	pool    *Pool
	address string
	conn    *grpc.ClientConn

	// sendMu serialises opening the stream and sending on it, each send with
	// queueing its caller, so that the queue is in send order.
	sendMu sync.Mutex
	client ab.AtomicBroadcast_BroadcastClient
	cancel context.CancelFunc

	// mu guards waiting and err. The receiver takes only mu, never sendMu:
	// a Send blocked by flow control must not stop responses being read.
	mu      sync.Mutex
	waiting []chan result // front: the caller of the next response
	err     error         // set once the stream failed
}

func (s *stream) failed() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.err != nil
}

// kill ends the stream, if it is open.
func (s *stream) kill() {
	s.mu.Lock()
	cancel := s.cancel
	s.mu.Unlock()
	if cancel != nil {
		cancel()
	}
}

// send queues the caller and sends env; the returned channel receives the
// orderer's response to env, or the error that ended the stream. Opening the
// stream waits for the connection at most until ctx ends.
func (s *stream) send(ctx context.Context, env *common.Envelope) (<-chan result, error) {
	s.sendMu.Lock()
	defer s.sendMu.Unlock()
	if s.failed() {
		return nil, errBroken
	}
	if s.client == nil {
		if err := s.open(ctx); err != nil {
			return nil, err
		}
	}
	done := make(chan result, 1)
	s.mu.Lock()
	if s.err != nil {
		s.mu.Unlock()
		return nil, errBroken
	}
	s.waiting = append(s.waiting, done)
	s.mu.Unlock()
	if err := s.client.Send(env); err != nil {
		// The stream is broken: Recv fails too, and the receiver fails every
		// waiting caller, this one included.
		s.cancel()
	}
	return done, nil
}

// open waits (until ctx ends) for the connection to be ready, opens the gRPC
// stream, which lives until the pool closes or the stream fails, and starts
// its receiver; on failure the stream is marked failed.
func (s *stream) open(ctx context.Context) error {
	sctx, cancel := context.WithCancel(s.pool.ctx)
	s.mu.Lock()
	s.cancel = cancel
	s.mu.Unlock()
	err := waitReady(ctx, s.conn)
	if err == nil {
		s.client, err = ab.NewAtomicBroadcastClient(s.conn).Broadcast(sctx)
	}
	if err == nil {
		err = s.pool.startReceiver(s)
	}
	if err != nil {
		cancel()
		s.mu.Lock()
		s.err = err
		s.mu.Unlock()
	}
	return err
}

// waitReady waits until conn is ready, failing as a stream opened on it would
// (without WaitForReady) once it is in transient failure, or when ctx ends.
func waitReady(ctx context.Context, conn *grpc.ClientConn) error {
	conn.Connect()
	for {
		st := conn.GetState()
		switch st {
		case connectivity.Ready:
			return nil
		case connectivity.TransientFailure, connectivity.Shutdown:
			return fmt.Errorf("connection to orderer %s: %s", conn.Target(), st)
		}
		if !conn.WaitForStateChange(ctx, st) {
			return ctx.Err()
		}
	}
}

// receive hands each response to the caller at the front of the queue until
// the stream ends, then fails the callers still waiting.
func (s *stream) receive() {
	defer s.cancel()
	for {
		resp, err := s.client.Recv()
		s.mu.Lock()
		if err == nil && len(s.waiting) == 0 {
			err = errors.New("response to no envelope")
		}
		if err != nil {
			s.err = fmt.Errorf("broadcast stream to %s: %w", s.address, err)
			waiting := s.waiting
			s.waiting = nil
			s.mu.Unlock()
			for _, done := range waiting {
				done <- result{err: s.err}
			}
			return
		}
		done := s.waiting[0]
		s.waiting[0] = nil
		s.waiting = s.waiting[1:]
		s.mu.Unlock()
		done <- result{resp: resp}
	}
}
