// Package puller owns how a peer receives a channel's blocks from the ordering
// service: a Deliver stream to one orderer at a time, failing over between the
// channel's orderers with backoff, and verification of every block (structure,
// number, hash chain, orderer signatures against /Channel/Orderer/BlockValidation)
// before it is handed on. Run is owned by the caller and returns when its
// context ends; while it runs, one receiver goroutine per stream reads up to
// Config.Prefetch blocks ahead of verification and the handler, and is
// stopped and waited for before the stream is left.
package puller

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"math/rand/v2"
	"sync"
	"time"

	cb "github.com/hyperledger/fabric-protos-go-apiv2/common"
	ab "github.com/hyperledger/fabric-protos-go-apiv2/orderer"

	"github.com/cairn-ledger/cairn/internal/blockverify"
	"github.com/cairn-ledger/cairn/internal/comm"
	"github.com/cairn-ledger/cairn/internal/envelope"
	"github.com/cairn-ledger/cairn/internal/policy"
)

// PolicySource yields the policy manager in force (it changes with config blocks).
type PolicySource interface {
	Policy(path string) (policy.Policy, error)
}

// Orderers yields the channel's current orderer endpoints and TLS roots.
type Orderers func() (addresses []string, tlsRoots [][]byte)

// Config configures a Puller.
type Config struct {
	ChannelID string
	// Signer signs the Deliver seek requests (the peer's identity).
	Signer envelope.Signer
	// ClientCert, if set, is presented to orderers (mutual TLS).
	ClientCert *tls.Certificate
	Orderers   Orderers
	Logger     *slog.Logger
	// MinBackoff and MaxBackoff bound the wait between reconnection attempts.
	MinBackoff, MaxBackoff time.Duration
	// Prefetch is how many received blocks may wait while the handler is
	// busy, so that gRPC receive and decoding overlap validation (default 4).
	Prefetch int
}

// Puller pulls blocks of one channel.
type Puller struct {
	cfg Config
}

// New returns a Puller.
func New(cfg Config) *Puller {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.MinBackoff == 0 {
		cfg.MinBackoff = 100 * time.Millisecond
	}
	if cfg.MaxBackoff == 0 {
		cfg.MaxBackoff = 10 * time.Second
	}
	if cfg.Prefetch <= 0 {
		cfg.Prefetch = 4
	}
	return &Puller{cfg: cfg}
}

// Handler receives verified blocks in order. It returns the policies to verify
// the next block with (a config block may change them) or an error, which stops
// Run.
type Handler func(ctx context.Context, b *cb.Block) error

// Next reports the next block number wanted, the previous block's header and
// the policies in force; it is consulted at each (re)connection and after each
// block.
type Next func() (number uint64, prev *cb.BlockHeader, policies PolicySource)

// Run pulls blocks from next() onwards until ctx ends or handle fails.
func (p *Puller) Run(ctx context.Context, next Next, handle Handler) error {
	backoff := p.cfg.MinBackoff
	for attempt := 0; ; attempt++ {
		addrs, roots := p.cfg.Orderers()
		if len(addrs) == 0 {
			p.cfg.Logger.Warn("channel has no orderer endpoints", "channel", p.cfg.ChannelID)
		}
		progressed := false
		for _, i := range rand.Perm(len(addrs)) {
			n, err := p.pullFrom(ctx, addrs[i], roots, next, handle)
			if n > 0 {
				progressed = true
			}
			if ctx.Err() != nil {
				return ctx.Err()
			}
			var fatal *handlerError
			if errors.As(err, &fatal) {
				return fatal.err
			}
			p.cfg.Logger.Warn("block delivery interrupted", "channel", p.cfg.ChannelID, "orderer", addrs[i], "blocks", n, "error", err)
		}
		if progressed {
			backoff = p.cfg.MinBackoff
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(backoff):
		}
		backoff = time.Duration(math.Min(float64(backoff*2), float64(p.cfg.MaxBackoff)))
	}
}

type handlerError struct{ err error }

// receivedResp is one result of stream.Recv.
type receivedResp struct {
	resp *ab.DeliverResponse
	err  error
}

func (e *handlerError) Error() string { return e.err.Error() }

// pullFrom streams blocks from one orderer until the stream breaks; it returns
// how many blocks it delivered.
func (p *Puller) pullFrom(ctx context.Context, addr string, roots [][]byte, next Next, handle Handler) (int, error) {
	pool, err := comm.CertPoolFromPEM(roots...)
	if err != nil {
		return 0, err
	}
	tlsCfg := &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
	if p.cfg.ClientCert != nil {
		tlsCfg.Certificates = []tls.Certificate{*p.cfg.ClientCert}
	}
	conn, err := comm.Dial(addr, tlsCfg)
	if err != nil {
		return 0, err
	}
	defer conn.Close()
	sctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	defer func() {
		cancel()
		wg.Wait()
	}()
	stream, err := ab.NewAtomicBroadcastClient(conn).Deliver(sctx)
	if err != nil {
		return 0, fmt.Errorf("open deliver stream: %w", err)
	}
	start, _, _ := next()
	seek, err := envelope.NewSignedEnvelope(cb.HeaderType_DELIVER_SEEK_INFO, p.cfg.ChannelID, p.cfg.Signer, &ab.SeekInfo{
		Start:    &ab.SeekPosition{Type: &ab.SeekPosition_Specified{Specified: &ab.SeekSpecified{Number: start}}},
		Stop:     &ab.SeekPosition{Type: &ab.SeekPosition_Specified{Specified: &ab.SeekSpecified{Number: math.MaxUint64}}},
		Behavior: ab.SeekInfo_BLOCK_UNTIL_READY,
	})
	if err != nil {
		return 0, err
	}
	if err := stream.Send(seek); err != nil {
		return 0, fmt.Errorf("send seek: %w", err)
	}
	// The receiver reads ahead of verification and the handler; it stops when
	// the stream fails or sctx ends (which also ends Recv).
	received := make(chan receivedResp, p.cfg.Prefetch)
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			resp, err := stream.Recv()
			select {
			case received <- receivedResp{resp, err}:
			case <-sctx.Done():
				return
			}
			if err != nil {
				return
			}
		}
	}()
	delivered := 0
	for {
		var r receivedResp
		select {
		case r = <-received:
		case <-ctx.Done():
			return delivered, ctx.Err()
		}
		resp, err := r.resp, r.err
		if err == io.EOF {
			return delivered, errors.New("orderer closed the stream")
		}
		if err != nil {
			return delivered, fmt.Errorf("receive: %w", err)
		}
		switch t := resp.Type.(type) {
		case *ab.DeliverResponse_Status:
			return delivered, fmt.Errorf("orderer answered %s", t.Status)
		case *ab.DeliverResponse_Block:
			want, prev, policies := next()
			if err := Verify(t.Block, want, prev, policies); err != nil {
				// A bad block from one orderer is that orderer's problem: drop the
				// stream and try another.
				return delivered, fmt.Errorf("refused block from %s: %w", addr, err)
			}
			if err := handle(ctx, t.Block); err != nil {
				return delivered, &handlerError{err: err}
			}
			delivered++
		default:
			return delivered, fmt.Errorf("unexpected deliver response %T", resp.Type)
		}
	}
}

// Verify checks that b is block number want, chains to prev (nil for block 0),
// has a data hash matching its data, and carries orderer signatures satisfying
// /Channel/Orderer/BlockValidation.
func Verify(b *cb.Block, want uint64, prev *cb.BlockHeader, policies PolicySource) error {
	if err := blockverify.Chain(b, want, prev); err != nil {
		return err
	}
	pol, err := policies.Policy(blockverify.BlockValidationPolicy)
	if err != nil {
		return fmt.Errorf("block validation policy: %w", err)
	}
	return blockverify.Signatures(b, pol)
}

// SignedData extracts the orderer signatures of a block (see blockverify).
func SignedData(b *cb.Block) ([]policy.SignedData, error) { return blockverify.SignedData(b) }
