package raftstore

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/cairn-ledger/cairn/internal/fsutil"
	"github.com/syndtr/goleveldb/leveldb"
	"github.com/syndtr/goleveldb/leveldb/util"
	pb "go.etcd.io/raft/v3/raftpb"
	"google.golang.org/protobuf/proto"
)

// The LevelDB layout of the stores written before the WAL: a format key, the
// hard state, the latest snapshot and one key per entry.
const legacyFormat = "cairn-raftstore-1"

var (
	legacyKeyVersion   = []byte("version")
	legacyKeyHardState = []byte("hardstate")
	legacyKeySnapshot  = []byte("snapshot")
	legacyPrefixEntry  = []byte("e/")
)

// legacy is the content of a LevelDB raft store and the files that held it.
type legacy struct {
	snap  *pb.Snapshot
	hs    *pb.HardState
	ents  []*pb.Entry // those after the snapshot
	dir   string
	files []string
}

// readLegacy reads the LevelDB raft store in dir, or returns nil when there
// is none (no CURRENT file).
func readLegacy(dir string) (*legacy, error) {
	if _, err := os.Stat(filepath.Join(dir, "CURRENT")); errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	// The files LevelDB holds now are the ones to delete once converted.
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	l := &legacy{snap: &pb.Snapshot{}, hs: &pb.HardState{}, dir: dir}
	for _, e := range entries {
		if e.Type().IsRegular() && isLevelDBFile(e.Name()) {
			l.files = append(l.files, e.Name())
		}
	}
	db, err := leveldb.OpenFile(dir, nil)
	if err != nil {
		return nil, err
	}
	defer db.Close()
	v, err := db.Get(legacyKeyVersion, nil)
	if err != nil {
		return nil, fmt.Errorf("format key: %w", err)
	}
	if string(v) != legacyFormat {
		return nil, fmt.Errorf("unsupported format %q (want %q)", v, legacyFormat)
	}
	if err := getProto(db, legacyKeySnapshot, l.snap); err != nil {
		return nil, fmt.Errorf("snapshot: %w", err)
	}
	if err := getProto(db, legacyKeyHardState, l.hs); err != nil {
		return nil, fmt.Errorf("hard state: %w", err)
	}
	snapIndex := l.snap.GetMetadata().GetIndex()
	it := db.NewIterator(util.BytesPrefix(legacyPrefixEntry), nil)
	defer it.Release()
	for it.Next() {
		e := &pb.Entry{}
		if err := proto.Unmarshal(it.Value(), e); err != nil {
			return nil, fmt.Errorf("decode entry %x: %w", it.Key(), err)
		}
		if e.GetIndex() > snapIndex {
			l.ents = append(l.ents, e)
		}
	}
	return l, it.Error()
}

// getProto decodes the value of key into m; a missing key leaves m empty.
func getProto(db *leveldb.DB, key []byte, m proto.Message) error {
	raw, err := db.Get(key, nil)
	if errors.Is(err, leveldb.ErrNotFound) {
		return nil
	}
	if err != nil {
		return err
	}
	return proto.Unmarshal(raw, m)
}

// isLevelDBFile reports whether name is one of goleveldb's files (and so
// not a snapshot or WAL file of a conversion that ran before).
func isLevelDBFile(name string) bool {
	switch {
	case name == "CURRENT", name == "LOCK", name == "LOG", name == "LOG.old",
		strings.HasPrefix(name, "CURRENT."), strings.HasPrefix(name, "MANIFEST-"):
		return true
	}
	ext := filepath.Ext(name)
	return (ext == ".log" || ext == ".ldb" || ext == ".sst" || ext == ".tmp") && strings.Trim(strings.TrimSuffix(name, ext), "0123456789") == ""
}

// remove deletes the converted LevelDB files: CURRENT first, durably, so that
// a crash part way leaves no store LevelDB would open (and no conversion to
// repeat), only files nothing reads.
func (l *legacy) remove() error {
	if err := os.Remove(filepath.Join(l.dir, "CURRENT")); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("remove converted LevelDB store: %w", err)
	}
	if err := fsutil.SyncDir(l.dir); err != nil {
		return err
	}
	for _, f := range l.files {
		if err := os.Remove(filepath.Join(l.dir, f)); err != nil && !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("remove converted LevelDB file: %w", err)
		}
	}
	return nil
}
