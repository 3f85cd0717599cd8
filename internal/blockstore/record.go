package blockstore

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
)

// A record is one marshalled block in a segment file:
//
//	length  uint32 little-endian  (payload bytes)
//	crc     uint32 little-endian  (CRC32C over the 4 length bytes, then the payload)
//	payload [length]byte
//
// The checksum covers the length too, so a flipped length bit cannot make a
// neighbouring byte range pass as a record.
const (
	recordHeaderSize = 8
	// maxRecordSize bounds what a length prefix may claim, so a corrupt prefix is
	// rejected before anything is allocated. Fabric blocks are capped far lower
	// by AbsoluteMaxBytes.
	maxRecordSize = 1 << 30
)

// castagnoli is a read-only lookup table, built once; it is not mutable state.
var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// Reasons a record cannot be read. errIncomplete is what a crash mid-write leaves;
// errChecksum is what garbage or bit rot looks like.
var (
	errIncomplete = errors.New("incomplete record")
	errChecksum   = errors.New("record checksum mismatch")
	errTooLarge   = errors.New("record length out of range")
)

func recordChecksum(hdr []byte, payload []byte) uint32 {
	c := crc32.Update(0, castagnoli, hdr[:4])
	return crc32.Update(c, castagnoli, payload)
}

// encodeRecord frames payload as a record.
func encodeRecord(payload []byte) []byte {
	rec := make([]byte, recordHeaderSize+len(payload))
	binary.LittleEndian.PutUint32(rec[0:4], uint32(len(payload)))
	copy(rec[recordHeaderSize:], payload)
	binary.LittleEndian.PutUint32(rec[4:8], recordChecksum(rec[0:4], payload))
	return rec
}

// readRecord reads the record starting at off in a file of the given size and
// returns its payload and the offset just past it. It never allocates more than
// the file can hold, whatever the length prefix claims.
func readRecord(r io.ReaderAt, off, size int64) (payload []byte, next int64, err error) {
	if off < 0 || off > size {
		return nil, 0, fmt.Errorf("%w: offset %d outside file of %d bytes", errIncomplete, off, size)
	}
	if size-off < recordHeaderSize {
		return nil, 0, fmt.Errorf("%w: %d header bytes at offset %d", errIncomplete, size-off, off)
	}
	var hdr [recordHeaderSize]byte
	if _, err := r.ReadAt(hdr[:], off); err != nil {
		return nil, 0, fmt.Errorf("read record header at %d: %w", off, err)
	}
	n := int64(binary.LittleEndian.Uint32(hdr[0:4]))
	if n > maxRecordSize {
		return nil, 0, fmt.Errorf("%w: %d bytes at offset %d", errTooLarge, n, off)
	}
	if size-off-recordHeaderSize < n {
		return nil, 0, fmt.Errorf("%w: %d of %d payload bytes at offset %d", errIncomplete, size-off-recordHeaderSize, n, off)
	}
	payload = make([]byte, n)
	if _, err := r.ReadAt(payload, off+recordHeaderSize); err != nil && n > 0 {
		return nil, 0, fmt.Errorf("read record payload at %d: %w", off, err)
	}
	if got, want := recordChecksum(hdr[:], payload), binary.LittleEndian.Uint32(hdr[4:8]); got != want {
		return nil, 0, fmt.Errorf("%w at offset %d", errChecksum, off)
	}
	return payload, off + recordHeaderSize + n, nil
}
