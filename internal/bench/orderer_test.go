package bench

import (
	"testing"

	cb "github.com/hyperledger/fabric-protos-go-apiv2/common"
	"google.golang.org/protobuf/proto"
)

func TestEnvelopeSignature(t *testing.T) {
	raw, err := proto.Marshal(&cb.Envelope{Payload: []byte("payload"), Signature: []byte("sig")})
	if err != nil {
		t.Fatal(err)
	}
	if got := envelopeSignature(raw); string(got) != "sig" {
		t.Fatalf("signature %q", got)
	}
	for _, bad := range [][]byte{nil, {0xff}, {0x0a, 0x05, 'x'}} {
		if got := envelopeSignature(bad); got != nil {
			t.Fatalf("signature %q of %x", got, bad)
		}
	}
}

func TestPercentileAndSecondRange(t *testing.T) {
	s := []float64{1, 2, 3, 4, 5, 6, 7, 8, 9, 10}
	if p := percentile(s, 0.5); p != 5 {
		t.Fatalf("p50 %v", p)
	}
	if p := percentile(s, 0.99); p != 10 {
		t.Fatalf("p99 %v", p)
	}
	if p := percentile(nil, 0.5); p != 0 {
		t.Fatalf("p50 of nothing %v", p)
	}
	lo, hi := secondRange([]int64{1, 50, 40, 60, 2}, 4)
	if lo != 40 || hi != 60 {
		t.Fatalf("range %v..%v", lo, hi)
	}
}
