package builder

import (
	"bufio"
	"bytes"
	"context"
	"encoding/base64"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	"github.com/cairn-ledger/cairn/chaincode/ccpackage"
)

// goEnvironment is what the go command needs from the peer's environment to
// find its toolchain, caches and module proxy.
var goEnvironment = []string{
	"HOME", "GOPATH", "GOCACHE", "GOMODCACHE", "GOPROXY", "GONOPROXY", "GOPRIVATE",
	"GONOSUMDB", "GOSUMDB", "GOINSECURE", "GOFLAGS", "GOTOOLCHAIN", "GOROOT",
	"CGO_ENABLED", "XDG_CACHE_HOME", "SSL_CERT_FILE", "SSL_CERT_DIR",
	"HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY",
}

// golangBuilder compiles Go chaincode packaged as a module under src/ with
// the local toolchain, as Fabric's golang platform does in module mode:
// -mod=vendor when the module vendors its dependencies, otherwise
// -mod=readonly so the build uses exactly the versions go.mod and go.sum pin.
type golangBuilder struct{ b *Builder }

func (g *golangBuilder) name() string { return GolangName }

func (g *golangBuilder) detect(_ context.Context, bc *buildContext) bool {
	return strings.EqualFold(bc.metadata.Type, "golang")
}

func (g *golangBuilder) build(ctx context.Context, bc *buildContext) error {
	modRoot := filepath.Join(bc.sourceDir, "src")
	gomod, err := os.ReadFile(filepath.Join(modRoot, "go.mod"))
	if err != nil {
		return fmt.Errorf("golang package has no src/go.mod (GOPATH-mode packages are not supported): %w", err)
	}
	target, err := goTarget(modulePath(gomod), bc.metadata.Path, modRoot)
	if err != nil {
		return err
	}
	mod := "-mod=readonly"
	if st, err := os.Stat(filepath.Join(modRoot, "vendor")); err == nil && st.IsDir() {
		mod = "-mod=vendor"
	}
	var extra []string
	_, hasCache := g.b.cfg.LookupEnv("GOCACHE")
	_, hasHome := g.b.cfg.LookupEnv("HOME")
	if !hasCache && !hasHome {
		extra = append(extra, "GOCACHE="+filepath.Join(g.b.cfg.Dir, ".gocache"))
	}
	cmd := exec.CommandContext(ctx, g.b.cfg.GoBinary, "build", mod, "-trimpath", "-o", filepath.Join(bc.bldDir, goBinary), target)
	cmd.Cancel = func() error { return nil }
	cmd.Dir = modRoot
	cmd.Env = g.b.environment(goEnvironment, extra...)
	return g.b.run(ctx, cmd, "builder", GolangName, "program", "go build", "package_id", bc.packageID)
}

// goTarget maps metadata.json's path to the package to build inside the
// module: the module itself for "" or ".", a package of the module by
// import path, or a relative folder.
func goTarget(module, mdPath, modRoot string) (string, error) {
	rel := ""
	switch {
	case mdPath == "" || mdPath == "." || mdPath == module:
		return ".", nil
	case module != "" && strings.HasPrefix(mdPath, module+"/"):
		rel = strings.TrimPrefix(mdPath, module+"/")
	default:
		rel = strings.TrimPrefix(mdPath, "./")
	}
	if !ccpackage.LocalName(rel) {
		return "", fmt.Errorf("metadata path %q is outside module %q", mdPath, module)
	}
	if st, err := os.Stat(filepath.Join(modRoot, filepath.FromSlash(rel))); err != nil || !st.IsDir() {
		return "", fmt.Errorf("metadata path %q names no package folder of module %q", mdPath, module)
	}
	return "./" + rel, nil
}

// modulePath reads the module directive of go.mod.
func modulePath(gomod []byte) string {
	sc := bufio.NewScanner(bytes.NewReader(gomod))
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if rest, ok := strings.CutPrefix(line, "module"); ok && (rest == "" || rest[0] == ' ' || rest[0] == '\t') {
			return strings.Trim(strings.TrimSpace(rest), `"`)
		}
	}
	return ""
}

func (g *golangBuilder) release(context.Context, *buildContext) error { return nil }

// command runs the compiled chaincode the way Fabric's peer starts a Go
// chaincode container: -peer.address on the command line and the CORE_*
// variables of the Go shim (fabric-chaincode-go/v2 shim/internal/config.go),
// with the client key pair both as base64 of the PEM (CORE_TLS_CLIENT_*_PATH)
// and as plain PEM (CORE_TLS_CLIENT_*_FILE, which the shim prefers).
func (g *golangBuilder) command(i *Instance, runDir string, rc RunConfig) (*exec.Cmd, error) {
	files := []struct {
		name string
		data string
	}{
		{"peer.crt", rc.RootCert},
		{"client.key", base64.StdEncoding.EncodeToString([]byte(rc.ClientKey))},
		{"client.crt", base64.StdEncoding.EncodeToString([]byte(rc.ClientCert))},
		{"client_pem.key", rc.ClientKey},
		{"client_pem.crt", rc.ClientCert},
	}
	for _, f := range files {
		if err := os.WriteFile(filepath.Join(runDir, f.name), []byte(f.data), 0o600); err != nil {
			return nil, fmt.Errorf("write %s: %w", f.name, err)
		}
	}
	cmd := exec.Command(filepath.Join(i.BuildDir, goBinary), "-peer.address="+rc.PeerAddress)
	cmd.Dir = runDir
	cmd.Env = g.b.environment(nil,
		"CORE_CHAINCODE_ID_NAME="+rc.PackageID,
		"CORE_PEER_ADDRESS="+rc.PeerAddress,
		"CORE_PEER_TLS_ENABLED=true",
		"CORE_PEER_TLS_ROOTCERT_FILE="+filepath.Join(runDir, "peer.crt"),
		"CORE_TLS_CLIENT_KEY_PATH="+filepath.Join(runDir, "client.key"),
		"CORE_TLS_CLIENT_CERT_PATH="+filepath.Join(runDir, "client.crt"),
		"CORE_TLS_CLIENT_KEY_FILE="+filepath.Join(runDir, "client_pem.key"),
		"CORE_TLS_CLIENT_CERT_FILE="+filepath.Join(runDir, "client_pem.crt"),
		"CORE_PEER_LOCALMSPID="+rc.MSPID,
	)
	return cmd, nil
}
