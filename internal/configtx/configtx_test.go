package configtx_test

import (
	"errors"
	"strings"
	"testing"

	fabconfigtx "github.com/hyperledger/fabric-config/configtx"
	cb "github.com/hyperledger/fabric-protos-go-apiv2/common"
	ordererpb "github.com/hyperledger/fabric-protos-go-apiv2/orderer"
	"google.golang.org/protobuf/proto"

	"github.com/cairn-ledger/cairn/internal/channelconfig"
	"github.com/cairn-ledger/cairn/internal/configtx"
	"github.com/cairn-ledger/cairn/internal/crypto"
	"github.com/cairn-ledger/cairn/internal/policy"
)

// TestProposeUpdate runs one update per case against the genesis
// configuration (Org1MSP, Org2MSP, one consenter) and checks who may make it.
func TestProposeUpdate(t *testing.T) {
	f := newFixture(t)
	cases := []struct {
		name    string
		mutate  mutation
		signers []*crypto.SigningIdentity
		// wantIs and wantMsg describe a refusal; both empty means accepted.
		wantIs  error
		wantMsg []string
		check   func(t *testing.T, next *channelconfig.Bundle)
	}{
		{
			name:    "batch size by the orderer admin",
			mutate:  setMaxMessageCount(100),
			signers: []*crypto.SigningIdentity{f.ordererAdmin},
			check: func(t *testing.T, next *channelconfig.Bundle) {
				if got := next.Orderer().MaxMessageCount; got != 100 {
					t.Errorf("MaxMessageCount = %d, want 100", got)
				}
			},
		},
		{
			name:    "batch size by an application admin",
			mutate:  setMaxMessageCount(100),
			signers: []*crypto.SigningIdentity{f.org1Admin},
			wantIs:  policy.ErrNotSatisfied,
			wantMsg: []string{"value /Channel/Orderer/BatchSize", "/Channel/Orderer/Admins", "/Channel/Orderer/OrdererMSP/Admins"},
		},
		{
			name:    "batch size by an orderer admin and an application user",
			mutate:  setMaxMessageCount(7),
			signers: []*crypto.SigningIdentity{f.org1User, f.ordererAdmin},
		},
		{
			name:    "batch size with no valid signature",
			mutate:  setMaxMessageCount(100),
			signers: []*crypto.SigningIdentity{f.org1User},
			wantIs:  policy.ErrNotSatisfied,
			wantMsg: []string{"/Channel/Orderer/Admins"},
		},
		{
			name:    "add an organisation with both application admins",
			mutate:  func(tx *fabconfigtx.ConfigTx) error { return tx.Application().SetOrganization(f.org3) },
			signers: []*crypto.SigningIdentity{f.org1Admin, f.org2Admin},
			check: func(t *testing.T, next *channelconfig.Bundle) {
				if n := len(next.Application().Orgs); n != 3 {
					t.Errorf("application organisations: %d, want 3", n)
				}
				if _, err := next.Policies().Policy("/Channel/Application/Org3MSP/Admins"); err != nil {
					t.Error(err)
				}
			},
		},
		{
			name:    "add an organisation with one of two application admins",
			mutate:  func(tx *fabconfigtx.ConfigTx) error { return tx.Application().SetOrganization(f.org3) },
			signers: []*crypto.SigningIdentity{f.org1Admin},
			wantIs:  policy.ErrNotSatisfied,
			wantMsg: []string{"group /Channel/Application", "/Channel/Application/Admins", "MAJORITY Admins", "/Channel/Application/Org2MSP/Admins"},
		},
		{
			name:    "add an organisation signed by the organisation itself",
			mutate:  func(tx *fabconfigtx.ConfigTx) error { return tx.Application().SetOrganization(f.org3) },
			signers: []*crypto.SigningIdentity{f.org3Admin, f.org1Admin},
			wantIs:  policy.ErrNotSatisfied,
			wantMsg: []string{"/Channel/Application/Org2MSP/Admins"},
		},
		{
			name:    "remove an organisation with both admins",
			mutate:  func(tx *fabconfigtx.ConfigTx) error { tx.Application().RemoveOrganization("Org2MSP"); return nil },
			signers: []*crypto.SigningIdentity{f.org1Admin, f.org2Admin},
			check: func(t *testing.T, next *channelconfig.Bundle) {
				if orgs := next.Application().Orgs; len(orgs) != 1 || orgs[0].MSPID != "Org1MSP" {
					t.Errorf("application organisations %+v, want Org1MSP only", orgs)
				}
			},
		},
		{
			name:    "remove an organisation with the other one's admin only",
			mutate:  func(tx *fabconfigtx.ConfigTx) error { tx.Application().RemoveOrganization("Org2MSP"); return nil },
			signers: []*crypto.SigningIdentity{f.org1Admin},
			wantIs:  policy.ErrNotSatisfied,
			wantMsg: []string{"group /Channel/Application", "/Channel/Application/Org2MSP/Admins"},
		},
		{
			name: "anchor peer by its organisation's admin",
			mutate: func(tx *fabconfigtx.ConfigTx) error {
				return tx.Application().Organization("Org1MSP").AddAnchorPeer(fabconfigtx.Address{Host: "127.0.0.1", Port: 9999})
			},
			signers: []*crypto.SigningIdentity{f.org1Admin},
			check: func(t *testing.T, next *channelconfig.Bundle) {
				for _, o := range next.Application().Orgs {
					if o.MSPID == "Org1MSP" && len(o.AnchorPeers) != 2 {
						t.Errorf("Org1MSP anchor peers %v, want 2", o.AnchorPeers)
					}
				}
			},
		},
		{
			name: "anchor peer by another organisation's admin",
			mutate: func(tx *fabconfigtx.ConfigTx) error {
				return tx.Application().Organization("Org1MSP").AddAnchorPeer(fabconfigtx.Address{Host: "127.0.0.1", Port: 9999})
			},
			signers: []*crypto.SigningIdentity{f.org2Admin},
			wantIs:  policy.ErrNotSatisfied,
			wantMsg: []string{"value /Channel/Application/Org1MSP/AnchorPeers", "policy /Channel/Application/Org1MSP/Admins not satisfied"},
		},
		{
			name:    "add one consenter",
			mutate:  addConsenters(f.consenters[1]),
			signers: []*crypto.SigningIdentity{f.ordererAdmin},
			check: func(t *testing.T, next *channelconfig.Bundle) {
				if n := len(next.Orderer().Consenters); n != 2 {
					t.Errorf("consenters: %d, want 2", n)
				}
			},
		},
		{
			name:    "add two consenters at once",
			mutate:  addConsenters(f.consenters[1], f.consenters[2]),
			signers: []*crypto.SigningIdentity{f.ordererAdmin},
			wantIs:  configtx.ErrInvalidConfig,
			wantMsg: []string{"more than one consenter", "add 2 node(s)"},
		},
		{
			name:    "remove the only consenter",
			mutate:  clearConsenters,
			signers: []*crypto.SigningIdentity{f.ordererAdmin},
			wantIs:  configtx.ErrInvalidConfig,
			wantMsg: []string{"no consenters"},
		},
		{
			name: "change the consensus type",
			mutate: func(tx *fabconfigtx.ConfigTx) error {
				v := tx.UpdatedConfig().ChannelGroup.Groups["Orderer"].Values["ConsensusType"]
				ct := &ordererpb.ConsensusType{}
				if err := proto.Unmarshal(v.Value, ct); err != nil {
					return err
				}
				ct.Type = "solo"
				var err error
				v.Value, err = proto.Marshal(ct)
				return err
			},
			signers: []*crypto.SigningIdentity{f.ordererAdmin},
			wantIs:  configtx.ErrInvalidConfig,
			wantMsg: []string{"attempted to change consensus type from etcdraft to solo"},
		},
		{
			name: "enter maintenance mode",
			mutate: func(tx *fabconfigtx.ConfigTx) error {
				return tx.Orderer().SetConsensusState("STATE_MAINTENANCE")
			},
			signers: []*crypto.SigningIdentity{f.ordererAdmin},
			wantIs:  configtx.ErrInvalidConfig,
			wantMsg: []string{"STATE_MAINTENANCE", "maintenance mode"},
		},
		{
			name:    "unsupported channel capability",
			mutate:  func(tx *fabconfigtx.ConfigTx) error { return tx.Channel().AddCapability("V3_0") },
			signers: []*crypto.SigningIdentity{f.ordererAdmin, f.org1Admin, f.org2Admin},
			wantIs:  configtx.ErrInvalidConfig,
			wantMsg: []string{"channel capability V3_0 is required but not supported"},
		},
		{
			name:    "drop the V2_0 channel capability",
			mutate:  func(tx *fabconfigtx.ConfigTx) error { return tx.Channel().RemoveCapability("V2_0") },
			signers: []*crypto.SigningIdentity{f.ordererAdmin, f.org1Admin, f.org2Admin},
			wantIs:  configtx.ErrInvalidConfig,
			wantMsg: []string{"V2_0"},
		},
		{
			name:    "channel capability without the orderer admin",
			mutate:  func(tx *fabconfigtx.ConfigTx) error { return tx.Channel().AddCapability("V1_4_3") },
			signers: []*crypto.SigningIdentity{f.org1Admin, f.org2Admin},
			wantIs:  policy.ErrNotSatisfied,
			wantMsg: []string{"value /Channel/Capabilities", "/Channel/Admins", "/Channel/Orderer/Admins"},
		},
		{
			name:    "remove the orderer organisation",
			mutate:  func(tx *fabconfigtx.ConfigTx) error { tx.Orderer().RemoveOrganization("OrdererMSP"); return nil },
			signers: []*crypto.SigningIdentity{f.ordererAdmin},
			wantIs:  configtx.ErrInvalidConfig,
			wantMsg: []string{"no orderer organisation"},
		},
		{
			name:    "preferred max bytes above absolute max bytes",
			mutate:  func(tx *fabconfigtx.ConfigTx) error { return tx.Orderer().BatchSize().SetPreferredMaxBytes(64 << 20) },
			signers: []*crypto.SigningIdentity{f.ordererAdmin},
			wantIs:  configtx.ErrInvalidConfig,
			wantMsg: []string{"PreferredMaxBytes", "AbsoluteMaxBytes"},
		},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			before := proto.Clone(f.genesis.Config())
			env := updateEnv(t, f.genesis, c.mutate, signers(c.signers...)...)
			ce, err := configtx.ProposeUpdate(f.genesis, env)
			if !proto.Equal(before, f.genesis.Config()) {
				t.Fatal("ProposeUpdate modified the current configuration")
			}
			if c.wantIs == nil {
				if err != nil {
					t.Fatalf("refused: %v", err)
				}
				if ce.Config.Sequence != 1 || ce.LastUpdate != env {
					t.Fatalf("sequence %d, last update kept: %v", ce.Config.Sequence, ce.LastUpdate == env)
				}
				next, err := channelconfig.New(f.genesis.ChannelID(), ce.Config)
				if err != nil {
					t.Fatal(err)
				}
				if c.check != nil {
					c.check(t, next)
				}
				// A peer receiving the config block accepts the same envelope.
				if _, err := configtx.Validate(f.genesis, ce); err != nil {
					t.Fatalf("Validate: %v", err)
				}
				return
			}
			if err == nil {
				t.Fatal("accepted, want refusal")
			}
			if !errors.Is(err, c.wantIs) {
				t.Errorf("error %v does not match %v", err, c.wantIs)
			}
			for _, m := range c.wantMsg {
				if !strings.Contains(err.Error(), m) {
					t.Errorf("error does not mention %q:\n%v", m, err)
				}
			}
			if !strings.HasPrefix(err.Error(), "config update for channel mychannel: ") {
				t.Errorf("error does not name the channel: %v", err)
			}
		})
	}
}

// TestStaleUpdate applies two updates computed against the same
// configuration: the second one's read set no longer matches.
func TestStaleUpdate(t *testing.T) {
	f := newFixture(t)
	g := f.genesis
	first := updateEnv(t, g, setMaxMessageCount(100), f.ordererAdmin)
	second := updateEnv(t, g, setMaxMessageCount(200), f.ordererAdmin)
	ce, err := configtx.ProposeUpdate(g, first)
	if err != nil {
		t.Fatal(err)
	}
	next, err := configtx.Validate(g, ce)
	if err != nil {
		t.Fatal(err)
	}
	if next.Sequence() != 1 || next.Orderer().MaxMessageCount != 100 {
		t.Fatalf("sequence %d, MaxMessageCount %d", next.Sequence(), next.Orderer().MaxMessageCount)
	}
	_, err = configtx.ProposeUpdate(next, second)
	if !errors.Is(err, configtx.ErrVersionMismatch) {
		t.Fatalf("stale update: %v, want ErrVersionMismatch", err)
	}
	for _, m := range []string{"value /Channel/Orderer/BatchSize", "sets version 1", "already at version 1", "older configuration", "version mismatch"} {
		if !strings.Contains(err.Error(), m) {
			t.Errorf("error does not mention %q: %v", m, err)
		}
	}
	// The same change computed against the new configuration goes through.
	if _, err := apply(t, next, updateEnv(t, next, setMaxMessageCount(200), f.ordererAdmin)); err != nil {
		t.Fatal(err)
	}
	// A config envelope is valid only on top of the configuration it follows.
	if _, err := configtx.Validate(next, ce); !errors.Is(err, configtx.ErrVersionMismatch) {
		t.Fatalf("Validate on a later configuration: %v", err)
	}
	forged := proto.Clone(ce).(*cb.ConfigEnvelope)
	forged.Config.ChannelGroup.Groups["Orderer"].Values["BatchTimeout"].Value = []byte("forged")
	if _, err := configtx.Validate(g, forged); !errors.Is(err, configtx.ErrInvalidConfig) || !strings.Contains(err.Error(), "does not produce") {
		t.Fatalf("Validate of a config that its last update does not produce: %v", err)
	}
}

// TestConsenterChanges grows the Raft group one consenter at a time, then
// shrinks it, and refuses two changes at once.
func TestConsenterChanges(t *testing.T) {
	f := newFixture(t)
	c0, c1, c2 := f.consenters[0], f.consenters[1], f.consenters[2]
	b := f.genesis
	steps := []struct {
		name         string
		mutate       mutation
		wantErr      string
		wantAdded    int
		wantRemoved  int
		wantCount    int
		keepOnRefuse bool
	}{
		{name: "add orderer1", mutate: addConsenters(c1), wantAdded: 1, wantCount: 2},
		{name: "add orderer2", mutate: addConsenters(c2), wantAdded: 1, wantCount: 3},
		{name: "remove orderer0 and orderer1", mutate: removeConsenters(c0, c1), wantErr: "remove 2 node(s)"},
		{name: "remove orderer0", mutate: removeConsenters(c0), wantRemoved: 1, wantCount: 2},
		{name: "rotate orderer1 to orderer0", mutate: func(tx *fabconfigtx.ConfigTx) error {
			if err := removeConsenters(c1)(tx); err != nil {
				return err
			}
			return addConsenters(c0)(tx)
		}, wantAdded: 1, wantRemoved: 1, wantCount: 2},
	}
	for _, s := range steps {
		next, err := apply(t, b, updateEnv(t, b, s.mutate, f.ordererAdmin))
		if s.wantErr != "" {
			if !errors.Is(err, configtx.ErrInvalidConfig) || !strings.Contains(err.Error(), s.wantErr) {
				t.Fatalf("%s: %v, want refusal mentioning %q", s.name, err, s.wantErr)
			}
			continue
		}
		if err != nil {
			t.Fatalf("%s: %v", s.name, err)
		}
		added, removed, err := configtx.ConsenterChange(b, next)
		if err != nil || len(added) != s.wantAdded || len(removed) != s.wantRemoved {
			t.Fatalf("%s: ConsenterChange added %d removed %d err %v", s.name, len(added), len(removed), err)
		}
		if n := len(next.Orderer().Consenters); n != s.wantCount {
			t.Fatalf("%s: %d consenters, want %d", s.name, n, s.wantCount)
		}
		b = next
	}
	if b.Sequence() != 4 {
		t.Fatalf("sequence %d after four accepted updates", b.Sequence())
	}
	// Direct comparison of configurations far apart.
	added, removed, err := configtx.ConsenterChange(f.genesis, f.genesis)
	if err != nil || len(added)+len(removed) != 0 {
		t.Fatalf("no change: %v %v %v", added, removed, err)
	}
}

// TestMalformedUpdates feeds envelopes and updates that are not valid config
// updates; each gets an error saying what is wrong.
func TestMalformedUpdates(t *testing.T) {
	f := newFixture(t)
	g := f.genesis
	good := updateEnv(t, g, setMaxMessageCount(100), f.ordererAdmin)
	goodUpdate := configUpdateOf(t, good)

	// rewrite returns a signed envelope around a modified copy of goodUpdate.
	rewrite := func(edit func(cu *cb.ConfigUpdate)) *cb.Envelope {
		cu := proto.Clone(goodUpdate).(*cb.ConfigUpdate)
		edit(cu)
		return wrap(t, "mychannel", cb.HeaderType_CONFIG_UPDATE, mustMarshal(t, cu), f.ordererAdmin)
	}
	batchSize := func(cu *cb.ConfigUpdate) *cb.ConfigValue {
		return cu.WriteSet.Groups["Orderer"].Values["BatchSize"]
	}
	cases := []struct {
		name    string
		env     *cb.Envelope
		wantIs  error
		wantMsg string
	}{
		{"nil envelope", nil, configtx.ErrMalformed, "no payload"},
		{"garbage payload", &cb.Envelope{Payload: []byte("\xff\xff garbage")}, configtx.ErrMalformed, "payload"},
		{"not a config update", wrapMsg(t, "mychannel", cb.HeaderType_ENDORSER_TRANSACTION, &cb.ConfigUpdateEnvelope{}, f.ordererAdmin),
			configtx.ErrMalformed, "ENDORSER_TRANSACTION, not CONFIG_UPDATE"},
		{"config envelope instead of update", wrapMsg(t, "mychannel", cb.HeaderType_CONFIG, &cb.ConfigEnvelope{Config: g.Config()}, f.ordererAdmin),
			configtx.ErrMalformed, "not CONFIG_UPDATE"},
		{"other channel in the header", updateEnvFor(t, "otherchannel", g, f.ordererAdmin), configtx.ErrWrongChannel, `"otherchannel"`},
		{"other channel in the update", rewrite(func(cu *cb.ConfigUpdate) { cu.ChannelId = "otherchannel" }),
			configtx.ErrWrongChannel, `update inside the envelope is for channel "otherchannel"`},
		{"garbage config update", wrap(t, "mychannel", cb.HeaderType_CONFIG_UPDATE, []byte("\xff\x01garbage"), f.ordererAdmin),
			configtx.ErrMalformed, "ConfigUpdate"},
		{"empty config update", wrap(t, "mychannel", cb.HeaderType_CONFIG_UPDATE, nil, f.ordererAdmin),
			configtx.ErrMalformed, "no config update"},
		{"no write set", rewrite(func(cu *cb.ConfigUpdate) { cu.WriteSet = nil }), configtx.ErrMalformed, "no write set"},
		{"write set equals read set", rewrite(func(cu *cb.ConfigUpdate) { cu.WriteSet = proto.Clone(cu.ReadSet).(*cb.ConfigGroup) }),
			configtx.ErrInvalidUpdate, "changes nothing"},
		{"version raised by two", rewrite(func(cu *cb.ConfigUpdate) { batchSize(cu).Version = 2 }),
			configtx.ErrVersionMismatch, "value /Channel/Orderer/BatchSize: the update sets version 2, but it is at version 0"},
		{"read set version ahead", rewrite(func(cu *cb.ConfigUpdate) { cu.ReadSet.Groups["Orderer"].Version = 5 }),
			configtx.ErrVersionMismatch, "group /Channel/Orderer is at version 0"},
		{"read set names a missing element", rewrite(func(cu *cb.ConfigUpdate) {
			cu.ReadSet.Groups["Orderer"].Values = map[string]*cb.ConfigValue{"Nope": {}}
		}), configtx.ErrVersionMismatch, "no value /Channel/Orderer/Nope"},
		{"new value in an unmodified group", rewrite(func(cu *cb.ConfigUpdate) {
			cu.WriteSet.Groups["Orderer"].Values["Extra"] = &cb.ConfigValue{ModPolicy: "Admins", Value: []byte("x")}
		}), configtx.ErrInvalidUpdate, "value /Channel/Orderer/Extra is new but its group /Channel/Orderer is not modified"},
		{"new value with a version", rewrite(func(cu *cb.ConfigUpdate) {
			cu.WriteSet.Groups["Orderer"].Values["Extra"] = &cb.ConfigValue{Version: 3, ModPolicy: "Admins"}
		}), configtx.ErrVersionMismatch, "value /Channel/Orderer/Extra is new, so its version must be 0, not 3"},
		{"changed value without mod_policy", rewrite(func(cu *cb.ConfigUpdate) { batchSize(cu).ModPolicy = "" }),
			configtx.ErrInvalidUpdate, "mod_policy not set"},
		{"bad element name", rewrite(func(cu *cb.ConfigUpdate) {
			cu.WriteSet.Groups["Orderer"].Values["bad/name"] = &cb.ConfigValue{}
		}), configtx.ErrInvalidUpdate, `name "bad/name"`},
		{"new value without mod_policy in a modified group", rewrite(func(cu *cb.ConfigUpdate) {
			o := cu.WriteSet.Groups["Orderer"]
			o.Version, o.ModPolicy = 1, "Admins"
			o.Values["Ghost"] = &cb.ConfigValue{Value: []byte("boo")}
		}), configtx.ErrInvalidUpdate, "value /Channel/Orderer/Ghost: mod_policy not set"},
		{"mod_policy with a bad path", rewrite(func(cu *cb.ConfigUpdate) { batchSize(cu).ModPolicy = "/Channel//Admins" }),
			configtx.ErrInvalidUpdate, `mod_policy "/Channel//Admins"`},
		{"bad config signature header", withSignatures(t, good, &cb.ConfigSignature{SignatureHeader: []byte("\xff\xff")}),
			configtx.ErrMalformed, "config signature 0: signature header"},
		{"no config signatures", withSignatures(t, good), policy.ErrNotSatisfied, "/Channel/Orderer/Admins"},
		{"signature over another update", withSignatures(t, good, otherSignature(t, g, f)),
			policy.ErrNotSatisfied, "signature 0 by OrdererMSP"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := configtx.ProposeUpdate(g, c.env)
			if err == nil {
				t.Fatal("accepted")
			}
			if !errors.Is(err, c.wantIs) {
				t.Errorf("error does not match %v: %v", c.wantIs, err)
			}
			if !strings.Contains(err.Error(), c.wantMsg) {
				t.Errorf("error does not mention %q:\n%v", c.wantMsg, err)
			}
		})
	}
}

func TestNewUpdateEnvelopeErrors(t *testing.T) {
	f := newFixture(t)
	cfg := f.genesis.Config()
	if _, err := configtx.NewUpdateEnvelope("mychannel", cfg, cfg); err == nil || !strings.Contains(err.Error(), "no signer") {
		t.Errorf("no signer: %v", err)
	}
	if _, err := configtx.NewUpdateEnvelope("mychannel", cfg, cfg, f.ordererAdmin); err == nil || !strings.Contains(err.Error(), "no differences") {
		t.Errorf("no change: %v", err)
	}
	if _, err := configtx.NewUpdateEnvelope("mychannel", nil, cfg, f.ordererAdmin); err == nil {
		t.Error("nil current configuration accepted")
	}
	// The caller's configurations are left as they were.
	tx := fabconfigtx.New(cfg)
	if err := tx.Orderer().BatchSize().SetMaxMessageCount(3); err != nil {
		t.Fatal(err)
	}
	updated := tx.UpdatedConfig()
	before := proto.Clone(updated)
	if _, err := configtx.NewUpdateEnvelope("mychannel", cfg, updated, f.ordererAdmin); err != nil {
		t.Fatal(err)
	}
	if !proto.Equal(before, updated) {
		t.Error("NewUpdateEnvelope modified the updated configuration")
	}
}

func configUpdateOf(t testing.TB, env *cb.Envelope) *cb.ConfigUpdate {
	t.Helper()
	cue := configUpdateEnvelopeOf(t, env)
	cu := &cb.ConfigUpdate{}
	if err := proto.Unmarshal(cue.ConfigUpdate, cu); err != nil {
		t.Fatal(err)
	}
	return cu
}

func configUpdateEnvelopeOf(t testing.TB, env *cb.Envelope) *cb.ConfigUpdateEnvelope {
	t.Helper()
	p := &cb.Payload{}
	if err := proto.Unmarshal(env.Payload, p); err != nil {
		t.Fatal(err)
	}
	cue := &cb.ConfigUpdateEnvelope{}
	if err := proto.Unmarshal(p.Data, cue); err != nil {
		t.Fatal(err)
	}
	return cue
}

func mustMarshal(t testing.TB, m proto.Message) []byte {
	t.Helper()
	b, err := proto.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// wrap signs rawUpdate by s and puts it in an envelope of type typ.
func wrap(t testing.TB, channelID string, typ cb.HeaderType, rawUpdate []byte, s configtx.Signer) *cb.Envelope {
	t.Helper()
	cue := &cb.ConfigUpdateEnvelope{ConfigUpdate: rawUpdate}
	if len(rawUpdate) > 0 {
		cs, err := configtx.ConfigSignature(rawUpdate, s)
		if err != nil {
			t.Fatal(err)
		}
		cue.Signatures = []*cb.ConfigSignature{cs}
	}
	return wrapMsg(t, channelID, typ, cue, s)
}

func wrapMsg(t testing.TB, channelID string, typ cb.HeaderType, msg proto.Message, s configtx.Signer) *cb.Envelope {
	t.Helper()
	p := &cb.Payload{
		Header: &cb.Header{
			ChannelHeader:   mustMarshal(t, &cb.ChannelHeader{Type: int32(typ), ChannelId: channelID}),
			SignatureHeader: mustMarshal(t, &cb.SignatureHeader{Creator: s.Serialize()}),
		},
		Data: mustMarshal(t, msg),
	}
	raw := mustMarshal(t, p)
	sig, err := s.Sign(raw)
	if err != nil {
		t.Fatal(err)
	}
	return &cb.Envelope{Payload: raw, Signature: sig}
}

// updateEnvFor builds a well-formed batch-size update for another channel.
func updateEnvFor(t testing.TB, channelID string, b *channelconfig.Bundle, s configtx.Signer) *cb.Envelope {
	t.Helper()
	tx := fabconfigtx.New(b.Config())
	if err := tx.Orderer().BatchSize().SetMaxMessageCount(100); err != nil {
		t.Fatal(err)
	}
	env, err := configtx.NewUpdateEnvelope(channelID, b.Config(), tx.UpdatedConfig(), s)
	if err != nil {
		t.Fatal(err)
	}
	return env
}

// withSignatures replaces the config signatures of env (and re-signs nothing:
// the outer signature is not ProposeUpdate's business).
func withSignatures(t testing.TB, env *cb.Envelope, sigs ...*cb.ConfigSignature) *cb.Envelope {
	t.Helper()
	p := &cb.Payload{}
	if err := proto.Unmarshal(env.Payload, p); err != nil {
		t.Fatal(err)
	}
	cue := &cb.ConfigUpdateEnvelope{}
	if err := proto.Unmarshal(p.Data, cue); err != nil {
		t.Fatal(err)
	}
	cue.Signatures = sigs
	p.Data = mustMarshal(t, cue)
	return &cb.Envelope{Payload: mustMarshal(t, p), Signature: env.Signature}
}

// otherSignature is the orderer admin's signature over a different update.
func otherSignature(t testing.TB, b *channelconfig.Bundle, f *fixture) *cb.ConfigSignature {
	t.Helper()
	other := updateEnv(t, b, setMaxMessageCount(5), f.ordererAdmin)
	return configUpdateEnvelopeOf(t, other).Signatures[0]
}
