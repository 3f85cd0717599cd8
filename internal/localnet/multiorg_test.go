package localnet_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/hyperledger/fabric-gateway/pkg/client"
	cb "github.com/hyperledger/fabric-protos-go-apiv2/common"
	gp "github.com/hyperledger/fabric-protos-go-apiv2/gateway"
	mspproto "github.com/hyperledger/fabric-protos-go-apiv2/msp"
	pb "github.com/hyperledger/fabric-protos-go-apiv2/peer"
	lb "github.com/hyperledger/fabric-protos-go-apiv2/peer/lifecycle"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/cairn-ledger/cairn/internal/envelope"
	"github.com/cairn-ledger/cairn/internal/localnet"
	"github.com/cairn-ledger/cairn/internal/netconfig"
	"github.com/cairn-ledger/cairn/internal/policy"
)

// TestGatewayPlansEndorsementsAcrossOrganisations runs 2 organisations × 2
// peers with the sample chaincode under the channel's default MAJORITY
// Endorsement policy and checks, with the official Fabric Gateway client,
// that the gateway of one organisation collects the other's endorsement; that
// a chaincode upgrade goes through the gateway as fabric-admin-sdk sends it
// (each approval endorsed by its own organisation, the commit planned from
// LifecycleEndorsement without naming organisations); and that when the other
// organisation's peers are down the client gets an EndorseError whose details
// name them.
func TestGatewayPlansEndorsementsAcrossOrganisations(t *testing.T) {
	nw, err := netconfig.Generate(2, 2, 1)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	var progress bytes.Buffer
	n, err := localnet.Up(ctx, localnet.Options{Dir: t.TempDir(), Binary: cairnBin, Network: nw, Progress: &progress, NoSync: true})
	if err != nil {
		t.Fatalf("network up: %v\n%s", err, progress.String())
	}
	t.Cleanup(func() { _ = n.Stop() }) // peers killed below make Stop report them

	gw, conn, err := n.Gateway(0, "user1")
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	defer gw.Close()
	network := gw.GetNetwork(n.Info.Channel)
	contract := network.GetContract("basic")

	// 1. MAJORITY of two organisations: both must endorse.
	id := fmt.Sprintf("multiorg-%d", time.Now().UnixNano())
	st := submitVALID(ctx, t, contract, "CreateAsset", id, "blue", "5", "Tomoko", "300")
	if got := endorsingMSPs(t, network, st); !slices.Equal(got, []string{"Org1MSP", "Org2MSP"}) {
		t.Fatalf("CreateAsset endorsed by %v, want Org1MSP and Org2MSP", got)
	}

	// 2. Upgrade through the gateways, as fabric-admin-sdk does.
	spe, err := policy.ParseDSL("AND('Org1MSP.peer','Org2MSP.peer')")
	if err != nil {
		t.Fatal(err)
	}
	vp, err := proto.Marshal(&pb.ApplicationPolicy{Type: &pb.ApplicationPolicy_SignaturePolicy{SignaturePolicy: spe}})
	if err != nil {
		t.Fatal(err)
	}
	var lastApproval uint64
	for org := range 2 {
		agw, aconn, err := n.Gateway(org, "admin")
		if err != nil {
			t.Fatal(err)
		}
		anet := agw.GetNetwork(n.Info.Channel)
		lc := anet.GetContract("_lifecycle")
		raw, err := lc.EvaluateWithContext(ctx, "QueryInstalledChaincodes", client.WithBytesArguments(mustMarshal(t, &lb.QueryInstalledChaincodesArgs{})))
		if err != nil {
			t.Fatalf("QueryInstalledChaincodes: %s", errorText(err))
		}
		installed := &lb.QueryInstalledChaincodesResult{}
		if err := proto.Unmarshal(raw, installed); err != nil || len(installed.InstalledChaincodes) != 1 {
			t.Fatalf("installed chaincodes: %v %v", installed, err)
		}
		approve := mustMarshal(t, &lb.ApproveChaincodeDefinitionForMyOrgArgs{
			Sequence: 2, Name: "basic", Version: "1.0", ValidationParameter: vp,
			Source: &lb.ChaincodeSource{Type: &lb.ChaincodeSource_LocalPackage{LocalPackage: &lb.ChaincodeSource_Local{PackageId: installed.InstalledChaincodes[0].PackageId}}},
		})
		ast := submitVALID(ctx, t, lc, "ApproveChaincodeDefinitionForMyOrg", string(approve))
		want := fmt.Sprintf("Org%dMSP", org+1)
		if got := endorsingMSPs(t, anet, ast); !slices.Equal(got, []string{want}) {
			t.Fatalf("approval of %s endorsed by %v, want its own organisation only", want, got)
		}
		lastApproval = max(lastApproval, ast.BlockNumber)
		agw.Close()
		aconn.Close()
	}
	waitAllPeersAt(ctx, t, n, lastApproval+1)
	agw, aconn, err := n.Gateway(0, "admin")
	if err != nil {
		t.Fatal(err)
	}
	defer aconn.Close()
	defer agw.Close()
	anet := agw.GetNetwork(n.Info.Channel)
	commitArgs := mustMarshal(t, &lb.CommitChaincodeDefinitionArgs{Sequence: 2, Name: "basic", Version: "1.0", ValidationParameter: vp})
	cst := submitVALID(ctx, t, anet.GetContract("_lifecycle"), "CommitChaincodeDefinition", string(commitArgs))
	if got := endorsingMSPs(t, anet, cst); !slices.Equal(got, []string{"Org1MSP", "Org2MSP"}) {
		t.Fatalf("CommitChaincodeDefinition endorsed by %v, want both organisations (LifecycleEndorsement)", got)
	}
	waitAllPeersAt(ctx, t, n, cst.BlockNumber+1)
	st = submitVALID(ctx, t, contract, "TransferAsset", id, "Max")
	if got := endorsingMSPs(t, network, st); !slices.Equal(got, []string{"Org1MSP", "Org2MSP"}) {
		t.Fatalf("TransferAsset under AND endorsed by %v, want both organisations", got)
	}

	// 3. Org2's peers down: the client's EndorseError names them.
	var org2 []string
	for _, p := range n.Info.Organizations[1].Peers {
		if err := n.Kill(p.Name, true); err != nil {
			t.Fatal(err)
		}
		org2 = append(org2, p.Address)
	}
	_, err = contract.SubmitTransaction("UpdateAsset", id, "red", "5", "Max", "300")
	var endorseErr *client.EndorseError
	if !errors.As(err, &endorseErr) {
		t.Fatalf("submit with Org2 down: %v, want an EndorseError", err)
	}
	s, _ := status.FromError(err)
	if s.Code() != codes.Aborted || !strings.Contains(s.Message(), "failed to collect enough transaction endorsements") {
		t.Fatalf("status %v %q, want Aborted: failed to collect enough transaction endorsements", s.Code(), s.Message())
	}
	var failed []string
	for _, d := range s.Details() {
		ed, ok := d.(*gp.ErrorDetail)
		if !ok {
			continue
		}
		if ed.MspId != "Org2MSP" || ed.Message == "" {
			t.Errorf("unexpected error detail %s %s: %s", ed.MspId, ed.Address, ed.Message)
		}
		failed = append(failed, ed.Address)
	}
	sort.Strings(failed)
	sort.Strings(org2)
	if !slices.Equal(failed, org2) {
		t.Fatalf("error details name %v, want Org2's peers %v (%s)", failed, org2, errorText(err))
	}
}

// submitVALID submits a transaction and waits for it to commit VALID. Right
// after a change, a peer's membership may not yet know that the other
// organisation runs the chaincode; such planning failures are retried briefly.
func submitVALID(ctx context.Context, t *testing.T, contract *client.Contract, fn string, args ...string) *client.Status {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		_, commit, err := contract.SubmitAsyncWithContext(ctx, fn, client.WithArguments(args...))
		if err != nil {
			if s, ok := status.FromError(err); ok && s.Code() == codes.FailedPrecondition && time.Now().Before(deadline) {
				t.Logf("%s: %s (retrying)", fn, s.Message())
				time.Sleep(250 * time.Millisecond)
				continue
			}
			t.Fatalf("%s: %s", fn, errorText(err))
		}
		st, err := commit.StatusWithContext(ctx)
		if err != nil {
			t.Fatalf("%s commit status: %v", fn, err)
		}
		if !st.Successful {
			t.Fatalf("%s committed %s", fn, st.Code)
		}
		return st
	}
}

// endorsingMSPs returns the MSP IDs of a committed transaction's endorsers,
// sorted, read from the block through qscc.
func endorsingMSPs(t *testing.T, network *client.Network, st *client.Status) []string {
	t.Helper()
	raw, err := network.GetContract("qscc").EvaluateTransaction("GetBlockByNumber", network.Name(), fmt.Sprint(st.BlockNumber))
	if err != nil {
		t.Fatalf("GetBlockByNumber: %s", errorText(err))
	}
	b := &cb.Block{}
	if err := proto.Unmarshal(raw, b); err != nil {
		t.Fatal(err)
	}
	for _, data := range b.GetData().GetData() {
		env := &cb.Envelope{}
		if err := proto.Unmarshal(data, env); err != nil {
			t.Fatal(err)
		}
		parsed, err := envelope.Parse(env)
		if err != nil || parsed.ChannelHeader.TxId != st.TransactionID {
			continue
		}
		tx, err := envelope.UnpackTransaction(parsed)
		if err != nil {
			t.Fatal(err)
		}
		var msps []string
		for _, e := range tx.Endorsements() {
			si := &mspproto.SerializedIdentity{}
			if err := proto.Unmarshal(e.Endorser, si); err != nil {
				t.Fatal(err)
			}
			msps = append(msps, si.Mspid)
		}
		sort.Strings(msps)
		return msps
	}
	t.Fatalf("transaction %s not in block %d", st.TransactionID, st.BlockNumber)
	return nil
}

// waitAllPeersAt waits until every peer holds height blocks (qscc answers
// about the peer asked).
func waitAllPeersAt(ctx context.Context, t *testing.T, n *localnet.Network, height uint64) {
	t.Helper()
	for oi, org := range n.Info.Organizations {
		for pi, p := range org.Peers {
			gw, conn, err := localnet.ConnectGateway(n.Info, oi, pi, "user1")
			if err != nil {
				t.Fatal(err)
			}
			qscc := gw.GetNetwork(n.Info.Channel).GetContract("qscc")
			for {
				raw, err := qscc.EvaluateWithContext(ctx, "GetChainInfo", client.WithArguments(n.Info.Channel))
				ci := &cb.BlockchainInfo{}
				if err == nil && proto.Unmarshal(raw, ci) == nil && ci.Height >= height {
					break
				}
				if ctx.Err() != nil {
					t.Fatalf("%s did not reach height %d: %v", p.Name, height, err)
				}
				time.Sleep(50 * time.Millisecond)
			}
			gw.Close()
			conn.Close()
		}
	}
}

func mustMarshal(t *testing.T, m proto.Message) []byte {
	t.Helper()
	raw, err := proto.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return raw
}
