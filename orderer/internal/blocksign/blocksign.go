// Package blocksign owns the orderer's block metadata as Fabric 2.x writes it:
// the SIGNATURES slot (OrdererBlockMetadata with the last config index and the
// consenter metadata, signed together with the block header) and the deprecated
// LAST_CONFIG slot that older clients still read. Functions are pure apart from
// the signer and the nonce source, and safe for concurrent use if those are.
package blocksign

import (
	"crypto/rand"
	"errors"
	"fmt"
	"io"

	"github.com/cairn-ledger/cairn/internal/block"
	cb "github.com/hyperledger/fabric-protos-go-apiv2/common"
	"google.golang.org/protobuf/proto"
)

// Signer is the orderer's signing identity.
type Signer interface {
	Serialize() []byte
	Sign(msg []byte) ([]byte, error)
}

// nonceSize matches Fabric's crypto.NonceSize.
const nonceSize = 24

// Sign fills the SIGNATURES and LAST_CONFIG metadata of b, whose header must be
// final. consenterMetadata is opaque to this package (the raft chain passes a
// marshalled etcdraft.BlockMetadata). rnd supplies the nonce; nil means
// crypto/rand.
func Sign(b *cb.Block, s Signer, lastConfig uint64, consenterMetadata []byte, rnd io.Reader) error {
	if b.GetHeader() == nil {
		return errors.New("sign block: no header")
	}
	if rnd == nil {
		rnd = rand.Reader
	}
	for b.Metadata == nil || len(b.Metadata.Metadata) < len(cb.BlockMetadataIndex_name) {
		if b.Metadata == nil {
			b.Metadata = &cb.BlockMetadata{}
		}
		b.Metadata.Metadata = append(b.Metadata.Metadata, nil)
	}
	value, err := proto.Marshal(&cb.OrdererBlockMetadata{
		LastConfig:        &cb.LastConfig{Index: lastConfig},
		ConsenterMetadata: consenterMetadata,
	})
	if err != nil {
		return fmt.Errorf("sign block %d: encode orderer metadata: %w", b.Header.Number, err)
	}
	nonce := make([]byte, nonceSize)
	if _, err := io.ReadFull(rnd, nonce); err != nil {
		return fmt.Errorf("sign block %d: nonce: %w", b.Header.Number, err)
	}
	sigHeader, err := proto.Marshal(&cb.SignatureHeader{Creator: s.Serialize(), Nonce: nonce})
	if err != nil {
		return fmt.Errorf("sign block %d: encode signature header: %w", b.Header.Number, err)
	}
	sig, err := s.Sign(SignedBytes(value, sigHeader, b.Header))
	if err != nil {
		return fmt.Errorf("sign block %d: %w", b.Header.Number, err)
	}
	sigMD, err := proto.Marshal(&cb.Metadata{
		Value:      value,
		Signatures: []*cb.MetadataSignature{{SignatureHeader: sigHeader, Signature: sig}},
	})
	if err != nil {
		return fmt.Errorf("sign block %d: encode signatures: %w", b.Header.Number, err)
	}
	lcValue, err := proto.Marshal(&cb.LastConfig{Index: lastConfig})
	if err != nil {
		return fmt.Errorf("sign block %d: encode last config: %w", b.Header.Number, err)
	}
	lcMD, err := proto.Marshal(&cb.Metadata{Value: lcValue})
	if err != nil {
		return fmt.Errorf("sign block %d: encode last config: %w", b.Header.Number, err)
	}
	b.Metadata.Metadata[cb.BlockMetadataIndex_SIGNATURES] = sigMD
	b.Metadata.Metadata[cb.BlockMetadataIndex_LAST_CONFIG] = lcMD
	return nil
}

// SignedBytes is what an orderer signs and a verifier checks: the metadata value,
// the signature header and the block header's ASN.1 bytes, concatenated.
func SignedBytes(value, sigHeader []byte, h *cb.BlockHeader) []byte {
	hb := block.HeaderBytes(h)
	out := make([]byte, 0, len(value)+len(sigHeader)+len(hb))
	out = append(out, value...)
	out = append(out, sigHeader...)
	return append(out, hb...)
}

// OrdererMetadata decodes the SIGNATURES slot of a block: the signed
// OrdererBlockMetadata and the signatures over it. A block without it (such as
// a genesis block) yields nil and no error.
func OrdererMetadata(b *cb.Block) (*cb.OrdererBlockMetadata, *cb.Metadata, error) {
	md := b.GetMetadata().GetMetadata()
	if len(md) <= int(cb.BlockMetadataIndex_SIGNATURES) || len(md[cb.BlockMetadataIndex_SIGNATURES]) == 0 {
		return nil, nil, nil
	}
	m := &cb.Metadata{}
	if err := proto.Unmarshal(md[cb.BlockMetadataIndex_SIGNATURES], m); err != nil {
		return nil, nil, fmt.Errorf("block %d signatures metadata: %w", b.GetHeader().GetNumber(), err)
	}
	obm := &cb.OrdererBlockMetadata{}
	if err := proto.Unmarshal(m.Value, obm); err != nil {
		return nil, nil, fmt.Errorf("block %d orderer metadata: %w", b.GetHeader().GetNumber(), err)
	}
	return obm, m, nil
}
