package cryptogen

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"fmt"
	"io"
	"math/big"
	"net"
	"time"
)

// validity is the window every certificate of one Generate run shares, so a
// leaf never outlives its CA.
type validity struct {
	notBefore, notAfter time.Time
}

func newValidity(now time.Time) validity {
	// Backdated so that peers whose clocks lag a little accept the certificates
	// straight away, as cryptogen does.
	nb := now.UTC().Truncate(time.Second).Add(-5 * time.Minute)
	return validity{notBefore: nb, notAfter: nb.AddDate(10, 0, 0)}
}

// subjectBase is cryptogen's default subject; keeping it makes the material
// look familiar to Fabric operators who inspect it with openssl.
func subjectBase(cn string) pkix.Name {
	return pkix.Name{
		Country:    []string{"US"},
		Province:   []string{"California"},
		Locality:   []string{"San Francisco"},
		CommonName: cn,
	}
}

// authority is an in-memory CA: a self-signed certificate and its key.
type authority struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	v    validity
}

// newAuthority creates a self-signed root CA named cn for the organisation org.
func newAuthority(cn, org string, v validity) (*authority, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("generate key for CA %s: %w", cn, err)
	}
	ski, err := subjectKeyID(&key.PublicKey)
	if err != nil {
		return nil, fmt.Errorf("CA %s: %w", cn, err)
	}
	serial, err := randomSerial()
	if err != nil {
		return nil, fmt.Errorf("CA %s: %w", cn, err)
	}
	subject := subjectBase(cn)
	subject.Organization = []string{org}
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               subject,
		NotBefore:             v.notBefore,
		NotAfter:              v.notAfter,
		BasicConstraintsValid: true,
		IsCA:                  true,
		KeyUsage: x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment |
			x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		// cryptogen puts both TLS usages on its CAs; x509 verifiers treat a
		// CA's usages as a ceiling for its leaves, so the node certificates'
		// server+client usages must both be allowed here.
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth, x509.ExtKeyUsageServerAuth},
		SubjectKeyId: ski,
	}
	cert, err := createCertificate(tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, fmt.Errorf("self-sign CA %s: %w", cn, err)
	}
	return &authority{cert: cert, key: key, v: v}, nil
}

// leafSpec describes a certificate an authority issues.
type leafSpec struct {
	commonName string
	orgUnits   []string
	// sans are DNS names or IP addresses, told apart by parsing.
	sans        []string
	keyUsage    x509.KeyUsage
	extKeyUsage []x509.ExtKeyUsage
}

// issue creates a new P-256 key and a certificate for it signed by the CA.
func (a *authority) issue(spec leafSpec) (*x509.Certificate, *ecdsa.PrivateKey, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, fmt.Errorf("generate key for %s: %w", spec.commonName, err)
	}
	ski, err := subjectKeyID(&key.PublicKey)
	if err != nil {
		return nil, nil, fmt.Errorf("certificate for %s: %w", spec.commonName, err)
	}
	serial, err := randomSerial()
	if err != nil {
		return nil, nil, fmt.Errorf("certificate for %s: %w", spec.commonName, err)
	}
	subject := subjectBase(spec.commonName)
	subject.OrganizationalUnit = spec.orgUnits
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               subject,
		NotBefore:             a.v.notBefore,
		NotAfter:              a.v.notAfter,
		BasicConstraintsValid: true,
		KeyUsage:              spec.keyUsage,
		ExtKeyUsage:           spec.extKeyUsage,
		SubjectKeyId:          ski,
		// x509.CreateCertificate copies the parent's SubjectKeyId here anyway;
		// set it explicitly so the link does not depend on that behaviour.
		AuthorityKeyId: a.cert.SubjectKeyId,
	}
	for _, san := range spec.sans {
		if ip := net.ParseIP(san); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else {
			tmpl.DNSNames = append(tmpl.DNSNames, san)
		}
	}
	cert, err := createCertificate(tmpl, a.cert, &key.PublicKey, a.key)
	if err != nil {
		return nil, nil, fmt.Errorf("sign certificate for %s: %w", spec.commonName, err)
	}
	return cert, key, nil
}

func createCertificate(tmpl, parent *x509.Certificate, pub *ecdsa.PublicKey, signer *ecdsa.PrivateKey) (*x509.Certificate, error) {
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, pub, lowSSigner{signer})
	if err != nil {
		return nil, err
	}
	return x509.ParseCertificate(der)
}

// subjectKeyID is SHA-256 of the uncompressed public point (RFC 7093 §2
// method 4), the identifier Fabric's BCCSP and cryptogen use for a key.
func subjectKeyID(pub *ecdsa.PublicKey) ([]byte, error) {
	ecdhPub, err := pub.ECDH()
	if err != nil {
		return nil, fmt.Errorf("subject key identifier: %w", err)
	}
	sum := sha256.Sum256(ecdhPub.Bytes())
	return sum[:], nil
}

// randomSerial returns a positive serial number of at most 128 bits; RFC 5280
// forbids zero.
func randomSerial() (*big.Int, error) {
	limit := new(big.Int).Lsh(big.NewInt(1), 128)
	for {
		n, err := rand.Int(rand.Reader, limit)
		if err != nil {
			return nil, fmt.Errorf("serial number: %w", err)
		}
		if n.Sign() > 0 {
			return n, nil
		}
	}
}

// lowSSigner signs with s normalised to the lower half of the curve order.
// Fabric rewrites high-S certificate signatures to low-S when it loads an
// identity (msp's sanitizeCert) and cryptogen's signer emits low-S to begin
// with; doing the same keeps the bytes on disk equal to the bytes Fabric
// compares, e.g. Raft consenter certificates and admin identities.
type lowSSigner struct{ key *ecdsa.PrivateKey }

func (s lowSSigner) Public() crypto.PublicKey { return &s.key.PublicKey }

func (s lowSSigner) Sign(r io.Reader, digest []byte, _ crypto.SignerOpts) ([]byte, error) {
	sig, err := ecdsa.SignASN1(r, s.key, digest)
	if err != nil {
		return nil, err
	}
	return toLowS(s.key.Curve, sig)
}

type ecdsaSignature struct{ R, S *big.Int }

func toLowS(curve elliptic.Curve, der []byte) ([]byte, error) {
	var sig ecdsaSignature
	rest, err := asn1.Unmarshal(der, &sig)
	if err != nil {
		return nil, fmt.Errorf("decode ECDSA signature: %w", err)
	}
	if len(rest) != 0 {
		return nil, fmt.Errorf("decode ECDSA signature: %d trailing bytes", len(rest))
	}
	n := curve.Params().N
	halfN := new(big.Int).Rsh(n, 1)
	if sig.S.Cmp(halfN) <= 0 {
		return der, nil
	}
	sig.S = new(big.Int).Sub(n, sig.S)
	return asn1.Marshal(sig)
}
