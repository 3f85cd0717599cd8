// Package keystoretest is the conformance suite every restgateway.KeyStore
// implementation runs (file now, Vault later), so that the gateway can rely
// on the same behaviour from each: signatures over a digest that verify with
// the identity's public key, in low-S form, safe to produce concurrently,
// and a clear error for a key that does not exist.
package keystoretest

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/sha256"
	"encoding/asn1"
	"fmt"
	"math/big"
	"sync"
	"testing"

	"github.com/cairn-ledger/cairn/restgateway"
)

// Fixture provisions a key in the store under test.
type Fixture struct {
	// Store is the key store under test.
	Store restgateway.KeyStore
	// Ref names a key the store holds; Public is its public key.
	Ref    restgateway.KeyStoreConfig
	Public *ecdsa.PublicKey
	// Missing names a key the store does not hold.
	Missing restgateway.KeyStoreConfig
}

// Run runs the suite against the fixture newFixture returns.
func Run(t *testing.T, newFixture func(t *testing.T) Fixture) {
	t.Run("signs digests verifiable with the public key, low-S", func(t *testing.T) {
		f := newFixture(t)
		sign, err := f.Store.Signer(context.Background(), f.Ref)
		if err != nil {
			t.Fatal(err)
		}
		for i := range 32 {
			digest := sha256.Sum256(fmt.Appendf(nil, "message %d", i))
			sig, err := sign(digest[:])
			if err != nil {
				t.Fatal(err)
			}
			if !ecdsa.VerifyASN1(f.Public, digest[:], sig) {
				t.Fatalf("signature %d does not verify", i)
			}
			var rs struct{ R, S *big.Int }
			if _, err := asn1.Unmarshal(sig, &rs); err != nil {
				t.Fatal(err)
			}
			half := new(big.Int).Rsh(elliptic.P256().Params().N, 1)
			if rs.S.Cmp(half) > 0 {
				t.Fatalf("signature %d is high-S; Fabric rejects it", i)
			}
		}
	})
	t.Run("concurrent signing", func(t *testing.T) {
		f := newFixture(t)
		sign, err := f.Store.Signer(context.Background(), f.Ref)
		if err != nil {
			t.Fatal(err)
		}
		var wg sync.WaitGroup
		errs := make(chan error, 16)
		for i := range 16 {
			wg.Go(func() {
				digest := sha256.Sum256(fmt.Appendf(nil, "concurrent %d", i))
				sig, err := sign(digest[:])
				if err == nil && !ecdsa.VerifyASN1(f.Public, digest[:], sig) {
					err = fmt.Errorf("signature %d does not verify", i)
				}
				errs <- err
			})
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			if err != nil {
				t.Fatal(err)
			}
		}
	})
	t.Run("missing key is an error", func(t *testing.T) {
		f := newFixture(t)
		if sign, err := f.Store.Signer(context.Background(), f.Missing); err == nil || sign != nil {
			t.Fatalf("Signer(missing) = %v, %v; want an error", sign != nil, err)
		}
	})
}
