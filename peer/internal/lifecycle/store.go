package lifecycle

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"

	"github.com/cairn-ledger/cairn/chaincode/ccpackage"
	"github.com/cairn-ledger/cairn/internal/fsutil"
)

const (
	packageSuffix = ".tar.gz"
	hashHexLen    = 64
	tempPrefix    = ".install-"
)

// errPackageNotFound marks a package ID with no package file.
var errPackageNotFound = errors.New("chaincode install package not found")

// installedPackage is one package file of the store.
type installedPackage struct {
	PackageID string
	Label     string
}

// packageStore keeps installed packages as files in one directory. Save is
// serialised by mu so that two installs of the same package cannot both
// report success; reads need no lock because files appear only by rename.
type packageStore struct {
	dir string
	mu  sync.Mutex
}

func openPackageStore(dir string) (*packageStore, error) {
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return nil, fmt.Errorf("create package directory: %w", err)
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("read package directory: %w", err)
	}
	// Leftovers of installs interrupted by a crash.
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), tempPrefix) {
			if err := os.Remove(filepath.Join(dir, e.Name())); err != nil {
				return nil, fmt.Errorf("remove interrupted install %s: %w", e.Name(), err)
			}
		}
	}
	return &packageStore{dir: dir}, nil
}

// fileName maps a package ID to its file name, refusing IDs that are not
// label:sha256hex so that a client-supplied ID can never name a path
// outside the directory.
func fileName(packageID string) (string, bool) {
	i := strings.LastIndexByte(packageID, ':')
	if i < 0 {
		return "", false
	}
	label, hash := packageID[:i], packageID[i+1:]
	if ccpackage.ValidateLabel(label) != nil || !isLowerHex(hash, hashHexLen) {
		return "", false
	}
	return label + "." + hash + packageSuffix, true
}

// packageIDFromFile is the inverse of fileName.
func packageIDFromFile(name string) (installedPackage, bool) {
	if strings.HasPrefix(name, ".") || !strings.HasSuffix(name, packageSuffix) {
		return installedPackage{}, false
	}
	base := strings.TrimSuffix(name, packageSuffix)
	if len(base) < hashHexLen+2 || base[len(base)-hashHexLen-1] != '.' {
		return installedPackage{}, false
	}
	label, hash := base[:len(base)-hashHexLen-1], base[len(base)-hashHexLen:]
	if ccpackage.ValidateLabel(label) != nil || !isLowerHex(hash, hashHexLen) {
		return installedPackage{}, false
	}
	return installedPackage{PackageID: label + ":" + hash, Label: label}, true
}

func isLowerHex(s string, n int) bool {
	if len(s) != n {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return true
}

// save stores pkg under packageID; existed reports that it was already
// there (and nothing was written).
func (s *packageStore) save(packageID string, pkg []byte) (existed bool, err error) {
	name, ok := fileName(packageID)
	if !ok {
		return false, fmt.Errorf("invalid package ID %q", packageID)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	path := filepath.Join(s.dir, name)
	if _, err := os.Stat(path); err == nil {
		return true, nil
	} else if !errors.Is(err, fs.ErrNotExist) {
		return false, fmt.Errorf("stat %s: %w", name, err)
	}
	if err := fsutil.WriteFileAtomic(filepath.Join(s.dir, name), pkg, 0o600, true, tempPrefix+"*"); err != nil {
		return false, err
	}
	return false, nil
}

// load returns the package bytes, or an error wrapping errPackageNotFound.
func (s *packageStore) load(packageID string) ([]byte, error) {
	name, ok := fileName(packageID)
	if !ok {
		return nil, errPackageNotFound
	}
	data, err := os.ReadFile(filepath.Join(s.dir, name))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, errPackageNotFound
	}
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", name, err)
	}
	return data, nil
}

// has reports whether packageID is installed.
func (s *packageStore) has(packageID string) (bool, error) {
	name, ok := fileName(packageID)
	if !ok {
		return false, nil
	}
	_, err := os.Stat(filepath.Join(s.dir, name))
	if errors.Is(err, fs.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("stat %s: %w", name, err)
	}
	return true, nil
}

// list returns the installed packages in file name order.
func (s *packageStore) list() ([]installedPackage, error) {
	entries, err := os.ReadDir(s.dir)
	if err != nil {
		return nil, fmt.Errorf("read package directory: %w", err)
	}
	var out []installedPackage
	for _, e := range entries {
		if !e.Type().IsRegular() {
			continue
		}
		if p, ok := packageIDFromFile(e.Name()); ok {
			out = append(out, p)
		}
	}
	return out, nil
}

// InstalledPackage returns the bytes of an installed package, for the peer's
// chaincode builders. The error wraps a not-found condition when packageID
// is not installed.
func (s *SCC) InstalledPackage(packageID string) ([]byte, error) {
	data, err := s.packages.load(packageID)
	if err != nil {
		return nil, fmt.Errorf("chaincode package %s: %w", packageID, err)
	}
	return data, nil
}
