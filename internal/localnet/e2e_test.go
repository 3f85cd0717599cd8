package localnet_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/asn1"
	"encoding/json"
	"errors"
	"fmt"
	"math/big"
	"strings"
	"testing"
	"time"

	"github.com/hyperledger/fabric-gateway/pkg/client"
	cb "github.com/hyperledger/fabric-protos-go-apiv2/common"
	gp "github.com/hyperledger/fabric-protos-go-apiv2/gateway"
	pb "github.com/hyperledger/fabric-protos-go-apiv2/peer"
	"google.golang.org/grpc/status"

	"github.com/cairn-ledger/cairn/internal/localnet"
	"github.com/cairn-ledger/cairn/internal/netconfig"
)

// startNetwork brings up the smallest network (one orderer, one peer of
// Org1MSP) with the same code as `cairn network up` and stops it when the
// test ends. The default consortium has tests of its own (consortium_test.go).
func startNetwork(t *testing.T) *localnet.Network {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var progress bytes.Buffer
	n, err := localnet.Up(ctx, localnet.Options{Dir: t.TempDir(), Binary: cairnBin, Network: netconfig.Default(), Progress: &progress, NoSync: false})
	if err != nil {
		t.Fatalf("network up: %v\n%s", err, progress.String())
	}
	t.Cleanup(func() {
		if err := n.Stop(); err != nil {
			t.Errorf("network stop: %v", err)
		}
	})
	return n
}

type asset struct {
	ID             string
	Color          string
	Size           int
	Owner          string
	AppraisedValue int
}

// errorText flattens a gateway client error with its gRPC details, where
// Fabric's gateway puts the chaincode's message.
func errorText(err error) string {
	var b strings.Builder
	b.WriteString(err.Error())
	if st, ok := status.FromError(err); ok {
		for _, d := range st.Details() {
			if ed, ok := d.(*gp.ErrorDetail); ok {
				fmt.Fprintf(&b, " | %s %s: %s", ed.MspId, ed.Address, ed.Message)
			}
		}
	}
	return b.String()
}

func TestGatewayClientAgainstLocalNetwork(t *testing.T) {
	n := startNetwork(t)
	gw, conn, err := n.Gateway(0, "user1")
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	defer gw.Close()
	network := gw.GetNetwork(n.Info.Channel)
	contract := network.GetContract("basic")

	evCtx, evCancel := context.WithCancel(context.Background())
	defer evCancel()
	events, err := network.ChaincodeEvents(evCtx, "basic")
	if err != nil {
		t.Fatal(err)
	}

	id := fmt.Sprintf("asset-%d", time.Now().UnixNano())
	if _, err := contract.SubmitTransaction("CreateAsset", id, "blue", "5", "Tomoko", "300"); err != nil {
		t.Fatalf("CreateAsset: %s", errorText(err))
	}
	raw, err := contract.EvaluateTransaction("ReadAsset", id)
	if err != nil {
		t.Fatalf("ReadAsset: %s", errorText(err))
	}
	var got asset
	if err := json.Unmarshal(raw, &got); err != nil {
		t.Fatal(err)
	}
	if want := (asset{ID: id, Color: "blue", Size: 5, Owner: "Tomoko", AppraisedValue: 300}); got != want {
		t.Fatalf("ReadAsset = %+v, want %+v", got, want)
	}

	// TransferAsset returns the previous owner; its commit status is VALID.
	result, commit, err := contract.SubmitAsync("TransferAsset", client.WithArguments(id, "Max"))
	if err != nil {
		t.Fatalf("TransferAsset: %s", errorText(err))
	}
	if string(result) != "Tomoko" {
		t.Fatalf("TransferAsset returned %q, want the old owner Tomoko", result)
	}
	st, err := commit.Status()
	if err != nil {
		t.Fatal(err)
	}
	if st.Code != pb.TxValidationCode_VALID || !st.Successful {
		t.Fatalf("commit status %v, want VALID", st.Code)
	}

	raw, err = contract.EvaluateTransaction("GetAllAssets")
	if err != nil {
		t.Fatalf("GetAllAssets: %s", errorText(err))
	}
	var all []asset
	if err := json.Unmarshal(raw, &all); err != nil {
		t.Fatal(err)
	}
	found := false
	for _, a := range all {
		if a.ID == id {
			found = a.Owner == "Max"
		}
	}
	if !found {
		t.Fatalf("GetAllAssets %+v does not list %s owned by Max", all, id)
	}

	// A chaincode error surfaces on submit as EndorseError carrying the message.
	_, err = contract.SubmitTransaction("TransferAsset", "no-such-asset", "Max")
	var endorseErr *client.EndorseError
	if !errors.As(err, &endorseErr) {
		t.Fatalf("submit of a failing transaction: got %T %v, want *client.EndorseError", err, err)
	}
	if msg := errorText(err); !strings.Contains(msg, "the asset no-such-asset does not exist") {
		t.Fatalf("EndorseError does not carry the chaincode message: %s", msg)
	}
	_, err = contract.EvaluateTransaction("ReadAsset", "no-such-asset")
	if err == nil || !strings.Contains(errorText(err), "the asset no-such-asset does not exist") {
		t.Fatalf("evaluate of a failing transaction: %v", err)
	}

	// Chaincode events of the two writes arrive in order.
	wantEvents := []string{"CreateAsset", "TransferAsset"}
	for _, name := range wantEvents {
		select {
		case ev := <-events:
			if ev.EventName != name {
				t.Fatalf("event %q, want %q", ev.EventName, name)
			}
			if !strings.Contains(string(ev.Payload), id) {
				t.Fatalf("event %s payload %s does not name %s", name, ev.Payload, id)
			}
		case <-time.After(30 * time.Second):
			t.Fatalf("no %s chaincode event", name)
		}
	}
}

func TestMVCCConflictInOneBlock(t *testing.T) {
	n := startNetwork(t)
	gw, conn, err := n.Gateway(0, "user1")
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	defer gw.Close()
	contract := gw.GetNetwork(n.Info.Channel).GetContract("basic")
	id := "hot-asset"
	if _, err := contract.SubmitTransaction("CreateAsset", id, "red", "1", "A", "10"); err != nil {
		t.Fatal(errorText(err))
	}
	// Endorse both transfers against the same state, then submit both: they
	// read the same version of the key, so only the first in the block wins.
	var txs []*client.Transaction
	for _, owner := range []string{"B", "C"} {
		prop, err := contract.NewProposal("TransferAsset", client.WithArguments(id, owner))
		if err != nil {
			t.Fatal(err)
		}
		tx, err := prop.Endorse()
		if err != nil {
			t.Fatal(errorText(err))
		}
		txs = append(txs, tx)
	}
	var commits []*client.Commit
	for _, tx := range txs {
		c, err := tx.Submit()
		if err != nil {
			t.Fatal(errorText(err))
		}
		commits = append(commits, c)
	}
	var codes []pb.TxValidationCode
	blocks := map[uint64]bool{}
	for _, c := range commits {
		st, err := c.Status()
		if err != nil {
			t.Fatal(err)
		}
		codes = append(codes, st.Code)
		blocks[st.BlockNumber] = true
	}
	if len(blocks) != 1 {
		t.Fatalf("the two transactions landed in blocks %v; the test needs them in one block", blocks)
	}
	if codes[0] != pb.TxValidationCode_VALID || codes[1] != pb.TxValidationCode_MVCC_READ_CONFLICT {
		t.Fatalf("codes %v, want [VALID MVCC_READ_CONFLICT]", codes)
	}
	// The conflicting transaction surfaces as the client's CommitError.
	_, err = contract.SubmitTransaction("TransferAsset", id, "D")
	if err != nil {
		t.Fatalf("a later transfer after the conflict failed: %s", errorText(err))
	}
}

// asn1Header is written out here, independently of internal/block, so the
// test checks the stored chain against Fabric's rule rather than our code.
type asn1Header struct {
	Number       *big.Int
	PreviousHash []byte
	DataHash     []byte
}

func headerHash(t *testing.T, h *cb.BlockHeader) []byte {
	der, err := asn1.Marshal(asn1Header{Number: new(big.Int).SetUint64(h.Number), PreviousHash: h.PreviousHash, DataHash: h.DataHash})
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(der)
	return sum[:]
}

func TestStoredChainHashes(t *testing.T) {
	n := startNetwork(t)
	gw, conn, err := n.Gateway(0, "user1")
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	defer gw.Close()
	network := gw.GetNetwork(n.Info.Channel)
	if _, err := network.GetContract("basic").SubmitTransaction("CreateAsset", "chain-1", "red", "1", "A", "10"); err != nil {
		t.Fatal(errorText(err))
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	blocks, err := network.BlockEvents(ctx, client.WithStartBlock(0))
	if err != nil {
		t.Fatal(err)
	}
	var prev *cb.BlockHeader
	for want := uint64(0); want < 4; want++ {
		var b *cb.Block
		select {
		case b = <-blocks:
		case <-ctx.Done():
			t.Fatalf("block %d not delivered", want)
		}
		if b.Header.Number != want {
			t.Fatalf("got block %d, want %d", b.Header.Number, want)
		}
		d := sha256.New()
		for _, e := range b.Data.Data {
			d.Write(e)
		}
		if !bytes.Equal(d.Sum(nil), b.Header.DataHash) {
			t.Fatalf("block %d data hash mismatch", want)
		}
		if prev != nil && !bytes.Equal(b.Header.PreviousHash, headerHash(t, prev)) {
			t.Fatalf("block %d previous hash %x != hash of block %d", want, b.Header.PreviousHash, prev.Number)
		}
		prev = b.Header
	}
}
