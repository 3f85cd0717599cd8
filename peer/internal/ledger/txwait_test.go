package ledger

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/hyperledger/fabric-protos-go-apiv2/ledger/rwset"
	"github.com/hyperledger/fabric-protos-go-apiv2/ledger/rwset/kvrwset"
	"github.com/hyperledger/fabric-protos-go-apiv2/peer"

	"github.com/cairn-ledger/cairn/internal/proccpu"
)

type waitResult struct {
	code     peer.TxValidationCode
	blockNum uint64
	err      error
}

// startWait runs WaitTxValidationCode in the background.
func startWait(ctx context.Context, l *Ledger, txID string) <-chan waitResult {
	out := make(chan waitResult, 1)
	go func() {
		code, n, err := l.WaitTxValidationCode(ctx, txID)
		out <- waitResult{code, n, err}
	}()
	return out
}

// waitersFor is how many callers wait for txID now.
func waitersFor(l *Ledger, txID string) int {
	l.waiters.mu.Lock()
	defer l.waiters.mu.Unlock()
	return len(l.waiters.m[txID])
}

// untilWaiting returns once n callers wait for txID, so that a commit that
// follows is one the waiters had to be told about.
func untilWaiting(t *testing.T, l *Ledger, txID string, n int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for waitersFor(l, txID) < n {
		if time.Now().After(deadline) {
			t.Fatalf("%d waiters for %s, want %d", waitersFor(l, txID), txID, n)
		}
		time.Sleep(time.Millisecond)
	}
}

func receive(t *testing.T, ch <-chan waitResult) waitResult {
	t.Helper()
	select {
	case r := <-ch:
		return r
	case <-time.After(10 * time.Second):
		t.Fatal("WaitTxValidationCode did not return")
		return waitResult{}
	}
}

func TestWaitTxValidationCode(t *testing.T) {
	l := newTestLedger(t)
	ctx := context.Background()

	// Committed before the call: answered from the index at once.
	commitRWSets(t, l, "early-", rws(t, "cc", writes("a", "1")))
	if r := receive(t, startWait(ctx, l, "early-0")); r.err != nil || r.code != valid || r.blockNum != 0 {
		t.Fatalf("committed transaction: %+v", r)
	}

	// Waiting before the commit: two callers for one transaction, one for
	// a transaction that comes a block later, one for a conflict.
	first, second := startWait(ctx, l, "b1-0"), startWait(ctx, l, "b1-0")
	later := startWait(ctx, l, "b2-0")
	conflict := startWait(ctx, l, "b1-1")
	untilWaiting(t, l, "b1-0", 2)
	untilWaiting(t, l, "b2-0", 1)
	untilWaiting(t, l, "b1-1", 1)
	stale := &kvrwset.KVRWSet{Reads: []*kvrwset.KVRead{{Key: "a", Version: ver(7, 7)}}, Writes: []*kvrwset.KVWrite{{Key: "x", Value: []byte("x")}}}
	commitRWSets(t, l, "b1-", rws(t, "cc", writes("b", "1")), rws(t, "cc", stale))
	for name, ch := range map[string]<-chan waitResult{"first": first, "second": second} {
		if r := receive(t, ch); r.err != nil || r.code != valid || r.blockNum != 1 {
			t.Errorf("%s waiter of b1-0: %+v, want VALID in block 1", name, r)
		}
	}
	if r := receive(t, conflict); r.err != nil || r.code != mvcc || r.blockNum != 1 {
		t.Errorf("waiter of b1-1: %+v, want MVCC_READ_CONFLICT in block 1", r)
	}
	select {
	case r := <-later:
		t.Fatalf("waiter of b2-0 returned after block 1, which does not carry it: %+v", r)
	default:
	}
	if n := waitersFor(l, "b2-0"); n != 1 {
		t.Fatalf("%d waiters for b2-0 after block 1, want 1", n)
	}
	commitRWSets(t, l, "b2-", rws(t, "cc", writes("c", "1")))
	if r := receive(t, later); r.err != nil || r.code != valid || r.blockNum != 2 {
		t.Errorf("waiter of b2-0: %+v, want VALID in block 2", r)
	}
	for _, id := range []string{"early-0", "b1-0", "b1-1", "b2-0"} {
		if n := waitersFor(l, id); n != 0 {
			t.Errorf("%d waiters left for %s after every wait returned", n, id)
		}
	}
}

// TestWaitTxValidationCodeFirstOccurrence: a tx ID carried twice by one
// block answers with its first envelope's code, as TxValidationCode does.
func TestWaitTxValidationCodeFirstOccurrence(t *testing.T) {
	l := newTestLedger(t)
	ch := startWait(context.Background(), l, "dup")
	untilWaiting(t, l, "dup", 1)
	set := mustMarshal(t, rws(t, "cc", writes("k", "v")))
	envs := [][]byte{endorserEnvelope(t, "dup", set), endorserEnvelope(t, "dup", set)}
	codes := []peer.TxValidationCode{peer.TxValidationCode_ENDORSEMENT_POLICY_FAILURE, valid}
	if _, err := l.Commit(nextBlock(t, l, envs...), codes); err != nil {
		t.Fatal(err)
	}
	r := receive(t, ch)
	code, n, found, err := l.TxValidationCode("dup")
	if err != nil || !found {
		t.Fatalf("TxValidationCode: found %v err %v", found, err)
	}
	if r.err != nil || r.code != peer.TxValidationCode_ENDORSEMENT_POLICY_FAILURE || r.code != code || r.blockNum != n {
		t.Errorf("wait gave %+v, TxValidationCode %v in block %d; want ENDORSEMENT_POLICY_FAILURE from both", r, code, n)
	}
}

// TestWaitTxValidationCodeAfterApply: a transaction whose block is stored but
// whose state is not yet applied is not reported committed, so a client that
// reads after its commit status sees its writes.
func TestWaitTxValidationCodeAfterApply(t *testing.T) {
	l := newTestLedger(t)
	var during <-chan waitResult
	l.beforeApply = func() error {
		during = startWait(context.Background(), l, "b0-0")
		select {
		case r := <-during:
			t.Errorf("reported %+v before the block's state was applied", r)
		case <-time.After(100 * time.Millisecond):
		}
		return nil
	}
	commitRWSets(t, l, "b0-", rws(t, "cc", writes("k", "v")))
	if r := receive(t, during); r.err != nil || r.code != valid || r.blockNum != 0 {
		t.Fatalf("after apply: %+v, want VALID in block 0", r)
	}
	q, err := l.NewQueryExecutor()
	if err != nil {
		t.Fatal(err)
	}
	defer q.Done()
	if v, err := q.GetState("cc", "k"); err != nil || string(v) != "v" {
		t.Errorf("state after the commit status: %q, %v", v, err)
	}
}

func TestWaitTxValidationCodeEnds(t *testing.T) {
	l := newTestLedger(t)
	ctx, cancel := context.WithCancel(context.Background())
	cancelled := startWait(ctx, l, "never")
	untilWaiting(t, l, "never", 1)
	cancel()
	if r := receive(t, cancelled); !errors.Is(r.err, context.Canceled) {
		t.Errorf("cancelled wait: %+v, want context.Canceled", r)
	}
	if n := waitersFor(l, "never"); n != 0 {
		t.Errorf("%d waiters left after the wait was cancelled", n)
	}

	closing := startWait(context.Background(), l, "never")
	untilWaiting(t, l, "never", 1)
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	if r := receive(t, closing); !errors.Is(r.err, ErrClosed) {
		t.Errorf("wait on a closed ledger: %+v, want ErrClosed", r)
	}
	if _, _, err := l.WaitTxValidationCode(context.Background(), ""); err == nil {
		t.Error("empty tx ID accepted")
	}
}

// TestWaitTxValidationCodeConcurrent races waits against the commits of their
// transactions: every wait returns its own transaction's block, whether it
// started before, during or after that block's commit.
func TestWaitTxValidationCodeConcurrent(t *testing.T) {
	l := newTestLedger(t)
	const blocks, perBlock = 40, 5
	var wg sync.WaitGroup
	errs := make(chan error, blocks*perBlock)
	for n := range blocks {
		for i := range perBlock {
			wg.Go(func() {
				id := fmt.Sprintf("b%d-%d", n+1, i) // block 0 is committed below
				code, got, err := l.WaitTxValidationCode(context.Background(), id)
				if err != nil || code != valid || got != uint64(n+1) {
					errs <- fmt.Errorf("%s: code %v block %d err %v, want VALID in block %d", id, code, got, err, n+1)
				}
			})
		}
	}
	commitRWSets(t, l, "b0-", rws(t, "cc", writes("k", "0")))
	for n := range blocks {
		sets := make([]*rwset.TxReadWriteSet, perBlock)
		for i := range sets {
			sets[i] = rws(t, "cc", writes(fmt.Sprintf("k%d-%d", n, i), "v"))
		}
		commitRWSets(t, l, fmt.Sprintf("b%d-", n+1), sets...)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

// BenchmarkCommitStatusWaits commits blocks of 50 transactions while callers
// wait for transactions committed up to `ahead` blocks later — 200 or 1,000
// outstanding, as a gateway peer's CommitStatus calls under load; cpu-ns/tx
// is the process's CPU time per committed transaction, commit included (the
// waiters run on other cores than the committer). "poll" is how CommitStatus
// waited before WaitTxValidationCode: wake on every block, look the
// transaction up again.
func BenchmarkCommitStatusWaits(b *testing.B) {
	const perBlock = 50
	poll := func(ctx context.Context, l *Ledger, txID string) {
		for {
			h := l.Height()
			if _, _, found, err := l.TxValidationCode(txID); err != nil || found {
				return
			}
			if l.Wait(ctx, h) != nil {
				return
			}
		}
	}
	registry := func(ctx context.Context, l *Ledger, txID string) {
		_, _, _ = l.WaitTxValidationCode(ctx, txID)
	}
	for _, ahead := range []int{4, 20} {
		for _, mode := range []struct {
			name string
			wait func(context.Context, *Ledger, string)
		}{{"poll", poll}, {"registry", registry}} {
			b.Run(fmt.Sprintf("waiters=%d/%s", ahead*perBlock, mode.name), func(b *testing.B) {
				l := newTestLedger(b)
				ctx := context.Background()
				var wg sync.WaitGroup
				blocks := b.N/perBlock + 1
				id := func(n, i int) string { return fmt.Sprintf("b%d-%d", n, i) }
				startWaiters := func(n int) {
					if n >= blocks {
						return
					}
					for i := range perBlock {
						wg.Go(func() { mode.wait(ctx, l, id(n, i)) })
					}
				}
				for n := range ahead {
					startWaiters(n)
				}
				cpu0 := proccpu.Self()
				b.ResetTimer()
				for n := range blocks {
					sets := make([]*rwset.TxReadWriteSet, perBlock)
					for i := range sets {
						sets[i] = rws(b, "cc", writes(id(n, i), "v"))
					}
					commitRWSets(b, l, fmt.Sprintf("b%d-", n), sets...)
					startWaiters(n + ahead)
				}
				wg.Wait()
				b.StopTimer()
				b.ReportMetric(float64((proccpu.Self()-cpu0).Nanoseconds())/float64(blocks*perBlock), "cpu-ns/tx")
			})
		}
	}
}
