// Package ccpackage reads and writes Fabric 2.x chaincode packages: the
// gzipped tar that `peer lifecycle chaincode package` produces and
// `peer lifecycle chaincode install` accepts. The outer archive holds
// metadata.json ({"path","type","label"}) and code.tar.gz; for Go, Node and
// Java chaincode code.tar.gz holds the source under src/ (and any META-INF
// under META-INF/), for type ccaas it holds connection.json.
//
// Archives are written deterministically (fixed modes, owner 500:500 and
// zero timestamps, as Fabric's CLI does) so the same input always yields the
// same package ID. Parse treats its input as untrusted: it never panics, and
// it bounds the decompressed size and the number of entries so a hostile
// package cannot exhaust memory. Entries with absolute or escaping names
// ("/etc/x", "../x") and entries other than files and directories (links,
// devices) are refused at both archive levels, and Extract unpacks
// code.tar.gz for a builder without ever writing outside its target folder.
//
// The package holds no state; all functions are safe for concurrent use.
package ccpackage

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"time"
)

// File names inside a package.
const (
	MetadataFile   = "metadata.json"
	CodeFile       = "code.tar.gz"
	ConnectionFile = "connection.json"
)

// Limits applied by Parse. They are far above any real chaincode (Fabric's
// own gRPC limit caps an install at 100 MiB compressed) and exist to stop
// decompression bombs.
const (
	// MaxUncompressedSize bounds the decompressed bytes of each archive level.
	MaxUncompressedSize = 512 << 20
	// MaxEntries bounds the number of tar entries of each archive level.
	MaxEntries = 100_000
	// maxMetadataSize bounds metadata.json.
	maxMetadataSize = 1 << 20
)

// labelPattern is Fabric's rule for package labels (core/chaincode/persistence).
var labelPattern = regexp.MustCompile(`^[[:alnum:]][[:alnum:]_.+-]*$`)

// Metadata is metadata.json. Field order matches what the peer CLI writes.
type Metadata struct {
	Path  string `json:"path,omitempty"`
	Type  string `json:"type"`
	Label string `json:"label"`
}

// Package is a parsed chaincode package.
type Package struct {
	Metadata Metadata
	// Code is code.tar.gz exactly as found in the package.
	Code []byte
	// CodeFiles lists the regular files inside code.tar.gz, in archive order.
	CodeFiles []string
}

// Connection is connection.json of a ccaas package: how the peer reaches a
// chaincode running as an external service.
type Connection struct {
	Address            string `json:"address"`
	DialTimeout        string `json:"dial_timeout,omitempty"`
	TLSRequired        bool   `json:"tls_required"`
	ClientAuthRequired bool   `json:"client_auth_required,omitempty"`
	ClientKey          string `json:"client_key,omitempty"`
	ClientCert         string `json:"client_cert,omitempty"`
	RootCert           string `json:"root_cert,omitempty"`
}

// ValidateLabel checks a label against Fabric's rule.
func ValidateLabel(label string) error {
	if !labelPattern.MatchString(label) {
		return fmt.Errorf("invalid label %q: label must be non-empty, can only consist of alphanumerics, symbols from '.+-_', and can only begin with alphanumerics", label)
	}
	return nil
}

// PackageID is the ID the peer gives an installed package: label, colon, and
// the lowercase hex SHA-256 of the whole package file.
func PackageID(label string, pkg []byte) string {
	sum := sha256.Sum256(pkg)
	return label + ":" + hex.EncodeToString(sum[:])
}

// Write assembles a package from its metadata and code.tar.gz bytes.
func Write(md Metadata, code []byte) ([]byte, error) {
	if err := ValidateLabel(md.Label); err != nil {
		return nil, err
	}
	if md.Type == "" {
		return nil, errors.New("chaincode type must be set")
	}
	mdJSON, err := json.Marshal(md)
	if err != nil {
		return nil, fmt.Errorf("encode %s: %w", MetadataFile, err)
	}
	return writeArchive([]archiveFile{
		{name: MetadataFile, data: mdJSON},
		{name: CodeFile, data: code},
	})
}

// Golang builds a package of Go chaincode: src is laid out under src/ in
// code.tar.gz (as the peer CLI does for a module), and importPath is
// recorded as metadata.json's path. src should hold go.mod (and go.sum) at its
// root for Fabric's builder to build it in module mode.
func Golang(label, importPath string, src fs.FS) ([]byte, error) {
	code, err := CodeArchive(src, "src")
	if err != nil {
		return nil, err
	}
	return Write(Metadata{Path: importPath, Type: "golang", Label: label}, code)
}

// CCaaS builds a chaincode-as-a-service package, whose code.tar.gz holds only
// connection.json.
func CCaaS(label string, conn Connection) ([]byte, error) {
	if conn.Address == "" {
		return nil, errors.New("ccaas connection address must be set")
	}
	connJSON, err := json.Marshal(conn)
	if err != nil {
		return nil, fmt.Errorf("encode %s: %w", ConnectionFile, err)
	}
	code, err := writeArchive([]archiveFile{{name: ConnectionFile, data: connJSON}})
	if err != nil {
		return nil, err
	}
	return Write(Metadata{Type: "ccaas", Label: label}, code)
}

// CodeArchive returns a gzipped tar of every regular file in src, each named
// prefix/<path>, sorted by path so the output is deterministic.
func CodeArchive(src fs.FS, prefix string) ([]byte, error) {
	var files []archiveFile
	err := fs.WalkDir(src, ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !d.Type().IsRegular() {
			return nil
		}
		data, err := fs.ReadFile(src, p)
		if err != nil {
			return err
		}
		files = append(files, archiveFile{name: path.Join(prefix, p), data: data})
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("collect chaincode source: %w", err)
	}
	if len(files) == 0 {
		return nil, errors.New("chaincode source holds no files")
	}
	sort.Slice(files, func(i, j int) bool { return files[i].name < files[j].name })
	return writeArchive(files)
}

type archiveFile struct {
	name string
	data []byte
}

func writeArchive(files []archiveFile) ([]byte, error) {
	var buf bytes.Buffer
	gz := gzip.NewWriter(&buf)
	tw := tar.NewWriter(gz)
	for _, f := range files {
		hdr := &tar.Header{
			Typeflag: tar.TypeReg,
			Name:     f.name,
			Size:     int64(len(f.data)),
			Mode:     0o100644,
			Uid:      500,
			Gid:      500,
			ModTime:  time.Unix(0, 0),
		}
		if err := tw.WriteHeader(hdr); err != nil {
			return nil, fmt.Errorf("write tar header %s: %w", f.name, err)
		}
		if _, err := tw.Write(f.data); err != nil {
			return nil, fmt.Errorf("write tar entry %s: %w", f.name, err)
		}
	}
	if err := tw.Close(); err != nil {
		return nil, fmt.Errorf("close tar: %w", err)
	}
	if err := gz.Close(); err != nil {
		return nil, fmt.Errorf("close gzip: %w", err)
	}
	return buf.Bytes(), nil
}

// limits bounds each archive level Parse reads; tests shrink them.
type limits struct {
	size    int64
	entries int
}

// Parse validates a chaincode package and returns its contents.
func Parse(pkg []byte) (*Package, error) {
	return parse(pkg, limits{size: MaxUncompressedSize, entries: MaxEntries})
}

func parse(pkg []byte, lim limits) (*Package, error) {
	var (
		md       *Metadata
		code     []byte
		haveCode bool
	)
	err := walkArchive(pkg, lim, func(name string, r io.Reader) error {
		switch name {
		case MetadataFile:
			if md != nil {
				return fmt.Errorf("found more than one %s", MetadataFile)
			}
			data, err := io.ReadAll(io.LimitReader(r, maxMetadataSize+1))
			if err != nil {
				return err
			}
			if len(data) > maxMetadataSize {
				return fmt.Errorf("%s is larger than %d bytes", MetadataFile, maxMetadataSize)
			}
			md = &Metadata{}
			if err := json.Unmarshal(data, md); err != nil {
				return fmt.Errorf("decode %s: %w", MetadataFile, err)
			}
		case CodeFile:
			if haveCode {
				return fmt.Errorf("found more than one %s", CodeFile)
			}
			data, err := io.ReadAll(r)
			if err != nil {
				return err
			}
			code, haveCode = data, true
		default:
			// Fabric's peer tolerates (and ignores) other top-level files.
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("read chaincode package: %w", err)
	}
	if md == nil {
		return nil, fmt.Errorf("invalid chaincode package: missing %s", MetadataFile)
	}
	if md.Type == "" {
		return nil, fmt.Errorf("invalid chaincode package: %s has no type", MetadataFile)
	}
	if err := ValidateLabel(md.Label); err != nil {
		return nil, fmt.Errorf("invalid chaincode package: %w", err)
	}
	if !haveCode {
		return nil, fmt.Errorf("invalid chaincode package: missing %s", CodeFile)
	}
	var codeFiles []string
	err = walkArchive(code, lim, func(name string, r io.Reader) error {
		codeFiles = append(codeFiles, name)
		_, err := io.Copy(io.Discard, r)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("invalid chaincode package: read %s: %w", CodeFile, err)
	}
	if strings.EqualFold(md.Type, "ccaas") && !contains(codeFiles, ConnectionFile) {
		return nil, fmt.Errorf("invalid chaincode package: ccaas %s has no %s", CodeFile, ConnectionFile)
	}
	return &Package{Metadata: *md, Code: code, CodeFiles: codeFiles}, nil
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}

// walkArchive calls fn for each regular file of a gzipped tar, enforcing the
// size and entry limits. Directories are skipped; any other entry type
// (links, devices) is rejected as Fabric does.
func walkArchive(data []byte, lim limits, fn func(name string, r io.Reader) error) error {
	gz, err := gzip.NewReader(bytes.NewReader(data))
	if err != nil {
		return fmt.Errorf("not a gzip archive: %w", err)
	}
	defer gz.Close()
	// One byte over the limit tells "exactly at the limit" from "over it".
	limited := &io.LimitedReader{R: gz, N: lim.size + 1}
	tr := tar.NewReader(limited)
	for entries := 0; ; entries++ {
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			if entries == 0 {
				return errors.New("empty tar archive")
			}
			return nil
		}
		if err != nil {
			if limited.N <= 0 {
				return fmt.Errorf("archive decompresses to more than %d bytes", lim.size)
			}
			return fmt.Errorf("corrupt tar archive: %w", err)
		}
		if entries >= lim.entries {
			return fmt.Errorf("archive has more than %d entries", lim.entries)
		}
		if !LocalName(hdr.Name) {
			return fmt.Errorf("tar entry %q has an absolute or escaping path", hdr.Name)
		}
		switch hdr.Typeflag {
		case tar.TypeDir:
			continue
		case tar.TypeReg:
		default:
			return fmt.Errorf("tar entry %q is not a regular file (type %q)", hdr.Name, hdr.Typeflag)
		}
		if err := fn(hdr.Name, tr); err != nil {
			if limited.N <= 0 {
				return fmt.Errorf("archive decompresses to more than %d bytes", lim.size)
			}
			return fmt.Errorf("tar entry %q: %w", hdr.Name, err)
		}
		if limited.N <= 0 {
			return fmt.Errorf("archive decompresses to more than %d bytes", lim.size)
		}
	}
}

// LocalName reports whether an archive entry name stays inside the directory
// it is extracted to: relative, no ".." element that climbs out, no NUL.
// Fabric's builders apply the same rule (externalbuilder.ValidPath).
func LocalName(name string) bool {
	if name == "" || strings.ContainsRune(name, 0) || strings.HasPrefix(name, "/") {
		return false
	}
	return filepath.IsLocal(filepath.FromSlash(path.Clean(name)))
}

// Extract writes the regular files and directories of a gzipped tar (a
// package's code.tar.gz) under dst, which must exist. Extraction is confined
// to dst: besides refusing absolute and escaping names and every entry type
// other than files and directories, it opens dst as an os.Root, so nothing
// already under dst (say a symlink planted by an earlier step) can redirect a
// write outside it. The same size and entry limits as Parse apply.
// Executable bits of files are kept; other permissions are the owner's only.
func Extract(archive []byte, dst string) error {
	return extract(archive, dst, limits{size: MaxUncompressedSize, entries: MaxEntries})
}

func extract(archive []byte, dst string, lim limits) error {
	root, err := os.OpenRoot(dst)
	if err != nil {
		return fmt.Errorf("open extraction directory: %w", err)
	}
	defer root.Close()
	gz, err := gzip.NewReader(bytes.NewReader(archive))
	if err != nil {
		return fmt.Errorf("not a gzip archive: %w", err)
	}
	defer gz.Close()
	limited := &io.LimitedReader{R: gz, N: lim.size + 1}
	tr := tar.NewReader(limited)
	for entries := 0; ; entries++ {
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			if limited.N <= 0 {
				return fmt.Errorf("archive decompresses to more than %d bytes", lim.size)
			}
			return fmt.Errorf("corrupt tar archive: %w", err)
		}
		if entries >= lim.entries {
			return fmt.Errorf("archive has more than %d entries", lim.entries)
		}
		if !LocalName(hdr.Name) {
			return fmt.Errorf("tar entry %q has an absolute or escaping path", hdr.Name)
		}
		name := path.Clean(hdr.Name)
		switch hdr.Typeflag {
		case tar.TypeDir:
			if name == "." {
				continue
			}
			if err := root.MkdirAll(name, 0o700); err != nil {
				return fmt.Errorf("create directory %q: %w", hdr.Name, err)
			}
			continue
		case tar.TypeReg:
		default:
			return fmt.Errorf("tar entry %q is not a regular file (type %q)", hdr.Name, hdr.Typeflag)
		}
		if dir := path.Dir(name); dir != "." {
			if err := root.MkdirAll(dir, 0o700); err != nil {
				return fmt.Errorf("create directory for %q: %w", hdr.Name, err)
			}
		}
		mode := os.FileMode(0o600)
		if hdr.Mode&0o111 != 0 {
			mode = 0o700
		}
		f, err := root.OpenFile(name, os.O_CREATE|os.O_EXCL|os.O_WRONLY, mode)
		if err != nil {
			return fmt.Errorf("create file %q: %w", hdr.Name, err)
		}
		_, cerr := io.Copy(f, tr)
		if err := f.Close(); err != nil && cerr == nil {
			cerr = err
		}
		if limited.N <= 0 {
			return fmt.Errorf("archive decompresses to more than %d bytes", lim.size)
		}
		if cerr != nil {
			return fmt.Errorf("write file %q: %w", hdr.Name, cerr)
		}
	}
}
