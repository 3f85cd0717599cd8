// Package discovery owns the peer's side of Fabric's discovery.Discovery
// service: SDKs and tools send it a signed request of queries — a channel's
// configuration (MSPs and orderer endpoints), the channel's peers (optionally
// only those that can run a chain of chaincodes), endorsement descriptors
// for chaincode interests, and the peers known locally — and get one result
// or one error per query, as Fabric's peers answer them.
//
// Authentication follows Fabric's discovery service. The request must name
// the client's identity, and a hash it claims for the client's TLS
// certificate must be that of the certificate presented on the connection;
// otherwise the whole call fails. A request that claims no hash is accepted,
// as Fabric's peers accept it: their service never receives its TLS setting
// (discovery.NewService drops its Config), so they never check the binding,
// and clients such as fabric-admin-sdk send no hash by default. Each query is then authorised on its own:
// a channel query when the signature over the request satisfies the
// channel's /Channel/Application/Writers policy, a local query when it
// satisfies "any admin of the peer's organisation" under the local MSP (or
// any member, with OrgMembersAllowed). A query that is refused, or that
// names a channel the peer has not joined, gets "access denied".
//
// Peers are described with gossip messages, as Fabric's clients decode
// them: the membership info is an AliveMessage carrying the endpoint, the
// state info a StateInfo carrying the ledger height and the chaincodes the
// peer can run. Cairn has no gossip, so the messages are built from the
// peer's membership snapshot when a query is answered and are not signed;
// Fabric's clients read them without verifying signatures.
//
// Endorsement descriptors come from internal/plan, which the gateway plans
// with too: one group per set of interchangeable peers, named G0, G1, … and
// every minimal layout of the policies of the interest's chaincodes (and
// their collections' and key-level policies).
//
// Concurrency: a *Service is stateless between calls and safe for
// concurrent use; it reads the peer's channels and membership through the
// interfaces in Config.
package discovery

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"log/slog"
	"time"

	cb "github.com/hyperledger/fabric-protos-go-apiv2/common"
	dpb "github.com/hyperledger/fabric-protos-go-apiv2/discovery"
	pb "github.com/hyperledger/fabric-protos-go-apiv2/peer"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/cairn-ledger/cairn/internal/channelconfig"
	"github.com/cairn-ledger/cairn/internal/msp"
	"github.com/cairn-ledger/cairn/internal/policy"
)

// channelWriters is the policy a client must satisfy to query a channel, as
// Fabric's peers configure their discovery service.
const channelWriters = "/Channel/Application/Writers"

// Channels is what the service reads of the peer's channels.
type Channels interface {
	// ChannelIDs lists the channels the peer has joined.
	ChannelIDs() []string
	// Bundle is a channel's configuration in force; false if the peer has not
	// joined the channel.
	Bundle(channelID string) (*channelconfig.Bundle, bool)
	// Chaincode is the committed definition of a chaincode; false if none is
	// committed.
	Chaincode(channelID, name string) (*Chaincode, bool, error)
}

// Membership is the peers the local peer knows.
type Membership interface {
	// Peers lists a channel's peers, the local one included.
	Peers(channelID string) []Peer
}

// Chaincode is what descriptors need of a committed chaincode definition.
type Chaincode struct {
	Name    string
	Version string
	// Policy is the endorsement policy: a signature policy, or else the path
	// of a channel configuration policy in PolicyRef.
	Policy    *cb.SignaturePolicyEnvelope
	PolicyRef string
	// Collections are the chaincode's private data collections, nil if none.
	Collections *pb.CollectionConfigPackage
}

// Peer is one peer of a channel.
type Peer struct {
	Endpoint string
	MSPID    string
	// Identity is the peer's serialized MSP identity.
	Identity   []byte
	Height     uint64
	Chaincodes []ChaincodeVersion
}

// ChaincodeVersion is a chaincode a peer can run.
type ChaincodeVersion struct {
	Name    string
	Version string
}

// Config configures a Service.
type Config struct {
	Channels   Channels
	Membership Membership
	// LocalMSPs deserializes identities of the peer's own organisation, for
	// local queries; LocalMSPID names it.
	LocalMSPs  *msp.Manager
	LocalMSPID string
	// OrgMembersAllowed lets any member of the peer's organisation, not only
	// its admins, run local queries (Fabric's
	// peer.discovery.orgMembersAllowedAccess).
	OrgMembersAllowed bool
	Logger            *slog.Logger
	// Now is the clock used for the gossip timestamps; default time.Now.
	Now func() time.Time
}

// Service implements discovery.DiscoveryServer.
type Service struct {
	dpb.UnimplementedDiscoveryServer

	cfg         Config
	log         *slog.Logger
	localPolicy *policy.SignaturePolicy
	incarnation uint64 // PeerTime.IncNum of every message: when the service started
}

var _ dpb.DiscoveryServer = (*Service)(nil)

// New returns a Service. A Config without Channels, Membership or LocalMSPs
// is a wiring bug, and New panics naming it.
func New(cfg Config) *Service {
	if cfg.Channels == nil || cfg.Membership == nil || cfg.LocalMSPs == nil || cfg.LocalMSPID == "" {
		panic("discovery.New: Channels, Membership, LocalMSPs and LocalMSPID are required")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	spe := policy.SignedByAnyAdmin([]string{cfg.LocalMSPID})
	if cfg.OrgMembersAllowed {
		spe = policy.SignedByAnyMember([]string{cfg.LocalMSPID})
	}
	lp, err := policy.NewSignaturePolicy(spe, cfg.LocalMSPs)
	if err != nil {
		panic(fmt.Sprintf("discovery.New: the built-in local access policy does not compile: %v", err))
	}
	return &Service{cfg: cfg, log: cfg.Logger, localPolicy: lp, incarnation: uint64(cfg.Now().UnixNano())}
}

// Errors refusing a whole request, with Fabric's messages.
var (
	errNoAuth       = errors.New("access denied, no authentication info in request")
	errNoIdentity   = errors.New("access denied, client identity wasn't supplied")
	errNoClientCert = errors.New("client didn't send a TLS certificate")
	errTLSMismatch  = errors.New("client claimed TLS hash doesn't match computed TLS hash from gRPC stream")
)

// Per-query error messages, as Fabric's.
const (
	msgAccessDenied = "access denied"
	msgUnknownQuery = "unknown or missing request type"
)

// Discover answers every query of a signed request, in order.
func (s *Service) Discover(ctx context.Context, sr *dpb.SignedRequest) (*dpb.Response, error) {
	req, err := s.authenticate(ctx, sr)
	if err != nil {
		s.log.Warn("discovery request refused", "remote", remoteAddr(ctx), "error", err)
		return nil, toStatus(err)
	}
	signed := []policy.SignedData{{Data: sr.GetPayload(), Identity: req.GetAuthentication().GetClientIdentity(), Signature: sr.GetSignature()}}
	eligible := map[string]error{} // by channel ("" local): a request is checked once per channel
	res := make([]*dpb.QueryResult, 0, len(req.GetQueries()))
	for _, q := range req.GetQueries() {
		res = append(res, s.query(ctx, q, signed, eligible))
	}
	return &dpb.Response{Results: res}, nil
}

// toStatus is the one place the service's call-level errors become gRPC
// statuses. Fabric's discovery service returns them as plain errors, which
// gRPC reports as Unknown with the error's text; clients only show the text,
// so Cairn keeps Fabric's code and messages.
func toStatus(err error) error {
	return status.Error(codes.Unknown, err.Error())
}

// authenticate decodes the request and binds it to the TLS session.
func (s *Service) authenticate(ctx context.Context, sr *dpb.SignedRequest) (*dpb.Request, error) {
	if sr == nil {
		return nil, errors.New("nil request")
	}
	req := &dpb.Request{}
	if err := proto.Unmarshal(sr.GetPayload(), req); err != nil {
		return nil, fmt.Errorf("failed parsing request: %w", err)
	}
	auth := req.GetAuthentication()
	if auth == nil {
		return nil, errNoAuth
	}
	if len(auth.GetClientIdentity()) == 0 {
		return nil, errNoIdentity
	}
	claimed := auth.GetClientTlsCertHash()
	if len(claimed) == 0 {
		// Not bound to a TLS session by its signer; see the package doc.
		return req, nil
	}
	hash := clientCertHash(ctx)
	if hash == nil {
		return nil, errNoClientCert
	}
	if !bytes.Equal(hash, claimed) {
		return nil, errTLSMismatch
	}
	return req, nil
}

// clientCertHash is the SHA-256 of the client's TLS certificate on the call's
// connection, nil if it presented none.
func clientCertHash(ctx context.Context) []byte {
	p, ok := peer.FromContext(ctx)
	if !ok {
		return nil
	}
	ti, ok := p.AuthInfo.(credentials.TLSInfo)
	if !ok || len(ti.State.PeerCertificates) == 0 {
		return nil
	}
	h := sha256.Sum256(ti.State.PeerCertificates[0].Raw)
	return h[:]
}

func remoteAddr(ctx context.Context) string {
	if p, ok := peer.FromContext(ctx); ok && p.Addr != nil {
		return p.Addr.String()
	}
	return ""
}

// query authorises and answers one query.
func (s *Service) query(ctx context.Context, q *dpb.Query, signed []policy.SignedData, eligible map[string]error) *dpb.QueryResult {
	ch := q.GetChannel()
	var bundle *channelconfig.Bundle
	if ch != "" {
		b, ok := s.cfg.Channels.Bundle(ch)
		if !ok {
			s.log.Warn("discovery query for a channel this peer has not joined", "channel", ch, "remote", remoteAddr(ctx))
			return errorResult(msgAccessDenied)
		}
		bundle = b
	}
	err, checked := eligible[ch]
	if !checked {
		err = s.eligible(bundle, signed)
		eligible[ch] = err
	}
	if err != nil {
		s.log.Warn("discovery query refused", "channel", ch, "remote", remoteAddr(ctx), "error", err, policy.LogAttr(err))
		return errorResult(msgAccessDenied)
	}
	if ch == "" {
		if q.GetLocalPeers() == nil {
			return errorResult(msgUnknownQuery)
		}
		return s.localPeers()
	}
	switch {
	case q.GetConfigQuery() != nil:
		return s.config(bundle)
	case q.GetPeerQuery() != nil:
		return s.channelPeers(bundle, q.GetPeerQuery().GetFilter())
	case q.GetCcQuery() != nil:
		return s.endorsers(bundle, q.GetCcQuery())
	}
	return errorResult(msgUnknownQuery)
}

// eligible checks the request's signature against the channel's Writers
// policy, or, for a local query (nil bundle), the local access policy.
func (s *Service) eligible(bundle *channelconfig.Bundle, signed []policy.SignedData) error {
	if bundle == nil {
		return s.localPolicy.Evaluate(signed)
	}
	p, err := bundle.Policies().Policy(channelWriters)
	if err != nil {
		return fmt.Errorf("channel %s: %w", bundle.ChannelID(), err)
	}
	return p.Evaluate(signed)
}

func errorResult(msg string) *dpb.QueryResult {
	return &dpb.QueryResult{Result: &dpb.QueryResult_Error{Error: &dpb.Error{Content: msg}}}
}
