package chaincode

import (
	"context"
	"strings"
	"testing"

	"github.com/hyperledger/fabric-protos-go-apiv2/peer"
	"google.golang.org/protobuf/proto"
)

// FuzzHandleRequest feeds arbitrary chaincode requests to the request
// decoder and handlers: every one must get a RESPONSE or an ERROR for the
// same transaction, never a panic.
func FuzzHandleRequest(f *testing.F) {
	m := func(msg proto.Message) []byte { b, _ := proto.Marshal(msg); return b }
	seeds := []struct {
		t       peer.ChaincodeMessage_Type
		payload []byte
	}{
		{peer.ChaincodeMessage_GET_STATE, m(&peer.GetState{Key: "k1"})},
		{peer.ChaincodeMessage_GET_STATE_MULTIPLE, m(&peer.GetStateMultiple{Keys: []string{"k1", "k2"}})},
		{peer.ChaincodeMessage_PUT_STATE, m(&peer.PutState{Key: "k", Value: []byte("v")})},
		{peer.ChaincodeMessage_DEL_STATE, m(&peer.DelState{Key: "k"})},
		{peer.ChaincodeMessage_WRITE_BATCH_STATE, m(&peer.WriteBatchState{Rec: []*peer.WriteRecord{{Key: "a", Type: peer.WriteRecord_PUT_STATE_METADATA, Metadata: &peer.StateMetadata{Metakey: "m"}}}})},
		{peer.ChaincodeMessage_GET_STATE_BY_RANGE, m(&peer.GetStateByRange{StartKey: "k", Metadata: m(&peer.QueryMetadata{PageSize: 2, Bookmark: "k2"})})},
		{peer.ChaincodeMessage_GET_STATE_BY_RANGE, m(&peer.GetStateByRange{})},
		{peer.ChaincodeMessage_QUERY_STATE_NEXT, m(&peer.QueryStateNext{Id: "1"})},
		{peer.ChaincodeMessage_QUERY_STATE_CLOSE, m(&peer.QueryStateClose{Id: "1"})},
		{peer.ChaincodeMessage_GET_STATE_METADATA, m(&peer.GetStateMetadata{Key: "k"})},
		{peer.ChaincodeMessage_PUT_STATE_METADATA, m(&peer.PutStateMetadata{Key: "k", Metadata: &peer.StateMetadata{Metakey: "m", Value: []byte("x")}})},
		{peer.ChaincodeMessage_GET_QUERY_RESULT, m(&peer.GetQueryResult{Query: "{}"})},
		{peer.ChaincodeMessage_GET_HISTORY_FOR_KEY, m(&peer.GetHistoryForKey{Key: "k"})},
		{peer.ChaincodeMessage_INVOKE_CHAINCODE, nil},
		{peer.ChaincodeMessage_INVOKE_CHAINCODE, m(&peer.ChaincodeSpec{ChaincodeId: &peer.ChaincodeID{Name: "cc/other"}, Input: &peer.ChaincodeInput{Args: [][]byte{[]byte("f")}}})},
		{peer.ChaincodeMessage_Type(77), []byte{0xff}},
	}
	for _, s := range seeds {
		f.Add(int32(s.t), s.payload)
	}
	f.Fuzz(func(t *testing.T, msgType int32, payload []byte) {
		s := New(Config{QueryBatchSize: 2})
		defer s.Close()
		h := &handler{s: s, log: s.log, txs: map[txKey]*txContext{}}
		world := map[string][]byte{nsKey("ns", "k1"): []byte("v1"), nsKey("ns", "k2"): []byte("v2"), nsKey("ns", "k3"): []byte("v3")}
		tx, err := h.addTx(context.Background(), Invocation{Namespace: "ns", ChannelID: "c", TxID: "t"}, newMemSim(world), 0)
		if err != nil {
			t.Fatal(err)
		}
		defer h.removeTx(tx)
		for range 2 { // twice, so QUERY_STATE_NEXT can find an open iterator
			reply := h.handleRequest(&peer.ChaincodeMessage{Type: peer.ChaincodeMessage_Type(msgType), Payload: payload, Txid: "t", ChannelId: "c"})
			if reply.Type != peer.ChaincodeMessage_RESPONSE && reply.Type != peer.ChaincodeMessage_ERROR {
				t.Fatalf("reply type %s", reply.Type)
			}
			if reply.Txid != "t" || reply.ChannelId != "c" {
				t.Fatalf("reply for %q/%q", reply.ChannelId, reply.Txid)
			}
		}
	})
}

// FuzzCalleeName splits arbitrary InvokeChaincode targets: the name never
// keeps a channel or version suffix, and a target without "/" names no
// channel.
func FuzzCalleeName(f *testing.F) {
	for _, seed := range []string{"cc", "cc/ch", "cc:1.0/ch", "cc:1.0", "/ch", "cc/", "a/b/c", ":", ""} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, target string) {
		name, channelID := calleeName(target)
		if strings.ContainsAny(name, "/:") {
			t.Fatalf("calleeName(%q) name = %q", target, name)
		}
		if !strings.Contains(target, "/") && channelID != "" {
			t.Fatalf("calleeName(%q) channel = %q", target, channelID)
		}
		if !strings.HasPrefix(target, name) {
			t.Fatalf("calleeName(%q) name %q is not a prefix", target, name)
		}
	})
}
