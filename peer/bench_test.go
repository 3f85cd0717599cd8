package peer

import (
	"context"
	"testing"
)

// TestBenchCommitter runs the committer benchmark on a small chain: every
// transaction must commit VALID (Replay checks it) and the counts add up.
func TestBenchCommitter(t *testing.T) {
	for _, mode := range []string{BenchModeCatchUp, BenchModeCommit} {
		t.Run(mode, func(t *testing.T) {
			res, err := BenchCommitter(context.Background(), BenchConfig{Mode: mode, Txs: 250, BlockSize: 100, Dir: t.TempDir(), NoSync: true})
			if err != nil {
				t.Fatal(err)
			}
			if res.Mode != mode || res.Txs != 250 || res.Blocks != 3 || res.Seconds <= 0 || res.TPS <= 0 {
				t.Fatalf("result %+v, want %s of 250 txs in 3 blocks", res, mode)
			}
		})
	}
}

func TestBenchConfigValidate(t *testing.T) {
	if err := DefaultBenchConfig().Validate(); err != nil {
		t.Fatal(err)
	}
	for _, c := range []BenchConfig{{Txs: 0, BlockSize: 500}, {Txs: 10, BlockSize: 0}, {Mode: "fast", Txs: 10, BlockSize: 10}} {
		if c.Validate() == nil {
			t.Errorf("%+v validates", c)
		}
	}
}

// BenchmarkCommitPipeline measures a fresh peer catching up with a chain of
// 20 blocks of 500 transactions, each endorsed by two organisations: block
// verification, validation and LevelDB commit, as `cairn bench committer`
// does. Building the chain is not timed; each iteration replays it into a
// new ledger. Run: go test -run '^$' -bench BenchmarkCommitPipeline ./peer/
func BenchmarkCommitPipeline(b *testing.B) {
	benchChain(b, (*BenchChain).Replay)
}

// BenchmarkCommit measures validate+commit alone, the figure: a
// fresh channel validates (signatures, endorsement policy, MVCC) and
// commits, with fsync, 20 blocks of 500 transactions each endorsed by two
// organisations, handed to it already decoded, as `cairn bench committer
// --mode commit` does. Run:
// go test -run '^$' -bench BenchmarkCommit$ -benchtime=3x ./peer/
func BenchmarkCommit(b *testing.B) {
	benchChain(b, (*BenchChain).Commit)
}

// benchChain builds a 10,000-transaction two-org chain once (untimed) and
// runs it into a fresh ledger per iteration, reporting tx/s and CPU per tx.
func benchChain(b *testing.B, run func(*BenchChain, context.Context) (BenchResult, error)) {
	chain, err := NewBenchChain(context.Background(), BenchConfig{Txs: 10_000, BlockSize: 500, Dir: b.TempDir()})
	if err != nil {
		b.Fatal(err)
	}
	defer chain.Close()
	var txs, secs, cpu float64
	for b.Loop() {
		res, err := run(chain, context.Background())
		if err != nil {
			b.Fatal(err)
		}
		txs += float64(res.Txs)
		secs += res.Seconds
		cpu += res.CPUSeconds
	}
	b.ReportMetric(txs/secs, "tx/s")
	b.ReportMetric(cpu*1e6/txs, "cpu-µs/tx")
}
