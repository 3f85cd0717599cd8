package bench

import (
	"errors"
	"testing"

	pb "github.com/hyperledger/fabric-protos-go-apiv2/peer"
)

func filtered(number uint64, txs ...*pb.FilteredTransaction) *pb.FilteredBlock {
	return &pb.FilteredBlock{Number: number, FilteredTransactions: txs}
}

func ftx(id string, code pb.TxValidationCode) *pb.FilteredTransaction {
	return &pb.FilteredTransaction{Txid: id, TxValidationCode: code}
}

// outcome returns what ch holds now, failing if it holds nothing.
func outcome(t *testing.T, ch <-chan txOutcome) txOutcome {
	t.Helper()
	select {
	case o := <-ch:
		return o
	default:
		t.Fatal("no outcome delivered")
		return txOutcome{}
	}
}

func assertEmpty(t *testing.T, ch <-chan txOutcome) {
	t.Helper()
	select {
	case o := <-ch:
		t.Fatalf("unexpected outcome %+v", o)
	default:
	}
}

// TestTxEventsDeliversByTxID: each waiter gets its own transaction's code and
// block, once; the first of two transactions with one ID decides, as the
// peer's commit status does; blocks without the ID leave the waiter waiting.
func TestTxEventsDeliversByTxID(t *testing.T) {
	e := newTxEvents()
	a, b, dup := e.register("a"), e.register("b"), e.register("dup")
	e.deliver(filtered(7, ftx("other", pb.TxValidationCode_VALID)))
	assertEmpty(t, a)
	assertEmpty(t, b)

	e.deliver(filtered(8,
		ftx("b", pb.TxValidationCode_MVCC_READ_CONFLICT),
		ftx("dup", pb.TxValidationCode_VALID),
		ftx("dup", pb.TxValidationCode_DUPLICATE_TXID),
	))
	if o := outcome(t, b); o.err != nil || o.code != pb.TxValidationCode_MVCC_READ_CONFLICT || o.block != 8 {
		t.Errorf("b: %+v", o)
	}
	if o := outcome(t, dup); o.err != nil || o.code != pb.TxValidationCode_VALID || o.block != 8 {
		t.Errorf("dup: %+v, want the first envelope's VALID", o)
	}
	assertEmpty(t, a)

	e.deliver(filtered(9, ftx("a", pb.TxValidationCode_VALID), ftx("b", pb.TxValidationCode_VALID)))
	if o := outcome(t, a); o.err != nil || o.code != pb.TxValidationCode_VALID || o.block != 9 {
		t.Errorf("a: %+v", o)
	}
	assertEmpty(t, b) // already answered: a later envelope with its ID is not its status
	if n := len(e.waiting); n != 0 {
		t.Errorf("%d registrations left", n)
	}
}

// TestTxEventsForget: a transaction that was never submitted is not answered.
func TestTxEventsForget(t *testing.T) {
	e := newTxEvents()
	ch := e.register("x")
	e.forget("x")
	e.deliver(filtered(1, ftx("x", pb.TxValidationCode_VALID)))
	assertEmpty(t, ch)
}

// TestTxEventsStreamEnd: when the stream closes, every waiter fails with
// errEventsEnded, and so does every later registration, rather than waiting
// for a block that will not come.
func TestTxEventsStreamEnd(t *testing.T) {
	e := newTxEvents()
	waiting := e.register("w")
	blocks := make(chan *pb.FilteredBlock, 2)
	blocks <- filtered(3, ftx("done", pb.TxValidationCode_VALID))
	done := e.register("done")
	close(blocks)
	e.run(blocks)
	if o := outcome(t, done); o.err != nil || o.block != 3 {
		t.Errorf("done: %+v", o)
	}
	if o := outcome(t, waiting); !errors.Is(o.err, errEventsEnded) {
		t.Errorf("waiting: %+v, want errEventsEnded", o)
	}
	if o := outcome(t, e.register("late")); !errors.Is(o.err, errEventsEnded) {
		t.Errorf("late: %+v, want errEventsEnded", o)
	}
	if got := errorPhase(errEventsEnded); got != phaseStatus {
		t.Errorf("phase of errEventsEnded %q, want %q", got, phaseStatus)
	}
}
