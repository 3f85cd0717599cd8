package builder

import (
	"context"
	"os"
	"os/exec"
	"strings"
	"testing"
	"testing/fstest"
	"time"

	"github.com/cairn-ledger/cairn/chaincode/ccpackage"
)

// goEnv passes the test's Go settings to the builder, as the peer passes its own.
func goEnv() func(string) (string, bool) { return os.LookupEnv }

func TestGolangBuilder(t *testing.T) {
	if _, err := exec.LookPath("go"); err != nil {
		t.Skip("no go toolchain")
	}
	src := fstest.MapFS{
		"go.mod": {Data: []byte("module example.com/hello\n\ngo 1.22\n")},
		"cmd/hello/main.go": {Data: []byte(`package main

import (
	"fmt"
	"os"
)

func main() {
	fmt.Println(os.Args[1], os.Getenv("CORE_CHAINCODE_ID_NAME"), os.Getenv("CORE_PEER_TLS_ENABLED"), os.Getenv("CORE_PEER_LOCALMSPID"))
	for _, k := range []string{"CORE_TLS_CLIENT_KEY_FILE", "CORE_PEER_TLS_ROOTCERT_FILE"} {
		data, err := os.ReadFile(os.Getenv(k))
		if err != nil {
			panic(err)
		}
		fmt.Println(string(data))
	}
}
`)},
	}
	pkg, err := ccpackage.Golang("hello_1", "example.com/hello/cmd/hello", src)
	if err != nil {
		t.Fatal(err)
	}
	id := ccpackage.PackageID("hello_1", pkg)
	b, err := New(Config{Dir: t.TempDir(), Golang: true, LookupEnv: goEnv(), Timeout: 2 * time.Minute, Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	inst, err := b.Build(context.Background(), id, pkg)
	if err != nil {
		t.Fatal(err)
	}
	cmd, err := inst.Command(t.TempDir(), RunConfig{PackageID: id, PeerAddress: "127.0.0.1:7051", ClientKey: "KEYPEM", RootCert: "ROOTPEM", MSPID: "Org1MSP"})
	if err != nil {
		t.Fatal(err)
	}
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("run: %v\n%s", err, out)
	}
	want := "-peer.address=127.0.0.1:7051 " + id + " true Org1MSP\nKEYPEM\nROOTPEM\n"
	if string(out) != want {
		t.Fatalf("chaincode printed %q, want %q", out, want)
	}
}

func TestGolangBuildError(t *testing.T) {
	if _, err := exec.LookPath("go"); err != nil {
		t.Skip("no go toolchain")
	}
	src := fstest.MapFS{
		"go.mod":  {Data: []byte("module example.com/broken\n\ngo 1.22\n")},
		"main.go": {Data: []byte("package main\n\nfunc main() { undefinedThing() }\n")},
	}
	pkg, err := ccpackage.Golang("broken_1", "example.com/broken", src)
	if err != nil {
		t.Fatal(err)
	}
	b, err := New(Config{Dir: t.TempDir(), Golang: true, LookupEnv: goEnv()})
	if err != nil {
		t.Fatal(err)
	}
	_, err = b.Build(context.Background(), ccpackage.PackageID("broken_1", pkg), pkg)
	if err == nil || !strings.Contains(err.Error(), "undefined: undefinedThing") {
		t.Fatalf("Build error = %v, want the compiler's message", err)
	}

	noMod, err := ccpackage.Golang("nomod_1", "x", fstest.MapFS{"main.go": {Data: []byte("package main\n")}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := b.Build(context.Background(), ccpackage.PackageID("nomod_1", noMod), noMod); err == nil || !strings.Contains(err.Error(), "no src/go.mod") {
		t.Fatalf("GOPATH package: %v", err)
	}
}

func TestGoTarget(t *testing.T) {
	root := t.TempDir()
	if err := os.MkdirAll(root+"/cmd/cc", 0o700); err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct{ md, want string }{
		{"", "."}, {".", "."}, {"example.com/m", "."}, {"example.com/m/cmd/cc", "./cmd/cc"}, {"cmd/cc", "./cmd/cc"},
		{"../../etc", ""}, {"example.com/m/missing", ""},
	} {
		got, err := goTarget("example.com/m", tt.md, root)
		if (tt.want == "") != (err != nil) || got != tt.want {
			t.Errorf("goTarget(%q) = %q, %v; want %q", tt.md, got, err, tt.want)
		}
	}
}
