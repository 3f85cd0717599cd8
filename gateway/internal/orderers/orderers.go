// Package orderers owns the gateway's client connections to ordering service
// nodes and the one-envelope Broadcast exchange over them. Connections are opened
// lazily, cached per address and TLS trust roots, and closed by Close.
//
// Concurrency: a *Pool is safe for concurrent use; Broadcast may run on many
// goroutines at once. Close must not race with Broadcast calls that should
// succeed: it closes connections in use.
package orderers

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"errors"
	"fmt"
	"sync"

	"github.com/cairn-ledger/cairn/internal/comm"
	"github.com/hyperledger/fabric-protos-go-apiv2/common"
	ab "github.com/hyperledger/fabric-protos-go-apiv2/orderer"
	"google.golang.org/grpc"
)

// Config configures a Pool.
type Config struct {
	// TLS is the client TLS configuration (client certificate for mutual TLS,
	// and the roots used when an endpoint comes with none of its own).
	TLS *tls.Config
	// DialOptions are extra gRPC dial options.
	DialOptions []grpc.DialOption
}

// Pool caches one gRPC connection per orderer endpoint.
type Pool struct {
	cfg Config

	mu     sync.Mutex
	conns  map[key]*grpc.ClientConn
	closed bool
}

type key struct {
	address string
	roots   [sha256.Size]byte
}

// ErrClosed is returned by Broadcast after Close.
var ErrClosed = errors.New("orderer connection pool closed")

// NewPool returns an empty pool.
func NewPool(cfg Config) *Pool {
	return &Pool{cfg: cfg, conns: make(map[key]*grpc.ClientConn)}
}

// Broadcast sends one envelope to the orderer at address over a Broadcast
// stream and returns the orderer's one response. tlsRootCerts (PEM) are the
// channel's trust roots for the orderer's TLS certificate.
func (p *Pool) Broadcast(ctx context.Context, address string, tlsRootCerts [][]byte, env *common.Envelope) (*ab.BroadcastResponse, error) {
	conn, err := p.conn(address, tlsRootCerts)
	if err != nil {
		return nil, err
	}
	// Cancelling the context when done tears down the stream without a CloseSend
	// dance; the orderer sees the end of one short-lived stream per transaction.
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stream, err := ab.NewAtomicBroadcastClient(conn).Broadcast(ctx)
	if err != nil {
		return nil, err
	}
	if err := stream.Send(env); err != nil {
		return nil, err
	}
	resp, err := stream.Recv()
	if err != nil {
		return nil, err
	}
	return resp, nil
}

func (p *Pool) conn(address string, roots [][]byte) (*grpc.ClientConn, error) {
	h := sha256.New()
	for _, r := range roots {
		h.Write(r)
		h.Write([]byte{0})
	}
	k := key{address: address}
	copy(k.roots[:], h.Sum(nil))

	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return nil, ErrClosed
	}
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
			return nil, fmt.Errorf("orderer %s TLS roots: %w", address, err)
		}
		tlsCfg.RootCAs = pool
	}
	c, err := comm.Dial(address, tlsCfg, p.cfg.DialOptions...)
	if err != nil {
		return nil, err
	}
	p.conns[k] = c
	return c, nil
}

// Close closes every cached connection; later Broadcasts fail with ErrClosed.
func (p *Pool) Close() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.closed = true
	var errs []error
	for k, c := range p.conns {
		if err := c.Close(); err != nil {
			errs = append(errs, fmt.Errorf("close connection to %s: %w", k.address, err))
		}
		delete(p.conns, k)
	}
	return errors.Join(errs...)
}
