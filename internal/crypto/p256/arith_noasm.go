//go:build !((amd64 || arm64 || ppc64le || s390x) && !purego)

package p256

import (
	"math/big"

	"filippo.io/nistec"
)

// Without nistec's assembly its P256Point has another layout; these use the
// public, complete API.

func (t *Table) prepare() error { return nil }

// sum returns u1·G + u2·Q (0 ≤ u1, u2 < n).
func (t *Table) sum(u1, u2 *big.Int) *nistec.P256Point {
	var b [32]byte
	p, err := nistec.NewP256Point().ScalarBaseMult(u1.FillBytes(b[:]))
	if err != nil {
		return nil
	}
	return p.Add(p, t.mul(limbs(u2)))
}

// mul returns k·Q for 0 ≤ k < n: one addition per non-zero signed digit of
// k, read from the least significant end. nistec's addition is complete, so
// sums that meet the identity or a point equal to the accumulator need no
// special case.
func (t *Table) mul(k *[4]uint64) *nistec.P256Point {
	acc := nistec.NewP256Point() // the identity
	var neg nistec.P256Point
	carry := 0
	for i := 0; i < windows; i++ {
		var d int
		d, carry = digit(k, i, carry)
		switch {
		case d > 0:
			acc.Add(acc, &t.points[i*perWindow+d-1])
		case d < 0:
			acc.Add(acc, neg.Negate(&t.points[i*perWindow-d-1]))
		}
	}
	return acc
}

func xMatches(p *nistec.P256Point, r *big.Int) bool {
	x, err := p.BytesX()
	if err != nil { // the identity
		return false
	}
	v := new(big.Int).SetBytes(x)
	return v.Mod(v, order).Cmp(r) == 0
}
