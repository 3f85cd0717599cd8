package cli

import (
	"encoding/json"
	"fmt"

	"github.com/spf13/cobra"

	"github.com/cairn-ledger/cairn/peer"
)

func newBenchCommitterCmd() *cobra.Command {
	cfg := peer.DefaultBenchConfig()
	var asJSON bool
	c := &cobra.Command{
		Use:   "committer",
		Short: "Measure how fast a peer validates and commits blocks (--mode commit) or catches up with a chain (--mode catchup)",
		Long: "Builds, untimed, a two-organisation channel whose chaincode needs AND('Org1MSP.peer','Org2MSP.peer')\n" +
			"and a chain of --txs transactions (client signature plus two endorsements each, one distinct key\n" +
			"written per transaction) in blocks of --block-size signed by an orderer identity. It then times a\n" +
			"new peer channel on a fresh LevelDB ledger and reports tx/s and blocks/s. --mode commit hands it\n" +
			"the blocks directly: validation (signatures, endorsement policy, MVCC) and commit only. --mode\n" +
			"catchup has it pull the chain from an in-process orderer over TLS through the peer's real path\n" +
			"(block verification, validation, commit). The default, catch-up over 100,000 transactions, is a\n" +
			"fresh peer joining a 100k-transaction chain.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := cfg.Validate(); err != nil {
				return err
			}
			ctx, cancel := signalContext()
			defer cancel()
			fmt.Fprintf(cmd.ErrOrStderr(), "» building %d transactions in blocks of %d (untimed)\n", cfg.Txs, cfg.BlockSize)
			chain, err := peer.NewBenchChain(ctx, cfg)
			if err != nil {
				return err
			}
			defer chain.Close()
			var res peer.BenchResult
			if cfg.Mode == peer.BenchModeCommit {
				fmt.Fprintln(cmd.ErrOrStderr(), "» validating and committing the blocks into a fresh ledger")
				res, err = chain.Commit(ctx)
			} else {
				fmt.Fprintln(cmd.ErrOrStderr(), "» replaying the chain from the orderer into a fresh ledger")
				res, err = chain.Replay(ctx)
			}
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			if asJSON {
				return json.NewEncoder(out).Encode(res)
			}
			fmt.Fprintf(out, "%s: %.0f tx/s, %.1f blocks/s: %d transactions in %d blocks committed in %.2fs (%.0f CPU µs per tx)\n",
				res.Mode, res.TPS, res.BlocksPerSecond(), res.Txs, res.Blocks, res.Seconds, res.CPUMicrosPerTx())
			return nil
		},
	}
	c.Flags().StringVar(&cfg.Mode, "mode", cfg.Mode, "commit (validate+commit of handed blocks) or catchup (pull from an orderer, verify, validate, commit)")
	c.Flags().IntVar(&cfg.Txs, "txs", cfg.Txs, "transactions in the measured chain")
	c.Flags().IntVar(&cfg.BlockSize, "block-size", cfg.BlockSize, "transactions per block")
	c.Flags().BoolVar(&cfg.NoSync, "no-sync", false, "skip fsync on commit (a production peer syncs)")
	c.Flags().StringVar(&cfg.Dir, "dir", "", "folder for crypto material and ledgers (default: a temporary folder, removed)")
	c.Flags().BoolVar(&asJSON, "json", false, "print one JSON object: mode, tps, blocks, txs, seconds, cpu_seconds")
	return c
}
