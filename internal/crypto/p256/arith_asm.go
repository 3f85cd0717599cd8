//go:build (amd64 || arm64 || ppc64le || s390x) && !purego

package p256

import (
	"crypto/elliptic"
	"errors"
	"math/big"
	"sync"
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

// p256PointAddAffineAsm sets res = in1 + in2, or in1 − in2 if sign is 1;
// res = in1 if sel is 0; res = ±in2 if zero is 0. in1 must not be ±in2: the
// mixed formula then yields Z = 0 rather than the doubling or the identity.
//
//go:linkname p256PointAddAffineAsm filippo.io/nistec.p256PointAddAffineAsm
//go:noescape
func p256PointAddAffineAsm(res, in1 *nistec.P256Point, in2 *affinePoint, sign, sel, zero int)

// p256NegCond sets val = −val mod p if cond is not 0.
//
//go:linkname p256NegCond filippo.io/nistec.p256NegCond
//go:noescape
func p256NegCond(val *element, cond int)

// p256Inverse sets out = in⁻¹ in the Montgomery domain.
//
//go:linkname p256Inverse filippo.io/nistec.p256Inverse
func p256Inverse(out, in *element)

// montOne is 1 in the Montgomery domain.
var montOne = element{0x0000000000000001, 0xffffffff00000000, 0xffffffffffffffff, 0x00000000fffffffe}

// rr is R² mod p: p256Mul(a, rr) brings a into the Montgomery domain.
var rr = element{0x0000000000000003, 0xfffffffbffffffff, 0xfffffffffffffffe, 0x00000004fffffffd}

// fieldP is the P-256 field prime p.
var fieldP = elliptic.P256().Params().P

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

// prepare turns the table's multiples into affine points (one field
// inversion for all of them), so that each addition of a verification is the
// cheaper mixed addition, and drops the projective copies.
func (t *Table) prepare() error {
	aff, err := affineRows(t.points)
	if err != nil {
		return err
	}
	t.aff, t.points = aff, nil
	return nil
}

// affineRows converts points, none of them the identity, to affine form with
// Montgomery's batch inversion.
func affineRows(points []nistec.P256Point) ([]affinePoint, error) {
	prefix := make([]element, len(points)) // prefix[i] = Z_0·…·Z_(i-1)
	acc := montOne
	for i := range points {
		z := &coords(&points[i]).z
		if *z == (element{}) {
			return nil, errors.New("p256: a table multiple is the identity")
		}
		prefix[i] = acc
		p256Mul(&acc, &acc, z)
	}
	var inv element
	p256Inverse(&inv, &acc) // (Z_0·…·Z_(n-1))⁻¹
	out := make([]affinePoint, len(points))
	for i := len(points) - 1; i >= 0; i-- {
		c := coords(&points[i])
		var zinv, z2, z3 element
		p256Mul(&zinv, &inv, &prefix[i]) // Z_i⁻¹
		p256Mul(&inv, &inv, &c.z)        // (Z_0·…·Z_(i-1))⁻¹
		p256Sqr(&z2, &zinv, 1)
		p256Mul(&z3, &z2, &zinv)
		p256Mul((*element)(&out[i].x), &c.x, &z2)
		p256Mul((*element)(&out[i].y), &c.y, &z3)
	}
	return out, nil
}

// baseTable is the table of the generator G, built on first use.
var baseTable = sync.OnceValue(func() *Table {
	t, err := newTable(nistec.NewP256Point().SetGenerator())
	if err != nil {
		panic("p256: generator table: " + err.Error()) // G is fixed: cannot happen
	}
	return t
})

// sum returns u1·G + u2·Q (0 ≤ u1, u2 < n), one mixed addition per non-zero
// digit of either scalar, the two interleaved in one accumulator.
func (t *Table) sum(u1, u2 *big.Int) *nistec.P256Point {
	return sumOf(baseTable().aff, limbs(u1), t.aff, limbs(u2))
}

// mul returns k·Q for 0 ≤ k < n.
func (t *Table) mul(k *[4]uint64) *nistec.P256Point {
	return sumOf(t.aff, k, nil, &[4]uint64{})
}

func sumOf(rowsA []affinePoint, a *[4]uint64, rowsB []affinePoint, b *[4]uint64) *nistec.P256Point {
	acc := nistec.NewP256Point() // the identity
	carryA, carryB := 0, 0
	for i := 0; i < windows; i++ {
		var d int
		d, carryA = digit(a, i, carryA)
		addDigit(acc, rowsA, i, d)
		d, carryB = digit(b, i, carryB)
		addDigit(acc, rowsB, i, d)
	}
	return acc
}

// addDigit adds d·2^(windowBits·i)·P to acc, P being the point rows holds
// multiples of.
func addDigit(acc *nistec.P256Point, rows []affinePoint, i, d int) {
	if d == 0 {
		return
	}
	sign := 0
	if d < 0 {
		d, sign = -d, 1
	}
	a := &rows[i*perWindow+d-1]
	if coords(acc).z == (element{}) { // the identity: acc = ±a
		setAffine(acc, a, sign)
		return
	}
	var sum nistec.P256Point
	p256PointAddAffineAsm(&sum, acc, a, sign, 1, 1)
	if coords(&sum).z == (element{}) {
		// acc = ±a: the mixed formula can neither double nor reach the
		// identity; add takes the complete path.
		var p nistec.P256Point
		setAffine(&p, a, sign)
		add(acc, acc, &p)
		return
	}
	acc.Set(&sum)
}

// setAffine sets p = a, or −a if sign is 1, with Z = 1.
func setAffine(p *nistec.P256Point, a *affinePoint, sign int) {
	c := coords(p)
	c.x, c.y, c.z = element(a.x), element(a.y), montOne
	p256NegCond(&c.y, sign)
}
