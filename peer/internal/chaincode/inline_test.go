package chaincode

import (
	"testing"

	"github.com/hyperledger/fabric-protos-go-apiv2/peer"
	"google.golang.org/protobuf/proto"
)

// blockingRangeSim is a memSim whose range scans wait until release is
// closed, so a request holds its transaction's lock for as long as a test
// wants.
type blockingRangeSim struct {
	*memSim
	started chan struct{}
	release chan struct{}
}

func (b blockingRangeSim) GetStateRangeScanIterator(ns, start, end string) (ResultsIterator, error) {
	close(b.started)
	<-b.release
	return b.memSim.GetStateRangeScanIterator(ns, start, end)
}

// TestInlineRequestWaitsForBusyTransaction: single-key requests are answered
// by the stream's dispatching goroutine (inlineRequest), except when their
// transaction's lock is held by a request still running. Then the request
// waits on its own goroutine, in order after the one holding the lock, and
// the stream keeps answering other transactions meanwhile.
func TestInlineRequestWaitsForBusyTransaction(t *testing.T) {
	checkNoLeaks(t)
	s := New(Config{})
	pki := newTestPKI(t)
	addr := startServer(t, s, pki)
	raw := registerRaw(t, addr, pki, "raw:1")
	world := map[string][]byte{nsKey("raw", "k"): []byte("v")}
	marshal := func(m proto.Message) []byte { b, _ := proto.Marshal(m); return b }

	busySim := blockingRangeSim{memSim: newMemSim(world), started: make(chan struct{}), release: make(chan struct{})}
	busy := goExecute(s, Invocation{PackageID: "raw:1", Namespace: "raw", ChannelID: channelID, TxID: "busy", Input: args("f")}, busySim)
	raw.recv() // TRANSACTION busy
	otherSim := newMemSim(world)
	other := goExecute(s, Invocation{PackageID: "raw:1", Namespace: "raw", ChannelID: channelID, TxID: "other", Input: args("f")}, otherSim)
	raw.recv() // TRANSACTION other

	// busy: a range scan that holds busy's lock, then a write behind it.
	raw.send(&peer.ChaincodeMessage{Type: peer.ChaincodeMessage_GET_STATE_BY_RANGE, Txid: "busy", ChannelId: channelID,
		Payload: marshal(&peer.GetStateByRange{StartKey: "a", EndKey: "z"})})
	<-busySim.started
	raw.send(&peer.ChaincodeMessage{Type: peer.ChaincodeMessage_PUT_STATE, Txid: "busy", ChannelId: channelID,
		Payload: marshal(&peer.PutState{Key: "k2", Value: []byte("v2")})})

	// other is answered meanwhile, inline.
	raw.send(&peer.ChaincodeMessage{Type: peer.ChaincodeMessage_GET_STATE, Txid: "other", ChannelId: channelID,
		Payload: marshal(&peer.GetState{Key: "k"})})
	if reply := raw.recv(); reply.Txid != "other" || reply.Type != peer.ChaincodeMessage_RESPONSE || string(reply.Payload) != "v" {
		t.Fatalf("GET_STATE of other while busy is locked: %s %s %q", reply.Txid, reply.Type, reply.Payload)
	}
	raw.send(&peer.ChaincodeMessage{Type: peer.ChaincodeMessage_PUT_STATE, Txid: "other", ChannelId: channelID,
		Payload: marshal(&peer.PutState{Key: "k3", Value: []byte("v3")})})
	if reply := raw.recv(); reply.Txid != "other" || reply.Type != peer.ChaincodeMessage_RESPONSE {
		t.Fatalf("PUT_STATE of other while busy is locked: %s %s %q", reply.Txid, reply.Type, reply.Payload)
	}

	// Released, busy's range answer and then its write's answer arrive.
	close(busySim.release)
	var types []peer.ChaincodeMessage_Type
	for range 2 {
		reply := raw.recv()
		if reply.Txid != "busy" {
			t.Fatalf("reply for %s, want busy", reply.Txid)
		}
		types = append(types, reply.Type)
	}
	if types[0] != peer.ChaincodeMessage_RESPONSE || types[1] != peer.ChaincodeMessage_RESPONSE {
		t.Fatalf("busy replies %v, want two RESPONSEs", types)
	}

	for _, tx := range []struct {
		id      string
		pending <-chan execResult
		sim     *memSim
		key     string
	}{{"busy", busy, busySim.memSim, "k2"}, {"other", other, otherSim, "k3"}} {
		raw.send(&peer.ChaincodeMessage{Type: peer.ChaincodeMessage_COMPLETED, Txid: tx.id, ChannelId: channelID,
			Payload: marshal(&peer.Response{Status: 200})})
		if got := <-tx.pending; got.err != nil || got.res.Response.Status != 200 {
			t.Fatalf("%s: %+v %v", tx.id, got.res, got.err)
		}
		if len(tx.sim.writes) != 1 || tx.sim.writes[tx.key] == nil {
			t.Fatalf("%s wrote %v, want %s", tx.id, tx.sim.writes, tx.key)
		}
	}
}
