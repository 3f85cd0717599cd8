package ledger

import (
	"errors"
	"fmt"
	"slices"
	"sync"
	"unicode/utf8"

	"github.com/hyperledger/fabric-protos-go-apiv2/ledger/queryresult"
	"github.com/hyperledger/fabric-protos-go-apiv2/ledger/rwset"
	"github.com/hyperledger/fabric-protos-go-apiv2/ledger/rwset/kvrwset"

	"github.com/cairn-ledger/cairn/peer/internal/ledger/statedb"
)

// ResultsIterator yields range-query results in key order; Next returns
// (nil, nil) at the end. It is an alias of an unnamed interface so that a
// consumer declaring the same alias gets an identical type and
// (*TxSimulator).GetStateRangeScanIterator satisfies its interface.
type ResultsIterator = interface {
	Next() (*queryresult.KV, error)
	Close()
}

// ErrDone is returned by a simulator or query executor used after Done.
var ErrDone = errors.New("ledger: simulator or query executor used after Done")

// reader is the read path shared by TxSimulator and QueryExecutor: reads
// from one state snapshot and, when simulating, records what was read.
type reader struct {
	l    *Ledger
	snap *statedb.Snapshot

	// mu guards everything below: a chaincode may issue calls for one
	// transaction from several goroutines.
	mu      sync.Mutex
	done    bool
	builder *rwsetBuilder // nil for a query executor
	iters   []*rangeIterator
}

func (r *reader) getState(ns, key string) (*statedb.VersionedValue, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.done {
		return nil, ErrDone
	}
	vv, err := r.snap.Get(ns, key)
	if err != nil {
		return nil, fmt.Errorf("get state %q/%q: %w", ns, key, err)
	}
	if r.builder != nil {
		r.builder.addRead(ns, key, protoVersion(vv))
	}
	return vv, nil
}

func protoVersion(vv *statedb.VersionedValue) *kvrwset.Version {
	if vv == nil {
		return nil
	}
	return &kvrwset.Version{BlockNum: vv.Version.BlockNum, TxNum: vv.Version.TxNum}
}

// GetState returns the committed value of a key, nil if it does not exist.
// Writes made by this simulator are not visible (Fabric semantics).
func (r *reader) GetState(ns, key string) ([]byte, error) {
	vv, err := r.getState(ns, key)
	if err != nil || vv == nil {
		return nil, err
	}
	return vv.Value, nil
}

// GetStateMultipleKeys is GetState for several keys of one namespace.
func (r *reader) GetStateMultipleKeys(ns string, keys []string) ([][]byte, error) {
	out := make([][]byte, len(keys))
	for i, k := range keys {
		v, err := r.GetState(ns, k)
		if err != nil {
			return nil, err
		}
		out[i] = v
	}
	return out, nil
}

// GetStateMetadata returns a key's committed metadata. Like Fabric, a
// simulator records it as a read of the key.
func (r *reader) GetStateMetadata(ns, key string) (map[string][]byte, error) {
	vv, err := r.getState(ns, key)
	if err != nil || vv == nil {
		return nil, err
	}
	md, err := deserializeMetadata(vv.Metadata)
	if err != nil {
		return nil, fmt.Errorf("get metadata %q/%q: %w", ns, key, err)
	}
	return md, nil
}

// GetStateRangeScanIterator scans [startKey, endKey) of a namespace in key
// order; an empty endKey means to the end of the namespace.
func (r *reader) GetStateRangeScanIterator(ns, startKey, endKey string) (ResultsIterator, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.done {
		return nil, ErrDone
	}
	it := &rangeIterator{r: r, ns: ns, endKey: endKey, it: r.snap.Range(ns, startKey, endKey)}
	if r.builder != nil {
		it.info = &kvrwset.RangeQueryInfo{StartKey: startKey}
		it.results = newRangeResults(true, rangeHashingDegree)
	}
	r.iters = append(r.iters, it)
	return it, nil
}

// GetHistoryForKey returns the committed writes of a key, newest first. It
// records nothing in the read-write set, as in Fabric.
func (r *reader) GetHistoryForKey(ns, key string) (*HistoryIterator, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.done {
		return nil, ErrDone
	}
	// The history iterator gets its own snapshot so that Done on this
	// simulator does not pull the data out from under a caller still
	// draining it.
	snap, err := r.l.state.Snapshot()
	if err != nil {
		return nil, err
	}
	return &HistoryIterator{l: r.l, snap: snap, ns: ns, key: key, it: snap.History(ns, key)}, nil
}

// Done releases the snapshot and closes open iterators. Calling it again is
// harmless.
func (r *reader) Done() {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.done {
		return
	}
	r.done = true
	for _, it := range r.iters {
		it.it.Close()
	}
	r.snap.Release()
}

// rangeIterator wraps a state scan and, when simulating, keeps the
// RangeQueryInfo Fabric records: EndKey follows the last key returned until
// the scan is exhausted, when it becomes the requested end key and
// ItrExhausted is set.
type rangeIterator struct {
	r       *reader
	ns      string
	endKey  string
	it      *statedb.Iterator
	info    *kvrwset.RangeQueryInfo // nil for a query executor
	results *rangeResults
	closed  bool
}

// Next returns the next key, or (nil, nil) at the end.
func (it *rangeIterator) Next() (*queryresult.KV, error) {
	it.r.mu.Lock()
	defer it.r.mu.Unlock()
	if it.r.done || it.closed {
		return nil, ErrDone
	}
	kv, err := it.it.Next()
	if err != nil {
		return nil, err
	}
	if kv == nil {
		if it.info != nil {
			it.info.ItrExhausted = true
			it.info.EndKey = it.endKey
		}
		return nil, nil
	}
	if it.info != nil {
		read := &kvrwset.KVRead{Key: kv.Key, Version: &kvrwset.Version{BlockNum: kv.Version.BlockNum, TxNum: kv.Version.TxNum}}
		if err := it.results.add(read); err != nil {
			return nil, err
		}
		it.info.EndKey = kv.Key
	}
	return &queryresult.KV{Namespace: it.ns, Key: kv.Key, Value: kv.Value}, nil
}

// Close releases the scan. What was read so far stays in the read-write set.
func (it *rangeIterator) Close() {
	it.r.mu.Lock()
	defer it.r.mu.Unlock()
	if !it.closed && !it.r.done {
		it.it.Close()
	}
	it.closed = true
}

// QueryExecutor reads committed state without recording anything: for
// evaluate (query) proposals and system chaincodes. Call Done when finished.
type QueryExecutor struct {
	reader
}

// NewQueryExecutor returns a read-only view of the current committed state.
func (l *Ledger) NewQueryExecutor() (*QueryExecutor, error) {
	snap, err := l.state.Snapshot()
	if err != nil {
		return nil, fmt.Errorf("new query executor: %w", err)
	}
	return &QueryExecutor{reader{l: l, snap: snap}}, nil
}

// TxSimulator runs one transaction proposal against a snapshot of committed
// state and records its read-write set. It is safe for concurrent use. Call
// Done when finished; Results may be called before or after Done.
type TxSimulator struct {
	reader
	txID string
}

// NewTxSimulator starts simulating transaction txID against the current
// committed state.
func (l *Ledger) NewTxSimulator(txID string) (*TxSimulator, error) {
	snap, err := l.state.Snapshot()
	if err != nil {
		return nil, fmt.Errorf("new tx simulator %s: %w", txID, err)
	}
	return &TxSimulator{reader: reader{l: l, snap: snap, builder: newRWSetBuilder()}, txID: txID}, nil
}

func (s *TxSimulator) checkWrite(key string) error {
	if s.done {
		return ErrDone
	}
	// The CouchDB state database cannot store other keys, and Fabric rejects
	// them on every database so that chaincode behaves the same on both.
	if !utf8.ValidString(key) {
		return fmt.Errorf("tx %s: invalid key %x: must be a UTF-8 string", s.txID, key)
	}
	return nil
}

// SetState records a write. A nil value is recorded as a delete, as in
// Fabric.
func (s *TxSimulator) SetState(ns, key string, value []byte) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.checkWrite(key); err != nil {
		return err
	}
	if value != nil {
		// The caller may reuse its buffer after we return.
		value = append(make([]byte, 0, len(value)), value...)
	}
	s.builder.addWrite(ns, key, value)
	return nil
}

// DeleteState records a delete.
func (s *TxSimulator) DeleteState(ns, key string) error {
	return s.SetState(ns, key, nil)
}

// SetStateMetadata records a write of a key's whole metadata; nil or empty
// metadata removes it.
func (s *TxSimulator) SetStateMetadata(ns, key string, metadata map[string][]byte) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.checkWrite(key); err != nil {
		return err
	}
	s.builder.addMetadataWrite(ns, key, metadata)
	return nil
}

// Results builds the transaction's read-write set from everything recorded
// so far.
func (s *TxSimulator) Results() (*rwset.TxReadWriteSet, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	ranges := make(map[string][]*kvrwset.RangeQueryInfo)
	for _, it := range s.iters {
		reads, summary, err := it.results.done()
		if err != nil {
			return nil, fmt.Errorf("tx %s: %w", s.txID, err)
		}
		rqi := &kvrwset.RangeQueryInfo{StartKey: it.info.StartKey, EndKey: it.info.EndKey, ItrExhausted: it.info.ItrExhausted}
		switch {
		case summary != nil:
			rqi.ReadsInfo = &kvrwset.RangeQueryInfo_ReadsMerkleHashes{ReadsMerkleHashes: summary}
		case reads != nil:
			rqi.ReadsInfo = &kvrwset.RangeQueryInfo_RawReads{RawReads: &kvrwset.QueryReads{KvReads: slices.Clone(reads)}}
		}
		ranges[it.ns] = append(ranges[it.ns], rqi)
	}
	rws, err := s.builder.build(ranges)
	if err != nil {
		return nil, fmt.Errorf("tx %s: %w", s.txID, err)
	}
	return rws, nil
}
