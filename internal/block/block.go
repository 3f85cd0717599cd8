// Package block owns the Fabric block format: header and data hashes (which must
// match what every Fabric client computes), construction of new blocks with all
// metadata slots present, and reading envelopes and metadata back out. It is pure
// functions over fabric-protos messages and safe for concurrent use.
package block

import (
	"bytes"
	"crypto/sha256"
	"encoding/asn1"
	"errors"
	"fmt"
	"math/big"

	cb "github.com/hyperledger/fabric-protos-go-apiv2/common"
	"google.golang.org/protobuf/proto"
)

// asn1Header is the structure Fabric hashes to identify a block: the DER encoding
// of SEQUENCE { number INTEGER, previousHash OCTET STRING, dataHash OCTET STRING }.
type asn1Header struct {
	Number       *big.Int
	PreviousHash []byte
	DataHash     []byte
}

// HeaderBytes is the ASN.1 DER encoding of a block header that Fabric hashes.
func HeaderBytes(h *cb.BlockHeader) []byte {
	der, err := asn1.Marshal(asn1Header{
		Number:       new(big.Int).SetUint64(h.GetNumber()),
		PreviousHash: h.GetPreviousHash(),
		DataHash:     h.GetDataHash(),
	})
	if err != nil {
		// Marshalling a big.Int and two byte slices cannot fail; reaching here means
		// the encoding/asn1 contract changed underneath us.
		panic(fmt.Sprintf("block: asn1 encoding of a header failed: %v", err))
	}
	return der
}

// HeaderHash is the block's identity: SHA-256 of HeaderBytes. The next block's
// header carries it as PreviousHash.
func HeaderHash(h *cb.BlockHeader) []byte {
	sum := sha256.Sum256(HeaderBytes(h))
	return sum[:]
}

// DataHash is SHA-256 over the concatenation of the block's data entries.
func DataHash(d *cb.BlockData) []byte {
	h := sha256.New()
	for _, e := range d.GetData() {
		h.Write(e)
	}
	return h.Sum(nil)
}

// New builds block number with the given previous hash and data entries, the data
// hash filled in and every metadata slot present (empty), as Fabric's peers expect.
func New(number uint64, previousHash []byte, data [][]byte) *cb.Block {
	b := &cb.Block{
		Header:   &cb.BlockHeader{Number: number, PreviousHash: previousHash},
		Data:     &cb.BlockData{Data: data},
		Metadata: &cb.BlockMetadata{Metadata: make([][]byte, len(cb.BlockMetadataIndex_name))},
	}
	b.Header.DataHash = DataHash(b.Data)
	return b
}

// Errors for blocks that cannot be used.
var (
	ErrMalformed = errors.New("malformed block")
)

// Unmarshal decodes a block and checks the parts every reader relies on exist and
// that the data hash matches the data.
func Unmarshal(raw []byte) (*cb.Block, error) {
	b := &cb.Block{}
	if err := proto.Unmarshal(raw, b); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrMalformed, err)
	}
	if err := CheckStructure(b); err != nil {
		return nil, err
	}
	return b, nil
}

// CheckStructure checks that a block has a header, data and metadata and that its
// data hash matches its data. It does not check signatures or the hash chain.
func CheckStructure(b *cb.Block) error {
	return checkStructure(b, true)
}

func checkStructure(b *cb.Block, checkHash bool) error {
	if b.GetHeader() == nil || b.GetData() == nil {
		return fmt.Errorf("%w: missing header or data", ErrMalformed)
	}
	if checkHash {
		if got := DataHash(b.Data); !bytes.Equal(got, b.Header.DataHash) {
			return fmt.Errorf("%w: block %d data hash %x does not match its data (%x)", ErrMalformed, b.Header.Number, b.Header.DataHash, got)
		}
	}
	if b.Metadata == nil {
		b.Metadata = &cb.BlockMetadata{}
	}
	for len(b.Metadata.Metadata) < len(cb.BlockMetadataIndex_name) {
		b.Metadata.Metadata = append(b.Metadata.Metadata, nil)
	}
	return nil
}

// Envelope decodes the i-th data entry of a block as an envelope.
func Envelope(b *cb.Block, i int) (*cb.Envelope, error) {
	if i < 0 || i >= len(b.GetData().GetData()) {
		return nil, fmt.Errorf("block %d has no envelope %d", b.GetHeader().GetNumber(), i)
	}
	env := &cb.Envelope{}
	if err := proto.Unmarshal(b.Data.Data[i], env); err != nil {
		return nil, fmt.Errorf("block %d envelope %d: %w", b.GetHeader().GetNumber(), i, err)
	}
	return env, nil
}

// ChannelHeader decodes the channel header of the i-th envelope of a block.
func ChannelHeader(b *cb.Block, i int) (*cb.ChannelHeader, error) {
	env, err := Envelope(b, i)
	if err != nil {
		return nil, err
	}
	payload := &cb.Payload{}
	if err := proto.Unmarshal(env.Payload, payload); err != nil {
		return nil, fmt.Errorf("block %d envelope %d payload: %w", b.GetHeader().GetNumber(), i, err)
	}
	if payload.Header == nil {
		return nil, fmt.Errorf("block %d envelope %d has no header", b.GetHeader().GetNumber(), i)
	}
	ch := &cb.ChannelHeader{}
	if err := proto.Unmarshal(payload.Header.ChannelHeader, ch); err != nil {
		return nil, fmt.Errorf("block %d envelope %d channel header: %w", b.GetHeader().GetNumber(), i, err)
	}
	return ch, nil
}

// IsConfig reports whether a block is a config block: one envelope of type CONFIG.
func IsConfig(b *cb.Block) bool {
	if len(b.GetData().GetData()) != 1 {
		return false
	}
	ch, err := ChannelHeader(b, 0)
	return err == nil && ch.Type == int32(cb.HeaderType_CONFIG)
}

// Config extracts the channel configuration carried by a config block.
func Config(b *cb.Block) (*cb.ConfigEnvelope, error) {
	if !IsConfig(b) {
		return nil, fmt.Errorf("block %d is not a config block", b.GetHeader().GetNumber())
	}
	env, _ := Envelope(b, 0)
	payload := &cb.Payload{}
	if err := proto.Unmarshal(env.Payload, payload); err != nil {
		return nil, fmt.Errorf("config block %d payload: %w", b.Header.Number, err)
	}
	ce := &cb.ConfigEnvelope{}
	if err := proto.Unmarshal(payload.Data, ce); err != nil {
		return nil, fmt.Errorf("config block %d config envelope: %w", b.Header.Number, err)
	}
	if ce.Config == nil || ce.Config.ChannelGroup == nil {
		return nil, fmt.Errorf("config block %d has no channel group", b.Header.Number)
	}
	return ce, nil
}

// ChannelID is the channel a block belongs to, read from its first envelope.
func ChannelID(b *cb.Block) (string, error) {
	ch, err := ChannelHeader(b, 0)
	if err != nil {
		return "", err
	}
	return ch.ChannelId, nil
}

// TxFilter returns the TRANSACTIONS_FILTER metadata: one peer.TxValidationCode per
// transaction, written by the committing peer. It is nil on orderer blocks.
func TxFilter(b *cb.Block) []byte {
	md := b.GetMetadata().GetMetadata()
	if len(md) <= int(cb.BlockMetadataIndex_TRANSACTIONS_FILTER) {
		return nil
	}
	return md[cb.BlockMetadataIndex_TRANSACTIONS_FILTER]
}

// SetTxFilter writes the TRANSACTIONS_FILTER metadata.
func SetTxFilter(b *cb.Block, codes []byte) {
	for len(b.Metadata.Metadata) < len(cb.BlockMetadataIndex_name) {
		b.Metadata.Metadata = append(b.Metadata.Metadata, nil)
	}
	b.Metadata.Metadata[cb.BlockMetadataIndex_TRANSACTIONS_FILTER] = codes
}

// LastConfigIndex reads the number of the last config block from the orderer's
// SIGNATURES metadata (OrdererBlockMetadata), falling back to the deprecated
// LAST_CONFIG slot.
func LastConfigIndex(b *cb.Block) (uint64, error) {
	md := b.GetMetadata().GetMetadata()
	if len(md) > int(cb.BlockMetadataIndex_SIGNATURES) && len(md[cb.BlockMetadataIndex_SIGNATURES]) > 0 {
		m := &cb.Metadata{}
		if err := proto.Unmarshal(md[cb.BlockMetadataIndex_SIGNATURES], m); err == nil && len(m.Value) > 0 {
			obm := &cb.OrdererBlockMetadata{}
			if err := proto.Unmarshal(m.Value, obm); err == nil && obm.LastConfig != nil {
				return obm.LastConfig.Index, nil
			}
		}
	}
	if len(md) > int(cb.BlockMetadataIndex_LAST_CONFIG) && len(md[cb.BlockMetadataIndex_LAST_CONFIG]) > 0 {
		m := &cb.Metadata{}
		if err := proto.Unmarshal(md[cb.BlockMetadataIndex_LAST_CONFIG], m); err == nil {
			lc := &cb.LastConfig{}
			if err := proto.Unmarshal(m.Value, lc); err == nil {
				return lc.Index, nil
			}
		}
	}
	return 0, fmt.Errorf("block %d carries no last-config index", b.GetHeader().GetNumber())
}
