package localnet_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os/exec"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/hyperledger/fabric-gateway/pkg/client"
	cb "github.com/hyperledger/fabric-protos-go-apiv2/common"
	"github.com/hyperledger/fabric-protos-go-apiv2/ledger/rwset"
	"github.com/hyperledger/fabric-protos-go-apiv2/ledger/rwset/kvrwset"
	pb "github.com/hyperledger/fabric-protos-go-apiv2/peer"
	"google.golang.org/protobuf/proto"
)

// TestPeerSurvivesSIGKILL kills the peer while transactions commit, restarts
// it, and checks that every transaction reported VALID is in its ledger and
// that its state equals a replay of the chain it holds.
func TestPeerSurvivesSIGKILL(t *testing.T) {
	n := startNetwork(t)
	peerName := n.Info.Organizations[0].Peers[0].Name
	ccName := "basic." + peerName

	// Submit from several clients until the peer dies; remember what was VALID.
	var (
		mu    sync.Mutex
		valid = map[string]string{} // tx ID -> asset ID
	)
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	for c := 0; c < 4; c++ {
		wg.Add(1)
		go func(c int) {
			defer wg.Done()
			gw, conn, err := n.Gateway(0, "user1")
			if err != nil {
				t.Error(err)
				return
			}
			defer conn.Close()
			defer gw.Close()
			contract := gw.GetNetwork(n.Info.Channel).GetContract("basic")
			for i := 0; ctx.Err() == nil; i++ {
				id := fmt.Sprintf("crash-%d-%d", c, i)
				_, commit, err := contract.SubmitAsync("CreateAsset", client.WithArguments(id, "green", "1", "X", "1"))
				if err != nil {
					time.Sleep(20 * time.Millisecond)
					continue
				}
				st, err := commit.Status()
				if err == nil && st.Successful {
					mu.Lock()
					valid[st.TransactionID] = id
					mu.Unlock()
				}
			}
		}(c)
	}
	time.Sleep(2 * time.Second)
	if err := n.Kill(peerName, true); err != nil {
		t.Fatal(err)
	}
	time.Sleep(300 * time.Millisecond)
	cancel()
	wg.Wait()
	mu.Lock()
	committed := len(valid)
	mu.Unlock()
	if committed == 0 {
		t.Fatal("no transaction committed before the kill; the test proves nothing")
	}
	t.Logf("%d transactions reported VALID before SIGKILL", committed)

	rctx, rcancel := context.WithTimeout(context.Background(), time.Minute)
	defer rcancel()
	if err := n.Restart(rctx, peerName); err != nil {
		t.Fatalf("restart peer: %v", err)
	}
	// The chaincode process loses its peer and exits; start it again if so.
	for _, p := range n.Processes() {
		if p.Name == ccName && syscall.Kill(p.PID, 0) != nil {
			if err := n.Restart(rctx, ccName); err != nil {
				t.Fatalf("restart chaincode: %v", err)
			}
		}
	}

	gw, conn, err := n.Gateway(0, "user1")
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	defer gw.Close()
	network := gw.GetNetwork(n.Info.Channel)
	qscc := network.GetContract("qscc")

	// Every VALID transaction is in the restarted peer's ledger, VALID.
	for txID := range valid {
		var raw []byte
		deadline := time.Now().Add(30 * time.Second)
		for {
			raw, err = qscc.EvaluateTransaction("GetTransactionByID", n.Info.Channel, txID)
			if err == nil || time.Now().After(deadline) {
				break
			}
			time.Sleep(100 * time.Millisecond)
		}
		if err != nil {
			t.Fatalf("transaction %s reported VALID is missing after restart: %s", txID, errorText(err))
		}
		pt := &pb.ProcessedTransaction{}
		if err := proto.Unmarshal(raw, pt); err != nil {
			t.Fatal(err)
		}
		if pt.ValidationCode != int32(pb.TxValidationCode_VALID) {
			t.Fatalf("transaction %s is %v after restart, was VALID", txID, pb.TxValidationCode(pt.ValidationCode))
		}
	}

	// The state equals a replay of the peer's chain: the writes of its VALID
	// transactions to namespace basic, applied in order.
	raw, err := qscc.EvaluateTransaction("GetChainInfo", n.Info.Channel)
	if err != nil {
		t.Fatal(errorText(err))
	}
	info := &cb.BlockchainInfo{}
	if err := proto.Unmarshal(raw, info); err != nil {
		t.Fatal(err)
	}
	replay := map[string][]byte{}
	for num := uint64(0); num < info.Height; num++ {
		raw, err := qscc.EvaluateTransaction("GetBlockByNumber", n.Info.Channel, fmt.Sprint(num))
		if err != nil {
			t.Fatal(errorText(err))
		}
		b := &cb.Block{}
		if err := proto.Unmarshal(raw, b); err != nil {
			t.Fatal(err)
		}
		filter := b.Metadata.Metadata[cb.BlockMetadataIndex_TRANSACTIONS_FILTER]
		if len(filter) != len(b.Data.Data) {
			t.Fatalf("block %d has %d validation codes for %d transactions", num, len(filter), len(b.Data.Data))
		}
		for i, data := range b.Data.Data {
			if pb.TxValidationCode(filter[i]) != pb.TxValidationCode_VALID {
				continue
			}
			for key, val := range basicWrites(t, data) {
				if val == nil {
					delete(replay, key)
				} else {
					replay[key] = val
				}
			}
		}
	}
	var assets []json.RawMessage
	deadline := time.Now().Add(30 * time.Second)
	for {
		raw, err = network.GetContract("basic").EvaluateTransaction("GetAllAssets")
		if err == nil || time.Now().After(deadline) {
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	if err != nil {
		t.Fatalf("chaincode not serving after restart: %s", errorText(err))
	}
	if err := json.Unmarshal(raw, &assets); err != nil {
		t.Fatal(err)
	}
	state := map[string][]byte{}
	for _, a := range assets {
		var id struct{ ID string }
		if err := json.Unmarshal(a, &id); err != nil {
			t.Fatal(err)
		}
		state[id.ID] = a
	}
	if len(state) != len(replay) {
		t.Fatalf("state holds %d assets, the replayed chain %d", len(state), len(replay))
	}
	for k, v := range replay {
		if !bytes.Equal(bytes.TrimSpace(state[k]), bytes.TrimSpace(v)) {
			t.Fatalf("asset %s: state %s, replay %s", k, state[k], v)
		}
	}
	for _, id := range valid {
		if _, ok := state[id]; !ok {
			t.Fatalf("asset %s of a VALID transaction is missing from state", id)
		}
	}

	// Offline verification of the restarted peer's ledger: hashes, chain,
	// orderer signatures, one code per transaction.
	if err := n.Kill(peerName, false); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(cairnBin, "peer", "ledger", "verify", "--json", "--config", filepath.Join(n.Dir, "nodes", peerName, "peer.yaml")).CombinedOutput()
	if err != nil {
		t.Fatalf("ledger verify: %v\n%s", err, out)
	}
	var report struct {
		Channels []struct {
			Channel     string
			Height      uint64
			Valid       int
			StateDigest string
			StateKeys   int
		}
	}
	if err := json.Unmarshal(out, &report); err != nil {
		t.Fatalf("ledger verify output: %v\n%s", err, out)
	}
	if len(report.Channels) != 1 || report.Channels[0].Height < info.Height || report.Channels[0].Valid < len(valid) || len(report.Channels[0].StateDigest) != 64 {
		t.Fatalf("ledger verify report %+v (chain height %d, %d VALID)", report.Channels, info.Height, len(valid))
	}
}

// basicWrites decodes the writes of a transaction to namespace basic (nil
// value for a delete), straight from the protos.
func basicWrites(t *testing.T, envBytes []byte) map[string][]byte {
	t.Helper()
	env := &cb.Envelope{}
	payload := &cb.Payload{}
	ch := &cb.ChannelHeader{}
	if proto.Unmarshal(envBytes, env) != nil || proto.Unmarshal(env.Payload, payload) != nil || proto.Unmarshal(payload.Header.ChannelHeader, ch) != nil {
		t.Fatal("undecodable VALID transaction")
	}
	if ch.Type != int32(cb.HeaderType_ENDORSER_TRANSACTION) {
		return nil
	}
	tx := &pb.Transaction{}
	actionPayload := &pb.ChaincodeActionPayload{}
	prp := &pb.ProposalResponsePayload{}
	act := &pb.ChaincodeAction{}
	rws := &rwset.TxReadWriteSet{}
	for _, step := range []struct {
		raw []byte
		m   proto.Message
	}{{payload.Data, tx}} {
		if err := proto.Unmarshal(step.raw, step.m); err != nil {
			t.Fatal(err)
		}
	}
	if err := proto.Unmarshal(tx.Actions[0].Payload, actionPayload); err != nil {
		t.Fatal(err)
	}
	if err := proto.Unmarshal(actionPayload.Action.ProposalResponsePayload, prp); err != nil {
		t.Fatal(err)
	}
	if err := proto.Unmarshal(prp.Extension, act); err != nil {
		t.Fatal(err)
	}
	if err := proto.Unmarshal(act.Results, rws); err != nil {
		t.Fatal(err)
	}
	out := map[string][]byte{}
	for _, ns := range rws.NsRwset {
		if ns.Namespace != "basic" {
			continue
		}
		kv := &kvrwset.KVRWSet{}
		if err := proto.Unmarshal(ns.Rwset, kv); err != nil {
			t.Fatal(err)
		}
		for _, w := range kv.Writes {
			if w.IsDelete {
				out[w.Key] = nil
			} else {
				out[w.Key] = w.Value
			}
		}
	}
	return out
}
