// Package p256 owns fast ECDSA P-256 verification for public keys that check
// many signatures: a Table holds multiples of one key precomputed per window
// of the scalar, so the key's half of the verification equation
// u1·G + u2·Q costs one point addition per window instead of a full
// double-and-add scalar multiplication. It halves the cost of a verification,
// which is the bound of the orderer and of the committer (a few client, peer
// and orderer keys sign nearly everything a channel carries).
//
// Verification works on public data only, so nothing here needs to run in
// constant time. The point arithmetic is filippo.io/nistec (Go's own P-256
// implementation, with its assembly); this package only chooses which points
// to add. Table.Verify accepts exactly what crypto/ecdsa.Verify accepts for
// the same key, digest, r and s; the tests check that against crypto/ecdsa
// for random, mutated and edge-case inputs and the fuzz target keeps checking
// it.
package p256

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"errors"
	"fmt"
	"math/big"

	"filippo.io/nistec"
)

// windowBits is the width of a scalar window. Six bits make 43 additions per
// verification for the key's half, with a table of 43×63 points (≈260 KB,
// built in ≈1.2 ms); wider windows cost more to build and miss the cache.
const windowBits = 6

const (
	windows    = (256 + windowBits - 1) / windowBits
	perWindow  = 1<<windowBits - 1
	windowMask = 1<<windowBits - 1
)

// TableBytes is the approximate memory one Table holds.
const TableBytes = windows * perWindow * 96

// order is the order n of the P-256 group.
var order = elliptic.P256().Params().N

// Table is a P-256 public key with its precomputed multiples. It is immutable
// and safe for concurrent use.
type Table struct {
	// points[i*perWindow+j-1] = j·2^(windowBits·i)·Q for j in 1..perWindow.
	points []nistec.P256Point
}

// NewTable precomputes the multiples of pub, which must be a P-256 key on the
// curve.
func NewTable(pub *ecdsa.PublicKey) (*Table, error) {
	if pub == nil || pub.Curve == nil || pub.Curve.Params().Name != "P-256" {
		return nil, errors.New("p256: not a P-256 public key")
	}
	enc, err := pub.Bytes()
	if err != nil {
		return nil, fmt.Errorf("p256: encode public key: %w", err)
	}
	q, err := nistec.NewP256Point().SetBytes(enc)
	if err != nil {
		return nil, fmt.Errorf("p256: public key is not on the curve: %w", err)
	}
	t := &Table{points: make([]nistec.P256Point, windows*perWindow)}
	base := q
	for i := 0; i < windows; i++ {
		row := t.points[i*perWindow : (i+1)*perWindow]
		row[0].Set(base)
		for j := 1; j < perWindow; j++ {
			row[j].Add(&row[j-1], base)
		}
		// The next window's base is 2^windowBits times this one:
		// (perWindow + 1)·base = row[perWindow-1] + base.
		base = nistec.NewP256Point().Add(&row[perWindow-1], base)
	}
	return t, nil
}

// Verify reports whether (r, s) is a valid ECDSA signature by the table's key
// over hash, with crypto/ecdsa.Verify's semantics: r and s in [1, n-1], hash
// truncated to the bit length of n, and x(u1·G + u2·Q) ≡ r (mod n) for
// w = s⁻¹, u1 = e·w, u2 = r·w. It does not check low-S; callers that require
// it (Fabric does) check s first.
func (t *Table) Verify(hash []byte, r, s *big.Int) bool {
	if r.Sign() <= 0 || s.Sign() <= 0 || r.Cmp(order) >= 0 || s.Cmp(order) >= 0 {
		return false
	}
	w := new(big.Int).ModInverse(s, order)
	if w == nil {
		return false
	}
	u1 := hashToInt(hash)
	u1.Mul(u1, w).Mod(u1, order)
	u2 := w.Mul(r, w).Mod(w, order)

	var b1 [32]byte
	p, err := nistec.NewP256Point().ScalarBaseMult(u1.FillBytes(b1[:]))
	if err != nil {
		return false
	}
	p.Add(p, t.mul(u2))
	x, err := p.BytesX()
	if err != nil { // the point at infinity
		return false
	}
	v := new(big.Int).SetBytes(x)
	return v.Mod(v, order).Cmp(r) == 0
}

// mul returns k·Q for 0 ≤ k < n: one addition per non-zero window of k, read
// from the least significant end. nistec's addition is complete, so sums that
// meet the identity or a point equal to the accumulator need no special case.
func (t *Table) mul(k *big.Int) *nistec.P256Point {
	acc := nistec.NewP256Point() // the identity
	for i := 0; i < windows; i++ {
		d := window(k, i*windowBits)
		if d != 0 {
			acc.Add(acc, &t.points[i*perWindow+d-1])
		}
	}
	return acc
}

// window returns the windowBits bits of k starting at bit off.
func window(k *big.Int, off int) int {
	d := 0
	for b := windowBits - 1; b >= 0; b-- {
		d = d<<1 | int(k.Bit(off+b))
	}
	return d & windowMask
}

// hashToInt converts a hash to an integer the way crypto/ecdsa does: the
// leftmost bits, as many as the bit length of the order.
func hashToInt(hash []byte) *big.Int {
	const orderBytes = 32
	if len(hash) > orderBytes {
		hash = hash[:orderBytes]
	}
	return new(big.Int).SetBytes(hash)
}
