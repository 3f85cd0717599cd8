package builder

import (
	"context"
	"encoding/json"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"testing/fstest"
	"time"

	"github.com/cairn-ledger/cairn/chaincode/ccpackage"
)

// writeBuilder creates an external builder folder with the given bin/ scripts.
func writeBuilder(t *testing.T, scripts map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	if err := os.Mkdir(filepath.Join(dir, "bin"), 0o755); err != nil {
		t.Fatal(err)
	}
	for name, body := range scripts {
		if err := os.WriteFile(filepath.Join(dir, "bin", name), []byte("#!/bin/sh\nset -e\n"+body), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

func envOf(vars map[string]string) func(string) (string, bool) {
	return func(k string) (string, bool) {
		v, ok := vars[k]
		return v, ok
	}
}

func testLogger(t *testing.T) *slog.Logger {
	return slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSpace(string(p)))
	return len(p), nil
}

func scriptPackage(t *testing.T, typ string) ([]byte, string) {
	t.Helper()
	code, err := ccpackage.CodeArchive(fstest.MapFS{"main.sh": {Data: []byte("echo hi\n")}}, "src")
	if err != nil {
		t.Fatal(err)
	}
	pkg, err := ccpackage.Write(ccpackage.Metadata{Type: typ, Label: "mycc_1"}, code)
	if err != nil {
		t.Fatal(err)
	}
	return pkg, ccpackage.PackageID("mycc_1", pkg)
}

// TestExternalBuilderContract runs real detect/build/release/run scripts and
// checks the arguments, folders and environment Fabric's contract promises.
func TestExternalBuilderContract(t *testing.T) {
	logDir := t.TempDir()
	decline := writeBuilder(t, map[string]string{
		"detect": `echo declined >> "$LOG_DIR/declined"; exit 1` + "\n",
		"build":  "exit 1\n",
	})
	claim := writeBuilder(t, map[string]string{
		"detect": `echo "$1 $2" > "$LOG_DIR/detect.args"
env | sort > "$LOG_DIR/detect.env"
test -f "$1/src/main.sh"
grep -q '"type":"script"' "$2/metadata.json"
echo detected >> "$LOG_DIR/detect.count"
`,
		"build": `echo "$1 $2 $3" > "$LOG_DIR/build.args"
cp "$1/src/main.sh" "$3/main.sh"
echo "building on stdout"
`,
		"run": `cp "$2/chaincode.json" "$LOG_DIR/chaincode.json"
echo "$1" > "$LOG_DIR/run.args"
cat "$1/main.sh" > "$LOG_DIR/run.out"
`,
	})
	env := map[string]string{"LOG_DIR": logDir, "PATH": os.Getenv("PATH"), "SECRET": "must-not-leak"}
	dir := t.TempDir()
	newBuilder := func() *Builder {
		b, err := New(Config{
			Dir: dir,
			External: []External{
				{Name: "decline", Path: decline, PropagateEnvironment: []string{"LOG_DIR"}},
				{Name: "script", Path: claim, PropagateEnvironment: []string{"LOG_DIR"}},
			},
			Golang:    true,
			CCaaS:     true,
			LookupEnv: envOf(env),
			Logger:    testLogger(t),
		})
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	pkg, id := scriptPackage(t, "script")
	inst, err := newBuilder().Build(context.Background(), id, pkg)
	if err != nil {
		t.Fatal(err)
	}
	if inst.Builder != "script" {
		t.Fatalf("built by %q, want script", inst.Builder)
	}
	if want := filepath.Join(dir, SanitizePackageID(id), "bld"); inst.BuildDir != want {
		t.Fatalf("build dir %s, want %s", inst.BuildDir, want)
	}
	if _, err := os.Stat(filepath.Join(inst.BuildDir, "main.sh")); err != nil {
		t.Fatalf("build output not kept: %v", err)
	}
	read := func(name string) string {
		data, err := os.ReadFile(filepath.Join(logDir, name))
		if err != nil {
			t.Fatal(err)
		}
		return strings.TrimSpace(string(data))
	}
	if read("declined") != "declined" {
		t.Fatal("first builder's detect was not run")
	}
	detectArgs := strings.Fields(read("detect.args"))
	buildArgs := strings.Fields(read("build.args"))
	if len(detectArgs) != 2 || len(buildArgs) != 3 || buildArgs[0] != detectArgs[0] || buildArgs[1] != detectArgs[1] {
		t.Fatalf("detect args %v, build args %v", detectArgs, buildArgs)
	}
	if filepath.Base(detectArgs[0]) != "src" || filepath.Base(detectArgs[1]) != "metadata" || filepath.Base(buildArgs[2]) != "bld" {
		t.Fatalf("unexpected folders: detect %v build %v", detectArgs, buildArgs)
	}
	gotEnv := read("detect.env")
	if strings.Contains(gotEnv, "SECRET") || !strings.Contains(gotEnv, "LOG_DIR="+logDir) || !strings.Contains(gotEnv, "PATH=") {
		t.Fatalf("builder environment not pruned to propagateEnvironment + defaults:\n%s", gotEnv)
	}
	if _, ok, err := inst.Server(); ok || err != nil {
		t.Fatalf("Server() = %v, %v without a release", ok, err)
	}

	// bin/run gets BUILD_OUTPUT_DIR and RUN_METADATA_DIR/chaincode.json.
	runDir := t.TempDir()
	rc := RunConfig{PackageID: id, PeerAddress: "127.0.0.1:7051", ClientCert: "CERT", ClientKey: "KEY", RootCert: "ROOT", MSPID: "Org1MSP"}
	cmd, err := inst.Command(runDir, rc)
	if err != nil {
		t.Fatal(err)
	}
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("run: %v\n%s", err, out)
	}
	var got map[string]string
	if err := json.Unmarshal([]byte(read("chaincode.json")), &got); err != nil {
		t.Fatal(err)
	}
	want := map[string]string{"chaincode_id": id, "peer_address": "127.0.0.1:7051", "client_cert": "CERT", "client_key": "KEY", "root_cert": "ROOT", "mspid": "Org1MSP"}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("chaincode.json %s = %q, want %q", k, got[k], v)
		}
	}
	if read("run.args") != inst.BuildDir || read("run.out") != "echo hi" {
		t.Fatalf("run saw build dir %q and output %q", read("run.args"), read("run.out"))
	}

	// A restarted peer reuses the build without detecting again.
	again, err := newBuilder().Build(context.Background(), id, pkg)
	if err != nil {
		t.Fatal(err)
	}
	if again.BuildDir != inst.BuildDir || read("detect.count") != "detected" {
		t.Fatalf("rebuilt instead of reusing: %s, detect ran %q", again.BuildDir, read("detect.count"))
	}
	// Nothing but the build folder is left in the build directory.
	entries, _ := os.ReadDir(dir)
	if len(entries) != 1 {
		t.Fatalf("build directory holds %d entries, want 1", len(entries))
	}
}

func TestExternalReleaseServer(t *testing.T) {
	claim := writeBuilder(t, map[string]string{
		"detect": "exit 0\n",
		"build":  "echo built > \"$3/out\"\n",
		"release": `mkdir -p "$2/chaincode/server"
printf '{"address":"cc.example.com:9999","dial_timeout":"10s","tls_required":false}' > "$2/chaincode/server/connection.json"
`,
	})
	b, err := New(Config{Dir: t.TempDir(), External: []External{{Name: "svc", Path: claim}}, LookupEnv: envOf(map[string]string{"PATH": os.Getenv("PATH")})})
	if err != nil {
		t.Fatal(err)
	}
	pkg, id := scriptPackage(t, "anything")
	inst, err := b.Build(context.Background(), id, pkg)
	if err != nil {
		t.Fatal(err)
	}
	conn, ok, err := inst.Server()
	if err != nil || !ok || conn.Address != "cc.example.com:9999" || DialTimeout(conn) != 10*time.Second {
		t.Fatalf("Server() = %+v, %v, %v", conn, ok, err)
	}
	if _, err := inst.Command(t.TempDir(), RunConfig{}); err == nil || !strings.Contains(err.Error(), "no bin/run") {
		t.Fatalf("Command without bin/run: %v", err)
	}
}

func TestBuildFailures(t *testing.T) {
	path := envOf(map[string]string{"PATH": os.Getenv("PATH")})
	failing := writeBuilder(t, map[string]string{
		"detect": "exit 0\n",
		"build":  "echo 'compile error: missing semicolon' >&2; exit 3\n",
	})
	slow := writeBuilder(t, map[string]string{
		"detect": "exit 0\n",
		"build":  "sleep 30\n",
	})
	pkg, id := scriptPackage(t, "script")
	tests := []struct {
		name    string
		cfg     Config
		wantErr string
	}{
		{"build output in error", Config{External: []External{{Name: "f", Path: failing}}}, "compile error: missing semicolon"},
		{"timeout", Config{External: []External{{Name: "s", Path: slow}}, Timeout: 300 * time.Millisecond}, "deadline exceeded"},
		{"nobody claims", Config{Golang: true, CCaaS: true}, `no builder claimed the package (type "script")`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.cfg.Dir, tt.cfg.LookupEnv = t.TempDir(), path
			b, err := New(tt.cfg)
			if err != nil {
				t.Fatal(err)
			}
			start := time.Now()
			_, err = b.Build(context.Background(), id, pkg)
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("Build error = %v, want it to contain %q", err, tt.wantErr)
			}
			if time.Since(start) > 10*time.Second {
				t.Fatal("build was not stopped in time")
			}
			if entries, _ := os.ReadDir(tt.cfg.Dir); len(entries) != 0 {
				t.Fatalf("failed build left %d entries", len(entries))
			}
		})
	}
}

func TestCCaaSBuilder(t *testing.T) {
	b, err := New(Config{Dir: t.TempDir(), CCaaS: true, Golang: true})
	if err != nil {
		t.Fatal(err)
	}
	pkg, err := ccpackage.CCaaS("svc_1", ccpackage.Connection{Address: "127.0.0.1:9999", DialTimeout: "5s", TLSRequired: true, RootCert: "ROOT"})
	if err != nil {
		t.Fatal(err)
	}
	id := ccpackage.PackageID("svc_1", pkg)
	inst, err := b.Build(context.Background(), id, pkg)
	if err != nil {
		t.Fatal(err)
	}
	conn, ok, err := inst.Server()
	if err != nil || !ok || conn.Address != "127.0.0.1:9999" || !conn.TLSRequired || conn.RootCert != "ROOT" || DialTimeout(conn) != 5*time.Second {
		t.Fatalf("Server() = %+v, %v, %v", conn, ok, err)
	}
	if inst.Builder != CCaaSName {
		t.Fatalf("builder %q", inst.Builder)
	}

	bad, err := ccpackage.CCaaS("svc_2", ccpackage.Connection{Address: "127.0.0.1:9999", TLSRequired: true})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := b.Build(context.Background(), ccpackage.PackageID("svc_2", bad), bad); err == nil || !strings.Contains(err.Error(), "root cert not provided") {
		t.Fatalf("ccaas without root cert: %v", err)
	}
}

func TestParseConnection(t *testing.T) {
	tests := []struct {
		json    string
		timeout time.Duration
		wantErr string
	}{
		{`{"address":"a:1"}`, DefaultDialTimeout, ""},
		{`{"address":"a:1","dial_timeout":"1m"}`, time.Minute, ""},
		{`{"address":"a:1","dial_timeout":2000000000}`, 2 * time.Second, ""},
		{`{"address":"a:1","dial_timeout":"soon"}`, 0, "dial_timeout"},
		{`{"dial_timeout":"1s"}`, 0, "address not provided"},
		{`{"address":"a:1","tls_required":true,"client_auth_required":true,"root_cert":"R"}`, 0, "tls key not provided"},
		{`not json`, 0, "decode"},
	}
	for _, tt := range tests {
		conn, err := ParseConnection([]byte(tt.json))
		if tt.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("%s: error %v, want %q", tt.json, err, tt.wantErr)
			}
			continue
		}
		if err != nil || DialTimeout(conn) != tt.timeout {
			t.Errorf("%s: %+v %v", tt.json, conn, err)
		}
	}
}

func TestConfigValidate(t *testing.T) {
	for _, c := range []Config{
		{},
		{Dir: "d", External: []External{{Name: "x"}}},
		{Dir: "d", External: []External{{Name: "x", Path: "relative"}}},
		{Dir: "d", External: []External{{Name: "x", Path: "/a"}, {Name: "x", Path: "/b"}}},
		{Dir: "d", Golang: true, External: []External{{Name: "golang", Path: "/a"}}},
	} {
		if c.Validate() == nil {
			t.Errorf("%+v validates", c)
		}
	}
}
