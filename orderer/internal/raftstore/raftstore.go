// Package raftstore owns the durable state of one raft node: hard state, log
// entries and the latest snapshot, kept in a LevelDB database and mirrored in a
// raft.MemoryStorage that the raft library reads. Writes go to disk first (one
// atomic batch, synced unless it only moves the commit index) and to memory
// after, so what raft reads was persisted.
//
// A Store is used by one goroutine that writes (the chain's raft loop); raft
// reads the embedded MemoryStorage from that same goroutine, and MemoryStorage's
// own lock makes reads from elsewhere safe.
package raftstore

import (
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/syndtr/goleveldb/leveldb"
	"github.com/syndtr/goleveldb/leveldb/opt"
	"github.com/syndtr/goleveldb/leveldb/util"
	"go.etcd.io/raft/v3"
	pb "go.etcd.io/raft/v3/raftpb"
	"google.golang.org/protobuf/proto"
)

// formatVersion is written at creation and checked at open, so a later layout
// change is refused clearly instead of misread.
const formatVersion = "cairn-raftstore-1"

var (
	keyVersion   = []byte("version")
	keyHardState = []byte("hardstate")
	keySnapshot  = []byte("snapshot")
	prefixEntry  = []byte("e/")
)

// Store is a raft.Storage whose contents survive restarts.
type Store struct {
	*raft.MemoryStorage
	db    *leveldb.DB
	write *opt.WriteOptions // synced unless Open's noSync
	// lazy is for writes raft does not need on disk before it goes on.
	lazy  *opt.WriteOptions
	fresh bool
}

// dbOptions tune LevelDB for what the store holds: log entries of whole
// blocks (up to megabytes each, of signed and so incompressible data) that
// are written once, read only at restart, and deleted a few snapshots later.
// A write buffer of many entries means fewer, larger memtable flushes (an
// entry deleted before its memtable is flushed is still written once, but
// compacted away at the first level), and no compression saves the CPU
// snappy would spend finding nothing to compress.
func dbOptions() *opt.Options {
	return &opt.Options{
		WriteBuffer:            32 << 20,
		CompactionTableSize:    16 << 20,
		Compression:            opt.NoCompression,
		DisableSeeksCompaction: true,
	}
}

// Open opens or creates the store in dir. noSync skips fsync (tests only).
func Open(dir string, noSync bool) (*Store, error) {
	db, err := leveldb.OpenFile(dir, dbOptions())
	if err != nil {
		return nil, fmt.Errorf("open raft store %s: %w", dir, err)
	}
	s := &Store{MemoryStorage: raft.NewMemoryStorage(), db: db, write: &opt.WriteOptions{Sync: !noSync}, lazy: &opt.WriteOptions{}}
	if err := s.load(); err != nil {
		db.Close()
		return nil, fmt.Errorf("open raft store %s: %w", dir, err)
	}
	return s, nil
}

// Fresh reports whether the store held nothing when opened: the node has never
// run and must bootstrap its group.
func (s *Store) Fresh() bool { return s.fresh }

// Close releases the database.
func (s *Store) Close() error { return s.db.Close() }

func (s *Store) load() error {
	v, err := s.db.Get(keyVersion, nil)
	switch {
	case errors.Is(err, leveldb.ErrNotFound):
		s.fresh = true
		return s.db.Put(keyVersion, []byte(formatVersion), s.write)
	case err != nil:
		return err
	case string(v) != formatVersion:
		return fmt.Errorf("unsupported format %q (want %q)", v, formatVersion)
	}

	var snapIndex uint64
	if raw, err := s.db.Get(keySnapshot, nil); err == nil {
		snap := &pb.Snapshot{}
		if err := proto.Unmarshal(raw, snap); err != nil {
			return fmt.Errorf("decode snapshot: %w", err)
		}
		if err := s.MemoryStorage.ApplySnapshot(snap); err != nil {
			return fmt.Errorf("load snapshot: %w", err)
		}
		snapIndex = snap.GetMetadata().GetIndex()
	} else if !errors.Is(err, leveldb.ErrNotFound) {
		return err
	}

	it := s.db.NewIterator(util.BytesPrefix(prefixEntry), nil)
	var ents []*pb.Entry
	for it.Next() {
		e := &pb.Entry{}
		if err := proto.Unmarshal(it.Value(), e); err != nil {
			it.Release()
			return fmt.Errorf("decode entry %x: %w", it.Key(), err)
		}
		if e.GetIndex() > snapIndex {
			ents = append(ents, e)
		}
	}
	it.Release()
	if err := it.Error(); err != nil {
		return err
	}
	if len(ents) > 0 {
		if err := s.MemoryStorage.Append(ents); err != nil {
			return fmt.Errorf("load entries: %w", err)
		}
	}

	if raw, err := s.db.Get(keyHardState, nil); err == nil {
		hs := &pb.HardState{}
		if err := proto.Unmarshal(raw, hs); err != nil {
			return fmt.Errorf("decode hard state: %w", err)
		}
		if err := s.MemoryStorage.SetHardState(hs); err != nil {
			return err
		}
	} else if !errors.Is(err, leveldb.ErrNotFound) {
		return err
	}
	return nil
}

func entryKey(i uint64) []byte {
	k := make([]byte, len(prefixEntry)+8)
	copy(k, prefixEntry)
	binary.BigEndian.PutUint64(k[len(prefixEntry):], i)
	return k
}

// Save persists what a raft Ready asks to persist — snapshot, then entries, then
// hard state — in one atomic batch, then makes it visible to raft. The batch
// is synced when raft needs it on disk (raft.MustSync: entries, a snapshot, or
// a new term or vote); a hard state that only moves the commit index is
// written without fsync, as etcd does: a commit index lost in a machine crash
// is learned again from the leader, and the next synced write makes it
// durable anyway.
func (s *Store) Save(hs *pb.HardState, ents []*pb.Entry, snap *pb.Snapshot) error {
	prev, _, err := s.MemoryStorage.InitialState()
	if err != nil {
		return err
	}
	batch := new(leveldb.Batch)
	hasSnap := snap != nil && !raft.IsEmptySnap(snap)
	if hasSnap {
		raw, err := proto.Marshal(snap)
		if err != nil {
			return fmt.Errorf("encode snapshot: %w", err)
		}
		batch.Put(keySnapshot, raw)
		// A received snapshot replaces the whole log.
		s.deleteEntries(batch, 0, ^uint64(0))
	}
	if len(ents) > 0 {
		last, err := s.MemoryStorage.LastIndex()
		if err != nil {
			return err
		}
		newLast := ents[len(ents)-1].GetIndex()
		for _, e := range ents {
			raw, err := proto.Marshal(e)
			if err != nil {
				return fmt.Errorf("encode entry %d: %w", e.GetIndex(), err)
			}
			batch.Put(entryKey(e.GetIndex()), raw)
		}
		// Entries past the new tail were overwritten by a new leader's log.
		if last > newLast {
			s.deleteEntries(batch, newLast+1, last)
		}
	}
	if hs != nil && !raft.IsEmptyHardState(hs) {
		raw, err := proto.Marshal(hs)
		if err != nil {
			return fmt.Errorf("encode hard state: %w", err)
		}
		batch.Put(keyHardState, raw)
	}
	if batch.Len() == 0 {
		return nil
	}
	write := s.write
	if !hasSnap && !raft.MustSync(hs, prev, len(ents)) {
		write = s.lazy
	}
	if err := s.db.Write(batch, write); err != nil {
		return fmt.Errorf("persist raft state: %w", err)
	}
	if hasSnap {
		if err := s.MemoryStorage.ApplySnapshot(snap); err != nil {
			return fmt.Errorf("apply snapshot: %w", err)
		}
	}
	if len(ents) > 0 {
		if err := s.MemoryStorage.Append(ents); err != nil {
			return fmt.Errorf("append entries: %w", err)
		}
	}
	if hs != nil && !raft.IsEmptyHardState(hs) {
		if err := s.MemoryStorage.SetHardState(hs); err != nil {
			return err
		}
	}
	return nil
}

func (s *Store) deleteEntries(batch *leveldb.Batch, from, to uint64) {
	it := s.db.NewIterator(&util.Range{Start: entryKey(from), Limit: append(entryKey(to), 0)}, nil)
	defer it.Release()
	for it.Next() {
		batch.Delete(append([]byte(nil), it.Key()...))
	}
}

// TakeSnapshot records a snapshot at applied index i carrying data (the chain
// stores the last block) and compacts the log, keeping up to keep entries before i
// so slightly lagging followers catch up from the log instead of the snapshot.
func (s *Store) TakeSnapshot(i uint64, cs *pb.ConfState, data []byte, keep uint64) error {
	snap, err := s.MemoryStorage.CreateSnapshot(i, cs, data)
	if err != nil {
		return fmt.Errorf("create snapshot at %d: %w", i, err)
	}
	raw, err := proto.Marshal(snap)
	if err != nil {
		return fmt.Errorf("encode snapshot: %w", err)
	}
	compact := uint64(0)
	if i > keep {
		compact = i - keep
	}
	batch := new(leveldb.Batch)
	batch.Put(keySnapshot, raw)
	if compact > 0 {
		s.deleteEntries(batch, 0, compact)
	}
	if err := s.db.Write(batch, s.write); err != nil {
		return fmt.Errorf("persist snapshot at %d: %w", i, err)
	}
	if compact > 0 {
		if err := s.MemoryStorage.Compact(compact); err != nil && !errors.Is(err, raft.ErrCompacted) {
			return fmt.Errorf("compact log to %d: %w", compact, err)
		}
	}
	return nil
}

// Compact drops the log entries up to index i, which must not pass the stored
// snapshot (entries after the snapshot are needed to restart). The leader uses
// it to make raft send a snapshot to a follower that lost its log.
func (s *Store) Compact(i uint64) error {
	snap, err := s.MemoryStorage.Snapshot()
	if err != nil {
		return err
	}
	if si := snap.GetMetadata().GetIndex(); i > si {
		return fmt.Errorf("compact to %d: past the snapshot at %d", i, si)
	}
	first, err := s.MemoryStorage.FirstIndex()
	if err != nil {
		return err
	}
	if i < first {
		return nil
	}
	batch := new(leveldb.Batch)
	s.deleteEntries(batch, 0, i)
	if err := s.db.Write(batch, s.write); err != nil {
		return fmt.Errorf("compact log to %d: %w", i, err)
	}
	if err := s.MemoryStorage.Compact(i); err != nil && !errors.Is(err, raft.ErrCompacted) {
		return fmt.Errorf("compact log to %d: %w", i, err)
	}
	return nil
}
