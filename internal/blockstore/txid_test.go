package blockstore

import (
	"testing"

	cb "github.com/hyperledger/fabric-protos-go-apiv2/common"
	"google.golang.org/protobuf/encoding/protowire"
)

// FuzzTxID checks that the wire-walking tx ID extraction agrees with decoding
// the envelope in full, for any bytes.
func FuzzTxID(f *testing.F) {
	f.Add(envelope(f, "tx1", 16))
	f.Add(envelope(f, "", 0))
	f.Add(mustMarshal(f, &cb.Envelope{Payload: mustMarshal(f, &cb.Payload{Data: []byte("no header")})}))
	f.Add(mustMarshal(f, &cb.Envelope{Payload: mustMarshal(f, &cb.Payload{Header: &cb.Header{}})}))
	f.Add(mustMarshal(f, &cb.Envelope{Payload: mustMarshal(f, &cb.Payload{Header: &cb.Header{ChannelHeader: []byte{0xff}}})}))
	// Repeated fields, which protobuf merges (messages) or overrides (bytes).
	twice := append(envelope(f, "a", 1), envelope(f, "b", 1)...)
	f.Add(twice)
	hdr := protowire.AppendTag(nil, 1, protowire.BytesType)
	hdr = protowire.AppendBytes(hdr, mustMarshal(f, &cb.Header{ChannelHeader: mustMarshal(f, &cb.ChannelHeader{TxId: "x"})}))
	payload := append(append([]byte{}, hdr...), hdr...)
	f.Add(mustMarshal(f, &cb.Envelope{Payload: payload}))
	// Wrong wire type for a known field: an unknown field to protobuf.
	f.Add(protowire.AppendVarint(protowire.AppendTag(nil, 1, protowire.VarintType), 5))
	f.Add([]byte{0x0a, 0x02, 0xff, 0xff})
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, raw []byte) {
		gotID, gotOK := TxID(raw)
		wantID, wantOK := slowTxID(raw)
		if gotID != wantID || gotOK != wantOK {
			t.Fatalf("txID = %q, %v; full decode %q, %v", gotID, gotOK, wantID, wantOK)
		}
	})
}

func BenchmarkTxID(b *testing.B) {
	raw := envelope(b, "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef", 1900)
	b.Run("wire", func(b *testing.B) {
		for range b.N {
			if _, ok := TxID(raw); !ok {
				b.Fatal("no tx ID")
			}
		}
	})
	b.Run("decode", func(b *testing.B) {
		for range b.N {
			if _, ok := slowTxID(raw); !ok {
				b.Fatal("no tx ID")
			}
		}
	})
}
