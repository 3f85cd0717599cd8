package blockstore

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/cairn-ledger/cairn/internal/block"
)

// FuzzReadRecord feeds arbitrary bytes to the record decoder.
func FuzzReadRecord(f *testing.F) {
	f.Add([]byte{})
	f.Add(encodeRecord([]byte("payload")))
	f.Add(encodeRecord(nil))
	f.Add([]byte{0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0})
	f.Add(append(encodeRecord([]byte("a")), 1, 2, 3))
	f.Fuzz(func(t *testing.T, data []byte) {
		payload, next, err := readRecord(bytes.NewReader(data), 0, int64(len(data)))
		if err != nil {
			if !isRecordDamage(err) {
				t.Fatalf("readRecord error %v is not classified as damage", err)
			}
			return
		}
		if next > int64(len(data)) || !bytes.Equal(encodeRecord(payload), data[:next]) {
			t.Fatalf("readRecord accepted a record that does not re-encode to its bytes")
		}
	})
}

// FuzzOpenSegment uses arbitrary bytes as the only segment file, with no index
// or with the index of a real store (so the index disagrees with the file).
// Open must fail cleanly or recover to a store that reads back and appends.
func FuzzOpenSegment(f *testing.F) {
	template := f.TempDir()
	c := newChain(f)
	s, err := Open(Config{Dir: template, NoSync: true})
	if err != nil {
		f.Fatal(err)
	}
	var ends []int64
	for i := range 3 {
		appendAll(f, s, c.blockData([][]byte{envelope(f, string(rune('a'+i)), 8), envelope(f, "dup", 0)}))
		ends = append(ends, s.curSize)
	}
	if err := s.Close(); err != nil {
		f.Fatal(err)
	}
	valid, err := os.ReadFile(filepath.Join(template, segmentName(0)))
	if err != nil {
		f.Fatal(err)
	}

	for _, keep := range []bool{false, true} {
		f.Add(valid, keep)
		f.Add(valid[:ends[1]], keep)
		f.Add(valid[:ends[1]+5], keep)
		f.Add(valid[:len(valid)-1], keep)
		f.Add(append(bytes.Clone(valid), "garbage"...), keep)
		f.Add([]byte{}, keep)
		f.Add([]byte("\x05\x00\x00\x00\x00\x00\x00\x00hello"), keep)
		flipped := bytes.Clone(valid)
		flipped[ends[0]+recordHeaderSize+3] ^= 1
		f.Add(flipped, keep)
	}

	f.Fuzz(func(t *testing.T, data []byte, keepIndex bool) {
		dir := t.TempDir()
		if keepIndex {
			copyDir(t, template, dir)
		} else if err := os.WriteFile(filepath.Join(dir, versionFile), []byte(formatVersion+"\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, segmentName(0)), data, 0o644); err != nil {
			t.Fatal(err)
		}
		s, err := Open(Config{Dir: dir, NoSync: true})
		if err != nil {
			if !errors.Is(err, ErrCorrupt) {
				t.Fatalf("Open failed with an unclassified error: %v", err)
			}
			return
		}
		defer s.Close()
		h := s.Height()
		for n := range h {
			_, err := s.Block(n)
			// Open verifies only the tail; damage under blocks the index
			// vouches for is reported when they are read.
			if err != nil && !(keepIndex && errors.Is(err, ErrCorrupt)) {
				t.Fatalf("recovered height %d but Block(%d): %v", h, n, err)
			}
		}
		var prev []byte
		if h > 0 {
			last, err := s.LastBlock()
			if err != nil {
				t.Fatalf("recovered height %d but LastBlock: %v", h, err)
			}
			prev = block.HeaderHash(last.Header)
		}
		if err := s.Append(block.New(h, prev, [][]byte{envelope(t, "next", 0)})); err != nil {
			t.Fatalf("Append after recovery to height %d: %v", h, err)
		}
		if n, _, ok, err := s.TxLocation("next"); err != nil || !ok || n != h {
			t.Fatalf("TxLocation(next) = %d, %v, %v; want block %d", n, ok, err, h)
		}
	})
}
