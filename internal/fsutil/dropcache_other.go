//go:build !linux

package fsutil

import "os"

// DropCache does nothing where posix_fadvise is not available to Go.
func DropCache(f *os.File, off, n int64) error { return nil }
