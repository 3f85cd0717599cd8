// Package crypto owns Cairn's signing primitives: ECDSA P-256 over SHA-256 with
// ASN.1 DER signatures normalised to low-S (as Fabric requires), parsing of PEM
// keys and certificates, and loading a signing identity from a Fabric MSP folder.
//
// Everything here is a pure function or an immutable value; all of it is safe for
// concurrent use. A SigningIdentity must not be mutated once shared.
package crypto

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"encoding/asn1"
	"errors"
	"fmt"
	"math/big"

	"github.com/cairn-ledger/cairn/internal/crypto/p256"
)

// Sentinel errors callers can branch on with errors.Is.
var (
	// ErrBadSignature means the signature does not verify for the message and key.
	ErrBadSignature = errors.New("signature does not verify")
	// ErrMalformedSignature means the bytes are not a DER ECDSA signature.
	ErrMalformedSignature = errors.New("malformed ECDSA signature")
	// ErrHighS means the signature's S is in the upper half of the curve order;
	// Fabric rejects such signatures to remove malleability.
	ErrHighS = errors.New("signature is not in low-S form")
)

// ecdsaSignature is the ASN.1 structure of an ECDSA signature.
type ecdsaSignature struct {
	R, S *big.Int
}

// Sign hashes msg with SHA-256 and signs the digest with key, returning an ASN.1
// DER signature whose S is normalised to the lower half of the curve order.
func Sign(key *ecdsa.PrivateKey, msg []byte) ([]byte, error) {
	if key == nil {
		return nil, errors.New("sign: nil private key")
	}
	digest := sha256.Sum256(msg)
	r, s, err := ecdsa.Sign(rand.Reader, key, digest[:])
	if err != nil {
		return nil, fmt.Errorf("sign: %w", err)
	}
	s = lowS(key.Curve, s)
	der, err := asn1.Marshal(ecdsaSignature{R: r, S: s})
	if err != nil {
		return nil, fmt.Errorf("sign: encode signature: %w", err)
	}
	return der, nil
}

// Verify checks that sig is a valid low-S ECDSA signature by pub over the SHA-256
// digest of msg. Like Fabric's software BCCSP it ignores bytes trailing the DER
// sequence, and it rejects high-S signatures with ErrHighS.
func Verify(pub *ecdsa.PublicKey, msg, sig []byte) error {
	if pub == nil {
		return errors.New("verify: nil public key")
	}
	return verify(pub.Curve, msg, sig, func(digest []byte, r, s *big.Int) bool {
		return ecdsa.Verify(pub, digest, r, s)
	})
}

// VerifyTable is Verify for a P-256 key through its precomputed table: the
// same answers in about half the time (see package p256).
func VerifyTable(t *p256.Table, msg, sig []byte) error {
	if t == nil {
		return errors.New("verify: nil key table")
	}
	return verify(elliptic.P256(), msg, sig, t.Verify)
}

func verify(curve elliptic.Curve, msg, sig []byte, check func(digest []byte, r, s *big.Int) bool) error {
	r, s, err := unmarshalSignature(sig)
	if err != nil {
		return err
	}
	if !isLowS(curve, s) {
		return ErrHighS
	}
	digest := sha256.Sum256(msg)
	if !check(digest[:], r, s) {
		return ErrBadSignature
	}
	return nil
}

// IsLowS reports whether the DER signature sig has S in the lower half of the
// order of curve (nil means P-256).
func IsLowS(curve elliptic.Curve, sig []byte) (bool, error) {
	_, s, err := unmarshalSignature(sig)
	if err != nil {
		return false, err
	}
	return isLowS(orP256(curve), s), nil
}

// ToLowS returns sig re-encoded with S normalised to the lower half of the order of
// curve (nil means P-256). A signature already in low-S form is returned unchanged.
// Keys held outside the process (Vault Transit, HSMs) sign without normalising, so
// their output goes through here.
func ToLowS(curve elliptic.Curve, sig []byte) ([]byte, error) {
	curve = orP256(curve)
	r, s, err := unmarshalSignature(sig)
	if err != nil {
		return nil, err
	}
	if isLowS(curve, s) {
		return sig, nil
	}
	der, err := asn1.Marshal(ecdsaSignature{R: r, S: lowS(curve, s)})
	if err != nil {
		return nil, fmt.Errorf("encode low-S signature: %w", err)
	}
	return der, nil
}

func orP256(c elliptic.Curve) elliptic.Curve {
	if c == nil {
		return elliptic.P256()
	}
	return c
}

func unmarshalSignature(sig []byte) (r, s *big.Int, err error) {
	var es ecdsaSignature
	if _, err := asn1.Unmarshal(sig, &es); err != nil {
		return nil, nil, fmt.Errorf("%w: %v", ErrMalformedSignature, err)
	}
	if es.R == nil || es.S == nil {
		return nil, nil, fmt.Errorf("%w: missing R or S", ErrMalformedSignature)
	}
	if es.R.Sign() <= 0 || es.S.Sign() <= 0 {
		return nil, nil, fmt.Errorf("%w: R and S must be positive", ErrMalformedSignature)
	}
	return es.R, es.S, nil
}

func isLowS(curve elliptic.Curve, s *big.Int) bool {
	halfOrder := new(big.Int).Rsh(curve.Params().N, 1)
	return s.Cmp(halfOrder) <= 0
}

func lowS(curve elliptic.Curve, s *big.Int) *big.Int {
	if isLowS(curve, s) {
		return s
	}
	return new(big.Int).Sub(curve.Params().N, s)
}
