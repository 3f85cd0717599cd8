package bench

import (
	"context"
	"errors"
	"fmt"
	mrand "math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/hyperledger/fabric-gateway/pkg/client"
	pb "github.com/hyperledger/fabric-protos-go-apiv2/peer"

	"github.com/cairn-ledger/cairn/internal/localnet"
)

func TestConnTargetSpreadsOverOrganisations(t *testing.T) {
	info := &localnet.Info{Organizations: []localnet.Organization{
		{Peers: []localnet.Peer{{Name: "a0"}, {Name: "a1"}}},
		{Peers: []localnet.Peer{{Name: "b0"}}},
	}}
	want := [][2]int{{0, 0}, {1, 0}, {0, 1}, {1, 0}, {0, 0}, {1, 0}}
	for i, w := range want {
		if org, peer := connTarget(info, i); org != w[0] || peer != w[1] {
			t.Errorf("connection %d: org %d peer %d, want %v", i, org, peer, w)
		}
	}
}

func TestPickHot(t *testing.T) {
	rng := mrand.New(mrand.NewPCG(1, 2))
	for range 100 {
		if hot, _ := pickHot(rng, 0, 8); hot {
			t.Fatal("0 % picked a hot key")
		}
		if hot, k := pickHot(rng, 100, 8); !hot || k < 0 || k >= 8 {
			t.Fatalf("100 %%: hot %v key %d", hot, k)
		}
	}
	const n = 20000
	hits := 0
	for range n {
		if hot, _ := pickHot(rng, 10, 8); hot {
			hits++
		}
	}
	if share := float64(hits) / n; share < 0.09 || share > 0.11 {
		t.Errorf("10 %%: %.3f of transactions hot", share)
	}
}

func TestErrorPhase(t *testing.T) {
	for _, tc := range []struct {
		err  error
		want string
	}{
		{&client.EndorseError{TransactionError: &client.TransactionError{}}, phaseEndorse},
		{fmt.Errorf("wrapped: %w", &client.SubmitError{TransactionError: &client.TransactionError{}}), phaseSubmit},
		{&client.CommitStatusError{TransactionError: &client.TransactionError{}}, phaseStatus},
		{errors.New("something else"), phaseOther},
	} {
		if got := errorPhase(tc.err); got != tc.want {
			t.Errorf("%T: phase %q, want %q", tc.err, got, tc.want)
		}
	}
}

// TestGatewayStatsAndResult: commits before the window count in the totals
// only; in-window commits give the rate, latencies, codes and blocks.
func TestGatewayStatsAndResult(t *testing.T) {
	began := time.Unix(1000, 0)
	r := &gatewayRun{
		cfg:   GatewayConfig{Duration: 2 * time.Second, Clients: 2, Conns: 1, HotPct: 10, HotKeys: 4},
		began: began, end: began.Add(2 * time.Second), seconds: 3,
	}
	a, b := newGatewayStats(r.seconds), newGatewayStats(r.seconds)
	ms := func(n int) time.Duration { return time.Duration(n) * time.Millisecond }
	// Warm-up: counted in totals, not in the window.
	a.submitted++
	a.record(r, pb.TxValidationCode_VALID, 3, began.Add(-ms(200)), began.Add(-ms(100)))
	// Window.
	a.submitted += 2
	a.record(r, pb.TxValidationCode_VALID, 5, began.Add(ms(100)), began.Add(ms(150)))
	a.record(r, pb.TxValidationCode_MVCC_READ_CONFLICT, 6, began.Add(ms(1100)), began.Add(ms(1300)))
	b.submitted += 3
	b.record(r, pb.TxValidationCode_VALID, 8, began.Add(ms(1400)), began.Add(ms(1500)))
	b.record(r, pb.TxValidationCode_VALID, 9, began.Add(ms(1900)), began.Add(ms(2500))) // after the window
	r.fail(b, &client.SubmitError{TransactionError: &client.TransactionError{}})

	res := r.result([]*gatewayStats{a, b})
	if res.Submitted != 6 || res.Committed != 5 || res.Valid != 4 || res.Errors != 1 {
		t.Errorf("totals: submitted %d committed %d valid %d errors %d", res.Submitted, res.Committed, res.Valid, res.Errors)
	}
	if res.Codes["VALID"] != 4 || res.Codes["MVCC_READ_CONFLICT"] != 1 || len(res.Codes) != 2 {
		t.Errorf("codes %v", res.Codes)
	}
	if res.ErrorsByPhase[phaseSubmit] != 1 {
		t.Errorf("errors by phase %v", res.ErrorsByPhase)
	}
	if res.CommittedInWindow != 3 || res.ValidInWindow != 2 || res.TPS != 1 {
		t.Errorf("window: committed %d valid %d tps %g", res.CommittedInWindow, res.ValidInWindow, res.TPS)
	}
	if res.P50ms != 100 || res.P99ms != 200 || res.MaxMs != 200 {
		t.Errorf("latency p50 %g p99 %g max %g", res.P50ms, res.P99ms, res.MaxMs)
	}
	if res.Blocks != 4 || res.TxPerBlock != 0.75 { // blocks 5..8
		t.Errorf("blocks %d, %g tx/block", res.Blocks, res.TxPerBlock)
	}
	if res.MinTPS1s != 1 || res.MaxTPS1s != 1 { // second 1: one VALID
		t.Errorf("1-s range %g..%g", res.MinTPS1s, res.MaxTPS1s)
	}
	if res.HotKeys != 4 || res.FirstError == "" {
		t.Errorf("hot keys %d, first error %q", res.HotKeys, res.FirstError)
	}
}

// TestTxFor: a fresh key is written without a read; a hot key is read and
// written, so that concurrent updates conflict, for either chaincode.
func TestTxFor(t *testing.T) {
	for _, tc := range []struct {
		chaincode string
		hot       bool
		fn        string
		args      []string
	}{
		{"basic", false, "CreateAsset", assetArgs("k")},
		{"basic", true, "UpdateAsset", assetArgs("k")},
		{"shimcheck", false, "Put", []string{"k", putValue}},
		{"shimcheck", true, "PutGet", []string{"k", putValue}},
	} {
		r := &gatewayRun{cfg: GatewayConfig{Chaincode: tc.chaincode}}
		fn, args := r.txFor("k", tc.hot)
		if fn != tc.fn || !slices.Equal(args, tc.args) {
			t.Errorf("%s hot=%v: %s %q, want %s %q", tc.chaincode, tc.hot, fn, args, tc.fn, tc.args)
		}
	}
}

func TestGatewayRejectsUnknownCommitStatus(t *testing.T) {
	info := &localnet.Info{Organizations: []localnet.Organization{{Peers: []localnet.Peer{{Name: "p"}}}}}
	_, err := Gateway(context.Background(), GatewayConfig{Info: info, CommitStatus: "poll"})
	if err == nil || !strings.Contains(err.Error(), `"poll"`) {
		t.Fatalf("err %v, want one naming the unknown mode", err)
	}
}
