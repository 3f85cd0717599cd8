package lifecycle

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	lb "github.com/hyperledger/fabric-protos-go-apiv2/peer/lifecycle"
	"google.golang.org/protobuf/proto"
)

type tarEntry struct {
	name     string
	data     []byte
	typeflag byte
	link     string
}

func gzTar(t *testing.T, entries ...tarEntry) []byte {
	t.Helper()
	var buf bytes.Buffer
	gz := gzip.NewWriter(&buf)
	tw := tar.NewWriter(gz)
	for _, e := range entries {
		tf := e.typeflag
		if tf == 0 {
			tf = tar.TypeReg
		}
		hdr := &tar.Header{Name: e.name, Typeflag: tf, Mode: 0o644, Linkname: e.link}
		if tf == tar.TypeReg {
			hdr.Size = int64(len(e.data))
		}
		if err := tw.WriteHeader(hdr); err != nil {
			t.Fatal(err)
		}
		if tf == tar.TypeReg {
			if _, err := tw.Write(e.data); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	if err := gz.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// TestInstallMalformed: InstallChaincode refuses hostile or broken packages
// with an error naming the problem, and writes nothing, inside or outside
// the package store.
func TestInstallMalformed(t *testing.T) {
	md := tarEntry{name: "metadata.json", data: []byte(`{"type":"golang","label":"evil_1","path":"x"}`)}
	goodCode := gzTar(t, tarEntry{name: "src/main.go", data: []byte("package main\n")})
	code := func(entries ...tarEntry) tarEntry {
		return tarEntry{name: "code.tar.gz", data: gzTar(t, entries...)}
	}
	tests := []struct {
		name    string
		pkg     []byte
		wantErr string
	}{
		{"not gzip", []byte("PK\x03\x04 a zip file"), "not a gzip archive"},
		{"missing metadata", gzTar(t, tarEntry{name: "code.tar.gz", data: goodCode}), "missing metadata.json"},
		{"outer traversal", gzTar(t, md, tarEntry{name: "code.tar.gz", data: goodCode}, tarEntry{name: "../../escape.txt", data: []byte("x")}), "absolute or escaping path"},
		{"outer absolute", gzTar(t, tarEntry{name: "/tmp/escape.txt", data: []byte("x")}, md, tarEntry{name: "code.tar.gz", data: goodCode}), "absolute or escaping path"},
		{"outer symlink", gzTar(t, tarEntry{name: "link", typeflag: tar.TypeSymlink, link: "../../.."}, md, tarEntry{name: "code.tar.gz", data: goodCode}), "not a regular file"},
		{"code traversal", gzTar(t, md, code(tarEntry{name: "src/../../../escape.go", data: []byte("x")})), "absolute or escaping path"},
		{"code absolute", gzTar(t, md, code(tarEntry{name: "/etc/cron.d/evil", data: []byte("x")})), "absolute or escaping path"},
		{"code symlink escaping", gzTar(t, md, code(tarEntry{name: "src/link", typeflag: tar.TypeSymlink, link: "/etc"})), "not a regular file"},
		{"code not gzip", gzTar(t, md, tarEntry{name: "code.tar.gz", data: []byte("plain")}), "not a gzip archive"},
	}
	parent := t.TempDir()
	dir := filepath.Join(parent, "chaincodes")
	scc, err := New(Config{PackageDir: dir, MSPID: "Org1MSP"})
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			args, err := proto.Marshal(&lb.InstallChaincodeArgs{ChaincodeInstallPackage: tt.pkg})
			if err != nil {
				t.Fatal(err)
			}
			resp := scc.Invoke(context.Background(), Invocation{
				Args: [][]byte{[]byte(InstallChaincodeFuncName), args}, CreatorMSPID: "Org1MSP", CreatorIsAdmin: true,
			})
			if resp.Status == 200 || !strings.Contains(resp.Message, tt.wantErr) {
				t.Fatalf("install = %d %q, want a refusal containing %q", resp.Status, resp.Message, tt.wantErr)
			}
		})
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 0 {
		t.Fatalf("refused installs left %d files in the store", len(entries))
	}
	if entries, _ := os.ReadDir(parent); len(entries) != 1 {
		t.Fatalf("refused installs wrote beside the store: %d entries", len(entries))
	}
}

// TestInstalledPackage reads back an installed package for the builders.
func TestInstalledPackage(t *testing.T) {
	scc, err := New(Config{PackageDir: t.TempDir(), MSPID: "Org1MSP"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := scc.InstalledPackage("nope_1:" + strings.Repeat("a", 64)); err == nil || !strings.Contains(err.Error(), "not found") {
		t.Fatalf("missing package: %v", err)
	}
	if _, err := scc.InstalledPackage("../../etc/passwd"); err == nil {
		t.Fatal("escaping package ID accepted")
	}
}
