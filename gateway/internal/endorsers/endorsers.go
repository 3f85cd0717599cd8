// Package endorsers owns the gateway's client connections to other peers'
// Endorser services. Connections use mutual TLS with the local peer's TLS
// certificate, verify the remote peer against its organisation's TLS roots
// from the channel configuration, are opened lazily, cached per address and
// roots, and closed by Close (or Forget, for a peer that stopped answering).
//
// Concurrency: a *Pool is safe for concurrent use.
package endorsers

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"errors"
	"fmt"
	"sync"

	pb "github.com/hyperledger/fabric-protos-go-apiv2/peer"
	"google.golang.org/grpc"

	"github.com/cairn-ledger/cairn/internal/comm"
)

// Config configures a Pool.
type Config struct {
	// TLS carries the client certificate; its RootCAs are replaced by each
	// peer's organisation roots.
	TLS *tls.Config
	// DialOptions are extra gRPC dial options.
	DialOptions []grpc.DialOption
}

// Pool caches one connection per remote peer.
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

// ErrClosed is returned after Close.
var ErrClosed = errors.New("endorser connection pool closed")

// NewPool returns an empty pool.
func NewPool(cfg Config) *Pool {
	return &Pool{cfg: cfg, conns: map[key]*grpc.ClientConn{}}
}

// ProcessProposal sends a signed proposal to the peer at address, whose TLS
// certificate must chain to tlsRootCerts (PEM).
func (p *Pool) ProcessProposal(ctx context.Context, address string, tlsRootCerts [][]byte, sp *pb.SignedProposal) (*pb.ProposalResponse, error) {
	c, err := p.conn(address, tlsRootCerts)
	if err != nil {
		return nil, err
	}
	return pb.NewEndorserClient(c).ProcessProposal(ctx, sp)
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
	if len(roots) == 0 {
		return nil, fmt.Errorf("peer %s: no TLS root certificates for its organisation", address)
	}
	tlsCfg := p.cfg.TLS.Clone()
	if tlsCfg == nil {
		tlsCfg = &tls.Config{MinVersion: tls.VersionTLS12}
	}
	pool, err := comm.CertPoolFromPEM(roots...)
	if err != nil {
		return nil, fmt.Errorf("peer %s TLS roots: %w", address, err)
	}
	tlsCfg.RootCAs = pool
	c, err := comm.Dial(address, tlsCfg, p.cfg.DialOptions...)
	if err != nil {
		return nil, err
	}
	p.conns[k] = c
	return c, nil
}

// Forget closes the connections to address: the peer stopped answering, and
// the next call dials afresh, as Fabric's gateway removes such endorsers.
func (p *Pool) Forget(address string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for k, c := range p.conns {
		if k.address == address {
			_ = c.Close()
			delete(p.conns, k)
		}
	}
}

// Close closes every connection; later calls fail with ErrClosed.
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
