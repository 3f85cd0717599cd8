package raftstore

import (
	"testing"

	pb "go.etcd.io/raft/v3/raftpb"
)

func ent(i, term uint64) *pb.Entry {
	return &pb.Entry{Index: new(i), Term: new(term), Type: pb.EntryNormal.Enum(), Data: []byte{byte(i)}}
}

func TestPersistTruncateSnapshotReopen(t *testing.T) {
	dir := t.TempDir()
	s, err := Open(dir, true)
	if err != nil || !s.Fresh() {
		t.Fatalf("open fresh: %v", err)
	}
	if err := s.Save(&pb.HardState{Term: new(uint64(1)), Vote: new(uint64(1)), Commit: new(uint64(2))}, []*pb.Entry{ent(1, 1), ent(2, 1), ent(3, 1), ent(4, 1)}, nil); err != nil {
		t.Fatal(err)
	}
	// A new leader overwrites entries from index 3: the old tail goes.
	if err := s.Save(&pb.HardState{Term: new(uint64(2)), Vote: new(uint64(2)), Commit: new(uint64(3))}, []*pb.Entry{ent(3, 2)}, nil); err != nil {
		t.Fatal(err)
	}
	if err := s.TakeSnapshot(2, &pb.ConfState{Voters: []uint64{1, 2, 3}}, []byte("block"), 1); err != nil {
		t.Fatal(err)
	}
	s.Close()

	s, err = Open(dir, true)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if s.Fresh() {
		t.Fatal("reopened store reports fresh")
	}
	hs, cs, _ := s.InitialState()
	if hs.GetTerm() != 2 || hs.GetCommit() != 3 || len(cs.GetVoters()) != 3 {
		t.Fatalf("state after reopen: %v %v", hs, cs)
	}
	last, _ := s.LastIndex()
	if last != 3 {
		t.Fatalf("last index %d, want 3 (tail truncated)", last)
	}
	if term, _ := s.Term(3); term != 2 {
		t.Fatalf("entry 3 term %d, want 2", term)
	}
	snap, _ := s.Snapshot()
	if snap.GetMetadata().GetIndex() != 2 || string(snap.Data) != "block" {
		t.Fatalf("snapshot %v", snap)
	}
}
