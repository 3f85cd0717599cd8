package fsutil

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"
	"unsafe"

	"golang.org/x/sys/unix"
)

// resident counts the pages of f that are in the page cache.
func resident(t *testing.T, f *os.File, size int) int {
	t.Helper()
	m, err := unix.Mmap(int(f.Fd()), 0, size, unix.PROT_READ, unix.MAP_SHARED)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Munmap(m)
	vec := make([]byte, (size+os.Getpagesize()-1)/os.Getpagesize())
	if _, _, e := unix.Syscall(unix.SYS_MINCORE, uintptr(unsafe.Pointer(&m[0])), uintptr(len(m)), uintptr(unsafe.Pointer(&vec[0]))); e != 0 {
		t.Fatal(e)
	}
	n := 0
	for _, v := range vec {
		n += int(v & 1)
	}
	return n
}

// TestDropCacheEvictsSyncedPages: after DropCache the synced range leaves the
// page cache (the rest stays) and the data reads back unchanged.
func TestDropCacheEvictsSyncedPages(t *testing.T) {
	const size = 4 << 20
	path := filepath.Join(t.TempDir(), "segment")
	data := bytes.Repeat([]byte("cairn-block-data"), size/16)
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.Write(data); err != nil {
		t.Fatal(err)
	}
	if err := f.Sync(); err != nil {
		t.Fatal(err)
	}
	before := resident(t, f, size)
	if err := DropCache(f, 0, size/2); err != nil {
		t.Fatal(err)
	}
	after := resident(t, f, size)
	var st unix.Statfs_t
	if err := unix.Fstatfs(int(f.Fd()), &st); err != nil {
		t.Fatal(err)
	}
	if st.Type != unix.TMPFS_MAGIC { // tmpfs pages cannot be dropped
		pages := size / os.Getpagesize()
		if before < pages/2 || after > before-pages/2+pages/16 {
			t.Fatalf("resident pages %d before and %d after dropping the first half of %d", before, after, pages)
		}
	}
	got, err := os.ReadFile(path)
	if err != nil || !bytes.Equal(got, data) {
		t.Fatalf("data changed after DropCache (%v)", err)
	}
}
