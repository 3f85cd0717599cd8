package policy

import (
	"crypto/elliptic"
	"encoding/asn1"
	"errors"
	"math/big"
	"strings"
	"testing"

	cb "github.com/hyperledger/fabric-protos-go-apiv2/common"
	"google.golang.org/protobuf/proto"

	"github.com/cairn-ledger/cairn/internal/crypto"
	"github.com/cairn-ledger/cairn/internal/msp"
	"github.com/cairn-ledger/cairn/internal/msp/msptest"
)

// fixture is three organisations with a few identities each.
type fixture struct {
	cas    map[string]*msptest.CA
	ids    *msp.Manager
	leaves map[string]*msptest.Leaf // "Org1MSP.peer" -> leaf
}

func newFixture(t testing.TB) *fixture {
	f := &fixture{cas: map[string]*msptest.CA{}, leaves: map[string]*msptest.Leaf{}}
	var cas []*msptest.CA
	for _, org := range []string{"Org1MSP", "Org2MSP", "Org3MSP"} {
		ca := msptest.NewCA(t, org)
		f.cas[org] = ca
		cas = append(cas, ca)
		for _, role := range []string{"peer", "client", "admin", "orderer"} {
			f.leaves[org+"."+role] = ca.Issue(t, role+"."+strings.ToLower(org), role)
		}
	}
	f.ids = msptest.Manager(t, cas...)
	return f
}

var msg = []byte("the signed bytes")

func (f *fixture) sign(t testing.TB, who ...string) []SignedData {
	var out []SignedData
	for _, w := range who {
		l := f.leaves[w]
		if l == nil {
			t.Fatalf("no leaf %s", w)
		}
		out = append(out, SignedData{Data: msg, Identity: l.Serialize(), Signature: l.Sign(t, msg)})
	}
	return out
}

func mustDSL(t testing.TB, s string) *cb.SignaturePolicyEnvelope {
	spe, err := ParseDSL(s)
	if err != nil {
		t.Fatal(err)
	}
	return spe
}

func TestEvaluateEnvelope(t *testing.T) {
	f := newFixture(t)
	tests := []struct {
		name   string
		policy string
		signed []string
		ok     bool
	}{
		{"and both", "AND('Org1MSP.peer','Org2MSP.peer')", []string{"Org1MSP.peer", "Org2MSP.peer"}, true},
		{"and order irrelevant", "AND('Org1MSP.peer','Org2MSP.peer')", []string{"Org2MSP.peer", "Org1MSP.peer"}, true},
		{"and one missing", "AND('Org1MSP.peer','Org2MSP.peer')", []string{"Org1MSP.peer"}, false},
		{"and wrong role", "AND('Org1MSP.peer','Org2MSP.peer')", []string{"Org1MSP.peer", "Org2MSP.client"}, false},
		{"or one", "OR('Org1MSP.member','Org2MSP.admin')", []string{"Org2MSP.admin"}, true},
		{"member includes all roles", "OR('Org1MSP.member')", []string{"Org1MSP.orderer"}, true},
		{"or none", "OR('Org1MSP.member','Org2MSP.admin')", []string{"Org3MSP.admin"}, false},
		{"outof 2 of 3", "OutOf(2,'Org1MSP.member','Org2MSP.member','Org3MSP.member')", []string{"Org3MSP.client", "Org1MSP.peer"}, true},
		{"outof 2 of 3 only one", "OutOf(2,'Org1MSP.member','Org2MSP.member','Org3MSP.member')", []string{"Org3MSP.client"}, false},
		{"one identity one principal", "AND('Org1MSP.member','Org1MSP.member')", []string{"Org1MSP.peer"}, false},
		{"two identities same org", "AND('Org1MSP.member','Org1MSP.member')", []string{"Org1MSP.peer", "Org1MSP.client"}, true},
		{"duplicate signer counts once", "OutOf(2,'Org1MSP.member','Org1MSP.member')", []string{"Org1MSP.peer", "Org1MSP.peer"}, false},
		{"nested", "OR(AND('Org1MSP.peer','Org2MSP.peer'), 'Org3MSP.admin')", []string{"Org3MSP.admin"}, true},
		{"no signatures", "OR('Org1MSP.member')", nil, false},
		{"outof zero", "OutOf(0,'Org1MSP.member')", nil, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := EvaluateEnvelope(mustDSL(t, tc.policy), f.sign(t, tc.signed...), f.ids)
			if tc.ok && err != nil {
				t.Fatalf("want satisfied: %v", err)
			}
			if !tc.ok {
				var pe *Error
				if !errors.As(err, &pe) || !errors.Is(err, ErrNotSatisfied) {
					t.Fatalf("want *Error, got %v", err)
				}
			}
		})
	}
}

// Fabric's evaluation is greedy: a principal takes the first unused identity
// satisfying it, even if a later principal then goes unmatched.
func TestGreedyLikeFabric(t *testing.T) {
	f := newFixture(t)
	spe := mustDSL(t, "AND('Org1MSP.member','Org1MSP.peer')")
	if err := EvaluateEnvelope(spe, f.sign(t, "Org1MSP.peer", "Org1MSP.client"), f.ids); err == nil {
		t.Fatal("greedy matching should fail here, as in Fabric")
	}
	if err := EvaluateEnvelope(spe, f.sign(t, "Org1MSP.client", "Org1MSP.peer"), f.ids); err != nil {
		t.Fatalf("other order: %v", err)
	}
}

func TestErrorExplains(t *testing.T) {
	f := newFixture(t)
	stranger := msptest.NewCA(t, "Org9MSP").Issue(t, "stranger", "peer")
	impostor := msptest.NewCA(t, "Org2MSP").Issue(t, "impostor", "peer")

	signed := f.sign(t, "Org1MSP.peer", "Org2MSP.client", "Org1MSP.peer")
	signed = append(signed,
		SignedData{Data: msg, Identity: stranger.Serialize(), Signature: stranger.Sign(t, msg)},
		SignedData{Data: msg, Identity: impostor.Serialize(), Signature: impostor.Sign(t, msg)},
		SignedData{Data: []byte("other bytes"), Identity: f.leaves["Org2MSP.peer"].Serialize(), Signature: f.leaves["Org2MSP.peer"].Sign(t, msg)},
		SignedData{Data: msg, Identity: []byte{0xff}, Signature: nil},
		SignedData{Data: msg, Identity: f.leaves["Org3MSP.peer"].Serialize(), Signature: f.leaves["Org3MSP.peer"].Sign(t, msg)},
	)
	err := EvaluateEnvelope(mustDSL(t, "AND('Org1MSP.peer','Org2MSP.peer')"), signed, f.ids)
	var pe *Error
	if !errors.As(err, &pe) {
		t.Fatalf("err = %v", err)
	}
	if pe.Required != 2 || pe.Satisfied != 1 || strings.Join(pe.Missing, ",") != "'Org2MSP.peer'" {
		t.Fatalf("Required=%d Satisfied=%d Missing=%v", pe.Required, pe.Satisfied, pe.Missing)
	}
	wantReasons := []struct {
		counted bool
		reason  string
		errIs   error
	}{
		{true, "", nil},
		{false, "has role client, needs peer", nil},
		{false, "duplicate of signature 0", nil},
		{false, `unknown MSP "Org9MSP"`, msp.ErrUnknownMSP},
		{false, "untrusted issuer", msp.ErrUnknownIssuer},
		{false, "bad signature", crypto.ErrBadSignature},
		{false, "invalid identity", msp.ErrMalformedIdentity},
		{false, `MSP "Org3MSP" is not named by the policy`, nil},
	}
	if len(pe.Signatures) != len(wantReasons) {
		t.Fatalf("%d signature results, want %d", len(pe.Signatures), len(wantReasons))
	}
	for i, w := range wantReasons {
		s := pe.Signatures[i]
		if s.Index != i || s.Counted != w.counted || !strings.Contains(s.Reason, w.reason) {
			t.Errorf("signature %d = %+v, want counted=%v reason~%q", i, s, w.counted, w.reason)
		}
		if w.errIs != nil && !errors.Is(s.Err, w.errIs) {
			t.Errorf("signature %d Err = %v, want %v", i, s.Err, w.errIs)
		}
	}
	if pe.Signatures[0].CountedFor != "'Org1MSP.peer'" {
		t.Errorf("CountedFor = %q", pe.Signatures[0].CountedFor)
	}
	line := err.Error()
	for _, want := range []string{"AND('Org1MSP.peer', 'Org2MSP.peer') needs 2, got 1", "missing 'Org2MSP.peer'", `signature 1 by Org2MSP "client.org2msp" did not count: Org2MSP client "client.org2msp" has role client, needs peer`} {
		if !strings.Contains(line, want) {
			t.Errorf("message lacks %q:\n%s", want, line)
		}
	}
	if strings.Contains(line, "\n") {
		t.Errorf("message is not one line: %q", line)
	}
}

func TestHighSAndRevoked(t *testing.T) {
	ca := msptest.NewCA(t, "Org1MSP")
	good := ca.Issue(t, "good", "peer")
	gone := ca.Issue(t, "gone", "peer")
	ca.Revoke(t, gone)
	ids := msptest.Manager(t, ca)
	sig := good.Sign(t, msg)
	hi := flipS(t, sig)
	err := EvaluateEnvelope(mustDSL(t, "OR('Org1MSP.peer')"), []SignedData{
		{Data: msg, Identity: good.Serialize(), Signature: hi},
		{Data: msg, Identity: gone.Serialize(), Signature: gone.Sign(t, msg)},
	}, ids)
	var pe *Error
	if !errors.As(err, &pe) {
		t.Fatalf("err = %v", err)
	}
	if !strings.Contains(pe.Signatures[0].Reason, "high-S") || !errors.Is(pe.Signatures[0].Err, crypto.ErrHighS) {
		t.Errorf("high-S: %+v", pe.Signatures[0])
	}
	if !strings.Contains(pe.Signatures[1].Reason, "revoked") || !errors.Is(pe.Signatures[1].Err, msp.ErrRevoked) {
		t.Errorf("revoked: %+v", pe.Signatures[1])
	}
	// A bad signature followed by a good one from the same identity still counts.
	if err := EvaluateEnvelope(mustDSL(t, "OR('Org1MSP.peer')"), []SignedData{
		{Data: msg, Identity: good.Serialize(), Signature: hi},
		{Data: msg, Identity: good.Serialize(), Signature: sig},
	}, ids); err != nil {
		t.Fatalf("bad then good: %v", err)
	}
}

// flipS returns the high-S twin of a low-S signature.
func flipS(t *testing.T, sig []byte) []byte {
	t.Helper()
	var s struct{ R, S *big.Int }
	if _, err := asn1.Unmarshal(sig, &s); err != nil {
		t.Fatal(err)
	}
	s.S = new(big.Int).Sub(elliptic.P256().Params().N, s.S)
	b, err := asn1.Marshal(s)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestCompileErrors(t *testing.T) {
	ids := msp.NewManager()
	tests := []struct {
		name string
		spe  *cb.SignaturePolicyEnvelope
		want string
	}{
		{"nil", nil, "nil envelope"},
		{"version", &cb.SignaturePolicyEnvelope{Version: 1, Rule: SignedBy(0)}, "version 1"},
		{"no rule", &cb.SignaturePolicyEnvelope{}, "no rule"},
		{"index out of range", &cb.SignaturePolicyEnvelope{Rule: SignedBy(3), Identities: SignedByAnyMember([]string{"A"}).Identities}, "out of range"},
		{"empty rule", &cb.SignaturePolicyEnvelope{Rule: &cb.SignaturePolicy{}}, "neither"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := EvaluateEnvelope(tc.spe, nil, ids)
			if err == nil || !strings.Contains(err.Error(), tc.want) || errors.Is(err, ErrNotSatisfied) {
				t.Fatalf("err = %v, want compile error containing %q", err, tc.want)
			}
		})
	}
}

// configPolicy helpers.
func sigPolicy(t testing.TB, dsl string) *cb.ConfigPolicy {
	b, err := proto.Marshal(mustDSL(t, dsl))
	if err != nil {
		t.Fatal(err)
	}
	return &cb.ConfigPolicy{Policy: &cb.Policy{Type: int32(cb.Policy_SIGNATURE), Value: b}}
}

func metaPolicy(t testing.TB, rule cb.ImplicitMetaPolicy_Rule, sub string) *cb.ConfigPolicy {
	b, err := proto.Marshal(&cb.ImplicitMetaPolicy{Rule: rule, SubPolicy: sub})
	if err != nil {
		t.Fatal(err)
	}
	return &cb.ConfigPolicy{Policy: &cb.Policy{Type: int32(cb.Policy_IMPLICIT_META), Value: b}}
}

// channelGroup is the policy skeleton configtxgen writes for a channel with
// three application organisations and one orderer organisation.
func channelGroup(t testing.TB) *cb.ConfigGroup {
	org := func(id string) *cb.ConfigGroup {
		return &cb.ConfigGroup{Policies: map[string]*cb.ConfigPolicy{
			"Readers":     sigPolicy(t, "OR('"+id+".admin','"+id+".peer','"+id+".client')"),
			"Writers":     sigPolicy(t, "OR('"+id+".admin','"+id+".client')"),
			"Admins":      sigPolicy(t, "OR('"+id+".admin')"),
			"Endorsement": sigPolicy(t, "OR('"+id+".peer')"),
		}}
	}
	std := func() map[string]*cb.ConfigPolicy {
		return map[string]*cb.ConfigPolicy{
			"Readers": metaPolicy(t, cb.ImplicitMetaPolicy_ANY, "Readers"),
			"Writers": metaPolicy(t, cb.ImplicitMetaPolicy_ANY, "Writers"),
			"Admins":  metaPolicy(t, cb.ImplicitMetaPolicy_MAJORITY, "Admins"),
		}
	}
	app := &cb.ConfigGroup{
		Groups:   map[string]*cb.ConfigGroup{"Org1MSP": org("Org1MSP"), "Org2MSP": org("Org2MSP"), "Org3MSP": org("Org3MSP")},
		Policies: std(),
	}
	app.Policies["Endorsement"] = metaPolicy(t, cb.ImplicitMetaPolicy_MAJORITY, "Endorsement")
	app.Policies["LifecycleEndorsement"] = metaPolicy(t, cb.ImplicitMetaPolicy_MAJORITY, "Endorsement")
	app.Policies["AllAdmins"] = metaPolicy(t, cb.ImplicitMetaPolicy_ALL, "Admins")
	app.Policies["Missing"] = metaPolicy(t, cb.ImplicitMetaPolicy_ANY, "NoSuchPolicy")
	ord := &cb.ConfigGroup{
		Groups: map[string]*cb.ConfigGroup{"OrdererOrg": {Policies: map[string]*cb.ConfigPolicy{
			"Readers": sigPolicy(t, "OR('OrdererOrg.member')"),
			"Writers": sigPolicy(t, "OR('OrdererOrg.member')"),
			"Admins":  sigPolicy(t, "OR('OrdererOrg.admin')"),
		}}},
		Policies: std(),
	}
	ord.Policies["BlockValidation"] = metaPolicy(t, cb.ImplicitMetaPolicy_ANY, "Writers")
	return &cb.ConfigGroup{
		Groups:   map[string]*cb.ConfigGroup{"Application": app, "Orderer": ord, "Empty": {Policies: std()}},
		Policies: std(),
	}
}

func TestManager(t *testing.T) {
	f := newFixture(t)
	oca := msptest.NewCA(t, "OrdererOrg")
	f.leaves["OrdererOrg.orderer"] = oca.Issue(t, "orderer0", "orderer")
	f.ids = msp.NewManager(f.cas["Org1MSP"].MSP(t), f.cas["Org2MSP"].MSP(t), f.cas["Org3MSP"].MSP(t), oca.MSP(t))
	pm, err := NewManager(channelGroup(t), f.ids)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		path   string
		signed []string
		ok     bool
	}{
		{"/Channel/Application/Writers", []string{"Org2MSP.client"}, true},
		{"/Channel/Application/Writers", []string{"Org2MSP.peer"}, false},
		{"/Channel/Writers", []string{"Org1MSP.client"}, true},
		{"Writers", []string{"OrdererOrg.orderer"}, true},
		{"Application/Readers", []string{"Org3MSP.peer"}, true},
		{"/Channel/Application/Org1MSP/Endorsement", []string{"Org1MSP.peer"}, true},
		{"/Channel/Application/Org1MSP/Endorsement", []string{"Org2MSP.peer"}, false},
		{"/Channel/Application/Endorsement", []string{"Org1MSP.peer", "Org3MSP.peer"}, true},
		{"/Channel/Application/LifecycleEndorsement", []string{"Org1MSP.peer"}, false},
		{"/Channel/Application/LifecycleEndorsement", []string{"Org1MSP.peer", "Org2MSP.peer"}, true},
		{"/Channel/Application/Admins", []string{"Org1MSP.admin", "Org2MSP.admin"}, true},
		{"/Channel/Application/Admins", []string{"Org1MSP.admin", "Org2MSP.peer"}, false},
		{"/Channel/Application/AllAdmins", []string{"Org1MSP.admin", "Org2MSP.admin"}, false},
		{"/Channel/Application/AllAdmins", []string{"Org1MSP.admin", "Org2MSP.admin", "Org3MSP.admin"}, true},
		{"/Channel/Orderer/BlockValidation", []string{"OrdererOrg.orderer"}, true},
		{"/Channel/Orderer/BlockValidation", []string{"Org1MSP.peer"}, false},
		{"/Channel/Empty/Admins", nil, true}, // no child groups: satisfied, as in Fabric
		{"/Channel/Application/Missing", []string{"Org1MSP.admin"}, false},
	}
	for _, tc := range tests {
		t.Run(tc.path+"/"+strings.Join(tc.signed, "+"), func(t *testing.T) {
			p, err := pm.Policy(tc.path)
			if err != nil {
				t.Fatal(err)
			}
			err = p.Evaluate(f.sign(t, tc.signed...))
			if (err == nil) != tc.ok {
				t.Fatalf("Evaluate = %v, want ok=%v", err, tc.ok)
			}
			if err != nil && !errors.Is(err, ErrNotSatisfied) {
				t.Fatalf("error does not match ErrNotSatisfied: %v", err)
			}
		})
	}
	for _, bad := range []string{"/Channel/Nope/Writers", "/Channel/Application/Nope", "/Other/Writers", "", "Application//Writers"} {
		if _, err := pm.Policy(bad); !errors.Is(err, ErrNoPolicy) {
			t.Errorf("Policy(%q) = %v, want ErrNoPolicy", bad, err)
		}
	}
	if paths := pm.Paths(); len(paths) == 0 || paths[0] != "/Channel/Admins" {
		t.Errorf("Paths = %v", paths)
	}
}

func TestImplicitMetaError(t *testing.T) {
	f := newFixture(t)
	pm, err := NewManager(channelGroup(t), f.ids)
	if err != nil {
		t.Fatal(err)
	}
	p, _ := pm.Policy("/Channel/Application/Admins")
	err = p.Evaluate(f.sign(t, "Org1MSP.admin", "Org2MSP.peer"))
	var pe *Error
	if !errors.As(err, &pe) {
		t.Fatalf("err = %v", err)
	}
	if pe.Path != "/Channel/Application/Admins" || pe.Required != 2 || pe.Satisfied != 1 || pe.Total != 3 {
		t.Fatalf("%+v", pe)
	}
	if strings.Join(pe.Missing, ",") != "/Channel/Application/Org2MSP/Admins,/Channel/Application/Org3MSP/Admins" {
		t.Fatalf("Missing = %v", pe.Missing)
	}
	line := err.Error()
	for _, want := range []string{
		"policy /Channel/Application/Admins not satisfied: MAJORITY Admins needs 2 of 3 sub-policies, 1 satisfied",
		"/Channel/Application/Org2MSP/Admins OR('Org2MSP.admin') needs 1, got 0",
		"has role peer, needs admin",
	} {
		if !strings.Contains(line, want) {
			t.Errorf("message lacks %q:\n%s", want, line)
		}
	}
	mp, _ := pm.Policy("/Channel/Application/Missing")
	err = mp.Evaluate(nil)
	if !errors.Is(err, ErrNotSatisfied) || !strings.Contains(err.Error(), "no such policy /Channel/Application/Org1MSP/NoSuchPolicy") {
		t.Fatalf("missing sub-policy: %v", err)
	}
}

func TestNewManagerErrors(t *testing.T) {
	ids := msp.NewManager()
	bad := func(p *cb.ConfigPolicy) *cb.ConfigGroup {
		return &cb.ConfigGroup{Policies: map[string]*cb.ConfigPolicy{"P": p}}
	}
	tests := []struct {
		name string
		g    *cb.ConfigGroup
		want string
	}{
		{"nil", nil, "nil channel group"},
		{"empty policy", bad(&cb.ConfigPolicy{}), "/Channel/P: empty"},
		{"unknown type", bad(&cb.ConfigPolicy{Policy: &cb.Policy{Type: 2}}), "type 2 not supported"},
		{"garbage signature", bad(&cb.ConfigPolicy{Policy: &cb.Policy{Type: 1, Value: []byte{0xff}}}), "unmarshal SignaturePolicyEnvelope"},
		{"garbage meta", bad(&cb.ConfigPolicy{Policy: &cb.Policy{Type: 3, Value: []byte{0xff}}}), "unmarshal ImplicitMetaPolicy"},
		{"meta without sub", bad(metaPolicy(t, cb.ImplicitMetaPolicy_ANY, "")), "empty sub_policy"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := NewManager(tc.g, ids)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want %q", err, tc.want)
			}
		})
	}
}

func BenchmarkEvaluateAND2(b *testing.B) {
	f := newFixture(b)
	p, err := NewSignaturePolicy(mustDSL(b, "AND('Org1MSP.peer','Org2MSP.peer')"), f.ids)
	if err != nil {
		b.Fatal(err)
	}
	signed := f.sign(b, "Org1MSP.peer", "Org2MSP.peer")
	if err := p.Evaluate(signed); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if err := p.Evaluate(signed); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkEvaluateAND2Verified is BenchmarkEvaluateAND2 without the ECDSA
// checks (the callers verified them, as validation does for the peer's own
// endorsement): what is left is matching signers to principals, where every
// mismatch makes an error that is then discarded.
func BenchmarkEvaluateAND2Verified(b *testing.B) {
	f := newFixture(b)
	p, err := NewSignaturePolicy(mustDSL(b, "AND('Org1MSP.peer','Org2MSP.peer')"), f.ids)
	if err != nil {
		b.Fatal(err)
	}
	signed := f.sign(b, "Org2MSP.peer", "Org1MSP.peer")
	for i := range signed {
		signed[i].SignatureVerified = true
	}
	b.ReportAllocs()
	for b.Loop() {
		if err := p.Evaluate(signed); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkChannelWriters(b *testing.B) { benchChannelWriters(b, false) }

// BenchmarkChannelWritersVerified is BenchmarkChannelWriters without the
// ECDSA check: the ImplicitMeta walk, where Org1's and Org2's Writers fail for
// Org3's client before Org3's hold.
func BenchmarkChannelWritersVerified(b *testing.B) { benchChannelWriters(b, true) }

func benchChannelWriters(b *testing.B, verified bool) {
	f := newFixture(b)
	pm, err := NewManager(channelGroup(b), f.ids)
	if err != nil {
		b.Fatal(err)
	}
	p, _ := pm.Policy("/Channel/Writers")
	signed := f.sign(b, "Org3MSP.client")
	signed[0].SignatureVerified = verified
	b.ReportAllocs()
	for b.Loop() {
		if err := p.Evaluate(signed); err != nil {
			b.Fatal(err)
		}
	}
}

// TestSignatureVerified: a caller that has verified a signature already can
// say so and evaluation skips the ECDSA check, but the identity is still
// deserialised and validated by the policy's MSPs.
func TestSignatureVerified(t *testing.T) {
	f := newFixture(t)
	spe := mustDSL(t, "OR('Org1MSP.member')")
	bad := f.sign(t, "Org1MSP.client")
	bad[0].Signature = f.leaves["Org1MSP.client"].Sign(t, []byte("other bytes"))
	if err := EvaluateEnvelope(spe, bad, f.ids); !errors.Is(err, ErrNotSatisfied) {
		t.Fatalf("unverified bad signature: %v, want not satisfied", err)
	}
	bad[0].SignatureVerified = true
	if err := EvaluateEnvelope(spe, bad, f.ids); err != nil {
		t.Fatalf("signature vouched for by the caller: %v", err)
	}
	stranger := msptest.NewCA(t, "Org1MSP").Issue(t, "mallory", "client")
	forged := []SignedData{{Data: msg, Identity: stranger.Serialize(), Signature: stranger.Sign(t, msg), SignatureVerified: true}}
	if err := EvaluateEnvelope(spe, forged, f.ids); !errors.Is(err, ErrNotSatisfied) {
		t.Fatalf("identity from an unknown CA vouched for: %v, want not satisfied", err)
	}
}
