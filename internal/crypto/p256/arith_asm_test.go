//go:build (amd64 || arm64 || ppc64le || s390x) && !purego

package p256

import (
	"bytes"
	"crypto/elliptic"
	"math/big"
	mrand "math/rand/v2"
	"testing"

	"filippo.io/nistec"
)

// toMont is a in the Montgomery domain, computed with big.Int.
func toMont(a *big.Int) element {
	v := new(big.Int).Lsh(a, 256)
	return element(*limbs(v.Mod(v, fieldP)))
}

func randomPoint(t *testing.T, rng *mrand.Rand) *nistec.P256Point {
	t.Helper()
	var k [32]byte
	for i := range k {
		k[i] = byte(rng.Uint32())
	}
	p, err := nistec.NewP256Point().ScalarBaseMult(k[:])
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// TestArithmeticMatchesNistec pins the layout and constants the assembly
// calls rely on, and checks add against nistec's complete Add on random
// sums, the identity on either side, doublings and sums to the identity.
func TestArithmeticMatchesNistec(t *testing.T) {
	if got, want := rr, toMont(new(big.Int).Lsh(big.NewInt(1), 256)); got != want {
		t.Fatalf("rr = %x, want R² mod p = %x", got, want)
	}
	g := nistec.NewP256Point().SetGenerator()
	params := elliptic.P256().Params()
	if c := coords(g); c.x != toMont(params.Gx) || c.y != toMont(params.Gy) || c.z != toMont(big.NewInt(1)) {
		t.Fatalf("nistec's generator is not (Gx, Gy, 1) in the Montgomery domain: the P256Point layout changed: %x", *c)
	}

	rng := mrand.New(mrand.NewPCG(5, 6))
	same := func(what string, got, want *nistec.P256Point) {
		t.Helper()
		if !bytes.Equal(got.Bytes(), want.Bytes()) {
			t.Fatalf("%s: add gives %x, nistec %x", what, got.Bytes(), want.Bytes())
		}
	}
	identity := nistec.NewP256Point()
	for range 50 {
		a, b := randomPoint(t, rng), randomPoint(t, rng)
		got := nistec.NewP256Point()
		add(got, a, b)
		same("a+b", got, nistec.NewP256Point().Add(a, b))
		add(got, a, a)
		same("a+a", got, nistec.NewP256Point().Double(a))
		neg := nistec.NewP256Point().Negate(a)
		add(got, a, neg)
		same("a+(-a)", got, identity)
		add(got, identity, b)
		same("0+b", got, b)
		add(got, a, identity)
		same("a+0", got, a)
		// Aliasing, as mul and Verify use it.
		acc := nistec.NewP256Point().Set(a)
		add(acc, acc, acc)
		same("acc+=acc", acc, nistec.NewP256Point().Double(a))
	}
}

// rescale returns p with its Jacobian coordinates multiplied through by λ
// (X·λ², Y·λ³, Z·λ): the same point with another Z.
func rescale(p *nistec.P256Point, lambda *big.Int) *nistec.P256Point {
	out := nistec.NewP256Point().Set(p)
	c := coords(out)
	l := toMont(lambda)
	var l2, l3 element
	p256Sqr(&l2, &l, 1)
	p256Mul(&l3, &l2, &l)
	p256Mul(&c.x, &c.x, &l2)
	p256Mul(&c.y, &c.y, &l3)
	p256Mul(&c.z, &c.z, &l)
	return out
}

// TestXMatches: the comparison without inversion agrees with the affine x for
// points with Z ≠ 1, refuses the identity, and accepts r for an x in [n, p),
// where x mod n = x − n (a signature's r can be chosen so).
func TestXMatches(t *testing.T) {
	rng := mrand.New(mrand.NewPCG(7, 8))
	one := big.NewInt(1)
	for range 50 {
		p := rescale(randomPoint(t, rng), big.NewInt(int64(rng.Uint32())+2))
		xb, err := p.BytesX()
		if err != nil {
			t.Fatal(err)
		}
		x := new(big.Int).SetBytes(xb)
		r := new(big.Int).Mod(x, order)
		if !xMatches(p, r) {
			t.Fatalf("x %x: r = x mod n not matched", x)
		}
		if xMatches(p, new(big.Int).Add(r, one)) {
			t.Fatalf("x %x: r + 1 matched", x)
		}
	}
	if xMatches(nistec.NewP256Point(), one) {
		t.Fatal("the identity matched")
	}

	// A point whose x lies in [n, p): decompress x = n, n+1, … until one is
	// on the curve.
	var p *nistec.P256Point
	x := new(big.Int).Set(order)
	for ; p == nil; x.Add(x, one) {
		enc := append([]byte{2}, x.FillBytes(make([]byte, 32))...)
		if q, err := nistec.NewP256Point().SetBytes(enc); err == nil {
			p = q
			break
		}
	}
	p = rescale(p, big.NewInt(987654321))
	r := new(big.Int).Sub(x, order)
	var z2 element
	p256Sqr(&z2, &coords(p).z, 1)
	if matchesCandidate(&coords(p).x, &z2, r) {
		t.Fatal("x ≥ n matched r itself: the test does not reach the second candidate")
	}
	if !xMatches(p, r) {
		t.Fatalf("x = %x ≥ n: r = x − n not matched", x)
	}
	if xMatches(p, new(big.Int).Add(r, one)) {
		t.Fatalf("x = %x ≥ n: r + 1 matched", x)
	}
}

// TestAffineRows: the batch conversion gives the same points, whatever
// their Z.
func TestAffineRows(t *testing.T) {
	if montOne != toMont(big.NewInt(1)) {
		t.Fatalf("montOne = %x, want 1 in the Montgomery domain", montOne)
	}
	rng := mrand.New(mrand.NewPCG(9, 10))
	points := make([]nistec.P256Point, 20)
	for i := range points {
		points[i].Set(rescale(randomPoint(t, rng), big.NewInt(int64(rng.Uint32())+2)))
	}
	aff, err := affineRows(points)
	if err != nil {
		t.Fatal(err)
	}
	for i := range points {
		var p nistec.P256Point
		setAffine(&p, &aff[i], 0)
		if !bytes.Equal(p.Bytes(), points[i].Bytes()) {
			t.Fatalf("point %d: affine %x, want %x", i, p.Bytes(), points[i].Bytes())
		}
		setAffine(&p, &aff[i], 1)
		if !bytes.Equal(p.Bytes(), nistec.NewP256Point().Negate(&points[i]).Bytes()) {
			t.Fatalf("point %d: negated affine differs", i)
		}
	}
	points[3] = *nistec.NewP256Point()
	if _, err := affineRows(points); err == nil {
		t.Fatal("a row holding the identity was accepted")
	}
}

// TestAddDigitMeetsItself: when the accumulator equals the point added, or
// its negation, the mixed addition cannot be used; the sum must still be the
// doubling or the identity, and adding to the identity must give the point.
func TestAddDigitMeetsItself(t *testing.T) {
	rng := mrand.New(mrand.NewPCG(11, 12))
	for range 20 {
		a := randomPoint(t, rng)
		rows, err := affineRows([]nistec.P256Point{*a})
		if err != nil {
			t.Fatal(err)
		}
		acc := rescale(a, big.NewInt(int64(rng.Uint32())+2))
		addDigit(acc, rows, 0, 1)
		if want := nistec.NewP256Point().Double(a); !bytes.Equal(acc.Bytes(), want.Bytes()) {
			t.Fatalf("a + a = %x, want %x", acc.Bytes(), want.Bytes())
		}
		acc = rescale(a, big.NewInt(int64(rng.Uint32())+2))
		addDigit(acc, rows, 0, -1)
		if coords(acc).z != (element{}) {
			t.Fatalf("a − a = %x, want the identity", acc.Bytes())
		}
		addDigit(acc, rows, 0, -1)
		if want := nistec.NewP256Point().Negate(a); !bytes.Equal(acc.Bytes(), want.Bytes()) {
			t.Fatalf("0 − a = %x, want %x", acc.Bytes(), want.Bytes())
		}
	}
}

// BenchmarkAdditions compares one point addition through nistec's public,
// constant-time Add with the assembly entry points verification calls, and
// the inversion BytesX costs.
func BenchmarkAdditions(b *testing.B) {
	rng := mrand.New(mrand.NewPCG(13, 14))
	point := func() *nistec.P256Point {
		var k [32]byte
		for i := range k {
			k[i] = byte(rng.Uint32())
		}
		p, err := nistec.NewP256Point().ScalarBaseMult(k[:])
		if err != nil {
			b.Fatal(err)
		}
		return p
	}
	p, q := point(), point()
	rows, err := affineRows([]nistec.P256Point{*q})
	if err != nil {
		b.Fatal(err)
	}
	b.Run("public-Add", func(b *testing.B) {
		for b.Loop() {
			p.Add(p, q)
		}
	})
	b.Run("assembly-add", func(b *testing.B) {
		for b.Loop() {
			add(p, p, q)
		}
	})
	b.Run("mixed-add", func(b *testing.B) {
		for b.Loop() {
			p256PointAddAffineAsm(p, p, &rows[0], 0, 1, 1)
		}
	})
	b.Run("BytesX", func(b *testing.B) {
		for b.Loop() {
			if _, err := p.BytesX(); err != nil {
				b.Fatal(err)
			}
		}
	})
}
