package cli

import (
	"encoding/json"
	"fmt"

	"github.com/spf13/cobra"

	"github.com/cairn-ledger/cairn/peer"
)

func newPeerCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "peer", Short: "Peer node"}
	var config, level string
	start := &cobra.Command{
		Use:   "start",
		Short: "Run a peer until SIGINT/SIGTERM",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var cfg peer.Config
			if err := loadYAML(config, &cfg); err != nil {
				return err
			}
			log, lv, reg, err := nodeDeps(cfg.Name, "peer", level)
			if err != nil {
				return err
			}
			p, err := peer.New(cfg, peer.Deps{Logger: log, Registry: reg, LogLevel: lv, Version: Version})
			if err != nil {
				return err
			}
			ctx, cancel := signalContext()
			defer cancel()
			return p.Run(ctx)
		},
	}
	start.Flags().StringVar(&config, "config", "peer.yaml", "peer configuration file")
	start.Flags().StringVar(&level, "log-level", "info", "debug, info, warn or error")
	cmd.AddCommand(start, newPeerLedgerCmd())
	return cmd
}

func newPeerLedgerCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "ledger", Short: "Inspect a stopped peer's ledgers"}
	var config string
	var asJSON bool
	verify := &cobra.Command{
		Use:   "verify",
		Short: "Recompute block hashes, the hash chain and orderer signatures, and a deterministic state digest",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var cfg peer.Config
			if err := loadYAML(config, &cfg); err != nil {
				return err
			}
			reports, err := peer.VerifyLedgers(cfg.DataDir)
			out := cmd.OutOrStdout()
			if asJSON {
				enc := json.NewEncoder(out)
				enc.SetIndent("", "  ")
				if encErr := enc.Encode(map[string]any{"channels": reports}); encErr != nil {
					return encErr
				}
			} else {
				for _, r := range reports {
					fmt.Fprintf(out, "%s: %d blocks, %d transactions (%d valid), last block %s, state %s (%d keys): OK\n",
						r.Channel, r.Height, r.Transactions, r.Valid, r.LastBlockHash, r.StateDigest, r.StateKeys)
				}
			}
			return err
		},
	}
	verify.Flags().StringVar(&config, "config", "peer.yaml", "peer configuration file")
	verify.Flags().BoolVar(&asJSON, "json", false, "print one JSON object")
	cmd.AddCommand(verify)
	return cmd
}
