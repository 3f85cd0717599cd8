package ledger

import (
	"fmt"
	"testing"
	"time"

	"github.com/hyperledger/fabric-protos-go-apiv2/common"
	"github.com/hyperledger/fabric-protos-go-apiv2/ledger/rwset/kvrwset"

	"github.com/cairn-ledger/cairn/internal/block"
)

const benchTxsPerBlock = 500

// BenchmarkCommit commits blocks of 500 transactions, each reading one
// committed key and writing one new key. Block construction is not timed.
func BenchmarkCommit(b *testing.B) {
	for _, noSync := range []bool{false, true} {
		b.Run(fmt.Sprintf("nosync=%v", noSync), func(b *testing.B) {
			l, err := Open(Config{Dir: b.TempDir(), NoSync: noSync})
			if err != nil {
				b.Fatal(err)
			}
			defer l.Close()
			seed := &kvrwset.KVRWSet{}
			for i := range benchTxsPerBlock {
				seed.Writes = append(seed.Writes, &kvrwset.KVWrite{Key: fmt.Sprintf("r%04d", i), Value: []byte("seed-value")})
			}
			commitRWSets(b, l, "seed", rws(b, "bench", seed))

			var elapsed time.Duration
			for i := 0; b.Loop(); i++ {
				b.StopTimer()
				envs := make([][]byte, benchTxsPerBlock)
				for j := range envs {
					set := &kvrwset.KVRWSet{
						Reads:  []*kvrwset.KVRead{{Key: fmt.Sprintf("r%04d", j), Version: ver(0, 0)}},
						Writes: []*kvrwset.KVWrite{{Key: fmt.Sprintf("w%06d-%04d", i, j), Value: []byte("some value of moderate size, 64 bytes long...........")}},
					}
					envs[j] = endorserEnvelope(b, fmt.Sprintf("tx-%d-%d", i, j), mustMarshal(b, rws(b, "bench", set)))
				}
				blk := nextBenchBlock(b, l, envs)
				b.StartTimer()
				start := time.Now()
				codes, err := l.Commit(blk, allValid(benchTxsPerBlock))
				elapsed += time.Since(start)
				if err != nil {
					b.Fatal(err)
				}
				if codes[benchTxsPerBlock-1] != valid {
					b.Fatalf("tx invalid: %v", codes[benchTxsPerBlock-1])
				}
			}
			b.ReportMetric(float64(b.N*benchTxsPerBlock)/elapsed.Seconds(), "tx/s")
		})
	}
}

func nextBenchBlock(b *testing.B, l *Ledger, envs [][]byte) *common.Block {
	last, err := l.Block(l.blocks.Height() - 1)
	if err != nil {
		b.Fatal(err)
	}
	return block.New(l.blocks.Height(), block.HeaderHash(last.Header), envs)
}

// BenchmarkSimulateGetPut is one endorsement's ledger work: a simulator that
// reads a key, writes a key and builds its read-write set.
func BenchmarkSimulateGetPut(b *testing.B) {
	l := openTestLedger(b, b.TempDir())
	defer l.Close()
	seed := &kvrwset.KVRWSet{}
	for i := range 1000 {
		seed.Writes = append(seed.Writes, &kvrwset.KVWrite{Key: fmt.Sprintf("k%04d", i), Value: []byte("value")})
	}
	commitRWSets(b, l, "seed", rws(b, "bench", seed))
	for i := 0; b.Loop(); i++ {
		s, err := l.NewTxSimulator("tx")
		if err != nil {
			b.Fatal(err)
		}
		if _, err := s.GetState("bench", fmt.Sprintf("k%04d", i%1000)); err != nil {
			b.Fatal(err)
		}
		if err := s.SetState("bench", fmt.Sprintf("k%04d", (i+1)%1000), []byte("new value")); err != nil {
			b.Fatal(err)
		}
		if _, err := s.Results(); err != nil {
			b.Fatal(err)
		}
		s.Done()
	}
}
