package ledger

import (
	"bytes"
	"fmt"
	"slices"

	"github.com/hyperledger/fabric-protos-go-apiv2/common"
	"github.com/hyperledger/fabric-protos-go-apiv2/ledger/rwset/kvrwset"
	"github.com/hyperledger/fabric-protos-go-apiv2/peer"

	"github.com/cairn-ledger/cairn/internal/block"
	"github.com/cairn-ledger/cairn/peer/internal/ledger/statedb"
)

// stateReader is what block validation reads committed state through: bulk
// loads (so a CouchDB implementation can make one request per block) and a
// range scan for phantom checks.
type stateReader interface {
	GetVersions(keys []statedb.CompositeKey) ([]*statedb.Version, error)
	GetMany(keys []statedb.CompositeKey) ([]*statedb.VersionedValue, error)
	Get(ns, key string) (*statedb.VersionedValue, error)
	Range(ns, startKey, endKey string) *statedb.Iterator
}

// keyUpdate is a key's state after the valid transactions of the block so
// far.
type keyUpdate struct {
	delete   bool
	value    []byte
	metadata []byte
	version  statedb.Version
}

// blockUpdates are the writes of a block's valid transactions, last write
// per key wins.
type blockUpdates struct {
	keys    map[statedb.CompositeKey]*keyUpdate
	byNS    map[string]map[string]*keyUpdate
	history []statedb.HistoryEntry
}

func newBlockUpdates() *blockUpdates {
	return &blockUpdates{keys: map[statedb.CompositeKey]*keyUpdate{}, byNS: map[string]map[string]*keyUpdate{}}
}

func (u *blockUpdates) put(ck statedb.CompositeKey, ku *keyUpdate) {
	u.keys[ck] = ku
	m, ok := u.byNS[ck.Namespace]
	if !ok {
		m = map[string]*keyUpdate{}
		u.byNS[ck.Namespace] = m
	}
	m[ck.Key] = ku
}

// inRange lists the updated keys of ns in [start, end) in key order; an
// empty end means no upper bound.
func (u *blockUpdates) inRange(ns, start, end string) []string {
	var out []string
	for k := range u.byNS[ns] {
		if k >= start && (end == "" || k < end) {
			out = append(out, k)
		}
	}
	slices.Sort(out)
	return out
}

func (u *blockUpdates) batch() *statedb.Batch {
	b := &statedb.Batch{History: u.history, Writes: make([]statedb.Write, 0, len(u.keys))}
	for ck, ku := range u.keys {
		b.Writes = append(b.Writes, statedb.Write{Key: ck, Delete: ku.delete, Value: ku.value, Metadata: ku.metadata, Version: ku.version})
	}
	return b
}

// endorserTx is a transaction of the block whose writes may be applied.
type endorserTx struct {
	idx int
	nss []nsRWSet
	ops map[statedb.CompositeKey]*keyOp
}

// prepareBlock computes the state updates of block b. codes holds one code
// per envelope. With mvcc set (a new block), transactions still VALID are
// checked against committed state and the earlier valid transactions of the
// block, and codes is updated in place with the outcome. Without mvcc
// (re-applying a stored block on recovery), codes are taken as final and any
// VALID endorser transaction that cannot be decoded is an error.
// decoded, if not nil, holds per envelope the read-write set the caller
// already decoded (nil entries are decoded from the block).
func prepareBlock(st stateReader, b *common.Block, codes []peer.TxValidationCode, decoded []*TxRWSet, mvcc bool) (*blockUpdates, error) {
	num := b.GetHeader().GetNumber()
	var txs []endorserTx
	for i := range b.GetData().GetData() {
		if codes[i] != peer.TxValidationCode_VALID {
			continue
		}
		if i < len(decoded) && decoded[i] != nil {
			nss, err := decoded[i].namespaces()
			if err != nil {
				if !mvcc {
					return nil, fmt.Errorf("stored block %d tx %d marked valid: %w", num, i, err)
				}
				codes[i] = peer.TxValidationCode_BAD_RWSET
				continue
			}
			txs = append(txs, endorserTx{idx: i, nss: nss, ops: txOps(nss)})
			continue
		}
		ch, err := block.ChannelHeader(b, i)
		if err != nil {
			if !mvcc {
				return nil, fmt.Errorf("stored block %d tx %d marked valid: %w", num, i, err)
			}
			codes[i] = peer.TxValidationCode_BAD_PAYLOAD
			continue
		}
		if ch.Type != int32(common.HeaderType_ENDORSER_TRANSACTION) {
			continue
		}
		env, _ := block.Envelope(b, i) // decoded fine in ChannelHeader above
		rws, err := RWSetFromEnvelope(env)
		var nss []nsRWSet
		if err == nil {
			nss, err = decodeRWSet(rws)
		}
		if err != nil {
			if !mvcc {
				return nil, fmt.Errorf("stored block %d tx %d marked valid: %w", num, i, err)
			}
			codes[i] = peer.TxValidationCode_BAD_RWSET
			continue
		}
		txs = append(txs, endorserTx{idx: i, nss: nss, ops: txOps(nss)})
	}

	v := &validator{st: st, updates: newBlockUpdates()}
	if mvcc {
		if err := v.preloadVersions(txs); err != nil {
			return nil, fmt.Errorf("block %d: %w", num, err)
		}
	}
	if err := v.preloadLatest(txs); err != nil {
		return nil, fmt.Errorf("block %d: %w", num, err)
	}
	for _, tx := range txs {
		if mvcc {
			code, err := v.validateTx(tx.nss)
			if err != nil {
				return nil, fmt.Errorf("block %d tx %d: %w", num, tx.idx, err)
			}
			if code != peer.TxValidationCode_VALID {
				codes[tx.idx] = code
				continue
			}
		}
		if err := v.apply(tx, statedb.Version{BlockNum: num, TxNum: uint64(tx.idx)}); err != nil {
			return nil, fmt.Errorf("block %d tx %d: %w", num, tx.idx, err)
		}
	}
	return v.updates, nil
}

type validator struct {
	st       stateReader
	updates  *blockUpdates
	versions map[statedb.CompositeKey]*statedb.Version
	latest   map[statedb.CompositeKey]*statedb.VersionedValue
}

// preloadVersions loads in one call the committed version of every key any
// transaction of the block read.
func (v *validator) preloadVersions(txs []endorserTx) error {
	seen := map[statedb.CompositeKey]struct{}{}
	var keys []statedb.CompositeKey
	for _, tx := range txs {
		for _, n := range tx.nss {
			for _, r := range n.kvs.Reads {
				ck := statedb.CompositeKey{Namespace: n.ns, Key: r.Key}
				if _, ok := seen[ck]; !ok {
					seen[ck] = struct{}{}
					keys = append(keys, ck)
				}
			}
		}
	}
	vs, err := v.st.GetVersions(keys)
	if err != nil {
		return fmt.Errorf("load committed versions: %w", err)
	}
	v.versions = make(map[statedb.CompositeKey]*statedb.Version, len(keys))
	for i, ck := range keys {
		v.versions[ck] = vs[i]
	}
	return nil
}

// preloadLatest loads in one call the committed state of every key whose
// write must be merged with what is stored: a value write without a metadata
// write keeps the key's metadata, and a metadata write alone keeps its value.
func (v *validator) preloadLatest(txs []endorserTx) error {
	seen := map[statedb.CompositeKey]struct{}{}
	var keys []statedb.CompositeKey
	for _, tx := range txs {
		for ck, op := range tx.ops {
			if op.del || (op.upsert && (op.mdUpdate || op.mdDelete)) {
				continue
			}
			if _, ok := seen[ck]; !ok {
				seen[ck] = struct{}{}
				keys = append(keys, ck)
			}
		}
	}
	vvs, err := v.st.GetMany(keys)
	if err != nil {
		return fmt.Errorf("load committed state: %w", err)
	}
	v.latest = make(map[statedb.CompositeKey]*statedb.VersionedValue, len(keys))
	for i, ck := range keys {
		v.latest[ck] = vvs[i]
	}
	return nil
}

// validateTx is Fabric's MVCC check, namespace by namespace: every read must
// still be at the version read and not written by an earlier valid
// transaction of the block, and every range query must return the same keys
// at the same versions.
func (v *validator) validateTx(nss []nsRWSet) (peer.TxValidationCode, error) {
	for _, n := range nss {
		for _, r := range n.kvs.Reads {
			ck := statedb.CompositeKey{Namespace: n.ns, Key: r.Key}
			if _, ok := v.updates.keys[ck]; ok {
				return peer.TxValidationCode_MVCC_READ_CONFLICT, nil
			}
			if !sameVersion(v.versions[ck], r.Version) {
				return peer.TxValidationCode_MVCC_READ_CONFLICT, nil
			}
		}
		for _, rq := range n.kvs.RangeQueriesInfo {
			ok, err := v.validateRange(n.ns, rq)
			if err != nil {
				return 0, err
			}
			if !ok {
				return peer.TxValidationCode_PHANTOM_READ_CONFLICT, nil
			}
		}
	}
	return peer.TxValidationCode_VALID, nil
}

func sameVersion(committed *statedb.Version, read *kvrwset.Version) bool {
	if committed == nil || read == nil {
		return committed == nil && read == nil
	}
	return committed.BlockNum == read.BlockNum && committed.TxNum == read.TxNum
}

// validateRange re-runs a range query over committed state merged with the
// block's earlier valid writes. When the simulation stopped before the end
// of the range, EndKey is the last key it saw and is included.
func (v *validator) validateRange(ns string, rq *kvrwset.RangeQueryInfo) (bool, error) {
	it := &combinedIterator{
		st: v.st, updates: v.updates, ns: ns, endKey: rq.EndKey, includeEnd: !rq.ItrExhausted,
		db:      v.st.Range(ns, rq.StartKey, rq.EndKey),
		updKeys: v.updates.inRange(ns, rq.StartKey, rq.EndKey),
	}
	defer it.close()
	if mh := rq.GetReadsMerkleHashes(); mh != nil {
		return validateRangeHashed(it, mh)
	}
	return validateRangeRaw(it, rq.GetRawReads().GetKvReads())
}

func validateRangeRaw(it *combinedIterator, reads []*kvrwset.KVRead) (bool, error) {
	for _, r := range reads {
		got, err := it.next()
		if err != nil {
			return false, err
		}
		if got == nil || got.Key != r.Key || !sameVersion(&got.Version, r.Version) {
			return false, nil
		}
	}
	extra, err := it.next()
	if err != nil {
		return false, err
	}
	return extra == nil, nil
}

// validateRangeHashed rebuilds the merkle tree of the results and compares
// it with the endorser's summary as it grows, stopping at the first
// difference, as Fabric does.
func validateRangeHashed(it *combinedIterator, in *kvrwset.QueryReadsMerkleSummary) (bool, error) {
	rr := newRangeResults(true, in.MaxDegree)
	lastMatched := -1
	for {
		got, err := it.next()
		if err != nil {
			return false, err
		}
		if got == nil {
			_, m, err := rr.done()
			if err != nil {
				return false, err
			}
			return summariesEqual(in, m), nil
		}
		read := &kvrwset.KVRead{Key: got.Key, Version: &kvrwset.Version{BlockNum: got.Version.BlockNum, TxNum: got.Version.TxNum}}
		if err := rr.add(read); err != nil {
			return false, err
		}
		m := rr.summary()
		if m.MaxLevel < in.MaxLevel || lastMatched == len(m.MaxLevelHashes)-1 {
			continue
		}
		if len(m.MaxLevelHashes) > len(in.MaxLevelHashes) {
			return false, nil
		}
		lastMatched++
		if !bytes.Equal(m.MaxLevelHashes[lastMatched], in.MaxLevelHashes[lastMatched]) {
			return false, nil
		}
	}
}

func summariesEqual(a, b *kvrwset.QueryReadsMerkleSummary) bool {
	if b == nil || a.MaxDegree != b.MaxDegree || a.MaxLevel != b.MaxLevel || len(a.MaxLevelHashes) != len(b.MaxLevelHashes) {
		return false
	}
	for i := range a.MaxLevelHashes {
		if !bytes.Equal(a.MaxLevelHashes[i], b.MaxLevelHashes[i]) {
			return false
		}
	}
	return true
}

type versionedKey struct {
	Key     string
	Version statedb.Version
}

// combinedIterator merges a committed-state scan of [start, end) with the
// block's pending updates (which win, and hide deleted keys), then serves
// the end key itself when includeEnd is set. Serving the end key separately
// keeps Fabric's behaviour for an empty end key, which scans to the end.
type combinedIterator struct {
	st         stateReader
	updates    *blockUpdates
	ns         string
	endKey     string
	includeEnd bool
	endServed  bool

	db      *statedb.Iterator
	dbNext  *statedb.KV
	dbDone  bool
	updKeys []string
}

func (c *combinedIterator) close() { c.db.Close() }

func (c *combinedIterator) peekDB() (*statedb.KV, error) {
	if c.dbNext == nil && !c.dbDone {
		kv, err := c.db.Next()
		if err != nil {
			return nil, err
		}
		if kv == nil {
			c.dbDone = true
		}
		c.dbNext = kv
	}
	return c.dbNext, nil
}

func (c *combinedIterator) next() (*versionedKey, error) {
	for {
		dbkv, err := c.peekDB()
		if err != nil {
			return nil, err
		}
		switch {
		case dbkv == nil && len(c.updKeys) == 0:
			return c.serveEnd()
		case len(c.updKeys) == 0 || (dbkv != nil && dbkv.Key < c.updKeys[0]):
			c.dbNext = nil
			return &versionedKey{Key: dbkv.Key, Version: dbkv.Version}, nil
		default:
			k := c.updKeys[0]
			c.updKeys = c.updKeys[1:]
			if dbkv != nil && dbkv.Key == k {
				c.dbNext = nil
			}
			ku := c.updates.byNS[c.ns][k]
			if ku.delete {
				continue
			}
			return &versionedKey{Key: k, Version: ku.version}, nil
		}
	}
}

func (c *combinedIterator) serveEnd() (*versionedKey, error) {
	if !c.includeEnd || c.endServed {
		return nil, nil
	}
	c.endServed = true
	if ku, ok := c.updates.byNS[c.ns][c.endKey]; ok {
		if ku.delete {
			return nil, nil
		}
		return &versionedKey{Key: c.endKey, Version: ku.version}, nil
	}
	vv, err := c.st.Get(c.ns, c.endKey)
	if err != nil || vv == nil {
		return nil, err
	}
	return &versionedKey{Key: c.endKey, Version: vv.Version}, nil
}

// keyOp is what one transaction does to one key, as Fabric's txOps: a value
// write or delete, and a metadata update or delete.
type keyOp struct {
	upsert, del        bool
	mdUpdate, mdDelete bool
	value, metadata    []byte
	mdErr              error
}

func txOps(nss []nsRWSet) map[statedb.CompositeKey]*keyOp {
	ops := map[statedb.CompositeKey]*keyOp{}
	get := func(ck statedb.CompositeKey) *keyOp {
		op, ok := ops[ck]
		if !ok {
			op = &keyOp{}
			ops[ck] = op
		}
		return op
	}
	for _, n := range nss {
		for _, w := range n.kvs.Writes {
			op := get(statedb.CompositeKey{Namespace: n.ns, Key: w.Key})
			if w.IsDelete {
				op.del = true
			} else {
				op.upsert = true
				op.value = w.Value
			}
		}
		for _, mw := range n.kvs.MetadataWrites {
			op := get(statedb.CompositeKey{Namespace: n.ns, Key: mw.Key})
			if mw.Entries == nil {
				op.mdDelete = true
				continue
			}
			op.mdUpdate = true
			op.metadata, op.mdErr = serializeMetadata(mw.Entries)
		}
	}
	return ops
}

// apply adds a valid transaction's writes to the block's updates, merging
// value-only and metadata-only writes with the key's latest state (earlier
// in the block, else committed) as Fabric does.
func (v *validator) apply(tx endorserTx, ver statedb.Version) error {
	for ck, op := range tx.ops {
		if op.mdErr != nil {
			return fmt.Errorf("metadata of %q/%q: %w", ck.Namespace, ck.Key, op.mdErr)
		}
		ku := &keyUpdate{version: ver}
		switch {
		case op.del:
			ku.delete = true
		case op.upsert && (op.mdUpdate || op.mdDelete):
			ku.value, ku.metadata = op.value, op.metadata
		case op.upsert:
			ku.value = op.value
			if prev, ok := v.updates.keys[ck]; ok {
				ku.metadata = prev.metadata
			} else if vv := v.latest[ck]; vv != nil {
				ku.metadata = vv.Metadata
			}
		default: // metadata only: keep the value, or do nothing if the key is absent
			if prev, ok := v.updates.keys[ck]; ok {
				if prev.delete {
					continue
				}
				ku.value = prev.value
			} else if vv := v.latest[ck]; vv != nil {
				ku.value = vv.Value
			} else {
				continue
			}
			ku.metadata = op.metadata
		}
		if ku.value == nil && !ku.delete {
			ku.value = []byte{}
		}
		v.updates.put(ck, ku)
	}
	for _, n := range tx.nss {
		for _, w := range n.kvs.Writes {
			v.updates.history = append(v.updates.history, statedb.HistoryEntry{
				Key: statedb.CompositeKey{Namespace: n.ns, Key: w.Key}, Version: ver,
			})
		}
	}
	return nil
}
