package orderer

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"mime/multipart"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/cairn-ledger/cairn/internal/block"
	"github.com/cairn-ledger/cairn/internal/channelconfig"
	"github.com/cairn-ledger/cairn/internal/comm"
	"github.com/cairn-ledger/cairn/internal/crypto"
	"github.com/cairn-ledger/cairn/internal/cryptogen"
	"github.com/cairn-ledger/cairn/internal/envelope"
	"github.com/cairn-ledger/cairn/internal/netconfig"
	cb "github.com/hyperledger/fabric-protos-go-apiv2/common"
	ab "github.com/hyperledger/fabric-protos-go-apiv2/orderer"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"
)

const (
	ordDomain = "example.com"
	ordName   = "orderer0.example.com"
	orgDomain = "org1.example.com"
	channel   = "mychannel"
)

type fixture struct {
	layout  cryptogen.Layout
	genesis []byte
	user    *crypto.SigningIdentity
	dataDir string
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	root := t.TempDir()
	net := netconfig.Default()
	net.Channel.BatchSize.MaxMessageCount = 2
	net.Channel.BatchSize.AbsoluteMaxBytes = 4096
	net.Channel.BatchTimeout = netconfig.Duration(100 * time.Millisecond)
	net.Channel.Raft.TickInterval = netconfig.Duration(20 * time.Millisecond)
	if err := cryptogen.Generate(net, root); err != nil {
		t.Fatal(err)
	}
	g, err := channelconfig.Genesis(net, root)
	if err != nil {
		t.Fatal(err)
	}
	raw, _ := proto.Marshal(g)
	l := cryptogen.Layout{Root: root}
	user, err := crypto.LoadSigningIdentity("Org1MSP", l.UserMSPDir(true, orgDomain, "User1"))
	if err != nil {
		t.Fatal(err)
	}
	return &fixture{layout: l, genesis: raw, user: user, dataDir: t.TempDir()}
}

func (f *fixture) config() Config {
	l := f.layout
	return Config{
		ListenAddress:           "127.0.0.1:0",
		AdminListenAddress:      "127.0.0.1:0",
		OperationsListenAddress: "127.0.0.1:0",
		DataDir:                 f.dataDir,
		TLS:                     TLSConfig{CertFile: l.NodeTLSCertPath(false, ordDomain, ordName), KeyFile: l.NodeTLSKeyPath(false, ordDomain, ordName)},
		Admin:                   AdminConfig{ClientRootCAs: []string{l.TLSCACertPath(false, ordDomain)}},
		MSPID:                   "OrdererMSP",
		MSPDir:                  l.NodeMSPDir(false, ordDomain, ordName),
		NoSync:                  true,
	}
}

type running struct {
	o      *Orderer
	cancel context.CancelFunc
	done   chan error
}

func start(t *testing.T, cfg Config) *running {
	t.Helper()
	o, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- o.Run(ctx) }()
	return &running{o: o, cancel: cancel, done: done}
}

func (r *running) stop(t *testing.T) {
	t.Helper()
	r.cancel()
	select {
	case err := <-r.done:
		if err != nil {
			t.Errorf("Run: %v", err)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("Run did not return after cancel")
	}
}

func (f *fixture) adminClient(t *testing.T, withCert bool) *http.Client {
	t.Helper()
	l := f.layout
	cert, key := "", ""
	if withCert {
		cert, key = l.UserTLSCertPath(false, ordDomain, "Admin"), l.UserTLSKeyPath(false, ordDomain, "Admin")
	}
	tc, err := comm.ClientTLS([]string{l.TLSCACertPath(false, ordDomain)}, cert, key, "")
	if err != nil {
		t.Fatal(err)
	}
	return &http.Client{Transport: &http.Transport{TLSClientConfig: tc}, Timeout: 10 * time.Second}
}

func join(t *testing.T, c *http.Client, addr string, blockBytes []byte) (*http.Response, []byte) {
	t.Helper()
	var body bytes.Buffer
	w := multipart.NewWriter(&body)
	part, _ := w.CreateFormFile("config-block", "genesis.block")
	part.Write(blockBytes)
	w.Close()
	resp, err := c.Post("https://"+addr+"/participation/v1/channels", w.FormDataContentType(), &body)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, b
}

func do(t *testing.T, c *http.Client, method, url string) (int, []byte) {
	t.Helper()
	req, _ := http.NewRequest(method, url, nil)
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, b
}

func (f *fixture) dial(t *testing.T, addr string) ab.AtomicBroadcastClient {
	t.Helper()
	return ab.NewAtomicBroadcastClient(f.dialConn(t, addr))
}

// dialConn opens a TLS connection to an orderer's client-facing endpoint.
func (f *fixture) dialConn(t *testing.T, addr string) *grpc.ClientConn {
	t.Helper()
	tc, err := comm.ClientTLS([]string{f.layout.TLSCACertPath(false, ordDomain)}, "", "", "")
	if err != nil {
		t.Fatal(err)
	}
	cc, err := grpc.NewClient(addr, grpc.WithTransportCredentials(credentials.NewTLS(tc)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cc.Close() })
	return cc
}

func doBroadcast(t *testing.T, c ab.AtomicBroadcastClient, envs ...*cb.Envelope) []*ab.BroadcastResponse {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	s, err := c.Broadcast(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var out []*ab.BroadcastResponse
	for _, e := range envs {
		if err := s.Send(e); err != nil {
			t.Fatal(err)
		}
		r, err := s.Recv()
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, r)
	}
	s.CloseSend()
	return out
}

func (f *fixture) tx(t *testing.T, ch string, data []byte) *cb.Envelope {
	t.Helper()
	env, err := envelope.NewSignedEnvelope(cb.HeaderType_ENDORSER_TRANSACTION, ch, f.user, &cb.ConfigValue{Value: data})
	if err != nil {
		t.Fatal(err)
	}
	return env
}

func (f *fixture) seek(t *testing.T, ch string, start, stop uint64, behavior ab.SeekInfo_SeekBehavior) *cb.Envelope {
	t.Helper()
	pos := func(n uint64) *ab.SeekPosition {
		return &ab.SeekPosition{Type: &ab.SeekPosition_Specified{Specified: &ab.SeekSpecified{Number: n}}}
	}
	env, err := envelope.NewSignedEnvelope(cb.HeaderType_DELIVER_SEEK_INFO, ch, f.user, &ab.SeekInfo{Start: pos(start), Stop: pos(stop), Behavior: behavior})
	if err != nil {
		t.Fatal(err)
	}
	// NewSignedEnvelope may leave the timestamp to the caller; deliver needs one.
	p := &cb.Payload{}
	proto.Unmarshal(env.Payload, p)
	chdr := &cb.ChannelHeader{}
	proto.Unmarshal(p.Header.ChannelHeader, chdr)
	if chdr.Timestamp == nil {
		chdr.Timestamp = timestamppb.Now()
		p.Header.ChannelHeader, _ = proto.Marshal(chdr)
		env.Payload, _ = proto.Marshal(p)
		env.Signature, _ = f.user.Sign(env.Payload)
	}
	return env
}

func doDeliver(t *testing.T, c ab.AtomicBroadcastClient, env *cb.Envelope) ([]*cb.Block, cb.Status) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	s, err := c.Deliver(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Send(env); err != nil {
		t.Fatal(err)
	}
	var blocks []*cb.Block
	for {
		r, err := s.Recv()
		if err != nil {
			t.Fatalf("deliver recv: %v", err)
		}
		switch x := r.Type.(type) {
		case *ab.DeliverResponse_Block:
			blocks = append(blocks, x.Block)
		case *ab.DeliverResponse_Status:
			return blocks, x.Status
		}
	}
}

func TestOrdererEndToEnd(t *testing.T) {
	f := newFixture(t)
	r := start(t, f.config())
	addrs := r.o.Addrs()
	admin := f.adminClient(t, true)
	base := "https://" + addrs.Admin + "/participation/v1/channels"

	// Participation: mutual TLS is required.
	if _, err := f.adminClient(t, false).Get(base); err == nil {
		t.Fatal("admin API answered a client without a certificate")
	}

	resp, body := join(t, admin, addrs.Admin, f.genesis)
	if resp.StatusCode != http.StatusCreated {
		t.Fatalf("join: %d %s", resp.StatusCode, body)
	}
	var info map[string]any
	json.Unmarshal(body, &info)
	if info["name"] != channel || info["consensusRelation"] != "consenter" || info["status"] != "active" || info["height"] != float64(1) || info["url"] != "/participation/v1/channels/mychannel" {
		t.Fatalf("join info %s", body)
	}
	if resp, body := join(t, admin, addrs.Admin, f.genesis); resp.StatusCode != http.StatusMethodNotAllowed || !strings.Contains(string(body), "already exists") {
		t.Fatalf("second join: %d %s", resp.StatusCode, body)
	}
	if resp, body := join(t, admin, addrs.Admin, []byte("not a block")); resp.StatusCode != http.StatusBadRequest {
		t.Fatalf("join garbage: %d %s", resp.StatusCode, body)
	}
	if code, body := do(t, admin, http.MethodGet, base); code != 200 || string(body) != `{"systemChannel":null,"channels":[{"name":"mychannel","url":"/participation/v1/channels/mychannel"}]}`+"\n" {
		t.Fatalf("list: %d %s", code, body)
	}
	if code, body := do(t, admin, http.MethodGet, base+"/nope"); code != http.StatusNotFound || !strings.Contains(string(body), `"error"`) {
		t.Fatalf("get unknown: %d %s", code, body)
	}
	if code, _ := do(t, admin, http.MethodPut, base); code != http.StatusMethodNotAllowed {
		t.Fatalf("PUT list: %d", code)
	}
	if code, _ := do(t, admin, http.MethodPost, base); code != http.StatusUnsupportedMediaType && code != http.StatusBadRequest {
		t.Fatalf("POST without form: %d", code)
	}

	// Broadcast and deliver.
	client := f.dial(t, addrs.Broadcast)
	deadline := time.Now().Add(10 * time.Second)
	for {
		res := doBroadcast(t, client, f.tx(t, channel, []byte("a")))
		if res[0].Status == cb.Status_SUCCESS {
			break
		}
		if res[0].Status != cb.Status_SERVICE_UNAVAILABLE || time.Now().After(deadline) {
			t.Fatalf("first broadcast: %v", res[0])
		}
		time.Sleep(20 * time.Millisecond)
	}
	for _, res := range doBroadcast(t, client, f.tx(t, channel, []byte("b")), f.tx(t, channel, []byte("c"))) {
		if res.Status != cb.Status_SUCCESS {
			t.Fatalf("broadcast: %v", res)
		}
	}
	blocks, st := doDeliver(t, client, f.seek(t, channel, 0, 2, ab.SeekInfo_BLOCK_UNTIL_READY))
	if st != cb.Status_SUCCESS || len(blocks) != 3 {
		t.Fatalf("deliver: %v, %d blocks", st, len(blocks))
	}
	if !bytes.Equal(mustMarshal(blocks[0]), f.genesis) {
		t.Error("block 0 is not the genesis block as given")
	}
	if len(blocks[1].Data.Data) != 2 || len(blocks[2].Data.Data) != 1 {
		t.Errorf("blocks hold %d and %d envelopes, want 2 (MaxMessageCount) and 1 (timeout)", len(blocks[1].Data.Data), len(blocks[2].Data.Data))
	}
	for i := 1; i < 3; i++ {
		if !bytes.Equal(blocks[i].Header.PreviousHash, block.HeaderHash(blocks[i-1].Header)) {
			t.Errorf("block %d does not chain", i)
		}
		if n, err := block.LastConfigIndex(blocks[i]); err != nil || n != 0 {
			t.Errorf("block %d last config %d %v", i, n, err)
		}
	}

	// Bad inputs get their Fabric status.
	tampered := f.tx(t, channel, []byte("x"))
	tampered.Signature[len(tampered.Signature)-1] ^= 0xff
	big := f.tx(t, channel, bytes.Repeat([]byte{1}, 5000))
	for _, tc := range []struct {
		name string
		env  *cb.Envelope
		want cb.Status
	}{
		{"malformed", &cb.Envelope{Payload: []byte{0xff, 0x01}}, cb.Status_BAD_REQUEST},
		{"unknown channel", f.tx(t, "nochannel", nil), cb.Status_NOT_FOUND},
		{"oversized", big, cb.Status_REQUEST_ENTITY_TOO_LARGE},
		{"bad signature", tampered, cb.Status_FORBIDDEN},
	} {
		if res := doBroadcast(t, client, tc.env)[0]; res.Status != tc.want || res.Info == "" {
			t.Errorf("%s: got %v %q, want %v with a message", tc.name, res.Status, res.Info, tc.want)
		}
	}
	if _, st := doDeliver(t, client, f.seek(t, channel, 50, 50, ab.SeekInfo_FAIL_IF_NOT_READY)); st != cb.Status_NOT_FOUND {
		t.Errorf("FAIL_IF_NOT_READY: %v", st)
	}
	badSeek := f.seek(t, channel, 0, 0, ab.SeekInfo_BLOCK_UNTIL_READY)
	badSeek.Signature[len(badSeek.Signature)-1] ^= 0xff
	if _, st := doDeliver(t, client, badSeek); st != cb.Status_FORBIDDEN {
		t.Errorf("deliver with a bad signature: %v", st)
	}

	// Operations.
	if code, body := do(t, http.DefaultClient, http.MethodGet, "http://"+addrs.Operations+"/healthz"); code != 200 {
		t.Errorf("healthz: %d %s", code, body)
	}
	if _, body := do(t, http.DefaultClient, http.MethodGet, "http://"+addrs.Operations+"/metrics"); !strings.Contains(string(body), `cairn_orderer_broadcast_results_total{channel="mychannel",status="SUCCESS"} 3`) ||
		!strings.Contains(string(body), `cairn_orderer_is_leader{channel="mychannel"} 1`) {
		t.Errorf("metrics missing:\n%s", body)
	}
	r.stop(t)

	// Restart: the channel is re-opened from disk and continues at height 3.
	r = start(t, f.config())
	addrs = r.o.Addrs()
	base = "https://" + addrs.Admin + "/participation/v1/channels"
	if code, body := do(t, admin, http.MethodGet, base+"/mychannel"); code != 200 || !strings.Contains(string(body), `"height":3`) {
		t.Fatalf("after restart: %d %s", code, body)
	}
	client = f.dial(t, addrs.Broadcast)
	deadline = time.Now().Add(10 * time.Second)
	for {
		res := doBroadcast(t, client, f.tx(t, channel, []byte("d")))
		if res[0].Status == cb.Status_SUCCESS {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("broadcast after restart: %v", res[0])
		}
		time.Sleep(20 * time.Millisecond)
	}
	blocks, st = doDeliver(t, client, f.seek(t, channel, 3, 3, ab.SeekInfo_BLOCK_UNTIL_READY))
	if st != cb.Status_SUCCESS || len(blocks) != 1 || blocks[0].Header.Number != 3 {
		t.Fatalf("deliver after restart: %v %d", st, len(blocks))
	}

	// A deliver stream waiting for a future block ends when the channel is removed.
	waitCtx, waitCancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer waitCancel()
	ws, err := client.Deliver(waitCtx)
	if err != nil {
		t.Fatal(err)
	}
	ws.Send(f.seek(t, channel, 10, 10, ab.SeekInfo_BLOCK_UNTIL_READY))
	time.Sleep(100 * time.Millisecond) // let the request reach its wait

	if code, body := do(t, admin, http.MethodDelete, base+"/mychannel"); code != http.StatusNoContent {
		t.Fatalf("remove: %d %s", code, body)
	}
	if resp, err := ws.Recv(); err == nil && resp.GetStatus() != cb.Status_SERVICE_UNAVAILABLE {
		t.Errorf("waiting deliver after removal: %v", resp)
	} else if err != nil && errors.Is(err, context.DeadlineExceeded) {
		t.Error("waiting deliver did not end on removal")
	}
	if code, _ := do(t, admin, http.MethodGet, base+"/mychannel"); code != http.StatusNotFound {
		t.Fatalf("get after remove: %d", code)
	}
	if code, body := do(t, admin, http.MethodGet, base); code != 200 || !strings.Contains(string(body), `"channels":null`) {
		t.Fatalf("list after remove: %d %s", code, body)
	}
	r.stop(t)
}

func mustMarshal(m proto.Message) []byte {
	b, _ := proto.Marshal(m)
	return b
}
