package blockstore

import (
	"fmt"
	"testing"

	cb "github.com/hyperledger/fabric-protos-go-apiv2/common"
	"google.golang.org/protobuf/proto"
)

// benchBlock builds a block of 100 envelopes of about 1 KiB each.
func benchBlock(b *testing.B, c *chain) *cb.Block {
	data := make([][]byte, 100)
	for i := range data {
		data[i] = envelope(b, fmt.Sprintf("%064x", c.next*100+uint64(i)), 900)
	}
	return c.blockData(data)
}

func BenchmarkAppend(b *testing.B) {
	for _, noSync := range []bool{false, true} {
		b.Run(fmt.Sprintf("NoSync=%v", noSync), func(b *testing.B) {
			s := openStore(b, Config{Dir: b.TempDir(), NoSync: noSync})
			c := newChain(b)
			blk := benchBlock(b, c)
			b.SetBytes(int64(proto.Size(blk)))
			b.ResetTimer()
			for range b.N {
				if err := s.Append(blk); err != nil {
					b.Fatal(err)
				}
				b.StopTimer()
				blk = benchBlock(b, c)
				b.StartTimer()
			}
		})
	}
}

func BenchmarkBlock(b *testing.B) {
	s := openStore(b, Config{Dir: b.TempDir(), NoSync: true})
	c := newChain(b)
	const n = 64
	for range n {
		if err := s.Append(benchBlock(b, c)); err != nil {
			b.Fatal(err)
		}
	}
	blk, _ := s.Block(0)
	b.SetBytes(int64(proto.Size(blk)))
	b.ResetTimer()
	for i := range b.N {
		if _, err := s.Block(uint64(i % n)); err != nil {
			b.Fatal(err)
		}
	}
}
