package adminsdk_test

import (
	"context"
	"testing"
	"time"

	"github.com/hyperledger/fabric-admin-sdk/pkg/chaincode"
	"github.com/hyperledger/fabric-gateway/pkg/client"
)

// TestGatewayUsesLocalPeerRightAfterCommit deploys a chaincode with the SDK
// and, as soon as Commit returns, uses it through the committing
// organisation's gateway. Fabric's peer updates its own list of runnable
// chaincodes as it commits a definition (gossip's UpdateChaincodes, called
// from the lifecycle's commit listener), and Commit returns only once the
// gateway's own peer has committed it, so that peer can endorse and evaluate
// the new chaincode at once; only other organisations' peers are learned
// later. A deployment script that invokes right after committing relies on
// this.
func TestGatewayUsesLocalPeerRightAfterCommit(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a local network; skipped with -short")
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	info, orgs := startNetwork(ctx, t)
	def := &chaincode.Definition{
		ChannelName:       info.Channel,
		PackageID:         installChaincode(ctx, t, orgs),
		Name:              ccName,
		Version:           "1.0",
		Sequence:          1,
		ApplicationPolicy: applicationPolicy(t, orPolicy),
	}
	contract := connectUser(t, info, 0).GetNetwork(info.Channel).GetContract(ccName)
	approve(ctx, t, orgs, def, nil)
	commit(ctx, t, orgs[0], def)

	proposal, err := contract.NewProposal("PutGet", client.WithArguments("k", "v"), client.WithEndorsingOrganizations("Org1MSP"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := proposal.EndorseWithContext(ctx); err != nil {
		t.Errorf("endorse by Org1MSP through Org1MSP's gateway right after the commit: %v", err)
	}
	if _, err := contract.EvaluateWithContext(ctx, "Get", client.WithArguments("k")); err != nil {
		t.Errorf("evaluate through Org1MSP's gateway right after the commit: %v", err)
	}
}
