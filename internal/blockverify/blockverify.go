// Package blockverify owns the checks a node applies to a block received from
// another node before storing it: structure and data hash, number and hash
// chain, and the orderer signatures against the BlockValidation policy in
// force. The peer's block puller and the orderer's replicator both use it, so
// a block is judged the same way wherever it arrives. Pure functions.
package blockverify

import (
	"bytes"
	"fmt"

	cb "github.com/hyperledger/fabric-protos-go-apiv2/common"
	"google.golang.org/protobuf/proto"

	"github.com/cairn-ledger/cairn/internal/block"
	"github.com/cairn-ledger/cairn/internal/policy"
)

// BlockValidationPolicy is the channel policy orderer signatures must satisfy.
const BlockValidationPolicy = "/Channel/Orderer/BlockValidation"

// Chain checks that b is well formed (data hash included), is block number
// want and, when prev is not nil, that it extends prev.
func Chain(b *cb.Block, want uint64, prev *cb.BlockHeader) error {
	if err := block.CheckStructure(b); err != nil {
		return err
	}
	if b.Header.Number != want {
		return fmt.Errorf("got block %d, want %d", b.Header.Number, want)
	}
	if prev != nil && !bytes.Equal(b.Header.PreviousHash, block.HeaderHash(prev)) {
		return fmt.Errorf("block %d previous hash %x does not match block %d's hash", b.Header.Number, b.Header.PreviousHash, prev.Number)
	}
	return nil
}

// Signatures checks that b's orderer signatures satisfy pol, the channel's
// BlockValidation policy in force for b.
func Signatures(b *cb.Block, pol policy.Policy) error {
	signed, err := SignedData(b)
	if err != nil {
		return err
	}
	if err := pol.Evaluate(signed); err != nil {
		return fmt.Errorf("block %d signatures: %w", b.Header.Number, err)
	}
	return nil
}

// SignedData extracts the orderer signatures of a block's SIGNATURES metadata:
// each covers the metadata value, its signature header and the block header.
func SignedData(b *cb.Block) ([]policy.SignedData, error) {
	md := &cb.Metadata{}
	if err := proto.Unmarshal(b.GetMetadata().GetMetadata()[cb.BlockMetadataIndex_SIGNATURES], md); err != nil {
		return nil, fmt.Errorf("block %d signature metadata: %w", b.GetHeader().GetNumber(), err)
	}
	header := block.HeaderBytes(b.Header)
	out := make([]policy.SignedData, 0, len(md.Signatures))
	for _, s := range md.Signatures {
		sh := &cb.SignatureHeader{}
		if err := proto.Unmarshal(s.SignatureHeader, sh); err != nil {
			return nil, fmt.Errorf("block %d signature header: %w", b.Header.Number, err)
		}
		data := make([]byte, 0, len(md.Value)+len(s.SignatureHeader)+len(header))
		data = append(append(append(data, md.Value...), s.SignatureHeader...), header...)
		out = append(out, policy.SignedData{Data: data, Identity: sh.Creator, Signature: s.Signature})
	}
	return out, nil
}
