package broadcast

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"testing"

	env "github.com/cairn-ledger/cairn/internal/envelope"
	"github.com/cairn-ledger/cairn/internal/msp/msptest"
	"github.com/cairn-ledger/cairn/internal/policy"
	cb "github.com/hyperledger/fabric-protos-go-apiv2/common"
	pb "github.com/hyperledger/fabric-protos-go-apiv2/peer"
)

// realChannel checks signatures with a real MSP and signature policy (ECDSA
// P-256 verification, cached identity deserialisation) and orders nothing.
type realChannel struct {
	p       *policy.SignaturePolicy
	ordered atomic.Int64
}

func (c *realChannel) Evaluate(_ string, signed []policy.SignedData) error {
	return c.p.Evaluate(signed)
}
func (c *realChannel) AbsoluteMaxBytes() uint32 { return 10 << 20 }
func (c *realChannel) ConfigSequence() uint64   { return 0 }
func (c *realChannel) OrderBatch(_ context.Context, envs [][]byte, _ uint64) []error {
	c.ordered.Add(int64(len(envs)))
	return make([]error, len(envs))
}
func (c *realChannel) ProposeConfig(*cb.Envelope) (*cb.Envelope, uint64, error) {
	return nil, 0, errors.New("no config updates in benchmarks")
}
func (c *realChannel) Configure(context.Context, []byte, uint64) error {
	return errors.New("no config updates in benchmarks")
}

// signedEnvelopes returns n envelopes with 1 KiB of data, signed by a member
// of Org1MSP, and a channel whose Writers policy that member satisfies.
func signedEnvelopes(b *testing.B, n int) ([]*cb.Envelope, *realChannel) {
	b.Helper()
	ca := msptest.NewCA(b, "Org1MSP")
	user := ca.Issue(b, "user1", "client")
	p, err := policy.NewSignaturePolicy(policy.SignedByAnyMember([]string{"Org1MSP"}), msptest.Manager(b, ca))
	if err != nil {
		b.Fatal(err)
	}
	tx := &pb.Transaction{Actions: []*pb.TransactionAction{{Payload: make([]byte, 1024)}}}
	envs := make([]*cb.Envelope, n)
	for i := range envs {
		if envs[i], err = env.NewSignedEnvelope(cb.HeaderType_ENDORSER_TRANSACTION, "ch", user.SigningIdentity(), tx); err != nil {
			b.Fatal(err)
		}
	}
	return envs, &realChannel{p: p}
}

type realChannels struct{ ch *realChannel }

func (r realChannels) Channel(id string) (Channel, bool) { return r.ch, id == "ch" }

// BenchmarkBroadcastValidate measures the full check of one envelope
// (decode, channel lookup, Writers policy with signature verification,
// re-encode) on one core, then on all cores at once.
func BenchmarkBroadcastValidate(b *testing.B) {
	envs, ch := signedEnvelopes(b, 256)
	h := New(realChannels{ch}, nil, nil)
	b.Run("serial", func(b *testing.B) {
		for i := range b.N {
			if c := h.check(envs[i%len(envs)]); c.reject != nil {
				b.Fatal(c.reject.Info)
			}
		}
	})
	b.Run("parallel", func(b *testing.B) {
		var next atomic.Int64
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				if c := h.check(envs[int(next.Add(1))%len(envs)]); c.reject != nil {
					b.Fatal(c.reject.Info)
				}
			}
		})
	})
}

// BenchmarkBroadcastStream measures one stream end to end through Handle: its
// pipeline verifies envelopes on every core although they arrive on one
// stream. Compare ns/op with BenchmarkBroadcastValidate/serial.
func BenchmarkBroadcastStream(b *testing.B) {
	envs, ch := signedEnvelopes(b, 256)
	for _, window := range []int{1, DefaultWindow} {
		b.Run(fmt.Sprintf("window=%d", window), func(b *testing.B) {
			h := New(realChannels{ch}, nil, nil).WithWindow(window)
			in := make([]*cb.Envelope, b.N)
			for i := range in {
				in[i] = envs[i%len(envs)]
			}
			s := &sliceStream{envs: in}
			b.ResetTimer()
			if err := h.Handle(s); err != nil {
				b.Fatal(err)
			}
			if ok := s.accepted(); ok != b.N {
				b.Fatalf("%d of %d envelopes accepted", ok, b.N)
			}
		})
	}
}
