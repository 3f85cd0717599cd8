// Package msp owns X.509 membership service providers as Fabric 2.5 defines them:
// building an MSP from msp.FabricMSPConfig (roots, intermediates, admins, CRLs,
// NodeOUs), deserialising and validating identities (chain to the MSP's roots,
// revocation, NodeOU roles), verifying their signatures and matching them against
// MSP principals. A Manager holds the MSPs of one channel and caches validated
// identities.
//
// MSP, Manager and Identity are immutable after construction and safe for
// concurrent use; a channel configuration change builds a new Manager. Like
// Fabric, validation does not reject expired certificates (it validates the chain
// as of the certificate's NotBefore); callers that must refuse expired identities
// (Broadcast, Deliver) use Identity.ExpiresAt or Identity.CheckValidAt.
package msp

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/sha256"
	"crypto/x509"
	"encoding/asn1"
	"encoding/pem"
	"errors"
	"fmt"
	"sync/atomic"
	"time"

	mspproto "github.com/hyperledger/fabric-protos-go-apiv2/msp"
	"google.golang.org/protobuf/proto"

	"github.com/cairn-ledger/cairn/internal/crypto"
)

// ouIdentifier is an OU name plus, optionally, the certifiers identifier (SHA-256
// of the CA chain) that must have issued a certificate carrying it.
type ouIdentifier struct {
	ou         string
	certifiers []byte // nil: any CA of the MSP
}

// MSP is one organisation's X.509 membership service provider.
type MSP struct {
	id            string
	roots         []*x509.Certificate
	intermediates []*x509.Certificate
	rootPool      *x509.CertPool
	intPool       *x509.CertPool
	// internalNodes holds the raw bytes of CAs that issued an intermediate CA of
	// this MSP; Fabric refuses identities issued directly by such a CA.
	internalNodes map[string]bool
	admins        []*x509.Certificate
	crls          []*x509.RevocationList

	nodeOUs                              bool
	clientOU, peerOU, adminOU, ordererOU *ouIdentifier
	ouIdentifiers                        []ouIdentifier // legacy (non-NodeOU) OU restriction

	tlsRoots, tlsIntermediates []*x509.Certificate
	conf                       *mspproto.FabricMSPConfig

	keyTables atomic.Int32 // precomputed key tables handed to its identities
}

// reserveKeyTable takes one of the MSP's maxKeyTables key tables, if one is
// free.
func (m *MSP) reserveKeyTable() bool {
	for {
		n := m.keyTables.Load()
		if n >= maxKeyTables {
			return false
		}
		if m.keyTables.CompareAndSwap(n, n+1) {
			return true
		}
	}
}

// releaseKeyTable gives back a table taken by reserveKeyTable.
func (m *MSP) releaseKeyTable() { m.keyTables.Add(-1) }

// FromConfigMSP builds an MSP from the wrapper form found in channel configuration
// (an MSPConfig of type 0, FABRIC, holding a marshalled FabricMSPConfig).
func FromConfigMSP(mc *mspproto.MSPConfig) (*MSP, error) {
	if mc == nil {
		return nil, errors.New("msp config is nil")
	}
	if mc.Type != 0 {
		return nil, fmt.Errorf("msp config type %d not supported (only 0, FABRIC X.509)", mc.Type)
	}
	var conf mspproto.FabricMSPConfig
	if err := proto.Unmarshal(mc.Config, &conf); err != nil {
		return nil, fmt.Errorf("unmarshal FabricMSPConfig: %w", err)
	}
	return New(&conf)
}

// New builds and checks an MSP from its configuration. Every certificate in the
// configuration must parse and validate, as Fabric's MSP setup requires.
func New(conf *mspproto.FabricMSPConfig) (*MSP, error) {
	if conf == nil {
		return nil, errors.New("new msp: config is nil")
	}
	if conf.Name == "" {
		return nil, errors.New("new msp: name (MSP ID) is empty")
	}
	m := &MSP{
		id:            conf.Name,
		internalNodes: map[string]bool{},
		conf:          proto.Clone(conf).(*mspproto.FabricMSPConfig),
	}
	wrap := func(err error) error { return fmt.Errorf("new msp %q: %w", conf.Name, err) }

	if cc := conf.CryptoConfig; cc != nil {
		if cc.SignatureHashFamily != "" && cc.SignatureHashFamily != "SHA2" {
			return nil, wrap(fmt.Errorf("signature hash family %q not supported (only SHA2)", cc.SignatureHashFamily))
		}
		if cc.IdentityIdentifierHashFunction != "" && cc.IdentityIdentifierHashFunction != "SHA256" {
			return nil, wrap(fmt.Errorf("identity identifier hash function %q not supported (only SHA256)", cc.IdentityIdentifierHashFunction))
		}
	}
	if err := m.setupCAs(conf); err != nil {
		return nil, wrap(err)
	}
	if err := m.setupCRLs(conf); err != nil {
		return nil, wrap(err)
	}
	if err := m.setupOUs(conf); err != nil {
		return nil, wrap(err)
	}
	if err := m.setupAdmins(conf); err != nil {
		return nil, wrap(err)
	}
	var err error
	if m.tlsRoots, err = parseCACerts("TLS root", conf.TlsRootCerts); err != nil {
		return nil, wrap(err)
	}
	if m.tlsIntermediates, err = parseCACerts("TLS intermediate", conf.TlsIntermediateCerts); err != nil {
		return nil, wrap(err)
	}
	return m, nil
}

func parseCACerts(what string, pems [][]byte) ([]*x509.Certificate, error) {
	out := make([]*x509.Certificate, 0, len(pems))
	for i, p := range pems {
		c, err := certFromPEM(p)
		if err != nil {
			return nil, fmt.Errorf("%s certificate %d: %w", what, i, err)
		}
		if !c.IsCA {
			return nil, fmt.Errorf("%s certificate %d (%s) is not a CA certificate", what, i, c.Subject)
		}
		out = append(out, c)
	}
	return out, nil
}

func (m *MSP) setupCAs(conf *mspproto.FabricMSPConfig) error {
	if len(conf.RootCerts) == 0 {
		return errors.New("expected at least one root CA certificate")
	}
	roots, err := parseCACerts("root CA", conf.RootCerts)
	if err != nil {
		return err
	}
	ints, err := parseCACerts("intermediate CA", conf.IntermediateCerts)
	if err != nil {
		return err
	}
	for i, r := range roots {
		if r.CheckSignatureFrom(r) != nil {
			// Fabric accepts a non-self-signed root as a trust anchor; so do we, unsanitised.
			continue
		}
		if roots[i], err = sanitizeCert(r, r); err != nil {
			return fmt.Errorf("root CA certificate %d: %w", i, err)
		}
	}
	// First pass: pools of raw intermediates to find each one's parent and sanitise it.
	m.rootPool, m.intPool = x509.NewCertPool(), x509.NewCertPool()
	for _, r := range roots {
		m.rootPool.AddCert(r)
	}
	for _, c := range ints {
		m.intPool.AddCert(c)
	}
	for i, c := range ints {
		chain, err := m.uniqueChain(c)
		if err != nil {
			return fmt.Errorf("intermediate CA certificate %d (%s): %w", i, c.Subject, err)
		}
		if ints[i], err = sanitizeCert(c, chain[1]); err != nil {
			return fmt.Errorf("intermediate CA certificate %d: %w", i, err)
		}
	}
	// Second pass: the pools hold the sanitised certificates used from now on.
	m.intPool = x509.NewCertPool()
	for _, c := range ints {
		m.intPool.AddCert(c)
	}
	for i, c := range ints {
		chain, err := m.uniqueChain(c)
		if err != nil {
			return fmt.Errorf("intermediate CA certificate %d (%s): %w", i, c.Subject, err)
		}
		for _, parent := range chain[1:] {
			m.internalNodes[string(parent.Raw)] = true
		}
	}
	m.roots, m.intermediates = roots, ints
	return nil
}

func (m *MSP) setupCRLs(conf *mspproto.FabricMSPConfig) error {
	for i, b := range conf.RevocationList {
		der := b
		if block, _ := pem.Decode(b); block != nil {
			der = block.Bytes
		}
		crl, err := x509.ParseRevocationList(der)
		if err != nil {
			return fmt.Errorf("revocation list %d: %w", i, err)
		}
		if len(crl.AuthorityKeyId) == 0 {
			// Fabric matches CRLs to CAs by this extension and fails every
			// validation on a CRL without it; refuse the config instead.
			return fmt.Errorf("revocation list %d (issuer %s) has no authority key identifier", i, crl.Issuer)
		}
		m.crls = append(m.crls, crl)
	}
	return nil
}

func (m *MSP) setupOUs(conf *mspproto.FabricMSPConfig) error {
	for i, ou := range conf.OrganizationalUnitIdentifiers {
		if ou == nil {
			continue
		}
		cid, err := m.certifiersOf(ou.Certificate)
		if err != nil {
			return fmt.Errorf("organizational unit identifier %d (%q): %w", i, ou.OrganizationalUnitIdentifier, err)
		}
		if cid == nil {
			return fmt.Errorf("organizational unit identifier %d (%q): certificate is required", i, ou.OrganizationalUnitIdentifier)
		}
		m.ouIdentifiers = append(m.ouIdentifiers, ouIdentifier{ou: ou.OrganizationalUnitIdentifier, certifiers: cid})
	}
	n := conf.FabricNodeOus
	if n == nil || !n.Enable {
		return nil
	}
	m.nodeOUs = true
	for _, s := range []struct {
		name string
		in   *mspproto.FabricOUIdentifier
		out  **ouIdentifier
	}{
		{"client", n.ClientOuIdentifier, &m.clientOU},
		{"peer", n.PeerOuIdentifier, &m.peerOU},
		{"admin", n.AdminOuIdentifier, &m.adminOU},
		{"orderer", n.OrdererOuIdentifier, &m.ordererOU},
	} {
		if s.in == nil {
			continue
		}
		if s.in.OrganizationalUnitIdentifier == "" {
			return fmt.Errorf("NodeOUs %s identifier has an empty organizational unit", s.name)
		}
		cid, err := m.certifiersOf(s.in.Certificate)
		if err != nil {
			return fmt.Errorf("NodeOUs %s identifier: %w", s.name, err)
		}
		*s.out = &ouIdentifier{ou: s.in.OrganizationalUnitIdentifier, certifiers: cid}
	}
	if m.clientOU == nil && m.peerOU == nil && m.adminOU == nil && m.ordererOU == nil {
		return errors.New("NodeOUs enabled but no client, peer, admin or orderer identifier configured")
	}
	return nil
}

// certifiersOf returns the certifiers identifier of a CA certificate of this MSP:
// the SHA-256 of its chain up to the root, as Fabric computes it. Empty input
// yields nil (no restriction).
func (m *MSP) certifiersOf(certPEM []byte) ([]byte, error) {
	if len(certPEM) == 0 {
		return nil, nil
	}
	c, err := certFromPEM(certPEM)
	if err != nil {
		return nil, err
	}
	var found *x509.Certificate
	for _, ca := range append(append([]*x509.Certificate{}, m.roots...), m.intermediates...) {
		// Compare public key and subject, so that an unsanitised copy of a
		// sanitised CA certificate is still recognised.
		if bytes.Equal(ca.RawSubject, c.RawSubject) && bytes.Equal(ca.RawSubjectPublicKeyInfo, c.RawSubjectPublicKeyInfo) {
			found = ca
			break
		}
	}
	if found == nil {
		return nil, fmt.Errorf("certificate %s is not a root or intermediate CA of the MSP", c.Subject)
	}
	chain, err := m.uniqueChain(found)
	if err != nil {
		return nil, err
	}
	return chainID(chain), nil
}

func (m *MSP) setupAdmins(conf *mspproto.FabricMSPConfig) error {
	for i, b := range conf.Admins {
		c, err := certFromPEM(b)
		if err != nil {
			return fmt.Errorf("admin certificate %d: %w", i, err)
		}
		v, err := m.validate(c)
		if err != nil {
			return fmt.Errorf("admin certificate %d (%s): %w", i, c.Subject, err)
		}
		if m.nodeOUs && v.nodeRole != mspproto.MSPRole_CLIENT && v.nodeRole != mspproto.MSPRole_ADMIN {
			return fmt.Errorf("admin certificate %d (%s): with NodeOUs an admin must be a client or admin identity", i, c.Subject)
		}
		m.admins = append(m.admins, v.cert)
	}
	return nil
}

// ID returns the MSP identifier.
func (m *MSP) ID() string { return m.id }

// NodeOUsEnabled reports whether identities are classified by NodeOUs.
func (m *MSP) NodeOUsEnabled() bool { return m.nodeOUs }

// RootCerts returns the MSP's root CA certificates (shared; do not modify).
func (m *MSP) RootCerts() []*x509.Certificate { return m.roots }

// IntermediateCerts returns the MSP's intermediate CA certificates (shared; do not modify).
func (m *MSP) IntermediateCerts() []*x509.Certificate { return m.intermediates }

// TLSRootCerts returns the MSP's TLS root CA certificates (shared; do not modify).
func (m *MSP) TLSRootCerts() []*x509.Certificate { return m.tlsRoots }

// TLSIntermediateCerts returns the MSP's TLS intermediate CA certificates (shared; do not modify).
func (m *MSP) TLSIntermediateCerts() []*x509.Certificate { return m.tlsIntermediates }

// Config returns a copy of the configuration the MSP was built from.
func (m *MSP) Config() *mspproto.FabricMSPConfig {
	return proto.Clone(m.conf).(*mspproto.FabricMSPConfig)
}

// validated is the outcome of validating a certificate against the MSP.
type validated struct {
	cert       *x509.Certificate // sanitised
	pub        *ecdsa.PublicKey
	certifiers []byte
	nodeRole   mspproto.MSPRole_MSPRoleType // MEMBER when no node OU applies
	hasNodeOU  bool
	admin      bool
}

// uniqueChain verifies c against the MSP's CAs as of just after c's NotBefore, as
// Fabric does, and requires exactly one chain.
func (m *MSP) uniqueChain(c *x509.Certificate) ([]*x509.Certificate, error) {
	chains, err := c.Verify(x509.VerifyOptions{
		Roots:         m.rootPool,
		Intermediates: m.intPool,
		CurrentTime:   c.NotBefore.Add(time.Second),
		KeyUsages:     []x509.ExtKeyUsage{x509.ExtKeyUsageAny},
	})
	if err != nil {
		var ua x509.UnknownAuthorityError
		if errors.As(err, &ua) {
			return nil, fmt.Errorf("%w %q (issuer %s)", ErrUnknownIssuer, m.id, c.Issuer)
		}
		return nil, fmt.Errorf("%w %q: %v", ErrUnknownIssuer, m.id, err)
	}
	if len(chains) != 1 {
		return nil, fmt.Errorf("%w %q: %d validation chains found, the MSP supports exactly one", ErrUnknownIssuer, m.id, len(chains))
	}
	if err := checkLegacyNameConstraints(chains[0]); err != nil {
		return nil, fmt.Errorf("%w %q: %v", ErrUnknownIssuer, m.id, err)
	}
	return chains[0], nil
}

// validate runs Fabric's identity validation on a parsed certificate.
func (m *MSP) validate(c *x509.Certificate) (*validated, error) {
	pub, ok := c.PublicKey.(*ecdsa.PublicKey)
	if !ok || pub.Curve != elliptic.P256() {
		return nil, fmt.Errorf("%w: public key is %s", ErrUnsupportedKey, keyDesc(c))
	}
	if c.IsCA {
		return nil, ErrCAIdentity
	}
	chain, err := m.uniqueChain(c)
	if err != nil {
		return nil, err
	}
	parent := chain[1]
	if m.internalNodes[string(parent.Raw)] {
		return nil, fmt.Errorf("%w %q: issuer %s is not a leaf of the MSP's CA tree (it issued an intermediate CA)", ErrUnknownIssuer, m.id, parent.Subject)
	}
	sc, err := sanitizeCert(c, parent)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrMalformedIdentity, err)
	}
	if err := m.checkRevoked(sc, parent); err != nil {
		return nil, err
	}
	v := &validated{cert: sc, pub: pub, certifiers: chainID(chain[1:])}
	if err := m.classify(v); err != nil {
		return nil, err
	}
	for _, a := range m.admins {
		if bytes.Equal(a.Raw, sc.Raw) {
			v.admin = true
		}
	}
	return v, nil
}

func (m *MSP) checkRevoked(c, issuer *x509.Certificate) error {
	if len(m.crls) == 0 {
		return nil
	}
	if len(issuer.SubjectKeyId) == 0 {
		return fmt.Errorf("%w %q: issuer %s has no subject key identifier to match CRLs", ErrUnknownIssuer, m.id, issuer.Subject)
	}
	for _, crl := range m.crls {
		if !bytes.Equal(crl.AuthorityKeyId, issuer.SubjectKeyId) {
			continue
		}
		for _, rc := range crl.RevokedCertificateEntries {
			if rc.SerialNumber == nil || rc.SerialNumber.Cmp(c.SerialNumber) != 0 {
				continue
			}
			// Only trust a CRL actually signed by the issuing CA.
			if crl.CheckSignatureFrom(issuer) != nil {
				continue
			}
			return fmt.Errorf("%w: serial %s revoked by %s", ErrRevoked, c.SerialNumber, issuer.Subject)
		}
	}
	return nil
}

// classify applies the NodeOU rules (exactly one node OU, issued by the right CA)
// or, without NodeOUs, the legacy OU restriction.
func (m *MSP) classify(v *validated) error {
	ous := v.cert.Subject.OrganizationalUnit
	if !m.nodeOUs {
		if len(m.ouIdentifiers) == 0 {
			return nil
		}
		for _, ou := range ous {
			for _, want := range m.ouIdentifiers {
				if ou == want.ou && bytes.Equal(want.certifiers, v.certifiers) {
					return nil
				}
			}
		}
		return fmt.Errorf("%w: none of the OUs %q is an organizational unit of MSP %q", ErrInvalidOUs, ous, m.id)
	}
	count := 0
	for _, ou := range ous {
		for _, n := range []struct {
			id   *ouIdentifier
			role mspproto.MSPRole_MSPRoleType
		}{
			{m.clientOU, mspproto.MSPRole_CLIENT},
			{m.peerOU, mspproto.MSPRole_PEER},
			{m.adminOU, mspproto.MSPRole_ADMIN},
			{m.ordererOU, mspproto.MSPRole_ORDERER},
		} {
			if n.id == nil || n.id.ou != ou {
				continue
			}
			if n.id.certifiers != nil && !bytes.Equal(n.id.certifiers, v.certifiers) {
				return fmt.Errorf("%w: OU %q is only valid for certificates issued by the CA configured for it in MSP %q", ErrInvalidOUs, ou, m.id)
			}
			count++
			v.nodeRole, v.hasNodeOU = n.role, true
			break
		}
	}
	if count != 1 {
		return fmt.Errorf("%w: with NodeOUs the certificate must carry exactly one of the client, peer, admin or orderer OUs of MSP %q, it has %q", ErrInvalidOUs, m.id, ous)
	}
	return nil
}

// chainID is Fabric's certification chain identifier: SHA-256 over the raw
// certificates of the chain, in order.
func chainID(chain []*x509.Certificate) []byte {
	h := sha256.New()
	for _, c := range chain {
		h.Write(c.Raw)
	}
	return h.Sum(nil)
}

// certFromPEM decodes the first PEM block and parses it as a certificate, as
// Fabric's MSP does (the block type is not checked).
func certFromPEM(b []byte) (*x509.Certificate, error) {
	block, _ := pem.Decode(b)
	if block == nil {
		return nil, fmt.Errorf("%w: no PEM block in certificate bytes", ErrMalformedIdentity)
	}
	c, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrMalformedIdentity, err)
	}
	return c, nil
}

func keyDesc(c *x509.Certificate) string {
	if pub, ok := c.PublicKey.(*ecdsa.PublicKey); ok {
		return "ECDSA " + pub.Curve.Params().Name
	}
	return c.PublicKeyAlgorithm.String()
}

// rawCertificate is the outer structure of an X.509 certificate, kept as raw
// values so re-encoding changes nothing but the signature.
type rawCertificate struct {
	TBS    asn1.RawValue
	SigAlg asn1.RawValue
	Sig    asn1.BitString
}

// sanitizeCert returns c with its ECDSA signature in low-S form, as Fabric's MSP
// does before comparing or hashing certificates; parent is the issuing CA.
func sanitizeCert(c, parent *x509.Certificate) (*x509.Certificate, error) {
	switch c.SignatureAlgorithm {
	case x509.ECDSAWithSHA1, x509.ECDSAWithSHA256, x509.ECDSAWithSHA384, x509.ECDSAWithSHA512:
	default:
		return c, nil
	}
	ppub, ok := parent.PublicKey.(*ecdsa.PublicKey)
	if !ok {
		return c, nil
	}
	low, err := crypto.IsLowS(ppub.Curve, c.Signature)
	if err != nil {
		return nil, fmt.Errorf("certificate signature: %w", err)
	}
	if low {
		return c, nil
	}
	sig, err := crypto.ToLowS(ppub.Curve, c.Signature)
	if err != nil {
		return nil, fmt.Errorf("certificate signature: %w", err)
	}
	var rc rawCertificate
	if rest, err := asn1.Unmarshal(c.Raw, &rc); err != nil || len(rest) != 0 {
		return nil, fmt.Errorf("re-encode certificate: cannot split certificate structure")
	}
	rc.Sig = asn1.BitString{Bytes: sig, BitLength: 8 * len(sig)}
	raw, err := asn1.Marshal(rc)
	if err != nil {
		return nil, fmt.Errorf("re-encode certificate: %w", err)
	}
	out, err := x509.ParseCertificate(raw)
	if err != nil {
		return nil, fmt.Errorf("re-encode certificate: %w", err)
	}
	return out, nil
}

var (
	oidSubjectAltName  = asn1.ObjectIdentifier{2, 5, 29, 17}
	oidNameConstraints = asn1.ObjectIdentifier{2, 5, 29, 30}
)

// checkLegacyNameConstraints keeps a Go 1.14 verification rule that Fabric
// re-applies for chain stability: a leaf without SANs whose CN looks like a host
// name is refused under a CA with name constraints.
func checkLegacyNameConstraints(chain []*x509.Certificate) error {
	if len(chain) < 2 || hasExt(chain[0], oidSubjectAltName) || !looksLikeHostname(chain[0].Subject.CommonName) {
		return nil
	}
	for _, c := range chain[1:] {
		if hasExt(c, oidNameConstraints) {
			return x509.CertificateInvalidError{Cert: chain[0], Reason: x509.NameConstraintsWithoutSANs}
		}
	}
	return nil
}

func hasExt(c *x509.Certificate, oid asn1.ObjectIdentifier) bool {
	for _, e := range c.Extensions {
		if e.Id.Equal(oid) {
			return true
		}
	}
	return false
}

func looksLikeHostname(h string) bool {
	h = trimSuffixDot(h)
	if h == "" {
		return false
	}
	label := 0
	for i := 0; i < len(h); i++ {
		ch := h[i]
		switch {
		case ch == '.':
			if label == 0 {
				return false
			}
			label = 0
			continue
		case ch == '*' && i == 0 && (len(h) == 1 || h[1] == '.'):
		case 'a' <= ch && ch <= 'z', 'A' <= ch && ch <= 'Z', '0' <= ch && ch <= '9', ch == '_', ch == ':':
		case ch == '-' && label != 0:
		default:
			return false
		}
		label++
	}
	return label != 0
}

func trimSuffixDot(s string) string {
	if len(s) > 0 && s[len(s)-1] == '.' {
		return s[:len(s)-1]
	}
	return s
}
