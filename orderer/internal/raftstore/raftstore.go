// Package raftstore owns the durable state of one raft node: hard state and
// log entries in etcd's segment WAL (go.etcd.io/etcd/server/v3/storage/wal),
// snapshots in files beside it, all mirrored in a raft.MemoryStorage that the
// raft library reads. Writes go to disk first and to memory after, so what
// raft reads was persisted.
//
// The WAL writes each entry once, appended to a preallocated segment; the
// LevelDB store it replaces wrote every entry twice (journal, then table) and
// spent a follower's CPU on memtables and deletions. A store left by that
// version is converted on open (see legacy.go).
//
// Layout of the directory: wal/ (segments, written by etcd's WAL) and
// <term>-<index>.snap files, the newest two kept: a snapshot file is written
// before its WAL record, and a crash between the two leaves the older one in
// force, whose segments are kept until a newer snapshot is in the WAL.
//
// A Store is used by one goroutine that writes (the chain's raft loop); raft
// reads the embedded MemoryStorage from that same goroutine, and
// MemoryStorage's own lock makes reads from elsewhere safe.
package raftstore

import (
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/cairn-ledger/cairn/internal/fsutil"
	"go.etcd.io/etcd/client/pkg/v3/fileutil"
	"go.etcd.io/etcd/server/v3/storage/wal"
	"go.etcd.io/etcd/server/v3/storage/wal/walpb"
	"go.etcd.io/raft/v3"
	pb "go.etcd.io/raft/v3/raftpb"
	"go.uber.org/zap"
	"google.golang.org/protobuf/proto"
)

const (
	walDir     = "wal"
	snapSuffix = ".snap"
	// keepSnaps snapshot files are kept, with the segments the oldest needs.
	keepSnaps = 2
)

var crcTable = crc32.MakeTable(crc32.Castagnoli)

// Store is a raft.Storage whose contents survive restarts.
type Store struct {
	*raft.MemoryStorage
	dir    string
	wal    *wal.WAL
	noSync bool
	fresh  bool
	// hardState is the last hard state saved. MemoryStorage.InitialState
	// reads its own unlocked, racing with snapshots taken on another
	// goroutine, so the chain asks HardState instead.
	hardState atomic.Pointer[pb.HardState]
	// uncached counts entry bytes persisted since the WAL's page cache was
	// last dropped; only Persist (one goroutine at a time) touches it.
	uncached int
	// snapMu serialises the snapshot bookkeeping (Save with a snapshot,
	// TakeSnapshot): the chain takes snapshots on its block writer goroutine.
	snapMu sync.Mutex
	// recorded are the snapshots whose files and WAL records this store
	// wrote or loaded, newest first; release keeps keepSnaps of them.
	recorded []snapFile
}

// Open opens or creates the store in dir. noSync skips fsync (tests only).
func Open(dir string, noSync bool) (*Store, error) {
	s, err := open(dir, noSync)
	if err != nil {
		return nil, fmt.Errorf("open raft store %s: %w", dir, err)
	}
	return s, nil
}

func open(dir string, noSync bool) (*Store, error) {
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return nil, err
	}
	s := &Store{MemoryStorage: raft.NewMemoryStorage(), dir: dir, noSync: noSync}
	wd := filepath.Join(dir, walDir)
	old, err := readLegacy(dir)
	if err != nil {
		return nil, fmt.Errorf("read the LevelDB raft store to convert: %w", err)
	}
	if old != nil {
		// LevelDB files are deleted only after a conversion completed, so a
		// WAL beside them is from one that did not: start it again.
		if err := os.RemoveAll(wd); err != nil {
			return nil, err
		}
	}
	if !wal.Exist(wd) {
		if err := s.create(wd, old); err != nil {
			return nil, err
		}
	}
	snap, err := s.newestSnapshot(wd)
	if err != nil {
		return nil, err
	}
	w, hs, ents, err := readWAL(wd, walSnapshot(snap))
	if err != nil {
		return nil, err
	}
	if noSync {
		w.SetUnsafeNoFsync()
	}
	s.wal = w
	if !raft.IsEmptySnap(snap) {
		if err := s.MemoryStorage.ApplySnapshot(snap); err != nil {
			w.Close()
			return nil, fmt.Errorf("load snapshot: %w", err)
		}
	}
	if len(ents) > 0 {
		if err := s.MemoryStorage.Append(ents); err != nil {
			w.Close()
			return nil, fmt.Errorf("load entries: %w", err)
		}
	}
	if !raft.IsEmptyHardState(hs) {
		if err := s.MemoryStorage.SetHardState(hs); err != nil {
			w.Close()
			return nil, err
		}
		s.hardState.Store(hs)
	}
	if !raft.IsEmptySnap(snap) {
		md := snap.GetMetadata()
		s.recorded = []snapFile{{name: snapName(md.GetTerm(), md.GetIndex()), term: md.GetTerm(), index: md.GetIndex()}}
	}
	// Fresh means nothing was ever persisted, not merely that the WAL was
	// created now: a node that crashed right after creating it has still
	// never been part of its group.
	s.fresh = raft.IsEmptySnap(snap) && len(ents) == 0 && raft.IsEmptyHardState(hs)
	return s, nil
}

// readWAL opens the WAL in wd from snapshot snap and reads it. A record torn
// by a crash at the tail is cut off (etcd's wal.Repair) and the read done
// again, as etcd does: the record was never synced, so raft never counted
// on it.
func readWAL(wd string, snap *walpb.Snapshot) (*wal.WAL, *pb.HardState, []*pb.Entry, error) {
	lg := zap.NewNop()
	for repaired := false; ; repaired = true {
		w, err := wal.Open(lg, wd, snap)
		if err != nil {
			return nil, nil, nil, fmt.Errorf("open wal: %w", err)
		}
		_, hs, ents, err := w.ReadAll()
		if err == nil {
			return w, hs, ents, nil
		}
		w.Close()
		if repaired || !errors.Is(err, io.ErrUnexpectedEOF) || !wal.Repair(lg, wd) {
			return nil, nil, nil, fmt.Errorf("read wal: %w", err)
		}
	}
}

// create makes a WAL in wd, empty or holding the converted content of a
// LevelDB store (old, when not nil), whose files it then deletes.
func (s *Store) create(wd string, old *legacy) error {
	w, err := wal.Create(zap.NewNop(), wd, nil)
	if err != nil {
		return fmt.Errorf("create wal: %w", err)
	}
	if s.noSync {
		w.SetUnsafeNoFsync()
	}
	if old == nil {
		return w.Close()
	}
	s.wal = w
	if !raft.IsEmptySnap(old.snap) {
		if err := s.saveSnapshot(old.snap); err != nil {
			w.Close()
			return err
		}
	}
	if err := w.Save(old.hs, old.ents); err != nil {
		w.Close()
		return err
	}
	if err := w.Close(); err != nil {
		return err
	}
	s.wal = nil
	return old.remove()
}

// Fresh reports whether the store held nothing when opened: the node has never
// run and must bootstrap its group.
func (s *Store) Fresh() bool { return s.fresh }

// Close syncs and releases the WAL.
func (s *Store) Close() error { return s.wal.Close() }

// Save persists what a raft Ready asks to persist — snapshot, then entries
// and hard state — and then makes it visible to raft. The WAL syncs when raft
// needs it on disk (raft.MustSync: entries, a new term or vote); a hard state
// that only moves the commit index is written without fsync, as etcd does: a
// commit index lost in a machine crash is learned again from the leader.
// Entries that replace a tail of the log (a new leader's) are appended; the
// WAL keeps the newest entry of each index when read back.
func (s *Store) Save(hs *pb.HardState, ents []*pb.Entry, snap *pb.Snapshot) error {
	hasSnap := snap != nil && !raft.IsEmptySnap(snap)
	if hasSnap {
		s.snapMu.Lock()
		defer s.snapMu.Unlock()
		if err := s.saveSnapshot(snap); err != nil {
			return err
		}
	}
	if err := s.Persist(hs, ents); err != nil {
		return err
	}
	if hasSnap {
		// The hard state that commits the snapshot must be durable before
		// anything acts on it: without it the snapshot's WAL record is not
		// valid at the next start, which would then go back to an older
		// snapshot the leader already counted this node past.
		if err := s.wal.Sync(); err != nil {
			return fmt.Errorf("persist raft state: %w", err)
		}
		if err := s.MemoryStorage.ApplySnapshot(snap); err != nil {
			return fmt.Errorf("apply snapshot: %w", err)
		}
		if err := s.release(); err != nil {
			return err
		}
	}
	return s.Remember(hs, ents)
}

// Persist writes a Ready's hard state and entries to the WAL and syncs it,
// leaving the in-memory log alone; Remember then adds them to it. Split from
// Save so the chain can write on another goroutine while raft goes on: Persist
// may run concurrently with the raft.Storage methods, TakeSnapshot and
// Compact, but not with Save or another Persist.
func (s *Store) Persist(hs *pb.HardState, ents []*pb.Entry) error {
	if err := s.wal.Save(hs, ents); err != nil {
		return fmt.Errorf("persist raft state: %w", err)
	}
	for _, e := range ents {
		s.uncached += len(e.Data)
	}
	if s.uncached >= dropCacheEvery {
		s.uncached = 0
		s.dropWALCache()
	}
	return nil
}

// dropCacheEvery is how many bytes of entries are written between two
// evictions of the WAL's page cache.
const dropCacheEvery = 8 << 20

// dropWALCache evicts the cached pages of the WAL segments: raft reads its
// log from memory and reads the WAL only at start, so the pages would only
// hold fresh memory (see fsutil.DropCache). Failures only cost memory.
func (s *Store) dropWALCache() {
	wd := filepath.Join(s.dir, walDir)
	names, err := filepath.Glob(filepath.Join(wd, "*.wal"))
	if err != nil {
		return
	}
	for _, name := range names {
		f, err := os.Open(name)
		if err != nil {
			continue // purged meanwhile
		}
		_ = fsutil.DropCache(f, 0, 0)
		_ = f.Close()
	}
}

// Remember adds entries and a hard state that Persist wrote to the in-memory
// log raft reads.
func (s *Store) Remember(hs *pb.HardState, ents []*pb.Entry) error {
	if len(ents) > 0 {
		if err := s.MemoryStorage.Append(ents); err != nil {
			return fmt.Errorf("append entries: %w", err)
		}
	}
	if hs != nil && !raft.IsEmptyHardState(hs) {
		if err := s.MemoryStorage.SetHardState(hs); err != nil {
			return err
		}
		s.hardState.Store(hs)
	}
	return nil
}

// HardState is the last hard state saved or loaded (empty for a fresh
// store). It is safe to call while another goroutine takes a snapshot.
func (s *Store) HardState() *pb.HardState {
	if hs := s.hardState.Load(); hs != nil {
		return hs
	}
	return &pb.HardState{}
}

// TakeSnapshot records a snapshot at applied index i carrying data (the chain
// stores the last block) and compacts the log in memory, keeping up to keep
// entries before i so slightly lagging followers catch up from the log
// instead of the snapshot. WAL segments older than the oldest kept snapshot
// are deleted.
func (s *Store) TakeSnapshot(i uint64, cs *pb.ConfState, data []byte, keep uint64) error {
	s.snapMu.Lock()
	defer s.snapMu.Unlock()
	snap, err := s.MemoryStorage.CreateSnapshot(i, cs, data)
	if err != nil {
		return fmt.Errorf("create snapshot at %d: %w", i, err)
	}
	if err := s.saveSnapshot(snap); err != nil {
		return err
	}
	if i > keep {
		if err := s.MemoryStorage.Compact(i - keep); err != nil && !errors.Is(err, raft.ErrCompacted) {
			return fmt.Errorf("compact log to %d: %w", i-keep, err)
		}
	}
	return s.release()
}

// Compact drops the log entries up to index i from memory; i must not pass the
// stored snapshot (a restart loads the log from the snapshot on, so the WAL
// needs no change). The leader uses it to make raft send a snapshot to a
// follower that lost its log.
func (s *Store) Compact(i uint64) error {
	snap, err := s.MemoryStorage.Snapshot()
	if err != nil {
		return err
	}
	if si := snap.GetMetadata().GetIndex(); i > si {
		return fmt.Errorf("compact to %d: past the snapshot at %d", i, si)
	}
	if err := s.MemoryStorage.Compact(i); err != nil && !errors.Is(err, raft.ErrCompacted) {
		return fmt.Errorf("compact log to %d: %w", i, err)
	}
	return nil
}

// saveSnapshot writes snap to its file, then its record to the WAL (which
// syncs), in that order: a WAL record always has its file.
func (s *Store) saveSnapshot(snap *pb.Snapshot) error {
	raw, err := proto.Marshal(snap)
	if err != nil {
		return fmt.Errorf("encode snapshot: %w", err)
	}
	md := snap.GetMetadata()
	buf := crc32.New(crcTable)
	buf.Write(raw)
	body := append(buf.Sum(nil), raw...)
	name := filepath.Join(s.dir, snapName(md.GetTerm(), md.GetIndex()))
	if err := fsutil.WriteFileAtomic(name, body, 0o600, !s.noSync, ""); err != nil {
		return fmt.Errorf("write snapshot %d: %w", md.GetIndex(), err)
	}
	if err := s.wal.SaveSnapshot(walSnapshot(snap)); err != nil {
		return fmt.Errorf("record snapshot %d in the wal: %w", md.GetIndex(), err)
	}
	f := snapFile{name: filepath.Base(name), term: md.GetTerm(), index: md.GetIndex()}
	s.recorded = slices.DeleteFunc(s.recorded, func(r snapFile) bool { return r.name == f.name })
	s.recorded = append([]snapFile{f}, s.recorded...)
	return nil
}

// release keeps the newest keepSnaps recorded snapshots, deletes every
// other snapshot file (older ones, and files a crash left without their WAL
// record), and the WAL segments only older snapshots needed.
func (s *Store) release() error {
	if len(s.recorded) > keepSnaps {
		s.recorded = s.recorded[:keepSnaps]
	}
	files, err := s.snapFiles()
	if err != nil {
		return err
	}
	for _, f := range files {
		if !slices.ContainsFunc(s.recorded, func(r snapFile) bool { return r.name == f.name }) {
			if err := os.Remove(filepath.Join(s.dir, f.name)); err != nil {
				return fmt.Errorf("remove old snapshot: %w", err)
			}
		}
	}
	if len(s.recorded) == 0 {
		return nil
	}
	if err := s.wal.ReleaseLockTo(s.recorded[len(s.recorded)-1].index); err != nil {
		return fmt.Errorf("release wal segments: %w", err)
	}
	return purgeSegments(filepath.Join(s.dir, walDir))
}

// purgeSegments deletes the WAL segments the WAL no longer holds locked,
// oldest first, as etcd's own purge does; the newest segment always stays.
func purgeSegments(wd string) error {
	entries, err := os.ReadDir(wd)
	if err != nil {
		return err
	}
	var segs []string
	for _, e := range entries {
		if strings.HasSuffix(e.Name(), ".wal") {
			segs = append(segs, e.Name())
		}
	}
	slices.Sort(segs) // names are <seq>-<index>.wal in fixed-width hex
	for _, name := range segs[:max(0, len(segs)-1)] {
		path := filepath.Join(wd, name)
		l, err := fileutil.TryLockFile(path, os.O_WRONLY, fileutil.PrivateFileMode)
		if err != nil {
			return nil // still held by the WAL, as are all newer ones
		}
		err = os.Remove(path)
		l.Close()
		if err != nil {
			return fmt.Errorf("remove wal segment: %w", err)
		}
	}
	return nil
}

type snapFile struct {
	name        string
	term, index uint64
}

func snapName(term, index uint64) string {
	return fmt.Sprintf("%016x-%016x%s", term, index, snapSuffix)
}

// snapFiles lists the snapshot files, newest (highest index) first.
func (s *Store) snapFiles() ([]snapFile, error) {
	entries, err := os.ReadDir(s.dir)
	if err != nil {
		return nil, err
	}
	var out []snapFile
	for _, e := range entries {
		var f snapFile
		if _, err := fmt.Sscanf(e.Name(), "%016x-%016x"+snapSuffix, &f.term, &f.index); err != nil || snapName(f.term, f.index) != e.Name() {
			continue
		}
		f.name = e.Name()
		out = append(out, f)
	}
	slices.SortFunc(out, func(a, b snapFile) int {
		if a.index != b.index {
			return cmpUint(b.index, a.index)
		}
		return cmpUint(b.term, a.term)
	})
	return out, nil
}

func cmpUint(a, b uint64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// newestSnapshot returns the newest snapshot whose file is intact and whose
// record the WAL holds as valid (at or below its committed index), or an
// empty snapshot when there is none yet.
func (s *Store) newestSnapshot(wd string) (*pb.Snapshot, error) {
	valid, err := wal.ValidSnapshotEntries(zap.NewNop(), wd)
	if err != nil {
		return nil, fmt.Errorf("read wal snapshot records: %w", err)
	}
	files, err := s.snapFiles()
	if err != nil {
		return nil, err
	}
	for _, f := range files {
		if !slices.ContainsFunc(valid, func(w *walpb.Snapshot) bool {
			return w.GetIndex() == f.index && w.GetTerm() == f.term
		}) {
			continue
		}
		snap, err := readSnapshot(filepath.Join(s.dir, f.name))
		if err != nil {
			continue // torn or damaged: an older one is still in force
		}
		return snap, nil
	}
	return &pb.Snapshot{}, nil
}

func readSnapshot(path string) (*pb.Snapshot, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	if len(b) < 4 {
		return nil, errors.New("snapshot file too short")
	}
	sum, raw := b[:4], b[4:]
	h := crc32.New(crcTable)
	h.Write(raw)
	if string(h.Sum(nil)) != string(sum) {
		return nil, errors.New("snapshot file checksum mismatch")
	}
	snap := &pb.Snapshot{}
	if err := proto.Unmarshal(raw, snap); err != nil {
		return nil, fmt.Errorf("decode snapshot: %w", err)
	}
	return snap, nil
}

// walSnapshot is the WAL's record of snap (index 0 for none).
func walSnapshot(snap *pb.Snapshot) *walpb.Snapshot {
	md := snap.GetMetadata()
	w := &walpb.Snapshot{Index: new(md.GetIndex()), Term: new(md.GetTerm())}
	if md.GetIndex() > 0 {
		w.ConfState = md.GetConfState()
	}
	return w
}
