package crypto

import (
	"crypto/ecdsa"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"

	mspproto "github.com/hyperledger/fabric-protos-go-apiv2/msp"
	"google.golang.org/protobuf/proto"
)

// SigningIdentity is an MSP member able to sign: its MSP ID, its PEM certificate
// and the matching private key.
type SigningIdentity struct {
	MSPID   string
	CertPEM []byte
	Key     *ecdsa.PrivateKey
}

// Serialize returns the identity as Fabric puts it in headers: a marshalled
// msp.SerializedIdentity{Mspid, IdBytes: CertPEM}.
func (s *SigningIdentity) Serialize() []byte {
	b, err := proto.MarshalOptions{Deterministic: true}.Marshal(&mspproto.SerializedIdentity{Mspid: s.MSPID, IdBytes: s.CertPEM})
	if err != nil {
		// Marshalling two scalar fields cannot fail; if it did, the proto runtime is broken.
		panic(fmt.Sprintf("crypto: marshal SerializedIdentity: %v", err))
	}
	return b
}

// Sign signs msg with the identity's key (SHA-256, DER, low-S).
func (s *SigningIdentity) Sign(msg []byte) ([]byte, error) {
	return Sign(s.Key, msg)
}

// LoadSigningIdentity reads a signing identity from a Fabric MSP folder: the
// certificate in mspDir/signcerts (exactly one .pem file) and the key in
// mspDir/keystore. It checks that the key matches the certificate.
func LoadSigningIdentity(mspID, mspDir string) (*SigningIdentity, error) {
	signcerts := filepath.Join(mspDir, "signcerts")
	matches, err := filepath.Glob(filepath.Join(signcerts, "*.pem"))
	if err != nil {
		return nil, fmt.Errorf("load signing identity: %w", err)
	}
	sort.Strings(matches)
	switch len(matches) {
	case 0:
		return nil, fmt.Errorf("load signing identity: no .pem certificate in %s", signcerts)
	case 1:
	default:
		return nil, fmt.Errorf("load signing identity: %d certificates in %s, want exactly one", len(matches), signcerts)
	}
	certPEM, err := os.ReadFile(matches[0])
	if err != nil {
		return nil, fmt.Errorf("load signing identity: %w", err)
	}
	cert, err := ParseCertificatePEM(certPEM)
	if err != nil {
		return nil, fmt.Errorf("load signing identity: %s: %w", matches[0], err)
	}
	key, err := LoadKeystoreKey(filepath.Join(mspDir, "keystore"))
	if err != nil {
		return nil, fmt.Errorf("load signing identity: %w", err)
	}
	pub, ok := cert.PublicKey.(*ecdsa.PublicKey)
	if !ok || !pub.Equal(&key.PublicKey) {
		return nil, errors.New("load signing identity: keystore key does not match the signcerts certificate")
	}
	return &SigningIdentity{MSPID: mspID, CertPEM: certPEM, Key: key}, nil
}
