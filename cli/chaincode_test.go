package cli

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cairn-ledger/cairn/chaincode/ccpackage"
)

// runCairn runs the command tree in-process and returns stdout, stderr and
// the command's error.
func runCairn(t *testing.T, args ...string) (string, string, error) {
	t.Helper()
	root := newRoot()
	var out, errOut bytes.Buffer
	root.SetOut(&out)
	root.SetErr(&errOut)
	root.SetArgs(args)
	err := root.Execute()
	return out.String(), errOut.String(), err
}

// TestChaincodePackage packages a Go module folder and a ccaas address and
// checks the files and the printed package IDs.
func TestChaincodePackage(t *testing.T) {
	dir := t.TempDir()
	mod := filepath.Join(dir, "assets")
	if err := os.MkdirAll(mod, 0o755); err != nil {
		t.Fatal(err)
	}
	for name, body := range map[string]string{"go.mod": "module example.com/assets\n\ngo 1.22\n", "main.go": "package main\n\nfunc main() {}\n"} {
		if err := os.WriteFile(filepath.Join(mod, name), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	for _, tc := range []struct {
		name, typ string
		args      []string
	}{
		{"golang", "golang", []string{"--path", mod, "--label", "assets_1.0"}},
		{"ccaas", "ccaas", []string{"--ccaas", "127.0.0.1:9999", "--label", "assets_1.0"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			file := filepath.Join(dir, tc.name+".tar.gz")
			out, errOut, err := runCairn(t, append([]string{"chaincode", "package", file}, tc.args...)...)
			if err != nil {
				t.Fatalf("package: %v\n%s", err, errOut)
			}
			pkg, err := os.ReadFile(file)
			if err != nil {
				t.Fatal(err)
			}
			parsed, err := ccpackage.Parse(pkg)
			if err != nil {
				t.Fatal(err)
			}
			if parsed.Metadata.Type != tc.typ || parsed.Metadata.Label != "assets_1.0" {
				t.Fatalf("metadata = %+v", parsed.Metadata)
			}
			if got, want := strings.TrimSpace(out), ccpackage.PackageID("assets_1.0", pkg); got != want {
				t.Fatalf("printed %q, want the package ID %q", got, want)
			}
		})
	}
}

// TestChaincodeCommandErrors checks that wrong invocations fail before
// touching any network, with messages that say what to fix.
func TestChaincodeCommandErrors(t *testing.T) {
	dir := t.TempDir()
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"chaincode", "package", "x.tar.gz", "--path", dir}, "--label is required"},
		{[]string{"chaincode", "package", "--label", "a", "--path", dir, "--ccaas", "h:1"}, "exclusive"},
		{[]string{"chaincode", "package", "--label", "a"}, "either --path"},
		{[]string{"chaincode", "package", filepath.Join(dir, "x.tar.gz"), "--label", "a", "--path", dir}, "no go.mod"},
		{[]string{"chaincode", "package", "--label", "bad label", "--ccaas", "h:1"}, "invalid label"},
		{[]string{"chaincode", "deploy", "--network", dir, "--ccaas", "h:1"}, "--name is required"},
		{[]string{"chaincode", "deploy", "--network", dir, "--name", "cc", "--ccaas", "h:1", "--policy", "OR("}, "endorsement policy"},
		{[]string{"chaincode", "deploy", "--network", dir, "--name", "cc", "--ccaas", "h:1"}, "network profile"},
		{[]string{"chaincode", "list", "--network", dir}, "network profile"},
		{[]string{"chaincode", "invoke", "--network", dir, "--name", "cc", "Fn", "--transient", "novalue"}, "want key=value"},
		{[]string{"chaincode", "query", "--network", dir, "Fn"}, "--name is required"},
	} {
		t.Run(strings.Join(tc.args[1:], " "), func(t *testing.T) {
			_, _, err := runCairn(t, tc.args...)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want one containing %q", err, tc.want)
			}
		})
	}
}

// TestChaincodeTargetSelection checks --org and --peer against network.json.
func TestChaincodeTargetSelection(t *testing.T) {
	dir := t.TempDir()
	profile := `{"channel": "mychannel", "organizations": [
	  {"mspId": "Org1MSP", "peers": [{"name": "peer0.org1.example.com", "address": "127.0.0.1:1"}]},
	  {"mspId": "Org2MSP", "peers": [{"name": "peer0.org2.example.com", "address": "127.0.0.1:2"}, {"name": "peer1.org2.example.com", "address": "127.0.0.1:3"}]}]}`
	if err := os.WriteFile(filepath.Join(dir, "network.json"), []byte(profile), 0o644); err != nil {
		t.Fatal(err)
	}
	_, _, err := runCairn(t, "chaincode", "list", "--network", dir, "--org", "Org9MSP")
	if err == nil || !strings.Contains(err.Error(), "organisations: Org1MSP, Org2MSP") {
		t.Fatalf("unknown org: %v", err)
	}
	_, _, err = runCairn(t, "chaincode", "query", "--network", dir, "--name", "cc", "--peer", "peer9", "Fn")
	if err == nil || !strings.Contains(err.Error(), `--peer "peer9"`) {
		t.Fatalf("unknown peer: %v", err)
	}
	_, _, err = runCairn(t, "chaincode", "list", "--network", dir, "--org", "Org2MSP")
	if err == nil || !strings.Contains(err.Error(), `no user "admin"`) {
		t.Fatalf("org without admin in network.json: %v", err)
	}
}
