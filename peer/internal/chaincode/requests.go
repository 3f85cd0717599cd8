package chaincode

import (
	"errors"
	"fmt"
	"sort"
	"strconv"

	"github.com/hyperledger/fabric-protos-go-apiv2/ledger/queryresult"
	"github.com/hyperledger/fabric-protos-go-apiv2/peer"
	"google.golang.org/protobuf/proto"
)

// requestFunc answers one request of a transaction, returning the RESPONSE
// payload. It runs with tx.mu held.
type requestFunc func(s *Support, tx *txContext, payload []byte) ([]byte, error)

var (
	errPrivateData = errors.New("private data is not supported yet")
	// Exactly Fabric's LevelDB message, which clients may match on.
	errRichQuery = errors.New("ExecuteQuery not supported for leveldb")
	errHistory   = errors.New("GetHistoryForKey is not supported yet: the peer's history database is not available")
)

// maxOpenQueries bounds the iterators one transaction may hold open.
const maxOpenQueries = 1000

func requestHandler(t peer.ChaincodeMessage_Type) (requestFunc, bool) {
	switch t {
	case peer.ChaincodeMessage_GET_STATE:
		return getState, true
	case peer.ChaincodeMessage_GET_STATE_MULTIPLE:
		return getStateMultiple, true
	case peer.ChaincodeMessage_PUT_STATE:
		return putState, true
	case peer.ChaincodeMessage_DEL_STATE:
		return delState, true
	case peer.ChaincodeMessage_WRITE_BATCH_STATE:
		return writeBatch, true
	case peer.ChaincodeMessage_GET_STATE_METADATA:
		return getStateMetadata, true
	case peer.ChaincodeMessage_PUT_STATE_METADATA:
		return putStateMetadata, true
	case peer.ChaincodeMessage_GET_STATE_BY_RANGE:
		return getStateByRange, true
	case peer.ChaincodeMessage_QUERY_STATE_NEXT:
		return queryStateNext, true
	case peer.ChaincodeMessage_QUERY_STATE_CLOSE:
		return queryStateClose, true
	case peer.ChaincodeMessage_GET_QUERY_RESULT:
		return getQueryResult, true
	case peer.ChaincodeMessage_GET_HISTORY_FOR_KEY:
		return getHistoryForKey, true
	case peer.ChaincodeMessage_GET_PRIVATE_DATA_HASH, peer.ChaincodeMessage_PURGE_PRIVATE_DATA:
		return func(*Support, *txContext, []byte) ([]byte, error) { return nil, errPrivateData }, true
	case peer.ChaincodeMessage_INVOKE_CHAINCODE:
		return invokeChaincode, true
	default:
		return nil, false
	}
}

func decode(payload []byte, m proto.Message) error {
	if err := proto.Unmarshal(payload, m); err != nil {
		return fmt.Errorf("decode %s: %w", m.ProtoReflect().Descriptor().Name(), err)
	}
	return nil
}

func publicOnly(collection string) error {
	if collection != "" {
		return fmt.Errorf("collection %q: %w", collection, errPrivateData)
	}
	return nil
}

func getState(_ *Support, tx *txContext, payload []byte) ([]byte, error) {
	req := &peer.GetState{}
	if err := decode(payload, req); err != nil {
		return nil, err
	}
	if err := publicOnly(req.GetCollection()); err != nil {
		return nil, err
	}
	return tx.sim.GetState(tx.namespace, req.GetKey())
}

func getStateMultiple(s *Support, tx *txContext, payload []byte) ([]byte, error) {
	req := &peer.GetStateMultiple{}
	if err := decode(payload, req); err != nil {
		return nil, err
	}
	if err := publicOnly(req.GetCollection()); err != nil {
		return nil, err
	}
	if n := len(req.GetKeys()); n > int(s.cfg.MaxGetMultipleKeys) {
		return nil, fmt.Errorf("%d keys requested, more than the advertised maximum %d", n, s.cfg.MaxGetMultipleKeys)
	}
	values, err := tx.sim.GetStateMultipleKeys(tx.namespace, req.GetKeys())
	if err != nil {
		return nil, err
	}
	if len(values) != len(req.GetKeys()) {
		return nil, fmt.Errorf("ledger returned %d values for %d keys", len(values), len(req.GetKeys()))
	}
	return proto.Marshal(&peer.GetStateMultipleResult{Values: values})
}

func putState(_ *Support, tx *txContext, payload []byte) ([]byte, error) {
	req := &peer.PutState{}
	if err := decode(payload, req); err != nil {
		return nil, err
	}
	if err := publicOnly(req.GetCollection()); err != nil {
		return nil, err
	}
	return nil, tx.sim.SetState(tx.namespace, req.GetKey(), req.GetValue())
}

func delState(_ *Support, tx *txContext, payload []byte) ([]byte, error) {
	req := &peer.DelState{}
	if err := decode(payload, req); err != nil {
		return nil, err
	}
	if err := publicOnly(req.GetCollection()); err != nil {
		return nil, err
	}
	return nil, tx.sim.DeleteState(tx.namespace, req.GetKey())
}

func writeBatch(s *Support, tx *txContext, payload []byte) ([]byte, error) {
	req := &peer.WriteBatchState{}
	if err := decode(payload, req); err != nil {
		return nil, err
	}
	if n := len(req.GetRec()); n > int(s.cfg.MaxWriteBatch) {
		return nil, fmt.Errorf("batch of %d writes is larger than the advertised maximum %d", n, s.cfg.MaxWriteBatch)
	}
	// Check every record first so a bad one does not leave the batch half applied.
	for i, rec := range req.GetRec() {
		if err := publicOnly(rec.GetCollection()); err != nil {
			return nil, fmt.Errorf("record %d: %w", i, err)
		}
		switch rec.GetType() {
		case peer.WriteRecord_PUT_STATE, peer.WriteRecord_DEL_STATE:
		case peer.WriteRecord_PUT_STATE_METADATA:
			if rec.GetMetadata() == nil {
				return nil, fmt.Errorf("record %d: PUT_STATE_METADATA without metadata", i)
			}
		case peer.WriteRecord_PURGE_PRIVATE_DATA:
			return nil, fmt.Errorf("record %d: %w", i, errPrivateData)
		default:
			return nil, fmt.Errorf("record %d: unknown write type %s", i, rec.GetType())
		}
	}
	for i, rec := range req.GetRec() {
		var err error
		switch rec.GetType() {
		case peer.WriteRecord_PUT_STATE:
			err = tx.sim.SetState(tx.namespace, rec.GetKey(), rec.GetValue())
		case peer.WriteRecord_DEL_STATE:
			err = tx.sim.DeleteState(tx.namespace, rec.GetKey())
		case peer.WriteRecord_PUT_STATE_METADATA:
			err = tx.sim.SetStateMetadata(tx.namespace, rec.GetKey(), metadataEntry(rec.GetMetadata()))
		}
		if err != nil {
			return nil, fmt.Errorf("record %d (%s %q): %w", i, rec.GetType(), rec.GetKey(), err)
		}
	}
	return nil, nil
}

// metadataEntry mirrors Fabric: a metadata write carries one entry, and the
// simulator records exactly that map for the key.
func metadataEntry(md *peer.StateMetadata) map[string][]byte {
	return map[string][]byte{md.GetMetakey(): md.GetValue()}
}

func getStateMetadata(_ *Support, tx *txContext, payload []byte) ([]byte, error) {
	req := &peer.GetStateMetadata{}
	if err := decode(payload, req); err != nil {
		return nil, err
	}
	if err := publicOnly(req.GetCollection()); err != nil {
		return nil, err
	}
	md, err := tx.sim.GetStateMetadata(tx.namespace, req.GetKey())
	if err != nil {
		return nil, err
	}
	res := &peer.StateMetadataResult{}
	for k, v := range md {
		res.Entries = append(res.Entries, &peer.StateMetadata{Metakey: k, Value: v})
	}
	sort.Slice(res.Entries, func(i, j int) bool { return res.Entries[i].Metakey < res.Entries[j].Metakey })
	return proto.Marshal(res)
}

func putStateMetadata(_ *Support, tx *txContext, payload []byte) ([]byte, error) {
	req := &peer.PutStateMetadata{}
	if err := decode(payload, req); err != nil {
		return nil, err
	}
	if err := publicOnly(req.GetCollection()); err != nil {
		return nil, err
	}
	if req.GetMetadata() == nil {
		return nil, errors.New("no metadata entry given")
	}
	return nil, tx.sim.SetStateMetadata(tx.namespace, req.GetKey(), metadataEntry(req.GetMetadata()))
}

func getQueryResult(_ *Support, _ *txContext, payload []byte) ([]byte, error) {
	req := &peer.GetQueryResult{}
	if err := decode(payload, req); err != nil {
		return nil, err
	}
	if err := publicOnly(req.GetCollection()); err != nil {
		return nil, err
	}
	return nil, errRichQuery
}

func getHistoryForKey(s *Support, tx *txContext, payload []byte) ([]byte, error) {
	req := &peer.GetHistoryForKey{}
	if err := decode(payload, req); err != nil {
		return nil, err
	}
	hq, ok := tx.sim.(HistoryQuerier)
	if !ok {
		return nil, errHistory
	}
	it, err := hq.GetHistoryForKey(tx.namespace, req.GetKey())
	if err != nil {
		return nil, err
	}
	q := &query{
		next: func() (proto.Message, error) {
			km, err := it.Next()
			if km == nil || err != nil {
				return nil, err
			}
			return km, nil
		},
		close: it.Close,
		limit: s.cfg.TotalQueryLimit,
	}
	return openQuery(s, tx, q, false)
}

func getStateByRange(s *Support, tx *txContext, payload []byte) ([]byte, error) {
	req := &peer.GetStateByRange{}
	if err := decode(payload, req); err != nil {
		return nil, err
	}
	if err := publicOnly(req.GetCollection()); err != nil {
		return nil, err
	}
	var md *peer.QueryMetadata
	if req.GetMetadata() != nil {
		md = &peer.QueryMetadata{}
		if err := decode(req.GetMetadata(), md); err != nil {
			return nil, err
		}
	}
	// As in Fabric, metadata asks for pagination only if it sets a page
	// size or a bookmark; the bookmark is the first key of the next page.
	paginated := md != nil && (md.GetPageSize() != 0 || md.GetBookmark() != "")
	limit := s.cfg.TotalQueryLimit
	start := req.GetStartKey()
	if paginated {
		if md.GetPageSize() < 0 {
			return nil, fmt.Errorf("negative page size %d", md.GetPageSize())
		}
		if ps := int(md.GetPageSize()); ps > 0 && ps < limit {
			limit = ps
		}
		if md.GetBookmark() != "" {
			start = md.GetBookmark()
		}
	}
	it, err := tx.sim.GetStateRangeScanIterator(tx.namespace, start, req.GetEndKey())
	if err != nil {
		return nil, err
	}
	q := &query{
		next: func() (proto.Message, error) {
			kv, err := it.Next()
			if kv == nil || err != nil {
				return nil, err
			}
			return kv, nil
		},
		close: it.Close,
		limit: limit,
	}
	return openQuery(s, tx, q, paginated)
}

func queryStateNext(s *Support, tx *txContext, payload []byte) ([]byte, error) {
	req := &peer.QueryStateNext{}
	if err := decode(payload, req); err != nil {
		return nil, err
	}
	q, ok := tx.queries[req.GetId()]
	if !ok {
		return nil, fmt.Errorf("query iterator %q not found", req.GetId())
	}
	resp, err := q.batch(s.cfg.QueryBatchSize)
	if err != nil || !resp.HasMore {
		q.close()
		delete(tx.queries, req.GetId())
	}
	if err != nil {
		return nil, err
	}
	resp.Id = req.GetId()
	return proto.Marshal(resp)
}

func queryStateClose(_ *Support, tx *txContext, payload []byte) ([]byte, error) {
	req := &peer.QueryStateClose{}
	if err := decode(payload, req); err != nil {
		return nil, err
	}
	// Closing an unknown or exhausted iterator is not an error: the shim
	// closes iterators the peer may already have released.
	if q, ok := tx.queries[req.GetId()]; ok {
		q.close()
		delete(tx.queries, req.GetId())
	}
	return proto.Marshal(&peer.QueryResponse{HasMore: false, Id: req.GetId()})
}

// openQuery registers q with tx and returns its first response. A
// paginated query returns its whole page at once with a bookmark; other
// queries return QueryBatchSize results at a time while HasMore is set.
func openQuery(s *Support, tx *txContext, q *query, paginated bool) ([]byte, error) {
	if len(tx.queries) >= maxOpenQueries {
		q.close()
		return nil, fmt.Errorf("transaction has %d open query iterators; close some first", maxOpenQueries)
	}
	tx.queryN++
	id := strconv.Itoa(tx.queryN)
	var (
		resp *peer.QueryResponse
		err  error
	)
	if paginated {
		resp, err = q.page()
	} else {
		resp, err = q.batch(s.cfg.QueryBatchSize)
	}
	if err != nil {
		q.close()
		return nil, err
	}
	resp.Id = id
	if resp.HasMore {
		if tx.queries == nil {
			tx.queries = map[string]*query{}
		}
		tx.queries[id] = q
	} else {
		q.close()
	}
	return proto.Marshal(resp)
}

// query is an open iterator and how far it has got.
type query struct {
	next     func() (proto.Message, error) // nil message at the end
	close    func()
	limit    int // results to return in total
	returned int
	peeked   proto.Message
}

func (q *query) pull() (proto.Message, error) {
	if q.peeked != nil {
		m := q.peeked
		q.peeked = nil
		return m, nil
	}
	return q.next()
}

func (q *query) peek() (proto.Message, error) {
	if q.peeked == nil {
		m, err := q.next()
		if err != nil {
			return nil, err
		}
		q.peeked = m
	}
	return q.peeked, nil
}

// batch returns up to n further results; HasMore says whether more follow.
func (q *query) batch(n int) (*peer.QueryResponse, error) {
	resp := &peer.QueryResponse{}
	for len(resp.Results) < n && q.returned < q.limit {
		m, err := q.pull()
		if err != nil {
			return nil, fmt.Errorf("read query results: %w", err)
		}
		if m == nil {
			return resp, nil
		}
		if err := appendResult(resp, m); err != nil {
			return nil, err
		}
		q.returned++
	}
	if q.returned >= q.limit {
		return resp, nil
	}
	m, err := q.peek()
	if err != nil {
		return nil, fmt.Errorf("read query results: %w", err)
	}
	resp.HasMore = m != nil
	return resp, nil
}

// page returns the whole page with its QueryResponseMetadata.
func (q *query) page() (*peer.QueryResponse, error) {
	resp, err := q.batch(q.limit)
	if err != nil {
		return nil, err
	}
	bookmark := ""
	next, err := q.peek()
	if err != nil {
		return nil, fmt.Errorf("read query results: %w", err)
	}
	if kv, ok := next.(*queryresult.KV); ok {
		bookmark = kv.GetKey()
	}
	md, err := proto.Marshal(&peer.QueryResponseMetadata{
		FetchedRecordsCount: int32(len(resp.Results)),
		Bookmark:            bookmark,
	})
	if err != nil {
		return nil, fmt.Errorf("marshal query metadata: %w", err)
	}
	resp.Metadata = md
	resp.HasMore = false
	return resp, nil
}

func appendResult(resp *peer.QueryResponse, m proto.Message) error {
	b, err := proto.Marshal(m)
	if err != nil {
		return fmt.Errorf("marshal query result: %w", err)
	}
	resp.Results = append(resp.Results, &peer.QueryResultBytes{ResultBytes: b})
	return nil
}
