package chaincode

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"math/big"
	"net"
	"runtime"
	"sort"
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
	"google.golang.org/protobuf/types/known/timestamppb"
)

// memSim is an in-memory TxSimulator over a shared world state. Writes are
// recorded in the write set and, as in Fabric, not visible to reads of the
// same transaction.
type memSim struct {
	world    map[string][]byte // ns/key -> value
	meta     map[string]map[string][]byte
	writes   map[string][]byte // key -> value; nil value = delete
	nsWrites map[string][]byte // nsKey(ns, key) -> value, for calls across namespaces
	metaSets map[string]map[string][]byte
	history  map[string][]*queryresult.KeyModification // only used via histSim
	failGet  error
}

func newMemSim(world map[string][]byte) *memSim {
	return &memSim{world: world, meta: map[string]map[string][]byte{}, writes: map[string][]byte{}, nsWrites: map[string][]byte{}, metaSets: map[string]map[string][]byte{}}
}

func nsKey(ns, key string) string { return ns + "\x00" + key }

func (m *memSim) GetState(ns, key string) ([]byte, error) {
	if m.failGet != nil {
		return nil, m.failGet
	}
	return m.world[nsKey(ns, key)], nil
}

func (m *memSim) GetStateMultipleKeys(ns string, keys []string) ([][]byte, error) {
	out := make([][]byte, len(keys))
	for i, k := range keys {
		out[i] = m.world[nsKey(ns, k)]
	}
	return out, nil
}

func (m *memSim) SetState(ns, key string, value []byte) error {
	if key == "" {
		return errors.New("empty key")
	}
	if value == nil {
		value = []byte{}
	}
	m.writes[key] = value
	m.nsWrites[nsKey(ns, key)] = value
	return nil
}

func (m *memSim) DeleteState(ns, key string) error {
	m.writes[key] = nil
	m.nsWrites[nsKey(ns, key)] = nil
	return nil
}

func (m *memSim) GetStateRangeScanIterator(ns, start, end string) (ResultsIterator, error) {
	prefix := ns + "\x00"
	var kvs []*queryresult.KV
	for k, v := range m.world {
		key, ok := strings.CutPrefix(k, prefix)
		if !ok || key < start || (end != "" && key >= end) {
			continue
		}
		kvs = append(kvs, &queryresult.KV{Namespace: ns, Key: key, Value: v})
	}
	sort.Slice(kvs, func(i, j int) bool { return kvs[i].Key < kvs[j].Key })
	return &sliceIter{kvs: kvs}, nil
}

func (m *memSim) GetStateMetadata(ns, key string) (map[string][]byte, error) {
	return m.meta[nsKey(ns, key)], nil
}

func (m *memSim) SetStateMetadata(ns, key string, md map[string][]byte) error {
	m.metaSets[key] = md
	return nil
}

// commit applies the write set to the world, as a committer would.
func (m *memSim) commit(ns string) {
	for k, v := range m.writes {
		if v == nil {
			delete(m.world, nsKey(ns, k))
		} else {
			m.world[nsKey(ns, k)] = v
		}
	}
}

type sliceIter struct {
	mu     sync.Mutex
	kvs    []*queryresult.KV
	closed bool
}

func (s *sliceIter) Next() (*queryresult.KV, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil, errors.New("iterator used after Close")
	}
	if len(s.kvs) == 0 {
		return nil, nil
	}
	kv := s.kvs[0]
	s.kvs = s.kvs[1:]
	return kv, nil
}

func (s *sliceIter) Close() { s.mu.Lock(); s.closed = true; s.mu.Unlock() }

// histSim adds HistoryQuerier.
type histSim struct{ *memSim }

func (h histSim) GetHistoryForKey(ns, key string) (HistoryIterator, error) {
	return &histIter{mods: h.history[key]}, nil
}

type histIter struct {
	mods []*queryresult.KeyModification
}

func (h *histIter) Next() (*queryresult.KeyModification, error) {
	if len(h.mods) == 0 {
		return nil, nil
	}
	m := h.mods[0]
	h.mods = h.mods[1:]
	return m, nil
}
func (h *histIter) Close() {}

// testPKI is an in-memory CA with a server and a client certificate.
type testPKI struct {
	caPEM                       []byte
	serverTLS                   *tls.Config
	clientCertPEM, clientKeyPEM []byte
	identityPEM                 []byte // an MSP-style signing identity certificate
}

func newTestPKI(t testing.TB) *testPKI {
	t.Helper()
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	caTmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "cairn test CA"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	caCert, err := x509.ParseCertificate(caDER)
	if err != nil {
		t.Fatal(err)
	}
	issue := func(serial int64, cn string, usage x509.ExtKeyUsage, ips []net.IP) (certPEM, keyPEM []byte) {
		key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		tmpl := &x509.Certificate{
			SerialNumber: big.NewInt(serial),
			Subject:      pkix.Name{CommonName: cn, OrganizationalUnit: []string{"client"}},
			NotBefore:    time.Now().Add(-time.Hour),
			NotAfter:     time.Now().Add(time.Hour),
			KeyUsage:     x509.KeyUsageDigitalSignature,
			ExtKeyUsage:  []x509.ExtKeyUsage{usage},
			IPAddresses:  ips,
		}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, caCert, &key.PublicKey, caKey)
		if err != nil {
			t.Fatal(err)
		}
		keyDER, err := x509.MarshalPKCS8PrivateKey(key)
		if err != nil {
			t.Fatal(err)
		}
		return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
			pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER})
	}
	p := &testPKI{caPEM: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER})}
	srvCert, srvKey := issue(2, "peer0", x509.ExtKeyUsageServerAuth, []net.IP{net.ParseIP("127.0.0.1")})
	p.clientCertPEM, p.clientKeyPEM = issue(3, "basic-chaincode", x509.ExtKeyUsageClientAuth, nil)
	p.identityPEM, _ = issue(4, "User1@org1.example.com", x509.ExtKeyUsageClientAuth, nil)

	pair, err := tls.X509KeyPair(srvCert, srvKey)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(caCert)
	p.serverTLS = &tls.Config{
		MinVersion:   tls.VersionTLS12,
		Certificates: []tls.Certificate{pair},
		ClientCAs:    pool,
		ClientAuth:   tls.RequireAndVerifyClientCert,
	}
	return p
}

func (p *testPKI) clientTLS(t testing.TB) *tls.Config {
	t.Helper()
	pair, err := tls.X509KeyPair(p.clientCertPEM, p.clientKeyPEM)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(p.caPEM)
	return &tls.Config{MinVersion: tls.VersionTLS12, Certificates: []tls.Certificate{pair}, RootCAs: pool}
}

// startServer serves s over mutual TLS on 127.0.0.1:0 until the test ends.
func startServer(t testing.TB, s *Support, pki *testPKI, opts ...grpc.ServerOption) string {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer(append([]grpc.ServerOption{grpc.Creds(credentials.NewTLS(pki.serverTLS))}, opts...)...)
	peer.RegisterChaincodeSupportServer(srv, s)
	served := make(chan struct{})
	go func() {
		defer close(served)
		_ = srv.Serve(lis)
	}()
	t.Cleanup(func() {
		s.Close()
		srv.Stop()
		<-served
	})
	return lis.Addr().String()
}

// signedProposal builds a proposal as a Fabric client would, so the shim can
// extract creator, transient data, binding and timestamp.
func signedProposal(t testing.TB, channelID, txID string, creatorPEM []byte, input *peer.ChaincodeInput, transient map[string][]byte) *peer.SignedProposal {
	t.Helper()
	must := func(m proto.Message) []byte {
		b, err := proto.Marshal(m)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	chdr := &common.ChannelHeader{
		Type:      int32(common.HeaderType_ENDORSER_TRANSACTION),
		ChannelId: channelID,
		TxId:      txID,
		Timestamp: timestamppb.New(time.Unix(1700000000, 0)),
		Epoch:     0,
	}
	shdr := &common.SignatureHeader{
		Creator: must(&msp.SerializedIdentity{Mspid: "Org1MSP", IdBytes: creatorPEM}),
		Nonce:   []byte("nonce-" + txID),
	}
	hdr := &common.Header{ChannelHeader: must(chdr), SignatureHeader: must(shdr)}
	payload := &peer.ChaincodeProposalPayload{
		Input:        must(&peer.ChaincodeInvocationSpec{ChaincodeSpec: &peer.ChaincodeSpec{Input: input}}),
		TransientMap: transient,
	}
	prop := &peer.Proposal{Header: must(hdr), Payload: must(payload)}
	return &peer.SignedProposal{ProposalBytes: must(prop), Signature: []byte("not checked here")}
}

func args(ss ...string) *peer.ChaincodeInput {
	in := &peer.ChaincodeInput{}
	for _, s := range ss {
		in.Args = append(in.Args, []byte(s))
	}
	return in
}

// checkNoLeaks fails if goroutines started during the test outlive it.
// Goroutines of the shim's own async sender are not counted: when a stream
// ends, fabric-chaincode-go v2.3.0's serialSendAsync can stay blocked sending
// an error nobody reads — the chaincode side's leak, not the peer's.
func checkNoLeaks(t *testing.T) {
	t.Helper()
	before := ourGoroutines()
	t.Cleanup(func() {
		deadline := time.Now().Add(5 * time.Second)
		for {
			n := ourGoroutines()
			if n <= before {
				return
			}
			if time.Now().After(deadline) {
				buf := make([]byte, 1<<20)
				buf = buf[:runtime.Stack(buf, true)]
				t.Errorf("%d goroutines before, %d after:\n%s", before, n, buf)
				return
			}
			time.Sleep(20 * time.Millisecond)
		}
	})
}

// ourGoroutines counts live goroutines, leaving out the shim's known leak.
func ourGoroutines() int {
	buf := make([]byte, 1<<20)
	for {
		n := runtime.Stack(buf, true)
		if n < len(buf) {
			buf = buf[:n]
			break
		}
		buf = make([]byte, 2*len(buf))
	}
	count := 0
	for _, g := range strings.Split(string(buf), "\n\n") {
		if strings.TrimSpace(g) == "" || strings.Contains(g, "shim.(*Handler).serialSendAsync") {
			continue
		}
		count++
	}
	return count
}
