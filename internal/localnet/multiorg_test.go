package localnet_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
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
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/cairn-ledger/cairn/internal/envelope"
	"github.com/cairn-ledger/cairn/internal/localnet"
	"github.com/cairn-ledger/cairn/internal/policy"
)

// TestGatewayPlansEndorsementsAcrossOrganisations runs the default
// consortium (3 orderers, 2 organisations × 2 peers, the sample chaincode
// under the channel's default MAJORITY Endorsement policy) and checks, with
// the official Fabric Gateway client v1.10.0, that the gateway of one
// organisation collects the other's endorsement; that a chaincode upgrade goes
// through the gateway as fabric-admin-sdk sends it (each approval endorsed by
// its own organisation, the commit planned from LifecycleEndorsement without
// naming organisations); that submits go on with one peer of each
// organisation killed; that chaincode events resume from a checkpoint after
// the client restarts, with no gap and no duplicate; that block and filtered
// block events arrive; that an MVCC conflict surfaces as the client's
// CommitError; and that when the other organisation's peers are down the
// client gets an EndorseError whose details name them.
func TestGatewayPlansEndorsementsAcrossOrganisations(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	var progress bytes.Buffer
	n, err := localnet.Up(ctx, localnet.Options{Dir: t.TempDir(), Binary: cairnBin, Progress: &progress, NoSync: true})
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

	// 1b. The gateway submits to the raft leader: once it has asked the
	// orderers who leads (its first submission above started that), no
	// follower receives a transaction to forward.
	before, leader := ordererBroadcasts(ctx, t, n)
	for i := range 4 {
		submitVALID(ctx, t, contract, "CreateAsset", fmt.Sprintf("%s-lead-%d", id, i), "blue", "5", "Tomoko", "300")
	}
	after, stillLeader := ordererBroadcasts(ctx, t, n)
	if leader == "" || stillLeader != leader {
		t.Fatalf("raft leader %q before the submissions, %q after; want one stable leader", leader, stillLeader)
	}
	for name, c := range after {
		want := 0.0
		if name == leader {
			want = 4
		}
		if got := c - before[name]; got != want {
			t.Errorf("orderer %s (leader %s) answered %v transactions, want %v", name, leader, got, want)
		}
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

	// 3. One peer of each organisation killed: the gateways endorse on the
	// other peer of that organisation.
	down := []string{n.Info.Organizations[0].Peers[1].Name, n.Info.Organizations[1].Peers[0].Name}
	for _, name := range down {
		if err := n.Kill(name, true); err != nil {
			t.Fatal(err)
		}
	}
	for i := range 3 {
		st := submitVALID(ctx, t, contract, "CreateAsset", fmt.Sprintf("%s-half-%d", id, i), "green", "1", "Ana", "10")
		if got := endorsingMSPs(t, network, st); !slices.Equal(got, []string{"Org1MSP", "Org2MSP"}) {
			t.Fatalf("CreateAsset with a peer of each organisation down endorsed by %v, want both organisations", got)
		}
	}
	for _, name := range down {
		if err := n.Restart(ctx, name); err != nil {
			t.Fatal(err)
		}
	}

	// 4. Chaincode events resume from a checkpoint after the client restarts.
	checkEventsResume(ctx, t, n, id)

	// 5. An MVCC conflict surfaces as the client's CommitError.
	checkMVCCConflict(t, contract, id)

	// 6. Org2's peers down: the client's EndorseError names them.
	var org2 []string
	for _, p := range n.Info.Organizations[1].Peers {
		if err := n.Kill(p.Name, true); err != nil && !strings.Contains(err.Error(), "not running") {
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

// ordererBroadcasts reads every orderer's /metrics: the envelopes of the
// network's channel it answered SUCCESS to on Broadcast, by orderer name, and
// the orderer that says it leads the channel.
func ordererBroadcasts(ctx context.Context, t *testing.T, n *localnet.Network) (map[string]float64, string) {
	t.Helper()
	counts := map[string]float64{}
	leader := ""
	for _, p := range n.Processes() {
		if p.Role != "orderer" {
			continue
		}
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+p.OperationsAddress+"/metrics", nil)
		if err != nil {
			t.Fatal(err)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatalf("%s /metrics: %v", p.Name, err)
		}
		body, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil {
			t.Fatalf("%s /metrics: %v", p.Name, err)
		}
		parser := expfmt.NewTextParser(model.UTF8Validation)
		families, err := parser.TextToMetricFamilies(bytes.NewReader(body))
		if err != nil {
			t.Fatalf("%s /metrics: %v", p.Name, err)
		}
		counts[p.Name] = 0
		for _, m := range families["cairn_orderer_broadcast_results_total"].GetMetric() {
			labels := map[string]string{}
			for _, l := range m.GetLabel() {
				labels[l.GetName()] = l.GetValue()
			}
			if labels["channel"] == n.Info.Channel && labels["status"] == "SUCCESS" {
				counts[p.Name] = m.GetCounter().GetValue()
			}
		}
		raft, err := localnet.ParseRaftMetrics(bytes.NewReader(body))
		if err != nil {
			t.Fatalf("%s /metrics: %v", p.Name, err)
		}
		if raft[n.Info.Channel].Leader {
			leader = p.Name
		}
	}
	return counts, leader
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

// checkEventsResume submits six transactions and reads their chaincode events
// with one client, which checkpoints three of them and goes away; a new
// client resuming from the checkpoint gets exactly the other three, in order.
// Block events and filtered block events over the same blocks carry them too.
func checkEventsResume(ctx context.Context, t *testing.T, n *localnet.Network, prefix string) {
	t.Helper()
	gw, conn, err := n.Gateway(0, "user1")
	if err != nil {
		t.Fatal(err)
	}
	network := gw.GetNetwork(n.Info.Channel)
	contract := network.GetContract("basic")
	var txIDs []string
	var first uint64
	for i := range 6 {
		st := submitVALID(ctx, t, contract, "CreateAsset", fmt.Sprintf("%s-ev-%d", prefix, i), "white", "2", "Eve", "20")
		if i == 0 {
			first = st.BlockNumber
		}
		txIDs = append(txIDs, st.TransactionID)
	}
	last := txIDs[len(txIDs)-1]

	evCtx, stop := context.WithTimeout(ctx, 30*time.Second)
	events, err := network.ChaincodeEvents(evCtx, "basic", client.WithStartBlock(first))
	if err != nil {
		t.Fatal(err)
	}
	checkpoint := new(client.InMemoryCheckpointer)
	for _, want := range txIDs[:3] {
		ev, ok := <-events
		if !ok {
			t.Fatalf("chaincode events ended before %s", want)
		}
		if ev.TransactionID != want || ev.EventName != "CreateAsset" {
			t.Fatalf("chaincode event %s %s, want CreateAsset of %s", ev.EventName, ev.TransactionID, want)
		}
		checkpoint.CheckpointChaincodeEvent(ev)
	}
	stop()
	gw.Close()
	conn.Close()

	gw, conn, err = n.Gateway(1, "user1") // the restarted client: another organisation's gateway even
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	defer gw.Close()
	network = gw.GetNetwork(n.Info.Channel)
	evCtx, stop = context.WithTimeout(ctx, 30*time.Second)
	defer stop()
	events, err = network.ChaincodeEvents(evCtx, "basic", client.WithCheckpoint(checkpoint))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range txIDs[3:] {
		ev, ok := <-events
		if !ok {
			t.Fatalf("resumed chaincode events ended before %s", want)
		}
		if ev.TransactionID != want {
			t.Fatalf("resumed at %s, want %s: a gap or a duplicate", ev.TransactionID, want)
		}
	}

	blocks, err := network.BlockEvents(evCtx, client.WithStartBlock(first))
	if err != nil {
		t.Fatal(err)
	}
	filtered, err := network.FilteredBlockEvents(evCtx, client.WithStartBlock(first))
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	for next := first; !seen[last]; next++ {
		b, ok := <-blocks
		if !ok {
			t.Fatalf("block events ended before block %d", next)
		}
		fb, ok := <-filtered
		if !ok {
			t.Fatalf("filtered block events ended before block %d", next)
		}
		if b.GetHeader().GetNumber() != next || fb.GetNumber() != next {
			t.Fatalf("block events at %d and %d, want %d", b.GetHeader().GetNumber(), fb.GetNumber(), next)
		}
		if len(fb.GetFilteredTransactions()) != len(b.GetData().GetData()) {
			t.Fatalf("block %d: %d filtered transactions for %d envelopes", next, len(fb.GetFilteredTransactions()), len(b.GetData().GetData()))
		}
		for _, ft := range fb.GetFilteredTransactions() {
			if slices.Contains(txIDs, ft.GetTxid()) {
				if ft.GetTxValidationCode() != pb.TxValidationCode_VALID {
					t.Fatalf("filtered block %d: %s is %s", next, ft.GetTxid(), ft.GetTxValidationCode())
				}
				seen[ft.GetTxid()] = true
			}
		}
	}
	if len(seen) != len(txIDs) {
		t.Fatalf("filtered block events carried %d of the %d transactions", len(seen), len(txIDs))
	}
}

// checkMVCCConflict updates one asset from two submitters at once: both are
// endorsed against the same version, so the second to be validated fails and
// the client's SubmitTransaction returns a CommitError with
// MVCC_READ_CONFLICT.
func checkMVCCConflict(t *testing.T, contract *client.Contract, id string) {
	t.Helper()
	errs := make(chan error, 2)
	for _, colour := range []string{"cyan", "magenta"} {
		go func() {
			_, err := contract.SubmitTransaction("UpdateAsset", id, colour, "5", "Max", "300")
			errs <- err
		}()
	}
	var failures []error
	for range 2 {
		if err := <-errs; err != nil {
			failures = append(failures, err)
		}
	}
	if len(failures) != 1 {
		t.Fatalf("two concurrent updates of one asset: %d failed (%v), want exactly one MVCC conflict", len(failures), failures)
	}
	var commitErr *client.CommitError
	if !errors.As(failures[0], &commitErr) || commitErr.Code != pb.TxValidationCode_MVCC_READ_CONFLICT {
		t.Fatalf("conflicting update: %v, want a CommitError with MVCC_READ_CONFLICT", failures[0])
	}
}
