package envelope_test

import (
	"bytes"
	"errors"
	"testing"

	cb "github.com/hyperledger/fabric-protos-go-apiv2/common"
	pb "github.com/hyperledger/fabric-protos-go-apiv2/peer"
	"google.golang.org/protobuf/proto"

	"github.com/cairn-ledger/cairn/internal/envelope"
	"github.com/cairn-ledger/cairn/internal/msp/msptest"
)

func signer(t testing.TB) *msptestSigner {
	ca := msptest.NewCA(t.(*testing.T), "Org1MSP")
	leaf := ca.Issue(t.(*testing.T), "user1", "client")
	return &msptestSigner{id: leaf.SigningIdentity()}
}

type msptestSigner struct {
	id interface {
		Serialize() []byte
		Sign([]byte) ([]byte, error)
	}
}

func (s *msptestSigner) Serialize() []byte             { return s.id.Serialize() }
func (s *msptestSigner) Sign(m []byte) ([]byte, error) { return s.id.Sign(m) }

func TestTxIDIsSHA256OfNonceAndCreator(t *testing.T) {
	// Fabric's rule: hex(SHA-256(nonce ‖ creator)). Known vector: nonce "a", creator "b".
	if got, want := envelope.TxID([]byte("a"), []byte("b")), "fb8e20fc2e4c3f248c60c39bd652f3c1347298bb977b8b4d5903b85055620603"; got != want {
		t.Fatalf("TxID = %s, want %s", got, want)
	}
	if err := envelope.CheckTxID("00", []byte("a"), []byte("b")); !errors.Is(err, envelope.ErrBadTxID) {
		t.Fatalf("CheckTxID of a wrong ID: %v", err)
	}
}

func TestProposalRoundTrip(t *testing.T) {
	s := signer(t)
	prop, txID, err := envelope.NewProposal("mychannel", "basic", [][]byte{[]byte("ReadAsset"), []byte("a1")}, map[string][]byte{"secret": []byte("x")}, s.Serialize())
	if err != nil {
		t.Fatal(err)
	}
	sp, err := envelope.SignProposal(prop, s)
	if err != nil {
		t.Fatal(err)
	}
	up, err := envelope.UnpackProposal(sp)
	if err != nil {
		t.Fatal(err)
	}
	if up.TxID() != txID || up.ChannelID() != "mychannel" || up.ChaincodeName != "basic" || string(up.Input.Args[1]) != "a1" {
		t.Fatalf("unpacked %s %s %s %q", up.TxID(), up.ChannelID(), up.ChaincodeName, up.Input.Args)
	}
	// Endorse, assemble, and unpack the transaction again.
	resp, err := envelope.Endorse(up, s, &pb.Response{Status: 200, Payload: []byte("ok")}, []byte("rwset"), &pb.ChaincodeEvent{EventName: "E"}, &pb.ChaincodeID{Name: "basic"})
	if err != nil {
		t.Fatal(err)
	}
	env, err := envelope.NewTransaction(up, []*pb.ProposalResponse{resp, resp})
	if err != nil {
		t.Fatal(err)
	}
	parsed, err := envelope.Parse(env)
	if err != nil {
		t.Fatal(err)
	}
	tx, err := envelope.UnpackTransaction(parsed)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(tx.Action.Results, []byte("rwset")) || len(tx.Endorsements()) != 2 {
		t.Fatalf("transaction results %q endorsements %d", tx.Action.Results, len(tx.Endorsements()))
	}
	if len(tx.ProposalPayload.TransientMap) != 0 {
		t.Fatal("transient data leaked into the transaction")
	}
	ev, err := tx.Event()
	if err != nil || ev.EventName != "E" {
		t.Fatalf("event %v %v", ev, err)
	}
	// The endorsement binds to the proposal without its transient map.
	hash, _ := up.Hash()
	if !bytes.Equal(tx.ProposalResponsePayload.ProposalHash, hash) {
		t.Fatal("proposal hash mismatch")
	}
}

func TestNewTransactionRefusesDisagreeingEndorsers(t *testing.T) {
	s := signer(t)
	prop, _, _ := envelope.NewProposal("ch", "cc", [][]byte{[]byte("f")}, nil, s.Serialize())
	sp, _ := envelope.SignProposal(prop, s)
	up, err := envelope.UnpackProposal(sp)
	if err != nil {
		t.Fatal(err)
	}
	a, _ := envelope.Endorse(up, s, &pb.Response{Status: 200}, []byte("one"), nil, nil)
	b, _ := envelope.Endorse(up, s, &pb.Response{Status: 200}, []byte("two"), nil, nil)
	if _, err := envelope.NewTransaction(up, []*pb.ProposalResponse{a, b}); err == nil {
		t.Fatal("assembled a transaction from endorsements with different results")
	}
	if _, err := envelope.NewTransaction(up, []*pb.ProposalResponse{{Response: &pb.Response{Status: 500}}}); err == nil {
		t.Fatal("assembled a transaction from a failed response")
	}
}

func TestUnpackProposalRejects(t *testing.T) {
	s := signer(t)
	prop, _, _ := envelope.NewProposal("ch", "cc", [][]byte{[]byte("f")}, nil, s.Serialize())
	hdr := &cb.Header{}
	_ = proto.Unmarshal(prop.Header, hdr)
	ch := &cb.ChannelHeader{}
	_ = proto.Unmarshal(hdr.ChannelHeader, ch)
	ch.TxId = "not-the-right-id"
	hdr.ChannelHeader, _ = proto.Marshal(ch)
	bad := &pb.Proposal{Payload: prop.Payload}
	bad.Header, _ = proto.Marshal(hdr)
	badSP, _ := envelope.SignProposal(bad, s)

	cases := map[string]*pb.SignedProposal{
		"nil":          nil,
		"empty":        {},
		"no signature": {ProposalBytes: []byte{1}},
		"garbage":      {ProposalBytes: []byte{0xff, 0xff, 0xff}, Signature: []byte{1}},
		"wrong tx ID":  badSP,
	}
	for name, sp := range cases {
		if _, err := envelope.UnpackProposal(sp); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	if _, err := envelope.UnpackProposal(badSP); !errors.Is(err, envelope.ErrBadTxID) {
		t.Errorf("wrong tx ID: %v, want ErrBadTxID", err)
	}
}

func FuzzUnpackProposal(f *testing.F) {
	f.Add([]byte{}, []byte{})
	f.Add([]byte{0x0a, 0x02, 0x08, 0x01}, []byte{1})
	f.Fuzz(func(t *testing.T, propBytes, sig []byte) {
		up, err := envelope.UnpackProposal(&pb.SignedProposal{ProposalBytes: propBytes, Signature: sig})
		if err == nil && (up.ChaincodeName == "" || up.Input == nil) {
			t.Fatal("accepted a proposal without chaincode or input")
		}
	})
}

func FuzzParseEnvelope(f *testing.F) {
	f.Add([]byte{}, []byte{})
	f.Add([]byte{0x0a, 0x00}, []byte{})
	f.Fuzz(func(t *testing.T, payload, sig []byte) {
		p, err := envelope.Parse(&cb.Envelope{Payload: payload, Signature: sig})
		if err != nil {
			return
		}
		if p.ChannelHeader == nil || p.SignatureHeader == nil {
			t.Fatal("parsed envelope without headers")
		}
		_, _ = envelope.UnpackTransaction(p)
	})
}
