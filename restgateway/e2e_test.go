package restgateway_test

import (
	"bufio"
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/cairn-ledger/cairn/internal/localnet"
	"github.com/cairn-ledger/cairn/internal/netconfig"
	"github.com/cairn-ledger/cairn/restgateway"
)

// cairnBin runs the network's nodes, built once per test binary.
var cairnBin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "cairn-restgw-bin")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	cairnBin = filepath.Join(dir, "cairn")
	build := exec.Command("go", "build", "-o", cairnBin, "../cmd/cairn")
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "build cairn:", err)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// testCA issues the REST gateway's server certificate and callers' client
// certificates.
type testCA struct {
	key  *ecdsa.PrivateKey
	cert *x509.Certificate
	pem  []byte
	dir  string
}

func newTestCA(t *testing.T, dir string) *testCA {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "rest-test-ca"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	ca := &testCA{key: key, cert: cert, pem: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), dir: dir}
	writeFile(t, filepath.Join(dir, "ca.pem"), ca.pem)
	return ca
}

// issue writes NAME.pem and NAME.key and returns the key pair.
func (ca *testCA) issue(t *testing.T, name string, server bool) tls.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	serial, _ := rand.Int(rand.Reader, big.NewInt(1<<62))
	tmpl := &x509.Certificate{
		SerialNumber: serial, Subject: pkix.Name{CommonName: name},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	if server {
		tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}
		tmpl.IPAddresses = []net.IP{net.ParseIP("127.0.0.1")}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	certPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	keyPEM := pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER})
	writeFile(t, filepath.Join(ca.dir, name+".pem"), certPEM)
	writeFile(t, filepath.Join(ca.dir, name+".key"), keyPEM)
	pair, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	return pair
}

func writeFile(t *testing.T, path string, b []byte) {
	t.Helper()
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
}

func tokenHash(token string) string {
	h := sha256.Sum256([]byte(token))
	return hex.EncodeToString(h[:])
}

// api is a caller of the REST gateway with one set of credentials.
type api struct {
	t     *testing.T
	base  string
	http  *http.Client
	token string
}

func (a api) do(method, path string, body []byte, hdr map[string]string) *http.Response {
	a.t.Helper()
	req, err := http.NewRequest(method, a.base+path, bytes.NewReader(body))
	if err != nil {
		a.t.Fatal(err)
	}
	if a.token != "" {
		req.Header.Set("Authorization", "Bearer "+a.token)
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := a.http.Do(req)
	if err != nil {
		a.t.Fatalf("%s %s: %v", method, path, err)
	}
	return resp
}

// call does a request and decodes the JSON answer, checking the status.
func (a api) call(method, path string, body any, wantStatus int, out any) {
	a.t.Helper()
	var raw []byte
	switch b := body.(type) {
	case nil:
	case []byte:
		raw = b
	default:
		var err error
		if raw, err = json.Marshal(b); err != nil {
			a.t.Fatal(err)
		}
	}
	resp := a.do(method, path, raw, nil)
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != wantStatus {
		a.t.Fatalf("%s %s: status %d, want %d: %s", method, path, resp.StatusCode, wantStatus, data)
	}
	if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
		a.t.Fatalf("%s %s: content type %q, want JSON: %s", method, path, ct, data)
	}
	if out != nil {
		if err := json.Unmarshal(data, out); err != nil {
			a.t.Fatalf("%s %s: decode %s: %v", method, path, data, err)
		}
	}
}

type apiErr struct {
	Error struct {
		Code    string `json:"code"`
		Message string `json:"message"`
		Details []struct {
			Address, MSPID, Message string
		} `json:"details"`
	} `json:"error"`
}

func (a api) wantError(method, path string, body any, wantStatus int, wantCode string) apiErr {
	a.t.Helper()
	var e apiErr
	a.call(method, path, body, wantStatus, &e)
	if e.Error.Code != wantCode || e.Error.Message == "" {
		a.t.Fatalf("%s %s: error %+v, want code %s with a message", method, path, e.Error, wantCode)
	}
	return e
}

type txResult struct {
	TxID           string  `json:"txId"`
	Result         *string `json:"result"`
	ResultBase64   string  `json:"resultBase64"`
	BlockNumber    *uint64 `json:"blockNumber"`
	ValidationCode string  `json:"validationCode"`
}

type txStatus struct {
	TxID           string `json:"txId"`
	ValidationCode string `json:"validationCode"`
	Valid          bool   `json:"valid"`
	BlockNumber    uint64 `json:"blockNumber"`
}

// sseEvent is one parsed Server-Sent Event.
type sseEvent struct {
	id, name, data string
}

// sseStream reads events (and counts keepalive comments) in a goroutine
// that ends when the body is closed.
type sseStream struct {
	t          *testing.T
	resp       *http.Response
	events     chan sseEvent
	keepalives chan struct{}
	done       chan struct{}
}

func (a api) stream(path string, hdr map[string]string) *sseStream {
	a.t.Helper()
	resp := a.do(http.MethodGet, path, nil, hdr)
	if resp.StatusCode != http.StatusOK {
		data, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		a.t.Fatalf("GET %s: status %d: %s", path, resp.StatusCode, data)
	}
	if ct := resp.Header.Get("Content-Type"); ct != "text/event-stream" {
		a.t.Fatalf("GET %s: content type %q", path, ct)
	}
	s := &sseStream{t: a.t, resp: resp, events: make(chan sseEvent, 100), keepalives: make(chan struct{}, 100), done: make(chan struct{})}
	go func() {
		defer close(s.done)
		sc := bufio.NewScanner(resp.Body)
		var ev sseEvent
		for sc.Scan() {
			line := sc.Text()
			switch {
			case line == "":
				if ev.data != "" {
					s.events <- ev
				}
				ev = sseEvent{}
			case strings.HasPrefix(line, ":"):
				select {
				case s.keepalives <- struct{}{}:
				default:
				}
			case strings.HasPrefix(line, "id: "):
				ev.id = strings.TrimPrefix(line, "id: ")
			case strings.HasPrefix(line, "event: "):
				ev.name = strings.TrimPrefix(line, "event: ")
			case strings.HasPrefix(line, "data: "):
				ev.data = strings.TrimPrefix(line, "data: ")
			}
		}
	}()
	return s
}

func (s *sseStream) next(within time.Duration) sseEvent {
	s.t.Helper()
	select {
	case ev := <-s.events:
		if ev.name == "error" {
			s.t.Fatalf("stream error event: %s", ev.data)
		}
		return ev
	case <-time.After(within):
		s.t.Fatalf("no event within %s", within)
		return sseEvent{}
	}
}

func (s *sseStream) close() {
	s.resp.Body.Close()
	<-s.done
}

type ccEvent struct {
	BlockNumber uint64 `json:"blockNumber"`
	TxID        string `json:"txId"`
	Chaincode   string `json:"chaincode"`
	EventName   string `json:"eventName"`
	Payload     []byte `json:"payload"`
}

type blockEvent struct {
	Channel      string `json:"channel"`
	Number       uint64 `json:"number"`
	Transactions []struct {
		TxID           string `json:"txId"`
		ValidationCode string `json:"validationCode"`
		Valid          bool   `json:"valid"`
	} `json:"transactions"`
}

func decode[T any](t *testing.T, ev sseEvent) T {
	t.Helper()
	var v T
	if err := json.Unmarshal([]byte(ev.data), &v); err != nil {
		t.Fatalf("event %+v: %v", ev, err)
	}
	return v
}

// TestRESTGatewayEndToEnd runs one local network (1 orderer, 1 organisation,
// 1 peer, chaincode basic) and the REST gateway in process in front of its
// peer, and drives every endpoint over HTTPS.
func TestRESTGatewayEndToEnd(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a local network")
	}
	nw, err := netconfig.Generate(1, 1, 1)
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
	t.Cleanup(func() {
		if err := n.Stop(); err != nil {
			t.Errorf("network stop: %v", err)
		}
	})
	org := n.Info.Organizations[0]
	peer := org.Peers[0]
	channel := n.Info.Channel

	dir := t.TempDir()
	ca := newTestCA(t, dir)
	ca.issue(t, "server", true)
	byFingerprint := ca.issue(t, "app-by-fingerprint", false)
	byCN := ca.issue(t, "app-by-cn", false)
	stranger := ca.issue(t, "stranger", false)
	fp := sha256.Sum256(byFingerprint.Certificate[0])

	user1, admin := org.Users["user1"], org.Users["admin"]
	cfg := restgateway.Config{
		ListenAddress: "127.0.0.1:0",
		TLS: restgateway.TLSConfig{CertFile: filepath.Join(dir, "server.pem"), KeyFile: filepath.Join(dir, "server.key"),
			ClientRootCAs: []string{filepath.Join(dir, "ca.pem")}},
		Peer: restgateway.PeerConfig{Address: peer.Address, TLSRootCert: peer.TLSRootCert, ServerName: peer.Name},
		Identities: map[string]restgateway.IdentityConfig{
			"user1": {MSPID: org.MSPID, CertFile: user1.Cert, KeyStore: restgateway.KeyStoreConfig{Type: "file", KeyFile: user1.Key}},
			"admin": {MSPID: org.MSPID, CertFile: admin.Cert, KeyStore: restgateway.KeyStoreConfig{KeyFile: admin.Key},
				Access: restgateway.AccessConfig{Chaincodes: []string{"basic"}}},
			"elsewhere": {MSPID: org.MSPID, CertFile: user1.Cert, KeyStore: restgateway.KeyStoreConfig{KeyFile: user1.Key},
				Access: restgateway.AccessConfig{Channels: []string{"otherchannel"}}},
		},
		Tokens: []restgateway.TokenConfig{
			{SHA256: tokenHash("user1-token"), Identity: "user1"},
			{SHA256: tokenHash("admin-token"), Identity: "admin"},
			{SHA256: tokenHash("elsewhere-token"), Identity: "elsewhere"},
		},
		ClientCerts: []restgateway.ClientCertConfig{
			{Fingerprint: hex.EncodeToString(fp[:]), Identity: "user1"},
			{SubjectCN: "app-by-cn", Identity: "admin"},
		},
		MaxRequestBytes: 4096,
		SSEKeepalive:    300 * time.Millisecond,
	}
	gw, err := restgateway.New(cfg, restgateway.Deps{})
	if err != nil {
		t.Fatal(err)
	}
	runCtx, stopGW := context.WithCancel(context.Background())
	ran := make(chan error, 1)
	go func() { ran <- gw.Run(runCtx) }()
	t.Cleanup(func() {
		stopGW()
		select {
		case err := <-ran:
			if err != nil {
				t.Errorf("gateway Run: %v", err)
			}
		case <-time.After(20 * time.Second):
			t.Error("gateway Run did not return after its context ended")
		}
		checkNoLeaks(t)
	})

	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(ca.pem)
	newClient := func(certs ...tls.Certificate) *http.Client {
		return &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: roots, Certificates: certs}}}
	}
	// One caller speaks HTTP/2, so event streams are exercised over both.
	h2Client := &http.Client{Transport: &http.Transport{ForceAttemptHTTP2: true,
		TLSClientConfig: &tls.Config{RootCAs: roots, Certificates: []tls.Certificate{byCN}}}}
	base := "https://" + gw.Addr()
	anon := api{t: t, base: base, http: newClient()}
	withToken := func(tok string) api { a := anon; a.token = tok; return a }
	asUser1, asAdmin, asElsewhere := withToken("user1-token"), withToken("admin-token"), withToken("elsewhere-token")
	certUser1 := api{t: t, base: base, http: newClient(byFingerprint)}
	certAdmin := api{t: t, base: base, http: h2Client}
	certStranger := api{t: t, base: base, http: newClient(stranger)}

	cc := "/v1/channels/" + channel + "/chaincodes/basic"
	txPath := cc + "/transactions"
	queryPath := cc + "/queries"

	t.Run("health and openapi", func(t *testing.T) {
		var h struct {
			Status string
			Peer   struct{ Address, State string }
		}
		anon.call(http.MethodGet, "/healthz", nil, http.StatusOK, &h)
		if h.Status != "OK" || h.Peer.Address != peer.Address {
			t.Fatalf("healthz %+v", h)
		}
		var doc struct {
			OpenAPI string                                `json:"openapi"`
			Paths   map[string]map[string]json.RawMessage `json:"paths"`
		}
		anon.call(http.MethodGet, "/openapi.json", nil, http.StatusOK, &doc)
		for _, p := range []string{"/v1/channels/{channel}/chaincodes/{chaincode}/transactions", "/v1/channels/{channel}/transactions/{txid}",
			"/v1/channels/{channel}/blocks", "/v1/channels/{channel}/chaincodes/{chaincode}/events", "/healthz"} {
			if doc.Paths[p] == nil {
				t.Errorf("openapi.json served without %s", p)
			}
		}
		anon.wantError(http.MethodGet, "/v2/nothing", nil, http.StatusNotFound, "NOT_FOUND")
		anon.wantError(http.MethodDelete, txPath, nil, http.StatusMethodNotAllowed, "METHOD_NOT_ALLOWED")
	})

	t.Run("401", func(t *testing.T) {
		body := map[string]any{"function": "GetAllAssets"}
		resp := anon.do(http.MethodPost, queryPath, []byte(`{"function":"GetAllAssets"}`), nil)
		resp.Body.Close()
		if resp.StatusCode != http.StatusUnauthorized || !strings.HasPrefix(resp.Header.Get("WWW-Authenticate"), "Bearer") {
			t.Fatalf("no credentials: %d, WWW-Authenticate %q", resp.StatusCode, resp.Header.Get("WWW-Authenticate"))
		}
		anon.wantError(http.MethodPost, queryPath, body, http.StatusUnauthorized, "UNAUTHENTICATED")
		withToken("wrong-token").wantError(http.MethodPost, queryPath, body, http.StatusUnauthorized, "UNAUTHENTICATED")
		certStranger.wantError(http.MethodPost, queryPath, body, http.StatusUnauthorized, "UNAUTHENTICATED")
		anon.wantError(http.MethodGet, "/v1/channels/"+channel+"/blocks", nil, http.StatusUnauthorized, "UNAUTHENTICATED")
		anon.wantError(http.MethodGet, "/v1/channels/"+channel+"/transactions/abc", nil, http.StatusUnauthorized, "UNAUTHENTICATED")
	})

	t.Run("403", func(t *testing.T) {
		body := map[string]any{"function": "GetAllAssets"}
		asElsewhere.wantError(http.MethodPost, queryPath, body, http.StatusForbidden, "FORBIDDEN")
		asElsewhere.wantError(http.MethodGet, "/v1/channels/"+channel+"/blocks", nil, http.StatusForbidden, "FORBIDDEN")
		asAdmin.wantError(http.MethodPost, "/v1/channels/"+channel+"/chaincodes/qscc/queries",
			map[string]any{"function": "GetChainInfo", "args": []string{channel}}, http.StatusForbidden, "FORBIDDEN")
		certAdmin.wantError(http.MethodGet, "/v1/channels/"+channel+"/chaincodes/other/events", nil, http.StatusForbidden, "FORBIDDEN")
		// user1 has no limits: the same query passes.
		asUser1.call(http.MethodPost, "/v1/channels/"+channel+"/chaincodes/qscc/queries",
			map[string]any{"function": "GetChainInfo", "args": []string{channel}}, http.StatusOK, nil)
	})

	t.Run("bad input", func(t *testing.T) {
		asUser1.wantError(http.MethodPost, txPath, []byte("{garbage"), http.StatusBadRequest, "BAD_REQUEST")
		asUser1.wantError(http.MethodPost, txPath, []byte(`{"function":"f","bogus":1}`), http.StatusBadRequest, "BAD_REQUEST")
		asUser1.wantError(http.MethodPost, queryPath, []byte(`{"function":"ReadAsset","transient":{"k":"***"}}`), http.StatusBadRequest, "BAD_REQUEST")
		huge := []byte(`{"function":"CreateAsset","args":["` + strings.Repeat("x", 8192) + `"]}`)
		asUser1.wantError(http.MethodPost, txPath, huge, http.StatusRequestEntityTooLarge, "REQUEST_TOO_LARGE")
		asUser1.wantError(http.MethodGet, "/v1/channels/"+channel+"/blocks?start=-3", nil, http.StatusBadRequest, "BAD_REQUEST")
		// The server keeps serving.
		asUser1.call(http.MethodGet, "/healthz", nil, http.StatusOK, nil)
	})

	prefix := fmt.Sprintf("rest-%d-", time.Now().UnixNano())
	create := func(a api, i int, async bool) txResult {
		t.Helper()
		var res txResult
		want := http.StatusOK
		if async {
			want = http.StatusAccepted
		}
		a.call(http.MethodPost, txPath, map[string]any{"function": "CreateAsset",
			"args": []string{fmt.Sprintf("%s%d", prefix, i), "blue", "5", "Tomoko", "300"}, "async": async}, want, &res)
		if res.TxID == "" {
			t.Fatalf("submit %d: no txId: %+v", i, res)
		}
		return res
	}
	// Four transactions through three kinds of credentials, each in its own
	// block (the orderer cuts a block per transaction when they arrive one
	// after the other, which the block numbers below verify).
	var txs []string
	var blocks []uint64
	t.Run("submit, evaluate, status", func(t *testing.T) {
		first := create(asUser1, 1, false)
		if first.BlockNumber == nil || first.ValidationCode != "VALID" {
			t.Fatalf("submit: %+v", first)
		}
		var q struct {
			Result       string `json:"result"`
			ResultBase64 string `json:"resultBase64"`
		}
		asUser1.call(http.MethodPost, queryPath, map[string]any{"function": "ReadAsset", "args": []string{prefix + "1"},
			"transient": map[string]string{"note": base64.StdEncoding.EncodeToString([]byte("private"))}}, http.StatusOK, &q)
		var asset struct{ ID, Owner string }
		if err := json.Unmarshal([]byte(q.Result), &asset); err != nil || asset.ID != prefix+"1" || asset.Owner != "Tomoko" {
			t.Fatalf("ReadAsset: %+v (%v)", q, err)
		}
		if raw, _ := base64.StdEncoding.DecodeString(q.ResultBase64); string(raw) != q.Result {
			t.Fatalf("resultBase64 %q does not match result %q", q.ResultBase64, q.Result)
		}
		var st txStatus
		asUser1.call(http.MethodGet, "/v1/channels/"+channel+"/transactions/"+first.TxID, nil, http.StatusOK, &st)
		if st.TxID != first.TxID || st.ValidationCode != "VALID" || !st.Valid || st.BlockNumber != *first.BlockNumber {
			t.Fatalf("status %+v, submit said block %d", st, *first.BlockNumber)
		}
		asUser1.wantError(http.MethodGet, "/v1/channels/"+channel+"/transactions/"+strings.Repeat("0", 64)+"?wait=300ms", nil, http.StatusNotFound, "NOT_FOUND")

		// Async through a client certificate (by fingerprint), then its status.
		second := create(certUser1, 2, true)
		if second.BlockNumber != nil || second.ValidationCode != "" {
			t.Fatalf("async submit reported a commit: %+v", second)
		}
		var st2 txStatus
		certUser1.call(http.MethodGet, "/v1/channels/"+channel+"/transactions/"+second.TxID+"?wait=30s", nil, http.StatusOK, &st2)
		if !st2.Valid {
			t.Fatalf("async tx status %+v", st2)
		}
		// Through a client certificate mapped by CN to admin.
		third := create(certAdmin, 3, false)
		txs = []string{first.TxID, second.TxID, third.TxID}
		blocks = []uint64{*first.BlockNumber, st2.BlockNumber, *third.BlockNumber}
		if !(blocks[0] < blocks[1] && blocks[1] < blocks[2]) {
			t.Fatalf("blocks %v are not increasing", blocks)
		}

		// Chaincode failures carry the chaincode's message.
		e := asUser1.wantError(http.MethodPost, queryPath, map[string]any{"function": "ReadAsset", "args": []string{"no-such-asset"}},
			http.StatusUnprocessableEntity, "EVALUATION_FAILED")
		if !strings.Contains(fmt.Sprint(e), "does not exist") {
			t.Fatalf("evaluate error does not carry the chaincode message: %+v", e)
		}
		e = asUser1.wantError(http.MethodPost, txPath, map[string]any{"function": "TransferAsset", "args": []string{"no-such-asset", "Max"}},
			http.StatusUnprocessableEntity, "ENDORSEMENT_FAILED")
		if !strings.Contains(fmt.Sprint(e), "does not exist") {
			t.Fatalf("endorse error does not carry the chaincode message: %+v", e)
		}
		asUser1.wantError(http.MethodPost, "/v1/channels/nochannel/chaincodes/basic/queries", map[string]any{"function": "GetAllAssets"},
			http.StatusNotFound, "NOT_FOUND")
	})
	if len(txs) != 3 {
		t.FailNow()
	}

	t.Run("chaincode events resume", func(t *testing.T) {
		path := fmt.Sprintf("%s/events?start=%d", cc, blocks[0])
		s := asUser1.stream(path, nil)
		var ids []string
		for i := range 3 {
			ev := s.next(30 * time.Second)
			ce := decode[ccEvent](t, ev)
			if ev.name != "chaincodeEvent" || ce.TxID != txs[i] || ce.BlockNumber != blocks[i] || ce.EventName != "CreateAsset" || ce.Chaincode != "basic" {
				t.Fatalf("event %d: %+v %+v, want tx %s in block %d", i, ev, ce, txs[i], blocks[i])
			}
			if want := fmt.Sprintf("%d:%s", blocks[i], txs[i]); ev.id != want {
				t.Fatalf("event id %q, want %q", ev.id, want)
			}
			var payload struct{ ID string }
			if err := json.Unmarshal(ce.Payload, &payload); err != nil || payload.ID != fmt.Sprintf("%s%d", prefix, i+1) {
				t.Fatalf("payload %q (%v)", ce.Payload, err)
			}
			ids = append(ids, ev.id)
		}
		s.close()

		// Reconnect as EventSource does: same URL (start included), plus
		// Last-Event-ID of the first event. Then a fourth transaction: the
		// stream must be exactly tx2, tx3, tx4.
		s = asUser1.stream(path, map[string]string{"Last-Event-ID": ids[0]})
		defer s.close()
		fourth := create(asUser1, 4, false)
		want := []string{txs[1], txs[2], fourth.TxID}
		for i, tx := range want {
			ce := decode[ccEvent](t, s.next(30*time.Second))
			if ce.TxID != tx {
				t.Fatalf("after resume, event %d is tx %s (block %d), want %s", i, ce.TxID, ce.BlockNumber, tx)
			}
		}
		// A bare block number resumes after that block.
		s2 := certUser1.stream(cc+"/events", map[string]string{"Last-Event-ID": fmt.Sprint(blocks[1])})
		defer s2.close()
		if ce := decode[ccEvent](t, s2.next(30*time.Second)); ce.TxID != txs[2] {
			t.Fatalf("resume after block %d gave tx %s, want %s", blocks[1], ce.TxID, txs[2])
		}
	})

	t.Run("block events resume", func(t *testing.T) {
		path := fmt.Sprintf("/v1/channels/%s/blocks?start=%d", channel, blocks[0])
		s := asUser1.stream(path, nil)
		for i := range 3 {
			ev := s.next(30 * time.Second)
			b := decode[blockEvent](t, ev)
			if ev.name != "block" || ev.id != fmt.Sprint(blocks[i]) || b.Number != blocks[i] || b.Channel != channel {
				t.Fatalf("block event %d: %+v %+v, want block %d", i, ev, b, blocks[i])
			}
			if len(b.Transactions) != 1 || b.Transactions[0].TxID != txs[i] || b.Transactions[0].ValidationCode != "VALID" || !b.Transactions[0].Valid {
				t.Fatalf("block %d transactions %+v, want %s VALID", b.Number, b.Transactions, txs[i])
			}
		}
		s.close()
		// Last-Event-ID wins over ?start= and resumes after the named block.
		s = asUser1.stream(path, map[string]string{"Last-Event-ID": fmt.Sprint(blocks[0])})
		for i := 1; i < 3; i++ {
			if b := decode[blockEvent](t, s.next(30*time.Second)); b.Number != blocks[i] {
				t.Fatalf("after resume got block %d, want %d", b.Number, blocks[i])
			}
		}
		s.close()
		// ?start= alone starts exactly there (over HTTP/2).
		s = certAdmin.stream(fmt.Sprintf("/v1/channels/%s/blocks?start=%d", channel, blocks[1]), nil)
		if s.resp.ProtoMajor != 2 {
			t.Fatalf("stream over %s, want HTTP/2", s.resp.Proto)
		}
		if b := decode[blockEvent](t, s.next(30*time.Second)); b.Number != blocks[1] {
			t.Fatalf("start=%d gave block %d", blocks[1], b.Number)
		}
		s.close()
	})

	t.Run("cairn gateway start", func(t *testing.T) {
		testCLI(t, cfg)
	})

	t.Run("keepalive", func(t *testing.T) {
		s := asUser1.stream(fmt.Sprintf("/v1/channels/%s/blocks?start=%d", channel, blocks[2]+1000), nil)
		defer s.close()
		select {
		case <-s.keepalives:
		case ev := <-s.events:
			t.Fatalf("unexpected event on an idle stream: %+v", ev)
		case <-time.After(10 * time.Second):
			t.Fatal("no keepalive comment on an idle stream")
		}
	})
}

// checkNoLeaks fails if any goroutine of this package outlives Run (event
// stream receivers, the server).
func checkNoLeaks(t *testing.T) {
	t.Helper()
	var stacks string
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		buf := make([]byte, 1<<20)
		stacks = string(buf[:runtime.Stack(buf, true)])
		leaked := false
		for _, g := range strings.Split(stacks, "\n\n") {
			if strings.Contains(g, "cairn/restgateway.") && !strings.Contains(g, "restgateway_test.") {
				leaked = true
			}
		}
		if !leaked {
			return
		}
	}
	t.Errorf("goroutines of restgateway outlive Run:\n%s", stacks)
}

// testCLI runs `cairn gateway start --config FILE` as a process with the
// test's configuration on another port, waits for /healthz and stops it with
// SIGTERM.
func testCLI(t *testing.T, cfg restgateway.Config) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	cfg.ListenAddress = addr
	raw, err := yaml.Marshal(cfg)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "gateway.yaml")
	writeFile(t, path, raw)
	var out bytes.Buffer
	cmd := exec.Command(cairnBin, "gateway", "start", "--config", path)
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	defer func() {
		cmd.Process.Signal(syscall.SIGTERM)
		select {
		case err := <-exited:
			if err != nil {
				t.Errorf("cairn gateway start exited with %v\n%s", err, out.String())
			}
		case <-time.After(20 * time.Second):
			cmd.Process.Kill()
			t.Errorf("cairn gateway start ignored SIGTERM\n%s", out.String())
		}
	}()
	roots := x509.NewCertPool()
	caPEM, _ := os.ReadFile(cfg.TLS.ClientRootCAs[0])
	roots.AppendCertsFromPEM(caPEM)
	c := &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: roots}}}
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		resp, err := c.Get("https://" + addr + "/healthz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("cairn gateway start did not serve /healthz: %v\n%s", err, out.String())
		}
	}
	a := api{t: t, base: "https://" + addr, http: c, token: "user1-token"}
	var q struct{ Result string }
	a.call(http.MethodPost, "/v1/channels/mychannel/chaincodes/basic/queries", map[string]any{"function": "GetAllAssets"}, http.StatusOK, &q)
	if !strings.HasPrefix(q.Result, "[") {
		t.Fatalf("GetAllAssets through the CLI gateway: %q", q.Result)
	}
}
