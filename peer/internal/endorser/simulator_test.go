package endorser

import (
	"testing"

	"github.com/cairn-ledger/cairn/peer/internal/chaincode"
	"github.com/cairn-ledger/cairn/peer/internal/ledger"
)

// TestSimulatorOffersHistory: the chaincode runtime finds key history through
// the endorser's simulator (GetHistoryForKey would otherwise be refused as
// unsupported).
func TestSimulatorOffersHistory(t *testing.T) {
	l, err := ledger.Open(ledger.Config{Dir: t.TempDir(), NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	sim, err := l.NewTxSimulator("tx1")
	if err != nil {
		t.Fatal(err)
	}
	defer sim.Done()
	var s chaincode.TxSimulator = simulator{sim}
	hq, ok := s.(chaincode.HistoryQuerier)
	if !ok {
		t.Fatal("the endorser's simulator does not offer key history")
	}
	it, err := hq.GetHistoryForKey("basic", "asset1")
	if err != nil {
		t.Fatal(err)
	}
	defer it.Close()
	if km, err := it.Next(); err != nil || km != nil {
		t.Fatalf("history of a key never written: %v, %v", km, err)
	}
}
