package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"github.com/spf13/cobra"

	"github.com/cairn-ledger/cairn/internal/bench"
	"github.com/cairn-ledger/cairn/internal/localnet"
	"github.com/cairn-ledger/cairn/internal/netconfig"
)

func newBenchCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "bench", Short: "Load generators that measure a network"}
	cmd.AddCommand(newBenchOrdererCmd())
	cmd.AddCommand(newBenchCommitterCmd())
	cmd.AddCommand(newBenchEndorseCmd())
	cmd.AddCommand(newBenchGatewayCmd())
	return cmd
}

func newBenchOrdererCmd() *cobra.Command {
	var (
		networkDir   string
		orderers     int
		clients      int
		size         int
		duration     time.Duration
		batchTimeout time.Duration
		maxMessages  uint32
		window       int
		rate         int
		presign      int
		asJSON       bool
	)
	c := &cobra.Command{
		Use:   "orderer",
		Short: "Broadcast signed envelopes from many streams and measure ordering throughput and latency",
		Long: "Drives an ordering service with envelopes signed by a real client identity over many concurrent\n" +
			"Broadcast streams spread over all orderers, and watches Deliver to measure envelopes/s and\n" +
			"broadcast-to-delivery latency. Use --network DIR for a running network (network.json) or\n" +
			"--orderers N to start a local cluster of N orderers (no peers) for the run and stop it afterwards.\n" +
			"Envelopes are signed on every core before the clock starts (--presign, or sized from --rate),\n" +
			"so the measurement is of the orderers, not of client-side signing.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if (networkDir == "") == (orderers == 0) {
				return errors.New("give exactly one of --network DIR or --orderers N")
			}
			ctx, cancel := signalContext()
			defer cancel()
			out := cmd.OutOrStdout()
			progress := cmd.ErrOrStderr()
			dir := networkDir
			if orderers > 0 {
				net := netconfig.Default()
				net.OrdererOrgs[0].Orderers = nil
				for i := 0; i < orderers; i++ {
					net.OrdererOrgs[0].Orderers = append(net.OrdererOrgs[0].Orderers, netconfig.Node{Name: fmt.Sprintf("orderer%d", i), Host: "127.0.0.1"})
				}
				net.Channel.BatchTimeout = netconfig.Duration(batchTimeout)
				net.Channel.BatchSize.MaxMessageCount = maxMessages
				n, err := startBenchNetwork(ctx, localnet.Options{Network: net, OrderersOnly: true}, progress, fmt.Sprintf("%d orderers", orderers))
				if err != nil {
					return err
				}
				defer n.Close()
				dir = n.Dir
			}
			info, err := localnet.LoadInfo(dir)
			if err != nil {
				return err
			}
			if len(info.Organizations) == 0 || len(info.Orderers) == 0 {
				return errors.New("network.json lists no organisation or orderer")
			}
			org := info.Organizations[0]
			user, ok := org.Users["user1"]
			if !ok {
				return fmt.Errorf("organisation %s has no user1 in network.json", org.MSPID)
			}
			cfg := bench.OrdererConfig{
				TLSRootCert: info.Orderers[0].TLSRootCert,
				Channel:     info.Channel,
				MSPID:       org.MSPID, CertFile: user.Cert, KeyFile: user.Key,
				Clients: clients, Size: size, Duration: duration,
				Window: window, Rate: rate, Presign: presign, Progress: progress,
			}
			for _, o := range info.Orderers {
				cfg.Orderers = append(cfg.Orderers, o.Address)
			}
			if procs, err := localnet.LoadProcesses(dir); err == nil {
				for _, p := range procs {
					if p.Role == "orderer" {
						cfg.PIDs = append(cfg.PIDs, p.PID)
					}
				}
			}
			fmt.Fprintf(progress, "» broadcasting %d-byte envelopes from %d streams to %d orderers for %s\n", size, clients, len(cfg.Orderers), duration)
			res, err := bench.Orderer(ctx, cfg)
			if err != nil {
				return err
			}
			if asJSON {
				return json.NewEncoder(out).Encode(res)
			}
			fmt.Fprintf(out, "%.0f envelopes/s over %.1fs: %d sent, %d delivered in %d blocks, %d errors; latency p50 %.1f ms, p99 %.1f ms; %.0f µs CPU per envelope\n",
				res.TPS, res.Seconds, res.Sent, res.Delivered, res.Blocks, res.Errors, res.P50ms, res.P99ms, res.CPUPerEnvelopeUs)
			return nil
		},
	}
	c.Flags().StringVar(&networkDir, "network", "", "folder of a running network (network.json)")
	c.Flags().IntVar(&orderers, "orderers", 0, "start a local network with this many orderers for the run")
	c.Flags().IntVar(&clients, "clients", 48, "concurrent Broadcast streams (a follower's stream waits a forward round trip per envelope, so many streams are needed)")
	c.Flags().IntVar(&size, "size", 1024, "envelope payload size in bytes")
	c.Flags().DurationVar(&duration, "duration", 10*time.Second, "measured run time")
	c.Flags().DurationVar(&batchTimeout, "batch-timeout", 2*time.Millisecond, "BatchTimeout of the channel, with --orderers")
	c.Flags().Uint32Var(&maxMessages, "max-message-count", 500, "MaxMessageCount of the channel, with --orderers")
	c.Flags().IntVar(&window, "window", bench.DefaultWindow, "envelopes in flight per stream")
	c.Flags().IntVar(&rate, "rate", bench.DefaultRate, "expected envelopes/s, to size the pre-signed pool when --presign is 0")
	c.Flags().IntVar(&presign, "presign", 0, "envelopes to sign before the run (0: rate × duration + 10 %)")
	c.Flags().BoolVar(&asJSON, "json", false, "print one JSON object: tps, p50_ms, p99_ms, sent, delivered, errors")
	return c
}

// benchNetwork is a local network a benchmark started for its run.
type benchNetwork struct {
	*localnet.Network
	Binary string // the cairn binary the network runs
	tmp    string
}

// startBenchNetwork starts a network in a temporary folder, as `network up`
// would, for a benchmark run: opts says which (Network, OrderersOnly); Dir,
// Binary and Progress are filled in. describe says what it is in the progress
// line. Close stops it and removes the folder.
func startBenchNetwork(ctx context.Context, opts localnet.Options, progress io.Writer, describe string) (*benchNetwork, error) {
	bin, err := os.Executable()
	if err != nil {
		return nil, err
	}
	tmp, err := os.MkdirTemp("", "cairn-bench-")
	if err != nil {
		return nil, err
	}
	fmt.Fprintf(progress, "» starting a local network (%s) in %s\n", describe, tmp)
	opts.Dir, opts.Binary, opts.Progress = filepath.Join(tmp, "net"), bin, progress
	n, err := localnet.Up(ctx, opts)
	if err != nil {
		os.RemoveAll(tmp)
		return nil, err
	}
	return &benchNetwork{Network: n, Binary: bin, tmp: tmp}, nil
}

func (b *benchNetwork) Close() {
	_ = b.Stop()
	os.RemoveAll(b.tmp)
}
