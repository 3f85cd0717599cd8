package ledger

import (
	"fmt"
	"testing"

	"github.com/hyperledger/fabric-protos-go-apiv2/ledger/rwset"
	"github.com/hyperledger/fabric-protos-go-apiv2/ledger/rwset/kvrwset"
	"github.com/hyperledger/fabric-protos-go-apiv2/peer"
)

// TestTxValidationCodeRecentAndStored: the codes of recent blocks (held in
// memory), of blocks pushed out of the ring, and of blocks committed before a
// reopen (read from the block store) are the same answers.
func TestTxValidationCodeRecentAndStored(t *testing.T) {
	dir := t.TempDir()
	l := openTestLedger(t, dir)
	const blocks = recentFilterBlocks + 10
	for n := range blocks {
		// tx 1 reads key k at a version that is never current: MVCC_READ_CONFLICT.
		stale := &kvrwset.KVRWSet{Reads: []*kvrwset.KVRead{{Key: "k", Version: ver(0, 0)}}, Writes: []*kvrwset.KVWrite{{Key: "x", Value: []byte("x")}}}
		commitRWSets(t, l, fmt.Sprintf("b%d-", n), rws(t, "cc", writes("k", fmt.Sprint(n))), rws(t, "cc", stale))
	}
	want := func(n, tx int) peer.TxValidationCode {
		if tx == 1 {
			return mvcc
		}
		return valid
	}
	check := func(stage string) {
		t.Helper()
		for _, n := range []int{0, 1, 5, blocks - recentFilterBlocks - 1, blocks - recentFilterBlocks, blocks - 1} {
			for tx := range 2 {
				code, bn, found, err := l.TxValidationCode(fmt.Sprintf("b%d-%d", n, tx))
				if err != nil || !found || bn != uint64(n) || code != want(n, tx) {
					t.Errorf("%s: block %d tx %d: code %v block %d found %v err %v, want %v", stage, n, tx, code, bn, found, err, want(n, tx))
				}
			}
		}
		if _, _, found, err := l.TxValidationCode("nope"); found || err != nil {
			t.Errorf("%s: unknown tx found %v err %v", stage, found, err)
		}
	}
	check("after commit")
	if _, ok := l.filters.get(0); ok {
		t.Error("block 0's filter still held after the ring wrapped")
	}
	l.Close()
	l = openTestLedger(t, dir)
	defer l.Close()
	if _, ok := l.filters.get(blocks - 1); ok {
		t.Error("a reopened ledger holds filters it did not commit")
	}
	check("after reopen")
}

// BenchmarkTxValidationCode is one commit-status look-up of a transaction in a
// recent 100-transaction block: held in memory, and (reopened) read from the
// block store as before.
func BenchmarkTxValidationCode(b *testing.B) {
	dir := b.TempDir()
	l := openTestLedger(b, dir)
	for n := range 10 {
		sets := make([]*rwset.TxReadWriteSet, 100)
		for i := range sets {
			sets[i] = rws(b, "cc", writes(fmt.Sprintf("k%d-%d", n, i), "some value of moderate size, 64 bytes long..........."))
		}
		commitRWSets(b, l, fmt.Sprintf("b%d-", n), sets...)
	}
	for _, mode := range []string{"recent", "stored"} {
		if mode == "stored" {
			l.Close()
			l = openTestLedger(b, dir)
		}
		b.Run(mode, func(b *testing.B) {
			for i := 0; b.Loop(); i++ {
				if _, _, found, err := l.TxValidationCode(fmt.Sprintf("b%d-%d", 9-i%3, i%100)); err != nil || !found {
					b.Fatalf("found %v err %v", found, err)
				}
			}
		})
	}
	l.Close()
}
