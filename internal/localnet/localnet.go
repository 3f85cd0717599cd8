// Package localnet owns the local consortium that `cairn network up` runs: it
// writes the network description, crypto material, genesis block and node
// configurations into one folder, starts every orderer, peer and chaincode as a
// process of the cairn binary on 127.0.0.1, creates and joins the channel,
// deploys the sample chaincode through _lifecycle, and writes network.json.
// Down stops the processes recorded in the folder; Status inspects them
// (health, heights, raft leadership) and StopNode and StartNode stop and
// restart one of them. Tests drive networks with the same code.
//
// Concurrency: a Network is used by one goroutine. The folder functions
// (Down, Status, StopNode, StartNode) read and rewrite processes.json without
// locking, so only one command should change a folder at a time.
package localnet

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"time"

	"google.golang.org/protobuf/proto"
	"gopkg.in/yaml.v3"

	"github.com/cairn-ledger/cairn/internal/channelconfig"
	"github.com/cairn-ledger/cairn/internal/cryptogen"
	"github.com/cairn-ledger/cairn/internal/freeport"
	"github.com/cairn-ledger/cairn/internal/netconfig"
)

// Options configure Up.
type Options struct {
	// Dir is the network folder; it is created and must not hold a running network.
	Dir string
	// Binary is the cairn executable to run nodes with.
	Binary string
	// Network describes the consortium; nil means netconfig.Default().
	Network *netconfig.Network
	// Progress receives human-readable progress lines; nil discards them.
	Progress io.Writer
	// Timeout bounds the whole bring-up (default 2 minutes).
	Timeout time.Duration
	// NoSync makes nodes skip fsync (faster tests; never for real data).
	NoSync bool
	// OrderersOnly starts only the orderers and creates the channel on them:
	// no peers, peer joins or chaincode (ordering benchmarks). network.json
	// still lists the orderers and the organisations' users.
	OrderersOnly bool
}

// Network is a running local network started by Up.
type Network struct {
	Dir   string
	Info  *Info
	net   *netconfig.Network
	procs []*Process
	opts  Options
	// goMaxProcs is the GOMAXPROCS every node and chaincode process gets
	// (0: Go's default); see processorsPerNode.
	goMaxProcs int
}

// ChaincodeLabel is the label of the sample chaincode package deployed as "basic".
const ChaincodeLabel = "basic_1.0"

// Up brings a network up and returns once the sample chaincode answers. On
// failure it stops whatever it started.
func Up(ctx context.Context, opts Options) (_ *Network, err error) {
	if opts.Network == nil {
		opts.Network = netconfig.Consortium()
	}
	if opts.Progress == nil {
		opts.Progress = io.Discard
	}
	if opts.Timeout == 0 {
		opts.Timeout = 2 * time.Minute
	}
	if opts.Binary == "" {
		return nil, errors.New("localnet: no cairn binary given")
	}
	dir, err := filepath.Abs(opts.Dir)
	if err != nil {
		return nil, err
	}
	if s, err := loadState(dir); err == nil {
		for _, p := range s.Processes {
			if alive(p.PID) {
				return nil, fmt.Errorf("a network is already running in %s (process %s, pid %d): run 'cairn network down --dir %s' first", dir, p.Name, p.PID, opts.Dir)
			}
		}
	}
	// A fresh folder each time: old ledgers would not match new crypto material.
	for _, sub := range []string{"crypto", "nodes", "logs", "artifacts", "chaincode", StateFile, InfoFile, "network.yaml"} {
		if err := os.RemoveAll(filepath.Join(dir, sub)); err != nil {
			return nil, fmt.Errorf("clean %s: %w", dir, err)
		}
	}
	for _, sub := range []string{"nodes", "logs", "artifacts", "chaincode"} {
		if err := os.MkdirAll(filepath.Join(dir, sub), 0o755); err != nil {
			return nil, err
		}
	}
	ctx, cancel := context.WithTimeout(ctx, opts.Timeout)
	defer cancel()

	n := &Network{Dir: dir, net: opts.Network, opts: opts}
	if _, set := os.LookupEnv("GOMAXPROCS"); !set {
		n.goMaxProcs = processorsPerNode(n.processCount(), runtime.NumCPU())
	}
	defer func() {
		if err != nil {
			n.Stop()
		}
	}()
	say := func(format string, args ...any) { fmt.Fprintf(opts.Progress, format+"\n", args...) }

	if err := n.assignPorts(); err != nil {
		return nil, err
	}
	rawNet, err := yaml.Marshal(n.net)
	if err != nil {
		return nil, err
	}
	if err := os.WriteFile(filepath.Join(dir, "network.yaml"), rawNet, 0o644); err != nil {
		return nil, err
	}
	say("» generating crypto material")
	if err := cryptogen.Generate(n.net, n.cryptoDir()); err != nil {
		return nil, err
	}
	say("» building genesis block of channel %s", n.net.Channel.Name)
	genesis, err := channelconfig.Genesis(n.net, n.cryptoDir())
	if err != nil {
		return nil, err
	}
	genesisBytes, err := proto.Marshal(genesis)
	if err != nil {
		return nil, err
	}
	genesisPath := filepath.Join(dir, "artifacts", n.net.Channel.Name+".block")
	if err := os.WriteFile(genesisPath, genesisBytes, 0o644); err != nil {
		return nil, err
	}

	say("» starting orderers and peers")
	if err := n.startNodes(ctx); err != nil {
		return nil, err
	}
	say("» creating channel %s on the orderers", n.net.Channel.Name)
	if err := n.joinOrderers(ctx, genesisBytes); err != nil {
		return nil, err
	}
	say("» waiting for a raft leader of channel %s", n.net.Channel.Name)
	if err := n.waitRaftLeader(ctx); err != nil {
		return nil, err
	}
	if opts.OrderersOnly {
		n.Info = n.buildInfo()
		if err := writeJSON(filepath.Join(dir, InfoFile), n.Info); err != nil {
			return nil, err
		}
		return n, nil
	}
	say("» joining peers to channel %s", n.net.Channel.Name)
	if err := n.joinPeers(ctx, genesisBytes); err != nil {
		return nil, err
	}
	n.Info = n.buildInfo()
	if err := writeJSON(filepath.Join(dir, InfoFile), n.Info); err != nil {
		return nil, err
	}
	say("» deploying chaincode basic")
	if err := n.deployBasic(ctx); err != nil {
		return nil, err
	}
	n.Info.Chaincodes = []string{"basic"}
	if err := writeJSON(filepath.Join(dir, InfoFile), n.Info); err != nil {
		return nil, err
	}
	return n, nil
}

func (n *Network) cryptoDir() string { return filepath.Join(n.Dir, "crypto") }

func (n *Network) layout() cryptogen.Layout { return cryptogen.Layout{Root: n.cryptoDir()} }

// assignPorts gives every node port left at 0 a free one.
func (n *Network) assignPorts() error {
	taken := map[int]bool{}
	pick := func(p *int, host string) error {
		if *p != 0 {
			return nil
		}
		port, err := freeport.Pick(host, taken)
		if err != nil {
			return fmt.Errorf("find a free port: %w", err)
		}
		*p = port
		return nil
	}
	for i := range n.net.OrdererOrgs {
		for j := range n.net.OrdererOrgs[i].Orderers {
			nd := &n.net.OrdererOrgs[i].Orderers[j]
			for _, p := range []*int{&nd.Port, &nd.AdminPort, &nd.OperationsPort} {
				if err := pick(p, nd.Host); err != nil {
					return err
				}
			}
		}
	}
	for i := range n.net.PeerOrgs {
		for j := range n.net.PeerOrgs[i].Peers {
			nd := &n.net.PeerOrgs[i].Peers[j]
			for _, p := range []*int{&nd.Port, &nd.OperationsPort} {
				if err := pick(p, nd.Host); err != nil {
					return err
				}
			}
		}
	}
	return nil
}

func (n *Network) saveState() error {
	return writeJSON(filepath.Join(n.Dir, StateFile), state{Processes: n.procs})
}

// startNodes writes each node's configuration and starts it.
func (n *Network) startNodes(ctx context.Context) error {
	l := n.layout()
	for _, org := range n.net.OrdererOrgs {
		for _, nd := range org.Orderers {
			full := nd.FullName(org.Domain)
			nodeDir := filepath.Join(n.Dir, "nodes", full)
			cfg := map[string]any{
				"listenAddress":           nd.Address(),
				"adminListenAddress":      fmt.Sprintf("%s:%d", nd.Host, nd.AdminPort),
				"operationsListenAddress": fmt.Sprintf("%s:%d", nd.Host, nd.OperationsPort),
				"dataDir":                 filepath.Join(nodeDir, "data"),
				"mspId":                   org.MSPID,
				"mspDir":                  l.NodeMSPDir(false, org.Domain, full),
				"tls": map[string]any{
					"certFile": l.NodeTLSCertPath(false, org.Domain, full),
					"keyFile":  l.NodeTLSKeyPath(false, org.Domain, full),
					"rootCAs":  []string{l.TLSCACertPath(false, org.Domain)},
				},
				"admin":  map[string]any{"clientRootCAs": []string{l.TLSCACertPath(false, org.Domain)}},
				"noSync": n.opts.NoSync,
			}
			p := &Process{Name: full, Role: "orderer", Org: org.MSPID, Address: nd.Address(),
				OperationsAddress: fmt.Sprintf("%s:%d", nd.Host, nd.OperationsPort)}
			if err := n.launch(nodeDir, "orderer", cfg, p); err != nil {
				return err
			}
		}
	}
	for _, org := range n.net.PeerOrgs {
		if n.opts.OrderersOnly {
			break
		}
		for _, nd := range org.Peers {
			full := nd.FullName(org.Domain)
			nodeDir := filepath.Join(n.Dir, "nodes", full)
			var clientRoots []string
			for _, o := range n.net.PeerOrgs {
				clientRoots = append(clientRoots, l.TLSCACertPath(true, o.Domain))
			}
			cfg := map[string]any{
				"name":                    full,
				"listenAddress":           nd.Address(),
				"operationsListenAddress": fmt.Sprintf("%s:%d", nd.Host, nd.OperationsPort),
				"dataDir":                 filepath.Join(nodeDir, "data"),
				"mspId":                   org.MSPID,
				"mspDir":                  l.NodeMSPDir(true, org.Domain, full),
				"tls": map[string]any{
					"certFile":      l.NodeTLSCertPath(true, org.Domain, full),
					"keyFile":       l.NodeTLSKeyPath(true, org.Domain, full),
					"clientRootCAs": clientRoots,
				},
				"noSync": n.opts.NoSync,
			}
			p := &Process{Name: full, Role: "peer", Org: org.MSPID, Address: nd.Address(),
				OperationsAddress: fmt.Sprintf("%s:%d", nd.Host, nd.OperationsPort)}
			if err := n.launch(nodeDir, "peer", cfg, p); err != nil {
				return err
			}
		}
	}
	for _, p := range n.procs {
		if err := waitTCP(ctx, p.Address, p.PID); err != nil {
			return fmt.Errorf("%s did not start (see %s): %w", p.Name, p.Log, err)
		}
	}
	return nil
}

// launch writes a node's YAML configuration and starts `cairn <role> start`.
func (n *Network) launch(nodeDir, role string, cfg map[string]any, p *Process) error {
	if err := os.MkdirAll(nodeDir, 0o755); err != nil {
		return err
	}
	raw, err := yaml.Marshal(cfg)
	if err != nil {
		return err
	}
	cfgPath := filepath.Join(nodeDir, role+".yaml")
	if err := os.WriteFile(cfgPath, raw, 0o644); err != nil {
		return err
	}
	p.Args = []string{role, "start", "--config", cfgPath}
	p.Env = n.runtimeEnv(p.Env)
	p.Log = filepath.Join(n.Dir, "logs", p.Name+".log")
	if err := start(n.opts.Binary, p); err != nil {
		return err
	}
	n.procs = append(n.procs, p)
	return n.saveState()
}

// processCount is how many Go processes the network runs on this machine: its
// orderers, its peers and one sample chaincode per peer, plus one for the
// client that drives it (the CLI, a test or a benchmark).
func (n *Network) processCount() int {
	count := 1
	for _, org := range n.net.OrdererOrgs {
		count += len(org.Orderers)
	}
	if !n.opts.OrderersOnly {
		for _, org := range n.net.PeerOrgs {
			count += 2 * len(org.Peers)
		}
	}
	return count
}

// processorsPerNode sizes GOMAXPROCS for processes that share one machine.
// Each Go process starts with one P per core, and an idle P spins looking for
// work before it sleeps; eight processes on two cores then burn a share of the
// cores in the schedulers of processes that have nothing to do. Capping the Ps
// of all processes together at psPerCore per core removed most of that (~6 %
// of the CPU per transaction through the gateway, docs/benchmarks.md), while a
// three-orderer network, whose leader verifies signatures on every core, keeps
// Go's default. 0 means Go's default.
func processorsPerNode(processes, cpus int) int {
	const psPerCore = 4
	if processes <= psPerCore {
		return 0
	}
	return max(1, psPerCore*cpus/processes)
}

// runtimeEnv adds the network's GOMAXPROCS to a process's environment.
func (n *Network) runtimeEnv(env []string) []string {
	if n.goMaxProcs == 0 {
		return env
	}
	return append(env, fmt.Sprintf("GOMAXPROCS=%d", n.goMaxProcs))
}

// Processes lists the network's processes.
func (n *Network) Processes() []*Process { return n.procs }

// Restart starts a stopped process again with its recorded arguments.
func (n *Network) Restart(ctx context.Context, name string) error {
	for _, p := range n.procs {
		if p.Name != name {
			continue
		}
		if alive(p.PID) {
			return fmt.Errorf("%s is still running (pid %d)", name, p.PID)
		}
		if err := start(n.opts.Binary, p); err != nil {
			return err
		}
		if err := n.saveState(); err != nil {
			return err
		}
		if p.Address != "" {
			return waitTCP(ctx, p.Address, p.PID)
		}
		return nil
	}
	return fmt.Errorf("no process named %s", name)
}

// Kill stops one process: SIGKILL when hard, else SIGTERM.
func (n *Network) Kill(name string, hard bool) error {
	for _, p := range n.procs {
		if p.Name == name {
			return stop(p.PID, hard, 10*time.Second)
		}
	}
	return fmt.Errorf("no process named %s", name)
}

// Stop stops every process of the network, chaincodes first, and forgets them.
func (n *Network) Stop() error {
	var errs []error
	for i := len(n.procs) - 1; i >= 0; i-- {
		if err := stop(n.procs[i].PID, false, 10*time.Second); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", n.procs[i].Name, err))
		}
	}
	if len(errs) == 0 {
		_ = os.Remove(filepath.Join(n.Dir, StateFile))
	}
	return errors.Join(errs...)
}

// Down stops the network recorded in dir by another process.
func Down(dir string) (int, error) {
	s, err := loadState(dir)
	if errors.Is(err, os.ErrNotExist) {
		return 0, nil
	}
	if err != nil {
		return 0, err
	}
	var errs []error
	stopped := 0
	for i := len(s.Processes) - 1; i >= 0; i-- {
		p := s.Processes[i]
		if !alive(p.PID) {
			continue
		}
		if err := stop(p.PID, false, 10*time.Second); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", p.Name, err))
			continue
		}
		stopped++
	}
	if len(errs) == 0 {
		_ = os.Remove(filepath.Join(dir, StateFile))
	}
	return stopped, errors.Join(errs...)
}

// buildInfo assembles network.json.
func (n *Network) buildInfo() *Info {
	l := n.layout()
	info := &Info{Channel: n.net.Channel.Name, Chaincodes: []string{}}
	for _, org := range n.net.PeerOrgs {
		o := Organization{MSPID: org.MSPID, Users: map[string]User{}}
		for _, nd := range org.Peers {
			if n.opts.OrderersOnly {
				break
			}
			full := nd.FullName(org.Domain)
			o.Peers = append(o.Peers, Peer{Name: full, Address: nd.Address(), TLSRootCert: l.TLSCACertPath(true, org.Domain)})
		}
		o.Users["admin"] = user(l, true, org.Domain, cryptogen.AdminUser)
		for i, u := range org.Users {
			o.Users["user"+strconv.Itoa(i+1)] = user(l, true, org.Domain, u)
		}
		info.Organizations = append(info.Organizations, o)
	}
	for _, org := range n.net.OrdererOrgs {
		info.OrdererOrganizations = append(info.OrdererOrganizations, OrdererOrganization{
			MSPID: org.MSPID, Users: map[string]User{"admin": user(l, false, org.Domain, cryptogen.AdminUser)},
		})
		for _, nd := range org.Orderers {
			info.Orderers = append(info.Orderers, Orderer{
				Name: nd.FullName(org.Domain), Address: nd.Address(),
				AdminAddress: fmt.Sprintf("%s:%d", nd.Host, nd.AdminPort),
				TLSRootCert:  l.TLSCACertPath(false, org.Domain),
			})
		}
	}
	return info
}

// user is a user's files in the crypto material.
func user(l cryptogen.Layout, peerOrg bool, domain, name string) User {
	return User{
		Cert: l.UserSignCertPath(peerOrg, domain, name), Key: l.UserKeyPath(peerOrg, domain, name),
		TLSCert: l.UserTLSCertPath(peerOrg, domain, name), TLSKey: l.UserTLSKeyPath(peerOrg, domain, name),
	}
}

// writeBase64 writes the base64 of a file's contents, the format Fabric's
// shim reads from CORE_TLS_CLIENT_*_PATH.
func writeBase64(src, dst string) error {
	raw, err := os.ReadFile(src)
	if err != nil {
		return err
	}
	return os.WriteFile(dst, []byte(base64.StdEncoding.EncodeToString(raw)), 0o600)
}
