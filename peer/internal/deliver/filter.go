package deliver

import (
	"fmt"

	"github.com/cairn-ledger/cairn/internal/block"
	"github.com/hyperledger/fabric-protos-go-apiv2/common"
	"github.com/hyperledger/fabric-protos-go-apiv2/peer"
	"google.golang.org/protobuf/proto"
)

// FilterBlock reduces a committed block to what DeliverFiltered sends, as
// Fabric's peer does: per transaction its ID, header type and validation code,
// and for endorser transactions the chaincode event without its payload.
// Envelopes that do not decode or have no header are skipped; a malformed
// endorser transaction is an error.
func FilterBlock(b *common.Block) (*peer.FilteredBlock, error) {
	fb := &peer.FilteredBlock{Number: b.GetHeader().GetNumber()}
	filter := block.TxFilter(b)
	for i, raw := range b.GetData().GetData() {
		if raw == nil {
			continue
		}
		env := &common.Envelope{}
		if err := proto.Unmarshal(raw, env); err != nil {
			continue
		}
		payload := &common.Payload{}
		if err := proto.Unmarshal(env.GetPayload(), payload); err != nil {
			return nil, fmt.Errorf("transaction %d: could not extract payload from envelope: %w", i, err)
		}
		if payload.GetHeader() == nil {
			continue
		}
		chdr := &common.ChannelHeader{}
		if err := proto.Unmarshal(payload.Header.GetChannelHeader(), chdr); err != nil {
			return nil, fmt.Errorf("transaction %d channel header: %w", i, err)
		}
		fb.ChannelId = chdr.GetChannelId()
		// A committed block always has a code per transaction; without one the
		// transaction cannot be called valid.
		code := peer.TxValidationCode_INVALID_OTHER_REASON
		if i < len(filter) {
			code = peer.TxValidationCode(filter[i])
		}
		ft := &peer.FilteredTransaction{
			Txid:             chdr.GetTxId(),
			Type:             common.HeaderType(chdr.GetType()),
			TxValidationCode: code,
		}
		if ft.Type == common.HeaderType_ENDORSER_TRANSACTION {
			actions, err := filteredActions(payload.GetData())
			if err != nil {
				return nil, fmt.Errorf("transaction %d: %w", i, err)
			}
			ft.Data = &peer.FilteredTransaction_TransactionActions{TransactionActions: actions}
		}
		fb.FilteredTransactions = append(fb.FilteredTransactions, ft)
	}
	return fb, nil
}

func filteredActions(data []byte) (*peer.FilteredTransactionActions, error) {
	tx := &peer.Transaction{}
	if err := proto.Unmarshal(data, tx); err != nil {
		return nil, fmt.Errorf("error unmarshal transaction payload for block event: %w", err)
	}
	actions := &peer.FilteredTransactionActions{}
	for _, a := range tx.GetActions() {
		actionPayload := &peer.ChaincodeActionPayload{}
		if err := proto.Unmarshal(a.GetPayload(), actionPayload); err != nil {
			return nil, fmt.Errorf("error unmarshal transaction action payload for block event: %w", err)
		}
		if actionPayload.GetAction() == nil {
			continue
		}
		prp := &peer.ProposalResponsePayload{}
		if err := proto.Unmarshal(actionPayload.Action.GetProposalResponsePayload(), prp); err != nil {
			return nil, fmt.Errorf("error unmarshal proposal response payload for block event: %w", err)
		}
		ca := &peer.ChaincodeAction{}
		if err := proto.Unmarshal(prp.GetExtension(), ca); err != nil {
			return nil, fmt.Errorf("error unmarshal chaincode action for block event: %w", err)
		}
		ev := &peer.ChaincodeEvent{}
		if err := proto.Unmarshal(ca.GetEvents(), ev); err != nil {
			return nil, fmt.Errorf("error unmarshal chaincode event for block event: %w", err)
		}
		if ev.GetChaincodeId() == "" {
			continue
		}
		actions.ChaincodeActions = append(actions.ChaincodeActions, &peer.FilteredChaincodeAction{
			ChaincodeEvent: &peer.ChaincodeEvent{TxId: ev.GetTxId(), ChaincodeId: ev.GetChaincodeId(), EventName: ev.GetEventName()},
		})
	}
	return actions, nil
}
