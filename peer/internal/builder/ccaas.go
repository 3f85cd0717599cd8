package builder

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/cairn-ledger/cairn/chaincode/ccpackage"
)

// DefaultDialTimeout is used when connection.json sets no dial_timeout (Fabric's value).
const DefaultDialTimeout = 3 * time.Second

// ccaasBuilder is Fabric's ccaas_builder built in: it claims packages of
// type ccaas, checks connection.json and releases it (with any META-INF)
// so the peer dials the chaincode instead of running it.
type ccaasBuilder struct{}

func (ccaasBuilder) name() string { return CCaaSName }

func (ccaasBuilder) detect(_ context.Context, bc *buildContext) bool {
	return strings.EqualFold(bc.metadata.Type, "ccaas")
}

func (ccaasBuilder) build(_ context.Context, bc *buildContext) error {
	data, err := os.ReadFile(filepath.Join(bc.sourceDir, ccpackage.ConnectionFile))
	if err != nil {
		return fmt.Errorf("ccaas package: %w", err)
	}
	if _, err := ParseConnection(data); err != nil {
		return fmt.Errorf("ccaas package: %s: %w", ccpackage.ConnectionFile, err)
	}
	if err := os.WriteFile(filepath.Join(bc.bldDir, ccpackage.ConnectionFile), data, 0o600); err != nil {
		return err
	}
	return copyTree(filepath.Join(bc.sourceDir, "META-INF"), filepath.Join(bc.bldDir, "META-INF"))
}

func (ccaasBuilder) release(_ context.Context, bc *buildContext) error {
	server := filepath.Join(bc.releaseDir, ServerReleaseDir)
	if err := os.MkdirAll(server, 0o700); err != nil {
		return err
	}
	data, err := os.ReadFile(filepath.Join(bc.bldDir, ccpackage.ConnectionFile))
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(server, ccpackage.ConnectionFile), data, 0o600); err != nil {
		return err
	}
	return copyTree(filepath.Join(bc.bldDir, "META-INF", "statedb"), filepath.Join(bc.releaseDir, "statedb"))
}

func (ccaasBuilder) command(i *Instance, _ string, _ RunConfig) (*exec.Cmd, error) {
	return nil, fmt.Errorf("chaincode %s is a service: %w", i.PackageID, ErrNoRun)
}

// ParseConnection decodes and checks connection.json as Fabric's peer does:
// dial_timeout may be a duration string ("10s") or a number, and TLS needs
// root_cert, plus client_key and client_cert when client_auth_required.
func ParseConnection(data []byte) (ccpackage.Connection, error) {
	var raw struct {
		ccpackage.Connection
		DialTimeout json.RawMessage `json:"dial_timeout"`
	}
	if err := json.Unmarshal(data, &raw); err != nil {
		return ccpackage.Connection{}, fmt.Errorf("decode: %w", err)
	}
	conn := raw.Connection
	conn.DialTimeout = ""
	if len(raw.DialTimeout) > 0 && string(raw.DialTimeout) != "null" {
		var s string
		var n float64
		switch {
		case json.Unmarshal(raw.DialTimeout, &s) == nil:
			if _, err := time.ParseDuration(s); err != nil {
				return conn, fmt.Errorf("dial_timeout: %w", err)
			}
			conn.DialTimeout = s
		case json.Unmarshal(raw.DialTimeout, &n) == nil:
			// Fabric reads a bare number as nanoseconds.
			conn.DialTimeout = time.Duration(n).String()
		default:
			return conn, errors.New("dial_timeout must be a duration string or a number")
		}
	}
	if conn.Address == "" {
		return conn, errors.New("chaincode address not provided")
	}
	if !conn.TLSRequired {
		return conn, nil
	}
	if conn.ClientAuthRequired && conn.ClientKey == "" {
		return conn, errors.New("chaincode tls key not provided")
	}
	if conn.ClientAuthRequired && conn.ClientCert == "" {
		return conn, errors.New("chaincode tls cert not provided")
	}
	if conn.RootCert == "" {
		return conn, errors.New("chaincode tls root cert not provided")
	}
	return conn, nil
}

// DialTimeout is conn's dial timeout, DefaultDialTimeout if unset.
func DialTimeout(conn ccpackage.Connection) time.Duration {
	if d, err := time.ParseDuration(conn.DialTimeout); err == nil && d > 0 {
		return d
	}
	return DefaultDialTimeout
}

// copyTree copies the regular files and folders under src to dst; a
// missing src copies nothing. Links are not followed.
func copyTree(src, dst string) error {
	if _, err := os.Lstat(src); errors.Is(err, os.ErrNotExist) {
		return nil
	}
	return filepath.WalkDir(src, func(path string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(src, path)
		if err != nil {
			return err
		}
		target := filepath.Join(dst, rel)
		switch {
		case d.IsDir():
			return os.MkdirAll(target, 0o700)
		case d.Type().IsRegular():
			data, err := os.ReadFile(path)
			if err != nil {
				return err
			}
			return os.WriteFile(target, data, 0o600)
		default:
			return nil
		}
	})
}
