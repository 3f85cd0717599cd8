// Package blockstore owns a channel's blocks on disk: append-only segment files
// of length-prefixed, CRC32C-checksummed records, plus a LevelDB index (block
// number, header hash and transaction ID to location). The segment files are the
// source of truth; the index is a cache of them that Open repairs — it truncates a
// record torn by a crash and indexes complete blocks the index missed — so the
// store survives SIGKILL at any instant.
//
// Concurrency: one writer (Append calls are serialised internally) and any number
// of concurrent readers. A block is visible to readers only once it is written
// (and, unless Config.NoSync, fsynced) and indexed. Close waits for in-flight
// calls, wakes every Wait, and makes later calls return ErrClosed. The store owns
// no goroutines.
package blockstore

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"

	cb "github.com/hyperledger/fabric-protos-go-apiv2/common"
	"github.com/syndtr/goleveldb/leveldb"
	"google.golang.org/protobuf/proto"

	"github.com/cairn-ledger/cairn/internal/block"
	"github.com/cairn-ledger/cairn/internal/fsutil"
)

// DefaultMaxFileSize is the segment size used when Config.MaxFileSize is 0.
const DefaultMaxFileSize int64 = 64 << 20

// Errors callers branch on. All errors returned by the store wrap one of these
// or carry the failing operation's context.
var (
	ErrWrongNumber = errors.New("blockstore: block number is not the next height")
	ErrHashChain   = errors.New("blockstore: previous hash does not match the last block")
	ErrNotFound    = errors.New("blockstore: not found")
	ErrClosed      = errors.New("blockstore: closed")
	// ErrCorrupt reports damage that is not a torn tail: a bad record followed by
	// good ones, a checksummed record that is not the expected block, or an index
	// entry that does not match the files.
	ErrCorrupt = errors.New("blockstore: corrupt")
	// ErrVersion reports an on-disk format this code does not read.
	ErrVersion = errors.New("blockstore: unsupported on-disk format version")
	// ErrNoTxIndex: the store was opened with Config.NoTxIndex.
	ErrNoTxIndex = errors.New("blockstore: transaction IDs are not indexed")
)

// Config configures a Store.
type Config struct {
	// Dir holds the VERSION file, the segment files and the index directory.
	Dir string
	// MaxFileSize is the size after which Append starts a new segment file;
	// 0 means DefaultMaxFileSize. A block larger than this gets a segment alone.
	MaxFileSize int64
	// NoSync skips fsync after each append. A machine crash (not a process
	// crash) may then lose recently appended blocks; Open still recovers a
	// consistent prefix.
	NoSync bool
	// DeferSync writes appends without fsync; Sync (and starting a new
	// segment) makes them durable. For a store whose blocks are also held
	// in a durable log until the owner calls Sync: the orderer's, behind
	// its raft WAL, which syncs before a raft snapshot lets the WAL drop
	// them. A crash loses only blocks that log still has. Sync also gives
	// back the page cache of the synced blocks but the newest few MiB.
	DeferSync bool
	// NoTxIndex leaves transaction IDs out of the index: appends skip a
	// LevelDB read and write per envelope, and TxLocation and BlockByTxID
	// return ErrNoTxIndex. For stores nobody looks transactions up in (the
	// orderer's). Opening a store with the other setting than it was last
	// opened with rebuilds the index from the segment files.
	NoTxIndex bool
}

// Validate reports a config Open cannot use.
func (c Config) Validate() error {
	if c.Dir == "" {
		return errors.New("blockstore: config: Dir is empty")
	}
	if c.MaxFileSize < 0 {
		return fmt.Errorf("blockstore: config: MaxFileSize %d is negative", c.MaxFileSize)
	}
	return nil
}

// Store is an open block store. See the package comment for its concurrency
// contract.
type Store struct {
	cfg Config
	db  *leveldb.DB

	// wmu serialises Append and guards the writer state below.
	wmu      sync.Mutex
	curSize  int64  // bytes in the last segment
	lastHash []byte // header hash of block height-1
	// broken is set when a write left the files or index in a state only Open
	// can repair; further appends are refused.
	broken error
	// beforeIndex, when set by a test, runs after the record is written and
	// before the index is updated; an error stops Append there, simulating a
	// crash between the two.
	beforeIndex func() error

	// smu guards closed and segs. Readers hold it shared for the whole call so
	// Close cannot close a file under them.
	smu    sync.RWMutex
	closed bool
	segs   []*os.File // indexed by segment number; the last one is appended to

	height atomic.Uint64

	// nmu guards notify, which is closed and replaced on each append so Wait
	// needs no polling.
	nmu    sync.Mutex
	notify chan struct{}
	done   chan struct{} // closed by Close
}

// Open opens the store in cfg.Dir, creating it if empty, and recovers from any
// crash: see the package comment.
func Open(cfg Config) (*Store, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.MaxFileSize == 0 {
		cfg.MaxFileSize = DefaultMaxFileSize
	}
	s := &Store{cfg: cfg, notify: make(chan struct{}), done: make(chan struct{})}
	if err := s.open(); err != nil {
		s.closeFiles()
		return nil, fmt.Errorf("open block store %s: %w", cfg.Dir, err)
	}
	return s, nil
}

// Close releases the files and the index. It waits for an in-flight Append and
// for in-flight reads, and wakes every Wait with ErrClosed.
func (s *Store) Close() error {
	s.wmu.Lock()
	defer s.wmu.Unlock()
	s.smu.Lock()
	defer s.smu.Unlock()
	if s.closed {
		return nil
	}
	s.closed = true
	close(s.done)
	var serr error
	if s.cfg.DeferSync && !s.cfg.NoSync && s.broken == nil && len(s.segs) > 0 {
		if err := s.segs[len(s.segs)-1].Sync(); err != nil {
			serr = fmt.Errorf("close: sync last segment: %w", err)
		}
	}
	return errors.Join(serr, s.closeFilesLocked())
}

func (s *Store) closeFiles() {
	s.smu.Lock()
	defer s.smu.Unlock()
	_ = s.closeFilesLocked()
}

func (s *Store) closeFilesLocked() error {
	var errs []error
	for i, f := range s.segs {
		if err := f.Close(); err != nil {
			errs = append(errs, fmt.Errorf("close segment %d: %w", i, err))
		}
	}
	s.segs = nil
	if s.db != nil {
		if err := s.db.Close(); err != nil {
			errs = append(errs, fmt.Errorf("close index: %w", err))
		}
		s.db = nil
	}
	return errors.Join(errs...)
}

// Height is the number of blocks in the store: the next block's number.
func (s *Store) Height() uint64 { return s.height.Load() }

// Append stores b as the next block. It must carry number Height() and, after
// the genesis block, the header hash of the previous block as PreviousHash.
// Append checks b's data hash and marshals it; a caller that already holds the
// block's encoding uses AppendEncoded.
func (s *Store) Append(b *cb.Block) error {
	if b.GetHeader() == nil || b.GetData() == nil {
		return fmt.Errorf("append block: %w: missing header or data", block.ErrMalformed)
	}
	n := b.Header.Number
	if !bytes.Equal(block.DataHash(b.Data), b.Header.DataHash) {
		// Stored blocks are read back through block.Unmarshal, which checks the
		// data hash; refusing here keeps an unreadable block off the disk.
		return fmt.Errorf("append block %d: %w: data hash does not match data", n, block.ErrMalformed)
	}
	raw, err := proto.Marshal(b)
	if err != nil {
		return fmt.Errorf("append block %d: marshal: %w", n, err)
	}
	return s.append(raw, b)
}

// AppendEncoded stores the block whose encoding is raw as the next block,
// writing raw verbatim, with the same number and hash-chain checks as Append.
// b is the caller's decoding of raw, used for the header and the index.
//
// The caller vouches that b is what block.Unmarshal(raw) returns (so raw
// decodes to b and b's data hash matches its data): AppendEncoded neither
// decodes raw nor hashes the data again. A raw that breaks this contract is
// written anyway and read back as ErrCorrupt.
func (s *Store) AppendEncoded(raw []byte, b *cb.Block) error {
	if b.GetHeader() == nil || b.GetData() == nil {
		return fmt.Errorf("append block: %w: missing header or data", block.ErrMalformed)
	}
	return s.append(raw, b)
}

func (s *Store) append(raw []byte, b *cb.Block) error {
	n := b.Header.Number
	if len(raw) > maxRecordSize {
		return fmt.Errorf("append block %d: %d bytes exceeds the %d-byte record limit", n, len(raw), maxRecordSize)
	}
	hash := block.HeaderHash(b.Header)

	s.wmu.Lock()
	defer s.wmu.Unlock()
	if err := s.checkOpen(); err != nil {
		return fmt.Errorf("append block %d: %w", n, err)
	}
	if s.broken != nil {
		return fmt.Errorf("append block %d: store needs reopening after an earlier failure: %w", n, s.broken)
	}
	if h := s.height.Load(); n != h {
		return fmt.Errorf("append block %d: %w: height is %d", n, ErrWrongNumber, h)
	}
	if n > 0 && !bytes.Equal(b.Header.PreviousHash, s.lastHash) {
		return fmt.Errorf("append block %d: %w: previous hash %x, last block hash %x", n, ErrHashChain, b.Header.PreviousHash, s.lastHash)
	}

	rec := encodeRecord(raw)
	if s.curSize > 0 && s.curSize+int64(len(rec)) > s.cfg.MaxFileSize {
		if err := s.roll(); err != nil {
			return fmt.Errorf("append block %d: %w", n, err)
		}
	}
	loc, err := s.write(rec)
	if err != nil {
		return fmt.Errorf("append block %d: %w", n, err)
	}
	if s.beforeIndex != nil {
		if err := s.beforeIndex(); err != nil {
			s.broken = err
			return fmt.Errorf("append block %d: %w", n, err)
		}
	}
	batch := new(leveldb.Batch)
	if err := s.indexBlock(batch, map[string]struct{}{}, b, hash, loc); err != nil {
		s.broken = err
		return fmt.Errorf("append block %d: %w", n, err)
	}
	// The index is not fsynced: the files are, and Open re-indexes what the
	// index lost.
	if err := s.db.Write(batch, nil); err != nil {
		s.broken = err
		return fmt.Errorf("append block %d: write index: %w", n, err)
	}
	s.curSize = loc.end()
	s.lastHash = hash
	s.publish(n + 1)
	return nil
}

func (s *Store) checkOpen() error {
	s.smu.RLock()
	defer s.smu.RUnlock()
	if s.closed {
		return ErrClosed
	}
	return nil
}

// write puts rec at the end of the last segment and makes it durable.
func (s *Store) write(rec []byte) (location, error) {
	s.smu.RLock()
	seg := len(s.segs) - 1
	f := s.segs[seg]
	s.smu.RUnlock()
	loc := location{seg: uint32(seg), off: s.curSize, length: uint32(len(rec) - recordHeaderSize)}
	if _, err := f.WriteAt(rec, s.curSize); err != nil {
		// Cut off whatever part landed so the next append starts clean; if
		// that fails too, only Open can sort the tail out.
		if terr := f.Truncate(s.curSize); terr != nil {
			s.broken = fmt.Errorf("truncate after failed write: %w", terr)
		}
		return location{}, fmt.Errorf("write segment %d: %w", seg, err)
	}
	if !s.cfg.NoSync && !s.cfg.DeferSync {
		if err := s.syncSegment(f, seg); err != nil {
			return location{}, err
		}
	}
	return loc, nil
}

// syncSegment fsyncs segment file f (number seg). Called with wmu held.
func (s *Store) syncSegment(f *os.File, seg int) error {
	if err := f.Sync(); err != nil {
		// After a failed fsync the page cache cannot be trusted to match
		// the disk; Open rereads the file.
		s.broken = fmt.Errorf("fsync segment %d: %w", seg, err)
		return s.broken
	}
	return nil
}

// Sync makes every appended block durable. Only a store opened with
// DeferSync has anything to do.
func (s *Store) Sync() error {
	if s.cfg.NoSync || !s.cfg.DeferSync {
		return nil
	}
	s.wmu.Lock()
	defer s.wmu.Unlock()
	if err := s.checkOpen(); err != nil {
		return fmt.Errorf("sync: %w", err)
	}
	if s.broken != nil {
		return fmt.Errorf("sync: store needs reopening after an earlier failure: %w", s.broken)
	}
	s.smu.RLock()
	seg := len(s.segs) - 1
	f := s.segs[seg]
	s.smu.RUnlock()
	if err := s.syncSegment(f, seg); err != nil {
		return fmt.Errorf("sync: %w", err)
	}
	s.dropCache(f, s.curSize)
	return nil
}

// cachedTail is how many bytes at the end of the synced blocks keep their
// page cache when Sync drops the rest: Deliver streams tailing the chain read
// the newest blocks soon after they are appended.
const cachedTail = 8 << 20

// dropCache evicts the cached pages of the first size bytes of a synced
// segment but its last cachedTail bytes (see fsutil.DropCache); a failure only
// costs memory. Called with wmu held.
func (s *Store) dropCache(f *os.File, size int64) {
	if size > cachedTail {
		_ = fsutil.DropCache(f, 0, size-cachedTail)
	}
}

// roll starts a new segment file.
func (s *Store) roll() error {
	s.smu.RLock()
	next := len(s.segs)
	last := s.segs[next-1]
	s.smu.RUnlock()
	// Sync only ever syncs the last segment: the one closed now goes first.
	if s.cfg.DeferSync && !s.cfg.NoSync {
		if err := s.syncSegment(last, next-1); err != nil {
			return err
		}
		s.dropCache(last, s.curSize)
	}
	f, err := os.OpenFile(s.segmentPath(next), os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		return fmt.Errorf("create segment %d: %w", next, err)
	}
	if !s.cfg.NoSync {
		if err := fsutil.SyncDir(s.cfg.Dir); err != nil {
			_ = f.Close()
			return fmt.Errorf("create segment %d: %w", next, err)
		}
	}
	s.smu.Lock()
	s.segs = append(s.segs, f)
	s.smu.Unlock()
	s.curSize = 0
	return nil
}

// publish makes height visible and wakes every Wait.
func (s *Store) publish(height uint64) {
	s.nmu.Lock()
	s.height.Store(height)
	close(s.notify)
	s.notify = make(chan struct{})
	s.nmu.Unlock()
}

// Wait blocks until Height() > n, ctx is done (returning ctx.Err()) or the
// store is closed (returning ErrClosed).
func (s *Store) Wait(ctx context.Context, n uint64) error {
	for {
		s.nmu.Lock()
		h, ch := s.height.Load(), s.notify
		s.nmu.Unlock()
		if h > n {
			return nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return ctx.Err()
		case <-s.done:
			return ErrClosed
		}
	}
}

// Block returns block n, or ErrNotFound if n >= Height().
func (s *Store) Block(n uint64) (*cb.Block, error) {
	s.smu.RLock()
	defer s.smu.RUnlock()
	if s.closed {
		return nil, ErrClosed
	}
	b, err := s.blockLocked(n)
	if err != nil {
		return nil, fmt.Errorf("block %d: %w", n, err)
	}
	return b, nil
}

func (s *Store) blockLocked(n uint64) (*cb.Block, error) {
	if n >= s.height.Load() {
		return nil, ErrNotFound
	}
	v, err := s.db.Get(numberKey(n), nil)
	if err != nil {
		if errors.Is(err, leveldb.ErrNotFound) {
			return nil, fmt.Errorf("%w: index has no location", ErrCorrupt)
		}
		return nil, fmt.Errorf("read index: %w", err)
	}
	loc, err := decodeLocation(v)
	if err != nil {
		return nil, err
	}
	if int(loc.seg) >= len(s.segs) {
		return nil, fmt.Errorf("%w: index points at missing segment %d", ErrCorrupt, loc.seg)
	}
	return readBlockAt(s.segs[loc.seg], loc, n)
}

// readBlockAt reads and checks the record at loc, which must hold block n.
func readBlockAt(f *os.File, loc location, n uint64) (*cb.Block, error) {
	payload, _, err := readRecord(f, loc.off, loc.end())
	if err != nil {
		return nil, fmt.Errorf("%w: segment %d: %v", ErrCorrupt, loc.seg, err)
	}
	if len(payload) != int(loc.length) {
		return nil, fmt.Errorf("%w: segment %d offset %d: record of %d bytes, index says %d", ErrCorrupt, loc.seg, loc.off, len(payload), loc.length)
	}
	// payload is this read's own buffer: the block may keep slices of it.
	b, err := block.UnmarshalShared(payload)
	if err != nil {
		return nil, fmt.Errorf("%w: segment %d offset %d: %v", ErrCorrupt, loc.seg, loc.off, err)
	}
	if b.Header.Number != n {
		return nil, fmt.Errorf("%w: segment %d offset %d holds block %d", ErrCorrupt, loc.seg, loc.off, b.Header.Number)
	}
	return b, nil
}

// LastBlock returns block Height()-1, or ErrNotFound if the store is empty.
func (s *Store) LastBlock() (*cb.Block, error) {
	h := s.Height()
	if h == 0 {
		return nil, fmt.Errorf("last block: %w", ErrNotFound)
	}
	return s.Block(h - 1)
}

// BlockByHash returns the block whose header hash is hash.
func (s *Store) BlockByHash(hash []byte) (*cb.Block, error) {
	s.smu.RLock()
	defer s.smu.RUnlock()
	if s.closed {
		return nil, ErrClosed
	}
	v, err := s.db.Get(hashKey(hash), nil)
	if errors.Is(err, leveldb.ErrNotFound) {
		return nil, fmt.Errorf("block with hash %x: %w", hash, ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("block with hash %x: read index: %w", hash, err)
	}
	n, err := decodeUint64(v)
	if err != nil {
		return nil, fmt.Errorf("block with hash %x: %w", hash, err)
	}
	b, err := s.blockLocked(n)
	if err != nil {
		return nil, fmt.Errorf("block with hash %x: block %d: %w", hash, n, err)
	}
	if !bytes.Equal(block.HeaderHash(b.Header), hash) {
		return nil, fmt.Errorf("block with hash %x: %w: index names block %d, whose hash differs", hash, ErrCorrupt, n)
	}
	return b, nil
}

// TxLocation reports the block and position of the first envelope whose channel
// header carries txID.
func (s *Store) TxLocation(txID string) (blockNum uint64, txNum int, found bool, err error) {
	if s.cfg.NoTxIndex {
		return 0, 0, false, fmt.Errorf("tx %s: %w", txID, ErrNoTxIndex)
	}
	if txID == "" {
		return 0, 0, false, nil
	}
	s.smu.RLock()
	defer s.smu.RUnlock()
	if s.closed {
		return 0, 0, false, ErrClosed
	}
	v, err := s.db.Get(txKey(txID), nil)
	if errors.Is(err, leveldb.ErrNotFound) {
		return 0, 0, false, nil
	}
	if err != nil {
		return 0, 0, false, fmt.Errorf("tx %s: read index: %w", txID, err)
	}
	blockNum, txNum, err = decodeTxValue(v)
	if err != nil {
		return 0, 0, false, fmt.Errorf("tx %s: %w", txID, err)
	}
	if blockNum >= s.height.Load() {
		// Indexed in the same batch as a block not yet published.
		return 0, 0, false, nil
	}
	return blockNum, txNum, true, nil
}

// BlockByTxID returns the block holding the first envelope with txID.
func (s *Store) BlockByTxID(txID string) (*cb.Block, error) {
	n, _, found, err := s.TxLocation(txID)
	if err != nil {
		return nil, err
	}
	if !found {
		return nil, fmt.Errorf("block with tx %s: %w", txID, ErrNotFound)
	}
	return s.Block(n)
}

// indexBlock adds b's index entries to batch. pending holds tx IDs already
// put in batch (not yet visible through the DB), so the first occurrence wins
// within a batch as well as across batches.
func (s *Store) indexBlock(batch *leveldb.Batch, pending map[string]struct{}, b *cb.Block, hash []byte, loc location) error {
	n := b.Header.Number
	batch.Put(numberKey(n), loc.encode())
	batch.Put(hashKey(hash), encodeUint64(n))
	if !s.cfg.NoTxIndex {
		if err := s.indexTxIDs(batch, pending, b); err != nil {
			return err
		}
	}
	batch.Put(keyHeight, encodeUint64(n+1))
	return nil
}

// indexTxIDs adds the first occurrence of each of b's tx IDs to batch.
func (s *Store) indexTxIDs(batch *leveldb.Batch, pending map[string]struct{}, b *cb.Block) error {
	n := b.Header.Number
	for i := range b.Data.Data {
		id, ok := TxID(b.Data.Data[i])
		if !ok || id == "" {
			// Unparsable envelopes stay in the block (the peer marks them
			// invalid) but have no tx ID to find them by.
			continue
		}
		if _, dup := pending[id]; dup {
			continue
		}
		key := txKey(id)
		has, err := s.db.Has(key, nil)
		if err != nil {
			return fmt.Errorf("read index: %w", err)
		}
		if has {
			continue
		}
		pending[id] = struct{}{}
		batch.Put(key, encodeTxValue(n, i))
	}
	return nil
}

func (s *Store) segmentPath(i int) string {
	return filepath.Join(s.cfg.Dir, segmentName(i))
}
