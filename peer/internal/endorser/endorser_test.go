package endorser

import (
	"bytes"
	"context"
	"errors"
	"testing"

	"github.com/hyperledger/fabric-protos-go-apiv2/ledger/rwset"
	"github.com/hyperledger/fabric-protos-go-apiv2/ledger/rwset/kvrwset"
	pb "github.com/hyperledger/fabric-protos-go-apiv2/peer"
	"google.golang.org/protobuf/proto"

	"github.com/cairn-ledger/cairn/internal/envelope"
	"github.com/cairn-ledger/cairn/peer/internal/chaincode"
)

// statusRuntime is a chaincode that writes one key, sets an event and then
// answers with its status and message, or fails to run at all with err.
type statusRuntime struct {
	status  int32
	message string
	err     error
}

func (r statusRuntime) Execute(_ context.Context, inv chaincode.Invocation, sim chaincode.TxSimulator) (*chaincode.Result, error) {
	if r.err != nil {
		return nil, r.err
	}
	if err := sim.SetState(inv.Namespace, "asset1", []byte("half-written")); err != nil {
		return nil, err
	}
	return &chaincode.Result{
		Response: &pb.Response{Status: r.status, Message: r.message},
		Event:    &pb.ChaincodeEvent{ChaincodeId: inv.Namespace, TxId: inv.TxID, EventName: "Written"},
	}, nil
}

// TestChaincodeErrorResponses checks the unendorsed answers to chaincode
// errors against Fabric's endorser (core/endorser ProcessProposalSuccessfullyOrError):
// a status from 500 up carries the response payload — which is how Fabric's
// gateway, and Cairn's, tell a chaincode error ("chaincode response 500, …",
// gRPC Unknown on Evaluate, no retry) from a failure of the peer — while a
// 4xx status and a chaincode that could not run carry none. None is endorsed.
func TestChaincodeErrorResponses(t *testing.T) {
	tests := []struct {
		name        string
		rt          statusRuntime
		wantStatus  int32
		wantMessage string
		wantPayload bool
	}{
		{"chaincode error 500", statusRuntime{status: 500, message: "the asset asset1 does not exist"}, 500, "the asset asset1 does not exist", true},
		{"chaincode error 503", statusRuntime{status: 503, message: "busy"}, 503, "busy", true},
		{"chaincode error 404", statusRuntime{status: 404, message: "not found"}, 404, "not found", false},
		{"chaincode did not run", statusRuntime{err: errors.New("chaincode basic:pkg is not running")}, 500, "error in simulation: chaincode basic:pkg is not running", false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e, channel, user := newConfiguredEndorser(t, tc.rt)
			prop, _, err := envelope.NewProposal(channel, "basic", [][]byte{[]byte("UpdateAsset"), []byte("asset1")}, nil, user.Serialize())
			if err != nil {
				t.Fatal(err)
			}
			sp, err := envelope.SignProposal(prop, user)
			if err != nil {
				t.Fatal(err)
			}
			pr, err := e.ProcessProposal(context.Background(), sp)
			if err != nil {
				t.Fatalf("ProcessProposal returned a gRPC error: %v", err)
			}
			if got := pr.GetResponse(); got.GetStatus() != tc.wantStatus || got.GetMessage() != tc.wantMessage {
				t.Fatalf("response %d %q, want %d %q", got.GetStatus(), got.GetMessage(), tc.wantStatus, tc.wantMessage)
			}
			if pr.GetEndorsement() != nil {
				t.Error("a failed proposal was endorsed")
			}
			if !tc.wantPayload {
				if pr.GetPayload() != nil || pr.GetInterest() != nil {
					t.Errorf("payload %x, interest %v: want neither", pr.GetPayload(), pr.GetInterest())
				}
				return
			}
			checkErrorPayload(t, sp, pr)
		})
	}
}

// checkErrorPayload checks the payload of a chaincode error response: the
// proposal's hash, the chaincode's response and ID, the write it made before
// failing, and no event (Fabric drops the event of a failed invocation).
func checkErrorPayload(t *testing.T, sp *pb.SignedProposal, pr *pb.ProposalResponse) {
	t.Helper()
	up, err := envelope.UnpackProposal(sp)
	if err != nil {
		t.Fatal(err)
	}
	wantHash, err := up.Hash()
	if err != nil {
		t.Fatal(err)
	}
	prp := &pb.ProposalResponsePayload{}
	if err := proto.Unmarshal(pr.GetPayload(), prp); err != nil {
		t.Fatalf("payload: %v", err)
	}
	if !bytes.Equal(prp.GetProposalHash(), wantHash) {
		t.Errorf("proposal hash %x, want %x", prp.GetProposalHash(), wantHash)
	}
	action := &pb.ChaincodeAction{}
	if err := proto.Unmarshal(prp.GetExtension(), action); err != nil {
		t.Fatalf("chaincode action: %v", err)
	}
	if !proto.Equal(action.GetResponse(), pr.GetResponse()) {
		t.Errorf("action response %v, want %v", action.GetResponse(), pr.GetResponse())
	}
	if id := action.GetChaincodeId(); id.GetName() != "basic" || id.GetVersion() != "1.0" {
		t.Errorf("action chaincode ID %v, want basic at its definition's version 1.0", id)
	}
	if len(action.GetEvents()) != 0 {
		t.Errorf("failed invocation kept its event: %x", action.GetEvents())
	}
	rws := &rwset.TxReadWriteSet{}
	if err := proto.Unmarshal(action.GetResults(), rws); err != nil {
		t.Fatalf("results: %v", err)
	}
	var wrote bool
	for _, ns := range rws.GetNsRwset() {
		kv := &kvrwset.KVRWSet{}
		if err := proto.Unmarshal(ns.GetRwset(), kv); err != nil {
			t.Fatalf("namespace %s: %v", ns.GetNamespace(), err)
		}
		for _, w := range kv.GetWrites() {
			wrote = wrote || (ns.GetNamespace() == "basic" && w.GetKey() == "asset1")
		}
	}
	if !wrote {
		t.Errorf("results %v lack the chaincode's write", rws)
	}
	if cc := pr.GetInterest().GetChaincodes(); len(cc) != 1 || cc[0].GetName() != "basic" {
		t.Errorf("interest %v, want basic", pr.GetInterest())
	}
}
