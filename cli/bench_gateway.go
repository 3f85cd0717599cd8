package cli

import (
	"encoding/json"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/cairn-ledger/cairn/internal/bench"
	"github.com/cairn-ledger/cairn/internal/localnet"
	"github.com/cairn-ledger/cairn/internal/netconfig"
)

// DefaultBenchBatchTimeout is the BatchTimeout of the channel `cairn bench
// gateway` creates when it starts its own network: short enough that waiting
// for a block is a small part of the latency (the channel default of 250 ms
// alone would make p50 ≥ 125 ms), long enough that blocks carry tens of
// transactions at load.
const DefaultBenchBatchTimeout = 50 * time.Millisecond

func newBenchGatewayCmd() *cobra.Command {
	var (
		networkDir   string
		clients      int
		conns        int
		duration     time.Duration
		warmup       time.Duration
		hotPct       float64
		hotKeys      int
		batchTimeout time.Duration
		maxMessages  uint32
		commitStatus string
		chaincode    string
		asJSON       bool
	)
	c := &cobra.Command{
		Use:   "gateway",
		Short: "Submit transactions through the official fabric-gateway client from many clients and measure committed tx/s and latency",
		Long: "Drives a network end to end through the official fabric-gateway client (v1.10): --clients concurrent\n" +
			"submitters, spread over --conns gateway connections to every organisation's peers, each submitting\n" +
			"CreateAsset of the sample contract with a fresh key (SubmitAsync, then the commit status), one\n" +
			"transaction at a time; --hot-keys PCT makes that share of them UpdateAsset of a few hot assets\n" +
			"(expect MVCC_READ_CONFLICT). The client signs proposal, transaction and status request as any\n" +
			"application does; that CPU is part of the figures. --commit-status events has each client learn\n" +
			"its transaction's code from its connection's filtered block events (one stream per connection,\n" +
			"as Fabric 1.4 SDKs' event hubs did) instead of one CommitStatus call per transaction.\n" +
			"--chaincode shimcheck invokes Put of the plain-shim chaincode shimcheck (one PutState; PutGet for\n" +
			"hot keys) instead; without --network the bench runs it as a chaincode service and deploys it.\n" +
			"Use --network DIR for a running network (network.json); without it, a local network of 3 orderers\n" +
			"and 2 organisations with 1 peer each (chaincode basic, MAJORITY endorsement) is started with\n" +
			"--batch-timeout and stopped afterwards. tps counts VALID commits in the measured window;\n" +
			"committed counts every commit status (any code) of the run; CPU per transaction counts this\n" +
			"process and every orderer, peer and chaincode process of the network.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx, cancel := signalContext()
			defer cancel()
			out := cmd.OutOrStdout()
			progress := cmd.ErrOrStderr()
			if chaincode != "basic" && chaincode != "shimcheck" {
				return fmt.Errorf("--chaincode %q: want basic or shimcheck", chaincode)
			}
			var ccProcs []bench.Process
			dir := networkDir
			if dir == "" {
				net, err := netconfig.Generate(2, 1, 3)
				if err != nil {
					return err
				}
				net.Channel.BatchTimeout = netconfig.Duration(batchTimeout)
				net.Channel.BatchSize.MaxMessageCount = maxMessages
				n, err := startBenchNetwork(ctx, localnet.Options{Network: net}, progress, fmt.Sprintf("3 orderers, 2 orgs × 1 peer, chaincode basic, batch timeout %s", batchTimeout))
				if err != nil {
					return err
				}
				defer n.Close()
				dir = n.Dir
				if chaincode == "shimcheck" {
					cc, err := deployShimcheck(ctx, dir, n.Binary, net, progress)
					if err != nil {
						return err
					}
					defer cc.stop()
					ccProcs = append(ccProcs, bench.Process{Role: "chaincode", PID: cc.cmd.Process.Pid})
				}
			}
			info, err := localnet.LoadInfo(dir)
			if err != nil {
				return err
			}
			cfg := bench.GatewayConfig{
				Info: info, Clients: clients, Conns: conns,
				Duration: duration, Warmup: warmup, HotPct: hotPct, HotKeys: hotKeys,
				CommitStatus: commitStatus, Chaincode: chaincode, Progress: progress,
			}
			if procs, err := localnet.LoadProcesses(dir); err == nil {
				for _, p := range procs {
					switch p.Role {
					case "orderer", "peer", "chaincode":
						cfg.Processes = append(cfg.Processes, bench.Process{Role: p.Role, PID: p.PID})
					}
				}
			}
			cfg.Processes = append(cfg.Processes, ccProcs...)
			res, err := bench.Gateway(ctx, cfg)
			if err != nil {
				return err
			}
			if asJSON {
				return json.NewEncoder(out).Encode(res)
			}
			fmt.Fprintf(out, "%.0f committed VALID tx/s over %.1fs; submit-to-commit p50 %.1f ms, p99 %.1f ms; %d submitted, %d committed (%s), %d errors; %.1f tx/block; %.0f µs CPU per tx (%.2f cores)\n",
				res.TPS, res.Seconds, res.P50ms, res.P99ms, res.Submitted, res.Committed, formatCounts(res.Codes), res.Errors, res.TxPerBlock, res.CPUPerTxUs, res.CPUCores)
			if res.FirstError != "" {
				fmt.Fprintf(out, "first error: %s\n", res.FirstError)
			}
			return nil
		},
	}
	c.Flags().StringVar(&networkDir, "network", "", "folder of a running network (network.json); empty starts a local one for the run")
	c.Flags().IntVar(&clients, "clients", bench.DefaultGatewayClients, "concurrent submitters, each with one transaction in flight")
	c.Flags().IntVar(&conns, "conns", bench.DefaultGatewayConns, "gateway connections the clients share, spread over every organisation's peers")
	c.Flags().DurationVar(&duration, "duration", 10*time.Second, "measured run time")
	c.Flags().DurationVar(&warmup, "warmup", bench.DefaultWarmup, "load before the measured window (not counted in tps, latency or CPU)")
	c.Flags().Float64Var(&hotPct, "hot-keys", 0, "percentage of transactions that update one of a few hot assets instead of creating one")
	c.Flags().IntVar(&hotKeys, "hot-key-count", bench.DefaultHotKeys, "number of hot assets, with --hot-keys")
	c.Flags().DurationVar(&batchTimeout, "batch-timeout", DefaultBenchBatchTimeout, "BatchTimeout of the channel when the bench starts its own network")
	c.Flags().Uint32Var(&maxMessages, "max-message-count", 500, "MaxMessageCount of the channel when the bench starts its own network")
	c.Flags().StringVar(&chaincode, "chaincode", "basic", "chaincode to invoke: basic (CreateAsset) or shimcheck (Put; deployed as a chaincode service when the bench starts its own network)")
	c.Flags().StringVar(&commitStatus, "commit-status", bench.CommitByRPC, "how a client learns its transaction committed: rpc (a CommitStatus call per transaction) or events (its connection's filtered block events)")
	c.Flags().BoolVar(&asJSON, "json", false, "print one JSON object: tps, p50_ms, p99_ms, committed, errors, codes, cpu_us_per_tx, …")
	return c
}

// formatCounts prints a code → count map as "A 3, B 1", largest first.
func formatCounts(m map[string]int64) string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool {
		if m[keys[i]] != m[keys[j]] {
			return m[keys[i]] > m[keys[j]]
		}
		return keys[i] < keys[j]
	})
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = fmt.Sprintf("%s %d", k, m[k])
	}
	return strings.Join(parts, ", ")
}
