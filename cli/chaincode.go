package cli

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/hyperledger/fabric-gateway/pkg/client"
	gp "github.com/hyperledger/fabric-protos-go-apiv2/gateway"
	"github.com/spf13/cobra"
	"google.golang.org/grpc"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/cairn-ledger/cairn/chaincode/basic"
	"github.com/cairn-ledger/cairn/chaincode/shimcheck"
	"github.com/cairn-ledger/cairn/internal/ccdeploy"
	"github.com/cairn-ledger/cairn/internal/comm"
	"github.com/cairn-ledger/cairn/internal/crypto"
	"github.com/cairn-ledger/cairn/internal/envelope"
	"github.com/cairn-ledger/cairn/internal/localnet"
)

func newChaincodeCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "chaincode", Short: "Chaincode tools"}
	var reconnect bool
	var ccaas, ccaasID string
	run := &cobra.Command{
		Use:   "run-sample NAME",
		Short: "Run a sample chaincode shipped with cairn as a process that dials its peer (CORE_* variables as Fabric's shim)",
		Long: "Run a sample chaincode shipped with cairn: basic (the asset-transfer contract) or shimcheck (the\n" +
			"plain-shim test chaincode). By default it dials its peer, configured by the CORE_* variables of\n" +
			"Fabric's shim. shimcheck can instead serve as chaincode-as-a-service: --ccaas ADDRESS listens for\n" +
			"the peers, registering as --ccaas-id (the ccaas package ID; or CHAINCODE_ID), with the\n" +
			"CHAINCODE_TLS_* variables of Fabric's ccaas samples (plaintext unless CHAINCODE_TLS_DISABLED=false).",
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if args[0] == "shimcheck" {
				return runShimcheck(cmd, reconnect, ccaas, ccaasID)
			}
			if args[0] != "basic" {
				return errUnknownSample(args[0])
			}
			if ccaas != "" {
				return errors.New("--ccaas: only shimcheck runs as a chaincode service")
			}
			if !reconnect {
				return basic.Run()
			}
			return serveReconnecting(cmd)
		},
	}
	run.Flags().BoolVar(&reconnect, "reconnect", false, "dial the peer again whenever the connection ends (until SIGINT/SIGTERM), so the chaincode survives peer restarts")
	run.Flags().StringVar(&ccaas, "ccaas", "", "shimcheck only: serve as chaincode-as-a-service on this host:port instead of dialling the peer")
	run.Flags().StringVar(&ccaasID, "ccaas-id", "", "with --ccaas: the package ID to register as (default: CHAINCODE_ID)")
	cmd.AddCommand(run)
	addLifecycleCmds(cmd)
	return cmd
}

// serveReconnecting keeps the chaincode registered with its peer across peer
// restarts: Fabric's peer relaunches chaincode itself, a local network's
// chaincode process has to come back on its own.
func serveReconnecting(cmd *cobra.Command) error {
	cfg, err := basic.ConfigFromEnv(os.Getenv, nil)
	if err != nil {
		return err
	}
	ctx, cancel := signalContext()
	defer cancel()
	backoff := 100 * time.Millisecond
	for {
		began := time.Now()
		err := basic.Serve(ctx, cfg)
		if ctx.Err() != nil {
			return nil
		}
		if time.Since(began) > 10*time.Second {
			backoff = 100 * time.Millisecond
		}
		fmt.Fprintf(cmd.ErrOrStderr(), "chaincode connection to %s ended (%v); reconnecting in %s\n", cfg.PeerAddress, err, backoff)
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(backoff):
		}
		backoff = min(backoff*2, 5*time.Second)
	}
}

// runShimcheck runs the shimcheck chaincode until SIGINT/SIGTERM: as a
// chaincode service on ccaas, or dialling the peer of the CORE_* variables.
func runShimcheck(cmd *cobra.Command, reconnect bool, ccaas, ccaasID string) error {
	if reconnect {
		return errors.New("--reconnect: only basic reconnects; run shimcheck with --ccaas to let peers dial it")
	}
	if ccaas == "" && ccaasID != "" {
		return errors.New("--ccaas-id needs --ccaas")
	}
	var args []string
	if ccaas != "" {
		args = append(args, "-ccaas.address", ccaas)
		if ccaasID != "" {
			args = append(args, "-ccaas.id", ccaasID)
		}
	}
	ctx, cancel := signalContext()
	defer cancel()
	return shimcheck.Run(ctx, args, os.Getenv, cmd.ErrOrStderr())
}

func errUnknownSample(name string) error {
	return fmt.Errorf("unknown sample chaincode %q (available: basic, shimcheck)", name)
}

// addLifecycleCmds adds the chaincode lifecycle commands (Fabric's `peer
// lifecycle chaincode …` for a network described by network.json) and
// invoke/query through the Fabric Gateway client.
func addLifecycleCmds(cmd *cobra.Command) {
	cmd.AddCommand(newCCPackageCmd(), newCCInstallCmd(), newCCApproveCmd(), newCCCommitCmd(),
		newCCDeployCmd(), newCCListCmd(), newCCInvokeCmd(false), newCCInvokeCmd(true))
}

// ccTarget selects the network, channel, organisation and peer a command
// talks to, from the network.json written by `cairn network up`.
type ccTarget struct {
	network, channel, org, peer string
	timeout                     time.Duration
}

func (t *ccTarget) flags(cmd *cobra.Command, org, peer string) {
	cmd.Flags().StringVar(&t.network, "network", defaultNetworkDir, "network folder holding network.json (written by 'cairn network up')")
	cmd.Flags().StringVar(&t.channel, "channel", "", "channel (default: the network's channel)")
	if org != "" {
		cmd.Flags().StringVar(&t.org, "org", "", org)
	}
	if peer != "" {
		cmd.Flags().StringVar(&t.peer, "peer", "", peer)
	}
	cmd.Flags().DurationVar(&t.timeout, "timeout", 2*time.Minute, "give up after this long")
}

// ccNetwork is an opened network: its description, the chosen
// organisations and peers as ccdeploy sees them, and their connections.
type ccNetwork struct {
	info    *localnet.Info
	channel string
	orgs    []ccdeploy.Org
	conns   []*grpc.ClientConn
}

func (n *ccNetwork) Close() {
	for _, c := range n.conns {
		c.Close()
	}
}

// open loads network.json and connects, as each organisation's admin, to
// the peers --org and --peer select (all of them when neither is given).
func (t *ccTarget) open() (*ccNetwork, error) {
	info, err := localnet.LoadInfo(t.network)
	if err != nil {
		return nil, err
	}
	n := &ccNetwork{info: info, channel: cmp.Or(t.channel, info.Channel)}
	for _, o := range info.Organizations {
		if t.org != "" && o.MSPID != t.org {
			continue
		}
		admin, err := loadAdmin(o)
		if err != nil {
			n.Close()
			return nil, err
		}
		org := ccdeploy.Org{MSPID: o.MSPID, Admin: admin}
		for _, p := range o.Peers {
			if t.peer != "" && p.Name != t.peer {
				continue
			}
			conn, err := dialPeer(p)
			if err != nil {
				n.Close()
				return nil, err
			}
			n.conns = append(n.conns, conn)
			org.Peers = append(org.Peers, ccdeploy.Peer{Name: p.Name, Conn: conn})
		}
		if len(org.Peers) > 0 {
			n.orgs = append(n.orgs, org)
		}
	}
	if len(n.orgs) == 0 {
		n.Close()
		return nil, fmt.Errorf("no peer in %s matches --org %q --peer %q (organisations: %s)", filepath.Join(t.network, localnet.InfoFile), t.org, t.peer, strings.Join(orgIDs(info), ", "))
	}
	return n, nil
}

func orgIDs(info *localnet.Info) []string {
	var ids []string
	for _, o := range info.Organizations {
		ids = append(ids, o.MSPID)
	}
	return ids
}

func loadAdmin(o localnet.Organization) (*crypto.SigningIdentity, error) {
	return loadUser(o, "admin")
}

// loadUser reads a user's signing identity as network.json names it.
func loadUser(o localnet.Organization, user string) (*crypto.SigningIdentity, error) {
	u, ok := o.Users[user]
	if !ok {
		return nil, fmt.Errorf("organisation %s has no user %q in network.json", o.MSPID, user)
	}
	certPEM, err := os.ReadFile(u.Cert)
	if err != nil {
		return nil, fmt.Errorf("%s of %s: %w", user, o.MSPID, err)
	}
	keyPEM, err := os.ReadFile(u.Key)
	if err != nil {
		return nil, fmt.Errorf("%s of %s: %w", user, o.MSPID, err)
	}
	key, err := crypto.ParsePrivateKeyPEM(keyPEM)
	if err != nil {
		return nil, fmt.Errorf("%s of %s: %w", user, o.MSPID, err)
	}
	return &crypto.SigningIdentity{MSPID: o.MSPID, CertPEM: certPEM, Key: key}, nil
}

// initProposal is the fabric-gateway client's Proposal for an invocation
// marked IsInit, which the client cannot build itself: Cairn builds and
// signs the proposal, the client endorses and submits it (offline signing).
func initProposal(gw *client.Gateway, o localnet.Organization, user, channel, name string, args []string, transient map[string][]byte) (*client.Proposal, error) {
	signer, err := loadUser(o, user)
	if err != nil {
		return nil, err
	}
	raw := make([][]byte, len(args))
	for i, a := range args {
		raw[i] = []byte(a)
	}
	prop, txID, err := envelope.NewInitProposal(channel, name, raw, transient, signer.Serialize())
	if err != nil {
		return nil, err
	}
	sp, err := envelope.SignProposal(prop, signer)
	if err != nil {
		return nil, err
	}
	bytes, err := proto.Marshal(&gp.ProposedTransaction{TransactionId: txID, Proposal: sp})
	if err != nil {
		return nil, err
	}
	return gw.NewSignedProposal(bytes, sp.Signature)
}

func dialPeer(p localnet.Peer) (*grpc.ClientConn, error) {
	tlsCfg, err := comm.ClientTLS([]string{p.TLSRootCert}, "", "", p.Name)
	if err != nil {
		return nil, fmt.Errorf("TLS for %s: %w", p.Name, err)
	}
	return comm.Dial(p.Address, tlsCfg)
}

// deployer opens the network and returns a Deployer over the selected
// organisations, with progress to w.
func (t *ccTarget) deployer(w io.Writer) (*ccdeploy.Deployer, *ccNetwork, error) {
	n, err := t.open()
	if err != nil {
		return nil, nil, err
	}
	d, err := ccdeploy.New(ccdeploy.Config{Channel: n.channel, Orgs: n.orgs, Progress: w})
	if err != nil {
		n.Close()
		return nil, nil, err
	}
	return d, n, nil
}

// run opens a Deployer over the network (progress to w) and calls fn with it
// under the command's context, closing the network afterwards.
func (t *ccTarget) run(w io.Writer, fn func(ctx context.Context, d *ccdeploy.Deployer, n *ccNetwork) error) error {
	d, n, err := t.deployer(w)
	if err != nil {
		return err
	}
	defer n.Close()
	ctx, cancel := t.context()
	defer cancel()
	return fn(ctx, d, n)
}

// context is the command's context: cancelled by SIGINT/SIGTERM or after --timeout.
func (t *ccTarget) context() (context.Context, context.CancelFunc) {
	ctx, stop := signalContext()
	ctx, cancel := context.WithTimeout(ctx, t.timeout)
	return ctx, func() { cancel(); stop() }
}

// ccSource is where a package comes from: a Go module folder or a
// chaincode server (ccaas).
type ccSource struct {
	path  string
	ccaas ccdeploy.CCaaSOptions
}

func (s *ccSource) flags(cmd *cobra.Command) {
	cmd.Flags().StringVar(&s.path, "path", "", "Go module folder of golang chaincode (holding go.mod)")
	cmd.Flags().StringVar(&s.ccaas.Address, "ccaas", "", "package chaincode-as-a-service: the host:port peers dial")
	cmd.Flags().StringVar(&s.ccaas.DialTimeout, "ccaas-dial-timeout", "10s", "ccaas: how long peers wait for the connection")
	cmd.Flags().StringVar(&s.ccaas.RootCertFile, "ccaas-tls-root-cert", "", "ccaas: PEM CA of the chaincode server's TLS certificate (turns TLS on)")
	cmd.Flags().StringVar(&s.ccaas.ClientCertFile, "ccaas-tls-client-cert", "", "ccaas: PEM client certificate peers present (mutual TLS)")
	cmd.Flags().StringVar(&s.ccaas.ClientKeyFile, "ccaas-tls-client-key", "", "ccaas: PEM key of --ccaas-tls-client-cert")
}

func (s *ccSource) build(label string) ([]byte, error) {
	switch {
	case s.path != "" && s.ccaas.Address != "":
		return nil, errors.New("--path and --ccaas are exclusive: package either Go source or a chaincode server's address")
	case s.path != "":
		return ccdeploy.PackageGoModule(label, s.path)
	case s.ccaas.Address != "":
		return ccdeploy.PackageCCaaS(label, s.ccaas)
	}
	return nil, errors.New("either --path (Go module folder) or --ccaas (chaincode server address) is required")
}

func newCCPackageCmd() *cobra.Command {
	var src ccSource
	var label string
	c := &cobra.Command{
		Use:   "package [FILE]",
		Short: "Write a Fabric 2.x chaincode package (golang from --path, or ccaas with --ccaas) and print its package ID",
		Long: `Write a chaincode package as 'peer lifecycle chaincode package' does, to FILE
(default LABEL.tar.gz), and print its package ID (LABEL:sha256 of the file) on
stdout. --path packages the Go module in that folder (golang); --ccaas packages
the address peers dial to reach a chaincode server, with optional TLS material.`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if label == "" {
				return errors.New("--label is required")
			}
			pkg, err := src.build(label)
			if err != nil {
				return err
			}
			out := label + ".tar.gz"
			if len(args) == 1 {
				out = args[0]
			}
			if err := os.WriteFile(out, pkg, 0o644); err != nil {
				return fmt.Errorf("write package: %w", err)
			}
			id, err := ccdeploy.PackageID(pkg)
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.ErrOrStderr(), "wrote %s\n", out)
			fmt.Fprintln(cmd.OutOrStdout(), id)
			return nil
		},
	}
	src.flags(c)
	c.Flags().StringVar(&label, "label", "", "package label, e.g. basic_1.0")
	return c
}

func newCCInstallCmd() *cobra.Command {
	var t ccTarget
	c := &cobra.Command{
		Use:   "install FILE",
		Short: "Install a chaincode package on peers (all of the network's, or those --org/--peer select) and print its package ID",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			pkg, err := os.ReadFile(args[0])
			if err != nil {
				return err
			}
			return t.run(cmd.ErrOrStderr(), func(ctx context.Context, d *ccdeploy.Deployer, n *ccNetwork) error {
				id, err := d.Install(ctx, pkg)
				if err != nil {
					return err
				}
				fmt.Fprintln(cmd.OutOrStdout(), id)
				return nil
			})
		},
	}
	t.flags(c, "install on the peers of this organisation (MSP ID) only", "install on this peer (name in network.json) only")
	return c
}

// ccDefinition holds the flags of a chaincode definition.
type ccDefinition struct {
	name, version, policy, packageID string
	sequence                         int64
	initRequired                     bool
}

func (f *ccDefinition) flags(cmd *cobra.Command, withPackage bool) {
	cmd.Flags().StringVar(&f.name, "name", "", "chaincode name")
	cmd.Flags().StringVar(&f.version, "version", "1.0", "chaincode version")
	cmd.Flags().Int64Var(&f.sequence, "sequence", 0, "definition sequence (default: the next one, committed + 1)")
	cmd.Flags().StringVar(&f.policy, "policy", "", `endorsement policy: "OR('Org1MSP.peer','Org2MSP.peer')" or a channel policy path (default /Channel/Application/Endorsement)`)
	cmd.Flags().BoolVar(&f.initRequired, "init-required", false, "the chaincode must be invoked with Init before other transactions")
	if withPackage {
		cmd.Flags().StringVar(&f.packageID, "package-id", "", "installed package this organisation runs the chaincode from (empty: approve without running it)")
	}
}

// definition builds the requested definition, picking the next sequence
// when none was given.
func (f *ccDefinition) definition(ctx context.Context, d *ccdeploy.Deployer) (ccdeploy.Definition, error) {
	if f.name == "" {
		return ccdeploy.Definition{}, errors.New("--name is required")
	}
	pol, err := ccdeploy.ParsePolicy(f.policy)
	if err != nil {
		return ccdeploy.Definition{}, err
	}
	def := ccdeploy.Definition{Name: f.name, Version: f.version, Sequence: f.sequence, PackageID: f.packageID, Policy: pol, InitRequired: f.initRequired}
	committed, err := d.Committed(ctx, f.name)
	if err != nil {
		return def, err
	}
	if committed != nil {
		def.Collections = committed.Collections
	}
	if def.Sequence == 0 {
		def.Sequence = 1
		if committed != nil {
			def.Sequence = committed.Sequence + 1
		}
	}
	return def, nil
}

func newCCApproveCmd() *cobra.Command {
	var t ccTarget
	var f ccDefinition
	c := &cobra.Command{
		Use:   "approve",
		Short: "Approve a chaincode definition for an organisation (--org), or for every organisation of the network",
		Long: `Approve a chaincode definition as an organisation's admin, through its first
peer, as 'peer lifecycle chaincode approveformyorg' does. Without --org every
organisation of the network approves. Afterwards the commit readiness is shown;
when organisations approved the sequence differently, the differing fields
(version, policy, init-required, collections, package, ...) are named.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return t.run(cmd.ErrOrStderr(), func(ctx context.Context, d *ccdeploy.Deployer, n *ccNetwork) error {
				def, err := f.definition(ctx, d)
				if err != nil {
					return err
				}
				var last uint64
				for _, o := range n.orgs {
					block, err := d.Approve(ctx, o.MSPID, def)
					if err != nil {
						return err
					}
					fmt.Fprintf(cmd.OutOrStdout(), "approved %s version %s sequence %d for %s (block %d)\n", def.Name, def.Version, def.Sequence, o.MSPID, block)
					last = max(last, block)
				}
				// An org of this network whose approval differs is worth a
				// warning, not a failure: this org's approval stands.
				all, closeAll, err := allOrgs(t)
				if err != nil {
					return err
				}
				defer closeAll()
				if err := all.WaitForBlock(ctx, last); err != nil {
					return err
				}
				err = all.CheckReady(ctx, def, 0)
				var nr *ccdeploy.NotReadyError
				if errors.As(err, &nr) {
					fmt.Fprintf(cmd.ErrOrStderr(), "! not ready to commit yet: %v\n", nr)
					return nil
				}
				if err == nil {
					fmt.Fprintf(cmd.OutOrStdout(), "every organisation approved %s sequence %d: ready to commit\n", def.Name, def.Sequence)
				}
				return err
			})
		},
	}
	t.flags(c, "approve for this organisation (MSP ID) only", "")
	f.flags(c, true)
	return c
}

// allOrgs opens a Deployer over every organisation of t's network.
func allOrgs(t ccTarget) (*ccdeploy.Deployer, func(), error) {
	t.org, t.peer = "", ""
	d, n, err := t.deployer(io.Discard)
	if err != nil {
		return nil, nil, err
	}
	return d, n.Close, nil
}

func newCCCommitCmd() *cobra.Command {
	var t ccTarget
	var f ccDefinition
	c := &cobra.Command{
		Use:   "commit",
		Short: "Commit a chaincode definition approved by a majority of organisations, endorsed by a peer of every organisation",
		Long: `Commit a chaincode definition as 'peer lifecycle chaincode commit' does, as the
admin of --org (default: the first organisation), endorsed by the first peer of
every organisation, then wait until every peer reports it. If a majority of
organisations has not approved the definition, nothing is submitted and the
error names the fields on which their approvals differ.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			submitter := t.org
			t.org = ""
			return t.run(cmd.ErrOrStderr(), func(ctx context.Context, d *ccdeploy.Deployer, n *ccNetwork) error {
				if submitter == "" {
					submitter = n.orgs[0].MSPID
				}
				def, err := f.definition(ctx, d)
				if err != nil {
					return err
				}
				approved, err := d.Readiness(ctx, def)
				if err != nil {
					return err
				}
				if err := d.CheckReady(ctx, def, len(approved)/2+1); err != nil {
					return err
				}
				block, err := d.Commit(ctx, submitter, def)
				if err != nil {
					return err
				}
				fmt.Fprintf(cmd.OutOrStdout(), "committed %s version %s sequence %d on channel %s (block %d)\n", def.Name, def.Version, def.Sequence, n.channel, block)
				return d.WaitCommitted(ctx, def.Name, def.Sequence)
			})
		},
	}
	t.flags(c, "organisation (MSP ID) whose admin submits the commit (default: the first)", "")
	f.flags(c, false)
	return c
}

func newCCDeployCmd() *cobra.Command {
	var t ccTarget
	var f ccDefinition
	var src ccSource
	var label string
	c := &cobra.Command{
		Use:   "deploy",
		Short: "Package, install on every peer, approve for every organisation, commit, and wait: the whole lifecycle in one command",
		Long: `Deploy a chaincode on a network started by 'cairn network up': package it (Go
module folder --path, or chaincode server --ccaas), install it on every peer,
approve the definition for every organisation, check commit readiness, commit
it, and wait until every peer reports it, printing one line per step and per
peer or organisation.

Run it again after changing the code, --version, --policy or --init-required
and it upgrades the definition at the next sequence (or --sequence); run it
unchanged and it says there is nothing to do. When organisations' approvals
differ, the error names the differing fields.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if f.name == "" {
				return errors.New("--name is required")
			}
			pol, err := ccdeploy.ParsePolicy(f.policy)
			if err != nil {
				return err
			}
			pkg, err := src.build(cmp.Or(label, f.name+"_"+f.version))
			if err != nil {
				return err
			}
			return t.run(cmd.OutOrStdout(), func(ctx context.Context, d *ccdeploy.Deployer, n *ccNetwork) error {
				_, err = d.Deploy(ctx, ccdeploy.Request{Name: f.name, Version: f.version, Package: pkg, Sequence: f.sequence, Policy: pol, InitRequired: f.initRequired})
				return err
			})
		},
	}
	t.flags(c, "", "")
	f.flags(c, false)
	src.flags(c)
	c.Flags().StringVar(&label, "label", "", "package label (default NAME_VERSION)")
	return c
}

// ccListing is `chaincode list --json`.
type ccListing struct {
	Installed []ccdeploy.PeerPackages `json:"installed"`
	Channel   string                  `json:"channel"`
	Committed []ccCommitted           `json:"committed"`
}

type ccCommitted struct {
	Name         string          `json:"name"`
	Version      string          `json:"version"`
	Sequence     int64           `json:"sequence"`
	Policy       string          `json:"policy"`
	InitRequired bool            `json:"initRequired"`
	Approvals    map[string]bool `json:"approvals"`
}

func newCCListCmd() *cobra.Command {
	var t ccTarget
	var asJSON bool
	c := &cobra.Command{
		Use:   "list",
		Short: "List the packages installed on peers and the chaincode definitions committed on the channel",
		Long: `List the packages installed on every peer (or those --org/--peer select) and
the definitions committed on the channel.

--json prints {"installed": [{"peer", "mspId", "installed": [{"packageId",
"label"}]}], "channel", "committed": [{"name", "version", "sequence", "policy",
"initRequired", "approvals": {"Org1MSP": true}}]}.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return t.run(io.Discard, func(ctx context.Context, d *ccdeploy.Deployer, n *ccNetwork) error {
				installed, err := d.Installed(ctx)
				if err != nil {
					return err
				}
				committed, err := d.CommittedAll(ctx)
				if err != nil {
					return err
				}
				l := ccListing{Installed: installed, Channel: n.channel, Committed: []ccCommitted{}}
				for _, c := range committed {
					l.Committed = append(l.Committed, ccCommitted{Name: c.Name, Version: c.Version, Sequence: c.Sequence,
						Policy: ccdeploy.DescribePolicy(c.Policy), InitRequired: c.InitRequired, Approvals: c.Approvals})
				}
				out := cmd.OutOrStdout()
				if asJSON {
					enc := json.NewEncoder(out)
					enc.SetIndent("", "  ")
					return enc.Encode(l)
				}
				writeListing(out, l)
				return nil
			})
		},
	}
	t.flags(c, "list the peers of this organisation (MSP ID) only", "list this peer (name in network.json) only")
	c.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	return c
}

func writeListing(w io.Writer, l ccListing) {
	fmt.Fprintln(w, "Installed chaincodes:")
	for _, p := range l.Installed {
		fmt.Fprintf(w, "  %s (%s):\n", p.Peer, p.MSPID)
		if len(p.Packages) == 0 {
			fmt.Fprintln(w, "    none")
		}
		for _, pkg := range p.Packages {
			fmt.Fprintf(w, "    Package ID: %s, Label: %s\n", pkg.PackageID, pkg.Label)
		}
	}
	fmt.Fprintf(w, "Committed chaincode definitions on channel %s:\n", l.Channel)
	if len(l.Committed) == 0 {
		fmt.Fprintln(w, "  none")
	}
	for _, c := range l.Committed {
		orgs := make([]string, 0, len(c.Approvals))
		for org := range c.Approvals {
			orgs = append(orgs, org)
		}
		sort.Strings(orgs)
		approvals := make([]string, len(orgs))
		for i, org := range orgs {
			approvals[i] = fmt.Sprintf("%s: %t", org, c.Approvals[org])
		}
		fmt.Fprintf(w, "  Name: %s, Version: %s, Sequence: %d, Policy: %s, Init Required: %t, Approvals: [%s]\n",
			c.Name, c.Version, c.Sequence, c.Policy, c.InitRequired, strings.Join(approvals, ", "))
	}
}

// newCCInvokeCmd builds `invoke` (submit) or, with query, `query` (evaluate).
func newCCInvokeCmd(query bool) *cobra.Command {
	var t ccTarget
	var name, user string
	var transient []string
	var isInit bool
	use, short := "invoke", "Submit a transaction through the Fabric Gateway and print its result, transaction ID and validation code"
	if query {
		use, short = "query", "Evaluate a transaction through the Fabric Gateway (nothing is committed) and print its result"
	}
	c := &cobra.Command{
		Use:   use + " FUNCTION [ARG...]",
		Short: short,
		Args:  cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if name == "" {
				return errors.New("--name is required")
			}
			tm, err := parseTransient(transient)
			if err != nil {
				return err
			}
			info, err := localnet.LoadInfo(t.network)
			if err != nil {
				return err
			}
			oi, pi, err := pickPeer(info, t.org, t.peer)
			if err != nil {
				return err
			}
			gw, conn, err := localnet.ConnectGateway(info, oi, pi, user)
			if err != nil {
				return err
			}
			defer conn.Close()
			defer gw.Close()
			ctx, cancel := t.context()
			defer cancel()
			contract := gw.GetNetwork(cmp.Or(t.channel, info.Channel)).GetContract(name)
			opts := []client.ProposalOption{client.WithArguments(args[1:]...)}
			if len(tm) > 0 {
				opts = append(opts, client.WithTransient(tm))
			}
			out := cmd.OutOrStdout()
			if query {
				res, err := contract.EvaluateWithContext(ctx, args[0], opts...)
				if err != nil {
					return gatewayError(err)
				}
				fmt.Fprintln(out, string(res))
				return nil
			}
			var (
				res    []byte
				commit *client.Commit
			)
			if isInit {
				channel := cmp.Or(t.channel, info.Channel)
				prop, err := initProposal(gw, info.Organizations[oi], user, channel, name, args, tm)
				if err != nil {
					return err
				}
				tx, err := prop.EndorseWithContext(ctx)
				if err != nil {
					return gatewayError(err)
				}
				res = tx.Result()
				if commit, err = tx.SubmitWithContext(ctx); err != nil {
					return gatewayError(err)
				}
			} else if res, commit, err = contract.SubmitAsyncWithContext(ctx, args[0], opts...); err != nil {
				return gatewayError(err)
			}
			status, err := commit.StatusWithContext(ctx)
			if err != nil {
				return gatewayError(err)
			}
			fmt.Fprintf(out, "result: %s\ntx ID: %s\nvalidation code: %s (block %d)\n", res, status.TransactionID, status.Code, status.BlockNumber)
			if !status.Successful {
				return fmt.Errorf("transaction %s was not committed valid: %s", status.TransactionID, status.Code)
			}
			return nil
		},
	}
	t.flags(c, "organisation (MSP ID) of the user (default: the first)", "peer whose gateway to use (default: the organisation's first)")
	c.Flags().StringVar(&name, "name", "", "chaincode name")
	c.Flags().StringVar(&user, "user", "user1", "user of the organisation in network.json (user1, admin, ...)")
	c.Flags().StringArrayVar(&transient, "transient", nil, "transient data key=value (repeatable); not recorded on the ledger")
	if !query {
		c.Flags().BoolVar(&isInit, "init", false, "invoke as the chaincode's Init: the first invocation of a definition committed with --init-required (Fabric's --isInit)")
	}
	return c
}

func parseTransient(kvs []string) (map[string][]byte, error) {
	m := map[string][]byte{}
	for _, kv := range kvs {
		k, v, ok := strings.Cut(kv, "=")
		if !ok || k == "" {
			return nil, fmt.Errorf("--transient %q: want key=value", kv)
		}
		m[k] = []byte(v)
	}
	return m, nil
}

// pickPeer resolves --org and --peer to indexes into network.json.
func pickPeer(info *localnet.Info, org, peer string) (int, int, error) {
	for oi, o := range info.Organizations {
		if org != "" && o.MSPID != org {
			continue
		}
		for pi, p := range o.Peers {
			if peer == "" || p.Name == peer {
				return oi, pi, nil
			}
		}
	}
	return 0, 0, fmt.Errorf("no peer in network.json matches --org %q --peer %q (organisations: %s)", org, peer, strings.Join(orgIDs(info), ", "))
}

// gatewayError adds the peers' error details, where Fabric's gateway puts
// the chaincode's own message, to a Gateway client error.
func gatewayError(err error) error {
	st, ok := status.FromError(err)
	if !ok {
		return err
	}
	var details []string
	for _, d := range st.Details() {
		if ed, ok := d.(*gp.ErrorDetail); ok {
			details = append(details, fmt.Sprintf("%s (%s): %s", ed.Address, ed.MspId, ed.Message))
		}
	}
	if len(details) == 0 {
		return err
	}
	return fmt.Errorf("%w; details: %s", err, strings.Join(details, "; "))
}
