package p256

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/sha512"
	"math/big"
	mrand "math/rand/v2"
	"testing"

	"filippo.io/nistec"
)

func newKey(t testing.TB) (*ecdsa.PrivateKey, *Table) {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tab, err := NewTable(&k.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	return k, tab
}

func sign(t testing.TB, k *ecdsa.PrivateKey, msg []byte) (hash []byte, r, s *big.Int) {
	t.Helper()
	h := sha256.Sum256(msg)
	r, s, err := ecdsa.Sign(rand.Reader, k, h[:])
	if err != nil {
		t.Fatal(err)
	}
	return h[:], r, s
}

// agree fails the test when the table and crypto/ecdsa disagree, and returns
// their common answer.
func agree(t *testing.T, pub *ecdsa.PublicKey, tab *Table, hash []byte, r, s *big.Int) bool {
	t.Helper()
	want := ecdsa.Verify(pub, hash, r, s)
	if got := tab.Verify(hash, r, s); got != want {
		t.Fatalf("table says %v, crypto/ecdsa says %v (hash %x, r %x, s %x)", got, want, hash, r, s)
	}
	return want
}

func TestVerifyAgreesWithCryptoECDSA(t *testing.T) {
	rng := mrand.New(mrand.NewPCG(1, 2))
	for range 8 {
		k, tab := newKey(t)
		other, _ := newKey(t)
		for i := range 40 {
			msg := []byte{byte(i), byte(rng.Uint32())}
			hash, r, s := sign(t, k, msg)
			if !agree(t, &k.PublicKey, tab, hash, r, s) {
				t.Fatal("a fresh signature does not verify")
			}
			// The other half of the order gives the same x: high-S verifies
			// here as in crypto/ecdsa (low-S is the caller's rule).
			if !agree(t, &k.PublicKey, tab, hash, r, new(big.Int).Sub(order, s)) {
				t.Fatal("n-s does not verify")
			}
			mutations := []func() ([]byte, *big.Int, *big.Int){
				func() ([]byte, *big.Int, *big.Int) { // another message
					h := sha256.Sum256(append(msg, 0))
					return h[:], r, s
				},
				func() ([]byte, *big.Int, *big.Int) { // one bit of r
					return hash, new(big.Int).Xor(r, big.NewInt(1<<rng.IntN(62))), s
				},
				func() ([]byte, *big.Int, *big.Int) { // one bit of s
					return hash, r, new(big.Int).Xor(s, big.NewInt(1<<rng.IntN(62)))
				},
				func() ([]byte, *big.Int, *big.Int) { // swapped
					return hash, s, r
				},
				func() ([]byte, *big.Int, *big.Int) { // r + n has the same residue
					return hash, new(big.Int).Add(r, order), s
				},
			}
			for _, m := range mutations {
				h, mr, ms := m()
				if agree(t, &k.PublicKey, tab, h, mr, ms) {
					t.Fatal("a mutated signature verifies")
				}
			}
			// Another key's table refuses it.
			if got := tab.Verify(hash, r, s); !got {
				t.Fatal("lost the valid signature")
			}
			if other.PublicKey.Equal(&k.PublicKey) {
				t.Fatal("same key twice")
			}
			otherTab, err := NewTable(&other.PublicKey)
			if err != nil {
				t.Fatal(err)
			}
			if i == 0 && agree(t, &other.PublicKey, otherTab, hash, r, s) {
				t.Fatal("a signature verifies under another key")
			}
		}
	}
}

func TestVerifyEdgeCases(t *testing.T) {
	k, tab := newKey(t)
	hash, r, s := sign(t, k, []byte("edge"))
	one := big.NewInt(1)
	nMinus1 := new(big.Int).Sub(order, one)
	cases := map[string]struct {
		hash []byte
		r, s *big.Int
	}{
		"r zero":          {hash, new(big.Int), s},
		"s zero":          {hash, r, new(big.Int)},
		"r negative":      {hash, new(big.Int).Neg(r), s},
		"s negative":      {hash, r, new(big.Int).Neg(s)},
		"r is n":          {hash, order, s},
		"s is n":          {hash, r, order},
		"r n-1":           {hash, nMinus1, s},
		"s n-1":           {hash, r, nMinus1},
		"r and s one":     {hash, one, one},
		"empty hash":      {nil, r, s},
		"hash of zeros":   {make([]byte, 32), r, s},
		"hash equal to n": {order.FillBytes(make([]byte, 32)), r, s},
		"short hash":      {hash[:20], r, s},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			agree(t, &k.PublicKey, tab, c.hash, c.r, c.s)
		})
	}
	// A hash longer than the order is truncated to its leftmost 256 bits.
	long := sha512.Sum512([]byte("long"))
	lr, ls, err := ecdsa.Sign(rand.Reader, k, long[:])
	if err != nil {
		t.Fatal(err)
	}
	if !agree(t, &k.PublicKey, tab, long[:], lr, ls) {
		t.Fatal("a signature over a 64-byte hash does not verify")
	}
}

// TestVerifyWithCraftedScalars builds signatures whose u1 or u2 are zero or
// whose u1·G and u2·Q cancel or coincide, the cases an incomplete addition
// would get wrong. With private key d and w = s⁻¹: choosing e and r freely,
// the equation only holds for x(e·w·G + r·w·Q) = r, so these are checked for
// agreement, not validity.
func TestVerifyWithCraftedScalars(t *testing.T) {
	k, tab := newKey(t)
	d := k.D
	for _, e := range []*big.Int{big.NewInt(0), new(big.Int).Set(order), new(big.Int).Sub(order, d)} {
		for _, r := range []*big.Int{big.NewInt(1), new(big.Int).Set(d), new(big.Int).Sub(order, big.NewInt(1))} {
			for _, s := range []*big.Int{big.NewInt(1), big.NewInt(2), new(big.Int).Set(d)} {
				agree(t, &k.PublicKey, tab, e.FillBytes(make([]byte, 32)), r, s)
			}
		}
	}
	// e = -r·d (mod n) makes u1·G = -u2·Q: the sum is the identity, which
	// never verifies.
	r := big.NewInt(12345)
	e := new(big.Int).Mul(r, d)
	e.Neg(e).Mod(e, order)
	if agree(t, &k.PublicKey, tab, e.FillBytes(make([]byte, 32)), r, big.NewInt(7)) {
		t.Fatal("u1·G + u2·Q = identity verified")
	}
	// A real signature whose key is the generator (d = 1): u1·G and u2·Q are
	// multiples of the same point.
	gk := &ecdsa.PrivateKey{D: big.NewInt(1)}
	gk.PublicKey.Curve = elliptic.P256()
	gk.PublicKey.X, gk.PublicKey.Y = elliptic.P256().Params().Gx, elliptic.P256().Params().Gy
	gtab, err := NewTable(&gk.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	for i := range 20 {
		hash, r, s := sign(t, gk, []byte{byte(i)})
		if !agree(t, &gk.PublicKey, gtab, hash, r, s) {
			t.Fatal("signature by d=1 does not verify")
		}
	}
}

// TestMulMatchesScalarMult checks the signed-digit recoding on scalars whose
// windows sit at the digit boundaries: every window perWindow (the largest
// digit without a carry), perWindow+1 (the smallest with one), all ones (a
// carry through every window), and the top of the range.
func TestMulMatchesScalarMult(t *testing.T) {
	k, tab := newKey(t)
	enc, err := k.PublicKey.Bytes()
	if err != nil {
		t.Fatal(err)
	}
	q, err := nistec.NewP256Point().SetBytes(enc)
	if err != nil {
		t.Fatal(err)
	}
	repeat := func(digit int64) *big.Int {
		x := new(big.Int)
		for range windows {
			x.Lsh(x, windowBits).Or(x, big.NewInt(digit))
		}
		return x.Mod(x, order)
	}
	scalars := []*big.Int{
		big.NewInt(0), big.NewInt(1), big.NewInt(perWindow), big.NewInt(perWindow + 1), big.NewInt(windowMask),
		new(big.Int).Sub(order, big.NewInt(1)), new(big.Int).Sub(order, big.NewInt(perWindow)),
		repeat(perWindow), repeat(perWindow + 1), repeat(windowMask), repeat(1),
		new(big.Int).Rsh(order, 1), new(big.Int).Lsh(big.NewInt(1), 255),
	}
	rng := mrand.New(mrand.NewPCG(3, 4))
	for range 50 {
		var b [32]byte
		for i := range b {
			b[i] = byte(rng.Uint32())
		}
		scalars = append(scalars, new(big.Int).Mod(new(big.Int).SetBytes(b[:]), order))
	}
	for _, x := range scalars {
		want, err := nistec.NewP256Point().ScalarMult(q, x.FillBytes(make([]byte, 32)))
		if err != nil {
			t.Fatal(err)
		}
		if got := tab.mul(limbs(x)); !bytes.Equal(got.Bytes(), want.Bytes()) {
			t.Fatalf("mul(%x) differs from ScalarMult", x)
		}
	}
}

func TestNewTableRefusesOtherKeys(t *testing.T) {
	p384, err := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := NewTable(&p384.PublicKey); err == nil {
		t.Fatal("a P-384 key was accepted")
	}
	if _, err := NewTable(nil); err == nil {
		t.Fatal("a nil key was accepted")
	}
	k, _ := newKey(t)
	off := k.PublicKey
	off.Y = new(big.Int).Add(off.Y, big.NewInt(1))
	if _, err := NewTable(&off); err == nil {
		t.Fatal("a point off the curve was accepted")
	}
}

func FuzzVerify(f *testing.F) {
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		f.Fatal(err)
	}
	tab, err := NewTable(&k.PublicKey)
	if err != nil {
		f.Fatal(err)
	}
	h := sha256.Sum256([]byte("seed"))
	r, s, err := ecdsa.Sign(rand.Reader, k, h[:])
	if err != nil {
		f.Fatal(err)
	}
	f.Add(h[:], r.Bytes(), s.Bytes())
	f.Add([]byte{}, []byte{1}, []byte{1})
	f.Fuzz(func(t *testing.T, hash, rb, sb []byte) {
		r, s := new(big.Int).SetBytes(rb), new(big.Int).SetBytes(sb)
		agree(t, &k.PublicKey, tab, hash, r, s)
		// Keep the fuzzer near valid signatures: re-sign its hash and flip
		// nothing, so both verifiers must accept.
		if len(hash) > 0 {
			r, s, err := ecdsa.Sign(rand.Reader, k, hash)
			if err == nil && !agree(t, &k.PublicKey, tab, hash, r, s) {
				t.Fatal("a fresh signature over the fuzzed hash does not verify")
			}
		}
	})
}

// BenchmarkVerify checks 256 different signatures in turn, so the table's
// lookups spread over it as they do with real traffic.
func BenchmarkVerify(b *testing.B) {
	k, tab := newKey(b)
	type sig struct {
		hash []byte
		r, s *big.Int
	}
	sigs := make([]sig, 256)
	for i := range sigs {
		h, r, s := sign(b, k, []byte{byte(i)})
		sigs[i] = sig{h, r, s}
	}
	b.Run("table", func(b *testing.B) {
		i := 0
		for b.Loop() {
			sg := sigs[i%len(sigs)]
			i++
			if !tab.Verify(sg.hash, sg.r, sg.s) {
				b.Fatal("does not verify")
			}
		}
	})
	b.Run("crypto-ecdsa", func(b *testing.B) {
		i := 0
		for b.Loop() {
			sg := sigs[i%len(sigs)]
			i++
			if !ecdsa.Verify(&k.PublicKey, sg.hash, sg.r, sg.s) {
				b.Fatal("does not verify")
			}
		}
	})
}

func BenchmarkNewTable(b *testing.B) {
	k, _ := newKey(b)
	for b.Loop() {
		if _, err := NewTable(&k.PublicKey); err != nil {
			b.Fatal(err)
		}
	}
}
