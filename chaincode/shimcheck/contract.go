// Package shimcheck is a test chaincode that exercises every call of the
// Fabric Go shim (fabric-chaincode-go/v2 v2.3.0) through functions a client
// can invoke, so a peer's side of the chaincode protocol can be checked end
// to end: state reads and writes, write batches and multi-key reads, range
// and composite-key queries with pagination, key history, state metadata
// (key-level endorsement policies), chaincode-to-chaincode calls, events, the
// proposal's creator, transient data, decorations, binding, timestamp and
// signed proposal, and the calls a LevelDB peer without private data refuses.
//
// It is written on the plain shim (shim.Chaincode) rather than the contract
// API so each function maps to exactly the shim calls it names, with no
// hidden metadata or argument decoding. Arguments and results are strings;
// results are documented on each function in Chaincode.Invoke.
//
// The same chaincode runs in both of Fabric's connection modes: Serve dials
// the peer (chaincode as client, as a peer-launched process) and ServeCCaaS
// listens for the peer (chaincode as an external service); Run picks one from
// the environment as Fabric's builders and ccaas samples set it up.
//
// # Concurrency
//
// Chaincode is stateless: the shim runs many transactions at once and each
// touches only its own stub. Serve and ServeCCaaS return only after the
// connection or server they own has stopped.
package shimcheck

import (
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/hyperledger/fabric-chaincode-go/v2/shim"
	"github.com/hyperledger/fabric-protos-go-apiv2/peer"
	"google.golang.org/protobuf/proto"
)

// Chaincode is the shimcheck chaincode.
type Chaincode struct{}

var _ shim.Chaincode = Chaincode{}

// Init answers "init ok"; it touches no state.
func (Chaincode) Init(shim.ChaincodeStubInterface) *peer.Response {
	return shim.Success([]byte("init ok"))
}

// Invoke dispatches on the first argument; see the functions table below.
func (Chaincode) Invoke(stub shim.ChaincodeStubInterface) *peer.Response {
	fn, params := stub.GetFunctionAndParameters()
	f, ok := functions[fn]
	if !ok {
		return shim.Error(fmt.Sprintf("unknown function %q", fn))
	}
	if len(params) < f.minArgs {
		return shim.Error(fmt.Sprintf("%s needs at least %d arguments: %s", fn, f.minArgs, f.usage))
	}
	if fn == "Invoke" {
		// The callee's status is worth keeping, so Invoke builds its own Response.
		return invoke(stub, params)
	}
	out, err := f.run(stub, params)
	if err != nil {
		return shim.Error(err.Error())
	}
	return shim.Success(out)
}

type function struct {
	minArgs int
	usage   string
	run     func(stub shim.ChaincodeStubInterface, args []string) ([]byte, error)
}

// Separator joins the parts of a result (keys, counts, bookmarks).
const Separator = "|"

// functions is the chaincode's whole API. Results are strings; lists are
// joined with "," and the parts of a result with Separator.
var functions = map[string]function{
	// PutGet writes value under key and returns the key's committed value:
	// a transaction does not read its own writes.
	"PutGet": {2, "key value", func(stub shim.ChaincodeStubInterface, a []string) ([]byte, error) {
		if err := stub.PutState(a[0], []byte(a[1])); err != nil {
			return nil, err
		}
		return stub.GetState(a[0])
	}},
	// Put writes value under key: one PUT_STATE and nothing else, the
	// "contract writing one key" of the endorsement benchmark
	// (`cairn bench endorse --chaincode shimcheck`).
	"Put": {2, "key value", func(stub shim.ChaincodeStubInterface, a []string) ([]byte, error) {
		return nil, stub.PutState(a[0], []byte(a[1]))
	}},
	// Get returns key's committed value (empty when absent).
	"Get": {1, "key", func(stub shim.ChaincodeStubInterface, a []string) ([]byte, error) {
		return stub.GetState(a[0])
	}},
	// Delete deletes every key given.
	"Delete": {1, "key...", func(stub shim.ChaincodeStubInterface, a []string) ([]byte, error) {
		for _, k := range a {
			if err := stub.DelState(k); err != nil {
				return nil, err
			}
		}
		return nil, nil
	}},
	// Batch writes n keys prefix0000…, value "v<i>", buffered in a write
	// batch (WRITE_BATCH_STATE) when the peer offers batching; returns n.
	"Batch": {2, "prefix n", func(stub shim.ChaincodeStubInterface, a []string) ([]byte, error) {
		n, err := strconv.Atoi(a[1])
		if err != nil || n < 0 {
			return nil, fmt.Errorf("bad count %q", a[1])
		}
		stub.StartWriteBatch()
		for i := range n {
			if err := stub.PutState(fmt.Sprintf("%s%04d", a[0], i), []byte("v"+strconv.Itoa(i))); err != nil {
				return nil, err
			}
		}
		if err := stub.FinishWriteBatch(); err != nil {
			return nil, err
		}
		return []byte(strconv.Itoa(n)), nil
	}},
	// GetMultiple reads the keys in one GetMultipleStates call
	// (GET_STATE_MULTIPLE when the peer offers it); values joined by ",".
	"GetMultiple": {1, "key...", func(stub shim.ChaincodeStubInterface, a []string) ([]byte, error) {
		vals, err := stub.GetMultipleStates(a...)
		if err != nil {
			return nil, err
		}
		out := make([]string, len(vals))
		for i, v := range vals {
			out[i] = string(v)
		}
		return []byte(strings.Join(out, ",")), nil
	}},
	// Range returns the keys of [start, end), joined by ",".
	"Range": {2, "start end", func(stub shim.ChaincodeStubInterface, a []string) ([]byte, error) {
		it, err := stub.GetStateByRange(a[0], a[1])
		if err != nil {
			return nil, err
		}
		keys, err := drainKeys(it)
		return []byte(keys), err
	}},
	// RangePaged returns one page of [start, end): keys|fetched count|bookmark.
	"RangePaged": {4, "start end pageSize bookmark", func(stub shim.ChaincodeStubInterface, a []string) ([]byte, error) {
		size, err := strconv.ParseInt(a[2], 10, 32)
		if err != nil {
			return nil, fmt.Errorf("bad page size %q", a[2])
		}
		it, md, err := stub.GetStateByRangeWithPagination(a[0], a[1], int32(size), a[3])
		if err != nil {
			return nil, err
		}
		keys, err := drainKeys(it)
		return page(keys, md, err)
	}},
	// CompositePut writes value under the composite key (objectType, attrs...).
	"CompositePut": {3, "objectType value attr...", func(stub shim.ChaincodeStubInterface, a []string) ([]byte, error) {
		key, err := stub.CreateCompositeKey(a[0], a[2:])
		if err != nil {
			return nil, err
		}
		return nil, stub.PutState(key, []byte(a[1]))
	}},
	// Composite lists the composite keys under the partial key (objectType,
	// attrs...) as attr/attr=value, joined by ",".
	"Composite": {1, "objectType attr...", func(stub shim.ChaincodeStubInterface, a []string) ([]byte, error) {
		it, err := stub.GetStateByPartialCompositeKey(a[0], a[1:])
		if err != nil {
			return nil, err
		}
		out, err := drainComposite(stub, it)
		return []byte(out), err
	}},
	// CompositePaged is Composite one page at a time: entries|fetched|bookmark.
	"CompositePaged": {3, "objectType pageSize bookmark attr...", func(stub shim.ChaincodeStubInterface, a []string) ([]byte, error) {
		size, err := strconv.ParseInt(a[1], 10, 32)
		if err != nil {
			return nil, fmt.Errorf("bad page size %q", a[1])
		}
		it, md, err := stub.GetStateByPartialCompositeKeyWithPagination(a[0], a[3:], int32(size), a[2])
		if err != nil {
			return nil, err
		}
		out, err := drainComposite(stub, it)
		return page(out, md, err)
	}},
	// History lists key's modifications, newest first, as txid:value:deleted.
	"History": {1, "key", func(stub shim.ChaincodeStubInterface, a []string) ([]byte, error) {
		it, err := stub.GetHistoryForKey(a[0])
		if err != nil {
			return nil, err
		}
		defer it.Close()
		var out []string
		for it.HasNext() {
			km, err := it.Next()
			if err != nil {
				return nil, err
			}
			out = append(out, fmt.Sprintf("%s:%s:%t", km.GetTxId(), km.GetValue(), km.GetIsDelete()))
		}
		return []byte(strings.Join(out, ",")), nil
	}},
	// Metadata sets key's validation parameter (key-level endorsement
	// policy) and returns the committed one.
	"Metadata": {2, "key policy", func(stub shim.ChaincodeStubInterface, a []string) ([]byte, error) {
		if err := stub.SetStateValidationParameter(a[0], []byte(a[1])); err != nil {
			return nil, err
		}
		return stub.GetStateValidationParameter(a[0])
	}},
	// Invoke calls function args... of chaincode on channel ("" for this
	// channel) and returns the callee's payload, or fails with its message.
	"Invoke": {3, "chaincode channel function arg...", nil},
	// Private runs one private data call, which a peer without private data
	// support refuses: get, hash, range, put, del, purge or metadata.
	"Private": {1, "get|hash|range|put|del|purge|metadata", private},
	// Query runs a rich query, which a LevelDB peer refuses; "paged" as a
	// second argument uses the paginated variant.
	"Query": {1, "query [paged]", func(stub shim.ChaincodeStubInterface, a []string) ([]byte, error) {
		var (
			it  shim.StateQueryIteratorInterface
			err error
		)
		if len(a) > 1 && a[1] == "paged" {
			it, _, err = stub.GetQueryResultWithPagination(a[0], 10, "")
		} else {
			it, err = stub.GetQueryResult(a[0])
		}
		if err != nil {
			return nil, err
		}
		keys, err := drainKeys(it)
		return []byte(keys), err
	}},
	// Transient returns the transient value under key.
	"Transient": {1, "key", func(stub shim.ChaincodeStubInterface, a []string) ([]byte, error) {
		tm, err := stub.GetTransient()
		if err != nil {
			return nil, err
		}
		v, ok := tm[a[0]]
		if !ok {
			return nil, fmt.Errorf("no transient value %q", a[0])
		}
		return v, nil
	}},
	// Decoration returns the proposal decoration under key.
	"Decoration": {1, "key", func(stub shim.ChaincodeStubInterface, a []string) ([]byte, error) {
		v, ok := stub.GetDecorations()[a[0]]
		if !ok {
			return nil, fmt.Errorf("no decoration %q", a[0])
		}
		return v, nil
	}},
	// Creator returns the proposal creator (a marshalled msp.SerializedIdentity).
	"Creator": {0, "", func(stub shim.ChaincodeStubInterface, _ []string) ([]byte, error) {
		return stub.GetCreator()
	}},
	// Timestamp returns the proposal's timestamp, RFC 3339 in UTC.
	"Timestamp": {0, "", func(stub shim.ChaincodeStubInterface, _ []string) ([]byte, error) {
		ts, err := stub.GetTxTimestamp()
		if err != nil {
			return nil, err
		}
		return []byte(ts.AsTime().UTC().Format(time.RFC3339Nano)), nil
	}},
	// Binding returns the proposal binding, hex.
	"Binding": {0, "", func(stub shim.ChaincodeStubInterface, _ []string) ([]byte, error) {
		b, err := stub.GetBinding()
		if err != nil {
			return nil, err
		}
		return []byte(hex.EncodeToString(b)), nil
	}},
	// SignedProposal returns the marshalled peer.SignedProposal.
	"SignedProposal": {0, "", func(stub shim.ChaincodeStubInterface, _ []string) ([]byte, error) {
		sp, err := stub.GetSignedProposal()
		if err != nil {
			return nil, err
		}
		return proto.Marshal(sp)
	}},
	// Context returns channel|txid as the chaincode sees them.
	"Context": {0, "", func(stub shim.ChaincodeStubInterface, _ []string) ([]byte, error) {
		return []byte(stub.GetChannelID() + Separator + stub.GetTxID()), nil
	}},
	// Event sets the transaction's chaincode event.
	"Event": {2, "name payload", func(stub shim.ChaincodeStubInterface, a []string) ([]byte, error) {
		return nil, stub.SetEvent(a[0], []byte(a[1]))
	}},
	// Sleep waits ms milliseconds before answering, to test timeouts.
	"Sleep": {1, "ms", func(_ shim.ChaincodeStubInterface, a []string) ([]byte, error) {
		ms, err := strconv.Atoi(a[0])
		if err != nil || ms < 0 {
			return nil, fmt.Errorf("bad duration %q", a[0])
		}
		time.Sleep(time.Duration(ms) * time.Millisecond)
		return []byte("slept"), nil
	}},
	// Fail returns an error response with message.
	"Fail": {1, "message", func(_ shim.ChaincodeStubInterface, a []string) ([]byte, error) {
		return nil, errors.New(a[0])
	}},
}

func invoke(stub shim.ChaincodeStubInterface, a []string) *peer.Response {
	args := make([][]byte, 0, len(a)-2)
	for _, s := range a[2:] {
		args = append(args, []byte(s))
	}
	resp := stub.InvokeChaincode(a[0], args, a[1])
	if resp.GetStatus() >= shim.ERRORTHRESHOLD {
		msg := resp.GetMessage()
		if msg == "" {
			// The shim puts the peer's refusal of the call in the payload.
			msg = string(resp.GetPayload())
		}
		return shim.Error(fmt.Sprintf("invoke %s: status %d: %s", a[0], resp.GetStatus(), msg))
	}
	return shim.Success(resp.GetPayload())
}

// private makes one private data call; put, del, purge and metadata go
// through the write batch, so the peer's refusal ends the transaction.
func private(stub shim.ChaincodeStubInterface, a []string) ([]byte, error) {
	const coll, key = "collection1", "k"
	switch a[0] {
	case "get":
		return stub.GetPrivateData(coll, key)
	case "hash":
		return stub.GetPrivateDataHash(coll, key)
	case "range":
		it, err := stub.GetPrivateDataByRange(coll, "", "")
		if err != nil {
			return nil, err
		}
		keys, err := drainKeys(it)
		return []byte(keys), err
	case "put":
		return nil, stub.PutPrivateData(coll, key, []byte("v"))
	case "del":
		return nil, stub.DelPrivateData(coll, key)
	case "purge":
		return nil, stub.PurgePrivateData(coll, key)
	case "metadata":
		return stub.GetPrivateDataValidationParameter(coll, key)
	}
	return nil, fmt.Errorf("unknown private data call %q", a[0])
}

func drainKeys(it shim.StateQueryIteratorInterface) (string, error) {
	defer it.Close()
	var keys []string
	for it.HasNext() {
		kv, err := it.Next()
		if err != nil {
			return "", err
		}
		keys = append(keys, kv.GetKey())
	}
	return strings.Join(keys, ","), nil
}

func drainComposite(stub shim.ChaincodeStubInterface, it shim.StateQueryIteratorInterface) (string, error) {
	defer it.Close()
	var out []string
	for it.HasNext() {
		kv, err := it.Next()
		if err != nil {
			return "", err
		}
		_, attrs, err := stub.SplitCompositeKey(kv.GetKey())
		if err != nil {
			return "", err
		}
		out = append(out, strings.Join(attrs, "/")+"="+string(kv.GetValue()))
	}
	return strings.Join(out, ","), nil
}

func page(list string, md *peer.QueryResponseMetadata, err error) ([]byte, error) {
	if err != nil {
		return nil, err
	}
	return []byte(strings.Join([]string{list, strconv.Itoa(int(md.GetFetchedRecordsCount())), md.GetBookmark()}, Separator)), nil
}
