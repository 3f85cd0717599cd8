package ledger

import (
	"bytes"
	"errors"
	"fmt"
	"testing"

	"github.com/hyperledger/fabric-protos-go-apiv2/ledger/rwset"
	"github.com/hyperledger/fabric-protos-go-apiv2/ledger/rwset/kvrwset"
	"github.com/hyperledger/fabric-protos-go-apiv2/peer"
	"google.golang.org/protobuf/proto"
)

func decodeNS(t *testing.T, r *rwset.TxReadWriteSet) map[string]*kvrwset.KVRWSet {
	t.Helper()
	out := map[string]*kvrwset.KVRWSet{}
	for _, n := range r.NsRwset {
		kvs := &kvrwset.KVRWSet{}
		if err := proto.Unmarshal(n.Rwset, kvs); err != nil {
			t.Fatal(err)
		}
		out[n.Namespace] = kvs
	}
	return out
}

func rawReads(reads ...*kvrwset.KVRead) *kvrwset.RangeQueryInfo_RawReads {
	return &kvrwset.RangeQueryInfo_RawReads{RawReads: &kvrwset.QueryReads{KvReads: reads}}
}

func TestSimulatorRWSetShape(t *testing.T) {
	l := newTestLedger(t)
	base := writes("a", "1", "b", "2", "c", "3", "d", "4")
	base.MetadataWrites = []*kvrwset.KVMetadataWrite{{Key: "a", Entries: []*kvrwset.KVMetadataEntry{{Name: "VALIDATION_PARAMETER", Value: []byte("ep")}}}}
	commitRWSets(t, l, "setup", rws(t, "cc", base, "other", writes("x", "9")))

	got := simulate(t, l, "tx", func(s *TxSimulator) {
		must := func(err error) {
			t.Helper()
			if err != nil {
				t.Fatal(err)
			}
		}
		must(s.SetState("cc", "z", []byte("new")))
		if v, err := s.GetState("cc", "z"); err != nil || v != nil {
			t.Errorf("own write visible: %q, %v", v, err)
		}
		must(s.SetState("cc", "b", []byte("x1")))
		must(s.SetState("cc", "b", []byte("x2")))
		if v, _ := s.GetState("cc", "b"); string(v) != "2" {
			t.Errorf("GetState after SetState = %q, want committed value 2", v)
		}
		if v, _ := s.GetState("cc", "a"); string(v) != "1" {
			t.Errorf("GetState(a) = %q", v)
		}
		if v, _ := s.GetState("cc", "missing"); v != nil {
			t.Errorf("GetState(missing) = %q", v)
		}
		must(s.DeleteState("cc", "c"))
		must(s.SetStateMetadata("cc", "d", map[string][]byte{"VALIDATION_PARAMETER": []byte("p2"), "alpha": []byte("v")}))
		md, err := s.GetStateMetadata("cc", "a")
		must(err)
		if string(md["VALIDATION_PARAMETER"]) != "ep" || len(md) != 1 {
			t.Errorf("GetStateMetadata(a) = %v", md)
		}
		it, err := s.GetStateRangeScanIterator("cc", "b", "d")
		must(err)
		var keys []string
		for {
			kv, err := it.Next()
			must(err)
			if kv == nil {
				break
			}
			keys = append(keys, kv.Key+"="+string(kv.Value))
		}
		it.Close()
		if fmt.Sprint(keys) != "[b=2 c=3]" {
			t.Errorf("range [b,d) = %v", keys)
		}
		it2, err := s.GetStateRangeScanIterator("cc", "", "")
		must(err)
		if kv, err := it2.Next(); err != nil || kv.Key != "a" || kv.Namespace != "cc" {
			t.Errorf("first of full scan = %v, %v", kv, err)
		}
		it2.Close()
		_, err = s.GetState("other", "x")
		must(err)
		vs, err := s.GetStateMultipleKeys("aaa", []string{"k2", "k1"})
		must(err)
		if len(vs) != 2 || vs[0] != nil || vs[1] != nil {
			t.Errorf("GetStateMultipleKeys = %q", vs)
		}
	})

	if got.DataModel != rwset.TxReadWriteSet_KV {
		t.Errorf("data model %v", got.DataModel)
	}
	var order []string
	for _, n := range got.NsRwset {
		order = append(order, n.Namespace)
	}
	if fmt.Sprint(order) != "[aaa cc other]" {
		t.Fatalf("namespaces %v, want sorted [aaa cc other]", order)
	}
	want := map[string]*kvrwset.KVRWSet{
		"aaa": {Reads: []*kvrwset.KVRead{{Key: "k1"}, {Key: "k2"}}},
		"cc": {
			Reads: []*kvrwset.KVRead{{Key: "a", Version: ver(0, 0)}, {Key: "b", Version: ver(0, 0)}, {Key: "missing"}, {Key: "z"}},
			RangeQueriesInfo: []*kvrwset.RangeQueryInfo{
				{StartKey: "b", EndKey: "d", ItrExhausted: true, ReadsInfo: rawReads(&kvrwset.KVRead{Key: "b", Version: ver(0, 0)}, &kvrwset.KVRead{Key: "c", Version: ver(0, 0)})},
				{StartKey: "", EndKey: "a", ItrExhausted: false, ReadsInfo: rawReads(&kvrwset.KVRead{Key: "a", Version: ver(0, 0)})},
			},
			Writes: []*kvrwset.KVWrite{
				{Key: "b", Value: []byte("x2")},
				{Key: "c", IsDelete: true},
				{Key: "z", Value: []byte("new")},
			},
			MetadataWrites: []*kvrwset.KVMetadataWrite{{Key: "d", Entries: []*kvrwset.KVMetadataEntry{
				{Name: "VALIDATION_PARAMETER", Value: []byte("p2")}, {Name: "alpha", Value: []byte("v")},
			}}},
		},
		"other": {Reads: []*kvrwset.KVRead{{Key: "x", Version: ver(0, 0)}}},
	}
	gotNS := decodeNS(t, got)
	for ns, w := range want {
		if !proto.Equal(gotNS[ns], w) {
			t.Errorf("namespace %s:\n got %v\nwant %v", ns, gotNS[ns], w)
		}
	}

	// The rwset commits: every read is current.
	codes := commitRWSets(t, l, "sim", got)
	if codes[0] != peer.TxValidationCode_VALID {
		t.Fatalf("simulated tx committed as %v", codes[0])
	}
	qe, err := l.NewQueryExecutor()
	if err != nil {
		t.Fatal(err)
	}
	defer qe.Done()
	for key, want := range map[string]string{"a": "1", "b": "x2", "c": "", "z": "new", "d": "4"} {
		v, err := qe.GetState("cc", key)
		if err != nil || string(v) != want || (want == "" && v != nil) {
			t.Errorf("after commit %s = %q (%v), want %q", key, v, err, want)
		}
	}
	md, _ := qe.GetStateMetadata("cc", "d")
	if string(md["alpha"]) != "v" || string(md["VALIDATION_PARAMETER"]) != "p2" {
		t.Errorf("metadata of d after commit = %v", md)
	}
	// b was written without a metadata write; a kept its metadata too.
	md, _ = qe.GetStateMetadata("cc", "a")
	if string(md["VALIDATION_PARAMETER"]) != "ep" {
		t.Errorf("metadata of a = %v", md)
	}
}

func TestSimulatorSnapshotAndDone(t *testing.T) {
	l := newTestLedger(t)
	commitRWSets(t, l, "b0-", rws(t, "cc", writes("k", "old")))
	s, err := l.NewTxSimulator("tx")
	if err != nil {
		t.Fatal(err)
	}
	commitRWSets(t, l, "b1-", rws(t, "cc", writes("k", "new", "k2", "x")))
	if v, _ := s.GetState("cc", "k"); string(v) != "old" {
		t.Errorf("simulator saw a block committed after it started: %q", v)
	}
	it, _ := s.GetStateRangeScanIterator("cc", "", "")
	n := 0
	for kv, _ := it.Next(); kv != nil; kv, _ = it.Next() {
		n++
	}
	if n != 1 {
		t.Errorf("range saw %d keys, want 1 (snapshot)", n)
	}
	s.Done()
	s.Done()
	if _, err := s.GetState("cc", "k"); !errors.Is(err, ErrDone) {
		t.Errorf("GetState after Done: %v", err)
	}
	if err := s.SetState("cc", "k", []byte("v")); !errors.Is(err, ErrDone) {
		t.Errorf("SetState after Done: %v", err)
	}
	if _, err := s.Results(); err != nil {
		t.Errorf("Results after Done: %v", err)
	}
	if err := (func() error {
		s2, _ := l.NewTxSimulator("t2")
		defer s2.Done()
		return s2.SetState("cc", "\xff", []byte("v"))
	})(); err == nil {
		t.Error("non-UTF-8 key accepted")
	}
}

func TestNamespacesDoNotLeak(t *testing.T) {
	l := newTestLedger(t)
	commitRWSets(t, l, "b0-", rws(t,
		"a", writes("bc", "1", "\x00comp\x00k\x00", "2"),
		"ab", writes("c", "3"),
		"a\x00", writes("x", "4"),
	))
	qe, _ := l.NewQueryExecutor()
	defer qe.Done()
	it, _ := qe.GetStateRangeScanIterator("a", "", "")
	var keys []string
	for kv, _ := it.Next(); kv != nil; kv, _ = it.Next() {
		keys = append(keys, kv.Key)
	}
	if fmt.Sprintf("%q", keys) != `["\x00comp\x00k\x00" "bc"]` {
		t.Errorf("namespace a scan = %q", keys)
	}
	if v, _ := qe.GetState("ab", "c"); string(v) != "3" {
		t.Errorf("ab/c = %q", v)
	}
	if v, _ := qe.GetState("a", "bc"); !bytes.Equal(v, []byte("1")) {
		t.Errorf("a/bc = %q", v)
	}
}

func TestRangeQueryMerkleSummary(t *testing.T) {
	l := newTestLedger(t)
	base := &kvrwset.KVRWSet{}
	for i := range 120 {
		base.Writes = append(base.Writes, &kvrwset.KVWrite{Key: fmt.Sprintf("k%03d", i*2), Value: []byte("v")})
	}
	commitRWSets(t, l, "b0-", rws(t, "cc", base))

	scan := func(s *TxSimulator) {
		it, err := s.GetStateRangeScanIterator("cc", "k", "l")
		if err != nil {
			t.Fatal(err)
		}
		for kv, _ := it.Next(); kv != nil; kv, _ = it.Next() {
		}
		it.Close()
		_ = s.SetState("cc", "out", []byte("x"))
	}
	r1 := simulate(t, l, "r1", scan)
	rq := decodeNS(t, r1)["cc"].RangeQueriesInfo[0]
	mh := rq.GetReadsMerkleHashes()
	if mh == nil || rq.GetRawReads() != nil {
		t.Fatalf("120 results should be summarised, got %v", rq)
	}
	// 120 reads: leaves of 51, 51, 18 reads -> 3 level-1 hashes, within degree 50.
	if mh.MaxDegree != 50 || mh.MaxLevel != 1 || len(mh.MaxLevelHashes) != 3 {
		t.Errorf("summary degree %d level %d hashes %d", mh.MaxDegree, mh.MaxLevel, len(mh.MaxLevelHashes))
	}
	r2 := simulate(t, l, "r2", scan)
	insert := rws(t, "cc", writes("k101", "new"))
	codes := commitRWSets(t, l, "b1-", r1, insert, r2)
	want := []peer.TxValidationCode{peer.TxValidationCode_VALID, peer.TxValidationCode_VALID, peer.TxValidationCode_PHANTOM_READ_CONFLICT}
	if fmt.Sprint(codes) != fmt.Sprint(want) {
		t.Errorf("codes %v, want %v", codes, want)
	}
}

func TestRangeResultsTreeDeep(t *testing.T) {
	// Small degree forces several levels; done must be stable when called twice.
	rr := newRangeResults(true, 2)
	for i := range 40 {
		if err := rr.add(&kvrwset.KVRead{Key: fmt.Sprint(i), Version: ver(1, uint64(i))}); err != nil {
			t.Fatal(err)
		}
	}
	_, s1, _ := rr.done()
	_, s2, _ := rr.done()
	if s1 == nil || !summariesEqual(s1, s2) || s1.MaxLevel < 3 || len(s1.MaxLevelHashes) > 2 {
		t.Fatalf("summary %v / %v", s1, s2)
	}
}
