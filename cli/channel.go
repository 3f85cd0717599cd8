package cli

import (
	"fmt"
	"os"

	"github.com/spf13/cobra"
	"google.golang.org/protobuf/proto"

	"github.com/cairn-ledger/cairn/internal/channelconfig"
	"github.com/cairn-ledger/cairn/internal/netconfig"
)

func newChannelCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "channel", Short: "Channel configuration"}
	var config, channelName, out, cryptoDir string
	gen := &cobra.Command{
		Use:   "genesis",
		Short: "Build a channel's genesis config block from a network description",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			net, err := netconfig.Load(config)
			if err != nil {
				return err
			}
			if channelName != "" {
				net.Channel.Name = channelName
			}
			b, err := channelconfig.Genesis(net, cryptoDir)
			if err != nil {
				return err
			}
			raw, err := proto.Marshal(b)
			if err != nil {
				return fmt.Errorf("marshal genesis block: %w", err)
			}
			if err := os.WriteFile(out, raw, 0o644); err != nil {
				return fmt.Errorf("write genesis block: %w", err)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "genesis block of channel %s written to %s\n", net.Channel.Name, out)
			return nil
		},
	}
	gen.Flags().StringVar(&config, "config", "network.yaml", "network description")
	gen.Flags().StringVar(&channelName, "channel", "", "channel name (default: the description's channel.name)")
	gen.Flags().StringVar(&out, "out", "genesis.block", "output file")
	gen.Flags().StringVar(&cryptoDir, "crypto", "crypto-config", "crypto material folder written by 'cairn crypto generate'")
	cmd.AddCommand(gen)
	return cmd
}
