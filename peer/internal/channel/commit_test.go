package channel

import (
	"bytes"
	"context"
	"fmt"
	"testing"

	cb "github.com/hyperledger/fabric-protos-go-apiv2/common"
	"github.com/hyperledger/fabric-protos-go-apiv2/ledger/rwset"
	"github.com/hyperledger/fabric-protos-go-apiv2/ledger/rwset/kvrwset"
	pb "github.com/hyperledger/fabric-protos-go-apiv2/peer"
	lb "github.com/hyperledger/fabric-protos-go-apiv2/peer/lifecycle"
	"google.golang.org/protobuf/proto"

	"github.com/cairn-ledger/cairn/internal/block"
	"github.com/cairn-ledger/cairn/internal/channelconfig"
	"github.com/cairn-ledger/cairn/internal/crypto"
	"github.com/cairn-ledger/cairn/internal/cryptogen"
	"github.com/cairn-ledger/cairn/internal/envelope"
	"github.com/cairn-ledger/cairn/internal/msp/msptest"
	"github.com/cairn-ledger/cairn/internal/netconfig"
	"github.com/cairn-ledger/cairn/internal/policy"
	"github.com/cairn-ledger/cairn/peer/internal/ledger"
	"github.com/cairn-ledger/cairn/peer/internal/lifecycle"
	"github.com/cairn-ledger/cairn/peer/internal/validator"
)

const (
	basic      = "basic"
	org1Domain = "org1.example.com"
	org2Domain = "org2.example.com"
	// ccPolicy is basic's endorsement policy: either organisation's peer.
	ccPolicy = "OR('Org1MSP.peer','Org2MSP.peer')"
)

// commitEnv is a real two-organisation channel joined by an Org1 peer, with
// chaincode basic defined through committed _lifecycle transactions. Crypto
// material also exists for Org3, which is not a member of the channel.
type commitEnv struct {
	c       *Channel
	cfg     Config // c's configuration, to reopen it
	peer1   *crypto.SigningIdentity
	peer2   *crypto.SigningIdentity
	user1   *crypto.SigningIdentity
	orderer *crypto.SigningIdentity
	// net is the channel's network with Org3 added, crypt its crypto
	// material, load loads an identity from it.
	net   *netconfig.Network
	crypt string
	load  func(mspID, mspDir string) *crypto.SigningIdentity
}

func newCommitEnv(t *testing.T) *commitEnv {
	t.Helper()
	dir := t.TempDir()
	net := netconfig.Default()
	net.OrdererOrgs[0].Orderers[0].Port = 7050
	net.PeerOrgs[0].Peers[0].Port = 7051
	for i, port := range []int{9051, 10051} {
		name := fmt.Sprintf("Org%d", i+2)
		net.PeerOrgs = append(net.PeerOrgs, netconfig.PeerOrg{
			Name: name, MSPID: name + "MSP", Domain: fmt.Sprintf("org%d.example.com", i+2),
			Peers: []netconfig.Node{{Name: "peer0", Host: "127.0.0.1", Port: port}},
			Users: []string{"User1"},
		})
	}
	crypt := dir + "/crypto"
	if err := cryptogen.Generate(net, crypt); err != nil {
		t.Fatal(err)
	}
	channelNet := *net
	channelNet.PeerOrgs = net.PeerOrgs[:2] // Org3 joins by a config update
	genesis, err := channelconfig.Genesis(&channelNet, crypt)
	if err != nil {
		t.Fatal(err)
	}
	cfg := Config{Dir: dir + "/ledger", MSPID: "Org1MSP", Validator: validator.New(validator.Config{}), NoSync: true}
	c, err := Create(cfg, genesis)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	l := cryptogen.Layout{Root: crypt}
	load := func(mspID, mspDir string) *crypto.SigningIdentity {
		id, err := crypto.LoadSigningIdentity(mspID, mspDir)
		if err != nil {
			t.Fatal(err)
		}
		return id
	}
	e := &commitEnv{
		c:       c,
		cfg:     cfg,
		net:     net,
		crypt:   crypt,
		load:    load,
		peer1:   load("Org1MSP", l.NodeMSPDir(true, org1Domain, "peer0."+org1Domain)),
		peer2:   load("Org2MSP", l.NodeMSPDir(true, org2Domain, "peer0."+org2Domain)),
		user1:   load("Org1MSP", l.UserMSPDir(true, org1Domain, "User1")),
		orderer: load("OrdererMSP", l.NodeMSPDir(false, "example.com", "orderer0.example.com")),
	}
	e.defineBasic(t)
	return e
}

// defineBasic approves basic for both organisations (block 1) and commits its
// definition (block 2), each transaction simulated by the real _lifecycle
// system chaincode and endorsed as the policies require.
func (e *commitEnv) defineBasic(t *testing.T) {
	t.Helper()
	e.define(t, basic, "1.0", 1, "", ccPolicy)
}

// define approves chaincode name at sequence for Org1 and Org2 with package
// pkg ("" approves without one) and policy dsl, then commits the definition,
// in two blocks.
func (e *commitEnv) define(t *testing.T, name, version string, sequence int64, pkg, dsl string) {
	t.Helper()
	spe, err := policy.ParseDSL(dsl)
	if err != nil {
		t.Fatal(err)
	}
	vp := marshal(t, &pb.ApplicationPolicy{Type: &pb.ApplicationPolicy_SignaturePolicy{SignaturePolicy: spe}})
	source := &lb.ChaincodeSource{Type: &lb.ChaincodeSource_Unavailable_{Unavailable: &lb.ChaincodeSource_Unavailable{}}}
	if pkg != "" {
		source = &lb.ChaincodeSource{Type: &lb.ChaincodeSource_LocalPackage{LocalPackage: &lb.ChaincodeSource_Local{PackageId: pkg}}}
	}
	approve := &lb.ApproveChaincodeDefinitionForMyOrgArgs{Name: name, Version: version, Sequence: sequence, ValidationParameter: vp, Source: source}
	commit := &lb.CommitChaincodeDefinitionArgs{Name: name, Version: version, Sequence: sequence, ValidationParameter: vp}
	a1, _ := e.tx(t, txSpec{cc: lifecycle.Namespace, simulate: e.lifecycle("Org1MSP", lifecycle.ApproveChaincodeDefinitionForMyOrgFuncName, approve), endorsers: []envelope.Signer{e.peer1}})
	a2, _ := e.tx(t, txSpec{cc: lifecycle.Namespace, simulate: e.lifecycle("Org2MSP", lifecycle.ApproveChaincodeDefinitionForMyOrgFuncName, approve), endorsers: []envelope.Signer{e.peer2}})
	e.mustCommit(t, [][]byte{a1, a2}, pb.TxValidationCode_VALID, pb.TxValidationCode_VALID)
	c1, _ := e.tx(t, txSpec{cc: lifecycle.Namespace, simulate: e.lifecycle("Org1MSP", lifecycle.CommitChaincodeDefinitionFuncName, commit), endorsers: []envelope.Signer{e.peer1, e.peer2}})
	e.mustCommit(t, [][]byte{c1}, pb.TxValidationCode_VALID)
}

// lifecycle simulates a call of the real _lifecycle system chaincode by an
// admin of mspID, for txSpec.simulate.
func (e *commitEnv) lifecycle(mspID, fn string, args proto.Message) func(*testing.T, *ledger.TxSimulator) {
	return func(t *testing.T, sim *ledger.TxSimulator) {
		scc, err := lifecycle.New(lifecycle.Config{PackageDir: t.TempDir(), MSPID: mspID})
		if err != nil {
			t.Fatal(err)
		}
		resp := scc.Invoke(context.Background(), lifecycle.Invocation{
			ChannelID: e.c.ID(), Args: [][]byte{[]byte(fn), marshal(t, args)}, State: sim,
			CreatorMSPID: mspID, CreatorIsAdmin: true, OrgMSPIDs: []string{"Org1MSP", "Org2MSP"},
		})
		if resp.Status != 200 {
			t.Fatalf("%s for %s: status %d: %s", fn, mspID, resp.Status, resp.Message)
		}
	}
}

// txSpec describes one endorser transaction; zero values give a valid
// invocation of basic by Org1's User1, endorsed by Org1's peer.
type txSpec struct {
	cc        string                                       // invoked chaincode; default basic
	channel   string                                       // default the channel's ID
	creator   envelope.Signer                              // default user1
	endorsers []envelope.Signer                            // default peer1
	simulate  func(*testing.T, *ledger.TxSimulator)        // runs against committed state
	results   []byte                                       // raw results, instead of simulate
	txID      string                                       // replaces the derived tx ID
	header    func(*cb.ChannelHeader)                      // applied to the proposal before endorsing
	response  func(*pb.ChaincodeAction)                    // applied to the endorsed action, re-signed
	action    func(*testing.T, *pb.ChaincodeActionPayload) // applied before the client signs
	mutate    func(*testing.T, *cb.Envelope)               // applied after the client signs
}

func (e *commitEnv) tx(t *testing.T, s txSpec) ([]byte, string) {
	t.Helper()
	if s.cc == "" {
		s.cc = basic
	}
	if s.channel == "" {
		s.channel = e.c.ID()
	}
	if s.creator == nil {
		s.creator = e.user1
	}
	if s.endorsers == nil {
		s.endorsers = []envelope.Signer{e.peer1}
	}
	prop, txID, err := envelope.NewProposal(s.channel, s.cc, [][]byte{[]byte("invoke")}, nil, s.creator.Serialize())
	if err != nil {
		t.Fatal(err)
	}
	sp, err := envelope.SignProposal(prop, s.creator)
	if err != nil {
		t.Fatal(err)
	}
	p, err := envelope.UnpackProposal(sp)
	if err != nil {
		t.Fatal(err)
	}
	if s.txID != "" || s.header != nil {
		if s.txID != "" {
			txID = s.txID
			p.ChannelHeader.TxId = txID
		}
		if s.header != nil {
			s.header(p.ChannelHeader)
		}
		p.Header.ChannelHeader = marshal(t, p.ChannelHeader)
	}
	results := s.results
	if s.simulate != nil {
		sim, err := e.c.NewTxSimulator(txID)
		if err != nil {
			t.Fatal(err)
		}
		s.simulate(t, sim)
		rws, err := sim.Results()
		sim.Done()
		if err != nil {
			t.Fatal(err)
		}
		results = marshal(t, rws)
	}
	var responses []*pb.ProposalResponse
	for _, en := range s.endorsers {
		r, err := envelope.Endorse(p, en, &pb.Response{Status: 200}, results, nil, &pb.ChaincodeID{Name: s.cc})
		if err != nil {
			t.Fatal(err)
		}
		if s.response != nil {
			prp := &pb.ProposalResponsePayload{}
			act := &pb.ChaincodeAction{}
			unmarshal(t, r.Payload, prp)
			unmarshal(t, prp.Extension, act)
			s.response(act)
			prp.Extension = marshal(t, act)
			r.Payload = marshal(t, prp)
			if r.Endorsement.Signature, err = en.Sign(append(append([]byte{}, r.Payload...), r.Endorsement.Endorser...)); err != nil {
				t.Fatal(err)
			}
		}
		responses = append(responses, r)
	}
	env, err := envelope.NewTransaction(p, responses)
	if err != nil {
		t.Fatal(err)
	}
	if s.action != nil {
		payload := &cb.Payload{}
		tx := &pb.Transaction{}
		ap := &pb.ChaincodeActionPayload{}
		unmarshal(t, env.Payload, payload)
		unmarshal(t, payload.Data, tx)
		unmarshal(t, tx.Actions[0].Payload, ap)
		s.action(t, ap)
		tx.Actions[0].Payload = marshal(t, ap)
		payload.Data = marshal(t, tx)
		env.Payload = marshal(t, payload)
	}
	if env.Signature, err = s.creator.Sign(env.Payload); err != nil {
		t.Fatal(err)
	}
	if s.mutate != nil {
		s.mutate(t, env)
	}
	return marshal(t, env), txID
}

// other is a correctly signed envelope of a type other than
// ENDORSER_TRANSACTION.
func (e *commitEnv) other(t *testing.T, typ cb.HeaderType) []byte {
	t.Helper()
	env, err := envelope.NewSignedEnvelope(typ, e.c.ID(), e.user1, &cb.ConfigEnvelope{})
	if err != nil {
		t.Fatal(err)
	}
	return marshal(t, env)
}

// commitBlock commits data as the next block through the channel's commit
// path and returns the stored TRANSACTIONS_FILTER.
func (e *commitEnv) commitBlock(t *testing.T, data [][]byte) []pb.TxValidationCode {
	t.Helper()
	l := e.c.Ledger()
	prev, err := l.Block(l.Height() - 1)
	if err != nil {
		t.Fatal(err)
	}
	if err := e.c.CommitBlocks(context.Background(), []*cb.Block{block.New(l.Height(), block.HeaderHash(prev.Header), data)}); err != nil {
		t.Fatalf("commit: %v", err)
	}
	stored, err := l.Block(l.Height() - 1)
	if err != nil {
		t.Fatal(err)
	}
	var codes []pb.TxValidationCode
	for _, f := range block.TxFilter(stored) {
		codes = append(codes, pb.TxValidationCode(f))
	}
	return codes
}

func (e *commitEnv) mustCommit(t *testing.T, data [][]byte, want ...pb.TxValidationCode) {
	t.Helper()
	got := e.commitBlock(t, data)
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("codes = %v, want %v", got, want)
	}
}

// state reads a committed value and its metadata.
func (e *commitEnv) state(t *testing.T, ns, key string) ([]byte, map[string][]byte) {
	t.Helper()
	qe, err := e.c.Ledger().NewQueryExecutor()
	if err != nil {
		t.Fatal(err)
	}
	defer qe.Done()
	v, err := qe.GetState(ns, key)
	if err != nil {
		t.Fatal(err)
	}
	md, err := qe.GetStateMetadata(ns, key)
	if err != nil {
		t.Fatal(err)
	}
	return v, md
}

// keyWrite is one value written by a transaction.
type keyWrite struct {
	ns, key string
	value   []byte
	delete  bool
}

// writesOf lists the value writes an envelope carries, nil if it does not
// decode that far.
func writesOf(raw []byte) []keyWrite {
	env := &cb.Envelope{}
	if proto.Unmarshal(raw, env) != nil {
		return nil
	}
	rws, err := ledger.RWSetFromEnvelope(env)
	if err != nil {
		return nil
	}
	var out []keyWrite
	for _, ns := range rws.NsRwset {
		kv := &kvrwset.KVRWSet{}
		if proto.Unmarshal(ns.Rwset, kv) != nil {
			continue
		}
		for _, w := range kv.Writes {
			out = append(out, keyWrite{ns.Namespace, w.Key, w.Value, w.IsDelete})
		}
	}
	return out
}

func marshal(t testing.TB, m proto.Message) []byte {
	t.Helper()
	b, err := proto.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func unmarshal(t testing.TB, b []byte, m proto.Message) {
	t.Helper()
	if err := proto.Unmarshal(b, m); err != nil {
		t.Fatal(err)
	}
}

func put(key, value string) func(*testing.T, *ledger.TxSimulator) {
	return func(t *testing.T, sim *ledger.TxSimulator) {
		if err := sim.SetState(basic, key, []byte(value)); err != nil {
			t.Fatal(err)
		}
	}
}

// readPut reads key then writes it, as a read-modify-write chaincode does.
func readPut(key, value string) func(*testing.T, *ledger.TxSimulator) {
	return func(t *testing.T, sim *ledger.TxSimulator) {
		if _, err := sim.GetState(basic, key); err != nil {
			t.Fatal(err)
		}
		put(key, value)(t, sim)
	}
}

// setKeyPolicy sets key's validation parameter to dsl (and writes value, if
// not empty), as the shim's SetStateValidationParameter does.
func setKeyPolicy(key, dsl, value string) func(*testing.T, *ledger.TxSimulator) {
	return func(t *testing.T, sim *ledger.TxSimulator) {
		spe, err := policy.ParseDSL(dsl)
		if err != nil {
			t.Fatal(err)
		}
		if err := sim.SetStateMetadata(basic, key, map[string][]byte{validator.ValidationParameterKey: marshal(t, spe)}); err != nil {
			t.Fatal(err)
		}
		if value != "" {
			put(key, value)(t, sim)
		}
	}
}

func rawResults(t *testing.T, nsAndSets ...any) []byte {
	t.Helper()
	rws := &rwset.TxReadWriteSet{DataModel: rwset.TxReadWriteSet_KV}
	for i := 0; i+1 < len(nsAndSets); i += 2 {
		switch s := nsAndSets[i+1].(type) {
		case *kvrwset.KVRWSet:
			rws.NsRwset = append(rws.NsRwset, &rwset.NsReadWriteSet{Namespace: nsAndSets[i].(string), Rwset: marshal(t, s)})
		case *rwset.NsReadWriteSet:
			rws.NsRwset = append(rws.NsRwset, s)
		}
	}
	return marshal(t, rws)
}

func kvWrite(key, value string) *kvrwset.KVRWSet {
	return &kvrwset.KVRWSet{Writes: []*kvrwset.KVWrite{{Key: key, Value: []byte(value)}}}
}

const (
	VALID = pb.TxValidationCode_VALID
	EPF   = pb.TxValidationCode_ENDORSEMENT_POLICY_FAILURE
)

// TestCommitValidationCodes commits, block by block, transactions that earn
// every validation code Cairn assigns, through Channel.commit (validator +
// ledger), and checks the stored TRANSACTIONS_FILTER and that invalid
// transactions left state alone. docs/validation-codes.md refers to the
// cases by name. Cases run in order on one channel and may build on the state
// earlier ones committed.
func TestCommitValidationCodes(t *testing.T) {
	e := newCommitEnv(t)
	stranger := msptest.NewCA(t, "Org1MSP").Issue(t, "x", "client").SigningIdentity()
	flip := func(_ *testing.T, env *cb.Envelope) { env.Signature[len(env.Signature)/2] ^= 0x01 }
	one := func(s txSpec) func(*testing.T) [][]byte {
		return func(t *testing.T) [][]byte { d, _ := e.tx(t, s); return [][]byte{d} }
	}
	var firstValid []byte // committed by the "valid" case, resubmitted later

	tests := []struct {
		name  string
		data  func(t *testing.T) [][]byte
		want  []pb.TxValidationCode
		check func(t *testing.T) // extra assertions on committed state
	}{
		{"valid", func(t *testing.T) [][]byte {
			firstValid, _ = e.tx(t, txSpec{simulate: put("asset1", "v1")})
			return [][]byte{firstValid}
		}, []pb.TxValidationCode{VALID}, nil},
		{"valid endorsed by the other org", one(txSpec{simulate: put("asset2", "v1"), endorsers: []envelope.Signer{e.peer2}}), []pb.TxValidationCode{VALID}, nil},
		{"nil envelope", func(t *testing.T) [][]byte {
			d, _ := e.tx(t, txSpec{simulate: put("nil-neighbour", "v")})
			return [][]byte{d, nil}
		}, []pb.TxValidationCode{VALID, pb.TxValidationCode_NIL_ENVELOPE}, nil},
		{"garbage envelope", func(*testing.T) [][]byte { return [][]byte{{0xff}} }, []pb.TxValidationCode{pb.TxValidationCode_INVALID_OTHER_REASON}, nil},
		{"garbage payload", func(t *testing.T) [][]byte {
			return [][]byte{marshal(t, &cb.Envelope{Payload: []byte{0xff}, Signature: []byte("sig")})}
		}, []pb.TxValidationCode{pb.TxValidationCode_BAD_PAYLOAD}, nil},
		{"payload without header", func(t *testing.T) [][]byte {
			return [][]byte{marshal(t, &cb.Envelope{Payload: marshal(t, &cb.Payload{Data: []byte("x")}), Signature: []byte("sig")})}
		}, []pb.TxValidationCode{pb.TxValidationCode_BAD_COMMON_HEADER}, nil},
		{"unknown header type", func(t *testing.T) [][]byte { return [][]byte{e.other(t, cb.HeaderType_MESSAGE)} }, []pb.TxValidationCode{pb.TxValidationCode_BAD_COMMON_HEADER}, nil},
		{"tampered creator signature", one(txSpec{simulate: put("asset3", "forged"), mutate: flip}), []pb.TxValidationCode{pb.TxValidationCode_BAD_CREATOR_SIGNATURE}, nil},
		{"creator from unknown CA", one(txSpec{simulate: put("asset3", "stranger"), creator: stranger}), []pb.TxValidationCode{pb.TxValidationCode_BAD_CREATOR_SIGNATURE}, nil},
		{"config update", func(t *testing.T) [][]byte { return [][]byte{e.other(t, cb.HeaderType_CONFIG_UPDATE)} }, []pb.TxValidationCode{pb.TxValidationCode_UNSUPPORTED_TX_PAYLOAD}, nil},
		{"config tx in a normal block", func(t *testing.T) [][]byte {
			d, _ := e.tx(t, txSpec{simulate: put("config-neighbour", "v")})
			return [][]byte{d, e.other(t, cb.HeaderType_CONFIG)}
		}, []pb.TxValidationCode{VALID, pb.TxValidationCode_INVALID_CONFIG_TRANSACTION}, nil},
		{"endorsements for another proposal", one(txSpec{simulate: put("asset3", "rebound"), action: func(t *testing.T, ap *pb.ChaincodeActionPayload) {
			ap.ChaincodeProposalPayload = marshal(t, &pb.ChaincodeProposalPayload{Input: []byte("other input")})
		}}), []pb.TxValidationCode{pb.TxValidationCode_INVALID_ENDORSER_TRANSACTION}, nil},
		{"tx ID not derived from nonce and creator", one(txSpec{simulate: put("asset3", "badid"), txID: envelope.TxID([]byte("other nonce"), e.user1.Serialize())}), []pb.TxValidationCode{pb.TxValidationCode_BAD_PROPOSAL_TXID}, nil},
		{"duplicate tx ID in block", func(t *testing.T) [][]byte {
			d, _ := e.tx(t, txSpec{simulate: put("dup", "v")})
			return [][]byte{d, d}
		}, []pb.TxValidationCode{VALID, pb.TxValidationCode_DUPLICATE_TXID}, nil},
		{"duplicate tx ID in ledger", func(*testing.T) [][]byte { return [][]byte{firstValid} }, []pb.TxValidationCode{pb.TxValidationCode_DUPLICATE_TXID}, nil},
		{"other channel", one(txSpec{simulate: put("asset3", "elsewhere"), channel: "otherchannel"}), []pb.TxValidationCode{pb.TxValidationCode_TARGET_CHAIN_NOT_FOUND}, nil},
		{"garbage header extension", one(txSpec{simulate: put("asset3", "ext"), header: func(ch *cb.ChannelHeader) { ch.Extension = []byte{0xff} }}), []pb.TxValidationCode{pb.TxValidationCode_BAD_HEADER_EXTENSION}, nil},
		{"chaincode action does not decode", one(txSpec{simulate: put("asset3", "action"), action: func(t *testing.T, ap *pb.ChaincodeActionPayload) {
			prp := &pb.ProposalResponsePayload{}
			unmarshal(t, ap.Action.ProposalResponsePayload, prp)
			prp.Extension = []byte{0xff}
			ap.Action.ProposalResponsePayload = marshal(t, prp)
		}}), []pb.TxValidationCode{pb.TxValidationCode_BAD_RESPONSE_PAYLOAD}, nil},
		{"chaincode error status", one(txSpec{simulate: put("asset3", "500"), response: func(a *pb.ChaincodeAction) { a.Response.Status = 500 }}), []pb.TxValidationCode{pb.TxValidationCode_BAD_RESPONSE_PAYLOAD}, nil},
		{"garbage results", one(txSpec{results: []byte{0xff}}), []pb.TxValidationCode{pb.TxValidationCode_BAD_RWSET}, nil},
		{"private data collections", one(txSpec{results: rawResults(t, basic, &rwset.NsReadWriteSet{
			Namespace: basic, Rwset: marshal(t, kvWrite("asset3", "pvt")),
			CollectionHashedRwset: []*rwset.CollectionHashedReadWriteSet{{CollectionName: "c", HashedRwset: []byte{}}},
		})}), []pb.TxValidationCode{pb.TxValidationCode_BAD_RWSET}, nil},
		{"undefined chaincode", one(txSpec{cc: "nosuchcc", results: rawResults(t, "nosuchcc", kvWrite("k", "v"))}), []pb.TxValidationCode{pb.TxValidationCode_INVALID_CHAINCODE}, nil},
		{"writes to an undefined namespace", one(txSpec{results: rawResults(t, basic, kvWrite("asset3", "x"), "nosuchcc", kvWrite("k", "v"))}), []pb.TxValidationCode{pb.TxValidationCode_INVALID_CHAINCODE}, nil},
		{"action of another chaincode", one(txSpec{simulate: put("asset3", "other"), response: func(a *pb.ChaincodeAction) { a.ChaincodeId.Name = "other" }}), []pb.TxValidationCode{pb.TxValidationCode_INVALID_CHAINCODE}, nil},
		{"event of another chaincode", func(t *testing.T) [][]byte {
			ev := marshal(t, &pb.ChaincodeEvent{ChaincodeId: "other", EventName: "e"})
			d, _ := e.tx(t, txSpec{simulate: put("asset3", "event"), response: func(a *pb.ChaincodeAction) { a.Events = ev }})
			return [][]byte{d}
		}, []pb.TxValidationCode{pb.TxValidationCode_INVALID_OTHER_REASON}, nil},
		{"namespace twice", one(txSpec{results: rawResults(t, basic, kvWrite("asset3", "twice"), basic, kvWrite("asset4", "twice"))}), []pb.TxValidationCode{pb.TxValidationCode_ILLEGAL_WRITESET}, nil},
		{"endorsed by a client", one(txSpec{simulate: put("asset3", "client"), endorsers: []envelope.Signer{e.user1}}), []pb.TxValidationCode{EPF}, nil},
		{"endorsed by an orderer", one(txSpec{simulate: put("asset3", "orderer"), endorsers: []envelope.Signer{e.orderer}}), []pb.TxValidationCode{EPF}, nil},
		{"no endorsements", one(txSpec{simulate: put("asset3", "none"), action: func(_ *testing.T, ap *pb.ChaincodeActionPayload) { ap.Action.Endorsements = nil }}), []pb.TxValidationCode{EPF}, nil},
		{"chaincode writes a definition", one(txSpec{results: rawResults(t, basic, kvWrite("asset3", "x"), lifecycle.Namespace, kvWrite("definitions/basic", "x"))}), []pb.TxValidationCode{EPF}, nil},
		// State-based endorsement: basic's policy accepts either org, but a
		// key whose VALIDATION_PARAMETER names Org2 needs Org2's peer.
		{"key policy set under the chaincode policy", one(txSpec{simulate: setKeyPolicy("sbe", "OR('Org2MSP.peer')", "v0")}), []pb.TxValidationCode{VALID}, func(t *testing.T) {
			if _, md := e.state(t, basic, "sbe"); len(md[validator.ValidationParameterKey]) == 0 {
				t.Fatalf("metadata of sbe = %v, want a validation parameter", md)
			}
		}},
		{"key policy overrides the chaincode policy", one(txSpec{simulate: put("sbe", "by-org1")}), []pb.TxValidationCode{EPF}, nil},
		{"key policy satisfied", one(txSpec{simulate: put("sbe", "by-org2"), endorsers: []envelope.Signer{e.peer2}}), []pb.TxValidationCode{VALID}, nil},
		{"key policy change needs the current key policy", one(txSpec{simulate: setKeyPolicy("sbe", "OR('Org1MSP.peer')", "")}), []pb.TxValidationCode{EPF}, func(t *testing.T) {
			_, md := e.state(t, basic, "sbe")
			spe := &cb.SignaturePolicyEnvelope{}
			unmarshal(t, md[validator.ValidationParameterKey], spe)
			if dsl, _ := policy.FormatDSL(spe); dsl != "OR('Org2MSP.peer')" {
				t.Fatalf("key policy of sbe = %s, want it unchanged", dsl)
			}
		}},
		{"key policy set earlier in the block", func(t *testing.T) [][]byte {
			set, _ := e.tx(t, txSpec{simulate: setKeyPolicy("sbe2", "OR('Org2MSP.peer')", "")})
			w, _ := e.tx(t, txSpec{simulate: put("sbe2", "same-block"), endorsers: []envelope.Signer{e.peer1, e.peer2}})
			return [][]byte{set, w}
		}, []pb.TxValidationCode{VALID, EPF}, nil},
		{"read conflict in block", func(t *testing.T) [][]byte {
			a, _ := e.tx(t, txSpec{simulate: readPut("asset1", "mvcc-a")})
			b, _ := e.tx(t, txSpec{simulate: readPut("asset1", "mvcc-b")})
			return [][]byte{a, b}
		}, []pb.TxValidationCode{VALID, pb.TxValidationCode_MVCC_READ_CONFLICT}, nil},
		{"stale read", func(t *testing.T) [][]byte {
			stale, _ := e.tx(t, txSpec{simulate: readPut("asset2", "stale")})
			e.mustCommit(t, [][]byte{func() []byte { d, _ := e.tx(t, txSpec{simulate: put("asset2", "v2")}); return d }()}, VALID)
			return [][]byte{stale}
		}, []pb.TxValidationCode{pb.TxValidationCode_MVCC_READ_CONFLICT}, nil},
		{"phantom read", func(t *testing.T) [][]byte {
			scan, _ := e.tx(t, txSpec{simulate: func(t *testing.T, sim *ledger.TxSimulator) {
				it, err := sim.GetStateRangeScanIterator(basic, "range0", "range9")
				if err != nil {
					t.Fatal(err)
				}
				for {
					kv, err := it.Next()
					if err != nil {
						t.Fatal(err)
					}
					if kv == nil {
						break
					}
				}
				it.Close()
				put("scanned", "phantom")(t, sim)
			}})
			insert, _ := e.tx(t, txSpec{simulate: put("range5", "new")})
			return [][]byte{insert, scan}
		}, []pb.TxValidationCode{VALID, pb.TxValidationCode_PHANTOM_READ_CONFLICT}, nil},
	}
	for _, tt := range tests {
		ok := t.Run(tt.name, func(t *testing.T) {
			data := tt.data(t)
			before := make([]map[[2]string][]byte, len(data))
			for i, d := range data {
				before[i] = map[[2]string][]byte{}
				for _, w := range writesOf(d) {
					v, _ := e.state(t, w.ns, w.key)
					before[i][[2]string{w.ns, w.key}] = v
				}
			}
			got := e.commitBlock(t, data)
			if fmt.Sprint(got) != fmt.Sprint(tt.want) {
				t.Fatalf("codes = %v, want %v", got, tt.want)
			}
			for i, d := range data {
				for _, w := range writesOf(d) {
					now, _ := e.state(t, w.ns, w.key)
					changed := !bytes.Equal(now, before[i][[2]string{w.ns, w.key}])
					switch {
					case got[i] != VALID && changed && bytes.Equal(now, w.value) && !validWriteOf(data, got, w):
						t.Errorf("tx %d is %s but its write of %s/%s was applied", i, got[i], w.ns, w.key)
					case got[i] == VALID && !w.delete && !bytes.Equal(now, w.value) && !laterValidWrite(data, got, i, w):
						t.Errorf("tx %d is VALID but %s/%s = %q, want %q", i, w.ns, w.key, now, w.value)
					}
				}
			}
			if tt.check != nil {
				tt.check(t)
			}
		})
		if !ok {
			break // later cases build on this one's state
		}
	}
}

// validWriteOf reports whether a VALID transaction of data writes w.
func validWriteOf(data [][]byte, codes []pb.TxValidationCode, w keyWrite) bool {
	for j := range data {
		if codes[j] != VALID {
			continue
		}
		for _, o := range writesOf(data[j]) {
			if o.ns == w.ns && o.key == w.key && bytes.Equal(o.value, w.value) {
				return true
			}
		}
	}
	return false
}

// laterValidWrite reports whether a VALID transaction after i in data also
// writes w's key.
func laterValidWrite(data [][]byte, codes []pb.TxValidationCode, i int, w keyWrite) bool {
	for j := i + 1; j < len(data); j++ {
		if codes[j] != VALID {
			continue
		}
		for _, o := range writesOf(data[j]) {
			if o.ns == w.ns && o.key == w.key {
				return true
			}
		}
	}
	return false
}
