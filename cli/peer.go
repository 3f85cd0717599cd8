package cli

import (
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
	cmd.AddCommand(start)
	return cmd
}
