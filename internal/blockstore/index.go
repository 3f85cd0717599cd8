package blockstore

import (
	"encoding/binary"
	"fmt"
)

// LevelDB key layout of the index. Everything in it can be rebuilt from the
// segment files; it only saves a scan.
//
//	"v"                -> indexVersion (ASCII)
//	"h"                -> height: number of blocks indexed (uint64 BE)
//	"n" + number(BE)   -> location of the block's record (see location.encode)
//	"b" + header hash  -> block number (uint64 BE)
//	"t" + tx ID        -> block number (uint64 BE) + tx number (uint32 BE)
//	"x"                -> tx-ID mode: "tx" (tx IDs indexed) or "none"
//	                      (Config.NoTxIndex); absent in an index written
//	                      before the mode was recorded, which means "tx"
const indexVersion = "1"

var (
	keyIndexVersion = []byte("v")
	keyHeight       = []byte("h")
	keyTxMode       = []byte("x")
)

const (
	txModeIndexed = "tx"
	txModeNone    = "none"
)

const (
	prefixNumber = 'n'
	prefixHash   = 'b'
	prefixTx     = 't'
)

func numberKey(n uint64) []byte {
	k := make([]byte, 9)
	k[0] = prefixNumber
	binary.BigEndian.PutUint64(k[1:], n)
	return k
}

func hashKey(h []byte) []byte { return append([]byte{prefixHash}, h...) }

func txKey(txID string) []byte { return append([]byte{prefixTx}, txID...) }

func encodeUint64(v uint64) []byte { return binary.BigEndian.AppendUint64(nil, v) }

func decodeUint64(b []byte) (uint64, error) {
	if len(b) != 8 {
		return 0, fmt.Errorf("%w: index value of %d bytes, want 8", ErrCorrupt, len(b))
	}
	return binary.BigEndian.Uint64(b), nil
}

// location is where a block's record lives: segment, offset of the record
// header, and payload length.
type location struct {
	seg    uint32
	off    int64
	length uint32
}

func (l location) end() int64 { return l.off + recordHeaderSize + int64(l.length) }

func (l location) encode() []byte {
	b := make([]byte, 16)
	binary.BigEndian.PutUint32(b[0:4], l.seg)
	binary.BigEndian.PutUint64(b[4:12], uint64(l.off))
	binary.BigEndian.PutUint32(b[12:16], l.length)
	return b
}

func decodeLocation(b []byte) (location, error) {
	if len(b) != 16 {
		return location{}, fmt.Errorf("%w: location of %d bytes, want 16", ErrCorrupt, len(b))
	}
	off := binary.BigEndian.Uint64(b[4:12])
	if off > 1<<62 {
		return location{}, fmt.Errorf("%w: location offset %d out of range", ErrCorrupt, off)
	}
	return location{
		seg:    binary.BigEndian.Uint32(b[0:4]),
		off:    int64(off),
		length: binary.BigEndian.Uint32(b[12:16]),
	}, nil
}

func encodeTxValue(n uint64, txNum int) []byte {
	b := binary.BigEndian.AppendUint64(nil, n)
	return binary.BigEndian.AppendUint32(b, uint32(txNum))
}

func decodeTxValue(b []byte) (uint64, int, error) {
	if len(b) != 12 {
		return 0, 0, fmt.Errorf("%w: tx index value of %d bytes, want 12", ErrCorrupt, len(b))
	}
	return binary.BigEndian.Uint64(b[0:8]), int(binary.BigEndian.Uint32(b[8:12])), nil
}
