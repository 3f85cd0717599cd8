package raftstore

import (
	"bytes"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/syndtr/goleveldb/leveldb"
	"go.etcd.io/etcd/server/v3/storage/wal"
	pb "go.etcd.io/raft/v3/raftpb"
	"go.uber.org/zap"
	"google.golang.org/protobuf/proto"
)

func ent(i, term uint64) *pb.Entry {
	return &pb.Entry{Index: new(i), Term: new(term), Type: pb.EntryNormal.Enum(), Data: []byte{byte(i)}}
}

func hardState(term, vote, commit uint64) *pb.HardState {
	return &pb.HardState{Term: new(term), Vote: new(vote), Commit: new(commit)}
}

func mustOpen(t *testing.T, dir string) *Store {
	t.Helper()
	s, err := Open(dir, true)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// checkLog fails unless the store's log runs from first to last with the
// given term for every index.
func checkLog(t *testing.T, s *Store, first, last uint64, term func(uint64) uint64) {
	t.Helper()
	f, _ := s.FirstIndex()
	l, _ := s.LastIndex()
	if f != first || l != last {
		t.Fatalf("log %d..%d, want %d..%d", f, l, first, last)
	}
	for i := first; i <= last; i++ {
		if got, err := s.Term(i); err != nil || got != term(i) {
			t.Fatalf("term of %d = %d (%v), want %d", i, got, err, term(i))
		}
	}
}

func files(t *testing.T, dir, suffix string) []string {
	t.Helper()
	es, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range es {
		if strings.HasSuffix(e.Name(), suffix) {
			out = append(out, e.Name())
		}
	}
	return out
}

func TestPersistTruncateSnapshotReopen(t *testing.T) {
	dir := t.TempDir()
	s := mustOpen(t, dir)
	if !s.Fresh() {
		t.Fatal("new store is not fresh")
	}
	if err := s.Save(hardState(1, 1, 2), []*pb.Entry{ent(1, 1), ent(2, 1), ent(3, 1), ent(4, 1)}, nil); err != nil {
		t.Fatal(err)
	}
	// A new leader overwrites entries from index 3: the old tail goes.
	if err := s.Save(hardState(2, 2, 3), []*pb.Entry{ent(3, 2)}, nil); err != nil {
		t.Fatal(err)
	}
	if hs := s.HardState(); hs.GetTerm() != 2 || hs.GetVote() != 2 || hs.GetCommit() != 3 {
		t.Fatalf("HardState after Save: %v", hs)
	}
	if err := s.TakeSnapshot(2, &pb.ConfState{Voters: []uint64{1, 2, 3}}, []byte("block"), 1); err != nil {
		t.Fatal(err)
	}
	s.Close()

	s = mustOpen(t, dir)
	defer s.Close()
	if s.Fresh() {
		t.Fatal("reopened store reports fresh")
	}
	hs, cs, _ := s.InitialState()
	if hs.GetTerm() != 2 || hs.GetCommit() != 3 || len(cs.GetVoters()) != 3 {
		t.Fatalf("state after reopen: %v %v", hs, cs)
	}
	if got := s.HardState(); got.GetTerm() != 2 || got.GetVote() != 2 {
		t.Fatalf("HardState after reopen: %v", got)
	}
	// The log restarts after the snapshot; entry 3 is the new leader's.
	checkLog(t, s, 3, 3, func(uint64) uint64 { return 2 })
	snap, _ := s.Snapshot()
	if snap.GetMetadata().GetIndex() != 2 || string(snap.Data) != "block" {
		t.Fatalf("snapshot %v", snap)
	}
}

// TestStillFreshUntilSomethingIsSaved: a node that crashed after creating its
// store but before persisting anything must still bootstrap.
func TestStillFreshUntilSomethingIsSaved(t *testing.T) {
	dir := t.TempDir()
	mustOpen(t, dir).Close()
	s := mustOpen(t, dir)
	if !s.Fresh() {
		t.Fatal("an empty store reopened is not fresh")
	}
	if err := s.Save(hardState(1, 0, 0), nil, nil); err != nil {
		t.Fatal(err)
	}
	s.Close()
	s = mustOpen(t, dir)
	defer s.Close()
	if s.Fresh() {
		t.Fatal("a store with a hard state is fresh")
	}
}

// TestReceivedSnapshotReplacesLog: a follower that gets the leader's snapshot
// restarts from it, with only the entries that followed it.
func TestReceivedSnapshotReplacesLog(t *testing.T) {
	dir := t.TempDir()
	s := mustOpen(t, dir)
	if err := s.Save(hardState(1, 1, 3), []*pb.Entry{ent(1, 1), ent(2, 1), ent(3, 1)}, nil); err != nil {
		t.Fatal(err)
	}
	snap := &pb.Snapshot{Data: []byte("block 40"), Metadata: &pb.SnapshotMetadata{Index: new(uint64(10)), Term: new(uint64(3)), ConfState: &pb.ConfState{Voters: []uint64{1, 2, 3}}}}
	if err := s.Save(hardState(3, 2, 10), nil, snap); err != nil {
		t.Fatal(err)
	}
	if err := s.Save(hardState(3, 2, 12), []*pb.Entry{ent(11, 3), ent(12, 3)}, nil); err != nil {
		t.Fatal(err)
	}
	checkLog(t, s, 11, 12, func(uint64) uint64 { return 3 })
	s.Close()

	s = mustOpen(t, dir)
	defer s.Close()
	checkLog(t, s, 11, 12, func(uint64) uint64 { return 3 })
	got, _ := s.Snapshot()
	if got.GetMetadata().GetIndex() != 10 || string(got.Data) != "block 40" {
		t.Fatalf("snapshot after reopen: %v", got)
	}
	if hs, _, _ := s.InitialState(); hs.GetCommit() != 12 {
		t.Fatalf("hard state after reopen: %v", hs)
	}
}

// TestOldSegmentsAndSnapshotsDeleted: the WAL does not grow without bound;
// only the newest two snapshots and the segments they need stay.
func TestOldSegmentsAndSnapshotsDeleted(t *testing.T) {
	dir := t.TempDir()
	s := mustOpen(t, dir)
	data := make([]byte, 1<<20)
	cs := &pb.ConfState{Voters: []uint64{1}}
	const n = 200 // 200 MiB: more than three 64-MiB segments
	for i := uint64(1); i <= n; i++ {
		e := &pb.Entry{Index: new(i), Term: new(uint64(1)), Type: pb.EntryNormal.Enum(), Data: data}
		if err := s.Save(hardState(1, 1, i), []*pb.Entry{e}, nil); err != nil {
			t.Fatal(err)
		}
		if i%20 == 0 {
			if err := s.TakeSnapshot(i, cs, []byte{byte(i)}, 5); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := s.Save(hardState(1, 1, n+1), []*pb.Entry{ent(n+1, 1)}, nil); err != nil {
		t.Fatal(err)
	}
	s.Close()
	if snaps := files(t, dir, snapSuffix); len(snaps) != keepSnaps {
		t.Fatalf("snapshot files %v, want %d", snaps, keepSnaps)
	}
	// The older kept snapshot is at 180, 20 MiB before the end: at most
	// the segment holding it and the one after remain.
	if segs := files(t, filepath.Join(dir, walDir), ".wal"); len(segs) > 2 {
		t.Fatalf("wal segments %v, want at most 2", segs)
	}
	s = mustOpen(t, dir)
	defer s.Close()
	snap, _ := s.Snapshot()
	if snap.GetMetadata().GetIndex() != n {
		t.Fatalf("snapshot at %d, want %d", snap.GetMetadata().GetIndex(), n)
	}
	checkLog(t, s, n+1, n+1, func(uint64) uint64 { return 1 })
}

// TestDamagedSnapshotFallsBack: a torn newest snapshot file, or one whose WAL
// record was never written, leaves the previous snapshot in force with every
// entry after it.
func TestDamagedSnapshotFallsBack(t *testing.T) {
	dir := t.TempDir()
	s := mustOpen(t, dir)
	cs := &pb.ConfState{Voters: []uint64{1}}
	for i := uint64(1); i <= 30; i++ {
		if err := s.Save(hardState(1, 1, i), []*pb.Entry{ent(i, 1)}, nil); err != nil {
			t.Fatal(err)
		}
		if i == 10 || i == 20 {
			if err := s.TakeSnapshot(i, cs, []byte{byte(i)}, 0); err != nil {
				t.Fatal(err)
			}
		}
	}
	s.Close()
	// A snapshot file with no WAL record (a crash between the two).
	if err := os.WriteFile(filepath.Join(dir, snapName(1, 25)), []byte("orphan"), 0o600); err != nil {
		t.Fatal(err)
	}
	// The newest recorded one torn.
	newest := filepath.Join(dir, snapName(1, 20))
	b, err := os.ReadFile(newest)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(newest, b[:len(b)/2], 0o600); err != nil {
		t.Fatal(err)
	}
	s = mustOpen(t, dir)
	defer s.Close()
	snap, _ := s.Snapshot()
	if snap.GetMetadata().GetIndex() != 10 {
		t.Fatalf("snapshot at %d, want the older one at 10", snap.GetMetadata().GetIndex())
	}
	checkLog(t, s, 11, 30, func(uint64) uint64 { return 1 })

	// The next snapshot keeps the one in force and drops the damaged and the
	// unrecorded files, which must not count as kept snapshots.
	if err := s.TakeSnapshot(30, cs, []byte{30}, 0); err != nil {
		t.Fatal(err)
	}
	got := files(t, dir, snapSuffix)
	if want := []string{snapName(1, 10), snapName(1, 30)}; !slices.Equal(got, want) {
		t.Fatalf("snapshot files %v, want %v", got, want)
	}
}

// TestTornWALTailRepaired: a record half written when the process died is cut
// off at the next start, which keeps every record before it.
func TestTornWALTailRepaired(t *testing.T) {
	dir := t.TempDir()
	s := mustOpen(t, dir)
	for i := uint64(1); i <= 5; i++ {
		e := &pb.Entry{Index: new(i), Term: new(uint64(1)), Type: pb.EntryNormal.Enum(), Data: bytes.Repeat([]byte{byte(i)}, 1000)}
		if err := s.Save(hardState(1, 1, i), []*pb.Entry{e}, nil); err != nil {
			t.Fatal(err)
		}
	}
	s.Close()
	segs := files(t, filepath.Join(dir, walDir), ".wal")
	seg := filepath.Join(dir, walDir, segs[len(segs)-1])
	b, err := os.ReadFile(seg)
	if err != nil {
		t.Fatal(err)
	}
	end := len(bytes.TrimRight(b, "\x00"))
	// Cut the file inside the last record (entry 5's hard state follows it,
	// so cutting 600 bytes from the end lands in entry 5).
	if err := os.Truncate(seg, int64(end-600)); err != nil {
		t.Fatal(err)
	}
	s = mustOpen(t, dir)
	defer s.Close()
	checkLog(t, s, 1, 4, func(uint64) uint64 { return 1 })
	if err := s.Save(hardState(1, 1, 5), []*pb.Entry{ent(5, 1)}, nil); err != nil {
		t.Fatalf("append after the repair: %v", err)
	}
}

// writeLegacy writes a LevelDB raft store as the versions before the WAL did.
func writeLegacy(t *testing.T, dir string, hs *pb.HardState, snap *pb.Snapshot, ents ...*pb.Entry) {
	t.Helper()
	db, err := leveldb.OpenFile(dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	put := func(k []byte, m proto.Message) {
		raw, err := proto.Marshal(m)
		if err != nil {
			t.Fatal(err)
		}
		if err := db.Put(k, raw, nil); err != nil {
			t.Fatal(err)
		}
	}
	if err := db.Put(legacyKeyVersion, []byte(legacyFormat), nil); err != nil {
		t.Fatal(err)
	}
	put(legacyKeyHardState, hs)
	if snap != nil {
		put(legacyKeySnapshot, snap)
	}
	for _, e := range ents {
		put(append(append([]byte(nil), legacyPrefixEntry...), byte(0), 0, 0, 0, 0, 0, 0, byte(e.GetIndex())), e)
	}
}

// TestConvertsLevelDBStore: a data directory written by an earlier version
// opens with the same raft state, once, and its LevelDB files are gone.
func TestConvertsLevelDBStore(t *testing.T) {
	for _, unfinished := range []bool{false, true} {
		dir := t.TempDir()
		snap := &pb.Snapshot{Data: []byte("block 3"), Metadata: &pb.SnapshotMetadata{Index: new(uint64(5)), Term: new(uint64(2)), ConfState: &pb.ConfState{Voters: []uint64{1, 2, 3}}}}
		writeLegacy(t, dir, hardState(2, 1, 7), snap, ent(4, 2), ent(5, 2), ent(6, 2), ent(7, 2))
		if unfinished { // a conversion that stopped after writing its snapshot file and creating the WAL
			w, err := wal.Create(zap.NewNop(), filepath.Join(dir, walDir), nil)
			if err != nil {
				t.Fatal(err)
			}
			w.Close()
			if err := os.WriteFile(filepath.Join(dir, snapName(2, 5)), []byte("from the first attempt"), 0o600); err != nil {
				t.Fatal(err)
			}
		}
		for range 2 { // converted, then opened as a WAL store
			s := mustOpen(t, dir)
			if s.Fresh() {
				t.Fatal("a converted store is fresh")
			}
			checkLog(t, s, 6, 7, func(uint64) uint64 { return 2 })
			got, _ := s.Snapshot()
			if got.GetMetadata().GetIndex() != 5 || string(got.Data) != "block 3" || len(got.GetMetadata().GetConfState().GetVoters()) != 3 {
				t.Fatalf("snapshot %v", got)
			}
			if hs, _, _ := s.InitialState(); hs.GetCommit() != 7 || hs.GetTerm() != 2 {
				t.Fatalf("hard state %v", hs)
			}
			s.Close()
			if _, err := os.Stat(filepath.Join(dir, "CURRENT")); !os.IsNotExist(err) {
				t.Fatalf("LevelDB files left after conversion: %v", err)
			}
		}
	}
}

// TestLogIntactAfterCacheDrops: Persist gives back the WAL's page cache every
// few MiB; what it wrote still reads back at the next start.
func TestLogIntactAfterCacheDrops(t *testing.T) {
	dir := t.TempDir()
	s := mustOpen(t, dir)
	const n = 12 // × 1 MiB: past dropCacheEvery at least once
	ents := make([]*pb.Entry, n)
	for i := range ents {
		ents[i] = ent(uint64(i+1), 1)
		ents[i].Data = bytes.Repeat([]byte{byte(i)}, 1<<20)
	}
	for i := range ents {
		if err := s.Persist(hardState(1, 1, uint64(i+1)), ents[i:i+1]); err != nil {
			t.Fatal(err)
		}
		if err := s.Remember(hardState(1, 1, uint64(i+1)), ents[i:i+1]); err != nil {
			t.Fatal(err)
		}
	}
	if n<<20 < dropCacheEvery {
		t.Fatal("the test writes less than one drop interval")
	}
	s.Close()
	s = mustOpen(t, dir)
	defer s.Close()
	checkLog(t, s, 1, n, func(uint64) uint64 { return 1 })
	got, err := s.Entries(1, n+1, 1<<30)
	if err != nil {
		t.Fatal(err)
	}
	for i, e := range got {
		if !bytes.Equal(e.Data, ents[i].Data) {
			t.Fatalf("entry %d changed", i+1)
		}
	}
}
