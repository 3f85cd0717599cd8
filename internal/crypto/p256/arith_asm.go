//go:build (amd64 || arm64 || ppc64le || s390x) && !purego

package p256

import (
	"math/big"
	"unsafe"

	"filippo.io/nistec"
)

// On these platforms filippo.io/nistec (v0.0.4, pinned in go.mod) backs
// P256Point with Go's P-256 assembly: Jacobian coordinates (x = X/Z²,
// y = Y/Z³, Z = 0 for the identity), each a field element in the Montgomery
// domain (R = 2²⁵⁶), fully reduced, as four little-endian limbs. Its public
// Add is constant-time and complete, so it always computes a doubling as
// well, and BytesX inverts Z; verification needs neither, so this file calls
// the assembly directly. jacobian mirrors that layout;
// TestArithmeticMatchesNistec fails if a nistec upgrade changes it.

type element [4]uint64

type jacobian struct{ x, y, z element }

func coords(p *nistec.P256Point) *jacobian { return (*jacobian)(unsafe.Pointer(p)) }

// p256PointAddAsm sets res = in1 + in2 and returns 1 if the inputs are the
// same point; res and the result are undefined if either is the identity.
//
//go:linkname p256PointAddAsm filippo.io/nistec.p256PointAddAsm
//go:noescape
func p256PointAddAsm(res, in1, in2 *nistec.P256Point) int

// p256PointDoubleAsm sets res = 2·in.
//
//go:linkname p256PointDoubleAsm filippo.io/nistec.p256PointDoubleAsm
//go:noescape
func p256PointDoubleAsm(res, in *nistec.P256Point)

// p256Mul sets res = in1·in2·R⁻¹ mod p (Montgomery multiplication).
//
//go:linkname p256Mul filippo.io/nistec.p256Mul
//go:noescape
func p256Mul(res, in1, in2 *element)

// p256Sqr sets res = in²·R⁻¹ mod p, repeated n times.
//
//go:linkname p256Sqr filippo.io/nistec.p256Sqr
//go:noescape
func p256Sqr(res, in *element, n int)

// rr is R² mod p: p256Mul(a, rr) brings a into the Montgomery domain.
var rr = element{0x0000000000000003, 0xfffffffbffffffff, 0xfffffffffffffffe, 0x00000004fffffffd}

// fieldP is the P-256 field prime p.
var fieldP = mustHex("ffffffff00000001000000000000000000000000ffffffffffffffffffffffff")

func mustHex(s string) *big.Int {
	v, ok := new(big.Int).SetString(s, 16)
	if !ok {
		panic("p256: bad constant " + s)
	}
	return v
}

// add sets r = a + b in variable time: the identity and equal inputs are
// branched on (they depend only on public data here), so a sum costs one
// assembly addition instead of an addition, a doubling and two selections.
// r may alias a or b.
func add(r, a, b *nistec.P256Point) {
	switch {
	case coords(a).z == element{}:
		r.Set(b)
		return
	case coords(b).z == element{}:
		r.Set(a)
		return
	}
	var sum nistec.P256Point
	if p256PointAddAsm(&sum, a, b) == 1 {
		p256PointDoubleAsm(r, a)
		return
	}
	r.Set(&sum)
}

// xMatches reports whether p is not the identity and its affine x, reduced
// mod n, equals r (0 < r < n). With x = X/Z² it compares X with c·Z² for the
// candidates c = r and, when r + n < p, c = r + n (the x in [n, p) that
// reduce to r), so no field inversion is needed.
func xMatches(p *nistec.P256Point, r *big.Int) bool {
	c := coords(p)
	if c.z == (element{}) {
		return false
	}
	var z2 element
	p256Sqr(&z2, &c.z, 1)
	if matchesCandidate(&c.x, &z2, r) {
		return true
	}
	rn := new(big.Int).Add(r, order)
	return rn.Cmp(fieldP) < 0 && matchesCandidate(&c.x, &z2, rn)
}

// matchesCandidate reports whether x ≡ v·z2 (mod p), with x and z2 in the
// Montgomery domain and 0 ≤ v < p. Both sides are fully reduced, so equal
// limbs mean equal elements.
func matchesCandidate(x, z2 *element, v *big.Int) bool {
	vm := element(*limbs(v))
	p256Mul(&vm, &vm, &rr)
	p256Mul(&vm, &vm, z2)
	return vm == *x
}
