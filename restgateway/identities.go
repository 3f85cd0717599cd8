package restgateway

import (
	"context"
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"sync"

	"github.com/hyperledger/fabric-gateway/pkg/client"
	"github.com/hyperledger/fabric-gateway/pkg/identity"
	"google.golang.org/grpc"

	"github.com/cairn-ledger/cairn/internal/crypto"
)

// signer is one configured identity and, once connected, its client gateway.
// The certificate is read at New so a bad file fails the start; the key is
// fetched from its key store on first use (a Vault store may be down at
// start), and a failure is retried on the next request.
type signer struct {
	name   string
	cfg    IdentityConfig
	id     *identity.X509Identity
	pub    *ecdsa.PublicKey
	access access

	mu   sync.Mutex
	gw   *client.Gateway
	sign Sign
}

// session is what a request needs to act as an identity.
type session struct {
	gw   *client.Gateway
	sign Sign
}

// identities owns the client gateways, one per identity, all sharing the one
// gRPC connection to the peer. Safe for concurrent use.
type identities struct {
	conn     *grpc.ClientConn
	stores   map[string]KeyStore
	timeouts Timeouts
	byName   map[string]*signer
}

func newIdentities(cfg Config, conn *grpc.ClientConn, stores map[string]KeyStore) (*identities, error) {
	ids := &identities{conn: conn, stores: stores, timeouts: cfg.Timeouts, byName: map[string]*signer{}}
	for _, name := range sortedKeys(cfg.Identities) {
		ic := cfg.Identities[name]
		raw, err := os.ReadFile(ic.CertFile)
		if err != nil {
			return nil, fmt.Errorf("identity %q: %w", name, err)
		}
		cert, err := crypto.ParseCertificatePEM(raw)
		if err != nil {
			return nil, fmt.Errorf("identity %q: %s: %w", name, ic.CertFile, err)
		}
		pub, ok := cert.PublicKey.(*ecdsa.PublicKey)
		if !ok {
			return nil, fmt.Errorf("identity %q: certificate key is %T, want ECDSA", name, cert.PublicKey)
		}
		id, err := identity.NewX509Identity(ic.MSPID, cert)
		if err != nil {
			return nil, fmt.Errorf("identity %q: %w", name, err)
		}
		ids.byName[name] = &signer{name: name, cfg: ic, id: id, pub: pub, access: newAccess(ic.Access)}
	}
	return ids, nil
}

// errIdentityUnavailable marks a failure to load an identity's key: the
// gateway's fault, not the caller's.
var errIdentityUnavailable = errors.New("signing identity unavailable")

// session connects the named identity on first use and reuses it after.
func (ids *identities) session(ctx context.Context, name string) (session, error) {
	s, ok := ids.byName[name]
	if !ok {
		// Authentication only yields configured names; anything else is a bug.
		panic(fmt.Sprintf("restgateway: authenticated identity %q is not configured", name))
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.gw != nil {
		return session{gw: s.gw, sign: s.sign}, nil
	}
	store, ok := ids.stores[s.cfg.KeyStore.Type]
	if !ok {
		return session{}, fmt.Errorf("%w: identity %q: no key store of type %q", errIdentityUnavailable, name, s.cfg.KeyStore.Type)
	}
	sign, err := store.Signer(ctx, s.cfg.KeyStore)
	if err != nil {
		return session{}, fmt.Errorf("%w: identity %q: %v", errIdentityUnavailable, name, err)
	}
	if err := checkKeyMatches(sign, s.pub); err != nil {
		return session{}, fmt.Errorf("%w: identity %q: %v", errIdentityUnavailable, name, err)
	}
	gw, err := client.Connect(s.id, client.WithSign(sign), client.WithClientConnection(ids.conn),
		client.WithEvaluateTimeout(ids.timeouts.Evaluate), client.WithEndorseTimeout(ids.timeouts.Endorse),
		client.WithSubmitTimeout(ids.timeouts.Submit), client.WithCommitStatusTimeout(ids.timeouts.CommitStatus))
	if err != nil {
		return session{}, fmt.Errorf("%w: identity %q: %v", errIdentityUnavailable, name, err)
	}
	s.gw, s.sign = gw, sign
	return session{gw: gw, sign: sign}, nil
}

// checkKeyMatches signs a random digest and verifies it with the
// certificate's key, so a key store handing out the wrong key fails here with
// a clear message rather than as a signature failure on the peer.
func checkKeyMatches(sign Sign, pub *ecdsa.PublicKey) error {
	var nonce [32]byte
	if _, err := rand.Read(nonce[:]); err != nil {
		return err
	}
	digest := sha256.Sum256(nonce[:])
	sig, err := sign(digest[:])
	if err != nil {
		return fmt.Errorf("test signature: %w", err)
	}
	if !ecdsa.VerifyASN1(pub, digest[:], sig) {
		return errors.New("the key store's key does not match the identity's certificate")
	}
	return nil
}

// close releases every connected client gateway (not the shared connection).
func (ids *identities) close() {
	for _, s := range ids.byName {
		s.mu.Lock()
		if s.gw != nil {
			s.gw.Close()
			s.gw = nil
		}
		s.mu.Unlock()
	}
}

// certFingerprint is the SHA-256 of a certificate's DER bytes.
func certFingerprint(c *x509.Certificate) [32]byte { return sha256.Sum256(c.Raw) }
