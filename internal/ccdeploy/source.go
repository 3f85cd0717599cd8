package ccdeploy

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/cairn-ledger/cairn/chaincode/ccpackage"
)

// PackageGoModule packages the Go module in dir as golang chaincode: every
// file of the module except hidden ones (.git, .idea, ...) under src/, and
// the module path as metadata.json's path, which is what the peer's golang
// builder builds.
func PackageGoModule(label, dir string) ([]byte, error) {
	modPath, err := modulePath(filepath.Join(dir, "go.mod"))
	if err != nil {
		return nil, err
	}
	pkg, err := ccpackage.Golang(label, modPath, visibleFS{os.DirFS(dir)})
	if err != nil {
		return nil, fmt.Errorf("package %s: %w", dir, err)
	}
	return pkg, nil
}

// modulePath reads the module directive of a go.mod file.
func modulePath(goMod string) (string, error) {
	raw, err := os.ReadFile(goMod)
	if errors.Is(err, fs.ErrNotExist) {
		return "", fmt.Errorf("%s is not a Go module directory (no go.mod): golang chaincode is packaged from its module root", filepath.Dir(goMod))
	}
	if err != nil {
		return "", err
	}
	sc := bufio.NewScanner(bytes.NewReader(raw))
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if rest, ok := strings.CutPrefix(line, "module"); ok && (rest == "" || rest[0] == ' ' || rest[0] == '\t') {
			mod := strings.Trim(strings.TrimSpace(strings.SplitN(strings.TrimSpace(rest), "//", 2)[0]), `"`)
			if mod != "" {
				return mod, nil
			}
		}
	}
	return "", fmt.Errorf("%s has no module directive", goMod)
}

// visibleFS hides dot files and folders (version control, editor state)
// from a package's source.
type visibleFS struct{ fs.FS }

func (v visibleFS) ReadDir(name string) ([]fs.DirEntry, error) {
	entries, err := fs.ReadDir(v.FS, name)
	if err != nil {
		return nil, err
	}
	out := entries[:0]
	for _, e := range entries {
		if !strings.HasPrefix(e.Name(), ".") {
			out = append(out, e)
		}
	}
	return out, nil
}

// CCaaSOptions describe how peers reach a chaincode running as a service:
// connection.json of a ccaas package. File fields are read and embedded as
// PEM, as Fabric's connection.json requires.
type CCaaSOptions struct {
	Address     string
	DialTimeout string // e.g. "10s"; empty leaves the peer's default
	// RootCertFile is the CA of the chaincode server's TLS certificate;
	// setting it turns TLS on.
	RootCertFile string
	// ClientCertFile and ClientKeyFile are the peer's client certificate
	// for a chaincode server that requires mutual TLS.
	ClientCertFile string
	ClientKeyFile  string
}

// PackageCCaaS builds a ccaas package from opts.
func PackageCCaaS(label string, opts CCaaSOptions) ([]byte, error) {
	conn := ccpackage.Connection{Address: opts.Address, DialTimeout: opts.DialTimeout}
	read := func(path string) (string, error) {
		raw, err := os.ReadFile(path)
		if err != nil {
			return "", fmt.Errorf("ccaas TLS: %w", err)
		}
		return string(raw), nil
	}
	var err error
	if opts.RootCertFile != "" {
		conn.TLSRequired = true
		if conn.RootCert, err = read(opts.RootCertFile); err != nil {
			return nil, err
		}
	}
	if (opts.ClientCertFile == "") != (opts.ClientKeyFile == "") {
		return nil, errors.New("ccaas TLS: client certificate and key must be given together")
	}
	if opts.ClientCertFile != "" {
		if !conn.TLSRequired {
			return nil, errors.New("ccaas TLS: a client certificate needs the server's root certificate too")
		}
		conn.ClientAuthRequired = true
		if conn.ClientCert, err = read(opts.ClientCertFile); err != nil {
			return nil, err
		}
		if conn.ClientKey, err = read(opts.ClientKeyFile); err != nil {
			return nil, err
		}
	}
	return ccpackage.CCaaS(label, conn)
}

// PackageID returns the ID peers give pkg: label:sha256.
func PackageID(pkg []byte) (string, error) { return packageID(pkg) }
