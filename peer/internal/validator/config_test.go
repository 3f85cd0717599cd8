package validator_test

import (
	"context"
	"strings"
	"testing"

	fabconfigtx "github.com/hyperledger/fabric-config/configtx"
	cb "github.com/hyperledger/fabric-protos-go-apiv2/common"
	pb "github.com/hyperledger/fabric-protos-go-apiv2/peer"
	"google.golang.org/protobuf/proto"

	"github.com/cairn-ledger/cairn/internal/block"
	"github.com/cairn-ledger/cairn/internal/channelconfig"
	"github.com/cairn-ledger/cairn/internal/configtx"
	"github.com/cairn-ledger/cairn/internal/envelope"
	"github.com/cairn-ledger/cairn/peer/internal/validator"
)

// configBlock wraps data as the orderer wraps a config envelope: the payload
// data of a CONFIG envelope for channel, signed by an orderer, alone in
// block num.
func (f *fixture) configBlock(tb testing.TB, num uint64, channel string, data []byte) *cb.Block {
	tb.Helper()
	env, err := envelope.NewSignedEnvelope(cb.HeaderType_CONFIG, channel, f.orderer, &cb.ConfigEnvelope{})
	if err != nil {
		tb.Fatal(err)
	}
	payload := &cb.Payload{}
	if err := proto.Unmarshal(env.Payload, payload); err != nil {
		tb.Fatal(err)
	}
	payload.Data = data
	env.Payload = marshal(tb, payload)
	if env.Signature, err = f.orderer.Sign(env.Payload); err != nil {
		tb.Fatal(err)
	}
	return block.New(num, nil, [][]byte{marshal(tb, env)})
}

// batchSizeUpdate is a CONFIG_UPDATE of f's genesis configuration, signed by
// signer, setting the batch size's max message count to n (the orderer
// section's Admins, the orderer admin, may make it).
func (f *fixture) batchSizeUpdate(tb testing.TB, n uint32, signer configtx.Signer) *cb.Envelope {
	tb.Helper()
	tx := fabconfigtx.New(f.bundle.Config())
	if err := tx.Orderer().BatchSize().SetMaxMessageCount(n); err != nil {
		tb.Fatal(err)
	}
	env, err := configtx.NewUpdateEnvelope(f.bundle.ChannelID(), f.bundle.Config(), tx.UpdatedConfig(), signer)
	if err != nil {
		tb.Fatal(err)
	}
	return env
}

// TestValidateConfigBlock checks the config transaction of a config block
// against the configuration in force. Whole scenarios (a new organisation,
// forged blocks, the bundle the channel installs) are in the channel
// package's TestConfigBlocks.
func TestValidateConfigBlock(t *testing.T) {
	f := newFixture(t)
	genesisCE, err := block.Config(f.genesis)
	if err != nil {
		t.Fatal(err)
	}
	valid, err := configtx.ProposeUpdate(f.bundle, f.batchSizeUpdate(t, 42, f.ordererAdmin))
	if err != nil {
		t.Fatal(err)
	}
	id := f.bundle.ChannelID()
	blockOf := func(ce *cb.ConfigEnvelope) *cb.Block { return f.configBlock(t, 1, id, marshal(t, ce)) }

	tests := []struct {
		name     string
		block    *cb.Block
		current  *channelconfig.Bundle
		want     pb.TxValidationCode
		wantSeq  uint64   // sequence of the configuration to install, for VALID
		wantText []string // in the error, otherwise
	}{
		{name: "genesis bootstraps the channel", block: f.genesis, want: pb.TxValidationCode_VALID},
		{name: "authorised update", block: blockOf(valid), current: f.bundle, want: pb.TxValidationCode_VALID, wantSeq: 1},
		{name: "genesis config replayed", block: blockOf(genesisCE), current: f.bundle,
			want: pb.TxValidationCode_INVALID_CONFIG_TRANSACTION, wantText: []string{"config sequence 0, want 1"}},
		{name: "update signed by a client", current: f.bundle,
			block: blockOf(&cb.ConfigEnvelope{Config: valid.Config, LastUpdate: f.batchSizeUpdate(t, 42, f.user)}),
			want:  pb.TxValidationCode_INVALID_CONFIG_TRANSACTION, wantText: []string{"/Channel/Orderer/Admins"}},
		{name: "config not what its update produces", current: f.bundle,
			block: blockOf(&cb.ConfigEnvelope{Config: valid.Config, LastUpdate: f.batchSizeUpdate(t, 7, f.ordererAdmin)}),
			want:  pb.TxValidationCode_INVALID_CONFIG_TRANSACTION, wantText: []string{"does not produce the config it carries"}},
		{name: "no last update", block: blockOf(&cb.ConfigEnvelope{Config: valid.Config}), current: f.bundle,
			want: pb.TxValidationCode_INVALID_CONFIG_TRANSACTION, wantText: []string{"no last update"}},
		{name: "config envelope does not decode", block: f.configBlock(t, 1, id, []byte{0xff}), current: f.bundle,
			want: pb.TxValidationCode_INVALID_CONFIG_TRANSACTION, wantText: []string{"config envelope does not decode"}},
		{name: "another channel", block: f.configBlock(t, 1, "otherchannel", marshal(t, valid)), current: f.bundle,
			want: pb.TxValidationCode_TARGET_CHAIN_NOT_FOUND, wantText: []string{`"otherchannel"`}},
	}
	v := validator.New(validator.Config{})
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res, err := v.Validate(context.Background(), tt.block, tt.current, ledger{}, newPolicies(t))
			if err != nil {
				t.Fatal(err)
			}
			if len(res) != 1 {
				t.Fatalf("%d results, want 1", len(res))
			}
			r := res[0]
			if r.Code != tt.want {
				t.Fatalf("code = %s (%v), want %s", r.Code, r.Error, tt.want)
			}
			if r.TxID == "" {
				t.Errorf("result has no tx ID")
			}
			if r.Code != pb.TxValidationCode_VALID {
				if r.Config != nil {
					t.Errorf("invalid config transaction carries a configuration to install")
				}
				for _, s := range tt.wantText {
					if r.Error == nil || !strings.Contains(r.Error.Error(), s) {
						t.Errorf("error %v does not mention %q", r.Error, s)
					}
				}
				return
			}
			if r.Config == nil {
				t.Fatal("VALID config transaction carries no configuration")
			}
			if r.Config.Sequence() != tt.wantSeq || r.Config.ChannelID() != id {
				t.Errorf("installs %s sequence %d, want %s sequence %d", r.Config.ChannelID(), r.Config.Sequence(), id, tt.wantSeq)
			}
		})
	}
}
