package gateway_test

import (
	"context"
	"crypto/tls"
	"errors"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/cairn-ledger/cairn/gateway"
	"github.com/cairn-ledger/cairn/internal/comm"
	"github.com/hyperledger/fabric-gateway/pkg/client"
	"github.com/hyperledger/fabric-gateway/pkg/identity"
	"github.com/hyperledger/fabric-protos-go-apiv2/common"
	gp "github.com/hyperledger/fabric-protos-go-apiv2/gateway"
	ab "github.com/hyperledger/fabric-protos-go-apiv2/orderer"
	"github.com/hyperledger/fabric-protos-go-apiv2/peer"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

const (
	peerAddress = "peer0.org1.example.com:7051"
	peerMSP     = "Org1MSP"
)

type harness struct {
	ledger   *fakeLedger
	channels *fakeChannels
	orderer  *fakeOrderer
	endorser *fakeEndorser
	gateway  *client.Gateway
	contract *client.Contract
	network  *client.Network
}

type harnessOption func(*harnessConfig)

type harnessConfig struct {
	extraOrderers []string // tried first, in this order
}

func newHarness(t *testing.T, opts ...harnessOption) *harness {
	t.Helper()
	var hc harnessConfig
	for _, o := range opts {
		o(&hc)
	}
	ca := newTestCA(t)
	ledger := newFakeLedger()
	ord := &fakeOrderer{ledger: ledger}
	ordAddr := serve(t, ca.serverTLS(t), func(s *grpc.Server) { ab.RegisterAtomicBroadcastServer(s, ord) })

	peerCert, peerKey := ca.issue(t, "peer0", false)
	endorser := &fakeEndorser{signer: &signer{mspID: peerMSP, cert: peerCert, key: peerKey}}
	channels := &fakeChannels{
		ledger:    ledger,
		orderers:  append(append([]string{}, hc.extraOrderers...), ordAddr),
		rootCerts: [][]byte{ca.pem},
		deny:      map[string]bool{},
	}
	srv, err := gateway.New(gateway.Config{
		Endorser:           endorser,
		Channels:           channels,
		Address:            peerAddress,
		MSPID:              peerMSP,
		EndorsementTimeout: 5 * time.Second,
		BroadcastTimeout:   5 * time.Second,
		OrdererTLS:         &tls.Config{MinVersion: tls.VersionTLS12},
		// Deterministic order: the listed order, so failover is exercised.
		Perm: func(n int) []int {
			p := make([]int, n)
			for i := range p {
				p[i] = i
			}
			return p
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := srv.Close(); err != nil {
			t.Error(err)
		}
	})
	gwAddr := serve(t, ca.serverTLS(t), func(s *grpc.Server) { gp.RegisterGatewayServer(s, srv) })

	conn, err := comm.Dial(gwAddr, ca.clientTLS())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })

	userCert, userKey := ca.issue(t, "User1", false)
	id, err := identity.NewX509Identity(peerMSP, userCert)
	if err != nil {
		t.Fatal(err)
	}
	sign, err := identity.NewPrivateKeySign(userKey)
	if err != nil {
		t.Fatal(err)
	}
	gw, err := client.Connect(id, client.WithSign(sign), client.WithClientConnection(conn),
		client.WithEvaluateTimeout(10*time.Second),
		client.WithEndorseTimeout(10*time.Second),
		client.WithSubmitTimeout(10*time.Second),
		client.WithCommitStatusTimeout(10*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { gw.Close() })
	network := gw.GetNetwork("mychannel")
	return &harness{
		ledger: ledger, channels: channels, orderer: ord, endorser: endorser,
		gateway: gw, network: network, contract: network.GetContract("basic"),
	}
}

func statusOf(t *testing.T, err error) *status.Status {
	t.Helper()
	st, ok := status.FromError(err)
	if !ok {
		t.Fatalf("error %v carries no gRPC status", err)
	}
	return st
}

func details(st *status.Status) []*gp.ErrorDetail {
	var out []*gp.ErrorDetail
	for _, d := range st.Details() {
		if ed, ok := d.(*gp.ErrorDetail); ok {
			out = append(out, ed)
		}
	}
	return out
}

func TestEvaluateReturnsResult(t *testing.T) {
	h := newHarness(t)
	got, err := h.contract.EvaluateTransaction("echo", "hello")
	if err != nil {
		t.Fatal(err)
	}
	if string(got) != "hello" {
		t.Fatalf("result %q, want hello", got)
	}
	if h.ledger.Height() != 1 {
		t.Fatalf("evaluate changed the ledger: height %d", h.ledger.Height())
	}
}

func TestEvaluateChaincodeErrorCarriesMessage(t *testing.T) {
	h := newHarness(t)
	_, err := h.contract.EvaluateTransaction("fail", "no such asset")
	if err == nil {
		t.Fatal("evaluate succeeded")
	}
	st := statusOf(t, err)
	if st.Code() != codes.Unknown {
		t.Errorf("code %v, want Unknown", st.Code())
	}
	const want = "evaluate call to endorser returned error: chaincode response 500, boom: no such asset"
	if st.Message() != want {
		t.Errorf("message %q, want %q", st.Message(), want)
	}
	ds := details(st)
	if len(ds) != 1 || ds[0].Address != peerAddress || ds[0].MspId != peerMSP || ds[0].Message != "chaincode response 500, boom: no such asset" {
		t.Errorf("details %v", ds)
	}
}

func TestEvaluatePeerErrorIsAborted(t *testing.T) {
	h := newHarness(t)
	_, err := h.contract.EvaluateTransaction("peerfail")
	st := statusOf(t, err)
	if st.Code() != codes.Aborted || st.Message() != "failed to evaluate transaction, see attached details for more info" {
		t.Errorf("status %v %q", st.Code(), st.Message())
	}
	if ds := details(st); len(ds) != 1 || !strings.Contains(ds[0].Message, "creator org unknown") {
		t.Errorf("details %v", ds)
	}
}

func TestSubmitReturnsResultAfterValidCommit(t *testing.T) {
	h := newHarness(t)
	got, err := h.contract.SubmitTransaction("echo", "committed")
	if err != nil {
		t.Fatal(err)
	}
	if string(got) != "committed" {
		t.Fatalf("result %q", got)
	}
	if h.ledger.Height() != 2 {
		t.Fatalf("height %d, want 2", h.ledger.Height())
	}
	// The transaction reached the orderer signed by the client.
	b, _ := h.ledger.Block(1)
	if len(b.Data.Data) != 1 {
		t.Fatalf("block 1 has %d transactions", len(b.Data.Data))
	}
	// CommitStatus was authorised against the gateway/CommitStatus ACL with the
	// client's signature.
	var found bool
	for _, c := range h.channels.aclCalls() {
		if c.resource == gateway.ResourceCommitStatus && c.channel == "mychannel" && len(c.signed) == 1 && len(c.signed[0].Signature) > 0 && len(c.signed[0].Identity) > 0 {
			found = true
		}
	}
	if !found {
		t.Errorf("no CommitStatus ACL check recorded: %+v", h.channels.aclCalls())
	}
}

func TestEndorseChaincodeErrorIsEndorseError(t *testing.T) {
	h := newHarness(t)
	_, err := h.contract.SubmitTransaction("fail", "asset1 exists")
	var endorseErr *client.EndorseError
	if !errors.As(err, &endorseErr) {
		t.Fatalf("error %T %v, want *client.EndorseError", err, err)
	}
	st := statusOf(t, err)
	if st.Code() != codes.Aborted {
		t.Errorf("code %v, want Aborted", st.Code())
	}
	if st.Message() != "failed to endorse transaction, see attached details for more info" {
		t.Errorf("message %q", st.Message())
	}
	ds := endorseErr.Details()
	if len(ds) != 1 || ds[0].Message != "chaincode response 500, boom: asset1 exists" || ds[0].MspId != peerMSP || ds[0].Address != peerAddress {
		t.Errorf("details %v", ds)
	}
	if !strings.Contains(err.Error(), "boom: asset1 exists") {
		t.Errorf("error text lacks the chaincode message: %s", err)
	}
	if h.orderer.receivedCount() != 0 {
		t.Error("a failed endorsement was submitted")
	}
}

func TestCommitErrorCarriesValidationCode(t *testing.T) {
	h := newHarness(t)
	_, err := h.contract.SubmitTransaction("conflict", "x")
	var commitErr *client.CommitError
	if !errors.As(err, &commitErr) {
		t.Fatalf("error %T %v, want *client.CommitError", err, err)
	}
	if commitErr.Code != peer.TxValidationCode_MVCC_READ_CONFLICT {
		t.Errorf("code %v", commitErr.Code)
	}
}

func TestCommitStatusWaitsForCommit(t *testing.T) {
	h := newHarness(t)
	h.orderer.setHold(true)
	proposal, err := h.contract.NewProposal("echo", client.WithArguments("later"))
	if err != nil {
		t.Fatal(err)
	}
	tx, err := proposal.Endorse()
	if err != nil {
		t.Fatal(err)
	}
	commit, err := tx.Submit()
	if err != nil {
		t.Fatal(err)
	}
	type result struct {
		st  *client.Status
		err error
	}
	done := make(chan result, 1)
	go func() {
		st, err := commit.Status()
		done <- result{st, err}
	}()
	select {
	case r := <-done:
		t.Fatalf("commit status returned before commit: %+v", r)
	case <-time.After(200 * time.Millisecond):
	}
	h.orderer.flush()
	r := <-done
	if r.err != nil {
		t.Fatal(r.err)
	}
	if !r.st.Successful || r.st.Code != peer.TxValidationCode_VALID || r.st.BlockNumber != 1 || r.st.TransactionID != tx.TransactionID() {
		t.Errorf("status %+v", r.st)
	}
}

func TestCommitStatusHonoursDeadline(t *testing.T) {
	h := newHarness(t)
	h.orderer.setHold(true)
	proposal, _ := h.contract.NewProposal("echo")
	tx, err := proposal.Endorse()
	if err != nil {
		t.Fatal(err)
	}
	commit, err := tx.Submit()
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	_, err = commit.StatusWithContext(ctx)
	var csErr *client.CommitStatusError
	if !errors.As(err, &csErr) {
		t.Fatalf("error %T %v, want *client.CommitStatusError", err, err)
	}
	if c := statusOf(t, err).Code(); c != codes.DeadlineExceeded {
		t.Errorf("code %v", c)
	}
}

func TestCommitStatusPermissionDenied(t *testing.T) {
	h := newHarness(t)
	h.channels.setDeny(gateway.ResourceCommitStatus, true)
	_, err := h.contract.SubmitTransaction("echo", "x")
	var csErr *client.CommitStatusError
	if !errors.As(err, &csErr) {
		t.Fatalf("error %T %v, want *client.CommitStatusError", err, err)
	}
	if c := statusOf(t, err).Code(); c != codes.PermissionDenied {
		t.Errorf("code %v", c)
	}
}

func TestSubmitOrdererRefusalIsSubmitError(t *testing.T) {
	h := newHarness(t)
	h.orderer.setStatus(common.Status_SERVICE_UNAVAILABLE)
	_, err := h.contract.SubmitTransaction("echo", "x")
	var submitErr *client.SubmitError
	if !errors.As(err, &submitErr) {
		t.Fatalf("error %T %v, want *client.SubmitError", err, err)
	}
	st := statusOf(t, err)
	if st.Code() != codes.Unavailable || st.Message() != "no orderers could successfully process transaction" {
		t.Errorf("status %v %q", st.Code(), st.Message())
	}
	if ds := submitErr.Details(); len(ds) != 1 || !strings.Contains(ds[0].Message, "status=SERVICE_UNAVAILABLE") {
		t.Errorf("details %v", ds)
	}

	h.orderer.setStatus(common.Status_BAD_REQUEST)
	_, err = h.contract.SubmitTransaction("echo", "x")
	if !errors.As(err, &submitErr) {
		t.Fatalf("error %T %v, want *client.SubmitError", err, err)
	}
	st = statusOf(t, err)
	if st.Code() != codes.Aborted || st.Message() != "received unsuccessful response from orderer: status=BAD_REQUEST, info=fake orderer" {
		t.Errorf("status %v %q", st.Code(), st.Message())
	}
}

func TestSubmitFailsOverToReachableOrderer(t *testing.T) {
	// A port nobody listens on: the connection is refused.
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dead := lis.Addr().String()
	lis.Close()

	h := newHarness(t, func(c *harnessConfig) { c.extraOrderers = []string{dead} })
	got, err := h.contract.SubmitTransaction("echo", "via second orderer")
	if err != nil {
		t.Fatal(err)
	}
	if string(got) != "via second orderer" {
		t.Fatalf("result %q", got)
	}
}

func TestSubmitNoOrdererReachable(t *testing.T) {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dead := lis.Addr().String()
	lis.Close()
	h := newHarness(t, func(c *harnessConfig) { c.extraOrderers = []string{dead} })
	h.channels.setOrderers(dead)
	_, err = h.contract.SubmitTransaction("echo", "x")
	var submitErr *client.SubmitError
	if !errors.As(err, &submitErr) {
		t.Fatalf("error %T %v, want *client.SubmitError", err, err)
	}
	if ds := submitErr.Details(); len(ds) != 1 || ds[0].Address != dead {
		t.Errorf("details %v", ds)
	}
}

// nextEvent reads one event or fails after a timeout.
func nextEvent(t *testing.T, events <-chan *client.ChaincodeEvent) *client.ChaincodeEvent {
	t.Helper()
	select {
	case ev, ok := <-events:
		if !ok {
			t.Fatal("event stream closed")
		}
		return ev
	case <-time.After(5 * time.Second):
		t.Fatal("no event within 5s")
		return nil
	}
}

func TestChaincodeEventsAndCheckpointResume(t *testing.T) {
	h := newHarness(t)
	// Block 1: one event.
	if _, err := h.contract.SubmitTransaction("emit", "created", "a1"); err != nil {
		t.Fatal(err)
	}
	// Block 2: three transactions — two events around an invalid one whose
	// event must not be delivered — committed together.
	h.orderer.setHold(true)
	var commits []*client.Commit
	for _, args := range [][]string{{"emit", "updated", "a2"}, {"conflictemit", "lost", "zz"}, {"emit", "deleted", "a3"}} {
		_, commit, err := h.contract.SubmitAsync(args[0], client.WithArguments(args[1:]...))
		if err != nil {
			t.Fatal(err)
		}
		commits = append(commits, commit)
	}
	if h.orderer.queued() != 3 {
		t.Fatalf("queued %d", h.orderer.queued())
	}
	h.orderer.setHold(false)
	h.orderer.flush()
	// Block 3: a transaction without events.
	if _, err := h.contract.SubmitTransaction("echo", "quiet"); err != nil {
		t.Fatal(err)
	}

	ctx, cancel := context.WithCancel(context.Background())
	events, err := h.network.ChaincodeEvents(ctx, "basic", client.WithStartBlock(0))
	if err != nil {
		t.Fatal(err)
	}
	checkpoint := new(client.InMemoryCheckpointer)
	ev := nextEvent(t, events)
	if ev.BlockNumber != 1 || ev.EventName != "created" || string(ev.Payload) != "a1" || ev.ChaincodeName != "basic" {
		t.Fatalf("first event %+v", ev)
	}
	checkpoint.CheckpointChaincodeEvent(ev)
	ev = nextEvent(t, events)
	if ev.BlockNumber != 2 || ev.EventName != "updated" || ev.TransactionID != commits[0].TransactionID() {
		t.Fatalf("second event %+v", ev)
	}
	checkpoint.CheckpointChaincodeEvent(ev)
	cancel()

	// Resume from the checkpoint (block 2, after "updated"): the next event is
	// "deleted" in the same block, then new ones as they commit.
	ctx, cancel = context.WithCancel(context.Background())
	defer cancel()
	events, err = h.network.ChaincodeEvents(ctx, "basic", client.WithCheckpoint(checkpoint))
	if err != nil {
		t.Fatal(err)
	}
	ev = nextEvent(t, events)
	if ev.BlockNumber != 2 || ev.EventName != "deleted" || ev.TransactionID != commits[2].TransactionID() {
		t.Fatalf("resumed event %+v", ev)
	}
	if _, err := h.contract.SubmitTransaction("emit", "later", "a4"); err != nil {
		t.Fatal(err)
	}
	ev = nextEvent(t, events)
	if ev.BlockNumber != 4 || ev.EventName != "later" {
		t.Fatalf("live event %+v", ev)
	}
	// Events of other chaincodes are not delivered.
	other := h.network.GetContract("other")
	if _, err := other.SubmitTransaction("emit", "elsewhere", "b1"); err != nil {
		t.Fatal(err)
	}
	if _, err := h.contract.SubmitTransaction("emit", "last", "a5"); err != nil {
		t.Fatal(err)
	}
	ev = nextEvent(t, events)
	if ev.BlockNumber != 6 || ev.EventName != "last" {
		t.Fatalf("event after another chaincode's %+v", ev)
	}
}

func TestChaincodeEventsDefaultStartsAtNextCommit(t *testing.T) {
	h := newHarness(t)
	if _, err := h.contract.SubmitTransaction("emit", "old", "a1"); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	events, err := h.network.ChaincodeEvents(ctx, "basic")
	if err != nil {
		t.Fatal(err)
	}
	// The request is sent when ChaincodeEvents returns; give the server a
	// moment to read the ledger height before committing the next block.
	time.Sleep(100 * time.Millisecond)
	if _, err := h.contract.SubmitTransaction("emit", "new", "a2"); err != nil {
		t.Fatal(err)
	}
	if ev := nextEvent(t, events); ev.EventName != "new" || ev.BlockNumber != 2 {
		t.Fatalf("event %+v", ev)
	}
}

func TestChaincodeEventsErrors(t *testing.T) {
	h := newHarness(t)
	h.channels.setDeny(gateway.ResourceChaincodeEvents, true)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	events, err := h.network.ChaincodeEvents(ctx, "basic")
	if err == nil {
		// The client may report the stream error by closing the channel.
		if _, ok := <-events; ok {
			t.Fatal("events delivered despite denied ACL")
		}
	} else if c := statusOf(t, err).Code(); c != codes.PermissionDenied {
		t.Fatalf("code %v", c)
	}

	h.channels.setDeny(gateway.ResourceChaincodeEvents, false)
	unknown := h.gateway.GetNetwork("nochannel")
	events, err = unknown.ChaincodeEvents(ctx, "basic")
	if err == nil {
		if _, ok := <-events; ok {
			t.Fatal("events delivered for unknown channel")
		}
	} else if c := statusOf(t, err).Code(); c != codes.NotFound {
		t.Fatalf("code %v", c)
	}
}
