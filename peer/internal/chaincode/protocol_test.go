package chaincode

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/hyperledger/fabric-chaincode-go/v2/shim"
	"github.com/hyperledger/fabric-protos-go-apiv2/ledger/queryresult"
	"github.com/hyperledger/fabric-protos-go-apiv2/peer"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/protobuf/proto"
)

// probe is a raw-shim chaincode exercising the protocol paths the basic
// contract does not: pagination, multi-key reads, big write batches,
// metadata, history and the unsupported features.
type probe struct{}

func (probe) Init(stub shim.ChaincodeStubInterface) *peer.Response {
	return shim.Success([]byte("init ok"))
}

func (probe) Invoke(stub shim.ChaincodeStubInterface) *peer.Response {
	fn, params := stub.GetFunctionAndParameters()
	out, err := probeCall(stub, fn, params)
	if err != nil {
		return shim.Error(err.Error())
	}
	return shim.Success([]byte(out))
}

func probeCall(stub shim.ChaincodeStubInterface, fn string, params []string) (string, error) {
	switch fn {
	case "page": // page <size> <bookmark>
		size, _ := strconv.Atoi(params[0])
		it, md, err := stub.GetStateByRangeWithPagination("", "", int32(size), params[1])
		if err != nil {
			return "", err
		}
		defer it.Close()
		var keys []string
		for it.HasNext() {
			kv, err := it.Next()
			if err != nil {
				return "", err
			}
			keys = append(keys, kv.Key)
		}
		return fmt.Sprintf("%s|%d|%s", strings.Join(keys, ","), md.FetchedRecordsCount, md.Bookmark), nil
	case "count": // count all keys, crossing QUERY_STATE_NEXT batches
		it, err := stub.GetStateByRange("", "")
		if err != nil {
			return "", err
		}
		defer it.Close()
		n := 0
		for it.HasNext() {
			if _, err := it.Next(); err != nil {
				return "", err
			}
			n++
		}
		return strconv.Itoa(n), nil
	case "multi":
		vals, err := stub.GetMultipleStates(params...)
		if err != nil {
			return "", err
		}
		var out []string
		for _, v := range vals {
			out = append(out, string(v))
		}
		return strings.Join(out, ","), nil
	case "batchput": // batchput <n>: n writes through WRITE_BATCH_STATE
		n, _ := strconv.Atoi(params[0])
		stub.StartWriteBatch()
		for i := range n {
			if err := stub.PutState(fmt.Sprintf("b%04d", i), []byte("v")); err != nil {
				return "", err
			}
		}
		return "", stub.DelState("gone")
	case "meta":
		if err := stub.SetStateValidationParameter("k1", []byte("policy")); err != nil {
			return "", err
		}
		ep, err := stub.GetStateValidationParameter("k1")
		return string(ep), err
	case "history":
		it, err := stub.GetHistoryForKey("k1")
		if err != nil {
			return "", err
		}
		defer it.Close()
		var ids []string
		for it.HasNext() {
			km, err := it.Next()
			if err != nil {
				return "", err
			}
			ids = append(ids, km.TxId)
		}
		return strings.Join(ids, ","), nil
	case "creator":
		c, err := stub.GetCreator()
		if err != nil {
			return "", err
		}
		tm, err := stub.GetTransient()
		if err != nil {
			return "", err
		}
		ts, err := stub.GetTxTimestamp()
		if err != nil {
			return "", err
		}
		return fmt.Sprintf("%d|%s|%d", len(c), tm["secret"], ts.GetSeconds()), nil
	case "rich":
		_, err := stub.GetQueryResult(`{"selector":{}}`)
		return "", err
	case "private":
		_, err := stub.GetPrivateData("coll", "k")
		return "", err
	case "invoke":
		r := stub.InvokeChaincode("other", nil, "")
		return "", errors.New(string(r.Payload))
	}
	return "", fmt.Errorf("unknown function %s", fn)
}

// dial opens a Register stream to addr with the test client certificate.
func dial(t testing.TB, addr string, pki *testPKI) (peer.ChaincodeSupport_RegisterClient, context.CancelFunc) {
	t.Helper()
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(credentials.NewTLS(pki.clientTLS(t))))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	stream, err := peer.NewChaincodeSupportClient(conn).Register(ctx)
	if err != nil {
		t.Fatal(err)
	}
	return stream, func() { cancel(); conn.Close() }
}

func startProbe(t *testing.T, cfg Config) (*Support, *testPKI, string) {
	s := New(cfg)
	pki := newTestPKI(t)
	addr := startServer(t, s, pki)
	stream, stop := dial(t, addr, pki)
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = shim.StartInProc("probe:1", stream, probe{})
	}()
	t.Cleanup(func() { stop(); <-done })
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := s.WaitRegistered(ctx, "probe:1"); err != nil {
		t.Fatal(err)
	}
	return s, pki, addr
}

func TestProtocolFeatures(t *testing.T) {
	checkNoLeaks(t)
	s, pki, _ := startProbe(t, Config{QueryBatchSize: 7})
	world := map[string][]byte{}
	for i := range 25 {
		world[nsKey("probe", fmt.Sprintf("k%02d", i))] = []byte(fmt.Sprintf("v%d", i))
	}
	world[nsKey("other", "k99")] = []byte("other namespace")

	run := func(sim TxSimulator, txID string, init bool, a ...string) *Result {
		t.Helper()
		input := args(a...)
		res, err := s.Execute(context.Background(), Invocation{
			PackageID: "probe:1", Namespace: "probe", ChannelID: channelID, TxID: txID, Init: init,
			SignedProposal: signedProposal(t, channelID, txID, pki.identityPEM, input, map[string][]byte{"secret": []byte("s3")}),
			Input:          input,
		}, sim)
		if err != nil {
			t.Fatalf("%v: %v", a, err)
		}
		return res
	}
	tests := []struct {
		name    string
		args    []string
		sim     func() TxSimulator
		want    string
		wantErr string
		check   func(t *testing.T, sim TxSimulator)
	}{
		{name: "first page", args: []string{"page", "10", ""}, want: "k00,k01,k02,k03,k04,k05,k06,k07,k08,k09|10|k10"},
		{name: "page from bookmark", args: []string{"page", "10", "k20"}, want: "k20,k21,k22,k23,k24|5|"},
		{name: "range across batches", args: []string{"count"}, want: "25"},
		{name: "multiple keys", args: []string{"multi", "k01", "missing", "k02"}, want: "v1,,v2"},
		{name: "creator transient timestamp", args: []string{"creator"}, want: "|s3|1700000000"},
		{
			name: "write batch larger than shim batch size", args: []string{"batchput", "250"},
			check: func(t *testing.T, sim TxSimulator) {
				w := sim.(*memSim).writes
				if len(w) != 251 || string(w["b0249"]) != "v" {
					t.Fatalf("%d writes recorded", len(w))
				}
				if v, ok := w["gone"]; !ok || v != nil {
					t.Fatal("batched delete not recorded")
				}
			},
		},
		{
			name: "metadata", args: []string{"meta"},
			sim: func() TxSimulator {
				m := newMemSim(world)
				m.meta[nsKey("probe", "k1")] = map[string][]byte{"VALIDATION_PARAMETER": []byte("policy")}
				return m
			},
			want: "policy",
			check: func(t *testing.T, sim TxSimulator) {
				if got := sim.(*memSim).metaSets["k1"]; string(got["VALIDATION_PARAMETER"]) != "policy" || len(got) != 1 {
					t.Fatalf("metadata write = %v", got)
				}
			},
		},
		{name: "history unsupported", args: []string{"history"}, wantErr: "GetHistoryForKey is not supported yet"},
		{
			name: "history supported", args: []string{"history"},
			sim: func() TxSimulator {
				m := newMemSim(world)
				m.history = map[string][]*queryresult.KeyModification{"k1": {{TxId: "t1"}, {TxId: "t2"}}}
				return histSim{m}
			},
			want: "t1,t2",
		},
		{name: "rich query", args: []string{"rich"}, wantErr: "ExecuteQuery not supported for leveldb"},
		{name: "private data", args: []string{"private"}, wantErr: "private data is not supported yet"},
		{name: "chaincode to chaincode without callees", args: []string{"invoke"}, wantErr: "chaincode-to-chaincode invocation is not available for this execution"},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var sim TxSimulator = newMemSim(world)
			if tt.sim != nil {
				sim = tt.sim()
			}
			res := run(sim, fmt.Sprintf("ptx%d", i), false, tt.args...)
			if tt.wantErr != "" {
				if res.Response.Status != 500 || !strings.Contains(res.Response.Message, tt.wantErr) {
					t.Fatalf("got %d %q, want error containing %q", res.Response.Status, res.Response.Message, tt.wantErr)
				}
				return
			}
			if res.Response.Status != 200 {
				t.Fatalf("status %d: %s", res.Response.Status, res.Response.Message)
			}
			got := string(res.Response.Payload)
			if tt.name == "creator transient timestamp" {
				got = got[strings.Index(got, "|"):]
			}
			if tt.check == nil && got != tt.want {
				t.Fatalf("got %q, want %q", got, tt.want)
			}
			if tt.check != nil {
				tt.check(t, sim)
			}
		})
	}

	res := run(newMemSim(world), "init1", true, "anything")
	if res.Response.Status != 200 || string(res.Response.Payload) != "init ok" {
		t.Fatalf("Init = %d %s", res.Response.Status, res.Response.Payload)
	}
}

// rawChaincode is a hand-driven chaincode stream for malformed traffic.
type rawChaincode struct {
	t      *testing.T
	stream peer.ChaincodeSupport_RegisterClient
	stop   context.CancelFunc
}

func registerRaw(t *testing.T, addr string, pki *testPKI, name string) *rawChaincode {
	t.Helper()
	stream, stop := dial(t, addr, pki)
	t.Cleanup(stop)
	r := &rawChaincode{t: t, stream: stream, stop: stop}
	id, _ := proto.Marshal(&peer.ChaincodeID{Name: name})
	r.send(&peer.ChaincodeMessage{Type: peer.ChaincodeMessage_REGISTER, Payload: id})
	if m := r.recv(); m.Type != peer.ChaincodeMessage_REGISTERED {
		t.Fatalf("got %s, want REGISTERED", m.Type)
	}
	ready := r.recv()
	params := &peer.ChaincodeAdditionalParams{}
	if ready.Type != peer.ChaincodeMessage_READY || proto.Unmarshal(ready.Payload, params) != nil ||
		!params.UseWriteBatch || !params.UseGetMultipleKeys || params.MaxSizeWriteBatch != 1000 || params.MaxSizeGetMultipleKeys != 1000 {
		t.Fatalf("READY = %v, params %v", ready, params)
	}
	return r
}

func (r *rawChaincode) send(m *peer.ChaincodeMessage) {
	r.t.Helper()
	if err := r.stream.Send(m); err != nil {
		r.t.Fatal(err)
	}
}

func (r *rawChaincode) recv() *peer.ChaincodeMessage {
	r.t.Helper()
	m, err := r.stream.Recv()
	if err != nil {
		r.t.Fatal(err)
	}
	return m
}

type execResult struct {
	res *Result
	err error
}

func goExecute(s *Support, inv Invocation, sim TxSimulator) <-chan execResult {
	ch := make(chan execResult, 1)
	go func() {
		res, err := s.Execute(context.Background(), inv, sim)
		ch <- execResult{res, err}
	}()
	return ch
}

func TestMalformedMessages(t *testing.T) {
	checkNoLeaks(t)
	s := New(Config{})
	pki := newTestPKI(t)
	addr := startServer(t, s, pki)
	startBasic(t, s, addr, pki)
	raw := registerRaw(t, addr, pki, "raw:1")

	world := map[string][]byte{nsKey("raw", "k"): []byte("v")}
	inv := Invocation{PackageID: "raw:1", Namespace: "raw", ChannelID: channelID, TxID: "rawtx", Input: args("f")}
	pending := goExecute(s, inv, newMemSim(world))
	txMsg := raw.recv()
	if txMsg.Type != peer.ChaincodeMessage_TRANSACTION || txMsg.Txid != "rawtx" || txMsg.ChannelId != channelID {
		t.Fatalf("got %v, want TRANSACTION rawtx", txMsg)
	}

	// A duplicate in-flight txid is refused.
	if _, err := s.Execute(context.Background(), inv, newMemSim(world)); !errors.Is(err, ErrDuplicateTxID) {
		t.Fatalf("duplicate Execute: %v", err)
	}

	mustMarshal := func(m proto.Message) []byte { b, _ := proto.Marshal(m); return b }
	tests := []struct {
		name    string
		msg     *peer.ChaincodeMessage
		wantErr string
	}{
		{"garbage payload", &peer.ChaincodeMessage{Type: peer.ChaincodeMessage_GET_STATE, Payload: []byte{0xff, 0xff, 0xff}}, "decode GetState"},
		{"unknown type", &peer.ChaincodeMessage{Type: peer.ChaincodeMessage_Type(999)}, "unexpected message"},
		{"peer-only type", &peer.ChaincodeMessage{Type: peer.ChaincodeMessage_TRANSACTION}, "unexpected message TRANSACTION"},
		{"second REGISTER", &peer.ChaincodeMessage{Type: peer.ChaincodeMessage_REGISTER}, "unexpected message REGISTER"},
		{"unknown txid", &peer.ChaincodeMessage{Type: peer.ChaincodeMessage_GET_STATE, Txid: "nope", Payload: mustMarshal(&peer.GetState{Key: "k"})}, "no transaction nope in flight"},
		{"private put", &peer.ChaincodeMessage{Type: peer.ChaincodeMessage_PUT_STATE, Payload: mustMarshal(&peer.PutState{Collection: "c", Key: "k"})}, "private data is not supported yet"},
		{"batch with purge", &peer.ChaincodeMessage{Type: peer.ChaincodeMessage_WRITE_BATCH_STATE, Payload: mustMarshal(&peer.WriteBatchState{Rec: []*peer.WriteRecord{{Key: "a", Type: peer.WriteRecord_PUT_STATE}, {Key: "b", Type: peer.WriteRecord_PURGE_PRIVATE_DATA}}})}, "record 1"},
		{"next on unknown iterator", &peer.ChaincodeMessage{Type: peer.ChaincodeMessage_QUERY_STATE_NEXT, Payload: mustMarshal(&peer.QueryStateNext{Id: "42"})}, `query iterator "42" not found`},
		{"metadata put without entry", &peer.ChaincodeMessage{Type: peer.ChaincodeMessage_PUT_STATE_METADATA, Payload: mustMarshal(&peer.PutStateMetadata{Key: "k"})}, "no metadata entry"},
		{"negative page size", &peer.ChaincodeMessage{Type: peer.ChaincodeMessage_GET_STATE_BY_RANGE, Payload: mustMarshal(&peer.GetStateByRange{Metadata: mustMarshal(&peer.QueryMetadata{PageSize: -1})})}, "negative page size"},
		{"too many keys", &peer.ChaincodeMessage{Type: peer.ChaincodeMessage_GET_STATE_MULTIPLE, Payload: mustMarshal(&peer.GetStateMultiple{Keys: make([]string, 1001)})}, "more than the advertised maximum"},
	}
	for _, tt := range tests {
		msg := tt.msg
		if msg.Txid == "" && msg.Type != peer.ChaincodeMessage_Type(999) {
			msg.Txid, msg.ChannelId = "rawtx", channelID
		}
		raw.send(msg)
		reply := raw.recv()
		if reply.Type != peer.ChaincodeMessage_ERROR || !strings.Contains(string(reply.Payload), tt.wantErr) || reply.Txid != msg.Txid {
			t.Errorf("%s: reply %s %q (txid %q), want ERROR containing %q", tt.name, reply.Type, reply.Payload, reply.Txid, tt.wantErr)
		}
	}
	// A keepalive gets no reply and changes nothing.
	raw.send(&peer.ChaincodeMessage{Type: peer.ChaincodeMessage_KEEPALIVE})

	// Meanwhile the real chaincode on the same peer is undisturbed.
	h := &basicHarness{t: t, s: s, pki: pki, world: map[string][]byte{}}
	if res, _ := h.invoke("CreateAsset", "a1", "red", "1", "Ann", "5"); res.Response.Status != 200 {
		t.Fatalf("basic during malformed traffic: %d %s", res.Response.Status, res.Response.Message)
	}

	// The raw transaction still works normally afterwards.
	raw.send(&peer.ChaincodeMessage{Type: peer.ChaincodeMessage_GET_STATE, Txid: "rawtx", ChannelId: channelID, Payload: mustMarshal(&peer.GetState{Key: "k"})})
	if reply := raw.recv(); reply.Type != peer.ChaincodeMessage_RESPONSE || string(reply.Payload) != "v" {
		t.Fatalf("GET_STATE reply %s %q", reply.Type, reply.Payload)
	}
	raw.send(&peer.ChaincodeMessage{Type: peer.ChaincodeMessage_COMPLETED, Txid: "rawtx", ChannelId: channelID,
		Payload: mustMarshal(&peer.Response{Status: 200, Payload: []byte("done")}), ChaincodeEvent: &peer.ChaincodeEvent{EventName: "E", Payload: []byte("p")}})
	got := <-pending
	if got.err != nil || string(got.res.Response.Payload) != "done" || got.res.Event.EventName != "E" || got.res.Event.ChaincodeId != "raw" || got.res.Event.TxId != "rawtx" {
		t.Fatalf("raw Execute = %+v %v", got.res, got.err)
	}

	// A malformed COMPLETED fails only that execution, with an error.
	inv.TxID = "rawtx2"
	pending = goExecute(s, inv, newMemSim(world))
	raw.recv()
	raw.send(&peer.ChaincodeMessage{Type: peer.ChaincodeMessage_COMPLETED, Txid: "rawtx2", ChannelId: channelID, Payload: []byte{0xff, 0xff}})
	if got := <-pending; got.err == nil || !strings.Contains(got.err.Error(), "malformed response") {
		t.Fatalf("malformed COMPLETED: %+v %v", got.res, got.err)
	}
	// An ERROR from the chaincode is a 500 Result.
	inv.TxID = "rawtx3"
	pending = goExecute(s, inv, newMemSim(world))
	raw.recv()
	raw.send(&peer.ChaincodeMessage{Type: peer.ChaincodeMessage_ERROR, Txid: "rawtx3", ChannelId: channelID, Payload: []byte("boom")})
	if got := <-pending; got.err != nil || got.res.Response.Status != 500 || got.res.Response.Message != "boom" {
		t.Fatalf("ERROR completion: %+v %v", got.res, got.err)
	}
}

func TestRegistrationErrors(t *testing.T) {
	checkNoLeaks(t)
	s := New(Config{})
	pki := newTestPKI(t)
	addr := startServer(t, s, pki)

	tests := []struct {
		name string
		msg  *peer.ChaincodeMessage
	}{
		{"not REGISTER first", &peer.ChaincodeMessage{Type: peer.ChaincodeMessage_GET_STATE}},
		{"garbage ChaincodeID", &peer.ChaincodeMessage{Type: peer.ChaincodeMessage_REGISTER, Payload: []byte{0xff}}},
		{"empty name", &peer.ChaincodeMessage{Type: peer.ChaincodeMessage_REGISTER}},
	}
	for _, tt := range tests {
		stream, stop := dial(t, addr, pki)
		if err := stream.Send(tt.msg); err != nil {
			t.Fatal(err)
		}
		if m, err := stream.Recv(); err != nil || m.Type != peer.ChaincodeMessage_ERROR {
			t.Errorf("%s: got %v %v, want ERROR", tt.name, m, err)
		}
		if _, err := stream.Recv(); err == nil {
			t.Errorf("%s: stream stayed open", tt.name)
		}
		stop()
	}

	registerRaw(t, addr, pki, "dup:1")
	stream, stop := dial(t, addr, pki)
	defer stop()
	id, _ := proto.Marshal(&peer.ChaincodeID{Name: "dup:1"})
	stream.Send(&peer.ChaincodeMessage{Type: peer.ChaincodeMessage_REGISTER, Payload: id})
	if m, err := stream.Recv(); err != nil || m.Type != peer.ChaincodeMessage_ERROR || !strings.Contains(string(m.Payload), "duplicate") {
		t.Fatalf("duplicate registration: %v %v", m, err)
	}
}

func TestDisconnectTimeoutAndClose(t *testing.T) {
	checkNoLeaks(t)
	s := New(Config{ExecuteTimeout: 300 * time.Millisecond})
	pki := newTestPKI(t)
	addr := startServer(t, s, pki)
	sim := newMemSim(map[string][]byte{})

	if _, err := s.Execute(context.Background(), Invocation{PackageID: "nobody", Namespace: "x", TxID: "t"}, sim); !errors.Is(err, ErrNotRegistered) {
		t.Fatalf("unregistered: %v", err)
	}

	raw := registerRaw(t, addr, pki, "slow:1")
	// Timeout: the chaincode never answers.
	_, err := s.Execute(context.Background(), Invocation{PackageID: "slow:1", Namespace: "slow", ChannelID: channelID, TxID: "t1"}, sim)
	if !errors.Is(err, ErrTimeout) || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("timeout: %v", err)
	}
	raw.recv() // the TRANSACTION for t1
	// A late request for the timed-out transaction gets an ERROR.
	raw.send(&peer.ChaincodeMessage{Type: peer.ChaincodeMessage_GET_STATE, Txid: "t1", ChannelId: channelID})
	if m := raw.recv(); m.Type != peer.ChaincodeMessage_ERROR {
		t.Fatalf("late request got %s", m.Type)
	}

	// Disconnect fails the in-flight execution and unregisters.
	pending := goExecute(s, Invocation{PackageID: "slow:1", Namespace: "slow", ChannelID: channelID, TxID: "t2"}, sim)
	raw.recv()
	raw.stop()
	if got := <-pending; !errors.Is(got.err, ErrDisconnected) {
		t.Fatalf("disconnect: %v", got.err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		_, err := s.Execute(context.Background(), Invocation{PackageID: "slow:1", Namespace: "slow", TxID: "t3"}, sim)
		if errors.Is(err, ErrNotRegistered) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("still registered after disconnect: %v", err)
		}
		time.Sleep(10 * time.Millisecond)
	}

	// Close fails in-flight executions and WaitRegistered.
	registerRaw(t, addr, pki, "slow:2")
	pending = goExecute(s, Invocation{PackageID: "slow:2", Namespace: "slow", ChannelID: channelID, TxID: "t4"}, sim)
	time.Sleep(50 * time.Millisecond)
	s.Close()
	if got := <-pending; !errors.Is(got.err, ErrDisconnected) {
		t.Fatalf("Close: %v", got.err)
	}
	if err := s.WaitRegistered(context.Background(), "x"); !errors.Is(err, ErrClosed) {
		t.Fatalf("WaitRegistered after Close: %v", err)
	}
}
