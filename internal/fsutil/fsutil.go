// Package fsutil owns the few file-system steps that make a write durable and
// atomic: write to a temporary file, sync it, rename it into place, sync the
// directory. Stores of every role use it for their small state files. It also
// lets append-only stores give back the page cache of data they synced.
package fsutil

import (
	"fmt"
	"os"
	"path/filepath"
)

// WriteFileAtomic replaces path with data: readers see the old content or
// the new, never a part. With sync, the content and the rename are on disk
// when it returns; without (tests), only atomicity holds. The data is first
// written to a temporary file in the same directory named by tempPattern
// (os.CreateTemp's pattern; "" means ".NAME.tmp*"), which a store that
// cleans up after crashes can recognise.
func WriteFileAtomic(path string, data []byte, perm os.FileMode, sync bool, tempPattern string) (err error) {
	dir, name := filepath.Dir(path), filepath.Base(path)
	if tempPattern == "" {
		tempPattern = "." + name + ".tmp*"
	}
	f, err := os.CreateTemp(dir, tempPattern)
	if err != nil {
		return fmt.Errorf("create temporary file for %s: %w", name, err)
	}
	tmp := f.Name()
	defer func() {
		if err != nil {
			_ = f.Close()
			_ = os.Remove(tmp)
		}
	}()
	if _, err = f.Write(data); err != nil {
		return fmt.Errorf("write %s: %w", name, err)
	}
	if err = f.Chmod(perm); err != nil {
		return fmt.Errorf("chmod %s: %w", name, err)
	}
	if sync {
		if err = f.Sync(); err != nil {
			return fmt.Errorf("sync %s: %w", name, err)
		}
	}
	if err = f.Close(); err != nil {
		return fmt.Errorf("close %s: %w", name, err)
	}
	if err = os.Rename(tmp, path); err != nil {
		return fmt.Errorf("rename %s into place: %w", name, err)
	}
	if !sync {
		return nil
	}
	return SyncDir(dir)
}

// SyncDir makes the creations, renames and removals in dir durable.
func SyncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("sync dir: %w", err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("sync dir %s: %w", dir, err)
	}
	return nil
}
