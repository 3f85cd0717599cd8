package ccdeploy

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	pb "github.com/hyperledger/fabric-protos-go-apiv2/peer"

	"github.com/cairn-ledger/cairn/chaincode/ccpackage"
)

func mustPolicy(t *testing.T, expr string) []byte {
	t.Helper()
	raw, err := ParsePolicy(expr)
	if err != nil {
		t.Fatal(err)
	}
	return raw
}

func TestParsePolicy(t *testing.T) {
	if raw, err := ParsePolicy(""); raw != nil || err != nil {
		t.Fatalf("empty policy = %x, %v; want nil (channel default)", raw, err)
	}
	if got := DescribePolicy(mustPolicy(t, "/Channel/Application/Readers")); got != "/Channel/Application/Readers" {
		t.Fatalf("channel policy reference described as %q", got)
	}
	sig := mustPolicy(t, "OR('Org1MSP.peer','Org2MSP.peer')")
	if got := DescribePolicy(sig); !strings.Contains(got, "Org1MSP.peer") || !strings.Contains(got, "Org2MSP.peer") {
		t.Fatalf("signature policy described as %q", got)
	}
	if _, err := ParsePolicy("OR('Org1MSP.peer'"); err == nil {
		t.Fatal("a malformed policy parsed")
	}
	if got := DescribePolicy(nil); got != DefaultPolicyRef {
		t.Fatalf("nil policy described as %q", got)
	}
}

func TestDiff(t *testing.T) {
	base := Definition{Name: "cc", Version: "1.0", Sequence: 1, PackageID: "cc_1:aa"}
	coll := &pb.CollectionConfigPackage{Config: []*pb.CollectionConfig{{Payload: &pb.CollectionConfig_StaticCollectionConfig{
		StaticCollectionConfig: &pb.StaticCollectionConfig{Name: "private"}}}}}
	for _, tc := range []struct {
		name   string
		change func(*Definition)
		want   []string
	}{
		{"same", func(*Definition) {}, nil},
		{"default policy spelled out", func(d *Definition) { d.Policy = mustPolicy(t, DefaultPolicyRef) }, nil},
		{"default plugins spelled out", func(d *Definition) { d.EndorsementPlugin, d.ValidationPlugin = "escc", "vscc" }, nil},
		{"empty collections", func(d *Definition) { d.Collections = &pb.CollectionConfigPackage{} }, nil},
		{"no package on one side", func(d *Definition) { d.PackageID = "" }, nil},
		{"sequence", func(d *Definition) { d.Sequence = 2 }, []string{FieldSequence}},
		{"version", func(d *Definition) { d.Version = "2.0" }, []string{FieldVersion}},
		{"policy", func(d *Definition) { d.Policy = mustPolicy(t, "OR('Org1MSP.member')") }, []string{FieldPolicy}},
		{"init", func(d *Definition) { d.InitRequired = true }, []string{FieldInitRequired}},
		{"collections", func(d *Definition) { d.Collections = coll }, []string{FieldCollections}},
		{"package", func(d *Definition) { d.PackageID = "cc_1:bb" }, []string{FieldPackage}},
		{"several, in order", func(d *Definition) {
			d.PackageID, d.InitRequired, d.Version, d.Sequence = "cc_1:bb", true, "3", 5
		}, []string{FieldSequence, FieldVersion, FieldInitRequired, FieldPackage}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			other := base
			tc.change(&other)
			if got := Diff(base, other); !slices.Equal(got, tc.want) {
				t.Fatalf("Diff = %v, want %v", got, tc.want)
			}
			if got := Diff(other, base); !slices.Equal(got, tc.want) {
				t.Fatalf("Diff reversed = %v, want %v", got, tc.want)
			}
		})
	}
}

// TestPlan covers Deploy's decision: new chaincode, nothing to do, and
// which changes start an upgrade at which sequence.
func TestPlan(t *testing.T) {
	peerPolicy := mustPolicy(t, "OR('Org1MSP.peer','Org2MSP.peer')")
	committed := &Definition{Name: "cc", Version: "1.0", Sequence: 3, Policy: peerPolicy}
	same := map[string]string{"Org1MSP": "cc_1:aa", "Org2MSP": "cc_1:aa"}
	want := Definition{Name: "cc", Version: "1.0", PackageID: "cc_1:aa", Policy: peerPolicy}
	for _, tc := range []struct {
		name      string
		want      func(*Definition)
		requested int64
		committed *Definition
		running   map[string]string
		seq       int64
		changed   []string
		nothing   bool
		err       string
	}{
		{name: "new chaincode", committed: nil, seq: 1},
		{name: "new chaincode at a given sequence", committed: nil, requested: 4, seq: 4},
		{name: "unchanged", committed: committed, running: same, seq: 3, nothing: true},
		{name: "unchanged at the committed sequence", committed: committed, running: same, requested: 3, seq: 3, nothing: true},
		{name: "unchanged but a new sequence asked for", committed: committed, running: same, requested: 4, seq: 4},
		{name: "policy", want: func(d *Definition) { d.Policy = nil }, committed: committed, running: same, seq: 4, changed: []string{FieldPolicy}},
		{name: "version", want: func(d *Definition) { d.Version = "1.1" }, committed: committed, running: same, seq: 4, changed: []string{FieldVersion}},
		{name: "init-required", want: func(d *Definition) { d.InitRequired = true }, committed: committed, running: same, seq: 4, changed: []string{FieldInitRequired}},
		{name: "code", want: func(d *Definition) { d.PackageID = "cc_1:bb" }, committed: committed, running: same, seq: 4, changed: []string{FieldPackage}},
		{name: "one org runs another package", committed: committed, running: map[string]string{"Org1MSP": "cc_1:aa", "Org2MSP": ""}, seq: 4, changed: []string{FieldPackage}},
		{name: "changed at an old sequence", want: func(d *Definition) { d.Version = "2" }, committed: committed, running: same, requested: 3,
			err: "sequence 3 of chaincode cc is already committed with a different version; the next sequence is 4"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w := want
			if tc.want != nil {
				tc.want(&w)
			}
			seq, changed, nothing, err := plan(w, tc.requested, tc.committed, tc.running)
			if tc.err != "" {
				if err == nil || err.Error() != tc.err {
					t.Fatalf("err = %v, want %q", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if seq != tc.seq || nothing != tc.nothing || !slices.Equal(changed, tc.changed) {
				t.Fatalf("plan = seq %d changed %v nothing %t, want %d %v %t", seq, changed, nothing, tc.seq, tc.changed, tc.nothing)
			}
		})
	}
}

// TestNotReadyErrorNamesFields checks that a readiness failure names the
// fields on which approvals differ, and each organisation's values.
func TestNotReadyErrorNamesFields(t *testing.T) {
	want := Definition{Name: "cc", Version: "1.0", Sequence: 2, PackageID: "cc_1:aa"}
	err := error(&NotReadyError{
		Channel: "mychannel", Want: want, Need: 3,
		Approved: map[string]bool{"Org1MSP": true, "Org2MSP": false, "Org3MSP": false, "Org4MSP": false},
		Approvals: map[string]*Definition{
			"Org2MSP": {Name: "cc", Version: "2.0", Sequence: 2, PackageID: "cc_1:bb", Policy: mustPolicy(t, "OR('Org2MSP.member')")},
			"Org3MSP": {Name: "cc", Version: "1.0", Sequence: 1, PackageID: "cc_1:aa", InitRequired: true},
			"Org4MSP": nil,
		},
	})
	if !errors.Is(err, ErrNotReady) {
		t.Fatal("NotReadyError is not ErrNotReady")
	}
	var nr *NotReadyError
	if !errors.As(err, &nr) {
		t.Fatal("not a NotReadyError")
	}
	if got, w := nr.Fields(), []string{FieldSequence, FieldVersion, FieldPolicy, FieldInitRequired, FieldPackage}; !slices.Equal(got, w) {
		t.Fatalf("Fields = %v, want %v", got, w)
	}
	msg := err.Error()
	for _, s := range []string{
		"approved by 1 of 4 organisations (3 needed)",
		"the approvals differ in: sequence, version, policy, init-required, package",
		`Org2MSP approved version "2.0" (requested version "1.0"), policy OR('Org2MSP.member') (requested policy /Channel/Application/Endorsement), package cc_1:bb (requested package cc_1:aa)`,
		"Org3MSP approved sequence 1 (requested sequence 2), init-required true (requested init-required false)",
		"Org4MSP has not approved chaincode cc",
	} {
		if !strings.Contains(msg, s) {
			t.Fatalf("error lacks %q:\n%s", s, msg)
		}
	}
}

func TestPackageGoModule(t *testing.T) {
	dir := t.TempDir()
	files := map[string]string{
		"go.mod":         "// comment\nmodule example.com/assets // trailing\n\ngo 1.22\n",
		"main.go":        "package main\n",
		"lib/lib.go":     "package lib\n",
		".git/HEAD":      "ref: refs/heads/main\n",
		".hidden":        "secret\n",
		"lib/.swp":       "x",
		"META-INF/x.txt": "index",
	}
	for name, body := range files {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	pkg, err := PackageGoModule("assets_1", dir)
	if err != nil {
		t.Fatal(err)
	}
	parsed, err := ccpackage.Parse(pkg)
	if err != nil {
		t.Fatal(err)
	}
	if md := parsed.Metadata; md.Type != "golang" || md.Label != "assets_1" || md.Path != "example.com/assets" {
		t.Fatalf("metadata = %+v", md)
	}
	wantFiles := []string{"src/META-INF/x.txt", "src/go.mod", "src/lib/lib.go", "src/main.go"}
	if !slices.Equal(parsed.CodeFiles, wantFiles) {
		t.Fatalf("code files = %v, want %v", parsed.CodeFiles, wantFiles)
	}
	again, err := PackageGoModule("assets_1", dir)
	if err != nil {
		t.Fatal(err)
	}
	id1, _ := PackageID(pkg)
	id2, _ := PackageID(again)
	if id1 != id2 || !strings.HasPrefix(id1, "assets_1:") {
		t.Fatalf("package IDs %s and %s: packaging is not deterministic", id1, id2)
	}

	if _, err := PackageGoModule("x", t.TempDir()); err == nil || !strings.Contains(err.Error(), "no go.mod") {
		t.Fatalf("packaging a folder without go.mod: %v", err)
	}
}

func TestPackageCCaaS(t *testing.T) {
	dir := t.TempDir()
	root := filepath.Join(dir, "ca.pem")
	if err := os.WriteFile(root, []byte("-----BEGIN CERTIFICATE-----\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	pkg, err := PackageCCaaS("svc_1", CCaaSOptions{Address: "127.0.0.1:9999", DialTimeout: "10s", RootCertFile: root})
	if err != nil {
		t.Fatal(err)
	}
	parsed, err := ccpackage.Parse(pkg)
	if err != nil {
		t.Fatal(err)
	}
	if parsed.Metadata.Type != "ccaas" || !slices.Equal(parsed.CodeFiles, []string{ccpackage.ConnectionFile}) {
		t.Fatalf("package = %+v %v", parsed.Metadata, parsed.CodeFiles)
	}
	if _, err := PackageCCaaS("svc_1", CCaaSOptions{Address: "a:1", ClientCertFile: root}); err == nil {
		t.Fatal("a client certificate without a key was accepted")
	}
	if _, err := PackageCCaaS("svc_1", CCaaSOptions{Address: "a:1", ClientCertFile: root, ClientKeyFile: root}); err == nil {
		t.Fatal("a client certificate without a server root was accepted")
	}
}

func TestConfigValidate(t *testing.T) {
	if _, err := New(Config{Orgs: []Org{{MSPID: "Org1MSP"}}}); err == nil {
		t.Fatal("config without a channel accepted")
	}
	if _, err := New(Config{Channel: "ch", Orgs: []Org{{MSPID: "Org1MSP"}}}); err == nil || !strings.Contains(err.Error(), "admin") {
		t.Fatalf("org without admin: %v", err)
	}
}
