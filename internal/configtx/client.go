package configtx

import (
	"errors"
	"fmt"

	fabconfigtx "github.com/hyperledger/fabric-config/configtx"
	cb "github.com/hyperledger/fabric-protos-go-apiv2/common"
	"google.golang.org/protobuf/proto"

	"github.com/cairn-ledger/cairn/internal/envelope"
)

// NewUpdateEnvelope builds the CONFIG_UPDATE envelope that turns current into
// updated on channelID: the read and write sets are computed by fabric-config
// (as `configtxlator compute_update` does), every signer adds a
// ConfigSignature over the update (admins whose signatures the mod_policies
// need), and the envelope itself is signed by the first signer.
//
// updated is typically built with fabric-config's setters:
//
//	tx := fabconfigtx.New(current)
//	tx.Orderer().BatchSize().SetMaxMessageCount(100)
//	env, err := configtx.NewUpdateEnvelope("mychannel", current, tx.UpdatedConfig(), ordererAdmin)
func NewUpdateEnvelope(channelID string, current, updated *cb.Config, signers ...Signer) (*cb.Envelope, error) {
	if len(signers) == 0 {
		return nil, errors.New("new config update envelope: no signer")
	}
	if current.GetChannelGroup() == nil || updated.GetChannelGroup() == nil {
		return nil, errors.New("new config update envelope: both configurations need a channel group")
	}
	// fabric-config computes the update between a ConfigTx's original and
	// updated configurations; the updated one is the ConfigTx's own copy, which
	// its setters modify in place, so it is overwritten with ours.
	tx := fabconfigtx.New(current)
	u := tx.UpdatedConfig()
	proto.Reset(u)
	proto.Merge(u, updated)
	raw, err := tx.ComputeMarshaledUpdate(channelID)
	if err != nil {
		return nil, fmt.Errorf("new config update envelope for channel %s: %w", channelID, err)
	}
	cue := &cb.ConfigUpdateEnvelope{ConfigUpdate: raw}
	for i, s := range signers {
		cs, err := ConfigSignature(raw, s)
		if err != nil {
			return nil, fmt.Errorf("new config update envelope for channel %s: signer %d: %w", channelID, i, err)
		}
		cue.Signatures = append(cue.Signatures, cs)
	}
	env, err := envelope.NewSignedEnvelope(cb.HeaderType_CONFIG_UPDATE, channelID, signers[0], cue)
	if err != nil {
		return nil, fmt.Errorf("new config update envelope for channel %s: %w", channelID, err)
	}
	return env, nil
}

// ConfigSignature signs a marshalled ConfigUpdate: a fresh signature header
// (creator, nonce) and a signature over SignatureHeader ‖ ConfigUpdate, as
// `peer channel signconfigtx` adds.
func ConfigSignature(configUpdate []byte, s Signer) (*cb.ConfigSignature, error) {
	nonce, err := envelope.NewNonce()
	if err != nil {
		return nil, err
	}
	sh, err := proto.Marshal(&cb.SignatureHeader{Creator: s.Serialize(), Nonce: nonce})
	if err != nil {
		return nil, fmt.Errorf("marshal signature header: %w", err)
	}
	msg := make([]byte, 0, len(sh)+len(configUpdate))
	msg = append(append(msg, sh...), configUpdate...)
	sig, err := s.Sign(msg)
	if err != nil {
		return nil, fmt.Errorf("sign config update: %w", err)
	}
	return &cb.ConfigSignature{SignatureHeader: sh, Signature: sig}, nil
}
