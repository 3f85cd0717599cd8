package statedb

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// stateKey is 's' ‖ uvarint(len(ns)) ‖ ns ‖ key. The length prefix keeps
// namespaces apart ("a" never shares a prefix with "ab") whatever bytes the
// names contain, and the key comes last and raw so a namespace's keys sort as
// Fabric sorts them.
func stateKey(ns, key string) []byte {
	b := make([]byte, 0, 1+binary.MaxVarintLen64+len(ns)+len(key))
	b = append(b, prefixState)
	b = binary.AppendUvarint(b, uint64(len(ns)))
	b = append(b, ns...)
	return append(b, key...)
}

// historyPrefix is 'h' ‖ uvarint(len(ns)) ‖ ns ‖ uvarint(len(key)) ‖ key; each
// entry appends the big-endian block and tx numbers so one key's entries sort
// by height.
func historyPrefix(ns, key string) []byte {
	b := make([]byte, 0, 1+2*binary.MaxVarintLen64+len(ns)+len(key)+16)
	b = append(b, prefixHistory)
	b = binary.AppendUvarint(b, uint64(len(ns)))
	b = append(b, ns...)
	b = binary.AppendUvarint(b, uint64(len(key)))
	return append(b, key...)
}

func historyKey(ns, key string, v Version) []byte {
	b := historyPrefix(ns, key)
	b = binary.BigEndian.AppendUint64(b, v.BlockNum)
	return binary.BigEndian.AppendUint64(b, v.TxNum)
}

// encodeValue is uvarint(block) ‖ uvarint(tx) ‖ uvarint(len(metadata)) ‖
// metadata ‖ value.
func encodeValue(w *Write) []byte {
	b := make([]byte, 0, 3*binary.MaxVarintLen64+len(w.Metadata)+len(w.Value))
	b = binary.AppendUvarint(b, w.Version.BlockNum)
	b = binary.AppendUvarint(b, w.Version.TxNum)
	b = binary.AppendUvarint(b, uint64(len(w.Metadata)))
	b = append(b, w.Metadata...)
	return append(b, w.Value...)
}

func decodeVersion(raw []byte) (Version, []byte, error) {
	blk, n := binary.Uvarint(raw)
	if n <= 0 {
		return Version{}, nil, fmt.Errorf("%w: bad block number", ErrCorrupt)
	}
	raw = raw[n:]
	tx, n := binary.Uvarint(raw)
	if n <= 0 {
		return Version{}, nil, fmt.Errorf("%w: bad tx number", ErrCorrupt)
	}
	return Version{BlockNum: blk, TxNum: tx}, raw[n:], nil
}

// decodeValue copies what it returns: LevelDB may reuse the buffer it hands
// out.
func decodeValue(raw []byte) (*VersionedValue, error) {
	v, rest, err := decodeVersion(raw)
	if err != nil {
		return nil, err
	}
	mlen, n := binary.Uvarint(rest)
	if n <= 0 || mlen > uint64(len(rest)-n) {
		return nil, fmt.Errorf("%w: bad metadata length", ErrCorrupt)
	}
	rest = rest[n:]
	vv := &VersionedValue{Version: v, Value: make([]byte, len(rest)-int(mlen))}
	if mlen > 0 {
		vv.Metadata = append([]byte(nil), rest[:mlen]...)
	}
	copy(vv.Value, rest[mlen:])
	return vv, nil
}

func encodeUint64(v uint64) []byte { return binary.BigEndian.AppendUint64(nil, v) }

func decodeUint64(b []byte) (uint64, error) {
	if len(b) != 8 {
		return 0, errors.New("want 8 bytes")
	}
	return binary.BigEndian.Uint64(b), nil
}
