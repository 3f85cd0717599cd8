package endorser

import (
	"context"
	"strings"
	"testing"

	"github.com/cairn-ledger/cairn/internal/channelconfig"
	"github.com/cairn-ledger/cairn/peer/internal/ledger"
	"github.com/cairn-ledger/cairn/peer/internal/lifecycle"
)

// fakeChannel is a channel without configuration: enough for the paths
// that refuse a call before its ACL is checked, and for simulations.
type fakeChannel struct{ l *ledger.Ledger }

func (fakeChannel) Bundle() *channelconfig.Bundle { return nil }
func (c fakeChannel) NewTxSimulator(txID string) (*ledger.TxSimulator, error) {
	return c.l.NewTxSimulator(txID)
}
func (fakeChannel) TxIDExists(string) (bool, error)                { return false, nil }
func (fakeChannel) ChaincodePackageID(name string) (string, error) { return name + ":pkg", nil }
func (fakeChannel) ChaincodeInfo(name string) (string, *lifecycle.ChaincodeDefinition, error) {
	return name + ":pkg", &lifecycle.ChaincodeDefinition{Name: name, Version: "1.0", Sequence: 1}, nil
}

type fakeChannels map[string]Channel

func (f fakeChannels) Channel(id string) (Channel, bool) { ch, ok := f[id]; return ch, ok }

func openLedger(t *testing.T) *ledger.Ledger {
	t.Helper()
	l, err := ledger.Open(ledger.Config{Dir: t.TempDir(), NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	return l
}

func TestCalleesRefuse(t *testing.T) {
	here, there := fakeChannel{openLedger(t)}, fakeChannel{openLedger(t)}
	e := New(Config{
		Channels: fakeChannels{"here": here, "there": there},
		System:   map[string]SystemChaincode{"_lifecycle": nil, "qscc": nil},
	})
	c := &callees{e: e, channel: here, channelID: "here"}
	ctx := context.Background()

	if _, err := c.Resolve(ctx, "here", "qscc"); err == nil || err.Error() != "system chaincode qscc cannot be invoked with a cc2cc invocation" {
		t.Fatalf("system chaincode: %v", err)
	}
	if _, err := c.Resolve(ctx, "nowhere", "cc"); err == nil || err.Error() != "failed to find ledger for channel: nowhere" {
		t.Fatalf("unknown channel: %v", err)
	}
	if _, _, err := c.ChannelState(ctx, "nowhere", "tx1"); err == nil || !strings.Contains(err.Error(), "nowhere") {
		t.Fatalf("state of unknown channel: %v", err)
	}
	if got := c.called(); len(got) != 0 {
		t.Fatalf("refused calls recorded: %v", got)
	}

	sim, release, err := c.ChannelState(ctx, "there", "tx1")
	if err != nil {
		t.Fatal(err)
	}
	if v, err := sim.GetState("cc", "k"); err != nil || v != nil {
		t.Fatalf("read on other channel = %q, %v", v, err)
	}
	release()
	if _, err := sim.GetState("cc", "k"); err == nil {
		t.Fatal("simulator still usable after release")
	}
}

func TestInterest(t *testing.T) {
	var none *callees
	if got := interest("top", none.called()); len(got.Chaincodes) != 1 || got.Chaincodes[0].Name != "top" {
		t.Fatalf("interest without calls = %v", got)
	}
	c := &callees{names: []string{"b", "top", "c"}}
	got := interest("top", c.called())
	var names []string
	for _, cc := range got.Chaincodes {
		names = append(names, cc.Name)
		if len(cc.CollectionNames) != 0 || cc.NoPrivateReads {
			t.Fatalf("call %v has collection details", cc)
		}
	}
	if strings.Join(names, ",") != "top,b,c" {
		t.Fatalf("interest = %v", names)
	}
}
