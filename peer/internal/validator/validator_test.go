package validator_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
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
	"github.com/cairn-ledger/cairn/peer/internal/selfsig"
	"github.com/cairn-ledger/cairn/peer/internal/validator"
)

const (
	ordDomain  = "example.com"
	orgDomain  = "org1.example.com"
	org2Domain = "org2.example.com"
	chaincode  = "basic"
)

// fixture is a real channel: crypto material from cryptogen, the genesis
// block's bundle, and the identities that sign transactions.
type fixture struct {
	genesis *cb.Block
	bundle  *channelconfig.Bundle
	peer    *crypto.SigningIdentity // Org1MSP peer0: a valid endorser
	peer2   *crypto.SigningIdentity // Org2MSP peer0
	user    *crypto.SigningIdentity // Org1MSP User1: a client
	orderer *crypto.SigningIdentity
	// ordererAdmin may sign updates of the orderer section.
	ordererAdmin *crypto.SigningIdentity
}

func newFixture(tb testing.TB) *fixture {
	tb.Helper()
	dir := tb.TempDir()
	net := netconfig.Default()
	net.OrdererOrgs[0].Orderers[0].Port = 7050
	net.PeerOrgs[0].Peers[0].Port = 7051
	net.PeerOrgs = append(net.PeerOrgs, netconfig.PeerOrg{
		Name: "Org2", MSPID: "Org2MSP", Domain: org2Domain,
		Peers: []netconfig.Node{{Name: "peer0", Host: "127.0.0.1", Port: 9051}},
		Users: []string{"User1"},
	})
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
		peer2:   load("Org2MSP", l.NodeMSPDir(true, org2Domain, "peer0."+org2Domain)),
		user:    load("Org1MSP", l.UserMSPDir(true, orgDomain, "User1")),
		orderer: load("OrdererMSP", l.NodeMSPDir(false, ordDomain, "orderer0."+ordDomain)),

		ordererAdmin: load("OrdererMSP", l.UserMSPDir(false, ordDomain, cryptogen.AdminUser)),
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

// ledger is the committed ledger: tx IDs and the metadata of basic's keys.
type ledger struct {
	txIDs    map[string]bool
	metadata map[string]map[string][]byte // key of basic → metadata
}

func (l ledger) TxIDExists(txID string) (bool, error) { return l.txIDs[txID], nil }

func (l ledger) GetStateMetadata(ns, key string) (map[string][]byte, error) {
	if ns != chaincode {
		return nil, nil
	}
	return l.metadata[key], nil
}

// withValidationParameter is a ledger where key's committed metadata holds
// the key-level policy dsl.
func withValidationParameter(tb testing.TB, key, dsl string) ledger {
	tb.Helper()
	spe, err := policy.ParseDSL(dsl)
	if err != nil {
		tb.Fatal(err)
	}
	return ledger{metadata: map[string]map[string][]byte{key: {validator.ValidationParameterKey: marshal(tb, spe)}}}
}

type failingLedger struct{ metadataOnly bool }

func (l failingLedger) TxIDExists(string) (bool, error) {
	if l.metadataOnly {
		return false, nil
	}
	return false, errors.New("disk on fire")
}

func (failingLedger) GetStateMetadata(string, string) (map[string][]byte, error) {
	return nil, errors.New("disk on fire")
}

// writes is a marshalled TxReadWriteSet writing one key to namespace ns.
func writes(tb testing.TB, ns string) []byte {
	tb.Helper()
	return rwsetOf(tb, ns, &kvrwset.KVRWSet{Writes: []*kvrwset.KVWrite{{Key: "asset1", Value: []byte("blue")}}})
}

// rwsetOf is a marshalled TxReadWriteSet of alternating namespaces and
// KVRWSets.
func rwsetOf(tb testing.TB, nsAndSets ...any) []byte {
	tb.Helper()
	rws := &rwset.TxReadWriteSet{DataModel: rwset.TxReadWriteSet_KV}
	for i := 0; i+1 < len(nsAndSets); i += 2 {
		rws.NsRwset = append(rws.NsRwset, &rwset.NsReadWriteSet{
			Namespace: nsAndSets[i].(string),
			Rwset:     marshal(tb, nsAndSets[i+1].(*kvrwset.KVRWSet)),
		})
	}
	return marshal(tb, rws)
}

// metadataWrite is a KVRWSet setting key's validation parameter to dsl.
func metadataWrite(tb testing.TB, key, dsl string) *kvrwset.KVRWSet {
	tb.Helper()
	spe, err := policy.ParseDSL(dsl)
	if err != nil {
		tb.Fatal(err)
	}
	return &kvrwset.KVRWSet{MetadataWrites: []*kvrwset.KVMetadataWrite{{
		Key: key, Entries: []*kvrwset.KVMetadataEntry{{Name: validator.ValidationParameterKey, Value: marshal(tb, spe)}},
	}}}
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
	header    func(*cb.ChannelHeader)          // applied to the proposal before endorsing
	response  func(*pb.ChaincodeAction)        // applied to the endorsed action; endorsements are re-signed
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
	if s.txID != "" || s.header != nil {
		if s.txID != "" {
			txID = s.txID
			p.ChannelHeader.TxId = txID
		}
		if s.header != nil {
			s.header(p.ChannelHeader)
		}
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
		if s.response != nil {
			r = reEndorse(tb, r, e, s.response)
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

// reEndorse applies fn to the chaincode action of r and signs the result as e.
func reEndorse(tb testing.TB, r *pb.ProposalResponse, e envelope.Signer, fn func(*pb.ChaincodeAction)) *pb.ProposalResponse {
	tb.Helper()
	prp := &pb.ProposalResponsePayload{}
	action := &pb.ChaincodeAction{}
	if err := proto.Unmarshal(r.Payload, prp); err != nil {
		tb.Fatal(err)
	}
	if err := proto.Unmarshal(prp.Extension, action); err != nil {
		tb.Fatal(err)
	}
	fn(action)
	prp.Extension = marshal(tb, action)
	r.Payload = marshal(tb, prp)
	sig, err := e.Sign(append(append([]byte{}, r.Payload...), r.Endorsement.Endorser...))
	if err != nil {
		tb.Fatal(err)
	}
	r.Endorsement.Signature = sig
	return r
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
		{"garbage envelope", func(*testing.T) []byte { return []byte{0xff} }, pb.TxValidationCode_INVALID_OTHER_REASON},
		{"garbage payload", func(t *testing.T) []byte {
			return marshal(t, &cb.Envelope{Payload: []byte{0xff}, Signature: []byte("sig")})
		}, pb.TxValidationCode_BAD_PAYLOAD},
		{"payload without header", func(t *testing.T) []byte {
			return marshal(t, &cb.Envelope{Payload: marshal(t, &cb.Payload{Data: []byte("x")}), Signature: []byte("sig")})
		}, pb.TxValidationCode_BAD_COMMON_HEADER},
		{"garbage channel header", func(t *testing.T) []byte {
			p := &cb.Payload{Header: &cb.Header{ChannelHeader: []byte{0xff}, SignatureHeader: marshal(t, &cb.SignatureHeader{Creator: f.user.Serialize(), Nonce: []byte("n")})}}
			return marshal(t, &cb.Envelope{Payload: marshal(t, p), Signature: []byte("sig")})
		}, pb.TxValidationCode_BAD_COMMON_HEADER},
		{"non-zero epoch", func(t *testing.T) []byte {
			d, _ := f.tx(t, txSpec{header: func(ch *cb.ChannelHeader) { ch.Epoch = 1 }})
			return d
		}, pb.TxValidationCode_BAD_COMMON_HEADER},
		{"other channel", func(t *testing.T) []byte { d, _ := f.tx(t, txSpec{channel: "otherchannel"}); return d }, pb.TxValidationCode_TARGET_CHAIN_NOT_FOUND},
		{"unknown header type", func(t *testing.T) []byte { return f.other(t, cb.HeaderType_MESSAGE) }, pb.TxValidationCode_BAD_COMMON_HEADER},
		{"config update", func(t *testing.T) []byte { return f.other(t, cb.HeaderType_CONFIG_UPDATE) }, pb.TxValidationCode_UNSUPPORTED_TX_PAYLOAD},
		{"two actions", func(t *testing.T) []byte {
			d, _ := f.tx(t, txSpec{mutate: func(env *cb.Envelope) {
				payload := &cb.Payload{}
				tx := &pb.Transaction{}
				if err := proto.Unmarshal(env.Payload, payload); err != nil {
					t.Fatal(err)
				}
				if err := proto.Unmarshal(payload.Data, tx); err != nil {
					t.Fatal(err)
				}
				tx.Actions = append(tx.Actions, tx.Actions[0])
				payload.Data = marshal(t, tx)
				env.Payload = marshal(t, payload)
				var err error
				if env.Signature, err = f.user.Sign(env.Payload); err != nil {
					t.Fatal(err)
				}
			}})
			return d
		}, pb.TxValidationCode_INVALID_ENDORSER_TRANSACTION},
		{"endorsements for another proposal", func(t *testing.T) []byte {
			d, _ := f.tx(t, txSpec{action: func(ap *pb.ChaincodeActionPayload) {
				ap.ChaincodeProposalPayload = marshal(t, &pb.ChaincodeProposalPayload{Input: []byte("other input")})
			}})
			return d
		}, pb.TxValidationCode_INVALID_ENDORSER_TRANSACTION},
		{"garbage header extension", func(t *testing.T) []byte {
			d, _ := f.tx(t, txSpec{header: func(ch *cb.ChannelHeader) { ch.Extension = []byte{0xff} }})
			return d
		}, pb.TxValidationCode_BAD_HEADER_EXTENSION},
		{"chaincode action does not decode", func(t *testing.T) []byte {
			d, _ := f.tx(t, txSpec{action: func(ap *pb.ChaincodeActionPayload) {
				prp := &pb.ProposalResponsePayload{}
				if err := proto.Unmarshal(ap.Action.ProposalResponsePayload, prp); err != nil {
					t.Fatal(err)
				}
				prp.Extension = []byte{0xff}
				ap.Action.ProposalResponsePayload = marshal(t, prp)
			}})
			return d
		}, pb.TxValidationCode_BAD_RESPONSE_PAYLOAD},
		{"chaincode error status", func(t *testing.T) []byte {
			d, _ := f.tx(t, txSpec{response: func(a *pb.ChaincodeAction) { a.Response.Status = 500 }})
			return d
		}, pb.TxValidationCode_BAD_RESPONSE_PAYLOAD},
		{"action of another chaincode", func(t *testing.T) []byte {
			d, _ := f.tx(t, txSpec{response: func(a *pb.ChaincodeAction) { a.ChaincodeId.Name = "other" }})
			return d
		}, pb.TxValidationCode_INVALID_CHAINCODE},
		{"action without chaincode ID", func(t *testing.T) []byte {
			d, _ := f.tx(t, txSpec{response: func(a *pb.ChaincodeAction) { a.ChaincodeId = nil }})
			return d
		}, pb.TxValidationCode_INVALID_OTHER_REASON},
		{"event of another chaincode", func(t *testing.T) []byte {
			d, _ := f.tx(t, txSpec{response: func(a *pb.ChaincodeAction) {
				a.Events = marshal(t, &pb.ChaincodeEvent{ChaincodeId: "other", EventName: "e"})
			}})
			return d
		}, pb.TxValidationCode_INVALID_OTHER_REASON},
		{"namespace twice", func(t *testing.T) []byte {
			kv := &kvrwset.KVRWSet{Writes: []*kvrwset.KVWrite{{Key: "asset1", Value: []byte("x")}}}
			d, _ := f.tx(t, txSpec{results: rwsetOf(t, chaincode, kv, chaincode, kv)})
			return d
		}, pb.TxValidationCode_ILLEGAL_WRITESET},
		{"read-only, endorsed by a client", func(t *testing.T) []byte {
			d, _ := f.tx(t, txSpec{results: rwsetOf(t, chaincode, &kvrwset.KVRWSet{}), endorsers: []envelope.Signer{f.user}})
			return d
		}, pb.TxValidationCode_ENDORSEMENT_POLICY_FAILURE},
		{"read-only", func(t *testing.T) []byte {
			d, _ := f.tx(t, txSpec{results: rwsetOf(t, chaincode, &kvrwset.KVRWSet{})})
			return d
		}, pb.TxValidationCode_VALID},
		{"metadata write endorsed per the chaincode policy", func(t *testing.T) []byte {
			d, _ := f.tx(t, txSpec{results: rwsetOf(t, chaincode, metadataWrite(t, "asset1", "OR('Org2MSP.peer')"))})
			return d
		}, pb.TxValidationCode_VALID},
		{"metadata write endorsed by a client", func(t *testing.T) []byte {
			d, _ := f.tx(t, txSpec{results: rwsetOf(t, chaincode, metadataWrite(t, "asset1", "OR('Org2MSP.peer')")), endorsers: []envelope.Signer{f.user}})
			return d
		}, pb.TxValidationCode_ENDORSEMENT_POLICY_FAILURE},
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

func TestValidationParameterKey(t *testing.T) {
	if got, want := validator.ValidationParameterKey, pb.MetaDataKeys_VALIDATION_PARAMETER.String(); got != want {
		t.Fatalf("ValidationParameterKey = %q, want %q", got, want)
	}
}

// Key-level (state-based) endorsement: the chaincode policy is
// OR('Org1MSP.peer'); keys whose committed metadata holds a validation
// parameter must be endorsed per that policy instead.
func TestValidateKeyLevelEndorsement(t *testing.T) {
	f := newFixture(t)
	org2Only := "OR('Org2MSP.peer')"
	write := func(keys ...string) *kvrwset.KVRWSet {
		kv := &kvrwset.KVRWSet{}
		for _, k := range keys {
			kv.Writes = append(kv.Writes, &kvrwset.KVWrite{Key: k, Value: []byte("v")})
		}
		return kv
	}
	garbage := ledger{metadata: map[string]map[string][]byte{"asset1": {validator.ValidationParameterKey: []byte{0xff}}}}
	type tx struct {
		results   *kvrwset.KVRWSet
		endorsers []envelope.Signer
	}
	tests := []struct {
		name    string
		ledger  ledger
		txs     []tx
		want    []pb.TxValidationCode
		wantErr string // in the first invalid result's error
	}{
		{"key policy overrides the chaincode policy", withValidationParameter(t, "asset1", org2Only),
			[]tx{{write("asset1"), []envelope.Signer{f.peer}}},
			[]pb.TxValidationCode{pb.TxValidationCode_ENDORSEMENT_POLICY_FAILURE}, `key "asset1" of namespace basic: key-level endorsement policy OR('Org2MSP.peer')`},
		{"key policy satisfied without the chaincode policy", withValidationParameter(t, "asset1", org2Only),
			[]tx{{write("asset1"), []envelope.Signer{f.peer2}}},
			[]pb.TxValidationCode{pb.TxValidationCode_VALID}, ""},
		{"other keys still need the chaincode policy", withValidationParameter(t, "asset1", org2Only),
			[]tx{{write("asset1", "asset2"), []envelope.Signer{f.peer2}}},
			[]pb.TxValidationCode{pb.TxValidationCode_ENDORSEMENT_POLICY_FAILURE}, "endorsement policy OR('Org1MSP.peer') of chaincode basic not satisfied"},
		{"both policies satisfied", withValidationParameter(t, "asset1", org2Only),
			[]tx{{write("asset1", "asset2"), []envelope.Signer{f.peer, f.peer2}}},
			[]pb.TxValidationCode{pb.TxValidationCode_VALID}, ""},
		{"changing the parameter needs the current one", withValidationParameter(t, "asset1", org2Only),
			[]tx{{metadataWrite(t, "asset1", "OR('Org1MSP.peer')"), []envelope.Signer{f.peer}}},
			[]pb.TxValidationCode{pb.TxValidationCode_ENDORSEMENT_POLICY_FAILURE}, `key "asset1"`},
		{"changing the parameter with the current one", withValidationParameter(t, "asset1", org2Only),
			[]tx{{metadataWrite(t, "asset1", "OR('Org1MSP.peer')"), []envelope.Signer{f.peer2}}},
			[]pb.TxValidationCode{pb.TxValidationCode_VALID}, ""},
		{"undecodable parameter", garbage,
			[]tx{{write("asset1"), []envelope.Signer{f.peer, f.peer2}}},
			[]pb.TxValidationCode{pb.TxValidationCode_ENDORSEMENT_POLICY_FAILURE}, "does not decode"},
		{"parameter set earlier in the block", ledger{},
			[]tx{{metadataWrite(t, "asset1", org2Only), []envelope.Signer{f.peer}}, {write("asset1"), []envelope.Signer{f.peer, f.peer2}}, {write("asset2"), nil}},
			[]pb.TxValidationCode{pb.TxValidationCode_VALID, pb.TxValidationCode_ENDORSEMENT_POLICY_FAILURE, pb.TxValidationCode_VALID}, "validation parameter was updated by transaction 0"},
		{"parameter set earlier in the block by an invalid tx", ledger{},
			[]tx{{metadataWrite(t, "asset1", org2Only), []envelope.Signer{f.user}}, {write("asset1"), nil}},
			[]pb.TxValidationCode{pb.TxValidationCode_ENDORSEMENT_POLICY_FAILURE, pb.TxValidationCode_VALID}, "of chaincode basic not satisfied"},
		{"two parameter updates in one block", ledger{},
			[]tx{{metadataWrite(t, "asset1", org2Only), nil}, {metadataWrite(t, "asset1", "OR('Org1MSP.peer')"), nil}},
			[]pb.TxValidationCode{pb.TxValidationCode_VALID, pb.TxValidationCode_ENDORSEMENT_POLICY_FAILURE}, "updated by transaction 0"},
	}
	v := validator.New(validator.Config{Workers: 4})
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var data [][]byte
			for _, x := range tt.txs {
				d, _ := f.tx(t, txSpec{results: rwsetOf(t, chaincode, x.results), endorsers: x.endorsers})
				data = append(data, d)
			}
			res, err := v.Validate(context.Background(), block.New(1, nil, data), f.bundle, tt.ledger, newPolicies(t))
			if err != nil {
				t.Fatal(err)
			}
			firstErr := ""
			for i, r := range res {
				if r.Code != tt.want[i] {
					t.Errorf("tx %d: code = %s (%v), want %s", i, r.Code, r.Error, tt.want[i])
				}
				if r.Error != nil && firstErr == "" {
					firstErr = r.Error.Error()
				}
			}
			if !strings.Contains(firstErr, tt.wantErr) {
				t.Errorf("error %q does not contain %q", firstErr, tt.wantErr)
			}
		})
	}
}

func TestValidateMetadataUnreadable(t *testing.T) {
	f := newFixture(t)
	d, _ := f.tx(t, txSpec{})
	_, err := validator.New(validator.Config{}).Validate(context.Background(), block.New(1, nil, [][]byte{d}), f.bundle, failingLedger{metadataOnly: true}, newPolicies(t))
	if err == nil {
		t.Fatal("Validate succeeded with unreadable key metadata")
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
	res, err := validator.New(validator.Config{}).Validate(context.Background(), block.New(1, nil, [][]byte{d}), f.bundle, ledger{txIDs: map[string]bool{id: true}}, newPolicies(t))
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

// policiesDSL resolves "basic" to one policy given in the DSL.
type policiesDSL struct{ spe *cb.SignaturePolicyEnvelope }

func (p policiesDSL) EndorsementPolicy(ns string, _ []*kvrwset.KVWrite) (*cb.SignaturePolicyEnvelope, string, error) {
	if ns == chaincode {
		return p.spe, "", nil
	}
	return nil, "", validator.ErrUndefined
}

// BenchmarkValidate500TwoOrgs validates a full block (the default
// MaxMessageCount) of transactions each endorsed by a peer of both
// organisations under AND('Org1MSP.peer','Org2MSP.peer'): three signature
// checks per transaction with the creator's. The issue's target is 5,000 tx/s.
func BenchmarkValidate500TwoOrgs(b *testing.B) { benchmarkTwoOrgs(b, false) }

// BenchmarkValidate500TwoOrgsOwnEndorsement is the same block validated by
// Org1's peer that endorsed it: its own endorsements are in its selfsig memo,
// so two signature checks per transaction remain.
func BenchmarkValidate500TwoOrgsOwnEndorsement(b *testing.B) { benchmarkTwoOrgs(b, true) }

func benchmarkTwoOrgs(b *testing.B, own bool) {
	f := newFixture(b)
	spe, err := policy.ParseDSL("AND('Org1MSP.peer','Org2MSP.peer')")
	if err != nil {
		b.Fatal(err)
	}
	memo := selfsig.New(selfsig.Config{Signer: f.peer})
	cfg := validator.Config{}
	if own {
		cfg.OwnSignatures = memo
	}
	data := make([][]byte, 500)
	for i := range data {
		data[i], _ = f.tx(b, txSpec{endorsers: []envelope.Signer{memo, f.peer2}})
	}
	blk := block.New(1, nil, data)
	v := validator.New(cfg)
	pol := policiesDSL{spe: spe}
	ctx := context.Background()
	b.ResetTimer()
	start := time.Now()
	for i := 0; i < b.N; i++ {
		res, err := v.Validate(ctx, blk, f.bundle, ledger{}, pol)
		if err != nil {
			b.Fatal(err)
		}
		for j := range res {
			if res[j].Code != pb.TxValidationCode_VALID {
				b.Fatalf("tx %d: %s (%v)", j, res[j].Code, res[j].Error)
			}
		}
	}
	b.ReportMetric(float64(b.N*len(data))/time.Since(start).Seconds(), "tx/s")
}

// trustingMemo claims every signature as the peer's own.
type trustingMemo struct{}

func (trustingMemo) Signed(_, _, _ []byte) bool { return true }

// TestValidateOwnSignatures checks that an endorsement the peer's memo
// recognises is not verified again, and that anything else still is: a
// remembered signature presented over other bytes or under another identity
// fails as before.
func TestValidateOwnSignatures(t *testing.T) {
	f := newFixture(t)
	memo := selfsig.New(selfsig.Config{Signer: f.peer})
	and := policiesDSL{spe: mustDSL(t, "AND('Org1MSP.peer','Org2MSP.peer')")}
	alterPayload := func(ap *pb.ChaincodeActionPayload) {
		prp := &pb.ProposalResponsePayload{}
		if err := proto.Unmarshal(ap.Action.ProposalResponsePayload, prp); err != nil {
			t.Fatal(err)
		}
		action := &pb.ChaincodeAction{}
		if err := proto.Unmarshal(prp.Extension, action); err != nil {
			t.Fatal(err)
		}
		action.Response.Message = "altered after endorsement"
		prp.Extension = marshal(t, action)
		ap.Action.ProposalResponsePayload = marshal(t, prp)
	}
	claimAsOrg2 := func(ap *pb.ChaincodeActionPayload) {
		ap.Action.Endorsements[1].Endorser = f.peer2.Serialize() // memo's signature, org2's name
		ap.Action.Endorsements = ap.Action.Endorsements[1:]
	}

	tests := []struct {
		name   string
		memo   validator.SignatureMemo
		spec   txSpec
		policy validator.Policies
		want   pb.TxValidationCode
	}{
		{"own endorsement remembered", memo, txSpec{endorsers: []envelope.Signer{memo, f.peer2}}, and, pb.TxValidationCode_VALID},
		{"remembered signature over altered payload", memo,
			txSpec{endorsers: []envelope.Signer{memo, f.peer2}, action: alterPayload}, and, pb.TxValidationCode_ENDORSEMENT_POLICY_FAILURE},
		{"remembered signature under another identity", memo,
			txSpec{endorsers: []envelope.Signer{f.peer2, memo}, action: claimAsOrg2},
			policiesDSL{spe: mustDSL(t, "OR('Org2MSP.peer')")}, pb.TxValidationCode_ENDORSEMENT_POLICY_FAILURE},
		// The validator does skip what the memo vouches for: a memo that
		// vouches for everything lets an endorsement with a broken
		// signature through, which is why only selfsig's exact record is wired.
		{"memo is trusted", trustingMemo{},
			txSpec{endorsers: []envelope.Signer{f.peer, f.peer2}, action: func(ap *pb.ChaincodeActionPayload) {
				ap.Action.Endorsements[0].Signature = []byte{0x30, 0x00}
			}}, and, pb.TxValidationCode_VALID},
		{"without a memo a broken endorsement fails", nil,
			txSpec{endorsers: []envelope.Signer{f.peer, f.peer2}, action: func(ap *pb.ChaincodeActionPayload) {
				ap.Action.Endorsements[0].Signature = []byte{0x30, 0x00}
			}}, and, pb.TxValidationCode_ENDORSEMENT_POLICY_FAILURE},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			v := validator.New(validator.Config{OwnSignatures: tc.memo})
			d, _ := f.tx(t, tc.spec)
			res, err := v.Validate(context.Background(), block.New(1, nil, [][]byte{d}), f.bundle, ledger{}, tc.policy)
			if err != nil {
				t.Fatal(err)
			}
			if res[0].Code != tc.want {
				t.Fatalf("code %s (%v), want %s", res[0].Code, res[0].Error, tc.want)
			}
		})
	}
}

func mustDSL(tb testing.TB, dsl string) *cb.SignaturePolicyEnvelope {
	tb.Helper()
	spe, err := policy.ParseDSL(dsl)
	if err != nil {
		tb.Fatal(err)
	}
	return spe
}
