package cli

import (
	"github.com/spf13/cobra"

	"github.com/cairn-ledger/cairn/orderer"
)

func newOrdererCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "orderer", Short: "Ordering service node"}
	var config, level string
	start := &cobra.Command{
		Use:   "start",
		Short: "Run an orderer until SIGINT/SIGTERM",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var cfg orderer.Config
			if err := loadYAML(config, &cfg); err != nil {
				return err
			}
			log, _, reg, err := nodeDeps(cfg.MSPID, "orderer", level)
			if err != nil {
				return err
			}
			cfg.Logger, cfg.Registry = log, reg
			o, err := orderer.New(cfg)
			if err != nil {
				return err
			}
			ctx, cancel := signalContext()
			defer cancel()
			return o.Run(ctx)
		},
	}
	start.Flags().StringVar(&config, "config", "orderer.yaml", "orderer configuration file")
	start.Flags().StringVar(&level, "log-level", "info", "debug, info, warn or error")
	cmd.AddCommand(start)
	return cmd
}
