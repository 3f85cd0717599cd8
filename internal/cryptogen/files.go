package cryptogen

import (
	"crypto/ecdsa"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"path/filepath"
)

// Modes of what Generate writes. Modes are set explicitly after creation so
// that private keys are never readable by others, whatever the umask.
const (
	dirMode  os.FileMode = 0o755
	certMode os.FileMode = 0o644
	keyMode  os.FileMode = 0o600
)

func mkdirs(dirs ...string) error {
	for _, d := range dirs {
		if err := os.MkdirAll(d, dirMode); err != nil {
			return fmt.Errorf("create folder: %w", err)
		}
	}
	return nil
}

// writeNew writes a file that must not exist yet: Generate never overwrites.
func writeNew(path string, data []byte, mode os.FileMode) (err error) {
	if err := mkdirs(filepath.Dir(path)); err != nil {
		return err
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, mode)
	if err != nil {
		return fmt.Errorf("create file: %w", err)
	}
	defer func() {
		if cerr := f.Close(); cerr != nil && err == nil {
			err = fmt.Errorf("close %s: %w", path, cerr)
		}
	}()
	if err := f.Chmod(mode); err != nil {
		return fmt.Errorf("set mode of %s: %w", path, err)
	}
	if _, err := f.Write(data); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}

func writeCert(path string, cert *x509.Certificate) error {
	return writeNew(path, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: cert.Raw}), certMode)
}

// writeKey writes PKCS#8, the encoding Fabric's file keystore and the
// fabric-gateway identity helpers both read.
func writeKey(path string, key *ecdsa.PrivateKey) error {
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return fmt.Errorf("encode private key for %s: %w", path, err)
	}
	return writeNew(path, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), keyMode)
}

// claimDir creates dir, failing with ErrOrgExists if it is already there.
// os.Mkdir rather than a stat check, so two runs racing for the same output
// folder cannot both win.
func claimDir(dir string) error {
	if err := mkdirs(filepath.Dir(dir)); err != nil {
		return err
	}
	if err := os.Mkdir(dir, dirMode); err != nil {
		if errors.Is(err, os.ErrExist) {
			return fmt.Errorf("%w: %s", ErrOrgExists, dir)
		}
		return fmt.Errorf("create organisation folder: %w", err)
	}
	return nil
}
