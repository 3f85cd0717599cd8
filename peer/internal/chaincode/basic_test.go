package chaincode

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cairn-ledger/cairn/chaincode/basic"
)

const (
	basicID   = "basic_1.0:0123456789abcdef"
	channelID = "mychannel"
)

// startBasic runs the real sample contract through the real shim against s,
// configured through the standard chaincode environment variables.
func startBasic(t testing.TB, s *Support, addr string, pki *testPKI) {
	t.Helper()
	dir := t.TempDir()
	write := func(name string, data []byte) string {
		path := filepath.Join(dir, name)
		if err := os.WriteFile(path, data, 0o600); err != nil {
			t.Fatal(err)
		}
		return path
	}
	// Fabric's peer hands chaincode its client key and cert as base64 of the PEM.
	env := map[string]string{
		"CORE_CHAINCODE_ID_NAME":      basicID,
		"CORE_PEER_ADDRESS":           addr,
		"CORE_PEER_TLS_ENABLED":       "true",
		"CORE_PEER_TLS_ROOTCERT_FILE": write("root.pem", pki.caPEM),
		"CORE_TLS_CLIENT_KEY_PATH":    write("client.key", []byte(base64.StdEncoding.EncodeToString(pki.clientKeyPEM))),
		"CORE_TLS_CLIENT_CERT_PATH":   write("client.crt", []byte(base64.StdEncoding.EncodeToString(pki.clientCertPEM))),
	}
	cfg, err := basic.ConfigFromEnv(func(k string) string { return env[k] }, nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	stopped := make(chan error, 1)
	go func() { stopped <- basic.Serve(ctx, cfg) }()
	t.Cleanup(func() {
		cancel()
		select {
		case <-stopped:
		case <-time.After(10 * time.Second):
			t.Error("basic chaincode did not stop")
		}
	})
	wctx, wcancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer wcancel()
	if err := s.WaitRegistered(wctx, basicID); err != nil {
		t.Fatal(err)
	}
}

type basicHarness struct {
	t     testing.TB
	s     *Support
	pki   *testPKI
	world map[string][]byte
	n     int
}

func newBasicHarness(t testing.TB, cfg Config) *basicHarness {
	s := New(cfg)
	pki := newTestPKI(t)
	addr := startServer(t, s, pki)
	startBasic(t, s, addr, pki)
	return &basicHarness{t: t, s: s, pki: pki, world: map[string][]byte{}}
}

// invoke executes fn(args...) on basic and, if it succeeded, commits its writes.
func (h *basicHarness) invoke(fn string, params ...string) (*Result, *memSim) {
	h.t.Helper()
	h.n++
	txID := fmt.Sprintf("tx%04d", h.n)
	input := args(append([]string{fn}, params...)...)
	sim := newMemSim(h.world)
	res, err := h.s.Execute(context.Background(), Invocation{
		PackageID:      basicID,
		Namespace:      "basic",
		ChannelID:      channelID,
		TxID:           txID,
		SignedProposal: signedProposal(h.t, channelID, txID, h.pki.identityPEM, input, nil),
		Input:          input,
	}, sim)
	if err != nil {
		h.t.Fatalf("Execute %s: %v", fn, err)
	}
	if res.Response.Status == 200 {
		sim.commit("basic")
	}
	return res, sim
}

func TestBasicContractEndToEnd(t *testing.T) {
	checkNoLeaks(t)
	h := newBasicHarness(t, Config{})

	// InitLedger: six writes (sent as one WRITE_BATCH_STATE) and the list as the event.
	res, sim := h.invoke("InitLedger")
	if res.Response.Status != 200 {
		t.Fatalf("InitLedger: %d %s", res.Response.Status, res.Response.Message)
	}
	if len(sim.writes) != 6 {
		t.Fatalf("InitLedger wrote %d keys, want 6", len(sim.writes))
	}
	if res.Event == nil || res.Event.EventName != "InitLedger" || res.Event.ChaincodeId != "basic" || res.Event.TxId != "tx0001" {
		t.Fatalf("InitLedger event = %v", res.Event)
	}
	var listed []basic.Asset
	if err := json.Unmarshal(res.Event.Payload, &listed); err != nil || len(listed) != 6 {
		t.Fatalf("InitLedger event payload %s: %v", res.Event.Payload, err)
	}

	// CreateAsset.
	res, sim = h.invoke("CreateAsset", "asset7", "purple", "20", "Ana", "900")
	if res.Response.Status != 200 {
		t.Fatalf("CreateAsset: %d %s", res.Response.Status, res.Response.Message)
	}
	want7 := `{"ID":"asset7","Color":"purple","Size":20,"Owner":"Ana","AppraisedValue":900}`
	if got := string(sim.writes["asset7"]); got != want7 {
		t.Fatalf("CreateAsset wrote %s, want %s", got, want7)
	}
	if res.Event.EventName != "CreateAsset" || string(res.Event.Payload) != want7 {
		t.Fatalf("CreateAsset event = %s %s", res.Event.EventName, res.Event.Payload)
	}

	// CreateAsset again: the contract's error, as a 500 Result.
	res, sim = h.invoke("CreateAsset", "asset7", "purple", "20", "Ana", "900")
	if res.Response.Status != 500 || res.Response.Message != "the asset asset7 already exists" {
		t.Fatalf("duplicate CreateAsset = %d %q", res.Response.Status, res.Response.Message)
	}
	if len(sim.writes) != 0 {
		t.Fatalf("failed CreateAsset wrote %v", sim.writes)
	}

	// ReadAsset.
	res, _ = h.invoke("ReadAsset", "asset7")
	if res.Response.Status != 200 || string(res.Response.Payload) != want7 {
		t.Fatalf("ReadAsset = %d %s", res.Response.Status, res.Response.Payload)
	}
	if res.Event != nil {
		t.Fatalf("ReadAsset emitted %v", res.Event)
	}

	// TransferAsset returns the old owner.
	res, sim = h.invoke("TransferAsset", "asset1", "Christopher")
	if res.Response.Status != 200 || string(res.Response.Payload) != "Tomoko" {
		t.Fatalf("TransferAsset = %d %q %q", res.Response.Status, res.Response.Payload, res.Response.Message)
	}
	if !strings.Contains(string(sim.writes["asset1"]), `"Owner":"Christopher"`) || res.Event.EventName != "TransferAsset" {
		t.Fatalf("TransferAsset wrote %s, event %v", sim.writes["asset1"], res.Event)
	}

	// GetAllAssets: a range query over the whole namespace, in key order.
	res, _ = h.invoke("GetAllAssets")
	var all []basic.Asset
	if err := json.Unmarshal(res.Response.Payload, &all); err != nil {
		t.Fatalf("GetAllAssets %d %s: %v", res.Response.Status, res.Response.Payload, err)
	}
	var ids []string
	for _, a := range all {
		ids = append(ids, a.ID)
	}
	if got := strings.Join(ids, ","); got != "asset1,asset2,asset3,asset4,asset5,asset6,asset7" {
		t.Fatalf("GetAllAssets ids = %s", got)
	}
	if all[0].Owner != "Christopher" {
		t.Fatalf("GetAllAssets asset1 owner = %s", all[0].Owner)
	}

	// Missing asset.
	res, _ = h.invoke("ReadAsset", "nope")
	if res.Response.Status != 500 || res.Response.Message != "the asset nope does not exist" {
		t.Fatalf("ReadAsset missing = %d %q", res.Response.Status, res.Response.Message)
	}

	// DeleteAsset: the event carries the deleted asset.
	res, sim = h.invoke("DeleteAsset", "asset7")
	if res.Response.Status != 200 || res.Event.EventName != "DeleteAsset" || string(res.Event.Payload) != want7 {
		t.Fatalf("DeleteAsset = %d %v", res.Response.Status, res.Event)
	}
	if v, ok := sim.writes["asset7"]; !ok || v != nil {
		t.Fatalf("DeleteAsset did not record a delete")
	}

	// A ledger failure reaches the contract as an error.
	failing := newMemSim(h.world)
	failing.failGet = errors.New("disk on fire")
	input := args("ReadAsset", "asset1")
	res, err := h.s.Execute(context.Background(), Invocation{
		PackageID: basicID, Namespace: "basic", ChannelID: channelID, TxID: "txfail",
		SignedProposal: signedProposal(t, channelID, "txfail", h.pki.identityPEM, input, nil), Input: input,
	}, failing)
	if err != nil {
		t.Fatal(err)
	}
	if res.Response.Status != 500 || !strings.Contains(res.Response.Message, "disk on fire") {
		t.Fatalf("failing ledger = %d %q", res.Response.Status, res.Response.Message)
	}
}

func TestBasicConcurrentExecutions(t *testing.T) {
	checkNoLeaks(t)
	h := newBasicHarness(t, Config{})
	h.invoke("InitLedger")
	errc := make(chan error, 32)
	for i := range 32 {
		go func() {
			txID := fmt.Sprintf("ctx%02d", i)
			input := args("ReadAsset", fmt.Sprintf("asset%d", i%6+1))
			res, err := h.s.Execute(context.Background(), Invocation{
				PackageID: basicID, Namespace: "basic", ChannelID: channelID, TxID: txID,
				SignedProposal: signedProposal(t, channelID, txID, h.pki.identityPEM, input, nil), Input: input,
			}, newMemSim(h.world))
			if err == nil && res.Response.Status != 200 {
				err = fmt.Errorf("%s: %d %s", txID, res.Response.Status, res.Response.Message)
			}
			errc <- err
		}()
	}
	for range 32 {
		if err := <-errc; err != nil {
			t.Error(err)
		}
	}
}

func BenchmarkExecuteReadAsset(b *testing.B) {
	h := newBasicHarness(b, Config{})
	h.invoke("InitLedger")
	input := args("ReadAsset", "asset3")
	prop := signedProposal(b, channelID, "bench", h.pki.identityPEM, input, nil)
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; b.Loop(); i++ {
		res, err := h.s.Execute(context.Background(), Invocation{
			PackageID: basicID, Namespace: "basic", ChannelID: channelID, TxID: fmt.Sprintf("b%d", i),
			SignedProposal: prop, Input: input,
		}, newMemSim(h.world))
		if err != nil || res.Response.Status != 200 {
			b.Fatalf("%v %v", err, res)
		}
	}
}
