package block

import (
	"fmt"

	cb "github.com/hyperledger/fabric-protos-go-apiv2/common"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
)

// Field numbers of common.Block and common.BlockData.
const (
	fieldHeader   = 1
	fieldData     = 2
	fieldMetadata = 3
	fieldDataData = 1
)

// UnmarshalShared is Unmarshal without copying the data entries: each
// b.Data.Data[i] is a slice of raw, so raw must not be modified while the
// block is in use. A node applying a block it holds encoded anyway (the
// orderer's chain, from a raft entry) saves a copy of every envelope and an
// allocation per envelope. The result equals Unmarshal's (unknown fields
// included), and so do its errors' sentinel.
func UnmarshalShared(raw []byte) (*cb.Block, error) {
	return unmarshalShared(raw, true)
}

// UnmarshalOwn is UnmarshalShared for bytes this process encoded from a block
// that New built, still unmodified: it skips recomputing the data hash, which
// New computed from the same data (hashing a block's data costs ~1 ms per
// 1-MB block). Anything received from elsewhere goes through
// UnmarshalShared.
func UnmarshalOwn(raw []byte) (*cb.Block, error) {
	return unmarshalShared(raw, false)
}

func unmarshalShared(raw []byte, checkHash bool) (*cb.Block, error) {
	b := &cb.Block{}
	var unknown []byte
	merge := proto.UnmarshalOptions{Merge: true}
	for rest := raw; len(rest) > 0; {
		num, typ, n := protowire.ConsumeTag(rest)
		if n < 0 {
			return nil, fmt.Errorf("%w: %v", ErrMalformed, protowire.ParseError(n))
		}
		if typ != protowire.BytesType || num < fieldHeader || num > fieldMetadata {
			m := protowire.ConsumeFieldValue(num, typ, rest[n:])
			if m < 0 {
				return nil, fmt.Errorf("%w: %v", ErrMalformed, protowire.ParseError(m))
			}
			unknown = append(unknown, rest[:n+m]...)
			rest = rest[n+m:]
			continue
		}
		v, m := protowire.ConsumeBytes(rest[n:])
		if m < 0 {
			return nil, fmt.Errorf("%w: %v", ErrMalformed, protowire.ParseError(m))
		}
		rest = rest[n+m:]
		var err error
		switch num {
		case fieldHeader:
			if b.Header == nil {
				b.Header = &cb.BlockHeader{}
			}
			err = merge.Unmarshal(v, b.Header)
		case fieldData:
			if b.Data == nil {
				b.Data = &cb.BlockData{}
			}
			err = appendData(b.Data, v)
		case fieldMetadata:
			if b.Metadata == nil {
				b.Metadata = &cb.BlockMetadata{}
			}
			err = merge.Unmarshal(v, b.Metadata)
		}
		if err != nil {
			return nil, fmt.Errorf("%w: %v", ErrMalformed, err)
		}
	}
	if len(unknown) > 0 {
		b.ProtoReflect().SetUnknown(unknown)
	}
	if err := checkStructure(b, checkHash); err != nil {
		return nil, err
	}
	return b, nil
}

// appendData adds the entries of an encoded BlockData to d, as slices of v.
func appendData(d *cb.BlockData, v []byte) error {
	unknown := d.ProtoReflect().GetUnknown()
	for len(v) > 0 {
		num, typ, n := protowire.ConsumeTag(v)
		if n < 0 {
			return protowire.ParseError(n)
		}
		if num != fieldDataData || typ != protowire.BytesType {
			m := protowire.ConsumeFieldValue(num, typ, v[n:])
			if m < 0 {
				return protowire.ParseError(m)
			}
			unknown = append(unknown, v[:n+m]...)
			v = v[n+m:]
			continue
		}
		e, m := protowire.ConsumeBytes(v[n:])
		if m < 0 {
			return protowire.ParseError(m)
		}
		// Full slice expression: appending to an entry must not write into raw.
		d.Data = append(d.Data, e[:len(e):len(e)])
		v = v[n+m:]
	}
	if len(unknown) > 0 {
		d.ProtoReflect().SetUnknown(unknown)
	}
	return nil
}
