package adminsdk_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/hyperledger/fabric-admin-sdk/pkg/chaincode"
	"github.com/hyperledger/fabric-gateway/pkg/client"
	pb "github.com/hyperledger/fabric-protos-go-apiv2/peer"
	lb "github.com/hyperledger/fabric-protos-go-apiv2/peer/lifecycle"
	"google.golang.org/protobuf/proto"
)

const (
	ccName  = "adminsdk"
	ccLabel = "adminsdk_1.0"
	// orPolicy lets either organisation endorse; andPolicy, the sequence-2
	// upgrade, needs both.
	orPolicy  = "OR('Org1MSP.peer','Org2MSP.peer')"
	andPolicy = "AND('Org1MSP.peer','Org2MSP.peer')"
)

// TestLifecycleWithAdminSDK runs the chaincode lifecycle with
// fabric-admin-sdk v0.2.0's chaincode package against a local network of two
// organisations (one peer each) and one orderer, as an operator of each
// organisation would: install a ccaas package on its peer, approve for its
// organisation through its own gateway, check commit readiness, commit
// (the SDK names no endorsing organisations, so the gateway plans the commit
// from LifecycleEndorsement) and query the committed definition. A
// sequence-2 upgrade then changes the endorsement policy from
// OR(Org1, Org2) to AND(Org1, Org2), and the fabric-gateway client shows that
// validation follows it: a transaction endorsed by Org1 alone commits VALID
// under sequence 1 and fails with ENDORSEMENT_POLICY_FAILURE under sequence 2.
func TestLifecycleWithAdminSDK(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a local network; skipped with -short")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	info, orgs := startNetwork(ctx, t)
	channel := info.Channel
	packageID := installChaincode(ctx, t, orgs)

	// Sequence 1 under OR(Org1, Org2).
	def1 := &chaincode.Definition{
		ChannelName:       channel,
		PackageID:         packageID,
		Name:              ccName,
		Version:           "1.0",
		Sequence:          1,
		ApplicationPolicy: applicationPolicy(t, orPolicy),
	}
	user := connectUser(t, info, 0)
	contract := user.GetNetwork(channel).GetContract(ccName)
	approve(ctx, t, orgs, def1, nil)
	commit(ctx, t, orgs[0], def1)
	checkCommitted(ctx, t, orgs, def1)
	// Org1's gateway learns that the peers run the new chaincode shortly
	// after the commit (TestGatewayUsesLocalPeerRightAfterCommit checks its
	// own peer is known at once); wait for both.
	for _, org := range orgs {
		waitFor(ctx, t, "evaluate on "+org.mspID+"'s peer", func() (bool, string) {
			_, err := contract.EvaluateWithContext(ctx, "Get", client.WithArguments("k0"), client.WithEndorsingOrganizations(org.mspID))
			return err == nil, fmt.Sprint(err)
		})
	}

	// Org1 alone satisfies OR(Org1, Org2).
	st := submitEndorsedBy(ctx, t, contract, []string{"Org1MSP"}, "PutGet", "k1", "v1")
	if !st.Successful || st.Code != pb.TxValidationCode_VALID {
		t.Fatalf("under %s, a transaction endorsed by Org1MSP alone got %s, want VALID", orPolicy, st.Code)
	}
	if got, err := contract.EvaluateWithContext(ctx, "Get", client.WithArguments("k1")); err != nil || string(got) != "v1" {
		t.Fatalf("Get k1 = %q, %v; want v1", got, err)
	}

	// Sequence 2: the same package, AND(Org1, Org2).
	def2 := &chaincode.Definition{
		ChannelName:       channel,
		PackageID:         packageID,
		Name:              ccName,
		Version:           "1.0",
		Sequence:          2,
		ApplicationPolicy: applicationPolicy(t, andPolicy),
	}
	approve(ctx, t, orgs, def2, func() {
		// Org1 alone has approved, short of the majority the channel's
		// LifecycleEndorsement (MAJORITY Endorsement) needs: the commit is
		// refused at endorsement, naming Org2MSP.
		err := orgs[0].gateway.Commit(ctx, def2)
		var endorseErr *client.EndorseError
		if !errors.As(err, &endorseErr) {
			t.Fatalf("Commit approved by Org1MSP alone: err = %v, want an EndorseError", err)
		}
		if !strings.Contains(fmt.Sprint(err, endorseErr.Details()), "Org2MSP") {
			t.Fatalf("Commit approved by Org1MSP alone: %v %v does not name Org2MSP", err, endorseErr.Details())
		}
	})
	commit(ctx, t, orgs[0], def2)
	checkCommitted(ctx, t, orgs, def2)

	// Org1 alone no longer satisfies the policy: the gateway endorses as
	// told, the orderer orders, and validation refuses it.
	_, err := contract.SubmitWithContext(ctx, "PutGet",
		client.WithArguments("k2", "v2"), client.WithEndorsingOrganizations("Org1MSP"))
	var commitErr *client.CommitError
	if !errors.As(err, &commitErr) {
		t.Fatalf("under %s, a transaction endorsed by Org1MSP alone: err = %v, want a CommitError", andPolicy, err)
	}
	if commitErr.Code != pb.TxValidationCode_ENDORSEMENT_POLICY_FAILURE {
		t.Fatalf("under %s, a transaction endorsed by Org1MSP alone got %s, want ENDORSEMENT_POLICY_FAILURE", andPolicy, commitErr.Code)
	}
	if got, err := contract.EvaluateWithContext(ctx, "Get", client.WithArguments("k2")); err != nil || len(got) != 0 {
		t.Fatalf("Get k2 after the invalid transaction = %q, %v; want empty", got, err)
	}

	// Left to plan, the gateway asks both organisations under the new policy.
	st = submitEndorsedBy(ctx, t, contract, nil, "PutGet", "k3", "v3")
	if !st.Successful || st.Code != pb.TxValidationCode_VALID {
		t.Fatalf("under %s, a transaction the gateway planned got %s, want VALID", andPolicy, st.Code)
	}
	// And Org2 alone fails too, from Org2's own gateway.
	user2 := connectUser(t, info, 1)
	st = submitEndorsedBy(ctx, t, user2.GetNetwork(channel).GetContract(ccName), []string{"Org2MSP"}, "PutGet", "k4", "v4")
	if st.Code != pb.TxValidationCode_ENDORSEMENT_POLICY_FAILURE {
		t.Fatalf("under %s, a transaction endorsed by Org2MSP alone got %s, want ENDORSEMENT_POLICY_FAILURE", andPolicy, st.Code)
	}
}

// approve approves def with the SDK for each organisation in turn, checking
// commit readiness before any approval and on every organisation's gateway
// after each, and each organisation's QueryApproved. afterFirst, when not
// nil, runs once the first organisation's approval is known to all.
func approve(ctx context.Context, t *testing.T, orgs []*orgAdmin, def *chaincode.Definition, afterFirst func()) {
	t.Helper()
	seq := fmt.Sprintf("sequence %d", def.Sequence)
	want := map[string]bool{}
	for _, org := range orgs {
		want[org.mspID] = false
	}
	readiness, err := orgs[0].gateway.CheckCommitReadiness(ctx, def)
	if err != nil {
		t.Fatalf("%s: CheckCommitReadiness before approvals: %v", seq, err)
	}
	if !mapsEqual(readiness.GetApprovals(), want) {
		t.Fatalf("%s: CheckCommitReadiness before approvals = %v, want %v", seq, readiness.GetApprovals(), want)
	}

	for i, org := range orgs {
		if err := org.gateway.Approve(ctx, def); err != nil {
			t.Fatalf("%s: %s Approve: %v", seq, org.mspID, err)
		}
		want[org.mspID] = true
		// Approve returns once the approval is committed on the peer of the
		// organisation's own gateway; each gateway's peer must see every
		// approval so far before the next step relies on it.
		for _, o := range orgs {
			waitFor(ctx, t, fmt.Sprintf("%s: CheckCommitReadiness on %s's gateway after %s approved", seq, o.mspID, org.mspID), func() (bool, string) {
				r, err := o.gateway.CheckCommitReadiness(ctx, def)
				if err != nil {
					return false, err.Error()
				}
				return mapsEqual(r.GetApprovals(), want), fmt.Sprintf("approvals %v, want %v", r.GetApprovals(), want)
			})
		}

		approved, err := org.gateway.QueryApproved(ctx, def.ChannelName, def.Name, def.Sequence)
		if err != nil {
			t.Fatalf("%s: %s QueryApproved: %v", seq, org.mspID, err)
		}
		if approved.GetSequence() != def.Sequence || approved.GetVersion() != def.Version ||
			approved.GetSource().GetLocalPackage().GetPackageId() != def.PackageID {
			t.Fatalf("%s: %s QueryApproved = %v, want sequence %d version %s package %s", seq, org.mspID, approved, def.Sequence, def.Version, def.PackageID)
		}
		checkPolicy(t, seq+": "+org.mspID+" QueryApproved", approved.GetValidationParameter(), def.ApplicationPolicy)
		if i == 0 && afterFirst != nil {
			afterFirst()
		}
	}
}

// commit commits def with the SDK through org's gateway; the SDK names no
// endorsing organisations.
func commit(ctx context.Context, t *testing.T, org *orgAdmin, def *chaincode.Definition) {
	t.Helper()
	if err := org.gateway.Commit(ctx, def); err != nil {
		t.Fatalf("sequence %d: Commit through %s's gateway: %v", def.Sequence, org.mspID, err)
	}
}

// checkCommitted waits until every organisation's gateway reports def
// committed (QueryCommittedWithName) and checks its fields there and in
// QueryCommitted.
func checkCommitted(ctx context.Context, t *testing.T, orgs []*orgAdmin, def *chaincode.Definition) {
	t.Helper()
	seq := fmt.Sprintf("sequence %d", def.Sequence)
	want := map[string]bool{}
	for _, org := range orgs {
		want[org.mspID] = true
	}
	for _, org := range orgs {
		var got *lb.QueryChaincodeDefinitionResult
		waitFor(ctx, t, fmt.Sprintf("%s: QueryCommittedWithName on %s's gateway", seq, org.mspID), func() (bool, string) {
			r, err := org.gateway.QueryCommittedWithName(ctx, def.ChannelName, def.Name)
			if err != nil {
				return false, err.Error()
			}
			got = r
			return r.GetSequence() == def.Sequence, fmt.Sprintf("sequence %d", r.GetSequence())
		})
		where := seq + ": " + org.mspID + " QueryCommittedWithName"
		if got.GetVersion() != def.Version || got.GetEndorsementPlugin() != "escc" || got.GetValidationPlugin() != "vscc" || got.GetInitRequired() {
			t.Fatalf("%s = %v, want version %s, plugins escc/vscc, no init", where, got, def.Version)
		}
		if !mapsEqual(got.GetApprovals(), want) {
			t.Fatalf("%s approvals = %v, want %v", where, got.GetApprovals(), want)
		}
		checkPolicy(t, where, got.GetValidationParameter(), def.ApplicationPolicy)

		all, err := org.gateway.QueryCommitted(ctx, def.ChannelName)
		if err != nil {
			t.Fatalf("%s: %s QueryCommitted: %v", seq, org.mspID, err)
		}
		i := slices.IndexFunc(all.GetChaincodeDefinitions(), func(d *lb.QueryChaincodeDefinitionsResult_ChaincodeDefinition) bool {
			return d.GetName() == def.Name
		})
		if i < 0 {
			t.Fatalf("%s: %s QueryCommitted does not list %s: %v", seq, org.mspID, def.Name, all)
		}
		d := all.GetChaincodeDefinitions()[i]
		if d.GetSequence() != def.Sequence || d.GetVersion() != def.Version {
			t.Fatalf("%s: %s QueryCommitted lists %v", seq, org.mspID, d)
		}
		checkPolicy(t, seq+": "+org.mspID+" QueryCommitted", d.GetValidationParameter(), def.ApplicationPolicy)
	}
}

// checkPolicy checks that a definition's validation parameter is the
// application policy the SDK sent.
func checkPolicy(t *testing.T, where string, raw []byte, want *pb.ApplicationPolicy) {
	t.Helper()
	got := &pb.ApplicationPolicy{}
	if err := proto.Unmarshal(raw, got); err != nil {
		t.Fatalf("%s: validation parameter: %v", where, err)
	}
	if !proto.Equal(got, want) {
		gotText, _ := chaincode.SignaturePolicyEnvelopeToString(got.GetSignaturePolicy())
		wantText, _ := chaincode.SignaturePolicyEnvelopeToString(want.GetSignaturePolicy())
		t.Fatalf("%s: validation parameter %q (%v), want %q", where, gotText, got, wantText)
	}
}

func applicationPolicy(t *testing.T, expr string) *pb.ApplicationPolicy {
	t.Helper()
	p, err := chaincode.NewApplicationPolicy(expr, "")
	if err != nil {
		t.Fatalf("NewApplicationPolicy(%s): %v", expr, err)
	}
	return p
}

// submitEndorsedBy submits a transaction endorsed by the given organisations
// (the gateway's own plan when none) and returns its commit status.
func submitEndorsedBy(ctx context.Context, t *testing.T, contract *client.Contract, endorsers []string, fn string, args ...string) *client.Status {
	t.Helper()
	opts := []client.ProposalOption{client.WithArguments(args...)}
	if len(endorsers) > 0 {
		opts = append(opts, client.WithEndorsingOrganizations(endorsers...))
	}
	proposal, err := contract.NewProposal(fn, opts...)
	if err != nil {
		t.Fatal(err)
	}
	tx, err := proposal.EndorseWithContext(ctx)
	if err != nil {
		t.Fatalf("endorse %s by %v: %v", fn, endorsers, err)
	}
	commit, err := tx.SubmitWithContext(ctx)
	if err != nil {
		t.Fatalf("submit %s: %v", fn, err)
	}
	st, err := commit.StatusWithContext(ctx)
	if err != nil {
		t.Fatalf("commit status of %s: %v", fn, err)
	}
	return st
}

func mapsEqual(a, b map[string]bool) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if w, ok := b[k]; !ok || w != v {
			return false
		}
	}
	return true
}
