package basic

import (
	"encoding/json"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"testing"

	"github.com/hyperledger/fabric-chaincode-go/v2/shim"
	"github.com/hyperledger/fabric-contract-api-go/v2/contractapi"
	"github.com/hyperledger/fabric-protos-go-apiv2/ledger/queryresult"
)

// fakeStub implements the part of shim.ChaincodeStubInterface the contract
// uses. The embedded interface is nil: calling anything else panics, which
// tells the test author the contract grew a dependency.
type fakeStub struct {
	shim.ChaincodeStubInterface
	state map[string][]byte
	event *struct {
		name    string
		payload []byte
	}
	batching bool
	failGet  error
}

func newFakeStub() *fakeStub { return &fakeStub{state: map[string][]byte{}} }

func (f *fakeStub) GetState(key string) ([]byte, error) {
	if f.failGet != nil {
		return nil, f.failGet
	}
	return f.state[key], nil
}
func (f *fakeStub) PutState(key string, value []byte) error { f.state[key] = value; return nil }
func (f *fakeStub) DelState(key string) error               { delete(f.state, key); return nil }
func (f *fakeStub) StartWriteBatch()                        { f.batching = true }
func (f *fakeStub) SetEvent(name string, payload []byte) error {
	f.event = &struct {
		name    string
		payload []byte
	}{name, payload}
	return nil
}

func (f *fakeStub) GetStateByRange(start, end string) (shim.StateQueryIteratorInterface, error) {
	var keys []string
	for k := range f.state {
		if k >= start && (end == "" || k < end) {
			keys = append(keys, k)
		}
	}
	sort.Strings(keys)
	it := &fakeIter{}
	for _, k := range keys {
		it.kvs = append(it.kvs, &queryresult.KV{Key: k, Value: f.state[k]})
	}
	return it, nil
}

type fakeIter struct{ kvs []*queryresult.KV }

func (i *fakeIter) HasNext() bool { return len(i.kvs) > 0 }
func (i *fakeIter) Close() error  { return nil }
func (i *fakeIter) Next() (*queryresult.KV, error) {
	if len(i.kvs) == 0 {
		return nil, errors.New("no more results")
	}
	kv := i.kvs[0]
	i.kvs = i.kvs[1:]
	return kv, nil
}

func txCtx(stub *fakeStub) contractapi.TransactionContextInterface {
	ctx := &contractapi.TransactionContext{}
	ctx.SetStub(stub)
	return ctx
}

func mustJSON(t *testing.T, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func seed(t *testing.T, stub *fakeStub, assets ...Asset) {
	t.Helper()
	for _, a := range assets {
		stub.state[a.ID] = []byte(mustJSON(t, a))
	}
}

var asset1 = Asset{ID: "asset1", Color: "blue", Size: 5, Owner: "Tomoko", AppraisedValue: 300}

func TestWrites(t *testing.T) {
	sc := &SmartContract{}
	tests := []struct {
		name      string
		seed      []Asset
		run       func(ctx contractapi.TransactionContextInterface) (string, error)
		wantErr   string
		wantState map[string]*Asset // nil value: key must be absent
		wantEvent string
		wantEvPay any
		wantRet   string
	}{
		{
			name: "create",
			run: func(ctx contractapi.TransactionContextInterface) (string, error) {
				return "", sc.CreateAsset(ctx, "asset1", "blue", 5, "Tomoko", 300)
			},
			wantState: map[string]*Asset{"asset1": &asset1},
			wantEvent: "CreateAsset", wantEvPay: asset1,
		},
		{
			name: "create existing",
			seed: []Asset{asset1},
			run: func(ctx contractapi.TransactionContextInterface) (string, error) {
				return "", sc.CreateAsset(ctx, "asset1", "red", 1, "X", 1)
			},
			wantErr: "the asset asset1 already exists",
		},
		{
			name: "update",
			seed: []Asset{asset1},
			run: func(ctx contractapi.TransactionContextInterface) (string, error) {
				return "", sc.UpdateAsset(ctx, "asset1", "red", 6, "Brad", 350)
			},
			wantState: map[string]*Asset{"asset1": {ID: "asset1", Color: "red", Size: 6, Owner: "Brad", AppraisedValue: 350}},
			wantEvent: "UpdateAsset", wantEvPay: Asset{ID: "asset1", Color: "red", Size: 6, Owner: "Brad", AppraisedValue: 350},
		},
		{
			name: "update missing",
			run: func(ctx contractapi.TransactionContextInterface) (string, error) {
				return "", sc.UpdateAsset(ctx, "nope", "red", 6, "Brad", 350)
			},
			wantErr: "the asset nope does not exist",
		},
		{
			name: "delete",
			seed: []Asset{asset1},
			run: func(ctx contractapi.TransactionContextInterface) (string, error) {
				return "", sc.DeleteAsset(ctx, "asset1")
			},
			wantState: map[string]*Asset{"asset1": nil},
			wantEvent: "DeleteAsset", wantEvPay: asset1,
		},
		{
			name: "delete missing",
			run: func(ctx contractapi.TransactionContextInterface) (string, error) {
				return "", sc.DeleteAsset(ctx, "nope")
			},
			wantErr: "the asset nope does not exist",
		},
		{
			name: "transfer returns old owner",
			seed: []Asset{asset1},
			run: func(ctx contractapi.TransactionContextInterface) (string, error) {
				return sc.TransferAsset(ctx, "asset1", "Christopher")
			},
			wantRet:   "Tomoko",
			wantState: map[string]*Asset{"asset1": {ID: "asset1", Color: "blue", Size: 5, Owner: "Christopher", AppraisedValue: 300}},
			wantEvent: "TransferAsset", wantEvPay: Asset{ID: "asset1", Color: "blue", Size: 5, Owner: "Christopher", AppraisedValue: 300},
		},
		{
			name: "transfer missing",
			run: func(ctx contractapi.TransactionContextInterface) (string, error) {
				return sc.TransferAsset(ctx, "nope", "Christopher")
			},
			wantErr: "the asset nope does not exist",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			stub := newFakeStub()
			seed(t, stub, tt.seed...)
			ret, err := tt.run(txCtx(stub))
			if tt.wantErr != "" {
				if err == nil || err.Error() != tt.wantErr {
					t.Fatalf("err = %v, want %q", err, tt.wantErr)
				}
				if stub.event != nil {
					t.Errorf("failed transaction set event %q", stub.event.name)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if ret != tt.wantRet {
				t.Errorf("returned %q, want %q", ret, tt.wantRet)
			}
			for key, want := range tt.wantState {
				got, ok := stub.state[key]
				if want == nil {
					if ok {
						t.Errorf("key %s still present", key)
					}
					continue
				}
				if string(got) != mustJSON(t, want) {
					t.Errorf("state[%s] = %s, want %s", key, got, mustJSON(t, want))
				}
			}
			if stub.event == nil || stub.event.name != tt.wantEvent {
				t.Fatalf("event = %+v, want %s", stub.event, tt.wantEvent)
			}
			if string(stub.event.payload) != mustJSON(t, tt.wantEvPay) {
				t.Errorf("event payload = %s, want %s", stub.event.payload, mustJSON(t, tt.wantEvPay))
			}
		})
	}
}

func TestReads(t *testing.T) {
	sc := &SmartContract{}
	asset2 := Asset{ID: "asset2", Color: "red", Size: 5, Owner: "Brad", AppraisedValue: 400}
	stub := newFakeStub()
	seed(t, stub, asset2, asset1)
	ctx := txCtx(stub)

	got, err := sc.ReadAsset(ctx, "asset1")
	if err != nil || *got != asset1 {
		t.Fatalf("ReadAsset = %+v, %v", got, err)
	}
	if _, err := sc.ReadAsset(ctx, "asset9"); err == nil || err.Error() != "the asset asset9 does not exist" {
		t.Fatalf("ReadAsset missing: %v", err)
	}
	for id, want := range map[string]bool{"asset1": true, "asset9": false} {
		if ok, err := sc.AssetExists(ctx, id); err != nil || ok != want {
			t.Errorf("AssetExists(%s) = %v, %v", id, ok, err)
		}
	}
	all, err := sc.GetAllAssets(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(all) != 2 || *all[0] != asset1 || *all[1] != asset2 {
		t.Fatalf("GetAllAssets = %s", mustJSON(t, all))
	}
	if stub.event != nil {
		t.Errorf("read set an event")
	}

	stub.failGet = errors.New("disk on fire")
	if _, err := sc.ReadAsset(ctx, "asset1"); err == nil || !strings.Contains(err.Error(), "failed to read from world state: disk on fire") {
		t.Fatalf("ReadAsset with failing stub: %v", err)
	}
}

func TestInitLedger(t *testing.T) {
	stub := newFakeStub()
	if err := (&SmartContract{}).InitLedger(txCtx(stub)); err != nil {
		t.Fatal(err)
	}
	if !stub.batching {
		t.Error("InitLedger did not start a write batch")
	}
	if len(stub.state) != 6 {
		t.Fatalf("InitLedger wrote %d assets, want 6", len(stub.state))
	}
	var listed []Asset
	if err := json.Unmarshal(stub.event.payload, &listed); err != nil || stub.event.name != "InitLedger" || len(listed) != 6 {
		t.Fatalf("event %s %s: %v", stub.event.name, stub.event.payload, err)
	}
	for _, a := range listed {
		if string(stub.state[a.ID]) != mustJSON(t, a) {
			t.Errorf("state[%s] = %s, event says %s", a.ID, stub.state[a.ID], mustJSON(t, a))
		}
	}
}

type metadataStub struct{ shim.ChaincodeStubInterface }

func (metadataStub) GetFunctionAndParameters() (string, []string) {
	return "org.hyperledger.fabric:GetMetadata", nil
}

// GetCreator fails so the contract API's client-identity lookup (whose error
// it ignores) does not reach the nil embedded interface.
func (metadataStub) GetCreator() ([]byte, error) { return nil, errors.New("no creator") }

// TestContractSurface pins the transaction names applications call, read
// through the contract API's own metadata transaction.
func TestContractSurface(t *testing.T) {
	cc, err := NewChaincode()
	if err != nil {
		t.Fatal(err)
	}
	resp := cc.Invoke(metadataStub{})
	if resp.Status != shim.OK {
		t.Fatalf("GetMetadata: %d %s", resp.Status, resp.Message)
	}
	var md struct {
		Contracts map[string]struct {
			Transactions []struct {
				Name string `json:"name"`
			} `json:"transactions"`
		} `json:"contracts"`
	}
	if err := json.Unmarshal(resp.Payload, &md); err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, tx := range md.Contracts["SmartContract"].Transactions {
		got = append(got, tx.Name)
	}
	sort.Strings(got)
	want := []string{"AssetExists", "CreateAsset", "DeleteAsset", "GetAllAssets", "InitLedger", "ReadAsset", "TransferAsset", "UpdateAsset"}
	if !slices.Equal(got, want) {
		t.Fatalf("transactions = %v, want %v", got, want)
	}
}

func TestSourceEmbedsEveryFile(t *testing.T) {
	var onDisk []string
	err := filepath.WalkDir(".", func(path string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !d.IsDir() && strings.HasSuffix(path, ".go") && !strings.HasSuffix(path, "_test.go") {
			onDisk = append(onDisk, filepath.ToSlash(path))
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, path := range onDisk {
		disk, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		embedded, err := fs.ReadFile(Source(), path)
		if err != nil {
			t.Errorf("%s is not embedded in Source(): add it to the go:embed list", path)
			continue
		}
		if string(embedded) != string(disk) {
			t.Errorf("%s: embedded copy differs", path)
		}
	}
}
