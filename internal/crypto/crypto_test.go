package crypto

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/pem"
	"errors"
	"math/big"
	"os"
	"path/filepath"
	"testing"
	"time"

	mspproto "github.com/hyperledger/fabric-protos-go-apiv2/msp"
	"google.golang.org/protobuf/proto"
)

func newKey(t *testing.T) *ecdsa.PrivateKey {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// highS returns sig with S replaced by N-S (still a valid ECDSA signature).
func highS(t *testing.T, sig []byte) []byte {
	t.Helper()
	var s ecdsaSignature
	if _, err := asn1.Unmarshal(sig, &s); err != nil {
		t.Fatal(err)
	}
	s.S = new(big.Int).Sub(elliptic.P256().Params().N, s.S)
	b, err := asn1.Marshal(s)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestSignVerify(t *testing.T) {
	k := newKey(t)
	msg := []byte("block header")
	for range 20 { // Go's ECDSA yields high S about half the time: check normalisation
		sig, err := Sign(k, msg)
		if err != nil {
			t.Fatal(err)
		}
		if low, err := IsLowS(nil, sig); err != nil || !low {
			t.Fatalf("IsLowS = %v, %v; want true", low, err)
		}
		if err := Verify(&k.PublicKey, msg, sig); err != nil {
			t.Fatalf("Verify: %v", err)
		}
	}
}

func TestVerifyRejects(t *testing.T) {
	k := newKey(t)
	msg := []byte("payload")
	sig, err := Sign(k, msg)
	if err != nil {
		t.Fatal(err)
	}
	tampered := append([]byte(nil), sig...)
	tampered[len(tampered)-1] ^= 1
	other := newKey(t)
	tests := []struct {
		name string
		pub  *ecdsa.PublicKey
		msg  []byte
		sig  []byte
		want error
	}{
		{"high S", &k.PublicKey, msg, highS(t, sig), ErrHighS},
		{"tampered", &k.PublicKey, msg, tampered, ErrBadSignature},
		{"other message", &k.PublicKey, []byte("other"), sig, ErrBadSignature},
		{"other key", &other.PublicKey, msg, sig, ErrBadSignature},
		{"garbage", &k.PublicKey, msg, []byte{1, 2, 3}, ErrMalformedSignature},
		{"empty", &k.PublicKey, msg, nil, ErrMalformedSignature},
		{"zero R", &k.PublicKey, msg, mustMarshal(t, ecdsaSignature{big.NewInt(0), big.NewInt(1)}), ErrMalformedSignature},
		{"negative S", &k.PublicKey, msg, mustMarshal(t, ecdsaSignature{big.NewInt(1), big.NewInt(-1)}), ErrMalformedSignature},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if err := Verify(tc.pub, tc.msg, tc.sig); !errors.Is(err, tc.want) {
				t.Fatalf("Verify = %v, want %v", err, tc.want)
			}
		})
	}
}

func mustMarshal(t *testing.T, v any) []byte {
	t.Helper()
	b, err := asn1.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestToLowS(t *testing.T) {
	k := newKey(t)
	msg := []byte("x")
	sig, err := Sign(k, msg)
	if err != nil {
		t.Fatal(err)
	}
	hi := highS(t, sig)
	if low, _ := IsLowS(nil, hi); low {
		t.Fatal("highS produced a low-S signature")
	}
	fixed, err := ToLowS(nil, hi)
	if err != nil {
		t.Fatal(err)
	}
	if err := Verify(&k.PublicKey, msg, fixed); err != nil {
		t.Fatalf("normalised signature does not verify: %v", err)
	}
	same, err := ToLowS(elliptic.P256(), sig)
	if err != nil || string(same) != string(sig) {
		t.Fatalf("ToLowS changed a low-S signature")
	}
	if _, err := ToLowS(nil, []byte("junk")); !errors.Is(err, ErrMalformedSignature) {
		t.Fatalf("ToLowS(junk) = %v", err)
	}
	// Agrees with the standard library on the raw verification.
	var s ecdsaSignature
	mustUnmarshal(t, fixed, &s)
	d := sha256.Sum256(msg)
	if !ecdsa.Verify(&k.PublicKey, d[:], s.R, s.S) {
		t.Fatal("stdlib rejects normalised signature")
	}
}

func mustUnmarshal(t *testing.T, b []byte, v any) {
	t.Helper()
	if _, err := asn1.Unmarshal(b, v); err != nil {
		t.Fatal(err)
	}
}

func selfSigned(t *testing.T, k *ecdsa.PrivateKey) []byte {
	t.Helper()
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(7),
		Subject:      pkix.Name{CommonName: "user1"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &k.PublicKey, k)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
}

func TestParsePrivateKeyPEM(t *testing.T) {
	k := newKey(t)
	p8, err := x509.MarshalPKCS8PrivateKey(k)
	if err != nil {
		t.Fatal(err)
	}
	sec1, err := x509.MarshalECPrivateKey(k)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		in   []byte
		ok   bool
	}{
		{"pkcs8", pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: p8}), true},
		{"sec1", pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: sec1}), true},
		{"not pem", []byte("hello"), false},
		{"bad der", pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: []byte{1, 2}}), false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ParsePrivateKeyPEM(tc.in)
			if (err == nil) != tc.ok {
				t.Fatalf("err = %v, want ok=%v", err, tc.ok)
			}
			if tc.ok && !got.Equal(k) {
				t.Fatal("parsed a different key")
			}
		})
	}
}

func TestLoadSigningIdentity(t *testing.T) {
	k := newKey(t)
	dir := t.TempDir()
	certPEM := selfSigned(t, k)
	p8, _ := x509.MarshalPKCS8PrivateKey(k)
	must(t, os.MkdirAll(filepath.Join(dir, "signcerts"), 0o755))
	must(t, os.MkdirAll(filepath.Join(dir, "keystore"), 0o755))
	must(t, os.WriteFile(filepath.Join(dir, "signcerts", "cert.pem"), certPEM, 0o600))
	must(t, os.WriteFile(filepath.Join(dir, "keystore", "priv_sk"), pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: p8}), 0o600))

	id, err := LoadSigningIdentity("Org1MSP", dir)
	if err != nil {
		t.Fatal(err)
	}
	var si mspproto.SerializedIdentity
	must(t, proto.Unmarshal(id.Serialize(), &si))
	if si.Mspid != "Org1MSP" || string(si.IdBytes) != string(certPEM) {
		t.Fatalf("Serialize = %v", &si)
	}
	sig, err := id.Sign([]byte("m"))
	must(t, err)
	must(t, Verify(&k.PublicKey, []byte("m"), sig))
	if _, err := LoadCertificate(filepath.Join(dir, "signcerts", "cert.pem")); err != nil {
		t.Fatal(err)
	}

	// A key that does not match the certificate is refused.
	other := newKey(t)
	p8o, _ := x509.MarshalPKCS8PrivateKey(other)
	must(t, os.WriteFile(filepath.Join(dir, "keystore", "priv_sk"), pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: p8o}), 0o600))
	if _, err := LoadSigningIdentity("Org1MSP", dir); err == nil {
		t.Fatal("mismatched key accepted")
	}
	// Two key files are ambiguous.
	must(t, os.WriteFile(filepath.Join(dir, "keystore", "second_sk"), pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: p8}), 0o600))
	if _, err := LoadKeystoreKey(filepath.Join(dir, "keystore")); err == nil {
		t.Fatal("two keystore files accepted")
	}
	if _, err := LoadSigningIdentity("Org1MSP", t.TempDir()); err == nil {
		t.Fatal("empty dir accepted")
	}
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func FuzzVerify(f *testing.F) {
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		f.Fatal(err)
	}
	sig, err := Sign(k, []byte("seed"))
	if err != nil {
		f.Fatal(err)
	}
	f.Add([]byte("seed"), sig)
	f.Add([]byte(""), []byte{0x30, 0x00})
	f.Add([]byte("x"), []byte{0x30, 0x06, 0x02, 0x01, 0x01, 0x02, 0x01, 0x01})
	f.Fuzz(func(t *testing.T, msg, sig []byte) {
		_ = Verify(&k.PublicKey, msg, sig)
		_, _ = IsLowS(nil, sig)
		if low, err := ToLowS(nil, sig); err == nil {
			if ok, err := IsLowS(nil, low); err != nil || !ok {
				t.Fatalf("ToLowS output not low-S: %v", err)
			}
		}
	})
}

func BenchmarkVerify(b *testing.B) {
	k, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	msg := make([]byte, 1024)
	sig, _ := Sign(k, msg)
	b.ReportAllocs()
	for b.Loop() {
		if err := Verify(&k.PublicKey, msg, sig); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkVerifyParallel checks signatures on every core at once (-cpu 1,2):
// the figure that bounds ordering and validation on a machine.
func BenchmarkVerifyParallel(b *testing.B) {
	k, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	msg := make([]byte, 1024)
	sig, _ := Sign(k, msg)
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if err := Verify(&k.PublicKey, msg, sig); err != nil {
				b.Error(err)
				return
			}
		}
	})
}
