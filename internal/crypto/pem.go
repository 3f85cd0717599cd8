package crypto

import (
	"crypto/ecdsa"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"path/filepath"
)

// ParsePrivateKeyPEM parses the first PEM block of b as an ECDSA private key, in
// PKCS#8 ("PRIVATE KEY", what Fabric's tools write) or SEC 1 ("EC PRIVATE KEY") form.
func ParsePrivateKeyPEM(b []byte) (*ecdsa.PrivateKey, error) {
	block, _ := pem.Decode(b)
	if block == nil {
		return nil, errors.New("parse private key: no PEM block found")
	}
	if k, err := x509.ParsePKCS8PrivateKey(block.Bytes); err == nil {
		ek, ok := k.(*ecdsa.PrivateKey)
		if !ok {
			return nil, fmt.Errorf("parse private key: PKCS#8 key is %T, want ECDSA", k)
		}
		return ek, nil
	}
	k, err := x509.ParseECPrivateKey(block.Bytes)
	if err != nil {
		return nil, fmt.Errorf("parse private key: PEM block %q is neither PKCS#8 nor SEC 1 EC: %w", block.Type, err)
	}
	return k, nil
}

// ParseCertificatePEM parses the first PEM block of b as an X.509 certificate.
func ParseCertificatePEM(b []byte) (*x509.Certificate, error) {
	block, _ := pem.Decode(b)
	if block == nil {
		return nil, errors.New("parse certificate: no PEM block found")
	}
	if block.Type != "CERTIFICATE" && block.Type != "" {
		return nil, fmt.Errorf("parse certificate: PEM block type is %q, want CERTIFICATE", block.Type)
	}
	cert, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		return nil, fmt.Errorf("parse certificate: %w", err)
	}
	return cert, nil
}

// LoadCertificate reads and parses the PEM certificate at path.
func LoadCertificate(path string) (*x509.Certificate, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("load certificate: %w", err)
	}
	cert, err := ParseCertificatePEM(b)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return cert, nil
}

// LoadKeystoreKey loads the private key from an MSP keystore folder. Fabric's tools
// name the file after the key's SKI or "priv_sk", so the folder must hold exactly
// one regular file, whatever its name.
func LoadKeystoreKey(dir string) (*ecdsa.PrivateKey, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("load keystore key: %w", err)
	}
	var files []string
	for _, e := range entries {
		if e.Type().IsRegular() {
			files = append(files, e.Name())
		}
	}
	switch len(files) {
	case 0:
		return nil, fmt.Errorf("load keystore key: no key file in %s", dir)
	case 1:
	default:
		return nil, fmt.Errorf("load keystore key: %d files in %s, want exactly one: %v", len(files), dir, files)
	}
	path := filepath.Join(dir, files[0])
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("load keystore key: %w", err)
	}
	k, err := ParsePrivateKeyPEM(b)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return k, nil
}
