package lifecycle

import (
	"context"
	"testing"
	"unicode/utf8"

	lb "github.com/hyperledger/fabric-protos-go-apiv2/peer/lifecycle"
	"google.golang.org/protobuf/proto"
)

// FuzzInvoke feeds arbitrary function names, argument bytes and stored
// state values to Invoke: it must answer, never panic, and its response must
// always be marshallable.
func FuzzInvoke(f *testing.F) {
	seedState, _ := proto.Marshal(&lb.CommitChaincodeDefinitionArgs{Name: "basic", Version: "1.0", Sequence: 1})
	seedAppr, _ := proto.Marshal(approveArgs("basic", "1.0", 1, "basic_1.0:abc"))
	for _, seed := range []struct {
		fn    string
		args  proto.Message
		state []byte
	}{
		{ApproveChaincodeDefinitionForMyOrgFuncName, approveArgs("basic", "1.0", 1, ""), nil},
		{ApproveChaincodeDefinitionForMyOrgFuncName, approveArgs("basic", "1.0", 2, ""), seedState},
		{CommitChaincodeDefinitionFuncName, commitArgs("basic", "1.0", 1), seedAppr},
		{CheckCommitReadinessFuncName, &lb.CheckCommitReadinessArgs{Name: "basic", Version: "1.0", Sequence: 1}, seedAppr},
		{QueryChaincodeDefinitionFuncName, &lb.QueryChaincodeDefinitionArgs{Name: "basic"}, seedState},
		{QueryChaincodeDefinitionsFuncName, &lb.QueryChaincodeDefinitionsArgs{}, []byte{0xff}},
		{QueryApprovedChaincodeDefinitionFuncName, &lb.QueryApprovedChaincodeDefinitionArgs{Name: "basic"}, seedAppr},
		{QueryInstalledChaincodeFuncName, &lb.QueryInstalledChaincodeArgs{PackageId: "x:y"}, nil},
		{GetInstalledChaincodePackageFuncName, &lb.GetInstalledChaincodePackageArgs{PackageId: "../x"}, nil},
		{QueryInstalledChaincodesFuncName, &lb.QueryInstalledChaincodesArgs{}, nil},
		{InstallChaincodeFuncName, &lb.InstallChaincodeArgs{ChaincodeInstallPackage: []byte{0x1f, 0x8b}}, nil},
	} {
		b, err := proto.Marshal(seed.args)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(seed.fn, b, seed.state)
	}
	f.Add("\xff", []byte{0xff}, []byte{0xff})

	s := newSCC(f, "Org1MSP")
	f.Fuzz(func(t *testing.T, fn string, args, stored []byte) {
		l := newLedger()
		if stored != nil {
			l.kv[lkey(Namespace, definitionKey("basic"))] = stored
			l.kv[lkey(Namespace, approvalKey("Org1MSP", "basic", 1))] = stored
			l.kv[lkey(Namespace, approvalKey("Org2MSP", "basic", 2))] = stored
		}
		resp := s.Invoke(context.Background(), Invocation{
			ChannelID: "mychannel", Args: [][]byte{[]byte(fn), args}, State: l.newTx(),
			CreatorMSPID: "Org1MSP", CreatorIsAdmin: true, OrgMSPIDs: []string{"Org1MSP", "Org2MSP"},
		})
		if resp == nil {
			t.Fatal("nil response")
		}
		if !utf8.ValidString(resp.Message) {
			t.Fatalf("message is not UTF-8: %q", resp.Message)
		}
		if _, err := proto.Marshal(resp); err != nil {
			t.Fatalf("response does not marshal: %v", err)
		}
	})
}
