package cli

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"time"

	"github.com/spf13/cobra"

	"github.com/cairn-ledger/cairn/internal/bench"
	"github.com/cairn-ledger/cairn/internal/localnet"
	"github.com/cairn-ledger/cairn/internal/netconfig"
)

func newBenchEndorseCmd() *cobra.Command {
	var (
		networkDir  string
		peerName    string
		chaincode   string
		clients     int
		conns       int
		duration    time.Duration
		rate        int
		presign     int
		verifyEvery int
		asJSON      bool
	)
	c := &cobra.Command{
		Use:   "endorse",
		Short: "Send signed proposals from many callers to one peer and measure endorsements/s, latency and CPU per proposal",
		Long: "Drives one peer's Endorser.ProcessProposal over TLS with proposals signed by the organisation's\n" +
			"user1, each invoking CreateAsset of the sample contract with a fresh asset ID (one key read, one\n" +
			"written), from --clients concurrent callers over --conns connections. A proposal counts when the\n" +
			"answer has status 200 and an endorsement; one answer in --verify-every is verified in full\n" +
			"(endorser signature, proposal hash, one write). Nothing is submitted for ordering.\n" +
			"Use --network DIR for a running network (network.json, the first peer of the first organisation\n" +
			"unless --peer NAME); without it, a local network of one orderer and one peer with chaincode basic\n" +
			"is started for the run and stopped afterwards. Proposals are signed on every core before the\n" +
			"clock starts. CPU per proposal counts this process and the peer and chaincode processes.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx, cancel := signalContext()
			defer cancel()
			out := cmd.OutOrStdout()
			progress := cmd.ErrOrStderr()
			dir := networkDir
			if dir == "" {
				tmp, err := os.MkdirTemp("", "cairn-bench-")
				if err != nil {
					return err
				}
				defer os.RemoveAll(tmp)
				bin, err := os.Executable()
				if err != nil {
					return err
				}
				fmt.Fprintf(progress, "» starting a local network (1 orderer, 1 peer, chaincode basic) in %s\n", tmp)
				n, err := localnet.Up(ctx, localnet.Options{Dir: filepath.Join(tmp, "net"), Binary: bin, Network: netconfig.Default(), Progress: progress})
				if err != nil {
					return err
				}
				defer n.Stop()
				dir = n.Dir
			}
			info, err := localnet.LoadInfo(dir)
			if err != nil {
				return err
			}
			org, peer, err := benchPeer(info, peerName)
			if err != nil {
				return err
			}
			user, ok := org.Users["user1"]
			if !ok {
				return fmt.Errorf("organisation %s has no user1 in network.json", org.MSPID)
			}
			cfg := bench.EndorseConfig{
				Peer: peer.Address, ServerName: peer.Name, TLSRootCert: peer.TLSRootCert,
				Channel: info.Channel, Chaincode: chaincode,
				MSPID: org.MSPID, CertFile: user.Cert, KeyFile: user.Key,
				Clients: clients, Conns: conns, Duration: duration,
				Rate: rate, Presign: presign, VerifyEvery: verifyEvery, Progress: progress,
			}
			if procs, err := localnet.LoadProcesses(dir); err == nil {
				cfg.Processes = endorseProcesses(procs, peer.Address)
			}
			fmt.Fprintf(progress, "» sending proposals to %s (%s on %s) from %d callers for %s\n", peer.Name, chaincode, info.Channel, clients, duration)
			res, err := bench.Endorse(ctx, cfg)
			if err != nil {
				return err
			}
			if asJSON {
				return json.NewEncoder(out).Encode(res)
			}
			fmt.Fprintf(out, "%.0f proposals/s over %.1fs: %d sent, %d endorsed, %d errors; latency p50 %.1f ms, p99 %.1f ms; %.0f µs CPU per proposal (%.2f cores)\n",
				res.TPS, res.Seconds, res.Sent, res.Endorsed, res.Errors, res.P50ms, res.P99ms, res.CPUPerProposalUs, res.CPUCores)
			if res.FirstError != "" {
				fmt.Fprintf(out, "first error: %s\n", res.FirstError)
			}
			return nil
		},
	}
	c.Flags().StringVar(&networkDir, "network", "", "folder of a running network (network.json); empty starts a local one for the run")
	c.Flags().StringVar(&peerName, "peer", "", "name of the peer to endorse on, as in network.json (default: the first)")
	c.Flags().StringVar(&chaincode, "chaincode", "basic", "chaincode to invoke (the sample contract: CreateAsset)")
	c.Flags().IntVar(&clients, "clients", bench.DefaultEndorseClients, "concurrent callers, each with one proposal in flight")
	c.Flags().IntVar(&conns, "conns", bench.DefaultEndorseConns, "gRPC connections the callers share")
	c.Flags().DurationVar(&duration, "duration", 10*time.Second, "measured run time")
	c.Flags().IntVar(&rate, "rate", bench.DefaultEndorseRate, "expected proposals/s, to size the pre-signed pool when --presign is 0")
	c.Flags().IntVar(&presign, "presign", 0, "proposals to sign before the run (0: rate × duration + 10 %)")
	c.Flags().IntVar(&verifyEvery, "verify-every", bench.DefaultVerifyEvery, "verify one endorsement in this many in full (1: all)")
	c.Flags().BoolVar(&asJSON, "json", false, "print one JSON object: tps, p50_ms, p99_ms, sent, endorsed, errors, cpu_us_per_proposal, …")
	return c
}

// benchPeer finds the peer named name (or the first peer) in network.json.
func benchPeer(info *localnet.Info, name string) (localnet.Organization, localnet.Peer, error) {
	for _, org := range info.Organizations {
		for _, p := range org.Peers {
			if name == "" || p.Name == name {
				return org, p, nil
			}
		}
	}
	if name == "" {
		return localnet.Organization{}, localnet.Peer{}, errors.New("network.json lists no peer")
	}
	return localnet.Organization{}, localnet.Peer{}, fmt.Errorf("network.json lists no peer %s", name)
}

// endorseProcesses are the processes whose CPU an endorsement costs: the peer
// at address and the chaincode processes dialling it.
func endorseProcesses(procs []*localnet.Process, address string) []bench.Process {
	var out []bench.Process
	for _, p := range procs {
		if (p.Role == "peer" && p.Address == address) ||
			(p.Role == "chaincode" && slices.Contains(p.Env, "CORE_PEER_ADDRESS="+address)) {
			out = append(out, bench.Process{Role: p.Role, PID: p.PID})
		}
	}
	return out
}
