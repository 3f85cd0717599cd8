package ccpackage

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"io"
	"strings"
	"testing"
	"testing/fstest"

	"github.com/cairn-ledger/cairn/chaincode/basic"
)

type entry struct {
	name     string
	data     []byte
	typeflag byte
}

// rawArchive builds a gzipped tar without Write's validation, to make bad packages.
func rawArchive(t testing.TB, entries ...entry) []byte {
	t.Helper()
	var buf bytes.Buffer
	gz := gzip.NewWriter(&buf)
	tw := tar.NewWriter(gz)
	for _, e := range entries {
		tf := e.typeflag
		if tf == 0 {
			tf = tar.TypeReg
		}
		hdr := &tar.Header{Name: e.name, Typeflag: tf, Mode: 0o644}
		if tf == tar.TypeReg {
			hdr.Size = int64(len(e.data))
		}
		if tf == tar.TypeSymlink {
			hdr.Linkname = "/etc/passwd"
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

func validCode(t testing.TB) []byte {
	return rawArchive(t, entry{name: "src/main.go", data: []byte("package main\n")})
}

func TestGolangRoundTrip(t *testing.T) {
	pkg, err := Golang("basic_1.0", "github.com/cairn-ledger/cairn/chaincode/basic/cmd/basic", basic.Source())
	if err != nil {
		t.Fatal(err)
	}
	again, err := Golang("basic_1.0", "github.com/cairn-ledger/cairn/chaincode/basic/cmd/basic", basic.Source())
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(pkg, again) {
		t.Fatal("packaging the same source twice gave different bytes")
	}
	p, err := Parse(pkg)
	if err != nil {
		t.Fatal(err)
	}
	want := Metadata{Path: "github.com/cairn-ledger/cairn/chaincode/basic/cmd/basic", Type: "golang", Label: "basic_1.0"}
	if p.Metadata != want {
		t.Fatalf("metadata = %+v, want %+v", p.Metadata, want)
	}
	for _, f := range []string{"src/contract.go", "src/cmd/basic/main.go"} {
		if !contains(p.CodeFiles, f) {
			t.Errorf("code.tar.gz lacks %s (has %v)", f, p.CodeFiles)
		}
	}
}

func TestMetadataJSON(t *testing.T) {
	b, err := json.Marshal(Metadata{Path: "p", Type: "golang", Label: "basic_1.0"})
	if err != nil {
		t.Fatal(err)
	}
	if got, want := string(b), `{"path":"p","type":"golang","label":"basic_1.0"}`; got != want {
		t.Fatalf("metadata.json = %s, want %s", got, want)
	}
}

func TestCCaaS(t *testing.T) {
	pkg, err := CCaaS("basic_1.0", Connection{Address: "basic.example.com:9999", DialTimeout: "10s"})
	if err != nil {
		t.Fatal(err)
	}
	p, err := Parse(pkg)
	if err != nil {
		t.Fatal(err)
	}
	if p.Metadata.Type != "ccaas" || len(p.CodeFiles) != 1 || p.CodeFiles[0] != ConnectionFile {
		t.Fatalf("parsed %+v files %v", p.Metadata, p.CodeFiles)
	}
	if _, err := CCaaS("basic_1.0", Connection{}); err == nil {
		t.Fatal("CCaaS accepted an empty address")
	}
}

func TestPackageID(t *testing.T) {
	pkg := []byte("any bytes")
	sum := sha256.Sum256(pkg)
	if got, want := PackageID("basic_1.0", pkg), "basic_1.0:"+hex.EncodeToString(sum[:]); got != want {
		t.Fatalf("PackageID = %s, want %s", got, want)
	}
}

func TestValidateLabel(t *testing.T) {
	tests := []struct {
		label string
		ok    bool
	}{
		{"basic_1.0", true},
		{"a", true},
		{"A+b-c.d_e", true},
		{"", false},
		{"_basic", false},
		{".basic", false},
		{"basic 1", false},
		{"basic:1", false},
		{"bäsic", false},
	}
	for _, tt := range tests {
		if err := ValidateLabel(tt.label); (err == nil) != tt.ok {
			t.Errorf("ValidateLabel(%q) = %v, want ok=%v", tt.label, err, tt.ok)
		}
	}
}

func TestParseRejects(t *testing.T) {
	md := func(s string) entry { return entry{name: MetadataFile, data: []byte(s)} }
	code := func() entry { return entry{name: CodeFile, data: validCode(t)} }
	valid := rawArchive(t, md(`{"type":"golang","label":"basic_1.0","path":"x"}`), code())

	tests := []struct {
		name    string
		pkg     []byte
		wantErr string
	}{
		{"empty input", nil, "not a gzip archive"},
		{"garbage", []byte("definitely not a package"), "not a gzip archive"},
		{"truncated gzip", valid[:len(valid)/2], "corrupt tar archive"},
		{"gzip of garbage", gzipBytes(t, []byte(strings.Repeat("x", 1000))), "corrupt tar archive"},
		{"empty tar", rawArchive(t), "empty tar archive"},
		{"no metadata", rawArchive(t, code()), "missing metadata.json"},
		{"no code", rawArchive(t, md(`{"type":"golang","label":"basic_1.0"}`)), "missing code.tar.gz"},
		{"bad metadata json", rawArchive(t, md(`{"type":`), code()), "decode metadata.json"},
		{"no type", rawArchive(t, md(`{"label":"basic_1.0"}`), code()), "has no type"},
		{"bad label", rawArchive(t, md(`{"type":"golang","label":"-x"}`), code()), "invalid label"},
		{"two metadata", rawArchive(t, md(`{"type":"golang","label":"a"}`), md(`{"type":"golang","label":"b"}`), code()), "more than one metadata.json"},
		{"two code", rawArchive(t, md(`{"type":"golang","label":"a"}`), code(), code()), "more than one code.tar.gz"},
		{"symlink", rawArchive(t, entry{name: "evil", typeflag: tar.TypeSymlink}, md(`{"type":"golang","label":"a"}`), code()), "not a regular file"},
		{"code not gzip", rawArchive(t, md(`{"type":"golang","label":"a"}`), entry{name: CodeFile, data: []byte("nope")}), "read code.tar.gz: not a gzip archive"},
		{"ccaas without connection", rawArchive(t, md(`{"type":"ccaas","label":"a"}`), code()), "has no connection.json"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse(tt.pkg)
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("Parse error = %v, want it to contain %q", err, tt.wantErr)
			}
		})
	}
	if _, err := Parse(valid); err != nil {
		t.Fatalf("valid package rejected: %v", err)
	}
}

func gzipBytes(t testing.TB, data []byte) []byte {
	var buf bytes.Buffer
	gz := gzip.NewWriter(&buf)
	gz.Write(data)
	if err := gz.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func TestParseLimits(t *testing.T) {
	md := entry{name: MetadataFile, data: []byte(`{"type":"golang","label":"a"}`)}
	bomb := rawArchive(t, md, entry{name: CodeFile, data: make([]byte, 1<<20)})
	if len(bomb) > 8<<10 {
		t.Fatalf("test bomb is %d bytes compressed; expected a high ratio", len(bomb))
	}
	if _, err := parse(bomb, limits{size: 64 << 10, entries: 100}); err == nil || !strings.Contains(err.Error(), "decompresses to more than") {
		t.Fatalf("size limit: %v", err)
	}
	many := []entry{md, {name: CodeFile, data: validCode(t)}}
	for i := 0; i < 20; i++ {
		many = append(many, entry{name: "junk", data: []byte("x")})
	}
	if _, err := parse(rawArchive(t, many...), limits{size: 1 << 20, entries: 10}); err == nil || !strings.Contains(err.Error(), "more than 10 entries") {
		t.Fatalf("entry limit: %v", err)
	}
}

func TestCodeArchive(t *testing.T) {
	src := fstest.MapFS{
		"go.mod":         {Data: []byte("module x\n")},
		"b/b.go":         {Data: []byte("package b\n")},
		"a.go":           {Data: []byte("package x\n")},
		"META-INF/x.txt": {Data: []byte("idx")},
	}
	code, err := CodeArchive(src, "src")
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	err = walkArchive(code, limits{size: 1 << 20, entries: 100}, func(name string, r io.Reader) error {
		names = append(names, name)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"src/META-INF/x.txt", "src/a.go", "src/b/b.go", "src/go.mod"}
	if strings.Join(names, ",") != strings.Join(want, ",") {
		t.Fatalf("entries = %v, want %v", names, want)
	}
	if _, err := CodeArchive(fstest.MapFS{}, "src"); err == nil {
		t.Fatal("empty source accepted")
	}
}

func FuzzParse(f *testing.F) {
	valid, err := Golang("basic_1.0", "example.com/cc", fstest.MapFS{"main.go": {Data: []byte("package main\n")}})
	if err != nil {
		f.Fatal(err)
	}
	ccaas, err := CCaaS("svc_1", Connection{Address: "h:1"})
	if err != nil {
		f.Fatal(err)
	}
	f.Add(valid)
	f.Add(ccaas)
	for _, n := range []int{0, 1, 10, 18, len(valid) / 2, len(valid) - 8, len(valid) - 1} {
		f.Add(valid[:n])
	}
	f.Add([]byte("garbage"))
	f.Fuzz(func(t *testing.T, pkg []byte) {
		p, err := parse(pkg, limits{size: 4 << 20, entries: 1000})
		if err != nil {
			return
		}
		if ValidateLabel(p.Metadata.Label) != nil || p.Metadata.Type == "" {
			t.Fatalf("accepted invalid metadata %+v", p.Metadata)
		}
	})
}
