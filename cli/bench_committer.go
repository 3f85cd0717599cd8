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
		Short: "Measure how fast a fresh peer validates and commits a chain (catch-up speed)",
		Long: "Builds, untimed, a two-organisation channel whose chaincode needs AND('Org1MSP.peer','Org2MSP.peer')\n" +
			"and a chain of --txs transactions (client signature plus two endorsements each, one distinct key\n" +
			"written per transaction) in blocks of --block-size signed by an orderer identity. It then times a\n" +
			"new peer channel on a fresh LevelDB ledger pulling that chain from an in-process orderer over TLS\n" +
			"through the peer's real path (block verification, validation, commit) and reports tx/s and blocks/s.\n" +
			"The default, 100,000 transactions, is the catch-up of a fresh peer over a 100k-transaction chain.",
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
			fmt.Fprintln(cmd.ErrOrStderr(), "» replaying the chain into a fresh ledger")
			res, err := chain.Replay(ctx)
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			if asJSON {
				return json.NewEncoder(out).Encode(res)
			}
			fmt.Fprintf(out, "%.0f tx/s, %.1f blocks/s: %d transactions in %d blocks committed in %.2fs\n",
				res.TPS, res.BlocksPerSecond(), res.Txs, res.Blocks, res.Seconds)
			return nil
		},
	}
	c.Flags().IntVar(&cfg.Txs, "txs", cfg.Txs, "transactions in the measured chain")
	c.Flags().IntVar(&cfg.BlockSize, "block-size", cfg.BlockSize, "transactions per block")
	c.Flags().BoolVar(&cfg.NoSync, "no-sync", false, "skip fsync on commit (a production peer syncs)")
	c.Flags().StringVar(&cfg.Dir, "dir", "", "folder for crypto material and ledgers (default: a temporary folder, removed)")
	c.Flags().BoolVar(&asJSON, "json", false, "print one JSON object: tps, blocks, txs, seconds")
	return c
}
