package validator_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	cb "github.com/hyperledger/fabric-protos-go-apiv2/common"
	"github.com/hyperledger/fabric-protos-go-apiv2/ledger/rwset"
	"github.com/hyperledger/fabric-protos-go-apiv2/ledger/rwset/kvrwset"
	pb "github.com/hyperledger/fabric-protos-go-apiv2/peer"
	"google.golang.org/protobuf/proto"

	"github.com/cairn-ledger/cairn/internal/block"
	"github.com/cairn-ledger/cairn/internal/channelconfig"
	"github.com/cairn-ledger/cairn/internal/crypto"
	"github.com/cairn-ledger/cairn/internal/cryptogen"
	"github.com/cairn-ledger/cairn/internal/envelope"
	"github.com/cairn-ledger/cairn/internal/msp/msptest"
	"github.com/cairn-ledger/cairn/internal/netconfig"
	"github.com/cairn-ledger/cairn/internal/policy"
	"github.com/cairn-ledger/cairn/peer/internal/validator"
)

const (
	ordDomain = "example.com"
	orgDomain = "org1.example.com"
	chaincode = "basic"
)

// fixture is a real channel: crypto material from cryptogen, the genesis
// block's bundle, and the identities that sign transactions.
type fixture struct {
	genesis *cb.Block
	bundle  *channelconfig.Bundle
	peer    *crypto.SigningIdentity // Org1MSP peer0: a valid endorser
	user    *crypto.SigningIdentity // Org1MSP User1: a client
	orderer *crypto.SigningIdentity
}

func newFixture(tb testing.TB) *fixture {
	tb.Helper()
	dir := tb.TempDir()
	net := netconfig.Default()
	net.OrdererOrgs[0].Orderers[0].Port = 7050
	net.PeerOrgs[0].Peers[0].Port = 7051
	if err := cryptogen.Generate(net, dir); err != nil {
		tb.Fatal(err)
	}
	genesis, err := channelconfig.Genesis(net, dir)
	if err != nil {
		tb.Fatal(err)
	}
	bundle, err := channelconfig.FromBlock(genesis)
	if err != nil {
		tb.Fatal(err)
	}
	l := cryptogen.Layout{Root: dir}
	load := func(mspID, mspDir string) *crypto.SigningIdentity {
		id, err := crypto.LoadSigningIdentity(mspID, mspDir)
		if err != nil {
			tb.Fatal(err)
		}
		return id
	}
	return &fixture{
		genesis: genesis,
		bundle:  bundle,
		peer:    load("Org1MSP", l.NodeMSPDir(true, orgDomain, "peer0."+orgDomain)),
		user:    load("Org1MSP", l.UserMSPDir(true, orgDomain, "User1")),
		orderer: load("OrdererMSP", l.NodeMSPDir(false, ordDomain, "orderer0."+ordDomain)),
	}
}

// policies resolves "basic" to OR('Org1MSP.peer') and nothing else.
type policies struct{ spe *cb.SignaturePolicyEnvelope }

func newPolicies(tb testing.TB) policies {
	spe, err := policy.ParseDSL("OR('Org1MSP.peer')")
	if err != nil {
		tb.Fatal(err)
	}
	return policies{spe: spe}
}

func (p policies) EndorsementPolicy(ns string, _ []*kvrwset.KVWrite) (*cb.SignaturePolicyEnvelope, string, error) {
	if ns == chaincode {
		return p.spe, "", nil
	}
	return nil, "", validator.ErrUndefined
}

// ledger is the set of tx IDs already committed.
type ledger map[string]bool

func (l ledger) TxIDExists(txID string) (bool, error) { return l[txID], nil }

type failingLedger struct{}

func (failingLedger) TxIDExists(string) (bool, error) { return false, errors.New("disk on fire") }

// writes is a marshalled TxReadWriteSet writing one key to namespace ns.
func writes(tb testing.TB, ns string) []byte {
	tb.Helper()
	kv, err := proto.Marshal(&kvrwset.KVRWSet{Writes: []*kvrwset.KVWrite{{Key: "asset1", Value: []byte("blue")}}})
	if err != nil {
		tb.Fatal(err)
	}
	raw, err := proto.Marshal(&rwset.TxReadWriteSet{
		DataModel: rwset.TxReadWriteSet_KV,
		NsRwset:   []*rwset.NsReadWriteSet{{Namespace: ns, Rwset: kv}},
	})
	if err != nil {
		tb.Fatal(err)
	}
	return raw
}

// txSpec describes one endorser transaction; zero values give a valid one.
type txSpec struct {
	channel   string                           // default: the fixture's channel
	creator   envelope.Signer                  // proposal creator and envelope signer; default user
	endorsers []envelope.Signer                // default: the peer
	results   []byte                           // default: writes to "basic"
	txID      string                           // if set, replaces the derived tx ID
	mutate    func(*cb.Envelope)               // applied after the client signs
	action    func(*pb.ChaincodeActionPayload) // applied to the action before signing
}

// tx builds a signed endorser transaction envelope and returns it marshalled
// with its tx ID.
func (f *fixture) tx(tb testing.TB, s txSpec) ([]byte, string) {
	tb.Helper()
	if s.channel == "" {
		s.channel = f.bundle.ChannelID()
	}
	if s.creator == nil {
		s.creator = f.user
	}
	if s.endorsers == nil {
		s.endorsers = []envelope.Signer{f.peer}
	}
	if s.results == nil {
		s.results = writes(tb, chaincode)
	}
	prop, txID, err := envelope.NewProposal(s.channel, chaincode, [][]byte{[]byte("CreateAsset"), []byte("asset1")}, nil, s.creator.Serialize())
	if err != nil {
		tb.Fatal(err)
	}
	sp, err := envelope.SignProposal(prop, s.creator)
	if err != nil {
		tb.Fatal(err)
	}
	p, err := envelope.UnpackProposal(sp)
	if err != nil {
		tb.Fatal(err)
	}
	if s.txID != "" {
		txID = s.txID
		p.ChannelHeader.TxId = txID
		if p.Header.ChannelHeader, err = proto.Marshal(p.ChannelHeader); err != nil {
			tb.Fatal(err)
		}
	}
	var responses []*pb.ProposalResponse
	for _, e := range s.endorsers {
		r, err := envelope.Endorse(p, e, &pb.Response{Status: 200}, s.results, nil, &pb.ChaincodeID{Name: chaincode})
		if err != nil {
			tb.Fatal(err)
		}
		responses = append(responses, r)
	}
	env, err := envelope.NewTransaction(p, responses)
	if err != nil {
		tb.Fatal(err)
	}
	if s.action != nil {
		env.Payload = rewriteAction(tb, env.Payload, s.action)
	}
	if env.Signature, err = s.creator.Sign(env.Payload); err != nil {
		tb.Fatal(err)
	}
	if s.mutate != nil {
		s.mutate(env)
	}
	return marshal(tb, env), txID
}

// rewriteAction decodes a transaction payload down to its action payload,
// applies fn and re-encodes it.
func rewriteAction(tb testing.TB, raw []byte, fn func(*pb.ChaincodeActionPayload)) []byte {
	tb.Helper()
	payload := &cb.Payload{}
	tx := &pb.Transaction{}
	ap := &pb.ChaincodeActionPayload{}
	if err := proto.Unmarshal(raw, payload); err != nil {
		tb.Fatal(err)
	}
	if err := proto.Unmarshal(payload.Data, tx); err != nil {
		tb.Fatal(err)
	}
	if err := proto.Unmarshal(tx.Actions[0].Payload, ap); err != nil {
		tb.Fatal(err)
	}
	fn(ap)
	tx.Actions[0].Payload = marshal(tb, ap)
	payload.Data = marshal(tb, tx)
	return marshal(tb, payload)
}

func marshal(tb testing.TB, m proto.Message) []byte {
	tb.Helper()
	b, err := proto.Marshal(m)
	if err != nil {
		tb.Fatal(err)
	}
	return b
}

// other builds a correctly signed non-endorser envelope of type typ.
func (f *fixture) other(tb testing.TB, typ cb.HeaderType) []byte {
	tb.Helper()
	env, err := envelope.NewSignedEnvelope(typ, f.bundle.ChannelID(), f.user, &cb.ConfigEnvelope{})
	if err != nil {
		tb.Fatal(err)
	}
	return marshal(tb, env)
}

func TestValidate(t *testing.T) {
	f := newFixture(t)
	stranger := msptest.NewCA(t, "Org1MSP").Issue(t, "x", "client").SigningIdentity()
	flip := func(env *cb.Envelope) { env.Signature[len(env.Signature)/2] ^= 0x01 }

	tests := []struct {
		name string
		data func(t *testing.T) []byte
		want pb.TxValidationCode
	}{
		{"valid", func(t *testing.T) []byte { d, _ := f.tx(t, txSpec{}); return d }, pb.TxValidationCode_VALID},
		{"empty envelope", func(*testing.T) []byte { return nil }, pb.TxValidationCode_NIL_ENVELOPE},
		{"garbage envelope", func(*testing.T) []byte { return []byte{0xff} }, pb.TxValidationCode_NIL_ENVELOPE},
		{"garbage payload", func(t *testing.T) []byte {
			return marshal(t, &cb.Envelope{Payload: []byte{0xff}, Signature: []byte("sig")})
		}, pb.TxValidationCode_BAD_PAYLOAD},
		{"payload without header", func(t *testing.T) []byte {
			return marshal(t, &cb.Envelope{Payload: marshal(t, &cb.Payload{Data: []byte("x")}), Signature: []byte("sig")})
		}, pb.TxValidationCode_BAD_PAYLOAD},
		{"other channel", func(t *testing.T) []byte { d, _ := f.tx(t, txSpec{channel: "otherchannel"}); return d }, pb.TxValidationCode_TARGET_CHAIN_NOT_FOUND},
		{"unknown header type", func(t *testing.T) []byte { return f.other(t, cb.HeaderType_MESSAGE) }, pb.TxValidationCode_UNKNOWN_TX_TYPE},
		{"tampered envelope signature", func(t *testing.T) []byte { d, _ := f.tx(t, txSpec{mutate: flip}); return d }, pb.TxValidationCode_BAD_CREATOR_SIGNATURE},
		{"creator from unknown CA", func(t *testing.T) []byte { d, _ := f.tx(t, txSpec{creator: stranger}); return d }, pb.TxValidationCode_BAD_CREATOR_SIGNATURE},
		{"tx ID not derived from nonce and creator", func(t *testing.T) []byte {
			d, _ := f.tx(t, txSpec{txID: envelope.TxID([]byte("another nonce"), f.user.Serialize())})
			return d
		}, pb.TxValidationCode_BAD_PROPOSAL_TXID},
		{"endorsed by a client", func(t *testing.T) []byte { d, _ := f.tx(t, txSpec{endorsers: []envelope.Signer{f.user}}); return d }, pb.TxValidationCode_ENDORSEMENT_POLICY_FAILURE},
		{"endorsed by an orderer", func(t *testing.T) []byte { d, _ := f.tx(t, txSpec{endorsers: []envelope.Signer{f.orderer}}); return d }, pb.TxValidationCode_ENDORSEMENT_POLICY_FAILURE},
		{"no endorsements", func(t *testing.T) []byte {
			d, _ := f.tx(t, txSpec{action: func(ap *pb.ChaincodeActionPayload) { ap.Action.Endorsements = nil }})
			return d
		}, pb.TxValidationCode_ENDORSEMENT_POLICY_FAILURE},
		{"tampered endorsement signature", func(t *testing.T) []byte {
			d, _ := f.tx(t, txSpec{action: func(ap *pb.ChaincodeActionPayload) {
				s := ap.Action.Endorsements[0].Signature
				s[len(s)/2] ^= 0x01
			}})
			return d
		}, pb.TxValidationCode_ENDORSEMENT_POLICY_FAILURE},
		{"writes to undefined chaincode", func(t *testing.T) []byte { d, _ := f.tx(t, txSpec{results: writes(t, "nosuchcc")}); return d }, pb.TxValidationCode_INVALID_CHAINCODE},
		{"garbage results", func(t *testing.T) []byte { d, _ := f.tx(t, txSpec{results: []byte{0xff}}); return d }, pb.TxValidationCode_BAD_RWSET},
		{"garbage namespace rwset", func(t *testing.T) []byte {
			res := marshal(t, &rwset.TxReadWriteSet{NsRwset: []*rwset.NsReadWriteSet{{Namespace: chaincode, Rwset: []byte{0xff}}}})
			d, _ := f.tx(t, txSpec{results: res})
			return d
		}, pb.TxValidationCode_BAD_RWSET},
	}
	v := validator.New(validator.Config{})
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := block.New(1, block.HeaderHash(f.genesis.Header), [][]byte{tt.data(t)})
			res, err := v.Validate(context.Background(), b, f.bundle, ledger{}, newPolicies(t))
			if err != nil {
				t.Fatalf("Validate: %v", err)
			}
			if len(res) != 1 {
				t.Fatalf("got %d results, want 1", len(res))
			}
			if res[0].Code != tt.want {
				t.Fatalf("code = %s (%v), want %s", res[0].Code, res[0].Error, tt.want)
			}
			if (res[0].Error == nil) != (tt.want == pb.TxValidationCode_VALID) {
				t.Errorf("error = %v with code %s", res[0].Error, res[0].Code)
			}
		})
	}
}

func TestValidateResultsFollowBlockOrder(t *testing.T) {
	f := newFixture(t)
	var data [][]byte
	var ids []string
	for i := 0; i < 10; i++ {
		d, id := f.tx(t, txSpec{})
		data, ids = append(data, d), append(ids, id)
	}
	data = append(data, nil)
	v := validator.New(validator.Config{Workers: 3})
	res, err := v.Validate(context.Background(), block.New(1, nil, data), f.bundle, ledger{}, newPolicies(t))
	if err != nil {
		t.Fatal(err)
	}
	for i, id := range ids {
		if res[i].Code != pb.TxValidationCode_VALID || res[i].TxID != id {
			t.Errorf("result %d = %s %s, want VALID %s", i, res[i].Code, res[i].TxID, id)
		}
	}
	if res[10].Code != pb.TxValidationCode_NIL_ENVELOPE {
		t.Errorf("result 10 = %s, want NIL_ENVELOPE", res[10].Code)
	}
}

func TestValidateDuplicateInBlock(t *testing.T) {
	f := newFixture(t)
	d, id := f.tx(t, txSpec{})
	other, _ := f.tx(t, txSpec{})
	b := block.New(1, nil, [][]byte{d, other, d})
	res, err := validator.New(validator.Config{}).Validate(context.Background(), b, f.bundle, ledger{}, newPolicies(t))
	if err != nil {
		t.Fatal(err)
	}
	want := []pb.TxValidationCode{pb.TxValidationCode_VALID, pb.TxValidationCode_VALID, pb.TxValidationCode_DUPLICATE_TXID}
	for i := range want {
		if res[i].Code != want[i] {
			t.Errorf("tx %d: code = %s (%v), want %s", i, res[i].Code, res[i].Error, want[i])
		}
	}
	if res[2].TxID != id {
		t.Errorf("duplicate's tx ID = %q, want %q", res[2].TxID, id)
	}
}

// An invalid transaction does not claim its tx ID: in Fabric only VALID
// transactions take part in in-block duplicate detection (txidArray is filled
// for VALID results only), so a forged copy with a bad signature placed first
// must not invalidate the genuine transaction behind it.
func TestValidateInvalidTxDoesNotClaimTxID(t *testing.T) {
	f := newFixture(t)
	good, id := f.tx(t, txSpec{})
	env := &cb.Envelope{}
	if err := proto.Unmarshal(good, env); err != nil {
		t.Fatal(err)
	}
	env.Signature = append([]byte(nil), env.Signature...)
	env.Signature[len(env.Signature)/2] ^= 0x01
	forged := marshal(t, env)

	b := block.New(1, nil, [][]byte{forged, good})
	res, err := validator.New(validator.Config{}).Validate(context.Background(), b, f.bundle, ledger{}, newPolicies(t))
	if err != nil {
		t.Fatal(err)
	}
	if res[0].Code != pb.TxValidationCode_BAD_CREATOR_SIGNATURE {
		t.Errorf("forged copy: code = %s, want BAD_CREATOR_SIGNATURE", res[0].Code)
	}
	if res[1].Code != pb.TxValidationCode_VALID {
		t.Errorf("genuine tx %s after a forged copy: code = %s (%v), want VALID as in Fabric", id, res[1].Code, res[1].Error)
	}
}

// A CONFIG envelope next to another transaction is not a config block.
func TestValidateConfigTxInNormalBlock(t *testing.T) {
	f := newFixture(t)
	d, _ := f.tx(t, txSpec{})
	b := block.New(1, nil, [][]byte{d, f.other(t, cb.HeaderType_CONFIG)})
	res, err := validator.New(validator.Config{}).Validate(context.Background(), b, f.bundle, ledger{}, newPolicies(t))
	if err != nil {
		t.Fatal(err)
	}
	if res[0].Code != pb.TxValidationCode_VALID || res[1].Code != pb.TxValidationCode_INVALID_CONFIG_TRANSACTION {
		t.Fatalf("codes = %s, %s; want VALID, INVALID_CONFIG_TRANSACTION", res[0].Code, res[1].Code)
	}
}

func TestValidateDuplicateInLedger(t *testing.T) {
	f := newFixture(t)
	d, id := f.tx(t, txSpec{})
	res, err := validator.New(validator.Config{}).Validate(context.Background(), block.New(1, nil, [][]byte{d}), f.bundle, ledger{id: true}, newPolicies(t))
	if err != nil {
		t.Fatal(err)
	}
	if res[0].Code != pb.TxValidationCode_DUPLICATE_TXID || res[0].TxID != id {
		t.Fatalf("got %s %s (%v), want DUPLICATE_TXID %s", res[0].Code, res[0].TxID, res[0].Error, id)
	}
}

func TestValidateLedgerError(t *testing.T) {
	f := newFixture(t)
	d, _ := f.tx(t, txSpec{})
	_, err := validator.New(validator.Config{}).Validate(context.Background(), block.New(1, nil, [][]byte{d}), f.bundle, failingLedger{}, newPolicies(t))
	if err == nil {
		t.Fatal("Validate succeeded with an unreadable ledger")
	}
}

func TestValidateConfigBlock(t *testing.T) {
	f := newFixture(t)
	res, err := validator.New(validator.Config{}).Validate(context.Background(), f.genesis, f.bundle, ledger{}, newPolicies(t))
	if err != nil {
		t.Fatal(err)
	}
	ch, err := block.ChannelHeader(f.genesis, 0)
	if err != nil {
		t.Fatal(err)
	}
	if len(res) != 1 || res[0].Code != pb.TxValidationCode_VALID || res[0].TxID != ch.TxId {
		t.Fatalf("got %+v, want one VALID result with tx ID %q", res, ch.TxId)
	}
}

func TestValidateCancelled(t *testing.T) {
	f := newFixture(t)
	d, _ := f.tx(t, txSpec{})
	data := make([][]byte, 64)
	for i := range data {
		data[i] = d
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err := validator.New(validator.Config{Workers: 1}).Validate(ctx, block.New(1, nil, data), f.bundle, ledger{}, newPolicies(t))
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v, want context.Canceled", err)
	}
}

func BenchmarkValidate100(b *testing.B) {
	f := newFixture(b)
	data := make([][]byte, 100)
	for i := range data {
		data[i], _ = f.tx(b, txSpec{})
	}
	blk := block.New(1, nil, data)
	v := validator.New(validator.Config{})
	pol := newPolicies(b)
	ctx := context.Background()
	b.ResetTimer()
	start := time.Now()
	for i := 0; i < b.N; i++ {
		res, err := v.Validate(ctx, blk, f.bundle, ledger{}, pol)
		if err != nil {
			b.Fatal(err)
		}
		if res[99].Code != pb.TxValidationCode_VALID {
			b.Fatal(fmt.Sprintf("tx 99: %s (%v)", res[99].Code, res[99].Error))
		}
	}
	b.ReportMetric(float64(b.N*len(data))/time.Since(start).Seconds(), "tx/s")
}
