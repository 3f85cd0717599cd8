package validator_test

import (
	"context"
	"testing"

	cb "github.com/hyperledger/fabric-protos-go-apiv2/common"
	"github.com/hyperledger/fabric-protos-go-apiv2/ledger/rwset/kvrwset"
	pb "github.com/hyperledger/fabric-protos-go-apiv2/peer"

	"github.com/cairn-ledger/cairn/internal/block"
	"github.com/cairn-ledger/cairn/internal/envelope"
	"github.com/cairn-ledger/cairn/internal/policy"
	"github.com/cairn-ledger/cairn/peer/internal/validator"
)

// TestPrepareThenFinishOnNewerState prepares a block against one state and
// finishes it against another, as the committer does when it prepares block
// N+1 while block N commits: the outcome must be the one Validate gives
// against the newer state.
func TestPrepareThenFinishOnNewerState(t *testing.T) {
	f := newFixture(t)
	dsl := func(s string) policiesDSL {
		spe, err := policy.ParseDSL(s)
		if err != nil {
			t.Fatal(err)
		}
		return policiesDSL{spe: spe}
	}
	org1, both := dsl("OR('Org1MSP.peer')"), dsl("AND('Org1MSP.peer','Org2MSP.peer')")
	peer1 := []envelope.Signer{f.peer}
	peer1and2 := []envelope.Signer{f.peer, f.peer2}
	noEndorsement := func(ap *pb.ChaincodeActionPayload) { ap.Action.Endorsements = nil }
	badSignature := func(env *cb.Envelope) { env.Signature[len(env.Signature)-1] ^= 1 }

	tests := []struct {
		name            string
		spec            txSpec
		prepPol, finPol validator.Policies
		prepLed, finLed ledger
		want            pb.TxValidationCode
	}{
		{name: "undefined chaincode", spec: txSpec{endorsers: peer1}, prepPol: undefined{}, finPol: undefined{}, want: pb.TxValidationCode_INVALID_CHAINCODE},
		{name: "unchanged state", spec: txSpec{endorsers: peer1}, prepPol: org1, finPol: org1, want: pb.TxValidationCode_VALID},
		{name: "chaincode policy made stricter", spec: txSpec{endorsers: peer1}, prepPol: org1, finPol: both, want: pb.TxValidationCode_ENDORSEMENT_POLICY_FAILURE},
		{name: "chaincode policy relaxed", spec: txSpec{endorsers: peer1}, prepPol: both, finPol: org1, want: pb.TxValidationCode_VALID},
		{name: "chaincode defined meanwhile", spec: txSpec{endorsers: peer1}, prepPol: undefined{}, finPol: org1, want: pb.TxValidationCode_VALID},
		{
			name: "key-level policy set meanwhile", spec: txSpec{endorsers: peer1and2}, prepPol: both, finPol: both,
			finLed: withValidationParameter(t, "asset1", "OR('Org1MSP.admin')"), want: pb.TxValidationCode_ENDORSEMENT_POLICY_FAILURE,
		},
		{
			name: "key-level policy removed meanwhile", spec: txSpec{endorsers: peer1and2}, prepPol: both, finPol: both,
			prepLed: withValidationParameter(t, "asset1", "OR('Org1MSP.admin')"), want: pb.TxValidationCode_VALID,
		},
		{name: "tx ID committed meanwhile", spec: txSpec{endorsers: peer1}, prepPol: org1, finPol: org1, finLed: ledger{txIDs: map[string]bool{}}, want: pb.TxValidationCode_DUPLICATE_TXID},
		{name: "duplicate beats a late failure", spec: txSpec{action: noEndorsement}, prepPol: org1, finPol: org1, finLed: ledger{txIDs: map[string]bool{}}, want: pb.TxValidationCode_DUPLICATE_TXID},
		{name: "early failure beats a duplicate", spec: txSpec{mutate: badSignature}, prepPol: org1, finPol: org1, finLed: ledger{txIDs: map[string]bool{}}, want: pb.TxValidationCode_BAD_CREATOR_SIGNATURE},
	}
	v := validator.New(validator.Config{})
	ctx := context.Background()
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			raw, txID := f.tx(t, tt.spec)
			if tt.finLed.txIDs != nil {
				tt.finLed.txIDs[txID] = true
			}
			b := block.New(1, nil, [][]byte{raw})
			p, err := v.Prepare(ctx, b, f.bundle, tt.prepLed, tt.prepPol)
			if err != nil {
				t.Fatal(err)
			}
			got, err := v.Finish(ctx, p, tt.finLed, tt.finPol)
			if err != nil {
				t.Fatal(err)
			}
			direct, err := v.Validate(ctx, b, f.bundle, tt.finLed, tt.finPol)
			if err != nil {
				t.Fatal(err)
			}
			if got[0].Code != tt.want || direct[0].Code != tt.want {
				t.Fatalf("Prepare+Finish %s (%v), Validate %s, want %s", got[0].Code, got[0].Error, direct[0].Code, tt.want)
			}
			if (got[0].RWSet != nil) != (tt.want == pb.TxValidationCode_VALID) {
				t.Errorf("decoded read-write set %v for a %s transaction", got[0].RWSet, got[0].Code)
			}
		})
	}
}

// undefined resolves no chaincode.
type undefined struct{}

func (undefined) EndorsementPolicy(ns string, _ []*kvrwset.KVWrite) (*cb.SignaturePolicyEnvelope, string, error) {
	return nil, "", validator.ErrUndefined
}
