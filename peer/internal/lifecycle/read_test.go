package lifecycle

import (
	"context"
	"strings"
	"testing"

	cb "github.com/hyperledger/fabric-protos-go-apiv2/common"
	"github.com/hyperledger/fabric-protos-go-apiv2/ledger/rwset/kvrwset"
	pb "github.com/hyperledger/fabric-protos-go-apiv2/peer"
	lb "github.com/hyperledger/fabric-protos-go-apiv2/peer/lifecycle"
	"google.golang.org/protobuf/proto"

	"github.com/cairn-ledger/cairn/internal/policy"
)

func mustEnvelope(t testing.TB, dsl string) *cb.SignaturePolicyEnvelope {
	t.Helper()
	spe, err := policy.ParseDSL(dsl)
	if err != nil {
		t.Fatal(err)
	}
	return spe
}

func TestDefinitionAndApprovedPackageID(t *testing.T) {
	orgs := []string{"Org1MSP", "Org2MSP", "Org3MSP"}
	peers := map[string]*SCC{}
	for _, o := range orgs {
		peers[o] = newSCC(t, o)
	}
	l := newLedger()
	pkg1 := "basic_1.0:" + strings.Repeat("1", 64)
	pkg2 := "basic_1.0:" + strings.Repeat("2", 64)
	signed := approveArgs("basic", "1.0", 1, pkg1)
	signed.ValidationParameter = sigPolicy(t, "OR('Org1MSP.peer', 'Org2MSP.peer')")
	signed.InitRequired = true
	mustOK(t, invokeAs(t, peers["Org1MSP"], l, orgs, ApproveChaincodeDefinitionForMyOrgFuncName, signed))
	signed2 := proto.Clone(signed).(*lb.ApproveChaincodeDefinitionForMyOrgArgs)
	signed2.Source = approveArgs("", "", 0, pkg2).Source
	mustOK(t, invokeAs(t, peers["Org2MSP"], l, orgs, ApproveChaincodeDefinitionForMyOrgFuncName, signed2))
	// Org3 approves something else and is outvoted.
	mustOK(t, invokeAs(t, peers["Org3MSP"], l, orgs, ApproveChaincodeDefinitionForMyOrgFuncName, approveArgs("basic", "9.9", 1, pkg1)))

	if _, ok, err := Definition(l.newTx(), "basic"); ok || err != nil {
		t.Fatalf("definition before commit: ok=%v err=%v", ok, err)
	}
	if id, ok, err := ApprovedPackageID(l.newTx(), "basic", 1, "Org3MSP"); !ok || err != nil || id != pkg1 {
		t.Fatalf("uncommitted approval of Org3: %q %v %v", id, ok, err)
	}

	commit := commitArgs("basic", "1.0", 1)
	commit.ValidationParameter, commit.InitRequired = signed.ValidationParameter, true
	mustOK(t, invokeAs(t, peers["Org1MSP"], l, orgs, CommitChaincodeDefinitionFuncName, commit))

	def, ok, err := Definition(l.newTx(), "basic")
	if err != nil || !ok {
		t.Fatalf("Definition: ok=%v err=%v", ok, err)
	}
	if def.Name != "basic" || def.Version != "1.0" || def.Sequence != 1 || !def.InitRequired ||
		def.EndorsementPlugin != "escc" || def.ValidationPlugin != "vscc" || def.Collections != nil {
		t.Fatalf("definition = %+v", def)
	}
	spe, ref, err := def.EndorsementPolicy()
	if err != nil || ref != "" || !proto.Equal(spe, mustEnvelope(t, "OR('Org1MSP.peer', 'Org2MSP.peer')")) {
		t.Fatalf("EndorsementPolicy = %v %q %v", spe, ref, err)
	}

	for _, tc := range []struct {
		org    string
		seq    int64
		wantID string
		wantOK bool
	}{
		{"Org1MSP", 1, pkg1, true},
		{"Org2MSP", 1, pkg2, true},
		{"Org3MSP", 1, "", false}, // approved a definition that was not committed
		{"Org1MSP", 2, "", false},
		{"Org9MSP", 1, "", false},
	} {
		id, ok, err := ApprovedPackageID(l.newTx(), "basic", tc.seq, tc.org)
		if err != nil || ok != tc.wantOK || id != tc.wantID {
			t.Errorf("ApprovedPackageID(%s, %d) = %q %v %v, want %q %v", tc.org, tc.seq, id, ok, err, tc.wantID, tc.wantOK)
		}
	}

	// Default policy: a channel policy reference.
	mustOK(t, invokeAs(t, peers["Org1MSP"], l, []string{"Org1MSP"}, ApproveChaincodeDefinitionForMyOrgFuncName, approveArgs("other", "1", 1, "")))
	mustOK(t, invokeAs(t, peers["Org1MSP"], l, []string{"Org1MSP"}, CommitChaincodeDefinitionFuncName, commitArgs("other", "1", 1)))
	def, _, _ = Definition(l.newTx(), "other")
	if spe, ref, err := def.EndorsementPolicy(); spe != nil || ref != DefaultEndorsementPolicyRef || err != nil {
		t.Fatalf("default EndorsementPolicy = %v %q %v", spe, ref, err)
	}
	if id, ok, err := ApprovedPackageID(l.newTx(), "other", 1, "Org1MSP"); id != "" || !ok || err != nil {
		t.Fatalf("approval without package: %q %v %v", id, ok, err)
	}
}

func TestEndorsementPolicyRejectsEmpty(t *testing.T) {
	for _, b := range [][]byte{nil, {0xff}, mustMarshal(t, &pb.ApplicationPolicy{Type: &pb.ApplicationPolicy_ChannelConfigPolicyReference{}})} {
		d := &ChaincodeDefinition{ValidationParameter: b}
		if _, _, err := d.EndorsementPolicy(); err == nil {
			t.Errorf("EndorsementPolicy(%x) succeeded", b)
		}
	}
}

func TestValidationPolicyForWrites(t *testing.T) {
	w := func(keys ...string) []*kvrwset.KVWrite {
		var out []*kvrwset.KVWrite
		for _, k := range keys {
			out = append(out, &kvrwset.KVWrite{Key: k, Value: []byte("v")})
		}
		return out
	}
	tests := []struct {
		name    string
		writes  []*kvrwset.KVWrite
		want    string
		wantErr string
	}{
		{"one approval", w(approvalKey("Org1MSP", "basic", 1)), "/Channel/Application/Org1MSP/Endorsement", ""},
		{"two approvals of one org", w(approvalKey("Org1MSP", "basic", 1), approvalKey("Org1MSP", "other", 3)), "/Channel/Application/Org1MSP/Endorsement", ""},
		{"definition", w(definitionKey("basic")), LifecycleEndorsementPolicyRef, ""},
		{"no writes", nil, LifecycleEndorsementPolicyRef, ""},
		{"two orgs", w(approvalKey("Org1MSP", "basic", 1), approvalKey("Org2MSP", "basic", 1)), "", "more than one organization (Org1MSP and Org2MSP)"},
		{"approval and definition", w(approvalKey("Org1MSP", "basic", 1), definitionKey("basic")), "", "both"},
		{"unknown key", w("namespaces/fields/basic/Sequence"), "", "unknown lifecycle key"},
		{"approval without sequence", w("approvals/Org1MSP/basic"), "", "malformed"},
		{"approval without org", w("approvals//basic#1"), "", "malformed"},
		{"approval with bad sequence", w("approvals/Org1MSP/basic#01"), "", "malformed"},
		{"definition with bad name", w("definitions/a/b"), "", "malformed"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ValidationPolicyForWrites(tc.writes)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("got %q, %v; want error containing %q", got, err, tc.wantErr)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Fatalf("got %q, %v; want %q", got, err, tc.want)
			}
		})
	}
}

// The writes the SCC makes map to the policies the validator must apply.
func TestSCCWritesMatchValidationPolicy(t *testing.T) {
	s := newSCC(t, "Org1MSP")
	l := newLedger()
	orgs := []string{"Org1MSP"}
	for _, c := range []struct {
		fn   string
		args proto.Message
		want string
	}{
		{ApproveChaincodeDefinitionForMyOrgFuncName, approveArgs("basic", "1.0", 1, ""), "/Channel/Application/Org1MSP/Endorsement"},
		{CommitChaincodeDefinitionFuncName, commitArgs("basic", "1.0", 1), LifecycleEndorsementPolicyRef},
	} {
		st := l.newTx()
		resp := s.Invoke(context.Background(), Invocation{ChannelID: "ch", State: st, Args: [][]byte{[]byte(c.fn), mustMarshal(t, c.args)},
			CreatorMSPID: "Org1MSP", CreatorIsAdmin: true, OrgMSPIDs: orgs})
		mustOK(t, resp)
		var writes []*kvrwset.KVWrite
		for _, k := range st.order {
			_, key, _ := strings.Cut(k, "\x00")
			writes = append(writes, &kvrwset.KVWrite{Key: key, Value: st.writes[k]})
		}
		if got, err := ValidationPolicyForWrites(writes); err != nil || got != c.want {
			t.Errorf("%s: policy %q, %v; want %q", c.fn, got, err, c.want)
		}
		st.commit()
	}
}
