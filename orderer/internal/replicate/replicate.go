// Package replicate owns how an orderer copies a channel's blocks from the
// other orderers: a Deliver stream (orderer.AtomicBroadcast over TLS, this
// node's TLS certificate as client certificate, seek requests signed by the
// node's identity) to one orderer at a time, failing over between the
// channel's orderers with backoff. Every block is verified before it is
// appended to the local ledger: its data hash, its number, the hash chain to
// the ledger's tip, and its orderer signatures against
// /Channel/Orderer/BlockValidation of the configuration in force, which each
// config block replaces. A block that fails is refused and the next orderer is
// tried.
//
// Pull copies a bounded range (raft snapshot catch-up, onboarding); Follow
// copies blocks as they are made (non-consenter orderers).
//
// Trust: block 0, pulled into an empty ledger, carries no signatures. Callers
// that start from an empty ledger pass the hash that the last pulled block
// must have (the PreviousHash of the join block an administrator supplied), so
// a forged history is caught at the end of the range; until then the ledger
// must not be served (the registrar hides onboarding channels).
//
// Concurrency: a Replicator holds no mutable state; Pull and Follow may run
// concurrently on different ledgers and return when their context ends.
package replicate

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"math/rand/v2"
	"time"

	"github.com/cairn-ledger/cairn/internal/block"
	"github.com/cairn-ledger/cairn/internal/blockverify"
	"github.com/cairn-ledger/cairn/internal/channelconfig"
	"github.com/cairn-ledger/cairn/internal/comm"
	"github.com/cairn-ledger/cairn/internal/envelope"
	"github.com/cairn-ledger/cairn/internal/policy"
	cb "github.com/hyperledger/fabric-protos-go-apiv2/common"
	ab "github.com/hyperledger/fabric-protos-go-apiv2/orderer"
	"google.golang.org/grpc"
)

// BlockValidationPolicy is the policy every pulled block's signatures satisfy.
const BlockValidationPolicy = blockverify.BlockValidationPolicy

// Defaults of Config.
const (
	DefaultMinBackoff    = 100 * time.Millisecond
	DefaultMaxBackoff    = 5 * time.Second
	DefaultRecvTimeout   = 10 * time.Second
	DefaultFollowTimeout = 30 * time.Second
)

// Errors callers branch on.
var (
	// ErrRefused wraps the reason a pulled block was not accepted.
	ErrRefused = errors.New("block refused")
	// ErrLedger wraps a failure of the local ledger; it ends Pull and Follow.
	ErrLedger = errors.New("local ledger")
)

// Ledger is the local block store the blocks are appended to.
type Ledger interface {
	Height() uint64
	Block(n uint64) (*cb.Block, error)
	Append(b *cb.Block) error
}

// Endpoints yields the channel's orderer addresses (host:port of their
// AtomicBroadcast service) and the PEM TLS roots that issue their certificates.
type Endpoints func() (addresses []string, tlsRoots [][]byte)

// Dialer opens a client connection to an orderer; tests replace it.
type Dialer func(addr string, tlsRoots [][]byte) (*grpc.ClientConn, error)

// Config configures a Replicator. ChannelID, Signer and Endpoints are required.
type Config struct {
	ChannelID string
	// Signer signs the seek requests; it must satisfy /Channel/Readers.
	Signer envelope.Signer
	// ClientCert is presented to the orderers (mutual TLS).
	ClientCert *tls.Certificate
	Endpoints  Endpoints
	// Dial replaces the TLS dialer (tests).
	Dial Dialer
	// MinBackoff and MaxBackoff bound the wait after a round over every
	// orderer that brought no block.
	MinBackoff, MaxBackoff time.Duration
	// RecvTimeout drops a Pull stream that sends nothing for this long.
	RecvTimeout time.Duration
	// FollowTimeout drops a Follow stream that sends nothing for this long, so
	// a quiet or stuck orderer is eventually swapped for another.
	FollowTimeout time.Duration
	Logger        *slog.Logger
}

// Replicator pulls one channel's blocks from other orderers.
type Replicator struct {
	cfg Config
	log *slog.Logger
}

// New checks cfg and fills in defaults.
func New(cfg Config) (*Replicator, error) {
	switch {
	case cfg.ChannelID == "":
		return nil, errors.New("replicate: no channel ID")
	case cfg.Signer == nil:
		return nil, errors.New("replicate: no signer")
	case cfg.Endpoints == nil:
		return nil, errors.New("replicate: no endpoints")
	}
	if cfg.MinBackoff <= 0 {
		cfg.MinBackoff = DefaultMinBackoff
	}
	if cfg.MaxBackoff < cfg.MinBackoff {
		cfg.MaxBackoff = max(DefaultMaxBackoff, cfg.MinBackoff)
	}
	if cfg.RecvTimeout <= 0 {
		cfg.RecvTimeout = DefaultRecvTimeout
	}
	if cfg.FollowTimeout <= 0 {
		cfg.FollowTimeout = DefaultFollowTimeout
	}
	if cfg.Dial == nil {
		cfg.Dial = func(addr string, roots [][]byte) (*grpc.ClientConn, error) {
			pool, err := comm.CertPoolFromPEM(roots...)
			if err != nil {
				return nil, err
			}
			tc := &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
			if cfg.ClientCert != nil {
				tc.Certificates = []tls.Certificate{*cfg.ClientCert}
			}
			return comm.Dial(addr, tc)
		}
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Replicator{cfg: cfg, log: log.With("channel", cfg.ChannelID, "component", "replicate")}, nil
}

// Pull appends blocks l.Height()..to to l. When wantHash is set, block `to`
// must have that header hash. It retries, failing over between orderers, until
// every block is in, ctx ends, or the ledger fails.
func (r *Replicator) Pull(ctx context.Context, l Ledger, to uint64, wantHash []byte) error {
	if l.Height() > to {
		return nil
	}
	return r.run(ctx, l, func(v *verifier) bool { return v.next > to }, &seekPlan{to: to, wantHash: wantHash})
}

// Follow appends blocks from l.Height() on as the other orderers make them,
// until ctx ends (it then returns ctx.Err()) or the ledger fails.
func (r *Replicator) Follow(ctx context.Context, l Ledger) error {
	return r.run(ctx, l, func(*verifier) bool { return false }, &seekPlan{to: math.MaxUint64, follow: true})
}

type seekPlan struct {
	to       uint64
	wantHash []byte
	follow   bool
}

func (r *Replicator) run(ctx context.Context, l Ledger, done func(*verifier) bool, plan *seekPlan) error {
	v, err := newVerifier(r.cfg.ChannelID, l)
	if err != nil {
		return err
	}
	backoff := r.cfg.MinBackoff
	for {
		addrs, roots := r.cfg.Endpoints()
		if len(addrs) == 0 {
			r.log.Warn("channel has no orderer endpoints to pull from")
		}
		progressed := false
		for _, i := range rand.Perm(len(addrs)) {
			n, err := r.pullFrom(ctx, addrs[i], roots, v, plan)
			progressed = progressed || n > 0
			if errors.Is(err, ErrLedger) {
				return err
			}
			if done(v) {
				return nil
			}
			if ctx.Err() != nil {
				return ctx.Err()
			}
			if err != nil {
				r.log.Info("pulling blocks interrupted", "orderer", addrs[i], "blocks", n, "next", v.next, "err", err)
			}
		}
		if progressed {
			backoff = r.cfg.MinBackoff
			continue
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, r.cfg.MaxBackoff)
	}
}

// pullFrom streams blocks v.next..plan.to from one orderer; it returns how
// many it appended.
func (r *Replicator) pullFrom(ctx context.Context, addr string, roots [][]byte, v *verifier, plan *seekPlan) (int, error) {
	conn, err := r.cfg.Dial(addr, roots)
	if err != nil {
		return 0, err
	}
	defer conn.Close()
	sctx, cancel := context.WithCancel(ctx)
	defer cancel()
	timeout := r.cfg.RecvTimeout
	behavior := ab.SeekInfo_FAIL_IF_NOT_READY
	if plan.follow {
		timeout, behavior = r.cfg.FollowTimeout, ab.SeekInfo_BLOCK_UNTIL_READY
	}
	watchdog := time.AfterFunc(timeout, cancel)
	defer watchdog.Stop()

	stream, err := ab.NewAtomicBroadcastClient(conn).Deliver(sctx)
	if err != nil {
		return 0, fmt.Errorf("open deliver stream: %w", err)
	}
	pos := func(n uint64) *ab.SeekPosition {
		return &ab.SeekPosition{Type: &ab.SeekPosition_Specified{Specified: &ab.SeekSpecified{Number: n}}}
	}
	seek, err := envelope.NewSignedEnvelope(cb.HeaderType_DELIVER_SEEK_INFO, r.cfg.ChannelID, r.cfg.Signer,
		&ab.SeekInfo{Start: pos(v.next), Stop: pos(plan.to), Behavior: behavior})
	if err != nil {
		return 0, fmt.Errorf("sign seek request: %w", err)
	}
	if err := stream.Send(seek); err != nil {
		return 0, fmt.Errorf("send seek request: %w", err)
	}
	appended := 0
	for {
		resp, err := stream.Recv()
		switch {
		case errors.Is(err, io.EOF):
			return appended, errors.New("orderer closed the stream")
		case err != nil:
			return appended, fmt.Errorf("receive: %w", err)
		}
		switch t := resp.Type.(type) {
		case *ab.DeliverResponse_Status:
			if t.Status == cb.Status_SUCCESS && !plan.follow {
				return appended, nil
			}
			return appended, fmt.Errorf("orderer answered %s", t.Status)
		case *ab.DeliverResponse_Block:
			want := plan.wantHash
			if t.Block.GetHeader().GetNumber() != plan.to {
				want = nil
			}
			if err := v.check(t.Block, want); err != nil {
				// A bad block is that orderer's problem: drop the stream, try another.
				return appended, fmt.Errorf("from %s: %w", addr, err)
			}
			if err := v.append(t.Block); err != nil {
				return appended, err
			}
			appended++
			watchdog.Reset(timeout)
			if !plan.follow && v.next > plan.to {
				return appended, nil
			}
		default:
			return appended, fmt.Errorf("unexpected deliver response %T", resp.Type)
		}
	}
}

// verifier tracks the tip of a ledger and the configuration in force.
type verifier struct {
	channel string
	l       Ledger
	next    uint64
	prev    *cb.BlockHeader       // nil when the ledger is empty
	bundle  *channelconfig.Bundle // nil when the ledger is empty
}

func newVerifier(channel string, l Ledger) (*verifier, error) {
	v := &verifier{channel: channel, l: l, next: l.Height()}
	if v.next == 0 {
		return v, nil
	}
	last, err := l.Block(v.next - 1)
	if err != nil {
		return nil, fmt.Errorf("%w: read block %d: %v", ErrLedger, v.next-1, err)
	}
	v.prev = last.Header
	cfgNum := last.Header.Number
	if !block.IsConfig(last) {
		if cfgNum, err = block.LastConfigIndex(last); err != nil {
			return nil, fmt.Errorf("%w: block %d: %v", ErrLedger, last.Header.Number, err)
		}
	}
	cfgBlock := last
	if cfgNum != last.Header.Number {
		if cfgBlock, err = l.Block(cfgNum); err != nil {
			return nil, fmt.Errorf("%w: read config block %d: %v", ErrLedger, cfgNum, err)
		}
	}
	if v.bundle, err = channelconfig.FromBlock(cfgBlock); err != nil {
		return nil, fmt.Errorf("%w: config block %d: %v", ErrLedger, cfgNum, err)
	}
	return v, nil
}

// check verifies b as the ledger's next block; wantHash, if set, is the
// header hash it must have.
func (v *verifier) check(b *cb.Block, wantHash []byte) error {
	if err := Verify(b, v.next, v.prev, v.bundle); err != nil {
		return fmt.Errorf("%w: %w", ErrRefused, err)
	}
	if wantHash != nil && !bytes.Equal(block.HeaderHash(b.Header), wantHash) {
		return fmt.Errorf("%w: block %d hash %x, want %x", ErrRefused, b.Header.Number, block.HeaderHash(b.Header), wantHash)
	}
	if v.bundle == nil || block.IsConfig(b) {
		bundle, err := channelconfig.FromBlock(b)
		if err != nil {
			return fmt.Errorf("%w: config block %d: %w", ErrRefused, b.Header.Number, err)
		}
		if bundle.ChannelID() != v.channel {
			return fmt.Errorf("%w: config block %d is of channel %q", ErrRefused, b.Header.Number, bundle.ChannelID())
		}
	}
	return nil
}

func (v *verifier) append(b *cb.Block) error {
	if err := v.l.Append(b); err != nil {
		return fmt.Errorf("%w: append block %d: %v", ErrLedger, b.Header.Number, err)
	}
	if v.bundle == nil || block.IsConfig(b) {
		// check decoded it already; decoding twice keeps check free of effects.
		bundle, err := channelconfig.FromBlock(b)
		if err != nil {
			return fmt.Errorf("%w: config block %d: %v", ErrLedger, b.Header.Number, err)
		}
		v.bundle = bundle
	}
	v.prev = b.Header
	v.next++
	return nil
}

// Policies yields the policy in force at a path.
type Policies interface {
	Policies() *policy.Manager
}

// Verify checks that b is block number want, that its data hash matches its
// data, that it chains to prev and, unless it is the first block of an empty
// ledger (prev and cfg nil), that its orderer signatures satisfy
// /Channel/Orderer/BlockValidation of cfg.
func Verify(b *cb.Block, want uint64, prev *cb.BlockHeader, cfg Policies) error {
	if err := blockverify.Chain(b, want, prev); err != nil {
		return err
	}
	if prev == nil {
		if want != 0 || !block.IsConfig(b) {
			return fmt.Errorf("block %d: the first block of a ledger must be a config block numbered 0", want)
		}
		return nil
	}
	pol, err := cfg.Policies().Policy(BlockValidationPolicy)
	if err != nil {
		return fmt.Errorf("block validation policy: %w", err)
	}
	return blockverify.Signatures(b, pol)
}

// SignedData extracts the orderer signatures of a block (see blockverify).
func SignedData(b *cb.Block) ([]policy.SignedData, error) { return blockverify.SignedData(b) }
