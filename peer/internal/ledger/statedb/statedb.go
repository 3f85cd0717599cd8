// Package statedb owns the peer's versioned world state for one channel on
// LevelDB: for each (namespace, key) the latest value, its version (the block
// and transaction that wrote it) and its metadata, plus the history index
// (which transactions wrote a key) and the savepoint (the last block whose
// updates are applied). A block's updates, history entries and savepoint are
// written in one LevelDB batch, so the database always reflects a whole number
// of blocks.
//
// Concurrency: Apply must be called by one goroutine at a time. Snapshots may
// be taken and read from any number of goroutines concurrently with Apply.
// A Snapshot's Get, GetMany and GetVersions are safe for concurrent use; each
// Iterator and HistoryIterator belongs to one goroutine.
package statedb

import (
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"os"

	"github.com/syndtr/goleveldb/leveldb"
	"github.com/syndtr/goleveldb/leveldb/filter"
	"github.com/syndtr/goleveldb/leveldb/iterator"
	"github.com/syndtr/goleveldb/leveldb/opt"
	"github.com/syndtr/goleveldb/leveldb/util"
)

// FormatVersion is the on-disk format this code reads and writes.
const FormatVersion = "cairn-statedb-1"

// Errors callers branch on.
var (
	// ErrVersion reports an on-disk format this code does not read.
	ErrVersion = errors.New("statedb: unsupported on-disk format version")
	// ErrCorrupt reports a stored entry that does not decode.
	ErrCorrupt = errors.New("statedb: corrupt entry")
)

// Version is the height of the transaction that last wrote a key.
type Version struct {
	BlockNum uint64
	TxNum    uint64
}

// CompositeKey names a key within a namespace (a chaincode).
type CompositeKey struct {
	Namespace string
	Key       string
}

// VersionedValue is a key's committed state. Metadata is opaque to this
// package: the ledger stores its serialized metadata entries there.
type VersionedValue struct {
	Value    []byte
	Metadata []byte
	Version  Version
}

// Write is one key's final state after a block: deleted, or set to Value and
// Metadata at Version.
type Write struct {
	Key      CompositeKey
	Delete   bool
	Value    []byte
	Metadata []byte
	Version  Version
}

// Batch is everything one block changes.
type Batch struct {
	Writes []Write
	// History records that the transaction at Version wrote Key. Kept in the
	// same database as state so one batch commits both.
	History []HistoryEntry
}

// HistoryEntry says the transaction at Version wrote (or deleted) Key.
type HistoryEntry struct {
	Key     CompositeKey
	Version Version
}

// Config configures a DB.
type Config struct {
	// Dir holds the LevelDB files.
	Dir string
	// NoSync skips fsync of each block's batch. Safe against process crashes
	// because the ledger re-applies blocks from the block store on open.
	NoSync bool
}

// DB is an open state database.
type DB struct {
	ldb  *leveldb.DB
	sync bool
}

// Key space: one leading byte per kind of entry.
const (
	prefixMeta    = 0x00 // format version and savepoint
	prefixState   = 's'
	prefixHistory = 'h'
)

var (
	formatKey    = []byte{prefixMeta, 'f'}
	savepointKey = []byte{prefixMeta, 'p'}
)

// Open opens or creates the database in cfg.Dir and checks its format
// version.
func Open(cfg Config) (*DB, error) {
	if cfg.Dir == "" {
		return nil, errors.New("statedb: config: Dir is empty")
	}
	if err := os.MkdirAll(cfg.Dir, 0o755); err != nil {
		return nil, fmt.Errorf("statedb: create %s: %w", cfg.Dir, err)
	}
	// A bloom filter per table: validation and commit read many keys that do
	// not exist yet (every fresh key's metadata and latest value), which the
	// filter answers without reading table blocks. Tables written without
	// one remain readable.
	ldb, err := leveldb.OpenFile(cfg.Dir, &opt.Options{Filter: filter.NewBloomFilter(10)})
	if err != nil {
		return nil, fmt.Errorf("statedb: open %s: %w", cfg.Dir, err)
	}
	db := &DB{ldb: ldb, sync: !cfg.NoSync}
	if err := db.checkFormat(); err != nil {
		ldb.Close()
		return nil, fmt.Errorf("statedb: open %s: %w", cfg.Dir, err)
	}
	return db, nil
}

func (db *DB) checkFormat() error {
	v, err := db.ldb.Get(formatKey, nil)
	switch {
	case errors.Is(err, leveldb.ErrNotFound):
		// A database with entries but no stamp was not written by us.
		it := db.ldb.NewIterator(nil, nil)
		nonEmpty := it.First()
		it.Release()
		if nonEmpty {
			return fmt.Errorf("%w: entries present but no format stamp", ErrVersion)
		}
		return db.ldb.Put(formatKey, []byte(FormatVersion), &opt.WriteOptions{Sync: true})
	case err != nil:
		return fmt.Errorf("read format stamp: %w", err)
	case string(v) != FormatVersion:
		return fmt.Errorf("%w: found %q, want %q", ErrVersion, v, FormatVersion)
	}
	return nil
}

// Close closes the database. Snapshots taken earlier fail afterwards.
func (db *DB) Close() error {
	return db.ldb.Close()
}

// Savepoint returns the number of the last block applied; ok is false when no
// block has been applied.
func (db *DB) Savepoint() (blockNum uint64, ok bool, err error) {
	v, err := db.ldb.Get(savepointKey, nil)
	if errors.Is(err, leveldb.ErrNotFound) {
		return 0, false, nil
	}
	if err != nil {
		return 0, false, fmt.Errorf("statedb: read savepoint: %w", err)
	}
	n, err := decodeUint64(v)
	if err != nil {
		return 0, false, fmt.Errorf("%w: savepoint: %v", ErrCorrupt, err)
	}
	return n, true, nil
}

// Apply writes a block's batch and moves the savepoint to blockNum, atomically.
func (db *DB) Apply(b *Batch, blockNum uint64) error {
	lb := new(leveldb.Batch)
	for i := range b.Writes {
		w := &b.Writes[i]
		k := stateKey(w.Key.Namespace, w.Key.Key)
		if w.Delete {
			lb.Delete(k)
			continue
		}
		lb.Put(k, encodeValue(w))
	}
	for _, h := range b.History {
		lb.Put(historyKey(h.Key.Namespace, h.Key.Key, h.Version), nil)
	}
	lb.Put(savepointKey, encodeUint64(blockNum))
	if err := db.ldb.Write(lb, &opt.WriteOptions{Sync: db.sync}); err != nil {
		return fmt.Errorf("statedb: apply block %d: %w", blockNum, err)
	}
	return nil
}

// Snapshot is a consistent read view of the state as of a whole block.
// Release it when done.
type Snapshot struct {
	snap *leveldb.Snapshot
}

// Snapshot takes a read view of the current state.
func (db *DB) Snapshot() (*Snapshot, error) {
	s, err := db.ldb.GetSnapshot()
	if err != nil {
		return nil, fmt.Errorf("statedb: snapshot: %w", err)
	}
	return &Snapshot{snap: s}, nil
}

// Release frees the snapshot. Calling it twice is harmless.
func (s *Snapshot) Release() { s.snap.Release() }

// Get returns the committed state of a key, or nil when it does not exist.
func (s *Snapshot) Get(ns, key string) (*VersionedValue, error) {
	raw, err := s.snap.Get(stateKey(ns, key), nil)
	if errors.Is(err, leveldb.ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("statedb: get %q/%q: %w", ns, key, err)
	}
	vv, err := decodeValue(raw)
	if err != nil {
		return nil, fmt.Errorf("statedb: get %q/%q: %w", ns, key, err)
	}
	return vv, nil
}

// GetMany returns the committed state of each key (nil where absent), in the
// order given.
func (s *Snapshot) GetMany(keys []CompositeKey) ([]*VersionedValue, error) {
	out := make([]*VersionedValue, len(keys))
	for i, k := range keys {
		vv, err := s.Get(k.Namespace, k.Key)
		if err != nil {
			return nil, err
		}
		out[i] = vv
	}
	return out, nil
}

// GetVersions returns the committed version of each key (nil where absent),
// in the order given. It is the bulk pre-load MVCC validation uses.
func (s *Snapshot) GetVersions(keys []CompositeKey) ([]*Version, error) {
	out := make([]*Version, len(keys))
	for i, k := range keys {
		raw, err := s.snap.Get(stateKey(k.Namespace, k.Key), nil)
		if errors.Is(err, leveldb.ErrNotFound) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("statedb: get %q/%q: %w", k.Namespace, k.Key, err)
		}
		v, _, err := decodeVersion(raw)
		if err != nil {
			return nil, fmt.Errorf("statedb: get %q/%q: %w", k.Namespace, k.Key, err)
		}
		out[i] = &v
	}
	return out, nil
}

// KV is one range-scan result.
type KV struct {
	Key string
	VersionedValue
}

// Iterator walks keys of one namespace in ascending order.
type Iterator struct {
	it    iterator.Iterator
	nsLen int
}

// Range scans namespace ns over [startKey, endKey); an empty endKey means to
// the end of the namespace. Close the iterator when done.
func (s *Snapshot) Range(ns, startKey, endKey string) *Iterator {
	prefix := stateKey(ns, "")
	r := &util.Range{Start: stateKey(ns, startKey)}
	if endKey == "" {
		r.Limit = util.BytesPrefix(prefix).Limit
	} else {
		r.Limit = stateKey(ns, endKey)
	}
	return &Iterator{it: s.snap.NewIterator(r, nil), nsLen: len(prefix)}
}

// Next returns the next entry, or nil at the end.
func (it *Iterator) Next() (*KV, error) {
	if !it.it.Next() {
		if err := it.it.Error(); err != nil {
			return nil, fmt.Errorf("statedb: range scan: %w", err)
		}
		return nil, nil
	}
	vv, err := decodeValue(it.it.Value())
	if err != nil {
		return nil, fmt.Errorf("statedb: range scan: %w", err)
	}
	return &KV{Key: string(it.it.Key()[it.nsLen:]), VersionedValue: *vv}, nil
}

// Close releases the iterator.
func (it *Iterator) Close() { it.it.Release() }

// HistoryIterator walks the transactions that wrote one key, newest first.
type HistoryIterator struct {
	it      iterator.Iterator
	started bool
}

// History returns the heights of the transactions that wrote (ns, key),
// newest first.
func (s *Snapshot) History(ns, key string) *HistoryIterator {
	return &HistoryIterator{it: s.snap.NewIterator(util.BytesPrefix(historyPrefix(ns, key)), nil)}
}

// Next returns the next height; ok is false at the end.
func (h *HistoryIterator) Next() (v Version, ok bool, err error) {
	var moved bool
	if !h.started {
		h.started = true
		moved = h.it.Last()
	} else {
		moved = h.it.Prev()
	}
	if !moved {
		if err := h.it.Error(); err != nil {
			return Version{}, false, fmt.Errorf("statedb: history scan: %w", err)
		}
		return Version{}, false, nil
	}
	k := h.it.Key()
	if len(k) < 16 {
		return Version{}, false, fmt.Errorf("%w: history key too short", ErrCorrupt)
	}
	tail := k[len(k)-16:]
	b, _ := decodeUint64(tail[:8])
	t, _ := decodeUint64(tail[8:])
	return Version{BlockNum: b, TxNum: t}, true, nil
}

// Close releases the iterator.
func (h *HistoryIterator) Close() { h.it.Release() }

// Digest is a deterministic fingerprint of the whole state: SHA-256 over every
// key with its value, version and metadata, in key order, each part length-
// prefixed. Peers that committed the same chain have equal digests; history
// and bookkeeping entries are left out.
func (s *Snapshot) Digest() (digest []byte, keys int, err error) {
	it := s.snap.NewIterator(util.BytesPrefix([]byte{prefixState}), nil)
	defer it.Release()
	h := sha256.New()
	var lenBuf [binary.MaxVarintLen64]byte
	for it.Next() {
		for _, part := range [][]byte{it.Key(), it.Value()} {
			h.Write(lenBuf[:binary.PutUvarint(lenBuf[:], uint64(len(part)))])
			h.Write(part)
		}
		keys++
	}
	if err := it.Error(); err != nil {
		return nil, 0, fmt.Errorf("statedb: digest: %w", err)
	}
	return h.Sum(nil), keys, nil
}
