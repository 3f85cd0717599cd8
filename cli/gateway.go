package cli

import (
	"github.com/spf13/cobra"

	"github.com/cairn-ledger/cairn/restgateway"
)

func newGatewayCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "gateway", Short: "Standalone REST gateway (JSON over HTTPS) in front of a peer"}
	var config, level string
	start := &cobra.Command{
		Use:   "start",
		Short: "Run the REST gateway until SIGINT/SIGTERM",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var cfg restgateway.Config
			if err := loadYAML(config, &cfg); err != nil {
				return err
			}
			log, lv, reg, err := nodeDeps("restgateway", "gateway", level)
			if err != nil {
				return err
			}
			g, err := restgateway.New(cfg, restgateway.Deps{Logger: log, Registry: reg, LogLevel: lv, Version: Version})
			if err != nil {
				return err
			}
			ctx, cancel := signalContext()
			defer cancel()
			return g.Run(ctx)
		},
	}
	start.Flags().StringVar(&config, "config", "gateway.yaml", "REST gateway configuration file")
	start.Flags().StringVar(&level, "log-level", "info", "debug, info, warn or error")
	cmd.AddCommand(start)
	return cmd
}
