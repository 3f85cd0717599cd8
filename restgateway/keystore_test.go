package restgateway_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"path/filepath"
	"testing"

	"github.com/cairn-ledger/cairn/restgateway"
	"github.com/cairn-ledger/cairn/restgateway/keystoretest"
)

func TestFileKeyStoreConformance(t *testing.T) {
	keystoretest.Run(t, func(t *testing.T) keystoretest.Fixture {
		key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		der, err := x509.MarshalPKCS8PrivateKey(key)
		if err != nil {
			t.Fatal(err)
		}
		dir := t.TempDir()
		path := filepath.Join(dir, "priv_sk")
		writeFile(t, path, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}))
		return keystoretest.Fixture{
			Store:   restgateway.FileKeyStore{},
			Ref:     restgateway.KeyStoreConfig{Type: restgateway.KeyStoreFile, KeyFile: path},
			Public:  &key.PublicKey,
			Missing: restgateway.KeyStoreConfig{Type: restgateway.KeyStoreFile, KeyFile: filepath.Join(dir, "absent")},
		}
	})
}
