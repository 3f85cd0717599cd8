package cli

import (
	"fmt"
	"os"
	"time"

	"github.com/spf13/cobra"

	"github.com/cairn-ledger/cairn/internal/localnet"
	"github.com/cairn-ledger/cairn/internal/netconfig"
)

const defaultNetworkDir = ".cairn"

func newNetworkCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "network", Short: "Run a local consortium on 127.0.0.1"}
	cmd.AddCommand(newNetworkUpCmd(), newNetworkDownCmd())
	return cmd
}

func newNetworkUpCmd() *cobra.Command {
	var dir, config string
	var detach bool
	up := &cobra.Command{
		Use:   "up",
		Short: "Start orderers, peers and the sample chaincode; create and join channel mychannel",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			out := cmd.OutOrStdout()
			began := time.Now()
			bin, err := os.Executable()
			if err != nil {
				return fmt.Errorf("locate the cairn binary: %w", err)
			}
			net := netconfig.Default()
			if config != "" {
				if net, err = netconfig.Load(config); err != nil {
					return err
				}
			}
			ctx, cancel := signalContext()
			defer cancel()
			n, err := localnet.Up(ctx, localnet.Options{Dir: dir, Binary: bin, Network: net, Progress: out})
			if err != nil {
				return err
			}
			fmt.Fprintf(out, "✔ network ready in %.1fs\n%s", time.Since(began).Seconds(), n.Describe())
			if detach {
				fmt.Fprintf(out, "logs in %s/logs; stop it with: cairn network down --dir %s\n", n.Dir, dir)
				return nil
			}
			fmt.Fprintf(out, "logs in %s/logs; press Ctrl-C to stop\n", n.Dir)
			<-ctx.Done()
			fmt.Fprintln(out, "» stopping the network")
			if err := n.Stop(); err != nil {
				return err
			}
			fmt.Fprintln(out, "✔ stopped")
			return nil
		},
	}
	up.Flags().StringVar(&dir, "dir", defaultNetworkDir, "network folder (crypto material, ledgers, logs, network.json)")
	up.Flags().StringVar(&config, "config", "", "network description (default: the built-in one-org network)")
	up.Flags().BoolVar(&detach, "detach", false, "return once the network is ready and leave it running")
	return up
}

func newNetworkDownCmd() *cobra.Command {
	var dir string
	down := &cobra.Command{
		Use:   "down",
		Short: "Stop a network started with 'network up --detach'",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			n, err := localnet.Down(dir)
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "stopped %d processes\n", n)
			return nil
		},
	}
	down.Flags().StringVar(&dir, "dir", defaultNetworkDir, "network folder")
	return down
}
