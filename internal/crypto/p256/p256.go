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
// implementation, with its assembly); this package chooses which points to
// add, and where nistec's assembly backs its points (arith_asm.go) it calls
// the assembly addition directly, branching on the identity and on equal
// inputs instead of computing a doubling and selecting in constant time, and
// compares x(R) with r as X = r·Z² without inverting Z. Table.Verify accepts
// exactly what crypto/ecdsa.Verify accepts for the same key, digest, r and s;
// the tests check that against crypto/ecdsa for random, mutated and
// edge-case inputs and the fuzz target keeps checking it.
package p256

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"encoding/binary"
	"errors"
	"fmt"
	"math/big"

	"filippo.io/nistec"
)

// windowBits is the width of a scalar window. The scalar is recoded into
// signed digits in [-2^(windowBits-1)+1, 2^(windowBits-1)], so a window needs
// only the positive multiples in its table (a negative digit adds the
// negated point, which costs one field subtraction). Seven bits make 37
// additions per verification for the key's half, with a table of 37×64
// points (≈230 KB, built in ≈1.2 ms), smaller than six unsigned bits needed
// (43 additions, 260 KB). Eight bits would save four more additions for a
// 400-KB table per key; BenchmarkVerify gains only a few percent, within its
// run-to-run spread, so the smaller table wins.
const windowBits = 7

const (
	// windows covers 257 bits: the top digit can carry one bit past the
	// 256-bit scalar.
	windows    = (256 + 1 + windowBits - 1) / windowBits
	perWindow  = 1 << (windowBits - 1)
	windowMask = 1<<windowBits - 1
)

// TableBytes bounds the memory one Table holds (its multiples as projective
// points; the affine form kept where nistec's assembly is used takes two
// thirds of it).
const TableBytes = windows * perWindow * 96

// order is the order n of the P-256 group.
var order = elliptic.P256().Params().N

// Table is a P-256 public key with its precomputed multiples. It is immutable
// and safe for concurrent use.
type Table struct {
	// points[i*perWindow+j-1] = j·2^(windowBits·i)·Q for j in 1..perWindow,
	// where the build adds with nistec's public API (arith_noasm.go).
	points []nistec.P256Point
	// aff holds the same multiples in affine form where the build adds with
	// nistec's assembly (arith_asm.go); points is then dropped.
	aff []affinePoint
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
	return newTable(q)
}

// newTable builds the table of q's multiples.
func newTable(q *nistec.P256Point) (*Table, error) {
	t := &Table{points: make([]nistec.P256Point, windows*perWindow)}
	base := q
	for i := 0; i < windows; i++ {
		row := t.points[i*perWindow : (i+1)*perWindow]
		row[0].Set(base)
		for j := 1; j < perWindow; j++ {
			row[j].Add(&row[j-1], base)
		}
		// The next window's base is 2^windowBits = 2·perWindow times this
		// one.
		base = nistec.NewP256Point().Double(&row[perWindow-1])
	}
	return t, t.prepare()
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

	p := t.sum(u1, u2)
	return p != nil && xMatches(p, r)
}

// affinePoint is a point as (x, y) in the Montgomery domain, the layout of
// nistec's assembly for precomputed points (used only where it is built).
type affinePoint struct{ x, y [4]uint64 }

// digit returns the signed digit of window i of k, given the carry out of
// window i-1, and the carry into window i+1. Digits are in
// [-perWindow+1, perWindow], so a table needs only the positive multiples.
func digit(k *[4]uint64, i, carry int) (d, carryOut int) {
	d = window(k, i*windowBits) + carry
	if d > perWindow {
		return d - 1<<windowBits, 1
	}
	return d, 0
}

// window returns the windowBits bits of the little-endian limbs k starting at
// bit off; bits past the top are zero.
func window(k *[4]uint64, off int) int {
	limb, shift := off/64, off%64
	if limb >= len(k) {
		return 0
	}
	v := k[limb] >> shift
	if shift+windowBits > 64 && limb+1 < len(k) {
		v |= k[limb+1] << (64 - shift)
	}
	return int(v & windowMask)
}

// limbs returns x, which must be below 2^256, as little-endian 64-bit limbs.
func limbs(x *big.Int) *[4]uint64 {
	var b [32]byte
	x.FillBytes(b[:])
	var l [4]uint64
	for i := range l {
		l[i] = binary.BigEndian.Uint64(b[32-8*(i+1):])
	}
	return &l
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
