// Package gateway owns the Fabric Gateway gRPC service (gateway.Gateway) that
// every Cairn peer hosts, as Fabric 2.4+ peers do: Evaluate and Endorse run a
// proposal on the channel's endorsers, Submit hands the signed transaction to an
// orderer of the channel, CommitStatus waits for a transaction's validation code
// and ChaincodeEvents streams a chaincode's events block by block. Its status
// codes, messages and ErrorDetail entries follow Fabric's gateway so that the
// official fabric-gateway client SDKs classify failures as they would against
// Fabric.
//
// Endorsement planning follows Fabric's gateway: Endorse runs the proposal on
// a peer of the gateway's organisation first, derives from that endorsement
// the policies validation will check (the chaincode's, the key-level
// policies of the keys it writes, those of the chaincodes it called, and for
// _lifecycle the organisation's or the LifecycleEndorsement policy), plans
// the layouts of peers that satisfy them (internal/plan) from the channel's
// membership (Config.Network), and asks the peers of one layout in parallel,
// retrying another peer of the same organisation group on failure. Evaluate
// prefers the gateway's organisation, highest ledger height first.
//
// Concurrency: a *Server is safe for concurrent use by any number of RPCs. It
// owns the gRPC connections it opens to orderers and other peers; Close
// releases them. RPC handlers start no goroutines that outlive the call.
package gateway

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"time"

	"github.com/cairn-ledger/cairn/gateway/internal/endorsers"
	"github.com/cairn-ledger/cairn/gateway/internal/orderers"
	"github.com/cairn-ledger/cairn/internal/policy"
	"github.com/hyperledger/fabric-protos-go-apiv2/common"
	gp "github.com/hyperledger/fabric-protos-go-apiv2/gateway"
	"github.com/hyperledger/fabric-protos-go-apiv2/peer"
	"google.golang.org/grpc"
)

// Endorser is a peer's endorser: the local peer's in process, or another
// peer's over gRPC.
type Endorser interface {
	ProcessProposal(ctx context.Context, sp *peer.SignedProposal) (*peer.ProposalResponse, error)
}

// Ledger is the committed chain of one channel as the gateway reads it.
type Ledger interface {
	Height() uint64
	Block(n uint64) (*common.Block, error)
	Wait(ctx context.Context, n uint64) error // returns when Height() > n, or ctx.Err()
	TxValidationCode(txID string) (code peer.TxValidationCode, blockNum uint64, found bool, err error)
	// WaitTxValidationCode returns the validation code of the first
	// transaction with txID and its block number, waiting for it to commit;
	// it returns ctx's error if ctx ends first.
	WaitTxValidationCode(ctx context.Context, txID string) (code peer.TxValidationCode, blockNum uint64, err error)
}

// Channels resolves channels hosted by this peer.
type Channels interface {
	Ledger(channelID string) (Ledger, error) // errors.Is(err, ErrChannelNotFound) for unknown channels
	OrdererEndpoints(channelID string) (addresses []string, tlsRootCerts [][]byte, err error)
	// CheckACL evaluates the channel's policy guarding resource (e.g. "event/Block",
	// "qscc/GetChainInfo" — Fabric ACL names) against signatures.
	CheckACL(channelID, resource string, signed []policy.SignedData) error
}

// ErrChannelNotFound is returned (wrapped) by Channels for channels this peer
// does not host.
var ErrChannelNotFound = errors.New("channel not found")

// ACL resources the gateway checks, named as in Fabric's core/aclmgmt/resources;
// both default to /Channel/Application/Readers.
const (
	ResourceCommitStatus    = "gateway/CommitStatus"
	ResourceChaincodeEvents = "gateway/ChaincodeEvents"
)

// Defaults as in Fabric's peer.gateway configuration.
const (
	DefaultEndorsementTimeout = 30 * time.Second
	DefaultBroadcastTimeout   = 30 * time.Second
)

// Config holds what a Server needs. Endorser and Channels are required.
type Config struct {
	// Endorser is the local peer's endorser.
	Endorser Endorser
	// Channels resolves the channels this peer hosts.
	Channels Channels
	// Address and MSPID identify the local peer in ErrorDetail entries.
	Address string
	MSPID   string
	// Network describes the channels' other peers and endorsement policies,
	// so that Endorse plans endorsements across organisations and Evaluate
	// may use another peer; nil: the local peer endorses alone.
	Network Network
	// Logger receives the gateway's logs; nil discards them.
	Logger *slog.Logger

	// EndorsementTimeout bounds each call to an endorser (Evaluate and Endorse).
	EndorsementTimeout time.Duration
	// BroadcastTimeout bounds each attempt to hand a transaction to an orderer.
	BroadcastTimeout time.Duration
	// CommitStatusTimeout bounds how long CommitStatus waits for a commit; zero
	// (the default, as in Fabric) leaves it to the client's deadline.
	CommitStatusTimeout time.Duration

	// OrdererTLS is the client TLS configuration for dialling orderers (carrying
	// the peer's client certificate for mutual TLS). Its RootCAs are replaced by
	// the channel's orderer TLS root certificates when the channel lists any.
	OrdererTLS *tls.Config
	// PeerTLS is the client TLS configuration for dialling other peers'
	// endorsers (carrying the peer's client certificate); their RootCAs are
	// their organisation's TLS roots from the channel configuration. Nil uses
	// OrdererTLS's certificates.
	PeerTLS *tls.Config
	// DialOptions are extra options for orderer and peer connections.
	DialOptions []grpc.DialOption

	// Perm returns a random permutation of [0,n), the order in which orderers are
	// tried; nil uses math/rand/v2.
	Perm func(n int) []int
}

func (c *Config) setDefaults() {
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.EndorsementTimeout <= 0 {
		c.EndorsementTimeout = DefaultEndorsementTimeout
	}
	if c.BroadcastTimeout <= 0 {
		c.BroadcastTimeout = DefaultBroadcastTimeout
	}
	if c.Perm == nil {
		c.Perm = rand.Perm
	}
}

// Validate reports configuration the server cannot run with.
func (c *Config) Validate() error {
	switch {
	case c.Endorser == nil:
		return errors.New("gateway config: no endorser")
	case c.Channels == nil:
		return errors.New("gateway config: no channels")
	case c.OrdererTLS == nil:
		return errors.New("gateway config: no orderer TLS configuration")
	case c.CommitStatusTimeout < 0:
		return errors.New("gateway config: negative commit status timeout")
	}
	return nil
}

// Server implements gp.GatewayServer.
type Server struct {
	gp.UnimplementedGatewayServer

	cfg       Config
	log       *slog.Logger
	orderers  *orderers.Pool
	endorsers *endorsers.Pool
}

var _ gp.GatewayServer = (*Server)(nil)

// New returns a gateway server.
func New(cfg Config) (*Server, error) {
	cfg.setDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	peerTLS := cfg.PeerTLS
	if peerTLS == nil {
		peerTLS = &tls.Config{Certificates: cfg.OrdererTLS.Certificates, MinVersion: tls.VersionTLS12}
	}
	return &Server{
		cfg: cfg,
		log: cfg.Logger,
		orderers: orderers.NewPool(orderers.Config{
			TLS:         cfg.OrdererTLS,
			DialOptions: cfg.DialOptions,
		}),
		endorsers: endorsers.NewPool(endorsers.Config{
			TLS:         peerTLS,
			DialOptions: cfg.DialOptions,
		}),
	}, nil
}

// Close closes the server's connections to orderers and peers. RPCs still
// running may fail afterwards; stop the gRPC server first.
func (s *Server) Close() error {
	var errs []error
	if err := s.orderers.Close(); err != nil {
		errs = append(errs, fmt.Errorf("close orderer connections: %w", err))
	}
	if err := s.endorsers.Close(); err != nil {
		errs = append(errs, fmt.Errorf("close peer connections: %w", err))
	}
	return errors.Join(errs...)
}

// Evaluate runs a proposal on one endorser and returns its result without
// ordering it.
func (s *Server) Evaluate(ctx context.Context, req *gp.EvaluateRequest) (*gp.EvaluateResponse, error) {
	resp, err := s.evaluate(ctx, req)
	return resp, toStatus(err)
}

// Endorse collects the endorsements the proposal needs and returns the prepared
// transaction for the client to sign.
func (s *Server) Endorse(ctx context.Context, req *gp.EndorseRequest) (*gp.EndorseResponse, error) {
	resp, err := s.endorse(ctx, req)
	return resp, toStatus(err)
}

// Submit hands a signed transaction to an orderer of its channel.
func (s *Server) Submit(ctx context.Context, req *gp.SubmitRequest) (*gp.SubmitResponse, error) {
	resp, err := s.submit(ctx, req)
	return resp, toStatus(err)
}

// CommitStatus returns a transaction's validation code, waiting for its commit.
func (s *Server) CommitStatus(ctx context.Context, req *gp.SignedCommitStatusRequest) (*gp.CommitStatusResponse, error) {
	resp, err := s.commitStatus(ctx, req)
	return resp, toStatus(err)
}

// ChaincodeEvents streams a chaincode's events, one response per block that has
// any, until the client goes away.
func (s *Server) ChaincodeEvents(req *gp.SignedChaincodeEventsRequest, stream grpc.ServerStreamingServer[gp.ChaincodeEventsResponse]) error {
	return toStatus(s.chaincodeEvents(req, stream))
}
