package restgateway

import (
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/hyperledger/fabric-gateway/pkg/client"
	gp "github.com/hyperledger/fabric-protos-go-apiv2/gateway"
	"github.com/hyperledger/fabric-protos-go-apiv2/peer"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/protoadapt"
	"gopkg.in/yaml.v3"
)

func TestDecodeProposal(t *testing.T) {
	for _, tc := range []struct {
		name, body string
		wantErr    string
		check      func(t *testing.T, p proposal)
	}{
		{name: "minimal", body: `{"function":"ReadAsset"}`, check: func(t *testing.T, p proposal) {
			if p.function != "ReadAsset" || len(p.args) != 0 || p.transient != nil || p.async {
				t.Fatalf("%+v", p)
			}
		}},
		{name: "full", body: `{"function":"f","args":["a","b"],"transient":{"k":"aGk="},"endorsingOrganizations":["Org1MSP"],"async":true}`,
			check: func(t *testing.T, p proposal) {
				if strings.Join(p.args, ",") != "a,b" || string(p.transient["k"]) != "hi" || p.orgs[0] != "Org1MSP" || !p.async {
					t.Fatalf("%+v", p)
				}
			}},
		{name: "empty", body: ``, wantErr: "empty"},
		{name: "garbage", body: `not json`, wantErr: "invalid character"},
		{name: "array", body: `[]`, wantErr: "cannot unmarshal"},
		{name: "null", body: `null`, wantErr: `"function" is required`},
		{name: "no function", body: `{"args":["x"]}`, wantErr: `"function" is required`},
		{name: "unknown field", body: `{"function":"f","transeint":{}}`, wantErr: "unknown field"},
		{name: "numeric arg", body: `{"function":"f","args":[1]}`, wantErr: "cannot unmarshal"},
		{name: "trailing", body: `{"function":"f"} {"function":"g"}`, wantErr: "trailing data"},
		{name: "trailing garbage", body: `{"function":"f"}x`, wantErr: "trailing data"},
		{name: "bad base64", body: `{"function":"f","transient":{"k":"%%%"}}`, wantErr: `transient "k" is not standard base64`},
		{name: "empty org", body: `{"function":"f","endorsingOrganizations":[""]}`, wantErr: "empty MSP ID"},
		{name: "not utf8", body: "{\"function\":\"\xff\"}", wantErr: "not UTF-8"},
		{name: "long function", body: `{"function":"` + strings.Repeat("x", maxFunctionLength+1) + `"}`, wantErr: "longer than"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p, err := decodeProposal([]byte(tc.body))
			if tc.wantErr != "" {
				if err == nil || err.status != http.StatusBadRequest || !strings.Contains(err.body.Message, tc.wantErr) {
					t.Fatalf("got %v, want 400 containing %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			tc.check(t, p)
		})
	}
}

// FuzzDecodeProposal: no body panics the decoder, and every accepted body
// names a function and decodes its transient data.
func FuzzDecodeProposal(f *testing.F) {
	for _, seed := range []string{
		`{"function":"CreateAsset","args":["a1","blue","5","Tom","300"]}`,
		`{"function":"f","transient":{"k":"aGk="},"endorsingOrganizations":["Org1MSP"],"async":true}`,
		`{"function":""}`, `null`, `[]`, `{`, `{"function":"f"}{}`, "\xff", `{"args":[null]}`,
		`{"function":"f","transient":{"k":null}}`,
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		p, err := decodeProposal(body)
		if err != nil {
			if err.status != http.StatusBadRequest || err.body.Message == "" {
				t.Fatalf("error %v is not a 400 with a message", err)
			}
			return
		}
		if p.function == "" || p.args == nil {
			t.Fatalf("accepted %q as %+v", body, p)
		}
	})
}

func TestReadBodyLimit(t *testing.T) {
	rec := httptest.NewRecorder()
	r := httptest.NewRequest(http.MethodPost, "/", strings.NewReader(strings.Repeat("x", 11)))
	if _, err := readBody(rec, r, 10); err == nil || err.status != http.StatusRequestEntityTooLarge {
		t.Fatalf("got %v, want 413", err)
	}
	r = httptest.NewRequest(http.MethodPost, "/", strings.NewReader(strings.Repeat("x", 10)))
	if b, err := readBody(rec, r, 10); err != nil || len(b) != 10 {
		t.Fatalf("got %d bytes, %v", len(b), err)
	}
}

func hashHex(s string) string {
	h := sha256.Sum256([]byte(s))
	return hex.EncodeToString(h[:])
}

func TestAuthenticator(t *testing.T) {
	known := &x509.Certificate{Raw: []byte("known-cert"), Subject: pkix.Name{CommonName: "other"}}
	byCN := &x509.Certificate{Raw: []byte("cn-cert"), Subject: pkix.Name{CommonName: "app1"}}
	unknown := &x509.Certificate{Raw: []byte("unknown"), Subject: pkix.Name{CommonName: "stranger"}}
	fp := sha256.Sum256(known.Raw)
	a := newAuthenticator(Config{
		Tokens: []TokenConfig{{SHA256: hashHex("s3cret"), Identity: "user1"}, {SHA256: strings.ToUpper(hashHex("adm")), Identity: "admin"}},
		ClientCerts: []ClientCertConfig{
			{Fingerprint: strings.ToUpper(hex.EncodeToString(fp[:2])) + ":" + hex.EncodeToString(fp[2:]), Identity: "admin"},
			{SubjectCN: "app1", Identity: "user1"},
		},
	})
	for _, tc := range []struct {
		name, auth string
		cert       *x509.Certificate
		want       string // identity, or "" for 401
	}{
		{name: "token", auth: "Bearer s3cret", want: "user1"},
		{name: "token lowercase scheme", auth: "bearer adm", want: "admin"},
		{name: "wrong token", auth: "Bearer nope"},
		{name: "basic", auth: "Basic dXNlcjpwYXNz"},
		{name: "empty bearer", auth: "Bearer "},
		{name: "no credentials"},
		{name: "cert fingerprint", cert: known, want: "admin"},
		{name: "cert CN", cert: byCN, want: "user1"},
		{name: "unknown cert", cert: unknown},
		{name: "wrong token beats known cert", auth: "Bearer nope", cert: known},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := httptest.NewRequest(http.MethodGet, "/", nil)
			if tc.auth != "" {
				r.Header.Set("Authorization", tc.auth)
			}
			if tc.cert != nil {
				r.TLS = &tls.ConnectionState{PeerCertificates: []*x509.Certificate{tc.cert}}
			}
			got, err := a.identify(r)
			if tc.want == "" {
				if err == nil || err.status != http.StatusUnauthorized {
					t.Fatalf("got %q %v, want 401", got, err)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Fatalf("got %q %v, want %q", got, err, tc.want)
			}
		})
	}
}

func TestAccess(t *testing.T) {
	all := newAccess(AccessConfig{})
	if all.check("any", "thing") != nil {
		t.Fatal("empty lists must allow everything")
	}
	ac := newAccess(AccessConfig{Channels: []string{"mychannel"}, Chaincodes: []string{"basic"}})
	if ac.check("mychannel", "basic") != nil || ac.check("mychannel", "") != nil {
		t.Fatal("allowed channel and chaincode refused")
	}
	if err := ac.check("other", "basic"); err == nil || err.status != http.StatusForbidden {
		t.Fatalf("other channel: %v", err)
	}
	if err := ac.check("mychannel", "secret"); err == nil || err.status != http.StatusForbidden {
		t.Fatalf("other chaincode: %v", err)
	}
}

func withDetail(code codes.Code, msg string) error {
	st := status.New(code, msg)
	st, _ = st.WithDetails(protoadapt.MessageV1Of(&gp.ErrorDetail{Address: "peer0:7051", MspId: "Org1MSP", Message: "chaincode says no"}))
	return st.Err()
}

// TestFromGatewayError covers the status mapping; the typed endorse and
// submit errors, which only the client library can build, are covered end
// to end.
func TestFromGatewayError(t *testing.T) {
	for _, tc := range []struct {
		name       string
		err        error
		wantStatus int
		wantCode   string
	}{
		{"invalid argument", status.Error(codes.InvalidArgument, "bad"), 400, codeBadRequest},
		{"permission denied", status.Error(codes.PermissionDenied, "no"), 403, codeForbidden},
		{"not found", status.Error(codes.NotFound, "no"), 404, codeNotFound},
		{"unknown channel", status.Error(codes.Unavailable, "channel 'nochannel' not found"), 404, codeNotFound},
		{"unavailable", status.Error(codes.Unavailable, "connection refused"), 503, codePeerUnavailable},
		{"no endorsers", status.Error(codes.FailedPrecondition, "no peers available"), 503, codePeerUnavailable},
		{"deadline", status.Error(codes.DeadlineExceeded, "slow"), 504, codePeerTimeout},
		{"evaluate chaincode error", withDetail(codes.Unknown, "evaluate failed"), 422, codeEvaluationFailed},
		{"internal", status.Error(codes.Internal, "boom"), 502, codePeerError},
		{"identity", errIdentityUnavailable, 500, codeIdentityUnavailable},
		{"plain", errors.New("x"), 500, codeInternal},
		{"mvcc", &client.CommitError{TransactionID: "tx1", Code: peer.TxValidationCode_MVCC_READ_CONFLICT}, 409, codeConflict},
		{"policy", &client.CommitError{TransactionID: "tx1", Code: peer.TxValidationCode_ENDORSEMENT_POLICY_FAILURE}, 422, codeTransactionInvalid},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ae := fromGatewayError(tc.err)
			if ae.status != tc.wantStatus || ae.body.Code != tc.wantCode {
				t.Fatalf("got %d %s (%s), want %d %s", ae.status, ae.body.Code, ae.body.Message, tc.wantStatus, tc.wantCode)
			}
		})
	}
	ae := fromGatewayError(withDetail(codes.Aborted, "failed"))
	if len(ae.body.Details) != 1 || ae.body.Details[0].MSPID != "Org1MSP" || ae.body.Details[0].Message != "chaincode says no" {
		t.Fatalf("details not carried: %+v", ae.body)
	}
}

// TestOpenAPIListsEveryRoute checks the embedded document against the router
// in both directions.
func TestOpenAPIListsEveryRoute(t *testing.T) {
	var doc struct {
		OpenAPI string                                `json:"openapi"`
		Paths   map[string]map[string]json.RawMessage `json:"paths"`
	}
	if err := json.Unmarshal(openAPIDocument, &doc); err != nil {
		t.Fatalf("openapi.json: %v", err)
	}
	if !strings.HasPrefix(doc.OpenAPI, "3.0") {
		t.Fatalf("openapi version %q", doc.OpenAPI)
	}
	routes := (&Gateway{}).routes()
	inRouter := map[string]bool{}
	for _, rt := range routes {
		key := strings.ToLower(rt.method) + " " + rt.path
		inRouter[key] = true
		if _, ok := doc.Paths[rt.path][strings.ToLower(rt.method)]; !ok {
			t.Errorf("route %s %s is missing from openapi.json", rt.method, rt.path)
		}
	}
	for path, ops := range doc.Paths {
		for method := range ops {
			if method == "parameters" {
				continue
			}
			if !inRouter[method+" "+path] {
				t.Errorf("openapi.json documents %s %s, which the router does not serve", method, path)
			}
		}
	}
}

func TestConfigValidate(t *testing.T) {
	good := Config{
		ListenAddress: "127.0.0.1:0",
		TLS:           TLSConfig{CertFile: "c", KeyFile: "k", ClientRootCAs: []string{"ca"}},
		Peer:          PeerConfig{Address: "p:7051", TLSRootCert: "r"},
		Identities:    map[string]IdentityConfig{"user1": {MSPID: "Org1MSP", CertFile: "c", KeyStore: KeyStoreConfig{KeyFile: "k"}}},
		Tokens:        []TokenConfig{{SHA256: hashHex("t"), Identity: "user1"}},
		ClientCerts:   []ClientCertConfig{{SubjectCN: "app", Identity: "user1"}},
	}
	if err := good.Validate(); err != nil {
		t.Fatal(err)
	}
	bad := good
	bad.Tokens = []TokenConfig{{SHA256: "abc", Identity: "ghost"}}
	bad.ClientCerts = []ClientCertConfig{{Fingerprint: "zz", SubjectCN: "x", Identity: "user1"}}
	bad.Identities = map[string]IdentityConfig{"user1": {MSPID: "Org1MSP", CertFile: "c", KeyStore: KeyStoreConfig{Type: "vault"}}}
	err := bad.Validate()
	for _, want := range []string{"64 hex digits", `unknown identity "ghost"`, "exactly one of fingerprint and subjectCN", `unknown keyStore.type "vault"`} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("Validate = %v, want it to mention %q", err, want)
		}
	}
	if err := bad.Validate("vault"); err != nil && strings.Contains(err.Error(), "keyStore.type") {
		t.Errorf("a key store type supplied by the binary was refused: %v", err)
	}
}

func TestParseResume(t *testing.T) {
	for _, tc := range []struct {
		lastID, start string
		allowTx       bool
		want          resumePoint
		wantErr       bool
	}{
		{want: resumePoint{}},
		{start: "7", want: resumePoint{set: true, block: 7}},
		{lastID: "7", start: "2", want: resumePoint{set: true, block: 8}},
		{lastID: "7:abc", allowTx: true, want: resumePoint{set: true, block: 7, afterTx: "abc"}},
		{lastID: "7:abc", wantErr: true},
		{lastID: "7:", allowTx: true, wantErr: true},
		{lastID: "x", wantErr: true},
		{start: "-1", wantErr: true},
		{lastID: "18446744073709551615", wantErr: true},
	} {
		r := httptest.NewRequest(http.MethodGet, "/?start="+tc.start, nil)
		if tc.start == "" {
			r = httptest.NewRequest(http.MethodGet, "/", nil)
		}
		if tc.lastID != "" {
			r.Header.Set("Last-Event-ID", tc.lastID)
		}
		got, err := parseResume(r, tc.allowTx)
		if (err != nil) != tc.wantErr || (!tc.wantErr && got != tc.want) {
			t.Errorf("Last-Event-ID %q start %q: got %+v %v", tc.lastID, tc.start, got, err)
		}
	}
}

// TestExampleConfig decodes the example configuration strictly, as `cairn
// gateway start` does, so the documented fields stay the real ones.
func TestExampleConfig(t *testing.T) {
	f, err := os.Open("testdata/gateway.yaml")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	dec := yaml.NewDecoder(f)
	dec.KnownFields(true)
	var cfg Config
	if err := dec.Decode(&cfg); err != nil {
		t.Fatal(err)
	}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	cfg = cfg.withDefaults()
	if cfg.Timeouts.CommitStatus != time.Minute || cfg.Identities["reporting"].KeyStore.Type != KeyStoreFile ||
		len(cfg.Identities["reporting"].Access.Chaincodes) != 1 || cfg.Timeouts.Shutdown != 10*time.Second {
		t.Fatalf("decoded %+v", cfg)
	}
}
