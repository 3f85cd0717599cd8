package selfsig_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"fmt"
	"sync"
	"testing"

	"github.com/cairn-ledger/cairn/internal/crypto"
	"github.com/cairn-ledger/cairn/peer/internal/selfsig"
)

func newSigner(t testing.TB, name string) *crypto.SigningIdentity {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return &crypto.SigningIdentity{MSPID: "Org1MSP", CertPEM: []byte(name), Key: key}
}

func TestSigned(t *testing.T) {
	signer := newSigner(t, "peer0")
	m := selfsig.New(selfsig.Config{Signer: signer})
	msg := []byte("proposal response payload ‖ endorser")
	sig, err := m.Sign(msg)
	if err != nil {
		t.Fatal(err)
	}
	if err := crypto.Verify(&signer.Key.PublicKey, msg, sig); err != nil {
		t.Fatalf("the memo's signature is not the signer's: %v", err)
	}
	id := m.Serialize()
	if !m.Signed(id, msg, sig) {
		t.Fatal("own signature over the signed message not recognised")
	}
	if m.Signed(id, []byte("other bytes"), sig) {
		t.Fatal("own signature recognised over other bytes")
	}
	if m.Signed(newSigner(t, "peer1").Serialize(), msg, sig) {
		t.Fatal("own signature recognised under another identity")
	}
	other, err := signer.Sign(msg) // same key, but not through the memo
	if err != nil {
		t.Fatal(err)
	}
	if m.Signed(id, msg, other) {
		t.Fatal("a signature the memo did not produce was recognised")
	}
}

func TestForgetsOldest(t *testing.T) {
	m := selfsig.New(selfsig.Config{Signer: newSigner(t, "peer0"), Size: 4})
	id := m.Serialize()
	type signed struct{ msg, sig []byte }
	var all []signed
	for i := range 6 {
		msg := fmt.Appendf(nil, "message %d", i)
		sig, err := m.Sign(msg)
		if err != nil {
			t.Fatal(err)
		}
		all = append(all, signed{msg, sig})
	}
	for i, s := range all {
		want := i >= 2 // the last four
		if got := m.Signed(id, s.msg, s.sig); got != want {
			t.Errorf("message %d: remembered %v, want %v", i, got, want)
		}
	}
}

func TestConcurrent(t *testing.T) {
	m := selfsig.New(selfsig.Config{Signer: newSigner(t, "peer0"), Size: 64})
	id := m.Serialize()
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			for i := range 50 {
				msg := fmt.Appendf(nil, "g%d m%d", g, i)
				sig, err := m.Sign(msg)
				if err != nil {
					t.Error(err)
					return
				}
				m.Signed(id, msg, sig) // may already be forgotten by now; must not race
			}
		})
	}
	wg.Wait()
	msg := []byte("last")
	sig, err := m.Sign(msg)
	if err != nil {
		t.Fatal(err)
	}
	if !m.Signed(id, msg, sig) {
		t.Fatal("latest signature not remembered after concurrent use")
	}
}
