package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/cairn-ledger/cairn/internal/bench"
	"github.com/cairn-ledger/cairn/internal/ccdeploy"
	"github.com/cairn-ledger/cairn/internal/cryptogen"
	"github.com/cairn-ledger/cairn/internal/localnet"
	"github.com/cairn-ledger/cairn/internal/netconfig"
)

func newBenchEndorseCmd() *cobra.Command {
	var (
		networkDir    string
		peerName      string
		chaincode     string
		function      string
		chaincodePIDs []int
		clients       int
		conns         int
		duration      time.Duration
		rate          int
		presign       int
		verifyEvery   int
		asJSON        bool
	)
	c := &cobra.Command{
		Use:   "endorse",
		Short: "Send signed proposals from many callers to one peer and measure endorsements/s, latency and CPU per proposal",
		Long: "Drives one peer's Endorser.ProcessProposal over TLS with proposals signed by the organisation's\n" +
			"user1, each writing one fresh key, from --clients concurrent callers over --conns connections:\n" +
			"with --chaincode shimcheck (default) Put of the plain-shim chaincode shimcheck (one PutState and\n" +
			"nothing else); with --chaincode basic CreateAsset of the sample contract (one key read, one written,\n" +
			"one event, plus the contract API's argument checks). A proposal counts when the answer has status\n" +
			"200 and an endorsement; one answer in --verify-every is verified in full (endorser signature,\n" +
			"proposal hash, one write). Nothing is submitted for ordering.\n" +
			"Use --network DIR for a running network (network.json, the first peer of the first organisation\n" +
			"unless --peer NAME), where the chaincode must already be deployed; without it, a local network of\n" +
			"one orderer and one peer with chaincode basic is started for the run and stopped afterwards, and\n" +
			"for --chaincode shimcheck shimcheck is run as a chaincode service (its own process, mutual TLS)\n" +
			"and deployed on it. Proposals are signed on every core before the clock starts. CPU per proposal\n" +
			"counts this process and the peer and chaincode processes (--chaincode-pid adds one, e.g. a\n" +
			"chaincode service of a running network).",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx, cancel := signalContext()
			defer cancel()
			out := cmd.OutOrStdout()
			progress := cmd.ErrOrStderr()
			dir := networkDir
			if dir != "" && !cmd.Flags().Changed("chaincode") {
				// A running network has the sample deployed (network up), not
				// shimcheck: use what is there unless told otherwise.
				chaincode = "basic"
			}
			var ccProcs []bench.Process
			for _, pid := range chaincodePIDs {
				ccProcs = append(ccProcs, bench.Process{Role: "chaincode", PID: pid})
			}
			if dir == "" {
				nc := netconfig.Default()
				n, err := startBenchNetwork(ctx, localnet.Options{Network: nc}, progress, "1 orderer, 1 peer, chaincode basic")
				if err != nil {
					return err
				}
				defer n.Close()
				dir = n.Dir
				if chaincode == "shimcheck" {
					cc, err := deployShimcheck(ctx, dir, n.Binary, nc, progress)
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
				Channel: info.Channel, Chaincode: chaincode, Function: function,
				MSPID: org.MSPID, CertFile: user.Cert, KeyFile: user.Key,
				Clients: clients, Conns: conns, Duration: duration,
				Rate: rate, Presign: presign, VerifyEvery: verifyEvery, Progress: progress,
			}
			if procs, err := localnet.LoadProcesses(dir); err == nil {
				cfg.Processes = endorseProcesses(procs, peer.Address)
			}
			cfg.Processes = append(cfg.Processes, ccProcs...)
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
	c.Flags().StringVar(&chaincode, "chaincode", "shimcheck", "chaincode to invoke: shimcheck (Put) or basic (CreateAsset), or one with either function (with --network the default is basic, which network up deploys)")
	c.Flags().StringVar(&function, "function", "", "function to invoke with a fresh key: Put or CreateAsset (default: Put for shimcheck, else CreateAsset)")
	c.Flags().IntSliceVar(&chaincodePIDs, "chaincode-pid", nil, "PID of a chaincode process on this machine whose CPU counts too (repeatable)")
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

// networkRuntimeEnv is the GOMAXPROCS setting the local network in dir gave
// its peers, if any, so that a chaincode service the benchmark adds shares the
// machine as the network's own chaincode processes do.
func networkRuntimeEnv(dir string) []string {
	procs, err := localnet.LoadProcesses(dir)
	if err != nil {
		return nil
	}
	for _, p := range procs {
		if p.Role != "peer" {
			continue
		}
		for _, kv := range p.Env {
			if strings.HasPrefix(kv, "GOMAXPROCS=") {
				return []string{kv}
			}
		}
	}
	return nil
}

// ccaasProcess is a chaincode service the benchmark started.
type ccaasProcess struct {
	cmd    *exec.Cmd
	exited chan struct{}
}

// stop ends the chaincode service with SIGTERM (SIGKILL after 5 s) and
// waits for it.
func (p *ccaasProcess) stop() {
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.exited:
	case <-time.After(5 * time.Second):
		_ = p.cmd.Process.Kill()
		<-p.exited
	}
}

// deployShimcheck runs shimcheck as a chaincode service (`cairn chaincode
// run-sample shimcheck --ccaas`) for the first peer of the network nc started
// in dir, and deploys it as chaincode shimcheck with internal/ccdeploy (the
// flow of `cairn chaincode deploy --ccaas`). The peer reaches it over mutual
// TLS, as it reaches basic (which dials the peer): the service presents the
// peer's own TLS certificate (it names 127.0.0.1) and requires a client
// certificate of the organisation's TLS CA, which the package gives the peer.
func deployShimcheck(ctx context.Context, dir, bin string, nc *netconfig.Network, progress io.Writer) (_ *ccaasProcess, err error) {
	if len(nc.PeerOrgs) == 0 || len(nc.PeerOrgs[0].Peers) == 0 {
		return nil, errors.New("the network has no peer")
	}
	org, nd := nc.PeerOrgs[0], nc.PeerOrgs[0].Peers[0]
	full := nd.FullName(org.Domain)
	// The crypto folder `cairn network up` writes (see `cairn network`).
	l := cryptogen.Layout{Root: filepath.Join(dir, "crypto")}
	tlsCA, cert, key := l.TLSCACertPath(true, org.Domain), l.NodeTLSCertPath(true, org.Domain, full), l.NodeTLSKeyPath(true, org.Domain, full)
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	addr := lis.Addr().String()
	lis.Close()
	pkg, err := ccdeploy.PackageCCaaS("shimcheck_1.0", ccdeploy.CCaaSOptions{
		Address: addr, DialTimeout: "10s", RootCertFile: tlsCA, ClientCertFile: cert, ClientKeyFile: key,
	})
	if err != nil {
		return nil, err
	}
	id, err := ccdeploy.PackageID(pkg)
	if err != nil {
		return nil, err
	}
	logPath := filepath.Join(dir, "logs", "shimcheck.ccaas.log")
	logf, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	defer logf.Close()
	fmt.Fprintf(progress, "» running chaincode shimcheck as a service on %s (log %s)\n", addr, logPath)
	cmd := exec.Command(bin, "chaincode", "run-sample", "shimcheck", "--ccaas", addr, "--ccaas-id", id)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.Env = append(os.Environ(), "CHAINCODE_TLS_DISABLED=false",
		"CHAINCODE_TLS_KEY="+key, "CHAINCODE_TLS_CERT="+cert, "CHAINCODE_CLIENT_CA_CERT="+tlsCA)
	cmd.Env = append(cmd.Env, networkRuntimeEnv(dir)...)
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start chaincode shimcheck: %w", err)
	}
	p := &ccaasProcess{cmd: cmd, exited: make(chan struct{})}
	go func() {
		_ = cmd.Wait()
		close(p.exited)
	}()
	defer func() {
		if err != nil {
			p.stop()
		}
	}()
	t := ccTarget{network: dir}
	d, n, err := t.deployer(progress)
	if err != nil {
		return nil, err
	}
	defer n.Close()
	dctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	if _, err := d.Deploy(dctx, ccdeploy.Request{Name: "shimcheck", Version: "1.0", Package: pkg}); err != nil {
		return nil, fmt.Errorf("deploy chaincode shimcheck: %w", err)
	}
	select {
	case <-p.exited:
		return nil, fmt.Errorf("chaincode shimcheck exited (%v); see %s", cmd.ProcessState, logPath)
	default:
	}
	return p, nil
}
