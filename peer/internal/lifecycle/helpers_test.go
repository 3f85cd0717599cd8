package lifecycle

import (
	"context"
	"maps"
	"slices"
	"strings"
	"testing"

	"github.com/hyperledger/fabric-protos-go-apiv2/ledger/queryresult"
	pb "github.com/hyperledger/fabric-protos-go-apiv2/peer"
	lb "github.com/hyperledger/fabric-protos-go-apiv2/peer/lifecycle"
	"google.golang.org/protobuf/proto"

	"github.com/cairn-ledger/cairn/chaincode/ccpackage"
	"github.com/cairn-ledger/cairn/internal/policy"
)

// ledger is an in-memory channel state. Each invocation runs on a tx whose
// writes are applied only if the invocation succeeds, as a committed valid
// transaction would be.
type ledger struct {
	kv map[string][]byte // key = namespace + "\x00" + key
}

func newLedger() *ledger { return &ledger{kv: map[string][]byte{}} }

func lkey(ns, key string) string { return ns + "\x00" + key }

func (l *ledger) get(ns, key string) []byte { return l.kv[lkey(ns, key)] }

type tx struct {
	l      *ledger
	writes map[string][]byte
	order  []string
}

func (l *ledger) newTx() *tx { return &tx{l: l, writes: map[string][]byte{}} }

func (t *tx) GetState(ns, key string) ([]byte, error) { return t.l.kv[lkey(ns, key)], nil }

func (t *tx) SetState(ns, key string, value []byte) error {
	k := lkey(ns, key)
	if _, ok := t.writes[k]; !ok {
		t.order = append(t.order, k)
	}
	t.writes[k] = slices.Clone(value)
	return nil
}

func (t *tx) GetStateRangeScanIterator(ns, start, end string) (ResultsIterator, error) {
	var kvs []*queryresult.KV
	for _, k := range slices.Sorted(maps.Keys(t.l.kv)) {
		n, key, _ := strings.Cut(k, "\x00")
		if n == ns && key >= start && (end == "" || key < end) {
			kvs = append(kvs, &queryresult.KV{Namespace: ns, Key: key, Value: t.l.kv[k]})
		}
	}
	return &sliceIter{kvs: kvs}, nil
}

func (t *tx) commit() {
	for k, v := range t.writes {
		if v == nil {
			delete(t.l.kv, k)
		} else {
			t.l.kv[k] = v
		}
	}
}

type sliceIter struct{ kvs []*queryresult.KV }

func (it *sliceIter) Next() (*queryresult.KV, error) {
	if len(it.kvs) == 0 {
		return nil, nil
	}
	kv := it.kvs[0]
	it.kvs = it.kvs[1:]
	return kv, nil
}

func (it *sliceIter) Close() {}

func newSCC(t testing.TB, mspID string) *SCC {
	t.Helper()
	s, err := New(Config{PackageDir: t.TempDir(), MSPID: mspID})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func mustMarshal(t testing.TB, m proto.Message) []byte {
	t.Helper()
	b, err := proto.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// invokeAs runs fn on s as an admin of s's org, committing writes on success.
func invokeAs(t testing.TB, s *SCC, l *ledger, orgs []string, fn string, args proto.Message) *pb.Response {
	t.Helper()
	return invokeInv(t, s, l, Invocation{CreatorMSPID: s.mspID, CreatorIsAdmin: true, OrgMSPIDs: orgs}, fn, args)
}

func invokeInv(t testing.TB, s *SCC, l *ledger, inv Invocation, fn string, args proto.Message) *pb.Response {
	t.Helper()
	var state *tx
	if l != nil {
		state = l.newTx()
		inv.State = state
		inv.ChannelID = "mychannel"
	}
	inv.Args = [][]byte{[]byte(fn), mustMarshal(t, args)}
	resp := s.Invoke(context.Background(), inv)
	if resp.Status == statusOK && state != nil {
		state.commit()
	}
	return resp
}

func mustOK(t testing.TB, resp *pb.Response) {
	t.Helper()
	if resp.Status != statusOK {
		t.Fatalf("status %d: %s", resp.Status, resp.Message)
	}
}

func decode[M proto.Message](t testing.TB, resp *pb.Response, m M) M {
	t.Helper()
	mustOK(t, resp)
	if err := proto.Unmarshal(resp.Payload, m); err != nil {
		t.Fatal(err)
	}
	return m
}

func testPackage(t testing.TB, label string) []byte {
	t.Helper()
	pkg, err := ccpackage.CCaaS(label, ccpackage.Connection{Address: "basic.example.com:9999"})
	if err != nil {
		t.Fatal(err)
	}
	return pkg
}

func sigPolicy(t testing.TB, dsl string) []byte {
	t.Helper()
	spe, err := policy.ParseDSL(dsl)
	if err != nil {
		t.Fatal(err)
	}
	return mustMarshal(t, &pb.ApplicationPolicy{Type: &pb.ApplicationPolicy_SignaturePolicy{SignaturePolicy: spe}})
}

func approveArgs(name, version string, seq int64, packageID string) *lb.ApproveChaincodeDefinitionForMyOrgArgs {
	a := &lb.ApproveChaincodeDefinitionForMyOrgArgs{Name: name, Version: version, Sequence: seq}
	if packageID != "" {
		a.Source = &lb.ChaincodeSource{Type: &lb.ChaincodeSource_LocalPackage{LocalPackage: &lb.ChaincodeSource_Local{PackageId: packageID}}}
	} else {
		a.Source = &lb.ChaincodeSource{Type: &lb.ChaincodeSource_Unavailable_{Unavailable: &lb.ChaincodeSource_Unavailable{}}}
	}
	return a
}

func commitArgs(name, version string, seq int64) *lb.CommitChaincodeDefinitionArgs {
	return &lb.CommitChaincodeDefinitionArgs{Name: name, Version: version, Sequence: seq}
}
