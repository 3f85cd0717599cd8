package chain

import (
	"testing"

	cb "github.com/hyperledger/fabric-protos-go-apiv2/common"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
)

// decodedSize is what envelopeSize must equal: the size from a full decode.
func decodedSize(raw []byte) uint32 {
	env := &cb.Envelope{}
	if err := proto.Unmarshal(raw, env); err != nil {
		return uint32(len(raw))
	}
	return uint32(len(env.Payload) + len(env.Signature))
}

func sizeSeeds(t testing.TB) [][]byte {
	env, err := proto.Marshal(&cb.Envelope{Payload: make([]byte, 1024), Signature: []byte("signature")})
	if err != nil {
		t.Fatal(err)
	}
	repeated := protowire.AppendTag(append([]byte(nil), env...), 1, protowire.BytesType)
	repeated = protowire.AppendBytes(repeated, []byte("later payload wins"))
	unknown := protowire.AppendTag(append([]byte(nil), env...), 7, protowire.VarintType)
	unknown = protowire.AppendVarint(unknown, 42)
	wrongType := protowire.AppendTag(nil, 2, protowire.VarintType)
	wrongType = protowire.AppendVarint(wrongType, 1)
	return [][]byte{
		nil,
		env,
		env[:len(env)-3], // truncated
		repeated,
		unknown,
		wrongType,
		[]byte("\xff\xff\xff not an envelope"),
	}
}

func TestEnvelopeSize(t *testing.T) {
	for i, raw := range sizeSeeds(t) {
		if got, want := envelopeSize(raw), decodedSize(raw); got != want {
			t.Errorf("seed %d: envelopeSize = %d, decoding gives %d", i, got, want)
		}
	}
}

func FuzzEnvelopeSize(f *testing.F) {
	for _, raw := range sizeSeeds(f) {
		f.Add(raw)
	}
	f.Fuzz(func(t *testing.T, raw []byte) {
		if got, want := envelopeSize(raw), decodedSize(raw); got != want {
			t.Fatalf("envelopeSize(%x) = %d, decoding gives %d", raw, got, want)
		}
	})
}
