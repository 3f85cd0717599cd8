package ccpackage

import (
	"archive/tar"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestLocalName(t *testing.T) {
	for name, want := range map[string]bool{
		"src/main.go":       true,
		"metadata.json":     true,
		"a/../b":            true,
		"./src/x":           true,
		"..foo":             true,
		"":                  false,
		"/etc/passwd":       false,
		"..":                false,
		"../x":              false,
		"src/../../x":       false,
		"a\x00b":            false,
		"src/../../../root": false,
	} {
		if got := LocalName(name); got != want {
			t.Errorf("LocalName(%q) = %v, want %v", name, got, want)
		}
	}
}

// TestParseRejectsEscapingPaths covers path traversal and absolute names in
// both the outer package and code.tar.gz.
func TestParseRejectsEscapingPaths(t *testing.T) {
	md := entry{name: MetadataFile, data: []byte(`{"type":"golang","label":"a"}`)}
	code := func(e ...entry) entry { return entry{name: CodeFile, data: rawArchive(t, e...)} }
	ok := entry{name: "src/main.go", data: []byte("package main\n")}
	tests := []struct {
		name    string
		pkg     []byte
		wantErr string
	}{
		{"outer traversal", rawArchive(t, md, code(ok), entry{name: "../../evil", data: []byte("x")}), `"../../evil" has an absolute or escaping path`},
		{"outer absolute", rawArchive(t, entry{name: "/tmp/evil", data: []byte("x")}, md, code(ok)), `"/tmp/evil" has an absolute or escaping path`},
		{"code traversal", rawArchive(t, md, code(ok, entry{name: "src/../../x.go", data: []byte("x")})), "read code.tar.gz: tar entry \"src/../../x.go\" has an absolute or escaping path"},
		{"code absolute", rawArchive(t, md, code(entry{name: "/etc/cron.d/x", data: []byte("x")})), "has an absolute or escaping path"},
		{"code symlink", rawArchive(t, md, code(ok, entry{name: "src/link", typeflag: tar.TypeSymlink})), "read code.tar.gz: tar entry \"src/link\" is not a regular file"},
		{"code hardlink", rawArchive(t, md, code(ok, entry{name: "src/hard", typeflag: tar.TypeLink})), "is not a regular file"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse(tt.pkg)
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("Parse error = %v, want it to contain %q", err, tt.wantErr)
			}
		})
	}
}

func TestExtract(t *testing.T) {
	dst := t.TempDir()
	archive := rawArchive(t,
		entry{name: "src/", typeflag: tar.TypeDir},
		entry{name: "src/go.mod", data: []byte("module x\n")},
		entry{name: "src/cmd/main.go", data: []byte("package main\n")},
	)
	if err := Extract(archive, dst); err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile(filepath.Join(dst, "src", "cmd", "main.go"))
	if err != nil || string(got) != "package main\n" {
		t.Fatalf("extracted main.go = %q, %v", got, err)
	}
}

// TestExtractConfined checks that no hostile archive writes outside dst,
// including through a symlink already present under dst.
func TestExtractConfined(t *testing.T) {
	outside := t.TempDir()
	tests := []struct {
		name    string
		entries []entry
		wantErr string
	}{
		{"traversal", []entry{{name: "../escaped", data: []byte("x")}}, "absolute or escaping path"},
		{"deep traversal", []entry{{name: "a/../../escaped", data: []byte("x")}}, "absolute or escaping path"},
		{"absolute", []entry{{name: filepath.Join(outside, "escaped"), data: []byte("x")}}, "absolute or escaping path"},
		{"symlink entry", []entry{{name: "link", typeflag: tar.TypeSymlink}}, "not a regular file"},
		{"through planted symlink", []entry{{name: "planted/escaped", data: []byte("x")}}, "create"},
		{"duplicate file", []entry{{name: "f", data: []byte("1")}, {name: "f", data: []byte("2")}}, "create file"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dst := t.TempDir()
			if err := os.Symlink(outside, filepath.Join(dst, "planted")); err != nil {
				t.Fatal(err)
			}
			err := Extract(rawArchive(t, tt.entries...), dst)
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("Extract error = %v, want it to contain %q", err, tt.wantErr)
			}
			if left, _ := os.ReadDir(outside); len(left) != 0 {
				t.Fatalf("extraction wrote outside its folder: %v", left)
			}
		})
	}
}

func TestExtractLimits(t *testing.T) {
	bomb := rawArchive(t, entry{name: "big", data: make([]byte, 1<<20)})
	if err := extract(bomb, t.TempDir(), limits{size: 64 << 10, entries: 10}); err == nil || !strings.Contains(err.Error(), "decompresses to more than") {
		t.Fatalf("bomb: %v", err)
	}
	if err := Extract([]byte("not gzip"), t.TempDir()); err == nil || !strings.Contains(err.Error(), "not a gzip archive") {
		t.Fatalf("garbage: %v", err)
	}
}

func FuzzExtract(f *testing.F) {
	f.Add(rawArchive(f, entry{name: "src/a.go", data: []byte("package a")}))
	f.Add(rawArchive(f, entry{name: "../x", data: []byte("x")}))
	f.Add([]byte("garbage"))
	f.Fuzz(func(t *testing.T, data []byte) {
		parent := t.TempDir()
		dst := filepath.Join(parent, "dst")
		if err := os.Mkdir(dst, 0o700); err != nil {
			t.Fatal(err)
		}
		_ = extract(data, dst, limits{size: 1 << 20, entries: 100})
		if left, _ := os.ReadDir(parent); len(left) != 1 {
			t.Fatalf("extraction wrote beside its folder: %v", left)
		}
	})
}
