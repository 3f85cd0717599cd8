package blockstore

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"sync"
	"testing"
	"time"

	cb "github.com/hyperledger/fabric-protos-go-apiv2/common"
	"github.com/syndtr/goleveldb/leveldb/util"
	"google.golang.org/protobuf/proto"

	"github.com/cairn-ledger/cairn/internal/block"
)

func mustMarshal(t testing.TB, m proto.Message) []byte {
	t.Helper()
	b, err := proto.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// envelope builds a marshalled envelope whose channel header carries txID,
// padded with pad bytes of payload data.
func envelope(t testing.TB, txID string, pad int) []byte {
	t.Helper()
	ch := mustMarshal(t, &cb.ChannelHeader{Type: int32(cb.HeaderType_ENDORSER_TRANSACTION), ChannelId: "mychannel", TxId: txID})
	payload := mustMarshal(t, &cb.Payload{Header: &cb.Header{ChannelHeader: ch}, Data: bytes.Repeat([]byte{'x'}, pad)})
	return mustMarshal(t, &cb.Envelope{Payload: payload, Signature: []byte("sig")})
}

// chain builds consecutive blocks.
type chain struct {
	t    testing.TB
	next uint64
	prev []byte
}

func newChain(t testing.TB) *chain { return &chain{t: t} }

// block returns the next block, with one envelope per tx ID.
func (c *chain) block(txIDs ...string) *cb.Block {
	data := make([][]byte, len(txIDs))
	for i, id := range txIDs {
		data[i] = envelope(c.t, id, 16)
	}
	return c.blockData(data)
}

func (c *chain) blockData(data [][]byte) *cb.Block {
	b := block.New(c.next, c.prev, data)
	c.next++
	c.prev = block.HeaderHash(b.Header)
	return b
}

func openStore(t testing.TB, cfg Config) *Store {
	t.Helper()
	s, err := Open(cfg)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

func appendAll(t testing.TB, s *Store, blocks ...*cb.Block) {
	t.Helper()
	for _, b := range blocks {
		if err := s.Append(b); err != nil {
			t.Fatalf("Append(%d): %v", b.Header.Number, err)
		}
	}
}

// checkBlocks checks the store holds exactly want, by every lookup.
func checkBlocks(t *testing.T, s *Store, want []*cb.Block) {
	t.Helper()
	if got := s.Height(); got != uint64(len(want)) {
		t.Fatalf("Height() = %d, want %d", got, len(want))
	}
	for i, w := range want {
		got, err := s.Block(uint64(i))
		if err != nil {
			t.Fatalf("Block(%d): %v", i, err)
		}
		if !proto.Equal(got, w) {
			t.Fatalf("Block(%d) differs from what was appended", i)
		}
		byHash, err := s.BlockByHash(block.HeaderHash(w.Header))
		if err != nil || !proto.Equal(byHash, w) {
			t.Fatalf("BlockByHash(block %d) = %v, %v", i, byHash.GetHeader().GetNumber(), err)
		}
	}
	if _, err := s.Block(uint64(len(want))); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Block(height) error = %v, want ErrNotFound", err)
	}
	last, err := s.LastBlock()
	if len(want) == 0 {
		if !errors.Is(err, ErrNotFound) {
			t.Fatalf("LastBlock() on empty store error = %v, want ErrNotFound", err)
		}
		return
	}
	if err != nil || !proto.Equal(last, want[len(want)-1]) {
		t.Fatalf("LastBlock() = block %d, %v", last.GetHeader().GetNumber(), err)
	}
}

func TestAppendReadRoundTrip(t *testing.T) {
	s := openStore(t, Config{Dir: t.TempDir()})
	checkBlocks(t, s, nil)
	c := newChain(t)
	var blocks []*cb.Block
	for i := range 10 {
		blocks = append(blocks, c.block(fmt.Sprintf("tx-%d-a", i), fmt.Sprintf("tx-%d-b", i)))
	}
	blocks = append(blocks, c.blockData(nil)) // an empty block is still a block
	appendAll(t, s, blocks...)
	checkBlocks(t, s, blocks)
	if _, err := s.BlockByHash([]byte("nope")); !errors.Is(err, ErrNotFound) {
		t.Fatalf("BlockByHash(unknown) error = %v, want ErrNotFound", err)
	}
}

func TestAppendRejects(t *testing.T) {
	s := openStore(t, Config{Dir: t.TempDir()})
	c := newChain(t)
	b0, b1 := c.block("a"), c.block("b")

	if err := s.Append(b1); !errors.Is(err, ErrWrongNumber) {
		t.Fatalf("Append(block 1) on empty store error = %v, want ErrWrongNumber", err)
	}
	appendAll(t, s, b0)
	if err := s.Append(b0); !errors.Is(err, ErrWrongNumber) {
		t.Fatalf("Append(block 0 again) error = %v, want ErrWrongNumber", err)
	}
	forked := block.New(1, []byte("not the previous hash"), nil)
	if err := s.Append(forked); !errors.Is(err, ErrHashChain) {
		t.Fatalf("Append(forked block 1) error = %v, want ErrHashChain", err)
	}
	badData := block.New(1, c.prev, [][]byte{[]byte("x")})
	badData.Header.PreviousHash = block.HeaderHash(b0.Header)
	badData.Data.Data[0] = []byte("y")
	if err := s.Append(badData); !errors.Is(err, block.ErrMalformed) {
		t.Fatalf("Append(block with wrong data hash) error = %v, want ErrMalformed", err)
	}
	if err := s.Append(&cb.Block{}); !errors.Is(err, block.ErrMalformed) {
		t.Fatalf("Append(empty block) error = %v, want ErrMalformed", err)
	}
	if err := s.Append(b1); err != nil {
		t.Fatalf("Append(block 1) after rejections: %v", err)
	}
	checkBlocks(t, s, []*cb.Block{b0, b1})
}

func TestReopenKeepsEverything(t *testing.T) {
	dir := t.TempDir()
	c := newChain(t)
	var blocks []*cb.Block
	for i := range 5 {
		blocks = append(blocks, c.block(fmt.Sprintf("tx%d", i)))
	}
	s, err := Open(Config{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	appendAll(t, s, blocks[:3]...)
	if err := s.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if err := s.Append(blocks[3]); !errors.Is(err, ErrClosed) {
		t.Fatalf("Append after Close error = %v, want ErrClosed", err)
	}
	if _, err := s.Block(0); !errors.Is(err, ErrClosed) {
		t.Fatalf("Block after Close error = %v, want ErrClosed", err)
	}

	s = openStore(t, Config{Dir: dir})
	checkBlocks(t, s, blocks[:3])
	appendAll(t, s, blocks[3:]...)
	checkBlocks(t, s, blocks)
	if n, i, ok, err := s.TxLocation("tx4"); err != nil || !ok || n != 4 || i != 0 {
		t.Fatalf("TxLocation(tx4) = %d, %d, %v, %v", n, i, ok, err)
	}
}

func TestOpenTwiceFails(t *testing.T) {
	dir := t.TempDir()
	openStore(t, Config{Dir: dir})
	if s, err := Open(Config{Dir: dir}); err == nil {
		_ = s.Close()
		t.Fatal("second Open of the same directory succeeded")
	}
}

func TestVersion(t *testing.T) {
	t.Run("mismatch", func(t *testing.T) {
		dir := t.TempDir()
		s := openStore(t, Config{Dir: dir})
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, versionFile), []byte("cairn-blockstore 99\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		if _, err := Open(Config{Dir: dir}); !errors.Is(err, ErrVersion) {
			t.Fatalf("Open with a future VERSION error = %v, want ErrVersion", err)
		}
	})
	t.Run("missing with data", func(t *testing.T) {
		dir := t.TempDir()
		if err := os.WriteFile(filepath.Join(dir, segmentName(0)), []byte("old"), 0o644); err != nil {
			t.Fatal(err)
		}
		if _, err := Open(Config{Dir: dir}); !errors.Is(err, ErrVersion) {
			t.Fatalf("Open of a directory with segments but no VERSION error = %v, want ErrVersion", err)
		}
	})
	t.Run("bad config", func(t *testing.T) {
		if _, err := Open(Config{}); err == nil {
			t.Fatal("Open with empty Dir succeeded")
		}
		if _, err := Open(Config{Dir: t.TempDir(), MaxFileSize: -1}); err == nil {
			t.Fatal("Open with negative MaxFileSize succeeded")
		}
	})
}

// copyDir copies a closed store so each crash scenario starts from the same bytes.
func copyDir(t testing.TB, src, dst string) {
	t.Helper()
	err := filepath.Walk(src, func(path string, info os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, path)
		target := filepath.Join(dst, rel)
		if info.IsDir() {
			return os.MkdirAll(target, 0o755)
		}
		in, err := os.Open(path)
		if err != nil {
			return err
		}
		defer in.Close()
		out, err := os.Create(target)
		if err != nil {
			return err
		}
		if _, err := io.Copy(out, in); err != nil {
			_ = out.Close()
			return err
		}
		return out.Close()
	})
	if err != nil {
		t.Fatal(err)
	}
}

func fileSize(t testing.TB, path string) int64 {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return fi.Size()
}

// TestCrashTornLastRecord cuts the last segment at offsets inside the last
// record — what SIGKILL mid-write leaves — with the index still claiming the
// block, and checks Open rolls back to the previous height and appends resume.
func TestCrashTornLastRecord(t *testing.T) {
	pristine := t.TempDir()
	c := newChain(t)
	var blocks []*cb.Block
	for i := range 4 {
		blocks = append(blocks, c.block(fmt.Sprintf("tx%d", i), "shared"))
	}
	s, err := Open(Config{Dir: pristine})
	if err != nil {
		t.Fatal(err)
	}
	appendAll(t, s, blocks[:3]...)
	before := s.curSize
	appendAll(t, s, blocks[3])
	after := s.curSize
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	seg := segmentName(0)
	if got := fileSize(t, filepath.Join(pristine, seg)); got != after {
		t.Fatalf("segment size %d, want %d", got, after)
	}

	var offsets []int64
	for off := before; off < after; off++ {
		if off-before < 16 || after-off < 4 || (off-before)%37 == 0 {
			offsets = append(offsets, off)
		}
	}
	for _, off := range offsets {
		dir := t.TempDir()
		copyDir(t, pristine, dir)
		if err := os.Truncate(filepath.Join(dir, seg), off); err != nil {
			t.Fatal(err)
		}
		s, err := Open(Config{Dir: dir})
		if err != nil {
			t.Fatalf("cut at %d: Open: %v", off, err)
		}
		if s.Height() != 3 {
			t.Fatalf("cut at %d: Height() = %d, want 3", off, s.Height())
		}
		if got := fileSize(t, filepath.Join(dir, seg)); got != before {
			t.Fatalf("cut at %d: segment not truncated to %d, size %d", off, before, got)
		}
		if _, _, ok, _ := s.TxLocation("tx3"); ok {
			t.Fatalf("cut at %d: tx3 of the lost block is still indexed", off)
		}
		if _, err := s.BlockByHash(block.HeaderHash(blocks[3].Header)); !errors.Is(err, ErrNotFound) {
			t.Fatalf("cut at %d: lost block still found by hash: %v", off, err)
		}
		// A different block 3 takes its place; its tx IDs are indexed afresh.
		alt := block.New(3, block.HeaderHash(blocks[2].Header), [][]byte{envelope(t, "alt", 1)})
		if err := s.Append(alt); err != nil {
			t.Fatalf("cut at %d: Append after recovery: %v", off, err)
		}
		if n, _, ok, err := s.TxLocation("alt"); err != nil || !ok || n != 3 {
			t.Fatalf("cut at %d: TxLocation(alt) = %d, %v, %v", off, n, ok, err)
		}
		if n, _, ok, err := s.TxLocation("shared"); err != nil || !ok || n != 0 {
			t.Fatalf("cut at %d: TxLocation(shared) = %d, %v, %v", off, n, ok, err)
		}
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
		s = openStore(t, Config{Dir: dir})
		checkBlocks(t, s, append(append([]*cb.Block{}, blocks[:3]...), alt))
		_ = s.Close()
	}
}

func TestGarbageTailTruncated(t *testing.T) {
	for _, garbage := range [][]byte{
		{0},
		{0xff, 0xff, 0xff, 0xff, 1, 2, 3, 4, 5},
		bytes.Repeat([]byte{0}, 4096), // zeroed pages after a power cut
		[]byte("this is not a record, but its length prefix is small enough to fit in the file"),
	} {
		dir := t.TempDir()
		c := newChain(t)
		blocks := []*cb.Block{c.block("a"), c.block("b")}
		s := openStore(t, Config{Dir: dir})
		appendAll(t, s, blocks...)
		size := s.curSize
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
		f, err := os.OpenFile(filepath.Join(dir, segmentName(0)), os.O_WRONLY|os.O_APPEND, 0)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := f.Write(garbage); err != nil {
			t.Fatal(err)
		}
		_ = f.Close()

		s = openStore(t, Config{Dir: dir})
		checkBlocks(t, s, blocks)
		if got := fileSize(t, filepath.Join(dir, segmentName(0))); got != size {
			t.Fatalf("segment size after recovery = %d, want %d", got, size)
		}
		b := c.block("c")
		appendAll(t, s, b)
		checkBlocks(t, s, append(blocks, b))
	}
}

func TestReindex(t *testing.T) {
	build := func(t *testing.T, cfg Config) []*cb.Block {
		c := newChain(t)
		var blocks []*cb.Block
		for i := range 600 { // more than one reindex batch
			blocks = append(blocks, c.block(fmt.Sprintf("tx%d", i), "dup", ""))
		}
		s := openStore(t, cfg)
		appendAll(t, s, blocks...)
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
		return blocks
	}
	t.Run("index deleted", func(t *testing.T) {
		cfg := Config{Dir: t.TempDir(), MaxFileSize: 16 << 10, NoSync: true}
		blocks := build(t, cfg)
		if err := os.RemoveAll(filepath.Join(cfg.Dir, indexDirName)); err != nil {
			t.Fatal(err)
		}
		s := openStore(t, cfg)
		checkBlocks(t, s, blocks)
		if n, i, ok, err := s.TxLocation("dup"); err != nil || !ok || n != 0 || i != 1 {
			t.Fatalf("TxLocation(dup) after reindex = %d, %d, %v, %v; want first occurrence 0, 1", n, i, ok, err)
		}
		if n, _, ok, err := s.TxLocation("tx599"); err != nil || !ok || n != 599 {
			t.Fatalf("TxLocation(tx599) after reindex = %d, %v, %v", n, ok, err)
		}
	})
	t.Run("index corrupt", func(t *testing.T) {
		cfg := Config{Dir: t.TempDir(), NoSync: true}
		blocks := build(t, cfg)
		idx := filepath.Join(cfg.Dir, indexDirName)
		entries, err := os.ReadDir(idx)
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range entries {
			if filepath.Ext(e.Name()) == "" && len(e.Name()) > 8 && e.Name()[:8] == "MANIFEST" {
				if err := os.WriteFile(filepath.Join(idx, e.Name()), []byte("garbage manifest"), 0o644); err != nil {
					t.Fatal(err)
				}
			}
		}
		s := openStore(t, cfg)
		checkBlocks(t, s, blocks)
	})
}

// TestCrashBetweenWriteAndIndex stops Append after the record is durable and
// before the index is written, as a SIGKILL there would.
func TestCrashBetweenWriteAndIndex(t *testing.T) {
	dir := t.TempDir()
	c := newChain(t)
	blocks := []*cb.Block{c.block("a"), c.block("b"), c.block("c")}
	s, err := Open(Config{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	appendAll(t, s, blocks[:2]...)
	crash := errors.New("simulated crash")
	s.beforeIndex = func() error { return crash }
	if err := s.Append(blocks[2]); !errors.Is(err, crash) {
		t.Fatalf("Append with crash hook error = %v", err)
	}
	if s.Height() != 2 {
		t.Fatalf("Height() after unindexed append = %d, want 2", s.Height())
	}
	if err := s.Append(blocks[2]); err == nil {
		t.Fatal("Append on a broken store succeeded")
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = openStore(t, Config{Dir: dir})
	checkBlocks(t, s, blocks)
	if n, _, ok, err := s.TxLocation("c"); err != nil || !ok || n != 2 {
		t.Fatalf("TxLocation(c) = %d, %v, %v", n, ok, err)
	}
}

// storeWithDamage appends n blocks to a fresh store opened with cfg (its Dir
// is a new temporary directory), closes it and flips a payload byte of block
// bad, leaving the records around it intact.
func storeWithDamage(t *testing.T, cfg Config, n, bad int) (string, []*cb.Block) {
	t.Helper()
	cfg.Dir = t.TempDir()
	c := newChain(t)
	s, err := Open(cfg)
	if err != nil {
		t.Fatal(err)
	}
	var blocks []*cb.Block
	var off int64
	for i := range n {
		if i == bad {
			off = s.curSize
		}
		b := c.block(fmt.Sprintf("tx%d", i))
		appendAll(t, s, b)
		blocks = append(blocks, b)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(cfg.Dir, segmentName(0))
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	raw[off+recordHeaderSize+10] ^= 0xff
	if err := os.WriteFile(path, raw, 0o644); err != nil {
		t.Fatal(err)
	}
	return cfg.Dir, blocks
}

func TestMiddleCorruption(t *testing.T) {
	setup := func(t *testing.T) string {
		dir, _ := storeWithDamage(t, Config{}, 3, 1)
		return dir
	}
	t.Run("read reports it", func(t *testing.T) {
		dir := setup(t)
		s := openStore(t, Config{Dir: dir})
		if _, err := s.Block(1); !errors.Is(err, ErrCorrupt) {
			t.Fatalf("Block(1) error = %v, want ErrCorrupt", err)
		}
		if _, err := s.Block(2); err != nil {
			t.Fatalf("Block(2): %v", err)
		}
	})
	t.Run("rescan refuses to truncate", func(t *testing.T) {
		dir := setup(t)
		if err := os.RemoveAll(filepath.Join(dir, indexDirName)); err != nil {
			t.Fatal(err)
		}
		if _, err := Open(Config{Dir: dir}); !errors.Is(err, ErrCorrupt) {
			t.Fatalf("Open with corrupt middle record error = %v, want ErrCorrupt", err)
		}
	})
	t.Run("missing segment", func(t *testing.T) {
		dir := t.TempDir()
		c := newChain(t)
		s := openStore(t, Config{Dir: dir, MaxFileSize: 1})
		appendAll(t, s, c.block("a"), c.block("b"), c.block("c"))
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
		if err := os.Remove(filepath.Join(dir, segmentName(1))); err != nil {
			t.Fatal(err)
		}
		if _, err := Open(Config{Dir: dir}); !errors.Is(err, ErrCorrupt) {
			t.Fatalf("Open with a missing segment error = %v, want ErrCorrupt", err)
		}
	})
}

func TestSegmentRollover(t *testing.T) {
	dir := t.TempDir()
	cfg := Config{Dir: dir, MaxFileSize: 2 << 10}
	s := openStore(t, cfg)
	c := newChain(t)
	var blocks []*cb.Block
	for i := range 20 {
		b := c.blockData([][]byte{envelope(t, fmt.Sprintf("tx%d", i), 700)})
		blocks = append(blocks, b)
	}
	blocks = append(blocks, c.blockData([][]byte{envelope(t, "big", 5000)})) // larger than a segment
	blocks = append(blocks, c.block("after-big"))
	appendAll(t, s, blocks...)
	checkBlocks(t, s, blocks)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	var segs int
	for i := 0; ; i++ {
		if _, err := os.Stat(filepath.Join(dir, segmentName(i))); err != nil {
			break
		}
		segs++
		if size := fileSize(t, filepath.Join(dir, segmentName(i))); size > cfg.MaxFileSize && i != segs-1 {
			// Only a segment holding a single oversized block may exceed the limit.
			raw, _ := os.ReadFile(filepath.Join(dir, segmentName(i)))
			if _, next, err := readRecord(bytes.NewReader(raw), 0, size); err != nil || next != size {
				t.Fatalf("segment %d is %d bytes, over the limit with more than one record", i, size)
			}
		}
	}
	if segs < 5 {
		t.Fatalf("%d segments, want rollover into several", segs)
	}
	s = openStore(t, cfg)
	checkBlocks(t, s, blocks)
	b := c.block("more")
	appendAll(t, s, b)
	checkBlocks(t, s, append(blocks, b))

	// A crash just after a roll leaves an empty last segment; a torn record
	// before it is still the tail.
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	last := 0
	for ; ; last++ {
		if _, err := os.Stat(filepath.Join(dir, segmentName(last+1))); err != nil {
			break
		}
	}
	lastPath := filepath.Join(dir, segmentName(last))
	if err := os.Truncate(lastPath, fileSize(t, lastPath)-3); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, segmentName(last+1)), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	s = openStore(t, cfg)
	checkBlocks(t, s, blocks)
	if _, err := os.Stat(filepath.Join(dir, segmentName(last+1))); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("empty segment after the torn tail was not removed: %v", err)
	}
	appendAll(t, s, b)
	checkBlocks(t, s, append(blocks, b))
}

func TestTxLocation(t *testing.T) {
	dir := t.TempDir()
	s := openStore(t, Config{Dir: dir})
	c := newChain(t)
	unparsable := [][]byte{
		[]byte("not an envelope \xff\xff"),
		mustMarshal(t, &cb.Envelope{Payload: []byte("\xff\xff not a payload")}),
		mustMarshal(t, &cb.Envelope{Payload: mustMarshal(t, &cb.Payload{})}), // no header
	}
	b0 := c.blockData([][]byte{envelope(t, "a", 1), envelope(t, "b", 1), envelope(t, "a", 1)})
	b1 := c.blockData(append(append([][]byte{}, unparsable...), envelope(t, "", 1), envelope(t, "c", 1), envelope(t, "b", 1)))
	b2 := c.blockData([][]byte{envelope(t, "c", 1), envelope(t, "d", 1)})
	appendAll(t, s, b0, b1, b2)

	check := func(t *testing.T, s *Store) {
		t.Helper()
		for _, tc := range []struct {
			txID  string
			block uint64
			tx    int
			found bool
		}{
			{"a", 0, 0, true}, // duplicate later in the same block
			{"b", 0, 1, true}, // duplicate in a later block
			{"c", 1, 4, true}, // after unparsable envelopes, duplicated in block 2
			{"d", 2, 1, true},
			{"", 0, 0, false},
			{"missing", 0, 0, false},
		} {
			n, i, found, err := s.TxLocation(tc.txID)
			if err != nil || found != tc.found || (found && (n != tc.block || i != tc.tx)) {
				t.Errorf("TxLocation(%q) = %d, %d, %v, %v; want %d, %d, %v", tc.txID, n, i, found, err, tc.block, tc.tx, tc.found)
			}
			b, err := s.BlockByTxID(tc.txID)
			switch {
			case tc.found && (err != nil || b.Header.Number != tc.block):
				t.Errorf("BlockByTxID(%q) = %v, %v; want block %d", tc.txID, b.GetHeader().GetNumber(), err, tc.block)
			case !tc.found && !errors.Is(err, ErrNotFound):
				t.Errorf("BlockByTxID(%q) error = %v, want ErrNotFound", tc.txID, err)
			}
		}
	}
	check(t, s)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	// Rebuilding the index from the files must reach the same answers.
	if err := os.RemoveAll(filepath.Join(dir, indexDirName)); err != nil {
		t.Fatal(err)
	}
	check(t, openStore(t, Config{Dir: dir}))
}

func TestWait(t *testing.T) {
	base := runtime.NumGoroutine()
	s := openStore(t, Config{Dir: t.TempDir(), NoSync: true})
	c := newChain(t)
	ctx := context.Background()

	// Nothing to wait for: height already past n.
	appendAll(t, s, c.block("a"))
	if err := s.Wait(ctx, 0); err != nil {
		t.Fatalf("Wait(0) at height 1: %v", err)
	}

	// Wakes on append.
	woke := make(chan error, 3)
	for range 3 {
		go func() { woke <- s.Wait(ctx, 1) }()
	}
	select {
	case err := <-woke:
		t.Fatalf("Wait(1) returned %v before block 1 was appended", err)
	case <-time.After(20 * time.Millisecond):
	}
	appendAll(t, s, c.block("b"))
	for range 3 {
		select {
		case err := <-woke:
			if err != nil {
				t.Fatalf("Wait(1): %v", err)
			}
		case <-time.After(5 * time.Second):
			t.Fatal("Wait(1) did not wake after block 1 was appended")
		}
	}

	// Honours ctx.
	cctx, cancel := context.WithCancel(ctx)
	go func() { woke <- s.Wait(cctx, 5) }()
	cancel()
	select {
	case err := <-woke:
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("Wait with cancelled ctx = %v, want context.Canceled", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Wait did not return after ctx was cancelled")
	}
	dctx, dcancel := context.WithTimeout(ctx, 10*time.Millisecond)
	defer dcancel()
	if err := s.Wait(dctx, 5); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Wait past deadline = %v, want DeadlineExceeded", err)
	}

	// Close wakes waiters.
	go func() { woke <- s.Wait(ctx, 100) }()
	time.Sleep(10 * time.Millisecond)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-woke:
		if !errors.Is(err, ErrClosed) {
			t.Fatalf("Wait across Close = %v, want ErrClosed", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Wait did not return after Close")
	}

	// No goroutine left behind by the store or by Wait.
	deadline := time.Now().Add(2 * time.Second)
	for runtime.NumGoroutine() > base && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	if n := runtime.NumGoroutine(); n > base {
		t.Fatalf("%d goroutines after Close, %d before the test", n, base)
	}
}

// TestConcurrentReaders runs readers against a store being appended to; run
// it under -race.
func TestConcurrentReaders(t *testing.T) {
	s := openStore(t, Config{Dir: t.TempDir(), MaxFileSize: 8 << 10, NoSync: true})
	c := newChain(t)
	const total = 200
	blocks := make([]*cb.Block, total)
	for i := range blocks {
		blocks[i] = c.block(fmt.Sprintf("tx%d", i))
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()

	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for r := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(r), 1))
			for next := uint64(0); next < total; next++ {
				// Deliver-style follower: wait for each block in turn.
				if err := s.Wait(ctx, next); err != nil {
					errs <- fmt.Errorf("Wait(%d): %w", next, err)
					return
				}
				b, err := s.Block(next)
				if err != nil || !proto.Equal(b, blocks[next]) {
					errs <- fmt.Errorf("Block(%d) = %v", next, err)
					return
				}
				// Random lookups of anything already visible.
				h := s.Height()
				k := rng.Uint64N(h)
				if _, err := s.BlockByHash(block.HeaderHash(blocks[k].Header)); err != nil {
					errs <- fmt.Errorf("BlockByHash(block %d) at height %d: %w", k, h, err)
					return
				}
				if n, _, ok, err := s.TxLocation(fmt.Sprintf("tx%d", k)); err != nil || !ok || n != k {
					errs <- fmt.Errorf("TxLocation(tx%d) = %d, %v, %v", k, n, ok, err)
					return
				}
				if _, err := s.LastBlock(); err != nil {
					errs <- fmt.Errorf("LastBlock: %w", err)
					return
				}
			}
		}()
	}
	for _, b := range blocks {
		if err := s.Append(b); err != nil {
			cancel()
			t.Fatalf("Append(%d): %v", b.Header.Number, err)
		}
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

func TestAppendEncoded(t *testing.T) {
	dir := t.TempDir()
	s := openStore(t, Config{Dir: dir})
	c := newChain(t)
	b0, b1, b2 := c.block("a"), c.block("b", "c"), c.block("d")
	appendAll(t, s, b0)
	raw1 := mustMarshal(t, b1)
	if err := s.AppendEncoded(mustMarshal(t, b2), b2); !errors.Is(err, ErrWrongNumber) {
		t.Fatalf("AppendEncoded(block 2) at height 1 error = %v, want ErrWrongNumber", err)
	}
	forked := block.New(1, []byte("not the previous hash"), nil)
	if err := s.AppendEncoded(mustMarshal(t, forked), forked); !errors.Is(err, ErrHashChain) {
		t.Fatalf("AppendEncoded(forked block 1) error = %v, want ErrHashChain", err)
	}
	if err := s.AppendEncoded(nil, &cb.Block{}); !errors.Is(err, block.ErrMalformed) {
		t.Fatalf("AppendEncoded(empty block) error = %v, want ErrMalformed", err)
	}
	if err := s.AppendEncoded(raw1, b1); err != nil {
		t.Fatalf("AppendEncoded(block 1): %v", err)
	}
	appendAll(t, s, b2) // Append and AppendEncoded mix
	checkBlocks(t, s, []*cb.Block{b0, b1, b2})
	if n, i, found, err := s.TxLocation("c"); err != nil || !found || n != 1 || i != 1 {
		t.Fatalf("TxLocation(c) = %d, %d, %v, %v; want 1, 1, true", n, i, found, err)
	}
	// The record is raw verbatim, not a re-encoding.
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = openStore(t, Config{Dir: dir})
	loc, ok, err := s.indexedLocation(1)
	if err != nil || !ok {
		t.Fatalf("indexedLocation(1) = %v, %v", ok, err)
	}
	got, _, err := readRecord(s.segs[loc.seg], loc.off, loc.end())
	if err != nil || !bytes.Equal(got, raw1) {
		t.Fatalf("record of block 1 = %d bytes (%v), want the %d bytes handed to AppendEncoded", len(got), err, len(raw1))
	}
}

func TestNoTxIndex(t *testing.T) {
	dir := t.TempDir()
	s := openStore(t, Config{Dir: dir, NoTxIndex: true})
	c := newChain(t)
	blocks := []*cb.Block{c.block("a", "b"), c.block("c")}
	appendAll(t, s, blocks...)
	checkBlocks(t, s, blocks)
	if _, _, found, err := s.TxLocation("a"); found || !errors.Is(err, ErrNoTxIndex) {
		t.Fatalf("TxLocation without tx index = %v, %v; want ErrNoTxIndex", found, err)
	}
	if _, err := s.BlockByTxID("a"); !errors.Is(err, ErrNoTxIndex) {
		t.Fatalf("BlockByTxID without tx index error = %v, want ErrNoTxIndex", err)
	}
	countTx := func(s *Store) int {
		it := s.db.NewIterator(util.BytesPrefix([]byte{prefixTx}), nil)
		defer it.Release()
		n := 0
		for it.Next() {
			n++
		}
		return n
	}
	if n := countTx(s); n != 0 {
		t.Fatalf("index holds %d tx-ID entries, want 0", n)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	// Opening with tx IDs indexed rebuilds the index with every block's tx IDs.
	s = openStore(t, Config{Dir: dir})
	checkBlocks(t, s, blocks)
	if n, i, found, err := s.TxLocation("b"); err != nil || !found || n != 0 || i != 1 {
		t.Fatalf("TxLocation(b) after switching the index on = %d, %d, %v, %v; want 0, 1, true", n, i, found, err)
	}
	more := c.block("d")
	appendAll(t, s, more)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	// And back: the tx-ID entries go.
	s = openStore(t, Config{Dir: dir, NoTxIndex: true})
	checkBlocks(t, s, append(blocks, more))
	if n := countTx(s); n != 0 {
		t.Fatalf("index holds %d tx-ID entries after switching the index off, want 0", n)
	}
}

// TestDeferSync: a store that syncs on demand keeps every block across
// segment rolls and a reopen, and refuses Sync once closed.
func TestDeferSync(t *testing.T) {
	dir := t.TempDir()
	s, err := Open(Config{Dir: dir, MaxFileSize: 2 << 10, DeferSync: true})
	if err != nil {
		t.Fatal(err)
	}
	c := newChain(t)
	var blocks []*cb.Block
	for i := range 12 {
		b := c.blockData([][]byte{envelope(t, fmt.Sprintf("tx%d", i), 700)})
		blocks = append(blocks, b)
		appendAll(t, s, b)
		if i%5 == 4 {
			if err := s.Sync(); err != nil {
				t.Fatalf("Sync: %v", err)
			}
		}
	}
	checkBlocks(t, s, blocks)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := s.Sync(); !errors.Is(err, ErrClosed) {
		t.Fatalf("Sync after Close = %v, want ErrClosed", err)
	}
	s = openStore(t, Config{Dir: dir, DeferSync: true})
	checkBlocks(t, s, blocks)
}

// TestDeferSyncCutsUnsyncedDamage: after a machine crash the unsynced appends
// of a DeferSync store may be damaged in any order. Open cuts the store at the
// first damaged record even when intact records follow it (and the index
// named them), so it never serves a block it cannot read; a store that syncs
// each append still reports such damage as corruption.
func TestDeferSyncCutsUnsyncedDamage(t *testing.T) {
	dir, blocks := storeWithDamage(t, Config{DeferSync: true}, 5, 2)
	saved := t.TempDir()
	copyDir(t, dir, saved)

	s := openStore(t, Config{Dir: dir, DeferSync: true})
	checkBlocks(t, s, blocks[:2])
	appendAll(t, s, blocks[2:]...) // what the raft log gives back
	checkBlocks(t, s, blocks)

	s2 := openStore(t, Config{Dir: saved})
	if _, err := s2.Block(2); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("without DeferSync: Block(2) error = %v, want ErrCorrupt", err)
	}
}
