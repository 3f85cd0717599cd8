package cli

import (
	"context"
	"encoding/json"
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
	cmd.AddCommand(newNetworkUpCmd(), newNetworkDownCmd(), newNetworkStatusCmd(), newNetworkStopCmd(), newNetworkStartCmd())
	return cmd
}

func newNetworkUpCmd() *cobra.Command {
	var dir, config string
	var detach bool
	var orgs, peersPerOrg, orderers int
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
			var net *netconfig.Network
			if config != "" {
				for _, f := range []string{"orgs", "peers-per-org", "orderers"} {
					if cmd.Flags().Changed(f) {
						return fmt.Errorf("--%s cannot be combined with --config: the network description sets the size", f)
					}
				}
				if net, err = netconfig.Load(config); err != nil {
					return err
				}
			} else if net, err = netconfig.Generate(orgs, peersPerOrg, orderers); err != nil {
				return err
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
	up.Flags().StringVar(&config, "config", "", "network description (default: the built-in consortium of 3 orderers and 2 organisations with 2 peers each)")
	up.Flags().BoolVar(&detach, "detach", false, "return once the network is ready and leave it running")
	up.Flags().IntVar(&orgs, "orgs", netconfig.DefaultOrgs, fmt.Sprintf("application organisations Org1MSP…OrgNMSP (1..%d)", netconfig.MaxOrgs))
	up.Flags().IntVar(&peersPerOrg, "peers-per-org", netconfig.DefaultPeersPerOrg, fmt.Sprintf("peers in each organisation (1..%d)", netconfig.MaxPeersPerOrg))
	up.Flags().IntVar(&orderers, "orderers", netconfig.DefaultOrderers, fmt.Sprintf("orderers of OrdererMSP, all raft consenters of the channel (1..%d)", netconfig.MaxOrderers))
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

func newNetworkStatusCmd() *cobra.Command {
	var dir string
	var asJSON bool
	status := &cobra.Command{
		Use:   "status",
		Short: "Show every node of a network started with 'network up --detach': health, block heights, raft leader",
		Long: `Show every node of the network recorded in --dir: role, organisation, address,
PID, health (its operations /healthz answers 200), block height per channel and,
for orderers, raft leadership and term on the network's channel.

--json prints {"nodes": [{"name", "role", "org", "address", "pid", "healthy",
"height", "leader", "term"}]}: role is orderer, peer, ca, chaincode or gateway;
height maps channel to block height, e.g. {"mychannel": 5} ({} when unknown);
leader and term are false and 0 except on orderers.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx, cancel := signalContext()
			defer cancel()
			rep, err := localnet.Status(ctx, dir)
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			if asJSON {
				enc := json.NewEncoder(out)
				enc.SetIndent("", "  ")
				return enc.Encode(rep)
			}
			return rep.WriteTable(out)
		},
	}
	status.Flags().StringVar(&dir, "dir", defaultNetworkDir, "network folder")
	status.Flags().BoolVar(&asJSON, "json", false, "print JSON instead of a table")
	return status
}

func newNetworkStopCmd() *cobra.Command {
	var dir string
	var kill bool
	stop := &cobra.Command{
		Use:   "stop NODE",
		Short: "Stop one node of a network started with 'network up --detach' (restart it with 'network start')",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := localnet.StopNode(dir, args[0], kill); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "stopped %s\n", args[0])
			return nil
		},
	}
	stop.Flags().StringVar(&dir, "dir", defaultNetworkDir, "network folder")
	stop.Flags().BoolVar(&kill, "kill", false, "send SIGKILL instead of SIGTERM (a crash)")
	return stop
}

func newNetworkStartCmd() *cobra.Command {
	var dir string
	start := &cobra.Command{
		Use:   "start NODE",
		Short: "Start again a node stopped with 'network stop', with its recorded arguments",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			bin, err := os.Executable()
			if err != nil {
				return fmt.Errorf("locate the cairn binary: %w", err)
			}
			ctx, cancel := signalContext()
			defer cancel()
			ctx, cancelWait := context.WithTimeout(ctx, time.Minute)
			defer cancelWait()
			started, err := localnet.StartNode(ctx, dir, bin, args[0])
			for _, name := range started {
				fmt.Fprintf(cmd.OutOrStdout(), "started %s\n", name)
			}
			return err
		},
	}
	start.Flags().StringVar(&dir, "dir", defaultNetworkDir, "network folder")
	return start
}
