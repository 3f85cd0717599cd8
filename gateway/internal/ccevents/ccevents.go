// Package ccevents owns reading chaincode events out of committed blocks as the
// gateway streams them: only from valid endorser transactions, in block order,
// each tagged with its transaction ID. It is pure functions over
// fabric-protos messages, safe for concurrent use, and never panics on
// malformed blocks.
package ccevents

import (
	"fmt"

	"github.com/cairn-ledger/cairn/internal/block"
	"github.com/cairn-ledger/cairn/internal/envelope"
	"github.com/hyperledger/fabric-protos-go-apiv2/common"
	"github.com/hyperledger/fabric-protos-go-apiv2/peer"
)

// FromBlock returns the chaincode events of a block's valid endorser
// transactions in the order of their transactions. Each event's TxId is the
// transaction's ID, filled in from the channel header when the chaincode left it
// empty. Transactions without a validation code in the block's
// TRANSACTIONS_FILTER count as invalid, as in Fabric.
func FromBlock(b *common.Block) ([]*peer.ChaincodeEvent, error) {
	filter := block.TxFilter(b)
	var events []*peer.ChaincodeEvent
	for i := range b.GetData().GetData() {
		if i >= len(filter) || peer.TxValidationCode(filter[i]) != peer.TxValidationCode_VALID {
			continue
		}
		env, err := block.Envelope(b, i)
		if err != nil {
			return nil, err
		}
		parsed, err := envelope.Parse(env)
		if err != nil {
			return nil, fmt.Errorf("block %d transaction %d: %w", b.GetHeader().GetNumber(), i, err)
		}
		if parsed.ChannelHeader.GetType() != int32(common.HeaderType_ENDORSER_TRANSACTION) {
			continue
		}
		tx, err := envelope.UnpackTransaction(parsed)
		if err != nil {
			return nil, fmt.Errorf("block %d transaction %d: %w", b.GetHeader().GetNumber(), i, err)
		}
		ev, err := tx.Event()
		if err != nil {
			return nil, fmt.Errorf("block %d transaction %d: %w", b.GetHeader().GetNumber(), i, err)
		}
		if ev == nil || ev.GetChaincodeId() == "" {
			continue
		}
		if ev.TxId == "" {
			ev.TxId = parsed.ChannelHeader.GetTxId()
		}
		events = append(events, ev)
	}
	return events, nil
}
