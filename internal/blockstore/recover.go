package blockstore

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/syndtr/goleveldb/leveldb"
	lerrors "github.com/syndtr/goleveldb/leveldb/errors"
	"github.com/syndtr/goleveldb/leveldb/filter"
	"github.com/syndtr/goleveldb/leveldb/opt"
	"github.com/syndtr/goleveldb/leveldb/util"

	"github.com/cairn-ledger/cairn/internal/block"
	"github.com/cairn-ledger/cairn/internal/fsutil"
)

// On-disk layout of Dir:
//
//	VERSION        formatVersion, written once when the store is created
//	blk00000000    segment files of records (see record.go), numbered from 0
//	blk00000001    ...
//	index/         LevelDB index (see index.go), rebuildable from the segments
const (
	versionFile   = "VERSION"
	formatVersion = "cairn-blockstore 1"
	indexDirName  = "index"
	segmentPrefix = "blk"
	segmentDigits = 8
	// reindexBatch is how many recovered blocks go into one index write.
	reindexBatch = 256
)

func segmentName(i int) string { return fmt.Sprintf("%s%0*d", segmentPrefix, segmentDigits, i) }

// open brings the directory to a consistent state and loads the writer state.
// It runs before s is shared, so it needs no locks for itself.
func (s *Store) open() error {
	dir := s.cfg.Dir
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("create dir: %w", err)
	}
	if err := checkVersion(dir); err != nil {
		return err
	}
	// The index's LevelDB lock also keeps a second process out of the segment
	// files, so it is taken before anything is repaired.
	db, err := openIndex(filepath.Join(dir, indexDirName), !s.cfg.NoTxIndex)
	if err != nil {
		return err
	}
	s.db = db
	segs, err := openSegments(dir)
	s.segs = segs
	if err != nil {
		return err
	}
	if s.cfg.DeferSync && len(s.segs) > 0 {
		if err := s.cutUnsyncedDamage(); err != nil {
			return err
		}
	}
	if len(s.segs) == 0 {
		f, err := os.OpenFile(s.segmentPath(0), os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o644)
		if err != nil {
			return fmt.Errorf("create segment 0: %w", err)
		}
		s.segs = append(s.segs, f)
		if err := fsutil.SyncDir(dir); err != nil {
			return err
		}
	}
	return s.recover()
}

// cutUnsyncedDamage checks every record of the last segment of a DeferSync
// store. Appends since its last Sync may reach the disk in any order in a
// machine crash, so a damaged record there can be followed by intact ones
// (which recover would take for damage in the middle) and the index can name
// blocks whose pages were lost. Everything from the first damaged record on
// is cut, and the index is rebuilt from the segments; the blocks cut come
// back from the raft log, as for a torn tail. Earlier segments were synced
// when the next one started.
func (s *Store) cutUnsyncedDamage() error {
	seg := len(s.segs) - 1
	f := s.segs[seg]
	fi, err := f.Stat()
	if err != nil {
		return fmt.Errorf("stat segment %d: %w", seg, err)
	}
	size := fi.Size()
	off := int64(0)
	for off < size {
		_, next, rerr := readRecord(f, off, size)
		if rerr != nil {
			if !isRecordDamage(rerr) {
				return fmt.Errorf("segment %d: %w", seg, rerr)
			}
			break
		}
		off = next
	}
	if off == size {
		return nil
	}
	if err := f.Truncate(off); err != nil {
		return fmt.Errorf("cut unsynced damage of segment %d at %d: %w", seg, off, err)
	}
	if err := f.Sync(); err != nil {
		return fmt.Errorf("cut unsynced damage of segment %d: %w", seg, err)
	}
	indexDir := filepath.Join(s.cfg.Dir, indexDirName)
	if err := s.db.Close(); err != nil {
		return fmt.Errorf("close index to rebuild it: %w", err)
	}
	if err := os.RemoveAll(indexDir); err != nil {
		return fmt.Errorf("remove index to rebuild it: %w", err)
	}
	db, err := openIndex(indexDir, !s.cfg.NoTxIndex)
	if err != nil {
		return err
	}
	s.db = db
	return nil
}

// checkVersion checks the VERSION file, writing it if the directory is new.
func checkVersion(dir string) error {
	path := filepath.Join(dir, versionFile)
	got, err := os.ReadFile(path)
	if err == nil {
		if v := strings.TrimSpace(string(got)); v != formatVersion {
			if len(v) > 64 {
				v = v[:64]
			}
			return fmt.Errorf("%w: %s says %q, this build reads %q", ErrVersion, path, v, formatVersion)
		}
		return nil
	}
	if !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("read %s: %w", path, err)
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		return fmt.Errorf("list dir: %w", err)
	}
	for _, e := range entries {
		if e.Name() != versionFile+".tmp" {
			return fmt.Errorf("%w: %s has no %s file but holds %s", ErrVersion, dir, versionFile, e.Name())
		}
	}
	tmp := path + ".tmp"
	if err := writeFileSync(tmp, []byte(formatVersion+"\n")); err != nil {
		return err
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("install %s: %w", path, err)
	}
	return fsutil.SyncDir(dir)
}

func writeFileSync(path string, data []byte) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if _, err := f.Write(data); err != nil {
		_ = f.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := f.Sync(); err != nil {
		_ = f.Close()
		return fmt.Errorf("sync %s: %w", path, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("close %s: %w", path, err)
	}
	return nil
}

// openIndex opens the LevelDB index. A corrupt index is discarded and rebuilt
// from the segments rather than failing the node: it holds nothing else. So is
// an index built with the other tx-ID mode (Config.NoTxIndex), so that an
// index always holds the tx IDs of every block or of none.
func openIndex(path string, txIndex bool) (*leveldb.DB, error) {
	db, err := openIndexDB(path)
	if err != nil {
		return nil, err
	}
	mode, err := indexTxMode(db)
	if err != nil {
		_ = db.Close()
		return nil, err
	}
	switch mode {
	case txMode(txIndex):
		return db, nil
	case "":
		if err := db.Put(keyTxMode, []byte(txMode(txIndex)), nil); err != nil {
			_ = db.Close()
			return nil, fmt.Errorf("write index tx-ID mode: %w", err)
		}
		return db, nil
	}
	if err := db.Close(); err != nil {
		return nil, fmt.Errorf("close index built with tx-ID mode %q: %w", mode, err)
	}
	if err := os.RemoveAll(path); err != nil {
		return nil, fmt.Errorf("discard index built with tx-ID mode %q: %w", mode, err)
	}
	if db, err = openIndexDB(path); err != nil {
		return nil, err
	}
	if err := db.Put(keyTxMode, []byte(txMode(txIndex)), nil); err != nil {
		_ = db.Close()
		return nil, fmt.Errorf("write index tx-ID mode: %w", err)
	}
	return db, nil
}

// txMode is the value of keyTxMode for an index with or without tx IDs.
func txMode(txIndex bool) string {
	if txIndex {
		return txModeIndexed
	}
	return txModeNone
}

// indexTxMode reads an open index's tx-ID mode: "" for an empty index, and
// txModeIndexed for an index written before the mode was recorded (which
// always indexed tx IDs).
func indexTxMode(db *leveldb.DB) (string, error) {
	v, err := db.Get(keyTxMode, nil)
	switch {
	case err == nil:
		return string(v), nil
	case !errors.Is(err, leveldb.ErrNotFound):
		return "", fmt.Errorf("read index tx-ID mode: %w", err)
	}
	if _, err := db.Get(keyHeight, nil); errors.Is(err, leveldb.ErrNotFound) {
		return "", nil
	} else if err != nil {
		return "", fmt.Errorf("read index height: %w", err)
	}
	return txModeIndexed, nil
}

// openIndexDB opens (creating if absent) the LevelDB index and checks its
// version.
func openIndexDB(path string) (*leveldb.DB, error) {
	o := &opt.Options{Filter: filter.NewBloomFilter(10)}
	db, err := leveldb.OpenFile(path, o)
	if lerrors.IsCorrupted(err) {
		if rerr := os.RemoveAll(path); rerr != nil {
			return nil, fmt.Errorf("discard corrupt index (%v): %w", err, rerr)
		}
		db, err = leveldb.OpenFile(path, o)
	}
	if err != nil {
		return nil, fmt.Errorf("open index: %w", err)
	}
	v, err := db.Get(keyIndexVersion, nil)
	switch {
	case errors.Is(err, leveldb.ErrNotFound):
		it := db.NewIterator(nil, nil)
		empty := !it.First()
		it.Release()
		if !empty {
			_ = db.Close()
			return nil, fmt.Errorf("%w: index at %s has no version key", ErrVersion, path)
		}
		if err := db.Put(keyIndexVersion, []byte(indexVersion), nil); err != nil {
			_ = db.Close()
			return nil, fmt.Errorf("write index version: %w", err)
		}
	case err != nil:
		_ = db.Close()
		return nil, fmt.Errorf("read index version: %w", err)
	case string(v) != indexVersion:
		_ = db.Close()
		return nil, fmt.Errorf("%w: index at %s has version %q, this build reads %q", ErrVersion, path, v, indexVersion)
	}
	return db, nil
}

// openSegments opens every segment file, which must be numbered 0..k without
// gaps. It returns what it opened even on error, for the caller to close.
func openSegments(dir string) ([]*os.File, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("list dir: %w", err)
	}
	var nums []int
	for _, e := range entries {
		rest, ok := strings.CutPrefix(e.Name(), segmentPrefix)
		if !ok || len(rest) != segmentDigits || e.IsDir() {
			continue
		}
		n, err := strconv.Atoi(rest)
		if err != nil || n < 0 {
			continue
		}
		nums = append(nums, n)
	}
	// os.ReadDir sorts by name and the names are zero-padded, so nums is sorted.
	var segs []*os.File
	for i, n := range nums {
		if n != i {
			return segs, fmt.Errorf("%w: segment %d is missing (found %s)", ErrCorrupt, i, segmentName(n))
		}
		f, err := os.OpenFile(filepath.Join(dir, segmentName(n)), os.O_RDWR, 0)
		if err != nil {
			return segs, fmt.Errorf("open segment %d: %w", n, err)
		}
		segs = append(segs, f)
	}
	return segs, nil
}

// recover finds the last indexed block that is really on disk, drops index
// entries for anything beyond it, then scans the segments forward from there,
// indexing complete blocks and truncating a torn tail.
func (s *Store) recover() error {
	indexed, err := s.indexedHeight()
	if err != nil {
		return err
	}
	var (
		height uint64
		seg    int
		off    int64
		prev   []byte
	)
	// Walk back from the index's last block to one whose record checks out.
	// Normally the first try succeeds; the index is only ahead of the files if
	// they lost a synced tail (NoSync and a machine crash, or a truncation).
	for n := indexed; n > 0; n-- {
		loc, ok, err := s.indexedLocation(n - 1)
		if err != nil {
			return err
		}
		if !ok || int(loc.seg) >= len(s.segs) {
			continue
		}
		b, err := readBlockAt(s.segs[loc.seg], loc, n-1)
		if err != nil {
			continue
		}
		height, seg, off, prev = n, int(loc.seg), loc.end(), block.HeaderHash(b.Header)
		break
	}
	if indexed > height {
		if err := s.dropIndexFrom(height); err != nil {
			return err
		}
	}

	batch := new(leveldb.Batch)
	pending := map[string]struct{}{}
	flush := func() error {
		if batch.Len() == 0 {
			return nil
		}
		if err := s.db.Write(batch, nil); err != nil {
			return fmt.Errorf("write index: %w", err)
		}
		batch.Reset()
		clear(pending)
		return nil
	}
	var curSize int64
	for ; seg < len(s.segs); seg, off = seg+1, 0 {
		f := s.segs[seg]
		fi, err := f.Stat()
		if err != nil {
			return fmt.Errorf("stat segment %d: %w", seg, err)
		}
		size := fi.Size()
		for off < size {
			payload, next, rerr := readRecord(f, off, size)
			if rerr != nil {
				if !isRecordDamage(rerr) {
					return fmt.Errorf("segment %d: %w", seg, rerr)
				}
				if err := s.truncateTail(seg, off, size, rerr); err != nil {
					return err
				}
				size = off
				break
			}
			b, err := block.Unmarshal(payload)
			if err != nil {
				return fmt.Errorf("%w: segment %d offset %d: checksummed record is not a block: %v", ErrCorrupt, seg, off, err)
			}
			if b.Header.Number != height {
				return fmt.Errorf("%w: segment %d offset %d holds block %d where block %d belongs", ErrCorrupt, seg, off, b.Header.Number, height)
			}
			if height > 0 && !bytes.Equal(b.Header.PreviousHash, prev) {
				return fmt.Errorf("%w: segment %d offset %d: block %d does not chain to block %d", ErrCorrupt, seg, off, height, height-1)
			}
			hash := block.HeaderHash(b.Header)
			loc := location{seg: uint32(seg), off: off, length: uint32(len(payload))}
			if err := s.indexBlock(batch, pending, b, hash, loc); err != nil {
				return err
			}
			height, prev, off = height+1, hash, next
			if height%reindexBatch == 0 {
				if err := flush(); err != nil {
					return err
				}
			}
		}
		curSize = size
	}
	if err := flush(); err != nil {
		return err
	}
	s.curSize = curSize
	s.lastHash = prev
	s.height.Store(height)
	return nil
}

func isRecordDamage(err error) bool {
	return errors.Is(err, errIncomplete) || errors.Is(err, errChecksum) || errors.Is(err, errTooLarge)
}

// truncateTail cuts segment seg at off, where a damaged record starts, if that
// record is the torn tail of the store; if anything valid follows it, the
// damage is in the middle and is reported instead.
func (s *Store) truncateTail(seg int, off, size int64, rerr error) error {
	f := s.segs[seg]
	if errors.Is(rerr, errChecksum) {
		// The length prefix fit in the file; a crash mid-write cannot leave a
		// checksummed record after the torn one.
		var hdr [recordHeaderSize]byte
		if _, err := f.ReadAt(hdr[:], off); err != nil {
			return fmt.Errorf("segment %d: read record header at %d: %w", seg, off, err)
		}
		next := off + recordHeaderSize + int64(binary.LittleEndian.Uint32(hdr[0:4]))
		if _, _, err := readRecord(f, next, size); err == nil {
			return fmt.Errorf("%w: segment %d offset %d: damaged record followed by a valid one: %v", ErrCorrupt, seg, off, rerr)
		}
	}
	for i := seg + 1; i < len(s.segs); i++ {
		fi, err := s.segs[i].Stat()
		if err != nil {
			return fmt.Errorf("stat segment %d: %w", i, err)
		}
		if fi.Size() > 0 {
			return fmt.Errorf("%w: segment %d offset %d: damaged record followed by segment %d: %v", ErrCorrupt, seg, off, i, rerr)
		}
	}
	if err := f.Truncate(off); err != nil {
		return fmt.Errorf("truncate torn tail of segment %d at %d: %w", seg, off, err)
	}
	if err := f.Sync(); err != nil {
		return fmt.Errorf("sync segment %d: %w", seg, err)
	}
	// Empty segments after the torn record were created by a roll whose first
	// append never landed; appends go to seg again.
	for i := len(s.segs) - 1; i > seg; i-- {
		_ = s.segs[i].Close()
		if err := os.Remove(s.segmentPath(i)); err != nil {
			return fmt.Errorf("remove empty segment %d: %w", i, err)
		}
		s.segs = s.segs[:i]
	}
	return fsutil.SyncDir(s.cfg.Dir)
}

func (s *Store) indexedHeight() (uint64, error) {
	v, err := s.db.Get(keyHeight, nil)
	if errors.Is(err, leveldb.ErrNotFound) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("read index height: %w", err)
	}
	h, err := decodeUint64(v)
	if err != nil {
		// A garbled height only costs a full rescan.
		return 0, nil
	}
	return h, nil
}

// indexedLocation returns the index's location for block n; ok is false if
// the entry is missing or unreadable.
func (s *Store) indexedLocation(n uint64) (location, bool, error) {
	v, err := s.db.Get(numberKey(n), nil)
	if errors.Is(err, leveldb.ErrNotFound) {
		return location{}, false, nil
	}
	if err != nil {
		return location{}, false, fmt.Errorf("read index: %w", err)
	}
	loc, err := decodeLocation(v)
	if err != nil {
		return location{}, false, nil
	}
	return loc, true, nil
}

// dropIndexFrom deletes every index entry for blocks >= height, so blocks
// appended again at those numbers are indexed afresh (and a tx ID of a lost
// block does not shadow a later first occurrence).
func (s *Store) dropIndexFrom(height uint64) error {
	batch := new(leveldb.Batch)
	it := s.db.NewIterator(util.BytesPrefix([]byte{prefixNumber}), nil)
	for ok := it.Seek(numberKey(height)); ok; ok = it.Next() {
		batch.Delete(bytes.Clone(it.Key()))
	}
	it.Release()
	if err := it.Error(); err != nil {
		return fmt.Errorf("scan index: %w", err)
	}
	dropIf := func(prefix byte, num func(v []byte) (uint64, error)) error {
		it := s.db.NewIterator(util.BytesPrefix([]byte{prefix}), nil)
		defer it.Release()
		for it.Next() {
			n, err := num(it.Value())
			if err != nil || n >= height {
				batch.Delete(bytes.Clone(it.Key()))
			}
		}
		if err := it.Error(); err != nil {
			return fmt.Errorf("scan index: %w", err)
		}
		return nil
	}
	if err := dropIf(prefixHash, decodeUint64); err != nil {
		return err
	}
	if err := dropIf(prefixTx, func(v []byte) (uint64, error) {
		n, _, err := decodeTxValue(v)
		return n, err
	}); err != nil {
		return err
	}
	batch.Put(keyHeight, encodeUint64(height))
	if err := s.db.Write(batch, nil); err != nil {
		return fmt.Errorf("drop stale index entries: %w", err)
	}
	return nil
}
