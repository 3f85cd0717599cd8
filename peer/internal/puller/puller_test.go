package puller_test

import (
	"bytes"
	"errors"
	"testing"

	cb "github.com/hyperledger/fabric-protos-go-apiv2/common"
	"google.golang.org/protobuf/proto"

	"github.com/cairn-ledger/cairn/internal/block"
	"github.com/cairn-ledger/cairn/internal/channelconfig"
	"github.com/cairn-ledger/cairn/internal/crypto"
	"github.com/cairn-ledger/cairn/internal/cryptogen"
	"github.com/cairn-ledger/cairn/internal/envelope"
	"github.com/cairn-ledger/cairn/internal/netconfig"
	"github.com/cairn-ledger/cairn/internal/policy"
	"github.com/cairn-ledger/cairn/peer/internal/puller"
)

const (
	ordDomain = "example.com"
	orgDomain = "org1.example.com"
)

type fixture struct {
	genesis  *cb.Block
	policies puller.PolicySource
	orderer  *crypto.SigningIdentity
	peer     *crypto.SigningIdentity
	user     *crypto.SigningIdentity
}

// policySource adapts a bundle to puller.PolicySource.
type policySource struct{ bundle *channelconfig.Bundle }

func (p policySource) Policy(path string) (policy.Policy, error) {
	return p.bundle.Policies().Policy(path)
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	dir := t.TempDir()
	net := netconfig.Default()
	net.OrdererOrgs[0].Orderers[0].Port = 7050
	net.PeerOrgs[0].Peers[0].Port = 7051
	if err := cryptogen.Generate(net, dir); err != nil {
		t.Fatal(err)
	}
	genesis, err := channelconfig.Genesis(net, dir)
	if err != nil {
		t.Fatal(err)
	}
	bundle, err := channelconfig.FromBlock(genesis)
	if err != nil {
		t.Fatal(err)
	}
	l := cryptogen.Layout{Root: dir}
	load := func(mspID, mspDir string) *crypto.SigningIdentity {
		id, err := crypto.LoadSigningIdentity(mspID, mspDir)
		if err != nil {
			t.Fatal(err)
		}
		return id
	}
	return &fixture{
		genesis:  genesis,
		policies: policySource{bundle},
		orderer:  load("OrdererMSP", l.NodeMSPDir(false, ordDomain, "orderer0."+ordDomain)),
		peer:     load("Org1MSP", l.NodeMSPDir(true, orgDomain, "peer0."+orgDomain)),
		user:     load("Org1MSP", l.UserMSPDir(true, orgDomain, "User1")),
	}
}

func marshal(t *testing.T, m proto.Message) []byte {
	t.Helper()
	b, err := proto.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// signature is one orderer-style metadata signature over value, its header
// and the block header.
func signature(t *testing.T, s envelope.Signer, value []byte, h *cb.BlockHeader) *cb.MetadataSignature {
	t.Helper()
	nonce, err := envelope.NewNonce()
	if err != nil {
		t.Fatal(err)
	}
	sh := marshal(t, &cb.SignatureHeader{Creator: s.Serialize(), Nonce: nonce})
	msg := append(append(append([]byte{}, value...), sh...), block.HeaderBytes(h)...)
	sig, err := s.Sign(msg)
	if err != nil {
		t.Fatal(err)
	}
	return &cb.MetadataSignature{SignatureHeader: sh, Signature: sig}
}

// sign sets b's SIGNATURES metadata as the orderer does, one signature per signer.
func sign(t *testing.T, b *cb.Block, signers ...envelope.Signer) *cb.Metadata {
	t.Helper()
	md := &cb.Metadata{Value: marshal(t, &cb.OrdererBlockMetadata{LastConfig: &cb.LastConfig{Index: 0}})}
	for _, s := range signers {
		md.Signatures = append(md.Signatures, signature(t, s, md.Value, b.Header))
	}
	b.Metadata.Metadata[cb.BlockMetadataIndex_SIGNATURES] = marshal(t, md)
	return md
}

// next builds block 1 after the genesis block, carrying one transaction.
func (f *fixture) next(t *testing.T) *cb.Block {
	t.Helper()
	env, err := envelope.NewSignedEnvelope(cb.HeaderType_MESSAGE, "mychannel", f.user, &cb.ConfigEnvelope{})
	if err != nil {
		t.Fatal(err)
	}
	return block.New(1, block.HeaderHash(f.genesis.Header), [][]byte{marshal(t, env)})
}

func TestVerifyAccepts(t *testing.T) {
	f := newFixture(t)
	b := f.next(t)
	sign(t, b, f.orderer)
	if err := puller.Verify(b, 1, f.genesis.Header, f.policies); err != nil {
		t.Fatalf("Verify: %v", err)
	}
}

// BlockValidation is ANY Writers of the orderer orgs: one good signature among
// bad ones suffices.
func TestVerifyAcceptsOneOrdererAmongOthers(t *testing.T) {
	f := newFixture(t)
	b := f.next(t)
	sign(t, b, f.peer, f.user, f.orderer)
	if err := puller.Verify(b, 1, f.genesis.Header, f.policies); err != nil {
		t.Fatalf("Verify: %v", err)
	}
}

func TestVerifyRejects(t *testing.T) {
	f := newFixture(t)
	tests := []struct {
		name    string
		want    uint64
		prev    func() *cb.BlockHeader
		corrupt func(t *testing.T, b *cb.Block)
		is      error // if set, the error must match it
	}{
		{name: "wrong number", want: 2},
		{name: "broken previous hash", prev: func() *cb.BlockHeader {
			h := proto.Clone(f.genesis.Header).(*cb.BlockHeader)
			h.DataHash = []byte("another block")
			return h
		}},
		{name: "tampered data", is: block.ErrMalformed, corrupt: func(t *testing.T, b *cb.Block) {
			b.Data.Data[0] = append(b.Data.Data[0], 0)
		}},
		{name: "extra data", is: block.ErrMalformed, corrupt: func(t *testing.T, b *cb.Block) {
			b.Data.Data = append(b.Data.Data, []byte("smuggled"))
		}},
		{name: "missing header", is: block.ErrMalformed, corrupt: func(t *testing.T, b *cb.Block) { b.Header = nil }},
		{name: "signed by a peer", is: policy.ErrNotSatisfied, corrupt: func(t *testing.T, b *cb.Block) { sign(t, b, f.peer) }},
		{name: "signed by a client", is: policy.ErrNotSatisfied, corrupt: func(t *testing.T, b *cb.Block) { sign(t, b, f.user) }},
		{name: "tampered signature", is: policy.ErrNotSatisfied, corrupt: func(t *testing.T, b *cb.Block) {
			md := sign(t, b, f.orderer)
			s := md.Signatures[0].Signature
			s[len(s)/2] ^= 0x01
			b.Metadata.Metadata[cb.BlockMetadataIndex_SIGNATURES] = marshal(t, md)
		}},
		{name: "tampered metadata value", is: policy.ErrNotSatisfied, corrupt: func(t *testing.T, b *cb.Block) {
			md := sign(t, b, f.orderer)
			md.Value = marshal(t, &cb.OrdererBlockMetadata{LastConfig: &cb.LastConfig{Index: 7}})
			b.Metadata.Metadata[cb.BlockMetadataIndex_SIGNATURES] = marshal(t, md)
		}},
		{name: "signature over another header", is: policy.ErrNotSatisfied, corrupt: func(t *testing.T, b *cb.Block) {
			other := proto.Clone(b.Header).(*cb.BlockHeader)
			other.Number = 5
			md := &cb.Metadata{Value: []byte("v")}
			md.Signatures = []*cb.MetadataSignature{signature(t, f.orderer, md.Value, other)}
			b.Metadata.Metadata[cb.BlockMetadataIndex_SIGNATURES] = marshal(t, md)
		}},
		{name: "no signatures", is: policy.ErrNotSatisfied, corrupt: func(t *testing.T, b *cb.Block) { sign(t, b) }},
		{name: "empty signatures metadata", is: policy.ErrNotSatisfied, corrupt: func(t *testing.T, b *cb.Block) {
			b.Metadata.Metadata[cb.BlockMetadataIndex_SIGNATURES] = nil
		}},
		{name: "missing metadata", is: policy.ErrNotSatisfied, corrupt: func(t *testing.T, b *cb.Block) { b.Metadata = nil }},
		{name: "garbage signatures metadata", corrupt: func(t *testing.T, b *cb.Block) {
			b.Metadata.Metadata[cb.BlockMetadataIndex_SIGNATURES] = []byte{0xff}
		}},
		{name: "garbage signature header", corrupt: func(t *testing.T, b *cb.Block) {
			md := sign(t, b, f.orderer)
			md.Signatures[0].SignatureHeader = []byte{0xff}
			b.Metadata.Metadata[cb.BlockMetadataIndex_SIGNATURES] = marshal(t, md)
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := f.next(t)
			sign(t, b, f.orderer)
			if tt.corrupt != nil {
				tt.corrupt(t, b)
			}
			want := uint64(1)
			if tt.want != 0 {
				want = tt.want
			}
			prev := f.genesis.Header
			if tt.prev != nil {
				prev = tt.prev()
			}
			err := puller.Verify(b, want, prev, f.policies)
			if err == nil {
				t.Fatal("Verify accepted the block")
			}
			if tt.is != nil && !errors.Is(err, tt.is) {
				t.Fatalf("err = %v, want one matching %v", err, tt.is)
			}
		})
	}
}

// Block 0 has no predecessor: a nil prev skips the chain check only.
func TestVerifyFirstBlock(t *testing.T) {
	f := newFixture(t)
	b := block.New(0, nil, [][]byte{[]byte("tx")})
	sign(t, b, f.orderer)
	if err := puller.Verify(b, 0, nil, f.policies); err != nil {
		t.Fatalf("Verify: %v", err)
	}
	sign(t, b, f.peer)
	if err := puller.Verify(b, 0, nil, f.policies); !errors.Is(err, policy.ErrNotSatisfied) {
		t.Fatalf("err = %v, want policy.ErrNotSatisfied", err)
	}
}

type missingPolicy struct{}

func (missingPolicy) Policy(path string) (policy.Policy, error) {
	return nil, errors.New("no policy " + path)
}

func TestVerifyWithoutBlockValidationPolicy(t *testing.T) {
	f := newFixture(t)
	b := f.next(t)
	sign(t, b, f.orderer)
	if err := puller.Verify(b, 1, f.genesis.Header, missingPolicy{}); err == nil {
		t.Fatal("Verify accepted a block with no BlockValidation policy")
	}
}

func TestSignedData(t *testing.T) {
	f := newFixture(t)
	b := f.next(t)
	md := sign(t, b, f.orderer, f.peer)
	got, err := puller.SignedData(b)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 {
		t.Fatalf("got %d signed data, want 2", len(got))
	}
	for i, s := range md.Signatures {
		want := append(append(append([]byte{}, md.Value...), s.SignatureHeader...), block.HeaderBytes(b.Header)...)
		if !bytes.Equal(got[i].Data, want) {
			t.Errorf("signature %d: data is not value ‖ signature header ‖ header bytes", i)
		}
		if !bytes.Equal(got[i].Signature, s.Signature) {
			t.Errorf("signature %d: signature differs", i)
		}
	}
	if !bytes.Equal(got[0].Identity, f.orderer.Serialize()) || !bytes.Equal(got[1].Identity, f.peer.Serialize()) {
		t.Error("identities are not the signature headers' creators")
	}
}
