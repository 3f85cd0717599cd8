// Package msptest builds in-memory certificate authorities for tests: root and
// intermediate CAs, NodeOU-tagged leaf identities, CRLs, the matching
// msp.FabricMSPConfig and Fabric MSP folders on disk. Values are not safe for
// concurrent mutation (Issue, Revoke); build them in the test's goroutine.
package msptest

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"os"
	"path/filepath"
	"testing"
	"time"

	mspproto "github.com/hyperledger/fabric-protos-go-apiv2/msp"

	"github.com/cairn-ledger/cairn/internal/crypto"
	"github.com/cairn-ledger/cairn/internal/msp"
)

// NodeOU names used by the configurations this package builds (Fabric's defaults).
const (
	OUClient  = "client"
	OUPeer    = "peer"
	OUAdmin   = "admin"
	OUOrderer = "orderer"
)

// CA is a test certificate authority of one MSP.
type CA struct {
	MSPID   string
	Cert    *x509.Certificate
	CertPEM []byte
	Key     *ecdsa.PrivateKey
	Parent  *CA // nil for a root CA

	revoked []x509.RevocationListEntry
	crlNum  int64
}

// NewCA returns a self-signed root CA for mspID.
func NewCA(t testing.TB, mspID string) *CA {
	t.Helper()
	key := newKey(t)
	tmpl := caTemplate(t, "ca."+mspID)
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatalf("msptest: create root CA: %v", err)
	}
	return newCA(t, mspID, der, key, nil)
}

// NewIntermediate returns an intermediate CA issued by ca.
func (ca *CA) NewIntermediate(t testing.TB, name string) *CA {
	t.Helper()
	key := newKey(t)
	der, err := x509.CreateCertificate(rand.Reader, caTemplate(t, name), ca.Cert, &key.PublicKey, ca.Key)
	if err != nil {
		t.Fatalf("msptest: create intermediate CA: %v", err)
	}
	return newCA(t, ca.MSPID, der, key, ca)
}

func newCA(t testing.TB, mspID string, der []byte, key *ecdsa.PrivateKey, parent *CA) *CA {
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatalf("msptest: parse CA: %v", err)
	}
	return &CA{MSPID: mspID, Cert: cert, CertPEM: certPEM(der), Key: key, Parent: parent}
}

func caTemplate(t testing.TB, cn string) *x509.Certificate {
	return &x509.Certificate{
		SerialNumber:          serial(t),
		Subject:               pkix.Name{CommonName: cn, Organization: []string{cn}},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(10 * 365 * 24 * time.Hour),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
}

// Leaf is an identity issued by a test CA.
type Leaf struct {
	MSPID   string
	Cert    *x509.Certificate
	CertPEM []byte
	Key     *ecdsa.PrivateKey
	KeyPEM  []byte // PKCS#8
}

// LeafOptions customises IssueWith.
type LeafOptions struct {
	Name      string
	OUs       []string
	NotBefore time.Time // zero: an hour ago
	NotAfter  time.Time // zero: in a day
	IsCA      bool
}

// Issue issues a leaf certificate named name carrying OU ou ("" for none).
func (ca *CA) Issue(t testing.TB, name, ou string) *Leaf {
	t.Helper()
	o := LeafOptions{Name: name}
	if ou != "" {
		o.OUs = []string{ou}
	}
	return ca.IssueWith(t, o)
}

// IssueWith issues a leaf certificate with the given options.
func (ca *CA) IssueWith(t testing.TB, o LeafOptions) *Leaf {
	t.Helper()
	key := newKey(t)
	nb, na := o.NotBefore, o.NotAfter
	if nb.IsZero() {
		nb = time.Now().Add(-time.Hour)
	}
	if na.IsZero() {
		na = time.Now().Add(24 * time.Hour)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial(t),
		Subject:               pkix.Name{CommonName: o.Name, OrganizationalUnit: o.OUs},
		NotBefore:             nb,
		NotAfter:              na,
		KeyUsage:              x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  o.IsCA,
	}
	if o.IsCA {
		tmpl.KeyUsage |= x509.KeyUsageCertSign
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.Cert, &key.PublicKey, ca.Key)
	if err != nil {
		t.Fatalf("msptest: issue %q: %v", o.Name, err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatalf("msptest: parse leaf: %v", err)
	}
	p8, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatalf("msptest: marshal key: %v", err)
	}
	return &Leaf{
		MSPID:   ca.MSPID,
		Cert:    cert,
		CertPEM: certPEM(der),
		Key:     key,
		KeyPEM:  pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: p8}),
	}
}

// SigningIdentity returns the leaf as a crypto.SigningIdentity of its CA's MSP.
func (l *Leaf) SigningIdentity() *crypto.SigningIdentity {
	return &crypto.SigningIdentity{MSPID: l.MSPID, CertPEM: l.CertPEM, Key: l.Key}
}

// Serialize returns the marshalled msp.SerializedIdentity of the leaf.
func (l *Leaf) Serialize() []byte { return l.SigningIdentity().Serialize() }

// Sign signs msg (SHA-256, low-S DER) or fails the test.
func (l *Leaf) Sign(t testing.TB, msg []byte) []byte {
	t.Helper()
	sig, err := crypto.Sign(l.Key, msg)
	if err != nil {
		t.Fatalf("msptest: sign: %v", err)
	}
	return sig
}

// Revoke adds the leaf to the CA's CRL.
func (ca *CA) Revoke(t testing.TB, l *Leaf) {
	t.Helper()
	ca.revoked = append(ca.revoked, x509.RevocationListEntry{SerialNumber: l.Cert.SerialNumber, RevocationTime: time.Now()})
}

// CRLPEM returns a PEM CRL signed by the CA listing every revoked leaf.
func (ca *CA) CRLPEM(t testing.TB) []byte {
	t.Helper()
	ca.crlNum++
	der, err := x509.CreateRevocationList(rand.Reader, &x509.RevocationList{
		Number:                    big.NewInt(ca.crlNum),
		ThisUpdate:                time.Now().Add(-time.Minute),
		NextUpdate:                time.Now().Add(24 * time.Hour),
		RevokedCertificateEntries: ca.revoked,
	}, ca.Cert, ca.Key)
	if err != nil {
		t.Fatalf("msptest: create CRL: %v", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "X509 CRL", Bytes: der})
}

// Root returns the root CA of ca's chain.
func (ca *CA) Root() *CA {
	for ca.Parent != nil {
		ca = ca.Parent
	}
	return ca
}

// Config returns the MSP configuration trusting ca's chain (root in RootCerts,
// the CAs below it in IntermediateCerts), with NodeOUs enabled using the OU names
// client, peer, admin and orderer, and a CRL when ca has revoked leaves.
func (ca *CA) Config(t testing.TB) *mspproto.FabricMSPConfig {
	t.Helper()
	conf := &mspproto.FabricMSPConfig{
		Name:      ca.MSPID,
		RootCerts: [][]byte{ca.Root().CertPEM},
		CryptoConfig: &mspproto.FabricCryptoConfig{
			SignatureHashFamily:            "SHA2",
			IdentityIdentifierHashFunction: "SHA256",
		},
		FabricNodeOus: &mspproto.FabricNodeOUs{
			Enable:              true,
			ClientOuIdentifier:  &mspproto.FabricOUIdentifier{OrganizationalUnitIdentifier: OUClient},
			PeerOuIdentifier:    &mspproto.FabricOUIdentifier{OrganizationalUnitIdentifier: OUPeer},
			AdminOuIdentifier:   &mspproto.FabricOUIdentifier{OrganizationalUnitIdentifier: OUAdmin},
			OrdererOuIdentifier: &mspproto.FabricOUIdentifier{OrganizationalUnitIdentifier: OUOrderer},
		},
	}
	for c := ca; c.Parent != nil; c = c.Parent {
		conf.IntermediateCerts = append([][]byte{c.CertPEM}, conf.IntermediateCerts...)
	}
	for c := ca; c != nil; c = c.Parent {
		if len(c.revoked) > 0 {
			conf.RevocationList = append(conf.RevocationList, c.CRLPEM(t))
		}
	}
	conf.TlsRootCerts = [][]byte{ca.Root().CertPEM}
	return conf
}

// MSP builds the msp.MSP of Config(t) or fails the test.
func (ca *CA) MSP(t testing.TB) *msp.MSP {
	t.Helper()
	m, err := msp.New(ca.Config(t))
	if err != nil {
		t.Fatalf("msptest: build MSP %s: %v", ca.MSPID, err)
	}
	return m
}

// Manager builds an msp.Manager over the MSPs of cas or fails the test.
func Manager(t testing.TB, cas ...*CA) *msp.Manager {
	t.Helper()
	msps := make([]*msp.MSP, len(cas))
	for i, ca := range cas {
		msps[i] = ca.MSP(t)
	}
	return msp.NewManager(msps...)
}

// WriteMSPDir writes a Fabric MSP folder for ca at dir: cacerts/,
// intermediatecerts/, crls/, tlscacerts/, config.yaml with NodeOUs and, when
// signer is not nil, signcerts/ and keystore/priv_sk.
func (ca *CA) WriteMSPDir(t testing.TB, dir string, signer *Leaf) {
	t.Helper()
	write := func(rel string, b []byte) {
		p := filepath.Join(dir, rel)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatalf("msptest: %v", err)
		}
		if err := os.WriteFile(p, b, 0o600); err != nil {
			t.Fatalf("msptest: %v", err)
		}
	}
	root := ca.Root()
	write("cacerts/ca.pem", root.CertPEM)
	write("tlscacerts/tlsca.pem", root.CertPEM)
	i := 0
	for c := ca; c.Parent != nil; c = c.Parent {
		write(filepath.Join("intermediatecerts", "ica"+string(rune('0'+i))+".pem"), c.CertPEM)
		i++
	}
	if len(ca.revoked) > 0 {
		write("crls/crl.pem", ca.CRLPEM(t))
	}
	// NodeOU identifiers name the issuing CA, as Fabric CA's generated config does.
	issuer := "cacerts/ca.pem"
	if ca.Parent != nil {
		issuer = "intermediatecerts/ica0.pem"
	}
	yaml := "NodeOUs:\n  Enable: true\n"
	for _, n := range []struct{ key, ou string }{
		{"ClientOUIdentifier", OUClient}, {"PeerOUIdentifier", OUPeer},
		{"AdminOUIdentifier", OUAdmin}, {"OrdererOUIdentifier", OUOrderer},
	} {
		yaml += "  " + n.key + ":\n    Certificate: " + issuer + "\n    OrganizationalUnitIdentifier: " + n.ou + "\n"
	}
	write("config.yaml", []byte(yaml))
	if signer != nil {
		write("signcerts/cert.pem", signer.CertPEM)
		write("keystore/priv_sk", signer.KeyPEM)
	}
}

func newKey(t testing.TB) *ecdsa.PrivateKey {
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatalf("msptest: generate key: %v", err)
	}
	return k
}

func serial(t testing.TB) *big.Int {
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		t.Fatalf("msptest: serial: %v", err)
	}
	return n.Add(n, big.NewInt(1))
}

func certPEM(der []byte) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
}
