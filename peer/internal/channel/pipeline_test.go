package channel

import (
	"context"
	"fmt"
	"testing"

	cb "github.com/hyperledger/fabric-protos-go-apiv2/common"
	pb "github.com/hyperledger/fabric-protos-go-apiv2/peer"
	lb "github.com/hyperledger/fabric-protos-go-apiv2/peer/lifecycle"

	"github.com/cairn-ledger/cairn/internal/block"
	"github.com/cairn-ledger/cairn/internal/envelope"
	"github.com/cairn-ledger/cairn/internal/policy"
	"github.com/cairn-ledger/cairn/peer/internal/lifecycle"
)

// TestPipelineSeesPolicyChangesOfEarlierBlocks commits, in one pipelined
// run, a block redefining basic with a stricter policy and blocks whose
// transactions satisfy the old policies but not the new ones: block N+1 is
// prepared while block N is still queued or committing, so only Finish's
// re-reading of the policies and key metadata can catch them.
func TestPipelineSeesPolicyChangesOfEarlierBlocks(t *testing.T) {
	e := newCommitEnv(t)
	strict, err := policy.ParseDSL("AND('Org1MSP.peer','Org2MSP.peer')")
	if err != nil {
		t.Fatal(err)
	}
	vp := marshal(t, &pb.ApplicationPolicy{Type: &pb.ApplicationPolicy_SignaturePolicy{SignaturePolicy: strict}})
	approve := &lb.ApproveChaincodeDefinitionForMyOrgArgs{
		Name: basic, Version: "2.0", Sequence: 2, ValidationParameter: vp,
		Source: &lb.ChaincodeSource{Type: &lb.ChaincodeSource_Unavailable_{Unavailable: &lb.ChaincodeSource_Unavailable{}}},
	}
	a1, _ := e.tx(t, txSpec{cc: lifecycle.Namespace, simulate: e.lifecycle("Org1MSP", lifecycle.ApproveChaincodeDefinitionForMyOrgFuncName, approve), endorsers: []envelope.Signer{e.peer1}})
	a2, _ := e.tx(t, txSpec{cc: lifecycle.Namespace, simulate: e.lifecycle("Org2MSP", lifecycle.ApproveChaincodeDefinitionForMyOrgFuncName, approve), endorsers: []envelope.Signer{e.peer2}})
	e.mustCommit(t, [][]byte{a1, a2}, pb.TxValidationCode_VALID, pb.TxValidationCode_VALID)

	both := []envelope.Signer{e.peer1, e.peer2}
	redefine, _ := e.tx(t, txSpec{cc: lifecycle.Namespace, endorsers: both, simulate: e.lifecycle("Org1MSP", lifecycle.CommitChaincodeDefinitionFuncName,
		&lb.CommitChaincodeDefinitionArgs{Name: basic, Version: "2.0", Sequence: 2, ValidationParameter: vp})})
	// Block N+1: one Org1 endorsement met OR(...) but not the new AND(...);
	// the second transaction sets a key-level policy no peer satisfies.
	weak, _ := e.tx(t, txSpec{simulate: put("k1", "v")})
	lock, _ := e.tx(t, txSpec{endorsers: both, simulate: setKeyPolicy("k2", "OR('Org1MSP.admin')", "v")})
	// Block N+2: met the chaincode policy in force before block N+1.
	locked, _ := e.tx(t, txSpec{endorsers: both, simulate: put("k2", "w")})

	l := e.c.Ledger()
	prev, err := l.Block(l.Height() - 1)
	if err != nil {
		t.Fatal(err)
	}
	var blocks []*cb.Block
	for _, data := range [][][]byte{{redefine}, {weak, lock}, {locked}} {
		b := block.New(prev.Header.Number+1, block.HeaderHash(prev.Header), data)
		blocks = append(blocks, b)
		prev = b
	}
	first := blocks[0].Header.Number
	if err := e.c.CommitBlocks(context.Background(), blocks); err != nil {
		t.Fatal(err)
	}
	want := [][]pb.TxValidationCode{
		{pb.TxValidationCode_VALID},
		{pb.TxValidationCode_ENDORSEMENT_POLICY_FAILURE, pb.TxValidationCode_VALID},
		{pb.TxValidationCode_ENDORSEMENT_POLICY_FAILURE},
	}
	for i, w := range want {
		b, err := l.Block(first + uint64(i))
		if err != nil {
			t.Fatal(err)
		}
		for j, code := range block.TxFilter(b) {
			if pb.TxValidationCode(code) != w[j] {
				t.Errorf("block %d tx %d: %s, want %s", first+uint64(i), j, pb.TxValidationCode(code), w[j])
			}
		}
	}
}

// TestPipelineConfigBlockIsABarrier commits config blocks and endorser
// blocks in one pipelined run: a config block must be validated against the
// configuration in force and committed, and a VALID one's bundle installed,
// before the next block is prepared. The config block adds Org3, so an Org3
// client's transaction right behind it is VALID only if the barrier holds; a
// replay of the genesis configuration is invalid and installs nothing.
func TestPipelineConfigBlockIsABarrier(t *testing.T) {
	e := newConfigEnv(t)
	l := e.c.Ledger()
	genesis, err := l.Block(0)
	if err != nil {
		t.Fatal(err)
	}
	before := e.c.Bundle()
	addOrg3 := e.configTx(t, e.c.ID(), e.propose(t, e.update(t, addOrg3(e), e.org1Admin, e.org2Admin)))
	org3Tx, _ := e.tx(t, txSpec{creator: e.org3User, simulate: put("k", "v")})
	org1Tx, _ := e.tx(t, txSpec{simulate: put("k1", "v")})
	got := e.commitChain(t, genesis.Data.Data, [][]byte{org1Tx}, [][]byte{addOrg3}, [][]byte{org3Tx})
	want := [][]pb.TxValidationCode{
		{pb.TxValidationCode_INVALID_CONFIG_TRANSACTION},
		{pb.TxValidationCode_VALID},
		{pb.TxValidationCode_VALID},
		{pb.TxValidationCode_VALID},
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("codes = %v, want %v", got, want)
	}
	if after := e.c.Bundle(); after == before || after.Sequence() != 1 {
		t.Errorf("the configuration in force is at sequence %d, want the Org3 update's (1)", after.Sequence())
	}
}
