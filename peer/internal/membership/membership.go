// Package membership owns a peer's knowledge of the other peers of its
// channels, without gossip dissemination. Each peer dials the anchor peers the
// channel configuration names, and every peer it has learned of, and trades
// with each a signed description of itself (endpoint, ledger height and
// runnable chaincodes per channel) for the callee's over the Membership gRPC
// service (protos/membership.proto). A peer enters the snapshot only after
// this peer reached it itself and authenticated its answer; endpoints other
// peers report are only dial targets. A peer that stops answering for Expiry
// leaves the snapshot. docs/membership.md describes the protocol.
//
// Authentication: every description is signed by the peer's MSP identity and
// bound to the TLS certificate the peer presents on the connection (mutual TLS
// both ways). A description counts for a channel only if the identity
// deserializes under the channel's MSPs, belongs to one of its application
// organisations, has the peer role, and the TLS certificate chains to that
// organisation's TLS roots. Answers are limited to the channels the caller is
// a member of.
//
// Concurrency: a *Service is safe for concurrent use. Run owns the refresh
// loop and the client connections, and closes them when it returns; Exchange
// (the gRPC handler) and Snapshot may be called at any time.
package membership

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"sort"
	"sync"
	"time"

	mspproto "github.com/hyperledger/fabric-protos-go-apiv2/msp"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	grpcpeer "google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/cairn-ledger/cairn/internal/channelconfig"
	"github.com/cairn-ledger/cairn/internal/comm"
	"github.com/cairn-ledger/cairn/internal/msp"
	"github.com/cairn-ledger/cairn/internal/policy"
	mpb "github.com/cairn-ledger/cairn/protos/membershippb"
)

// Defaults for Config.
const (
	DefaultInterval     = 5 * time.Second
	DefaultTimeout      = 3 * time.Second
	DefaultMaxClockSkew = 5 * time.Minute
	// maxTargets bounds the endpoints learned from others, so that a member
	// cannot make this peer dial an unbounded list.
	maxTargets = 1024
	// dialParallelism bounds concurrent exchanges in one round.
	dialParallelism = 8
)

// Signer signs with the peer's MSP identity.
type Signer interface {
	Sign(msg []byte) ([]byte, error)
	Serialize() []byte
}

// Chaincode is a committed chaincode a peer can run on a channel.
type Chaincode struct {
	Name     string
	Version  string
	Sequence int64
}

// Local is the local peer as the service describes it.
type Local interface {
	// ChannelIDs lists the channels the peer has joined.
	ChannelIDs() []string
	// Bundle is a channel's configuration in force; false if not joined.
	Bundle(channelID string) (*channelconfig.Bundle, bool)
	// Height is the number of blocks in the channel's ledger.
	Height(channelID string) uint64
	// Chaincodes are the committed chaincodes the peer can run on a channel.
	Chaincodes(channelID string) []Chaincode
}

// Config configures a Service.
type Config struct {
	// Endpoint is the host:port other peers reach this peer at.
	Endpoint string
	// Signer is the peer's MSP signing identity.
	Signer Signer
	// TLSCert is the peer's TLS certificate, presented as the client
	// certificate when dialling other peers. It must be the certificate the
	// peer's server presents too: descriptions are bound to it.
	TLSCert tls.Certificate
	// Local describes the local peer.
	Local Local
	// Interval is the time between refresh rounds (default 5s).
	Interval time.Duration
	// Timeout bounds one exchange (default 3s).
	Timeout time.Duration
	// Expiry is how long a peer may go unanswered before it leaves the
	// snapshot (default three intervals).
	Expiry time.Duration
	// MaxClockSkew bounds the age of a request's timestamp (default 5m).
	MaxClockSkew time.Duration
	// DialOptions are extra gRPC dial options.
	DialOptions []grpc.DialOption
	// Logger receives the service's logs; nil discards them.
	Logger *slog.Logger
	// Now is the clock; nil is time.Now.
	Now func() time.Time
}

func (c *Config) setDefaults() {
	if c.Interval <= 0 {
		c.Interval = DefaultInterval
	}
	if c.Timeout <= 0 {
		c.Timeout = DefaultTimeout
	}
	if c.Expiry <= 0 {
		c.Expiry = 3 * c.Interval
	}
	if c.MaxClockSkew <= 0 {
		c.MaxClockSkew = DefaultMaxClockSkew
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.Now == nil {
		c.Now = time.Now
	}
}

// Validate reports configuration the service cannot run with.
func (c *Config) Validate() error {
	switch {
	case c.Endpoint == "":
		return errors.New("membership config: no endpoint")
	case c.Signer == nil:
		return errors.New("membership config: no signer")
	case len(c.TLSCert.Certificate) == 0:
		return errors.New("membership config: no TLS certificate")
	case c.Local == nil:
		return errors.New("membership config: no local peer")
	}
	return nil
}

// Member is one peer of a channel as the snapshot shows it.
type Member struct {
	Endpoint string
	MSPID    string
	// Identity is the peer's serialized MSP identity.
	Identity []byte
	// TLSRootCerts are the PEM TLS roots of the peer's organisation from the
	// channel configuration, to verify the peer when dialling it.
	TLSRootCerts [][]byte
	Height       uint64
	Chaincodes   []Chaincode
	// Local is true for this peer itself.
	Local bool
}

// Snapshot maps channel ID → MSP ID → the organisation's peers, ordered by
// endpoint.
type Snapshot map[string]map[string][]Member

// remote is what this peer knows of another peer, learned by dialling it.
type remote struct {
	endpoint string
	mspID    string
	identity []byte
	channels map[string]*mpb.ChannelState // authenticated channels only
	lastOK   time.Time
}

// Service is a peer's membership: the gRPC Membership server and the loop
// refreshing what it knows.
type Service struct {
	mpb.UnimplementedMembershipServer

	cfg      Config
	log      *slog.Logger
	certHash []byte

	mu      sync.Mutex
	members map[string]*remote     // by endpoint; reached by this peer
	targets map[string]*target     // endpoints learned from other peers
	conns   map[string]*conn       // client connections by endpoint
	aliases map[string]bool        // endpoints that turned out to be this peer
	selfCCs map[string][]Chaincode // local chaincodes by channel, refreshed by Run
	trigger chan struct{}          // asks Run for a round now
	closed  bool
}

// target is an endpoint learned from another peer, and the channels it was
// reported on: a request to it describes this peer on those channels only.
type target struct {
	channels map[string]bool
	learned  time.Time
}

type conn struct {
	cc    *grpc.ClientConn
	roots [sha256.Size]byte
}

var _ mpb.MembershipServer = (*Service)(nil)

// New returns a Service; it does nothing until Run.
func New(cfg Config) (*Service, error) {
	cfg.setDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	h := sha256.Sum256(cfg.TLSCert.Certificate[0])
	return &Service{
		cfg:      cfg,
		log:      cfg.Logger,
		certHash: h[:],
		members:  map[string]*remote{},
		targets:  map[string]*target{},
		conns:    map[string]*conn{},
		aliases:  map[string]bool{},
		trigger:  make(chan struct{}, 1),
	}, nil
}

// Refresh asks Run for a round now (for example after joining a channel or
// committing a chaincode definition), without waiting for it.
func (s *Service) Refresh() {
	select {
	case s.trigger <- struct{}{}:
	default:
	}
}

// RefreshNow runs one round and returns when it is done or ctx ends: for a
// caller that found the membership wanting (a chaincode just committed on
// the others may not be known yet). It may run alongside Run's rounds.
func (s *Service) RefreshNow(ctx context.Context) {
	s.localFingerprint()
	s.round(ctx)
}

// Run refreshes the membership every Interval, and as soon as the local
// channels or chaincodes change, until ctx ends; then it closes its
// connections.
func (s *Service) Run(ctx context.Context) error {
	defer s.closeConns()
	interval := time.NewTicker(s.cfg.Interval)
	defer interval.Stop()
	// Polling the local state is cheap; it makes a new channel or chaincode
	// known to the others within a fraction of the interval.
	poll := time.NewTicker(min(s.cfg.Interval, 250*time.Millisecond))
	defer poll.Stop()
	for {
		s.round(ctx)
		last := s.localFingerprint()
	wait:
		for {
			select {
			case <-ctx.Done():
				return nil
			case <-interval.C:
				break wait
			case <-s.trigger:
				break wait
			case <-poll.C:
				if s.localFingerprint() != last {
					break wait
				}
			}
		}
	}
}

// localFingerprint summarises what a round must advertise promptly: the
// channels and their chaincodes (heights change too often to count). It also
// refreshes the cached list of the local peer's chaincodes.
func (s *Service) localFingerprint() string {
	var b bytes.Buffer
	ccs := map[string][]Chaincode{}
	for _, ch := range s.cfg.Local.ChannelIDs() {
		ccs[ch] = s.cfg.Local.Chaincodes(ch)
		fmt.Fprintf(&b, "%s:", ch)
		for _, cc := range ccs[ch] {
			fmt.Fprintf(&b, "%s/%s/%d,", cc.Name, cc.Version, cc.Sequence)
		}
		b.WriteByte(';')
	}
	s.mu.Lock()
	s.selfCCs = ccs
	s.mu.Unlock()
	return b.String()
}

// selfChaincodes is the local peer's chaincodes on a channel, from the list
// Run refreshes; reading the lifecycle state on every gateway call would
// cost each transaction a range scan.
func (s *Service) selfChaincodes(channelID string) []Chaincode {
	s.mu.Lock()
	ccs, ok := s.selfCCs[channelID]
	s.mu.Unlock()
	if ok {
		return ccs
	}
	return s.cfg.Local.Chaincodes(channelID)
}

// round exchanges with every anchor peer, member and learned endpoint,
// describing this peer to each only on the channels it shares with it.
func (s *Service) round(ctx context.Context) {
	bundles := map[string]*channelconfig.Bundle{}
	targets := map[string]map[string]bool{} // endpoint → channels
	add := func(ep, ch string) {
		if _, ok := bundles[ch]; !ok || ep == s.cfg.Endpoint {
			return
		}
		if targets[ep] == nil {
			targets[ep] = map[string]bool{}
		}
		targets[ep][ch] = true
	}
	for _, id := range s.cfg.Local.ChannelIDs() {
		if b, ok := s.cfg.Local.Bundle(id); ok {
			bundles[id] = b
		}
	}
	for id, b := range bundles {
		for _, org := range b.Application().Orgs {
			for _, a := range org.AnchorPeers {
				add(a, id)
			}
		}
	}
	s.mu.Lock()
	for ep, m := range s.members {
		for ch := range m.channels {
			add(ep, ch)
		}
	}
	for ep, t := range s.targets {
		for ch := range t.channels {
			add(ep, ch)
		}
	}
	for ep := range s.aliases {
		delete(targets, ep)
	}
	s.mu.Unlock()

	sem := make(chan struct{}, dialParallelism)
	var wg sync.WaitGroup
	for _, ep := range sortedKeys(targets) {
		select {
		case sem <- struct{}{}:
		case <-ctx.Done():
			wg.Wait()
			return
		}
		shared := map[string]*channelconfig.Bundle{}
		for ch := range targets[ep] {
			shared[ch] = bundles[ch]
		}
		wg.Go(func() {
			defer func() { <-sem }()
			if err := s.exchange(ctx, ep, shared); err != nil {
				s.log.Debug("membership exchange failed", "endpoint", ep, "error", err)
			}
		})
	}
	wg.Wait()
	s.expire()
}

// expire drops members not reached for Expiry and learned endpoints not
// confirmed for as long.
func (s *Service) expire() {
	now := s.cfg.Now()
	s.mu.Lock()
	defer s.mu.Unlock()
	for ep, m := range s.members {
		if now.Sub(m.lastOK) > s.cfg.Expiry {
			s.log.Info("peer left the membership", "endpoint", ep, "mspID", m.mspID)
			delete(s.members, ep)
			s.dropConnLocked(ep)
		}
	}
	for ep, t := range s.targets {
		if _, ok := s.members[ep]; !ok && now.Sub(t.learned) > s.cfg.Expiry {
			delete(s.targets, ep)
			s.dropConnLocked(ep)
		}
	}
}

// exchange dials one endpoint and records what it answers.
func (s *Service) exchange(ctx context.Context, ep string, bundles map[string]*channelconfig.Bundle) error {
	nonce := make([]byte, 16)
	if _, err := rand.Read(nonce); err != nil {
		return fmt.Errorf("nonce: %w", err)
	}
	var states []*mpb.ChannelState
	for id := range bundles {
		states = append(states, s.localState(id))
	}
	sort.Slice(states, func(i, j int) bool { return states[i].ChannelId < states[j].ChannelId })
	req, err := s.sign(&mpb.PeerInfo{Nonce: nonce, Channels: states})
	if err != nil {
		return err
	}
	cc, err := s.conn(ep, bundles)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, s.cfg.Timeout)
	defer cancel()
	var p grpcpeer.Peer
	resp, err := mpb.NewMembershipClient(cc).Exchange(ctx, req, grpc.Peer(&p))
	if err != nil {
		return fmt.Errorf("exchange with %s: %w", ep, err)
	}
	cert, err := peerCert(&p)
	if err != nil {
		return fmt.Errorf("exchange with %s: %w", ep, err)
	}
	info, id, accepted, err := s.authenticate(resp.GetPeer(), cert, bundles)
	if err != nil {
		return fmt.Errorf("answer of %s: %w", ep, err)
	}
	if !bytes.Equal(info.GetNonce(), nonce) {
		return fmt.Errorf("answer of %s does not repeat the request's nonce", ep)
	}
	now := s.cfg.Now()
	s.mu.Lock()
	if bytes.Equal(id.Serialized(), s.cfg.Signer.Serialize()) {
		// An anchor peer entry naming this peer under another address.
		s.aliases[ep] = true
		s.mu.Unlock()
		return nil
	}
	// The peer is recorded under the endpoint dialled, which is known to
	// work; the one it advertises may differ (another name for the host).
	for other, m := range s.members {
		if other != ep && bytes.Equal(m.identity, id.Serialized()) {
			s.mu.Unlock()
			return fmt.Errorf("%s is %s already reached at %s", ep, id, other)
		}
	}
	m, known := s.members[ep]
	if !known {
		m = &remote{endpoint: ep}
		s.members[ep] = m
	}
	// A copy: Exchange updates m.channels under mu while accepted is read
	// below without it.
	m.mspID, m.identity, m.channels, m.lastOK = id.MSPID(), id.Serialized(), maps.Clone(accepted), now
	s.mu.Unlock()
	if !known {
		s.log.Info("peer joined the membership", "endpoint", ep, "mspID", id.MSPID(), "channels", sortedKeys(accepted))
	}
	for _, k := range resp.GetKnown() {
		if _, ok := accepted[k.GetChannelId()]; ok {
			s.learn(k.GetEndpoint(), k.GetChannelId())
		}
	}
	return nil
}

// learn adds an endpoint reported on channels to the dial targets; a new
// endpoint brings the next round forward.
func (s *Service) learn(ep string, channels ...string) {
	if ep == "" || ep == s.cfg.Endpoint || len(channels) == 0 {
		return
	}
	s.mu.Lock()
	t, ok := s.targets[ep]
	if !ok {
		if len(s.targets) >= maxTargets {
			s.mu.Unlock()
			return
		}
		t = &target{channels: map[string]bool{}}
		s.targets[ep] = t
	}
	t.learned = s.cfg.Now()
	fresh := !ok
	for _, ch := range channels {
		if !t.channels[ch] {
			t.channels[ch] = true
			fresh = true
		}
	}
	_, member := s.members[ep]
	s.mu.Unlock()
	if fresh && !member {
		s.Refresh()
	}
}

func (s *Service) localState(channelID string) *mpb.ChannelState {
	st := &mpb.ChannelState{ChannelId: channelID, Height: s.cfg.Local.Height(channelID)}
	for _, cc := range s.cfg.Local.Chaincodes(channelID) {
		st.Chaincodes = append(st.Chaincodes, &mpb.Chaincode{Name: cc.Name, Version: cc.Version, Sequence: cc.Sequence})
	}
	return st
}

// sign completes and signs a description of this peer.
func (s *Service) sign(info *mpb.PeerInfo) (*mpb.SignedPeerInfo, error) {
	info.Endpoint = s.cfg.Endpoint
	info.Identity = s.cfg.Signer.Serialize()
	info.TlsCertHash = s.certHash
	info.Timestamp = s.cfg.Now().UnixNano()
	raw, err := proto.Marshal(info)
	if err != nil {
		return nil, fmt.Errorf("marshal peer info: %w", err)
	}
	sig, err := s.cfg.Signer.Sign(raw)
	if err != nil {
		return nil, fmt.Errorf("sign peer info: %w", err)
	}
	return &mpb.SignedPeerInfo{Info: raw, Signature: sig}, nil
}

// errNotMember is returned when a description counts for no common channel.
var errNotMember = errors.New("not a peer of any common channel")

// authenticate checks a signed description received over a connection whose
// other end presented cert, and returns the channel states it counts for:
// those of bundles where the identity is a peer of an application
// organisation whose TLS roots issued cert.
func (s *Service) authenticate(sp *mpb.SignedPeerInfo, cert *x509.Certificate, bundles map[string]*channelconfig.Bundle) (*mpb.PeerInfo, *msp.Identity, map[string]*mpb.ChannelState, error) {
	info := &mpb.PeerInfo{}
	if err := proto.Unmarshal(sp.GetInfo(), info); err != nil {
		return nil, nil, nil, fmt.Errorf("malformed peer info: %w", err)
	}
	h := sha256.Sum256(cert.Raw)
	if !bytes.Equal(info.GetTlsCertHash(), h[:]) {
		return nil, nil, nil, errors.New("peer info is bound to another TLS certificate than the connection's")
	}
	var id *msp.Identity
	accepted := map[string]*mpb.ChannelState{}
	var reasons []error
	for _, st := range info.GetChannels() {
		b, ok := bundles[st.GetChannelId()]
		if !ok {
			continue
		}
		cid, err := checkMember(b, info.GetIdentity(), sp.GetInfo(), sp.GetSignature(), cert)
		if err != nil {
			reasons = append(reasons, fmt.Errorf("channel %s: %w", st.GetChannelId(), err))
			continue
		}
		id = cid
		accepted[st.GetChannelId()] = st
	}
	if len(accepted) == 0 {
		return nil, nil, nil, errors.Join(append([]error{errNotMember}, reasons...)...)
	}
	return info, id, accepted, nil
}

// checkMember verifies that identity is a peer of an application
// organisation of the channel, that it signed data, and that cert chains to
// the organisation's TLS roots.
func checkMember(b *channelconfig.Bundle, identity, data, sig []byte, cert *x509.Certificate) (*msp.Identity, error) {
	id, err := b.MSPs().Deserialize(identity)
	if err != nil {
		return nil, err
	}
	var org *channelconfig.AppOrg
	for i := range b.Application().Orgs {
		if b.Application().Orgs[i].MSPID == id.MSPID() {
			org = &b.Application().Orgs[i]
		}
	}
	if org == nil {
		return nil, fmt.Errorf("MSP %s is not an application organisation of the channel", id.MSPID())
	}
	if err := id.SatisfiesPrincipal(policy.RolePrincipal(id.MSPID(), mspproto.MSPRole_PEER)); err != nil {
		return nil, fmt.Errorf("not a peer: %w", err)
	}
	if err := id.Verify(data, sig); err != nil {
		return nil, err
	}
	roots, err := comm.CertPoolFromPEM(org.TLSRootCerts...)
	if err != nil {
		return nil, fmt.Errorf("TLS roots of %s: %w", id.MSPID(), err)
	}
	if _, err := cert.Verify(x509.VerifyOptions{Roots: roots, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}}); err != nil {
		return nil, fmt.Errorf("TLS certificate not issued by the TLS roots of %s: %w", id.MSPID(), err)
	}
	return id, nil
}

func peerCert(p *grpcpeer.Peer) (*x509.Certificate, error) {
	if p == nil {
		return nil, errors.New("no connection information")
	}
	ti, ok := p.AuthInfo.(credentials.TLSInfo)
	if !ok || len(ti.State.PeerCertificates) == 0 {
		return nil, errors.New("no TLS certificate presented")
	}
	return ti.State.PeerCertificates[0], nil
}

// Exchange implements the Membership service.
func (s *Service) Exchange(ctx context.Context, req *mpb.SignedPeerInfo) (*mpb.ExchangeResponse, error) {
	p, _ := grpcpeer.FromContext(ctx)
	cert, err := peerCert(p)
	if err != nil {
		return nil, status.Errorf(codes.Unauthenticated, "membership exchange needs mutual TLS: %v", err)
	}
	bundles := map[string]*channelconfig.Bundle{}
	for _, id := range s.cfg.Local.ChannelIDs() {
		if b, ok := s.cfg.Local.Bundle(id); ok {
			bundles[id] = b
		}
	}
	info, id, accepted, err := s.authenticate(req, cert, bundles)
	if err != nil {
		s.log.Warn("membership exchange refused", "remote", p.Addr.String(), "error", err)
		return nil, status.Errorf(codes.PermissionDenied, "membership exchange refused: %v", err)
	}
	ts := time.Unix(0, info.GetTimestamp())
	if d := s.cfg.Now().Sub(ts); d > s.cfg.MaxClockSkew || d < -s.cfg.MaxClockSkew {
		return nil, status.Errorf(codes.PermissionDenied, "membership exchange refused: timestamp %s is more than %s away", ts.UTC().Format(time.RFC3339), s.cfg.MaxClockSkew)
	}
	s.learn(info.GetEndpoint(), sortedKeys(accepted)...)
	s.mu.Lock()
	// A member this peer reached before may report fresher state itself.
	if m, ok := s.members[info.GetEndpoint()]; ok && bytes.Equal(m.identity, id.Serialized()) {
		for ch, st := range accepted {
			m.channels[ch] = st
		}
	}
	var known []*mpb.KnownPeer
	for _, ep := range sortedKeys(s.members) {
		m := s.members[ep]
		if ep == info.GetEndpoint() {
			continue
		}
		for _, ch := range sortedKeys(m.channels) {
			if _, ok := accepted[ch]; ok {
				known = append(known, &mpb.KnownPeer{ChannelId: ch, Endpoint: ep, MspId: m.mspID})
			}
		}
	}
	s.mu.Unlock()

	var states []*mpb.ChannelState
	for _, ch := range sortedKeys(accepted) {
		states = append(states, s.localState(ch))
	}
	signed, err := s.sign(&mpb.PeerInfo{Nonce: info.GetNonce(), Channels: states})
	if err != nil {
		return nil, status.Error(codes.Internal, err.Error())
	}
	return &mpb.ExchangeResponse{Peer: signed, Known: known}, nil
}

// Snapshot returns the peers of every channel of the local peer, itself
// included.
func (s *Service) Snapshot() Snapshot {
	snap := Snapshot{}
	for _, id := range s.cfg.Local.ChannelIDs() {
		snap[id] = s.channelMembers(id)
	}
	return snap
}

// Peers returns the peers of one channel known to this peer, itself included,
// ordered by MSP ID and endpoint; nil if the peer has not joined the channel.
func (s *Service) Peers(channelID string) []Member {
	byOrg := s.channelMembers(channelID)
	var out []Member
	for _, org := range sortedKeys(byOrg) {
		out = append(out, byOrg[org]...)
	}
	return out
}

func (s *Service) channelMembers(channelID string) map[string][]Member {
	b, ok := s.cfg.Local.Bundle(channelID)
	if !ok {
		return nil
	}
	roots := map[string][][]byte{}
	for _, o := range b.Application().Orgs {
		roots[o.MSPID] = o.TLSRootCerts
	}
	byOrg := map[string][]Member{}
	self := Member{
		Endpoint:   s.cfg.Endpoint,
		Identity:   s.cfg.Signer.Serialize(),
		Height:     s.cfg.Local.Height(channelID),
		Chaincodes: s.selfChaincodes(channelID),
		Local:      true,
	}
	if id, err := b.MSPs().Deserialize(self.Identity); err == nil {
		self.MSPID = id.MSPID()
	}
	self.TLSRootCerts = roots[self.MSPID]
	byOrg[self.MSPID] = append(byOrg[self.MSPID], self)

	now := s.cfg.Now()
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, m := range s.members {
		st, ok := m.channels[channelID]
		if !ok || now.Sub(m.lastOK) > s.cfg.Expiry {
			continue
		}
		if _, member := roots[m.mspID]; !member {
			continue // the organisation left the channel since
		}
		mem := Member{
			Endpoint:     m.endpoint,
			MSPID:        m.mspID,
			Identity:     m.identity,
			TLSRootCerts: roots[m.mspID],
			Height:       st.GetHeight(),
		}
		for _, cc := range st.GetChaincodes() {
			mem.Chaincodes = append(mem.Chaincodes, Chaincode{Name: cc.GetName(), Version: cc.GetVersion(), Sequence: cc.GetSequence()})
		}
		byOrg[m.mspID] = append(byOrg[m.mspID], mem)
	}
	for _, ms := range byOrg {
		sort.Slice(ms, func(i, j int) bool { return ms[i].Endpoint < ms[j].Endpoint })
	}
	return byOrg
}

// conn returns the cached connection to ep, trusting the TLS roots of every
// application organisation of the channels: which organisation ep belongs to
// is only known from its answer, which authenticate then checks precisely.
func (s *Service) conn(ep string, bundles map[string]*channelconfig.Bundle) (*grpc.ClientConn, error) {
	var pems [][]byte
	for _, id := range sortedKeys(bundles) {
		for _, o := range bundles[id].Application().Orgs {
			pems = append(pems, o.TLSRootCerts...)
		}
	}
	h := sha256.New()
	for _, p := range pems {
		h.Write(p)
		h.Write([]byte{0})
	}
	var roots [sha256.Size]byte
	copy(roots[:], h.Sum(nil))

	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil, errors.New("membership service stopped")
	}
	if c, ok := s.conns[ep]; ok {
		if c.roots == roots {
			return c.cc, nil
		}
		s.dropConnLocked(ep)
	}
	pool, err := comm.CertPoolFromPEM(pems...)
	if err != nil {
		return nil, fmt.Errorf("channel TLS roots: %w", err)
	}
	cert := s.cfg.TLSCert
	cc, err := comm.Dial(ep, &tls.Config{
		Certificates: []tls.Certificate{cert},
		RootCAs:      pool,
		MinVersion:   tls.VersionTLS12,
	}, s.cfg.DialOptions...)
	if err != nil {
		return nil, err
	}
	s.conns[ep] = &conn{cc: cc, roots: roots}
	return cc, nil
}

func (s *Service) dropConnLocked(ep string) {
	if c, ok := s.conns[ep]; ok {
		_ = c.cc.Close()
		delete(s.conns, ep)
	}
}

func (s *Service) closeConns() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.closed = true
	for ep := range s.conns {
		s.dropConnLocked(ep)
	}
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
