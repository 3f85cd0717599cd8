package statedb

import (
	"errors"
	"testing"

	"github.com/syndtr/goleveldb/leveldb"
)

func TestFormatVersionCheckedAtOpen(t *testing.T) {
	dir := t.TempDir()
	db, err := Open(Config{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	db.Close()
	ldb, err := leveldb.OpenFile(dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := ldb.Put(formatKey, []byte("cairn-statedb-999"), nil); err != nil {
		t.Fatal(err)
	}
	ldb.Close()
	if _, err := Open(Config{Dir: dir}); !errors.Is(err, ErrVersion) {
		t.Fatalf("open with a future format: %v", err)
	}
}

func TestApplyReadBack(t *testing.T) {
	db, err := Open(Config{Dir: t.TempDir(), NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if _, ok, _ := db.Savepoint(); ok {
		t.Fatal("fresh db has a savepoint")
	}
	k := func(ns, key string) CompositeKey { return CompositeKey{Namespace: ns, Key: key} }
	err = db.Apply(&Batch{
		Writes: []Write{
			{Key: k("a", "x"), Value: []byte("1"), Metadata: []byte("md"), Version: Version{3, 1}},
			{Key: k("a", "y"), Value: []byte{}, Version: Version{3, 2}},
			{Key: k("ab", "x"), Value: []byte("2"), Version: Version{3, 3}},
		},
		History: []HistoryEntry{{Key: k("a", "x"), Version: Version{1, 0}}, {Key: k("a", "x"), Version: Version{3, 1}}, {Key: k("a", "xy"), Version: Version{2, 0}}},
	}, 3)
	if err != nil {
		t.Fatal(err)
	}
	if n, ok, err := db.Savepoint(); n != 3 || !ok || err != nil {
		t.Fatalf("savepoint %d %v %v", n, ok, err)
	}
	s, _ := db.Snapshot()
	defer s.Release()
	tests := []struct {
		ns, key string
		want    *VersionedValue
	}{
		{"a", "x", &VersionedValue{Value: []byte("1"), Metadata: []byte("md"), Version: Version{3, 1}}},
		{"a", "y", &VersionedValue{Value: []byte{}, Version: Version{3, 2}}},
		{"ab", "x", &VersionedValue{Value: []byte("2"), Version: Version{3, 3}}},
		{"a", "z", nil},
		{"", "ax", nil},
	}
	for _, tc := range tests {
		got, err := s.Get(tc.ns, tc.key)
		if err != nil {
			t.Fatal(err)
		}
		if (got == nil) != (tc.want == nil) || (got != nil && (string(got.Value) != string(tc.want.Value) || got.Value == nil || string(got.Metadata) != string(tc.want.Metadata) || got.Version != tc.want.Version)) {
			t.Errorf("Get(%q,%q) = %+v, want %+v", tc.ns, tc.key, got, tc.want)
		}
	}
	vs, _ := s.GetVersions([]CompositeKey{k("a", "x"), k("a", "nope")})
	if vs[0] == nil || *vs[0] != (Version{3, 1}) || vs[1] != nil {
		t.Errorf("GetVersions = %v", vs)
	}
	it := s.Range("a", "", "")
	var keys []string
	for kv, _ := it.Next(); kv != nil; kv, _ = it.Next() {
		keys = append(keys, kv.Key)
	}
	it.Close()
	if len(keys) != 2 || keys[0] != "x" || keys[1] != "y" {
		t.Errorf("range of a = %v (must not include ab)", keys)
	}
	h := s.History("a", "x")
	defer h.Close()
	var hist []Version
	for {
		v, ok, err := h.Next()
		if err != nil {
			t.Fatal(err)
		}
		if !ok {
			break
		}
		hist = append(hist, v)
	}
	if len(hist) != 2 || hist[0] != (Version{3, 1}) || hist[1] != (Version{1, 0}) {
		t.Errorf("history %v, want newest first and not a/xy", hist)
	}
}

func FuzzDecodeValue(f *testing.F) {
	f.Add(encodeValue(&Write{Value: []byte("v"), Metadata: []byte("m"), Version: Version{1, 2}}))
	f.Add([]byte{0x80})
	f.Add([]byte{1, 1, 0xff, 0xff, 0xff, 0xff, 0x0f})
	f.Fuzz(func(t *testing.T, raw []byte) {
		vv, err := decodeValue(raw)
		if err != nil {
			return
		}
		again := encodeValue(&Write{Value: vv.Value, Metadata: vv.Metadata, Version: vv.Version})
		vv2, err := decodeValue(again)
		if err != nil || string(vv2.Value) != string(vv.Value) || string(vv2.Metadata) != string(vv.Metadata) || vv2.Version != vv.Version {
			t.Fatalf("round trip changed %+v to %+v (%v)", vv, vv2, err)
		}
	})
}
