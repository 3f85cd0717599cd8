package configtx_test

import (
	"testing"

	fabconfigtx "github.com/hyperledger/fabric-config/configtx"
	cb "github.com/hyperledger/fabric-protos-go-apiv2/common"
	"google.golang.org/protobuf/proto"

	"github.com/cairn-ledger/cairn/internal/channelconfig"
	"github.com/cairn-ledger/cairn/internal/configtx"
)

// FuzzProposeUpdate feeds arbitrary envelope bytes to ProposeUpdate: it must
// never panic, and whatever it accepts must be a parseable configuration one
// sequence ahead that Validate accepts too.
func FuzzProposeUpdate(f *testing.F) {
	fx := newFixture(f)
	g := fx.genesis
	seeds := []*cb.Envelope{
		updateEnv(f, g, setMaxMessageCount(100), fx.ordererAdmin),
		updateEnv(f, g, setMaxMessageCount(100), fx.org1Admin),
		updateEnv(f, g, addConsenters(fx.consenters[1]), fx.ordererAdmin),
		updateEnvFor(f, "otherchannel", g, fx.ordererAdmin),
		wrap(f, "mychannel", cb.HeaderType_CONFIG_UPDATE, []byte("\x0a\x09mychannel"), fx.ordererAdmin),
		wrapMsg(f, "mychannel", cb.HeaderType_CONFIG, &cb.ConfigEnvelope{Config: g.Config()}, fx.ordererAdmin),
	}
	for _, s := range seeds {
		f.Add(mustMarshal(f, s))
	}
	f.Add([]byte{})
	f.Add([]byte("\x0a\x03\x0a\x01\x00"))
	f.Fuzz(func(t *testing.T, raw []byte) {
		env := &cb.Envelope{}
		if err := proto.Unmarshal(raw, env); err != nil {
			return
		}
		ce, err := configtx.ProposeUpdate(g, env)
		if err != nil {
			return
		}
		if ce.Config.GetSequence() != g.Sequence()+1 || ce.LastUpdate != env {
			t.Fatalf("accepted update gives sequence %d", ce.Config.GetSequence())
		}
		if _, err := channelconfig.New(g.ChannelID(), ce.Config); err != nil {
			t.Fatalf("accepted update gives a configuration that does not parse: %v", err)
		}
		if _, err := configtx.Validate(g, ce); err != nil {
			t.Fatalf("Validate refuses what ProposeUpdate produced: %v", err)
		}
	})
}

// FuzzConfigUpdate fuzzes the ConfigUpdate inside an envelope that every
// admin of the channel signs, so that inputs get past the signatures and
// exercise the read-set, write-set and merge rules.
func FuzzConfigUpdate(f *testing.F) {
	fx := newFixture(f)
	g := fx.genesis
	for _, env := range []*cb.Envelope{
		updateEnv(f, g, setMaxMessageCount(100), fx.ordererAdmin),
		updateEnv(f, g, addConsenters(fx.consenters[1]), fx.ordererAdmin),
		updateEnv(f, g, func(tx *fabconfigtx.ConfigTx) error { return tx.Application().SetOrganization(fx.org3) }, fx.org1Admin),
		updateEnv(f, g, func(tx *fabconfigtx.ConfigTx) error { tx.Application().RemoveOrganization("Org2MSP"); return nil }, fx.org1Admin),
	} {
		f.Add(configUpdateEnvelopeOf(f, env).ConfigUpdate)
	}
	admins := []configtx.Signer{fx.ordererAdmin, fx.org1Admin, fx.org2Admin}
	f.Fuzz(func(t *testing.T, raw []byte) {
		cue := &cb.ConfigUpdateEnvelope{ConfigUpdate: raw}
		for _, a := range admins {
			cs, err := configtx.ConfigSignature(raw, a)
			if err != nil {
				t.Fatal(err)
			}
			cue.Signatures = append(cue.Signatures, cs)
		}
		env := wrapMsg(t, "mychannel", cb.HeaderType_CONFIG_UPDATE, cue, fx.ordererAdmin)
		before := proto.Clone(g.Config())
		ce, err := configtx.ProposeUpdate(g, env)
		if !proto.Equal(before, g.Config()) {
			t.Fatal("ProposeUpdate modified the current configuration")
		}
		if err != nil {
			return
		}
		if _, err := configtx.Validate(g, ce); err != nil {
			t.Fatalf("Validate refuses what ProposeUpdate produced: %v", err)
		}
	})
}
