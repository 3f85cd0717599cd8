package shimcheck

import (
	"bytes"
	"context"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cairn-ledger/cairn/chaincode/ccpackage"
)

func TestSourceEmbedsEveryFile(t *testing.T) {
	var onDisk []string
	err := filepath.WalkDir(".", func(path string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !d.IsDir() && strings.HasSuffix(path, ".go") && !strings.HasSuffix(path, "_test.go") {
			onDisk = append(onDisk, filepath.ToSlash(path))
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, path := range onDisk {
		disk, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		embedded, err := fs.ReadFile(Source(), path)
		if err != nil {
			t.Errorf("%s is not embedded in Source(): add it to the go:embed list", path)
			continue
		}
		if !bytes.Equal(embedded, disk) {
			t.Errorf("%s: embedded copy differs", path)
		}
	}
}

func TestConfigFromEnv(t *testing.T) {
	env := map[string]string{"CORE_CHAINCODE_ID_NAME": "shimcheck:1", "CORE_PEER_ADDRESS": "peer:7052", "CORE_PEER_TLS_ENABLED": "false"}
	cfg, err := ConfigFromEnv(func(k string) string { return env[k] }, "")
	if err != nil || cfg.ChaincodeID != "shimcheck:1" || cfg.PeerAddress != "peer:7052" || cfg.TLS != nil {
		t.Fatalf("ConfigFromEnv = %+v, %v", cfg, err)
	}
	if cfg, _ := ConfigFromEnv(func(k string) string { return env[k] }, "other:1"); cfg.PeerAddress != "other:1" {
		t.Fatalf("-peer.address not applied: %+v", cfg)
	}
	delete(env, "CORE_PEER_TLS_ENABLED")
	if _, err := ConfigFromEnv(func(k string) string { return env[k] }, ""); err == nil {
		t.Fatal("missing CORE_PEER_TLS_ENABLED accepted")
	}
}

func TestCCaaSConfigFromEnv(t *testing.T) {
	env := map[string]string{"CHAINCODE_SERVER_ADDRESS": "0.0.0.0:9999", "CHAINCODE_ID": "shimcheck:1"}
	get := func(k string) string { return env[k] }
	cfg, err := CCaaSConfigFromEnv(get)
	if err != nil || cfg.Address != "0.0.0.0:9999" || cfg.ChaincodeID != "shimcheck:1" || cfg.TLS != nil {
		t.Fatalf("CCaaSConfigFromEnv = %+v, %v", cfg, err)
	}
	env["CHAINCODE_TLS_DISABLED"] = "false"
	if _, err := CCaaSConfigFromEnv(get); err == nil || !strings.Contains(err.Error(), "CHAINCODE_TLS_KEY") {
		t.Fatalf("TLS without key: %v", err)
	}
	env["CHAINCODE_TLS_DISABLED"] = "maybe"
	if _, err := CCaaSConfigFromEnv(get); err == nil {
		t.Fatal("bad CHAINCODE_TLS_DISABLED accepted")
	}
	if err := (CCaaSConfig{Address: "x:1"}).Validate(); err == nil {
		t.Fatal("missing chaincode ID accepted")
	}
}

// TestServeCCaaSStops: ServeCCaaS returns nil once its context ends.
func TestServeCCaaSStops(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- ServeCCaaS(ctx, CCaaSConfig{Address: "127.0.0.1:0", ChaincodeID: "shimcheck:1"}) }()
	time.Sleep(50 * time.Millisecond)
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("ServeCCaaS did not stop")
	}
}

// TestPackage: the source packages as Go chaincode for a lifecycle install.
func TestPackage(t *testing.T) {
	pkg, err := ccpackage.Golang("shimcheck_1.0", "github.com/cairn-ledger/cairn/chaincode/shimcheck/cmd/shimcheck", Source())
	if err != nil || len(pkg) == 0 {
		t.Fatalf("package shimcheck: %v", err)
	}
}
