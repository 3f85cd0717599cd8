package bench

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"strings"
	"testing"
	"time"

	"github.com/hyperledger/fabric-protos-go-apiv2/ledger/rwset"
	"github.com/hyperledger/fabric-protos-go-apiv2/ledger/rwset/kvrwset"
	pb "github.com/hyperledger/fabric-protos-go-apiv2/peer"
	"google.golang.org/protobuf/proto"

	"github.com/cairn-ledger/cairn/internal/crypto"
	"github.com/cairn-ledger/cairn/internal/envelope"
)

func testIdentity(t *testing.T, mspID, cn string) *crypto.SigningIdentity {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: cn},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	return &crypto.SigningIdentity{MSPID: mspID, CertPEM: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), Key: key}
}

func rwsetWriting(t *testing.T, ns string, keys ...string) []byte {
	t.Helper()
	kv := &kvrwset.KVRWSet{}
	for _, k := range keys {
		kv.Writes = append(kv.Writes, &kvrwset.KVWrite{Key: k, Value: []byte("v")})
	}
	raw, err := proto.Marshal(kv)
	if err != nil {
		t.Fatal(err)
	}
	txrw, err := proto.Marshal(&rwset.TxReadWriteSet{NsRwset: []*rwset.NsReadWriteSet{
		{Namespace: "_lifecycle"}, {Namespace: ns, Rwset: raw},
	}})
	if err != nil {
		t.Fatal(err)
	}
	return txrw
}

func TestCreateAssetArgs(t *testing.T) {
	a, b := createAssetArgs("bench-ab-", 1), createAssetArgs("bench-ab-", 2)
	if string(a[0]) != "CreateAsset" || len(a) != 6 {
		t.Fatalf("args %q", a)
	}
	if string(a[1]) != "bench-ab-1" || string(a[1]) == string(b[1]) {
		t.Fatalf("asset IDs %q and %q", a[1], b[1])
	}
}

func TestPutArgsAndDefaultFunction(t *testing.T) {
	if DefaultFunction("shimcheck") != FunctionPut || DefaultFunction("basic") != FunctionCreateAsset || DefaultFunction("other") != FunctionCreateAsset {
		t.Fatal("default functions: Put for shimcheck, CreateAsset otherwise")
	}
	client := testIdentity(t, "Org1MSP", "User1")
	r := &endorseRun{cfg: EndorseConfig{Channel: "mychannel", Chaincode: "shimcheck", Function: FunctionPut}, signer: client, creator: client.Serialize(), prefix: "p-"}
	a, b := r.args(1), r.args(2)
	if len(a) != 3 || string(a[0]) != "Put" || string(a[1]) != "p-1" || string(a[2]) != putValue || string(b[1]) != "p-2" {
		t.Fatalf("Put args %q, %q", a, b)
	}
	sp, err := r.sign(3)
	if err != nil {
		t.Fatal(err)
	}
	prop, err := envelope.UnpackProposal(sp)
	if err != nil {
		t.Fatal(err)
	}
	if prop.ChaincodeName != "shimcheck" || string(prop.Input.Args[0]) != "Put" || string(prop.Input.Args[1]) != "p-3" {
		t.Fatalf("proposal invokes %s %q", prop.ChaincodeName, prop.Input.Args)
	}
}

func TestEndorsementChecker(t *testing.T) {
	client := testIdentity(t, "Org1MSP", "User1")
	peer := testIdentity(t, "Org1MSP", "peer0")
	r := &endorseRun{cfg: EndorseConfig{Channel: "mychannel", Chaincode: "basic"}, signer: client, creator: client.Serialize(), prefix: "p-"}
	sp, err := r.sign(7)
	if err != nil {
		t.Fatal(err)
	}
	prop, err := envelope.UnpackProposal(sp)
	if err != nil {
		t.Fatal(err)
	}
	if got := string(prop.Input.Args[1]); got != "p-7" {
		t.Fatalf("asset ID %q", got)
	}
	endorse := func(results []byte) *pb.ProposalResponse {
		resp, err := envelope.Endorse(prop, peer, &pb.Response{Status: 200}, results, nil, &pb.ChaincodeID{Name: "basic"})
		if err != nil {
			t.Fatal(err)
		}
		return resp
	}
	c := newEndorsementChecker("basic")
	good := endorse(rwsetWriting(t, "basic", "p-7"))
	if err := c.full(sp, good); err != nil {
		t.Fatalf("good endorsement: %v", err)
	}
	if err := checkStatus(good); err != nil {
		t.Fatal(err)
	}

	other, err := r.sign(8)
	if err != nil {
		t.Fatal(err)
	}
	forged := endorse(rwsetWriting(t, "basic", "p-7"))
	forged.Payload = append([]byte{}, good.Payload...)
	forged.Payload[len(forged.Payload)-1] ^= 1
	for _, tc := range []struct {
		name string
		sp   *pb.SignedProposal
		resp *pb.ProposalResponse
		want string
	}{
		{"other proposal", other, good, "another proposal"},
		{"tampered payload", sp, forged, "signature"},
		{"two writes", sp, endorse(rwsetWriting(t, "basic", "a", "b")), "writes 2 keys"},
		{"no write", sp, endorse(rwsetWriting(t, "other")), "writes 0 keys"},
		{"status 500", sp, &pb.ProposalResponse{Response: &pb.Response{Status: 500, Message: "boom"}}, "status 500: boom"},
		{"no endorsement", sp, &pb.ProposalResponse{Response: &pb.Response{Status: 200}}, "without an endorsement"},
	} {
		err := c.full(tc.sp, tc.resp)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: error %v, want %q", tc.name, err, tc.want)
		}
	}
}

func TestMergeStatsAndCPUPerRole(t *testing.T) {
	lats, perSecond, n := mergeStats([]clientStats{
		{lats: []float64{3, 1}, perSecond: []int64{1, 1}, inWindow: 2},
		{lats: []float64{2}, perSecond: []int64{0, 0, 1}, inWindow: 1},
	}, 3)
	if n != 3 || len(lats) != 3 || lats[0] != 1 || lats[2] != 3 || perSecond[0] != 1 || perSecond[1] != 1 || perSecond[2] != 1 {
		t.Fatalf("merged %v %v %d", lats, perSecond, n)
	}
	procs := []Process{{Role: "peer", PID: 10}, {Role: "chaincode", PID: 11}, {Role: "chaincode", PID: 12}}
	before := []time.Duration{time.Second, 0, 0, 0}
	after := []time.Duration{2 * time.Second, 4 * time.Second, time.Second, time.Second}
	byRole, total := cpuPerRole(procs, before, after, 1000)
	if total != 7*time.Second {
		t.Fatalf("total %v", total)
	}
	if byRole["bench"] != 1000 || byRole["peer"] != 4000 || byRole["chaincode"] != 2000 {
		t.Fatalf("by role %v", byRole)
	}
	if _, ok := cpuByProcess(nil); !ok {
		t.Log("no /proc: CPU is not measured here")
	}
}
