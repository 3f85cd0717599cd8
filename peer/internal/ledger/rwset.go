package ledger

import (
	"crypto/sha256"
	"errors"
	"fmt"
	"maps"
	"slices"

	"github.com/hyperledger/fabric-protos-go-apiv2/common"
	"github.com/hyperledger/fabric-protos-go-apiv2/ledger/rwset"
	"github.com/hyperledger/fabric-protos-go-apiv2/ledger/rwset/kvrwset"
	"github.com/hyperledger/fabric-protos-go-apiv2/peer"
	"google.golang.org/protobuf/proto"
)

// RWSetFromEnvelope extracts the read-write set an endorser transaction
// carries: payload → Transaction → first action → ChaincodeActionPayload →
// ProposalResponsePayload → ChaincodeAction.Results.
func RWSetFromEnvelope(env *common.Envelope) (*rwset.TxReadWriteSet, error) {
	payload := &common.Payload{}
	if err := proto.Unmarshal(env.GetPayload(), payload); err != nil {
		return nil, fmt.Errorf("payload: %w", err)
	}
	tx := &peer.Transaction{}
	if err := proto.Unmarshal(payload.Data, tx); err != nil {
		return nil, fmt.Errorf("transaction: %w", err)
	}
	if len(tx.Actions) == 0 {
		return nil, errors.New("transaction has no actions")
	}
	ccPayload := &peer.ChaincodeActionPayload{}
	if err := proto.Unmarshal(tx.Actions[0].Payload, ccPayload); err != nil {
		return nil, fmt.Errorf("chaincode action payload: %w", err)
	}
	if ccPayload.Action == nil {
		return nil, errors.New("chaincode action payload has no endorsed action")
	}
	prp := &peer.ProposalResponsePayload{}
	if err := proto.Unmarshal(ccPayload.Action.ProposalResponsePayload, prp); err != nil {
		return nil, fmt.Errorf("proposal response payload: %w", err)
	}
	ca := &peer.ChaincodeAction{}
	if err := proto.Unmarshal(prp.Extension, ca); err != nil {
		return nil, fmt.Errorf("chaincode action: %w", err)
	}
	rws := &rwset.TxReadWriteSet{}
	if err := proto.Unmarshal(ca.Results, rws); err != nil {
		return nil, fmt.Errorf("read-write set: %w", err)
	}
	return rws, nil
}

// nsRWSet is one namespace of a decoded transaction read-write set.
type nsRWSet struct {
	ns  string
	kvs *kvrwset.KVRWSet
}

// TxRWSet is an endorser transaction's read-write set that the caller (the
// validator) already decoded: Namespaces[i] is Set.NsRwset[i].Rwset decoded.
type TxRWSet struct {
	Set        *rwset.TxReadWriteSet
	Namespaces []*kvrwset.KVRWSet
}

// namespaces checks a decoded set as decodeRWSet does, without decoding.
func (t *TxRWSet) namespaces() ([]nsRWSet, error) {
	if t.Set == nil || len(t.Namespaces) != len(t.Set.NsRwset) {
		return nil, errors.New("decoded read-write set does not match its namespaces")
	}
	return checkRWSet(t.Set, func(i int) (*kvrwset.KVRWSet, error) { return t.Namespaces[i], nil })
}

// decodeRWSet unmarshals every namespace's KVRWSet. Private-data collections
// are not supported yet, so a set that carries collection hashes is refused
// rather than half-validated.
func decodeRWSet(rws *rwset.TxReadWriteSet) ([]nsRWSet, error) {
	return checkRWSet(rws, func(i int) (*kvrwset.KVRWSet, error) {
		kvs := &kvrwset.KVRWSet{}
		err := proto.Unmarshal(rws.NsRwset[i].Rwset, kvs)
		return kvs, err
	})
}

func checkRWSet(rws *rwset.TxReadWriteSet, kvsOf func(i int) (*kvrwset.KVRWSet, error)) ([]nsRWSet, error) {
	if rws.DataModel != rwset.TxReadWriteSet_KV {
		return nil, fmt.Errorf("unsupported data model %v", rws.DataModel)
	}
	out := make([]nsRWSet, 0, len(rws.NsRwset))
	for i, n := range rws.NsRwset {
		if len(n.CollectionHashedRwset) > 0 {
			return nil, fmt.Errorf("namespace %q: private data collections are not supported", n.Namespace)
		}
		kvs, err := kvsOf(i)
		if err != nil {
			return nil, fmt.Errorf("namespace %q: %w", n.Namespace, err)
		}
		for _, rq := range kvs.RangeQueriesInfo {
			if mh := rq.GetReadsMerkleHashes(); mh != nil && mh.MaxDegree < 2 {
				return nil, fmt.Errorf("namespace %q: range query merkle degree %d", n.Namespace, mh.MaxDegree)
			}
		}
		out = append(out, nsRWSet{ns: n.Namespace, kvs: kvs})
	}
	return out, nil
}

// rwsetBuilder collects a simulation's reads and writes and builds the
// read-write set exactly as Fabric's builder does, so endorsements from
// Cairn and Fabric peers for the same proposal are byte-identical: namespaces
// sorted, reads, writes and metadata writes sorted by key with the last one
// per key kept, range queries in the order they were opened.
type rwsetBuilder struct {
	namespaces map[string]*nsBuilder
}

type nsBuilder struct {
	reads          map[string]*kvrwset.KVRead
	writes         map[string]*kvrwset.KVWrite
	metadataWrites map[string]*kvrwset.KVMetadataWrite
}

func newRWSetBuilder() *rwsetBuilder {
	return &rwsetBuilder{namespaces: map[string]*nsBuilder{}}
}

func (b *rwsetBuilder) ns(ns string) *nsBuilder {
	n, ok := b.namespaces[ns]
	if !ok {
		n = &nsBuilder{
			reads:          map[string]*kvrwset.KVRead{},
			writes:         map[string]*kvrwset.KVWrite{},
			metadataWrites: map[string]*kvrwset.KVMetadataWrite{},
		}
		b.namespaces[ns] = n
	}
	return n
}

func (b *rwsetBuilder) addRead(ns, key string, v *kvrwset.Version) {
	b.ns(ns).reads[key] = &kvrwset.KVRead{Key: key, Version: v}
}

// addWrite records a write; a nil value is a delete, as in Fabric.
func (b *rwsetBuilder) addWrite(ns, key string, value []byte) {
	b.ns(ns).writes[key] = &kvrwset.KVWrite{Key: key, IsDelete: value == nil, Value: value}
}

// addMetadataWrite records a metadata write; nil or empty metadata deletes
// the key's metadata.
func (b *rwsetBuilder) addMetadataWrite(ns, key string, md map[string][]byte) {
	b.ns(ns).metadataWrites[key] = &kvrwset.KVMetadataWrite{Key: key, Entries: metadataEntries(md)}
}

// build marshals the read-write set. ranges holds each namespace's range
// queries in the order they were opened; like Fabric, only the first query
// per (start, end, exhausted) is kept.
func (b *rwsetBuilder) build(ranges map[string][]*kvrwset.RangeQueryInfo) (*rwset.TxReadWriteSet, error) {
	for ns := range ranges {
		b.ns(ns)
	}
	out := &rwset.TxReadWriteSet{DataModel: rwset.TxReadWriteSet_KV}
	for _, ns := range slices.Sorted(maps.Keys(b.namespaces)) {
		n := b.namespaces[ns]
		var rqs []*kvrwset.RangeQueryInfo
		for _, rqi := range ranges[ns] {
			dup := slices.ContainsFunc(rqs, func(have *kvrwset.RangeQueryInfo) bool {
				return have.StartKey == rqi.StartKey && have.EndKey == rqi.EndKey && have.ItrExhausted == rqi.ItrExhausted
			})
			if !dup {
				rqs = append(rqs, rqi)
			}
		}
		kvs := &kvrwset.KVRWSet{
			Reads:            sortedValues(n.reads),
			RangeQueriesInfo: rqs,
			Writes:           sortedValues(n.writes),
			MetadataWrites:   sortedValues(n.metadataWrites),
		}
		raw, err := proto.MarshalOptions{Deterministic: true}.Marshal(kvs)
		if err != nil {
			return nil, fmt.Errorf("marshal rwset of namespace %q: %w", ns, err)
		}
		out.NsRwset = append(out.NsRwset, &rwset.NsReadWriteSet{Namespace: ns, Rwset: raw})
	}
	return out, nil
}

func sortedValues[V any](m map[string]V) []V {
	if len(m) == 0 {
		return nil
	}
	out := make([]V, 0, len(m))
	for _, k := range slices.Sorted(maps.Keys(m)) {
		out = append(out, m[k])
	}
	return out
}

// metadataEntries turns a metadata map into entries sorted by name; nil for
// an empty map, which Fabric reads as "delete the metadata".
func metadataEntries(md map[string][]byte) []*kvrwset.KVMetadataEntry {
	if len(md) == 0 {
		return nil
	}
	out := make([]*kvrwset.KVMetadataEntry, 0, len(md))
	for _, name := range slices.Sorted(maps.Keys(md)) {
		out = append(out, &kvrwset.KVMetadataEntry{Name: name, Value: md[name]})
	}
	return out
}

// serializeMetadata is the stored form of a key's metadata, the same as
// Fabric's: a KVMetadataWrite message holding only the entries.
func serializeMetadata(entries []*kvrwset.KVMetadataEntry) ([]byte, error) {
	if len(entries) == 0 {
		return nil, nil
	}
	return proto.MarshalOptions{Deterministic: true}.Marshal(&kvrwset.KVMetadataWrite{Entries: entries})
}

func deserializeMetadata(raw []byte) (map[string][]byte, error) {
	if len(raw) == 0 {
		return nil, nil
	}
	m := &kvrwset.KVMetadataWrite{}
	if err := proto.Unmarshal(raw, m); err != nil {
		return nil, fmt.Errorf("decode key metadata: %w", err)
	}
	out := make(map[string][]byte, len(m.Entries))
	for _, e := range m.Entries {
		out[e.Name] = e.Value
	}
	return out, nil
}

// Range-query result hashing, as Fabric does it: when a range query returns
// more than maxDegree results, the rwset carries a merkle summary of the
// reads instead of the reads themselves. Fabric's endorsers always hash with
// degree 50 and SHA-256, so Cairn does too.
const (
	rangeHashingDegree = 50
)

func sha256Hash(b []byte) []byte {
	s := sha256.Sum256(b)
	return s[:]
}

// rangeResults accumulates one range query's reads: raw while there are at
// most maxDegree of them, then folded into a merkle tree.
type rangeResults struct {
	pending   []*kvrwset.KVRead
	maxDegree uint32
	hashing   bool
	// tree[l] holds the hashes at level l+1 not yet folded into level l+2.
	tree     [][][]byte
	maxLevel int // 1-based, as Fabric counts
}

func newRangeResults(hashing bool, maxDegree uint32) *rangeResults {
	return &rangeResults{hashing: hashing, maxDegree: maxDegree, maxLevel: 1}
}

func (r *rangeResults) add(kv *kvrwset.KVRead) error {
	r.pending = append(r.pending, kv)
	if r.hashing && uint32(len(r.pending)) > r.maxDegree {
		return r.flush()
	}
	return nil
}

func (r *rangeResults) flush() error {
	raw, err := proto.MarshalOptions{Deterministic: true}.Marshal(&kvrwset.QueryReads{KvReads: r.pending})
	if err != nil {
		return fmt.Errorf("marshal range query reads: %w", err)
	}
	r.pending = nil
	r.push(sha256Hash(raw))
	return nil
}

func (r *rangeResults) level(l int) [][]byte {
	if l-1 < len(r.tree) {
		return r.tree[l-1]
	}
	return nil
}

func (r *rangeResults) setLevel(l int, h [][]byte) {
	for len(r.tree) < l {
		r.tree = append(r.tree, nil)
	}
	r.tree[l-1] = h
}

// push adds a leaf-level hash and folds every level that exceeds maxDegree
// into one hash on the level above.
func (r *rangeResults) push(h []byte) {
	r.setLevel(1, append(r.level(1), h))
	for l := 1; ; l++ {
		hs := r.level(l)
		if uint32(len(hs)) <= r.maxDegree {
			return
		}
		r.setLevel(l, nil)
		r.setLevel(l+1, append(r.level(l+1), combine(hs)))
		if l+1 > r.maxLevel {
			r.maxLevel = l + 1
		}
	}
}

func combine(hs [][]byte) []byte {
	var all []byte
	for _, h := range hs {
		all = append(all, h...)
	}
	return sha256Hash(all)
}

func (r *rangeResults) treeEmpty() bool {
	return r.maxLevel == 1 && len(r.level(1)) == 0
}

func (r *rangeResults) summary() *kvrwset.QueryReadsMerkleSummary {
	hs := r.level(r.maxLevel)
	out := make([][]byte, len(hs))
	copy(out, hs)
	return &kvrwset.QueryReadsMerkleSummary{MaxDegree: r.maxDegree, MaxLevel: uint32(r.maxLevel), MaxLevelHashes: out}
}

// done finishes the tree: either the raw reads (no hashing happened) or the
// merkle summary. It works on a copy so a simulator can build its results
// more than once.
func (r *rangeResults) done() ([]*kvrwset.KVRead, *kvrwset.QueryReadsMerkleSummary, error) {
	if !r.hashing || r.treeEmpty() {
		return r.pending, nil, nil
	}
	c := &rangeResults{pending: r.pending, maxDegree: r.maxDegree, hashing: true, maxLevel: r.maxLevel}
	for _, l := range r.tree {
		c.tree = append(c.tree, slices.Clone(l))
	}
	if len(c.pending) > 0 {
		if err := c.flush(); err != nil {
			return nil, nil, err
		}
	}
	for l := 1; l < c.maxLevel; l++ {
		hs := c.level(l)
		var h []byte
		switch len(hs) {
		case 0:
			continue
		case 1:
			h = hs[0]
		default:
			h = combine(hs)
		}
		c.setLevel(l, nil)
		c.setLevel(l+1, append(c.level(l+1), h))
	}
	if final := c.level(c.maxLevel); uint32(len(final)) > c.maxDegree {
		c.setLevel(c.maxLevel, nil)
		c.maxLevel++
		c.setLevel(c.maxLevel, [][]byte{combine(final)})
	}
	return nil, c.summary(), nil
}
