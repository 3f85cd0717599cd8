package ledger

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/hyperledger/fabric-protos-go-apiv2/ledger/rwset/kvrwset"
	"github.com/hyperledger/fabric-protos-go-apiv2/peer"

	"github.com/cairn-ledger/cairn/internal/block"
)

const (
	valid    = peer.TxValidationCode_VALID
	mvcc     = peer.TxValidationCode_MVCC_READ_CONFLICT
	phantom  = peer.TxValidationCode_PHANTOM_READ_CONFLICT
	badRWSet = peer.TxValidationCode_BAD_RWSET
	policy   = peer.TxValidationCode_ENDORSEMENT_POLICY_FAILURE
)

// testTx is one transaction of a test block: an rwset (or raw Results bytes)
// and the code the peer's validator gave it.
type testTx struct {
	set *kvrwset.KVRWSet // in namespace "cc"
	raw []byte           // used instead of set when non-nil
	pre peer.TxValidationCode
}

func commitTxs(t *testing.T, l *Ledger, prefix string, txs []testTx) []peer.TxValidationCode {
	t.Helper()
	return commitTxsAs(t, l, prefix, txs, false)
}

// commitTxsAs commits txs, with decoded set handing the ledger the
// read-write sets already decoded (CommitDecoded), as the committer does.
func commitTxsAs(t *testing.T, l *Ledger, prefix string, txs []testTx, decoded bool) []peer.TxValidationCode {
	t.Helper()
	envs := make([][]byte, len(txs))
	codes := make([]peer.TxValidationCode, len(txs))
	var sets []*TxRWSet
	if decoded {
		sets = make([]*TxRWSet, len(txs))
	}
	for i, tx := range txs {
		res := tx.raw
		if res == nil {
			set := rws(t, "cc", tx.set)
			res = mustMarshal(t, set)
			if decoded {
				sets[i] = &TxRWSet{Set: set, Namespaces: []*kvrwset.KVRWSet{tx.set}}
			}
		}
		envs[i] = endorserEnvelope(t, fmt.Sprintf("%s-%d", prefix, i), res)
		codes[i] = tx.pre
	}
	got, err := l.CommitDecoded(nextBlock(t, l, envs...), codes, sets)
	if err != nil {
		t.Fatalf("commit %s: %v", prefix, err)
	}
	return got
}

func rw(reads []*kvrwset.KVRead, kv ...string) *kvrwset.KVRWSet {
	s := writes(kv...)
	s.Reads = reads
	return s
}

func rd(key string, v *kvrwset.Version) *kvrwset.KVRead { return &kvrwset.KVRead{Key: key, Version: v} }

func rangeQ(start, end string, exhausted bool, reads ...*kvrwset.KVRead) *kvrwset.KVRWSet {
	return &kvrwset.KVRWSet{RangeQueriesInfo: []*kvrwset.RangeQueryInfo{{StartKey: start, EndKey: end, ItrExhausted: exhausted, ReadsInfo: rawReads(reads...)}}}
}

// TestCommitScenarios is the golden table: setup blocks, then a block whose
// final codes and resulting state are checked.
func TestCommitScenarios(t *testing.T) {
	del := func(key string) *kvrwset.KVRWSet {
		return &kvrwset.KVRWSet{Writes: []*kvrwset.KVWrite{{Key: key, IsDelete: true}}}
	}
	tests := []struct {
		name      string
		setup     [][]testTx
		block     []testTx
		wantCodes []peer.TxValidationCode
		wantState map[string]string
	}{{
		name:      "two txs read and write the same key",
		setup:     [][]testTx{{{set: writes("k", "v0")}}},
		block:     []testTx{{set: rw([]*kvrwset.KVRead{rd("k", ver(0, 0))}, "k", "1")}, {set: rw([]*kvrwset.KVRead{rd("k", ver(0, 0))}, "k", "2")}},
		wantCodes: []peer.TxValidationCode{valid, mvcc},
		wantState: map[string]string{"cc/k": `"1"@1.0 md=`},
	}, {
		name:      "stale read of committed state",
		setup:     [][]testTx{{{set: writes("k", "v0")}}, {{set: writes("k", "v1")}}},
		block:     []testTx{{set: rw([]*kvrwset.KVRead{rd("k", ver(0, 0))}, "k", "2")}},
		wantCodes: []peer.TxValidationCode{mvcc},
		wantState: map[string]string{"cc/k": `"v1"@1.0 md=`},
	}, {
		name:      "read of absent key created earlier in the block",
		block:     []testTx{{set: writes("n", "1")}, {set: rw([]*kvrwset.KVRead{rd("n", nil)}, "m", "2")}},
		wantCodes: []peer.TxValidationCode{valid, mvcc},
		wantState: map[string]string{"cc/n": `"1"@0.0 md=`},
	}, {
		name:      "read of absent key still absent",
		setup:     [][]testTx{{{set: writes("x", "1")}}},
		block:     []testTx{{set: rw([]*kvrwset.KVRead{rd("n", nil), rd("x", ver(0, 0))}, "n", "2")}},
		wantCodes: []peer.TxValidationCode{valid},
		wantState: map[string]string{"cc/n": `"2"@1.0 md=`, "cc/x": `"1"@0.0 md=`},
	}, {
		name:      "phantom: insert into the range earlier in the block",
		setup:     [][]testTx{{{set: writes("r1", "a", "r3", "b")}}},
		block:     []testTx{{set: writes("r2", "new")}, {set: rangeQ("r1", "r9", true, rd("r1", ver(0, 0)), rd("r3", ver(0, 0)))}},
		wantCodes: []peer.TxValidationCode{valid, phantom},
		wantState: map[string]string{"cc/r1": `"a"@0.0 md=`, "cc/r2": `"new"@1.0 md=`, "cc/r3": `"b"@0.0 md=`},
	}, {
		name:      "phantom: insert into the range in committed state",
		setup:     [][]testTx{{{set: writes("r1", "a", "r3", "b")}}, {{set: writes("r2", "new")}}},
		block:     []testTx{{set: rangeQ("r1", "r9", true, rd("r1", ver(0, 0)), rd("r3", ver(0, 0)))}},
		wantCodes: []peer.TxValidationCode{phantom},
	}, {
		name:      "phantom: delete in the range earlier in the block",
		setup:     [][]testTx{{{set: writes("r1", "a", "r3", "b")}}},
		block:     []testTx{{set: del("r3")}, {set: rangeQ("r1", "r9", true, rd("r1", ver(0, 0)), rd("r3", ver(0, 0)))}},
		wantCodes: []peer.TxValidationCode{valid, phantom},
		wantState: map[string]string{"cc/r1": `"a"@0.0 md=`},
	}, {
		name:      "range unchanged, and writes past an unexhausted range's last key",
		setup:     [][]testTx{{{set: writes("r1", "a", "r3", "b", "r5", "c")}}},
		block:     []testTx{{set: writes("r4", "x", "r0", "y")}, {set: rangeQ("r1", "r3", false, rd("r1", ver(0, 0)), rd("r3", ver(0, 0)))}, {set: rangeQ("r1", "r9", true, rd("r1", ver(0, 0)), rd("r3", ver(0, 0)), rd("r4", ver(1, 0)), rd("r5", ver(0, 0)))}},
		wantCodes: []peer.TxValidationCode{valid, valid, valid},
	}, {
		name:      "unexhausted range whose last key changed",
		setup:     [][]testTx{{{set: writes("r1", "a", "r3", "b")}}},
		block:     []testTx{{set: writes("r3", "x")}, {set: rangeQ("r1", "r3", false, rd("r1", ver(0, 0)), rd("r3", ver(0, 0)))}},
		wantCodes: []peer.TxValidationCode{valid, phantom},
	}, {
		name:      "pre-invalid txs are skipped and their writes not applied",
		setup:     [][]testTx{{{set: writes("k", "v0")}}},
		block:     []testTx{{set: rw([]*kvrwset.KVRead{rd("k", ver(0, 0))}, "k", "bad"), pre: policy}, {set: rw([]*kvrwset.KVRead{rd("k", ver(0, 0))}, "k", "good")}},
		wantCodes: []peer.TxValidationCode{policy, valid},
		wantState: map[string]string{"cc/k": `"good"@1.1 md=`},
	}, {
		name:      "unparseable rwset",
		block:     []testTx{{raw: []byte{0xff, 0xff, 0xff}}, {set: writes("k", "v")}},
		wantCodes: []peer.TxValidationCode{badRWSet, valid},
		wantState: map[string]string{"cc/k": `"v"@0.1 md=`},
	}, {
		name: "metadata-only write keeps the value; value-only write keeps the metadata",
		setup: [][]testTx{{{set: writes("k", "v0", "j", "j0")}}, {{set: &kvrwset.KVRWSet{MetadataWrites: []*kvrwset.KVMetadataWrite{
			{Key: "k", Entries: []*kvrwset.KVMetadataEntry{{Name: "VALIDATION_PARAMETER", Value: []byte{1}}}},
			{Key: "absent", Entries: []*kvrwset.KVMetadataEntry{{Name: "VALIDATION_PARAMETER", Value: []byte{2}}}},
		}}}}},
		block:     []testTx{{set: writes("k", "v1")}, {set: &kvrwset.KVRWSet{MetadataWrites: []*kvrwset.KVMetadataWrite{{Key: "j"}}}}},
		wantCodes: []peer.TxValidationCode{valid, valid},
		wantState: map[string]string{"cc/k": `"v1"@2.0 md=12190a1456414c49444154494f4e5f504152414d45544552120101`, "cc/j": `"j0"@2.1 md=`},
	}}
	for _, tc := range tests {
		for _, decoded := range []bool{false, true} {
			name := tc.name
			if decoded {
				name += " (decoded by the caller)"
			}
			t.Run(name, func(t *testing.T) {
				runCommitScenario(t, commitScenario{tc.setup, tc.block, tc.wantCodes, tc.wantState}, decoded)
			})
		}
	}
}

// commitScenario is one row of TestCommitScenarios.
type commitScenario struct {
	setup     [][]testTx
	block     []testTx
	wantCodes []peer.TxValidationCode
	wantState map[string]string
}

func runCommitScenario(t *testing.T, tc commitScenario, decoded bool) {
	l := newTestLedger(t)
	for i, b := range tc.setup {
		for j, c := range commitTxsAs(t, l, fmt.Sprintf("setup%d", i), b, decoded) {
			if c != valid {
				t.Fatalf("setup block %d tx %d: %v", i, j, c)
			}
		}
	}
	got := commitTxsAs(t, l, "test", tc.block, decoded)
	if fmt.Sprint(got) != fmt.Sprint(tc.wantCodes) {
		t.Errorf("codes %v, want %v", got, tc.wantCodes)
	}
	last, _ := l.Block(l.Height() - 1)
	for i, c := range block.TxFilter(last) {
		if peer.TxValidationCode(c) != got[i] {
			t.Errorf("stored filter[%d] = %v, returned %v", i, c, got[i])
		}
	}
	if tc.wantState != nil {
		if gotState := stateDump(t, l, "cc"); fmt.Sprint(gotState) != fmt.Sprint(tc.wantState) {
			t.Errorf("state\n got %v\nwant %v", gotState, tc.wantState)
		}
	}
}

func TestCommitChecks(t *testing.T) {
	l := newTestLedger(t)
	env := endorserEnvelope(t, "tx", mustMarshal(t, rws(t, "cc", writes("k", "v"))))
	if _, err := l.Commit(nextBlock(t, l, env), nil); err == nil {
		t.Error("commit with missing codes accepted")
	}
	b := nextBlock(t, l, env)
	b.Header.Number = 5
	if _, err := l.Commit(b, allValid(1)); !errors.Is(err, ErrWrongNumber) {
		t.Errorf("wrong number: %v", err)
	}
	// A config block is just stored.
	codes, err := l.Commit(nextBlock(t, l, configEnvelope(t)), allValid(1))
	if err != nil || codes[0] != valid {
		t.Fatalf("config block: %v %v", codes, err)
	}
	if l.Height() != 1 {
		t.Errorf("height %d", l.Height())
	}
}

func TestHistoryAndTxQueries(t *testing.T) {
	l := newTestLedger(t)
	commitRWSets(t, l, "b0-", rws(t, "cc", writes("k", "v1")))
	commitRWSets(t, l, "b1-", rws(t, "cc", writes("other", "x")), rws(t, "cc", writes("k", "v2")))
	commitTxs(t, l, "b2", []testTx{
		{set: &kvrwset.KVRWSet{Writes: []*kvrwset.KVWrite{{Key: "k", IsDelete: true}}}},
		{set: rw([]*kvrwset.KVRead{rd("k", ver(1, 1))}, "k", "conflicted")},
		{set: writes("k", "rejected"), pre: policy},
	})
	qe, _ := l.NewQueryExecutor()
	defer qe.Done()
	it, err := qe.GetHistoryForKey("cc", "k")
	if err != nil {
		t.Fatal(err)
	}
	defer it.Close()
	var got []string
	for {
		km, err := it.Next()
		if err != nil {
			t.Fatal(err)
		}
		if km == nil {
			break
		}
		if km.Timestamp == nil {
			t.Error("missing timestamp")
		}
		got = append(got, fmt.Sprintf("%s:%q:%v", km.TxId, km.Value, km.IsDelete))
	}
	want := `[b2-0:"":true b1-1:"v2":false b0-0:"v1":false]`
	if fmt.Sprint(got) != want {
		t.Errorf("history %v, want %s", got, want)
	}

	for _, tc := range []struct {
		txID  string
		code  peer.TxValidationCode
		block uint64
		found bool
	}{
		{"b0-0", valid, 0, true}, {"b2-1", mvcc, 2, true}, {"b2-2", policy, 2, true}, {"nope", 0, 0, false},
	} {
		code, bn, found, err := l.TxValidationCode(tc.txID)
		if err != nil || code != tc.code || bn != tc.block || found != tc.found {
			t.Errorf("TxValidationCode(%s) = %v %d %v %v", tc.txID, code, bn, found, err)
		}
		exists, err := l.TxIDExists(tc.txID)
		if err != nil || exists != tc.found {
			t.Errorf("TxIDExists(%s) = %v %v", tc.txID, exists, err)
		}
	}
	if b, err := l.BlockByTxID("b1-1"); err != nil || b.Header.Number != 1 {
		t.Errorf("BlockByTxID: %v", err)
	}
	b1, _ := l.Block(1)
	if b, err := l.BlockByHash(block.HeaderHash(b1.Header)); err != nil || b.Header.Number != 1 {
		t.Errorf("BlockByHash: %v", err)
	}
}

func TestWait(t *testing.T) {
	l := newTestLedger(t)
	done := make(chan error, 1)
	go func() { done <- l.Wait(context.Background(), 0) }()
	select {
	case err := <-done:
		t.Fatalf("Wait returned before commit: %v", err)
	case <-time.After(20 * time.Millisecond):
	}
	commitRWSets(t, l, "b0-", rws(t, "cc", writes("k", "v")))
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Millisecond)
	defer cancel()
	if err := l.Wait(ctx, 1); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Wait past height: %v", err)
	}
	go func() { done <- l.Wait(context.Background(), 5) }()
	l.Close()
	if err := <-done; !errors.Is(err, ErrClosed) {
		t.Errorf("Wait after Close: %v", err)
	}
}

// recoveryBlocks is a few blocks exercising every kind of write, each
// depending on state left by the earlier ones.
func recoveryBlocks() [][]testTx {
	md := []*kvrwset.KVMetadataEntry{{Name: "VALIDATION_PARAMETER", Value: []byte("p")}}
	return [][]testTx{
		{{set: writes("a", "1", "b", "2", "c", "3")}},
		{{set: &kvrwset.KVRWSet{MetadataWrites: []*kvrwset.KVMetadataWrite{{Key: "a", Entries: md}}}}, {set: writes("d", "4")}},
		{{set: rw([]*kvrwset.KVRead{rd("b", ver(0, 0))}, "b", "22")}, {set: rw([]*kvrwset.KVRead{rd("b", ver(0, 0))}, "b", "lost")}},
		{
			{set: &kvrwset.KVRWSet{Writes: []*kvrwset.KVWrite{{Key: "c", IsDelete: true}, {Key: "a", Value: []byte("11")}}}},
			{set: writes("e", "5"), pre: policy},
			{set: &kvrwset.KVRWSet{MetadataWrites: []*kvrwset.KVMetadataWrite{{Key: "d", Entries: md}}}},
		},
	}
}

func TestCrashRecovery(t *testing.T) {
	blocks := recoveryBlocks()
	// Reference: every block committed normally.
	ref := newTestLedger(t)
	for i, b := range blocks {
		commitTxs(t, ref, fmt.Sprintf("b%d", i), b)
	}
	want := stateDump(t, ref, "cc")

	for crashAt := range blocks {
		t.Run(fmt.Sprintf("crash before state of block %d", crashAt), func(t *testing.T) {
			dir := t.TempDir()
			l := openTestLedger(t, dir)
			for i, b := range blocks[:crashAt+1] {
				if i == crashAt {
					l.beforeApply = func() error { return errors.New("simulated crash") }
					envs := make([][]byte, len(b))
					codes := make([]peer.TxValidationCode, len(b))
					for j, tx := range b {
						envs[j] = endorserEnvelope(t, fmt.Sprintf("b%d-%d", i, j), mustMarshal(t, rws(t, "cc", tx.set)))
						codes[j] = tx.pre
					}
					if _, err := l.Commit(nextBlock(t, l, envs...), codes); err == nil {
						t.Fatal("crash hook did not stop the commit")
					}
					if _, err := l.Commit(nextBlock(t, l, envs...), codes); !errors.Is(err, ErrBroken) {
						t.Fatalf("commit after a half-done commit: %v", err)
					}
					break
				}
				commitTxs(t, l, fmt.Sprintf("b%d", i), b)
			}
			l.Close()

			l = openTestLedger(t, dir)
			defer l.Close()
			if l.Height() != uint64(crashAt+1) {
				t.Fatalf("height after recovery %d, want %d", l.Height(), crashAt+1)
			}
			for i, b := range blocks[crashAt+1:] {
				commitTxs(t, l, fmt.Sprintf("b%d", crashAt+1+i), b)
			}
			if got := stateDump(t, l, "cc"); fmt.Sprint(got) != fmt.Sprint(want) {
				t.Errorf("state after recovery\n got %v\nwant %v", got, want)
			}
			if got, want := historyOf(t, l, "cc", "b"), historyOf(t, ref, "cc", "b"); got != want {
				t.Errorf("history after recovery %s, want %s", got, want)
			}
		})
	}
}

func historyOf(t *testing.T, l *Ledger, ns, key string) string {
	t.Helper()
	qe, _ := l.NewQueryExecutor()
	defer qe.Done()
	it, err := qe.GetHistoryForKey(ns, key)
	if err != nil {
		t.Fatal(err)
	}
	defer it.Close()
	var out []string
	for km, err := it.Next(); km != nil || err != nil; km, err = it.Next() {
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, fmt.Sprintf("%s=%q", km.TxId, km.Value))
	}
	return fmt.Sprint(out)
}

func TestReopenAndStateAhead(t *testing.T) {
	dir := t.TempDir()
	l := openTestLedger(t, dir)
	commitRWSets(t, l, "b0-", rws(t, "cc", writes("k", "v")))
	commitRWSets(t, l, "b1-", rws(t, "cc", writes("k", "w")))
	l.Close()

	l = openTestLedger(t, dir)
	if l.Height() != 2 {
		t.Errorf("height after reopen %d", l.Height())
	}
	if got := stateDump(t, l, "cc"); got["cc/k"] != `"w"@1.0 md=` {
		t.Errorf("state after reopen %v", got)
	}
	l.Close()

	if err := os.RemoveAll(filepath.Join(dir, "blocks")); err != nil {
		t.Fatal(err)
	}
	if _, err := Open(Config{Dir: dir, NoSync: true}); !errors.Is(err, ErrStateAhead) {
		t.Errorf("open with state ahead of blocks: %v", err)
	}
}

// FuzzCommitValidation feeds arbitrary envelope bytes through decoding and
// MVCC validation against real committed state; nothing may panic.
func FuzzCommitValidation(f *testing.F) {
	f.Add(endorserEnvelope(f, "tx", mustMarshal(f, rws(f, "cc", rangeQ("a", "", false, rd("a", ver(0, 0)))))))
	f.Add(endorserEnvelope(f, "tx", mustMarshal(f, rws(f, "cc", &kvrwset.KVRWSet{RangeQueriesInfo: []*kvrwset.RangeQueryInfo{{
		StartKey: "a", ReadsInfo: &kvrwset.RangeQueryInfo_ReadsMerkleHashes{ReadsMerkleHashes: &kvrwset.QueryReadsMerkleSummary{MaxDegree: 2, MaxLevel: 3, MaxLevelHashes: [][]byte{{1}}}},
	}}}))))
	f.Add(endorserEnvelope(f, "tx", mustMarshal(f, rws(f, "cc", &kvrwset.KVRWSet{MetadataWrites: []*kvrwset.KVMetadataWrite{{Key: "a"}}}))))
	f.Add([]byte{0x0a, 0x02, 0x0a, 0x00})
	l := openTestLedger(f, f.TempDir())
	defer l.Close()
	seed := &kvrwset.KVRWSet{}
	for i := range 8 {
		seed.Writes = append(seed.Writes, &kvrwset.KVWrite{Key: string(rune('a' + i)), Value: []byte("v")})
	}
	commitRWSets(f, l, "seed", rws(f, "cc", seed))
	f.Fuzz(func(t *testing.T, raw []byte) {
		b := block.New(1, nil, [][]byte{raw, raw})
		snap, err := l.state.Snapshot()
		if err != nil {
			t.Fatal(err)
		}
		defer snap.Release()
		if _, err := prepareBlock(snap, b, allValid(2), nil, true); err != nil {
			t.Fatalf("validation error on outside bytes (should be a code): %v", err)
		}
	})
}

// TestAppliedHook checks Config.Applied: it names the namespaces a block's
// valid transactions wrote, state already holds the writes, and the block's
// height is not yet published, so a caller woken by Wait sees the hook's
// effect.
func TestAppliedHook(t *testing.T) {
	type call struct {
		namespaces []string
		height     uint64
		value      string
	}
	var calls []call
	var l *Ledger
	l, err := Open(Config{Dir: t.TempDir(), NoSync: true, Applied: func(namespaces []string) {
		slices.Sort(namespaces)
		qe, err := l.NewQueryExecutor()
		if err != nil {
			t.Errorf("query executor in the hook: %v", err)
			return
		}
		v, _ := qe.GetState("b", "k")
		qe.Done()
		calls = append(calls, call{namespaces, l.Height(), string(v)})
	}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })

	stale := &kvrwset.KVRWSet{Reads: []*kvrwset.KVRead{{Key: "k", Version: ver(9, 9)}}, Writes: []*kvrwset.KVWrite{{Key: "x", Value: []byte("x")}}}
	codes := commitRWSets(t, l, "b0-", rws(t, "b", writes("k", "v1"), "a", writes("k", "v")), rws(t, "c", stale))
	if codes[1] != mvcc {
		t.Fatalf("tx 1: %v, want MVCC_READ_CONFLICT", codes[1])
	}
	commitRWSets(t, l, "b1-", rws(t, "b", &kvrwset.KVRWSet{Reads: []*kvrwset.KVRead{{Key: "k", Version: ver(9, 9)}}}))
	want := []call{
		{[]string{"a", "b"}, 0, "v1"}, // the invalid tx's namespace c is not named
		{[]string{}, 1, "v1"},         // nothing valid written
	}
	if len(calls) != len(want) {
		t.Fatalf("%d calls, want %d: %+v", len(calls), len(want), calls)
	}
	for i := range want {
		if !slices.Equal(calls[i].namespaces, want[i].namespaces) || calls[i].height != want[i].height || calls[i].value != want[i].value {
			t.Errorf("call %d: %+v, want %+v", i, calls[i], want[i])
		}
	}
}
