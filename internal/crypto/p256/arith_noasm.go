//go:build !((amd64 || arm64 || ppc64le || s390x) && !purego)

package p256

import (
	"math/big"

	"filippo.io/nistec"
)

// Without nistec's assembly its P256Point has another layout; these use the
// public, complete API.

func add(r, a, b *nistec.P256Point) { r.Add(a, b) }

func xMatches(p *nistec.P256Point, r *big.Int) bool {
	x, err := p.BytesX()
	if err != nil { // the identity
		return false
	}
	v := new(big.Int).SetBytes(x)
	return v.Mod(v, order).Cmp(r) == 0
}
