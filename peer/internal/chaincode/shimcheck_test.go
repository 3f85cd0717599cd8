package chaincode

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hyperledger/fabric-protos-go-apiv2/common"
	"github.com/hyperledger/fabric-protos-go-apiv2/ledger/queryresult"
	"github.com/hyperledger/fabric-protos-go-apiv2/msp"
	"github.com/hyperledger/fabric-protos-go-apiv2/peer"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/protobuf/proto"

	"github.com/cairn-ledger/cairn/chaincode/shimcheck"
)

// These tests drive chaincode/shimcheck, a chaincode calling every shim
// API, through the real fabric-chaincode-go/v2 shim over mutual TLS, and
// check what each call sees and what it leaves in the simulator.

const (
	pkgA         = "shimcheck_a:0123"
	pkgB         = "shimcheck_b:4567"
	otherChannel = "otherchannel"
)

// msgCounter counts the chaincode messages the peer receives and keeps the
// READY it sent, by wrapping the Register stream.
type msgCounter struct {
	mu    sync.Mutex
	recv  map[peer.ChaincodeMessage_Type]int
	ready *peer.ChaincodeMessage
}

func (c *msgCounter) interceptor(srv any, ss grpc.ServerStream, _ *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
	return handler(srv, countingStream{ss, c})
}

func (c *msgCounter) snapshot() map[peer.ChaincodeMessage_Type]int {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make(map[peer.ChaincodeMessage_Type]int, len(c.recv))
	for k, v := range c.recv {
		out[k] = v
	}
	return out
}

type countingStream struct {
	grpc.ServerStream
	c *msgCounter
}

func (s countingStream) RecvMsg(m any) error {
	err := s.ServerStream.RecvMsg(m)
	if msg, ok := m.(*peer.ChaincodeMessage); ok && err == nil {
		s.c.mu.Lock()
		s.c.recv[msg.GetType()]++
		s.c.mu.Unlock()
	}
	return err
}

func (s countingStream) SendMsg(m any) error {
	if msg, ok := m.(*peer.ChaincodeMessage); ok && msg.GetType() == peer.ChaincodeMessage_READY {
		s.c.mu.Lock()
		s.c.ready = proto.Clone(msg).(*peer.ChaincodeMessage)
		s.c.mu.Unlock()
	}
	return s.ServerStream.SendMsg(m)
}

// fakeCallees resolves "cca" and "ccb" as the endorser would, refuses the
// system chaincode "_lifecycle", and serves otherChannel from its own state.
type fakeCallees struct {
	otherWorld map[string][]byte

	mu       sync.Mutex
	resolved []string // channel/name
	opened   int
	released int
	lastSim  *memSim // the last other-channel simulator handed out
}

func (f *fakeCallees) Resolve(_ context.Context, ch, name string) (string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.resolved = append(f.resolved, ch+"/"+name)
	if name == "_lifecycle" {
		return "", fmt.Errorf("system chaincode %s cannot be invoked with a cc2cc invocation", name)
	}
	if ch != channelID && ch != otherChannel {
		return "", fmt.Errorf("failed to find ledger for channel: %s", ch)
	}
	switch name {
	case "cca":
		return pkgA, nil
	case "ccb":
		return pkgB, nil
	}
	return "", fmt.Errorf("make sure the chaincode %s has been successfully defined on channel %s and try again", name, ch)
}

func (f *fakeCallees) ChannelState(_ context.Context, channelID, _ string) (TxSimulator, func(), error) {
	if channelID != otherChannel {
		return nil, nil, fmt.Errorf("failed to find ledger for channel: %s", channelID)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.opened++
	f.lastSim = newMemSim(f.otherWorld)
	return f.lastSim, func() { f.mu.Lock(); f.released++; f.mu.Unlock() }, nil
}

// startShimcheck runs shimcheck as a chaincode process dialling s.
func startShimcheck(t testing.TB, s *Support, addr string, pki *testPKI, pkgID string) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	stopped := make(chan error, 1)
	go func() {
		stopped <- shimcheck.Serve(ctx, shimcheck.Config{ChaincodeID: pkgID, PeerAddress: addr, TLS: pki.clientTLS(t)})
	}()
	t.Cleanup(func() {
		cancel()
		select {
		case <-stopped:
		case <-time.After(10 * time.Second):
			t.Error("shimcheck chaincode did not stop")
		}
	})
	wctx, wcancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer wcancel()
	if err := s.WaitRegistered(wctx, pkgID); err != nil {
		t.Fatal(err)
	}
}

type shimHarness struct {
	t       *testing.T
	s       *Support
	pki     *testPKI
	counter *msgCounter
	callees *fakeCallees
	world   map[string][]byte
	n       *int // shared by the copies from with
}

// with returns h reporting to t, for use inside a subtest.
func (h *shimHarness) with(t *testing.T) *shimHarness {
	c := *h
	c.t = t
	return &c
}

func newShimHarness(t *testing.T, cfg Config) *shimHarness {
	s := New(cfg)
	pki := newTestPKI(t)
	counter := &msgCounter{recv: map[peer.ChaincodeMessage_Type]int{}}
	addr := startServer(t, s, pki, grpc.StreamInterceptor(counter.interceptor))
	startShimcheck(t, s, addr, pki, pkgA)
	startShimcheck(t, s, addr, pki, pkgB)

	world := map[string][]byte{}
	for i := range 25 {
		world[nsKey("cca", fmt.Sprintf("k%02d", i))] = []byte(fmt.Sprintf("v%d", i))
	}
	for _, c := range []struct{ attrs []string }{{[]string{"blue", "a1"}}, {[]string{"blue", "a2"}}, {[]string{"blue", "a3"}}, {[]string{"red", "a4"}}} {
		world[nsKey("cca", compositeKey("color", c.attrs...))] = []byte(c.attrs[1])
	}
	world[nsKey("ccb", "b1")] = []byte("bee")
	other := map[string][]byte{nsKey("ccb", "b1"): []byte("other bee")}
	return &shimHarness{t: t, s: s, pki: pki, counter: counter, callees: &fakeCallees{otherWorld: other}, world: world, n: new(int)}
}

// compositeKey builds the key shim.CreateCompositeKey builds.
func compositeKey(objectType string, attrs ...string) string {
	return "\x00" + objectType + "\x00" + strings.Join(attrs, "\x00") + "\x00"
}

type call struct {
	ctx        context.Context
	sim        TxSimulator
	transient  map[string][]byte
	decoration map[string][]byte
}

// run executes fn(params...) on chaincode cca.
func (h *shimHarness) run(c call, fn string, params ...string) (*Result, *memSim, *peer.SignedProposal, error) {
	h.t.Helper()
	*h.n++
	txID := fmt.Sprintf("stx%04d", *h.n)
	input := args(append([]string{fn}, params...)...)
	input.Decorations = c.decoration
	if c.sim == nil {
		c.sim = newMemSim(h.world)
	}
	if c.ctx == nil {
		c.ctx = context.Background()
	}
	sp := signedProposal(h.t, channelID, txID, h.pki.identityPEM, input, c.transient)
	res, err := h.s.Execute(c.ctx, Invocation{
		PackageID: pkgA, Namespace: "cca", ChannelID: channelID, TxID: txID,
		SignedProposal: sp, Input: input, Callees: h.callees,
	}, c.sim)
	m, _ := c.sim.(*memSim)
	if hs, ok := c.sim.(histSim); ok {
		m = hs.memSim
	}
	return res, m, sp, err
}

// ok runs fn and fails unless the chaincode answered 200; it returns the payload.
func (h *shimHarness) ok(c call, fn string, params ...string) (string, *memSim) {
	h.t.Helper()
	res, sim, _, err := h.run(c, fn, params...)
	if err != nil {
		h.t.Fatalf("%s%v: %v", fn, params, err)
	}
	if res.Response.GetStatus() != 200 {
		h.t.Fatalf("%s%v: status %d: %s", fn, params, res.Response.GetStatus(), res.Response.GetMessage())
	}
	return string(res.Response.GetPayload()), sim
}

// fails runs fn and fails unless the chaincode answered 500 with a message containing want.
func (h *shimHarness) fails(c call, want, fn string, params ...string) *memSim {
	h.t.Helper()
	res, sim, _, err := h.run(c, fn, params...)
	if err != nil {
		h.t.Fatalf("%s%v: %v", fn, params, err)
	}
	if res.Response.GetStatus() != 500 || !strings.Contains(res.Response.GetMessage(), want) {
		h.t.Fatalf("%s%v = %d %q, want 500 containing %q", fn, params, res.Response.GetStatus(), res.Response.GetMessage(), want)
	}
	return sim
}

func (h *shimHarness) countDelta(before map[peer.ChaincodeMessage_Type]int, t peer.ChaincodeMessage_Type) int {
	return h.counter.snapshot()[t] - before[t]
}

func TestShimcheckState(t *testing.T) {
	checkNoLeaks(t)
	h := newShimHarness(t, Config{QueryBatchSize: 7, MaxWriteBatch: 100, MaxGetMultipleKeys: 100, MaxCallDepth: 1})
	none := call{}

	t.Run("READY advertises write batches and multi-key reads", func(t *testing.T) {
		h := h.with(t)
		h.counter.mu.Lock()
		ready := h.counter.ready
		h.counter.mu.Unlock()
		params := &peer.ChaincodeAdditionalParams{}
		if ready == nil || proto.Unmarshal(ready.GetPayload(), params) != nil {
			t.Fatalf("READY = %v", ready)
		}
		if !params.UseWriteBatch || params.MaxSizeWriteBatch != 100 || !params.UseGetMultipleKeys || params.MaxSizeGetMultipleKeys != 100 {
			t.Fatalf("READY params = %v", params)
		}
	})
	t.Run("PutGet reads committed state and writes its namespace", func(t *testing.T) {
		h := h.with(t)
		got, sim := h.ok(none, "PutGet", "k01", "new")
		if got != "v1" {
			t.Fatalf("PutGet = %q, want the committed v1", got)
		}
		if v, ok := sim.nsWrites[nsKey("cca", "k01")]; !ok || string(v) != "new" {
			t.Fatalf("writes = %q", sim.nsWrites)
		}
	})
	t.Run("Get missing", func(t *testing.T) {
		h := h.with(t)
		if got, _ := h.ok(none, "Get", "nope"); got != "" {
			t.Fatalf("Get = %q", got)
		}
	})
	t.Run("Delete", func(t *testing.T) {
		h := h.with(t)
		_, sim := h.ok(none, "Delete", "k02", "k03")
		if v, ok := sim.nsWrites[nsKey("cca", "k03")]; !ok || v != nil || len(sim.nsWrites) != 2 {
			t.Fatalf("writes = %q", sim.nsWrites)
		}
	})
	t.Run("Batch goes through WRITE_BATCH_STATE in advertised chunks", func(t *testing.T) {
		h := h.with(t)
		before := h.counter.snapshot()
		got, sim := h.ok(none, "Batch", "p", "250")
		if got != "250" || len(sim.nsWrites) != 250 || string(sim.nsWrites[nsKey("cca", "p0249")]) != "v249" {
			t.Fatalf("Batch = %q, %d writes", got, len(sim.nsWrites))
		}
		if n := h.countDelta(before, peer.ChaincodeMessage_WRITE_BATCH_STATE); n != 3 {
			t.Fatalf("%d WRITE_BATCH_STATE messages, want 3 (250 writes, 100 per batch)", n)
		}
		if n := h.countDelta(before, peer.ChaincodeMessage_PUT_STATE); n != 0 {
			t.Fatalf("%d PUT_STATE messages, want 0", n)
		}
	})
	t.Run("GetMultiple goes through GET_STATE_MULTIPLE", func(t *testing.T) {
		h := h.with(t)
		before := h.counter.snapshot()
		keys := []string{"k01", "missing", "k03"}
		for i := range 150 {
			keys = append(keys, fmt.Sprintf("x%03d", i))
		}
		got, _ := h.ok(none, "GetMultiple", keys...)
		if !strings.HasPrefix(got, "v1,,v3,") || strings.Count(got, ",") != len(keys)-1 {
			t.Fatalf("GetMultiple = %q", got)
		}
		if n := h.countDelta(before, peer.ChaincodeMessage_GET_STATE_MULTIPLE); n != 2 {
			t.Fatalf("%d GET_STATE_MULTIPLE messages, want 2 (153 keys, 100 per message)", n)
		}
		if n := h.countDelta(before, peer.ChaincodeMessage_GET_STATE); n != 0 {
			t.Fatalf("%d GET_STATE messages, want 0", n)
		}
	})
	t.Run("Range across QUERY_STATE_NEXT batches", func(t *testing.T) {
		h := h.with(t)
		before := h.counter.snapshot()
		got, _ := h.ok(none, "Range", "k00", "k99")
		if keys := strings.Split(got, ","); len(keys) != 25 || keys[0] != "k00" || keys[24] != "k24" {
			t.Fatalf("Range = %q", got)
		}
		if n := h.countDelta(before, peer.ChaincodeMessage_QUERY_STATE_NEXT); n != 3 {
			t.Fatalf("%d QUERY_STATE_NEXT, want 3 (25 results, 7 per batch)", n)
		}
	})
	t.Run("Range closed early sends QUERY_STATE_CLOSE", func(t *testing.T) {
		h := h.with(t)
		before := h.counter.snapshot()
		got, _ := h.ok(none, "RangePaged", "k00", "", "3", "")
		if got != "k00,k01,k02|3|k03" {
			t.Fatalf("RangePaged = %q", got)
		}
		if n := h.countDelta(before, peer.ChaincodeMessage_QUERY_STATE_CLOSE); n != 1 {
			t.Fatalf("%d QUERY_STATE_CLOSE, want 1", n)
		}
	})
	t.Run("RangePaged pages with bookmarks", func(t *testing.T) {
		h := h.with(t)
		want := []string{
			"k00,k01,k02,k03,k04,k05,k06,k07,k08,k09|10|k10",
			"k10,k11,k12,k13,k14,k15,k16,k17,k18,k19|10|k20",
			"k20,k21,k22,k23,k24|5|",
		}
		bookmark := ""
		for i, w := range want {
			got, _ := h.ok(none, "RangePaged", "k00", "", "10", bookmark)
			if got != w {
				t.Fatalf("page %d = %q, want %q", i, got, w)
			}
			bookmark = got[strings.LastIndex(got, shimcheck.Separator)+1:]
		}
	})
	t.Run("Composite ranges over a partial composite key", func(t *testing.T) {
		h := h.with(t)
		if got, _ := h.ok(none, "Composite", "color", "blue"); got != "blue/a1=a1,blue/a2=a2,blue/a3=a3" {
			t.Fatalf("Composite blue = %q", got)
		}
		if got, _ := h.ok(none, "Composite", "color"); got != "blue/a1=a1,blue/a2=a2,blue/a3=a3,red/a4=a4" {
			t.Fatalf("Composite all = %q", got)
		}
		got, _ := h.ok(none, "CompositePaged", "color", "2", "", "blue")
		wantBookmark := compositeKey("color", "blue", "a3")
		if got != "blue/a1=a1,blue/a2=a2|2|"+wantBookmark {
			t.Fatalf("CompositePaged = %q", got)
		}
		if got, _ := h.ok(none, "CompositePaged", "color", "2", wantBookmark, "blue"); got != "blue/a3=a3|1|" {
			t.Fatalf("CompositePaged page 2 = %q", got)
		}
		_, sim := h.ok(none, "CompositePut", "color", "x", "green", "a5")
		if string(sim.nsWrites[nsKey("cca", compositeKey("color", "green", "a5"))]) != "x" {
			t.Fatalf("CompositePut writes = %q", sim.nsWrites)
		}
	})
	t.Run("History", func(t *testing.T) {
		h := h.with(t)
		m := newMemSim(h.world)
		m.history = map[string][]*queryresult.KeyModification{"k01": {
			{TxId: "t2", IsDelete: true},
			{TxId: "t1", Value: []byte("v1")},
		}}
		if got, _ := h.ok(call{sim: histSim{m}}, "History", "k01"); got != "t2::true,t1:v1:false" {
			t.Fatalf("History = %q", got)
		}
		h.fails(none, "GetHistoryForKey is not supported yet", "History", "k01")
	})
	t.Run("Metadata sets and reads the key-level endorsement policy", func(t *testing.T) {
		h := h.with(t)
		m := newMemSim(h.world)
		m.meta[nsKey("cca", "k01")] = map[string][]byte{"VALIDATION_PARAMETER": []byte("old policy")}
		got, sim := h.ok(call{sim: m}, "Metadata", "k01", "new policy")
		if got != "old policy" {
			t.Fatalf("Metadata = %q", got)
		}
		if md := sim.metaSets["k01"]; len(md) != 1 || string(md["VALIDATION_PARAMETER"]) != "new policy" {
			t.Fatalf("metadata written = %q", md)
		}
	})
	t.Run("Event", func(t *testing.T) {
		h := h.with(t)
		res, _, sp, err := h.run(none, "Event", "Moved", "payload")
		if err != nil || res.Response.GetStatus() != 200 {
			t.Fatalf("Event = %v, %v", res, err)
		}
		ev := res.Event
		if ev == nil || ev.ChaincodeId != "cca" || ev.EventName != "Moved" || string(ev.Payload) != "payload" || ev.TxId == "" || sp == nil {
			t.Fatalf("event = %v", ev)
		}
	})
	t.Run("unsupported features fail clearly", func(t *testing.T) {
		h := h.with(t)
		for _, op := range []string{"get", "hash", "range", "put", "del", "purge", "metadata"} {
			h.fails(none, "private data is not supported yet", "Private", op)
		}
		// Fabric's exact message and prefix for a rich query on LevelDB.
		h.fails(none, "GET_QUERY_RESULT failed: transaction ID: ", "Query", `{"selector":{}}`)
		h.fails(none, "ExecuteQuery not supported for leveldb", "Query", `{"selector":{}}`)
		h.fails(none, "ExecuteQuery not supported for leveldb", "Query", `{"selector":{}}`, "paged")
	})
}

func TestShimcheckProposal(t *testing.T) {
	checkNoLeaks(t)
	h := newShimHarness(t, Config{})

	if got, _ := h.ok(call{transient: map[string][]byte{"secret": []byte("s3")}}, "Transient", "secret"); got != "s3" {
		t.Fatalf("Transient = %q", got)
	}
	if got, _ := h.ok(call{decoration: map[string][]byte{"deco": []byte("rated")}}, "Decoration", "deco"); got != "rated" {
		t.Fatalf("Decoration = %q", got)
	}
	creator, _ := h.ok(call{}, "Creator")
	id := &msp.SerializedIdentity{}
	if err := proto.Unmarshal([]byte(creator), id); err != nil || id.Mspid != "Org1MSP" || string(id.IdBytes) != string(h.pki.identityPEM) {
		t.Fatalf("Creator = %v, %v", id, err)
	}
	if got, _ := h.ok(call{}, "Timestamp"); got != "2023-11-14T22:13:20Z" {
		t.Fatalf("Timestamp = %q", got)
	}

	res, _, sp, err := h.run(call{}, "Binding")
	if err != nil || res.Response.GetStatus() != 200 {
		t.Fatalf("Binding = %v, %v", res, err)
	}
	// Fabric's binding: SHA-256(nonce ‖ creator ‖ epoch as 8 little-endian bytes).
	nonce, creatorBytes := proposalSigHeader(t, sp)
	epoch := make([]byte, 8)
	binary.LittleEndian.PutUint64(epoch, 0)
	sum := sha256.Sum256(append(append(append([]byte{}, nonce...), creatorBytes...), epoch...))
	if got := string(res.Response.Payload); got != hex.EncodeToString(sum[:]) {
		t.Fatalf("Binding = %s, want %x", got, sum)
	}

	res, _, sp, err = h.run(call{}, "SignedProposal")
	if err != nil || res.Response.GetStatus() != 200 {
		t.Fatalf("SignedProposal = %v, %v", res, err)
	}
	got := &peer.SignedProposal{}
	if err := proto.Unmarshal(res.Response.Payload, got); err != nil || !proto.Equal(got, sp) {
		t.Fatalf("SignedProposal differs from the one sent (%v)", err)
	}
	if got, _ := h.ok(call{}, "Context"); got != channelID+"|stx0007" {
		t.Fatalf("Context = %q", got)
	}
}

func proposalSigHeader(t *testing.T, sp *peer.SignedProposal) (nonce, creator []byte) {
	t.Helper()
	prop := &peer.Proposal{}
	hdr := &common.Header{}
	shdr := &common.SignatureHeader{}
	if proto.Unmarshal(sp.ProposalBytes, prop) != nil || proto.Unmarshal(prop.Header, hdr) != nil || proto.Unmarshal(hdr.SignatureHeader, shdr) != nil {
		t.Fatal("cannot decode the test proposal")
	}
	return shdr.Nonce, shdr.Creator
}

func TestShimcheckInvoke(t *testing.T) {
	checkNoLeaks(t)
	h := newShimHarness(t, Config{MaxCallDepth: 1})
	none := call{}

	t.Run("same channel: callee writes merge into its namespace of the transaction", func(t *testing.T) {
		h := h.with(t)
		got, sim := h.ok(none, "Invoke", "ccb", "", "PutGet", "b1", "new bee")
		if got != "bee" {
			t.Fatalf("Invoke = %q, want ccb's committed value", got)
		}
		if v := sim.nsWrites[nsKey("ccb", "b1")]; string(v) != "new bee" || len(sim.nsWrites) != 1 {
			t.Fatalf("writes = %q, want only ccb/b1", sim.nsWrites)
		}
	})
	t.Run("same channel: callee sees the proposal", func(t *testing.T) {
		h := h.with(t)
		got, _ := h.ok(call{transient: map[string][]byte{"secret": []byte("s4")}}, "Invoke", "ccb", "", "Transient", "secret")
		if got != "s4" {
			t.Fatalf("callee transient = %q", got)
		}
		got, _ = h.ok(none, "Invoke", "ccb", channelID, "Context")
		if !strings.HasPrefix(got, channelID+"|stx") {
			t.Fatalf("callee context = %q", got)
		}
	})
	t.Run("callee error reaches the caller", func(t *testing.T) {
		h := h.with(t)
		sim := h.fails(none, "invoke ccb: status 500: boom", "Invoke", "ccb", "", "Fail", "boom")
		if len(sim.nsWrites) != 0 {
			t.Fatalf("writes = %q", sim.nsWrites)
		}
	})
	t.Run("other channel is read-only", func(t *testing.T) {
		h := h.with(t)
		got, sim := h.ok(none, "Invoke", "ccb", otherChannel, "Get", "b1")
		if got != "other bee" || len(sim.nsWrites) != 0 {
			t.Fatalf("Invoke on %s = %q, writes %q", otherChannel, got, sim.nsWrites)
		}
		sim = h.fails(none, ErrReadOnly.Error(), "Invoke", "ccb", otherChannel, "PutGet", "b1", "x")
		h.callees.mu.Lock()
		other, opened, released := h.callees.lastSim, h.callees.opened, h.callees.released
		h.callees.mu.Unlock()
		if len(sim.nsWrites) != 0 || len(other.nsWrites) != 0 {
			t.Fatalf("writes = %q here, %q there", sim.nsWrites, other.nsWrites)
		}
		if opened != 2 || released != 2 {
			t.Fatalf("other channel simulators opened %d, released %d", opened, released)
		}
		// Batched writes are refused too, when the batch is sent.
		h.fails(none, ErrReadOnly.Error(), "Invoke", "ccb", otherChannel, "Batch", "p", "3")
	})
	t.Run("refused callees", func(t *testing.T) {
		h := h.with(t)
		h.fails(none, "system chaincode _lifecycle cannot be invoked with a cc2cc invocation", "Invoke", "_lifecycle", "", "anything")
		h.fails(none, "make sure the chaincode nope has been successfully defined", "Invoke", "nope", "", "anything")
		h.fails(none, "nested deeper than 1", "Invoke", "ccb", "", "Invoke", "cca", otherChannel, "Context")
	})
	t.Run("the execute timeout covers the callee", func(t *testing.T) {
		h := h.with(t)
		ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
		defer cancel()
		start := time.Now()
		_, _, _, err := h.run(call{ctx: ctx}, "Invoke", "ccb", "", "Sleep", "1500")
		if !errors.Is(err, ErrTimeout) {
			t.Fatalf("err = %v, want ErrTimeout", err)
		}
		if d := time.Since(start); d > time.Second {
			t.Fatalf("timed out after %v", d)
		}
		// Let the sleeping callee finish before the leak check.
		time.Sleep(1500 * time.Millisecond)
	})
	h.callees.mu.Lock()
	resolved := strings.Join(h.callees.resolved, ",")
	h.callees.mu.Unlock()
	if !strings.Contains(resolved, channelID+"/ccb") || !strings.Contains(resolved, otherChannel+"/ccb") {
		t.Fatalf("resolved = %s", resolved)
	}
}

func TestShimcheckNoCallees(t *testing.T) {
	checkNoLeaks(t)
	h := newShimHarness(t, Config{})
	h.callees = nil
	res, _, _, err := h.runNoCallees("Invoke", "ccb", "", "Context")
	if err != nil || res.Response.GetStatus() != 500 || !strings.Contains(res.Response.GetMessage(), errNoCallees.Error()) {
		t.Fatalf("Invoke without Callees = %v, %v", res, err)
	}
}

func (h *shimHarness) runNoCallees(fn string, params ...string) (*Result, *memSim, *peer.SignedProposal, error) {
	txID := "nocallees"
	input := args(append([]string{fn}, params...)...)
	sim := newMemSim(h.world)
	sp := signedProposal(h.t, channelID, txID, h.pki.identityPEM, input, nil)
	res, err := h.s.Execute(context.Background(), Invocation{PackageID: pkgA, Namespace: "cca", ChannelID: channelID, TxID: txID, SignedProposal: sp, Input: input}, sim)
	return res, sim, sp, err
}

// TestShimcheckManyInFlight runs many slow transactions on one connection at
// once: they overlap rather than queue.
func TestShimcheckManyInFlight(t *testing.T) {
	checkNoLeaks(t)
	h := newShimHarness(t, Config{})
	const n = 20
	start := time.Now()
	errc := make(chan error, n)
	for i := range n {
		go func() {
			txID := fmt.Sprintf("fly%02d", i)
			input := args("Sleep", "200")
			res, err := h.s.Execute(context.Background(), Invocation{
				PackageID: pkgA, Namespace: "cca", ChannelID: channelID, TxID: txID,
				SignedProposal: signedProposal(t, channelID, txID, h.pki.identityPEM, input, nil), Input: input,
			}, newMemSim(h.world))
			if err == nil && res.Response.GetStatus() != 200 {
				err = fmt.Errorf("%s: %d %s", txID, res.Response.GetStatus(), res.Response.GetMessage())
			}
			errc <- err
		}()
	}
	for range n {
		if err := <-errc; err != nil {
			t.Error(err)
		}
	}
	if d := time.Since(start); d > n*200*time.Millisecond/2 {
		t.Fatalf("%d transactions of 200ms took %v: not run concurrently", n, d)
	}
}

// TestShimcheckCCaaS runs shimcheck as an external service: the peer dials
// it over mutual TLS and serves the protocol on the client stream with Serve.
func TestShimcheckCCaaS(t *testing.T) {
	checkNoLeaks(t)
	s := New(Config{})
	defer s.Close()
	pki := newTestPKI(t)

	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ccCtx, stopCC := context.WithCancel(context.Background())
	ccDone := make(chan error, 1)
	go func() {
		ccDone <- shimcheck.ServeCCaaS(ccCtx, shimcheck.CCaaSConfig{ChaincodeID: pkgA, Listener: lis, TLS: pki.serverTLS})
	}()
	defer func() {
		stopCC()
		if err := <-ccDone; err != nil {
			t.Errorf("ServeCCaaS: %v", err)
		}
	}()

	conn, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(credentials.NewTLS(pki.clientTLS(t))))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	streamCtx, cancelStream := context.WithCancel(context.Background())
	stream, err := peer.NewChaincodeClient(conn).Connect(streamCtx)
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- s.Serve(stream) }()

	wctx, wcancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer wcancel()
	if err := s.WaitRegistered(wctx, pkgA); err != nil {
		t.Fatal(err)
	}
	world := map[string][]byte{nsKey("cca", "k1"): []byte("v1")}
	sim := newMemSim(world)
	input := args("PutGet", "k1", "v2")
	res, err := s.Execute(context.Background(), Invocation{
		PackageID: pkgA, Namespace: "cca", ChannelID: channelID, TxID: "ccaas1",
		SignedProposal: signedProposal(t, channelID, "ccaas1", pki.identityPEM, input, nil), Input: input,
	}, sim)
	if err != nil || res.Response.GetStatus() != 200 || string(res.Response.GetPayload()) != "v1" || string(sim.writes["k1"]) != "v2" {
		t.Fatalf("Execute over ccaas = %v, %v", res, err)
	}

	// The peer owns the client stream: cancelling it ends Serve.
	cancelStream()
	select {
	case err := <-served:
		if err != nil && !errors.Is(err, context.Canceled) {
			t.Fatalf("Serve = %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Serve did not return after the stream was cancelled")
	}
}
