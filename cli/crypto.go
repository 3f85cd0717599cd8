package cli

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/cairn-ledger/cairn/internal/cryptogen"
	"github.com/cairn-ledger/cairn/internal/netconfig"
)

func newCryptoCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "crypto", Short: "Generate crypto material"}
	var config, out string
	gen := &cobra.Command{
		Use:   "generate",
		Short: "Write CA, TLS CA and MSP folders for every organisation, node and user (cryptogen layout)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			net, err := netconfig.Load(config)
			if err != nil {
				return err
			}
			if err := cryptogen.Generate(net, out); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "crypto material written to %s\n", out)
			return nil
		},
	}
	gen.Flags().StringVar(&config, "config", "network.yaml", "network description")
	gen.Flags().StringVar(&out, "out", "crypto-config", "output folder")
	cmd.AddCommand(gen)
	return cmd
}
