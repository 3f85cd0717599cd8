// Package ccdeploy runs Fabric's chaincode lifecycle against the peers of a
// channel, as each organisation's admin: install a package on peers,
// approve a definition per organisation, check commit readiness, commit the
// definition endorsed by one peer of every organisation (so that
// /Channel/Application/LifecycleEndorsement, MAJORITY by default, is met),
// and wait until every peer reports it. Deploy chains these steps into one
// flow that can be run again: it upgrades the definition when the package,
// version, policy or init-required changed, and does nothing otherwise.
//
// It speaks only the public protocol (signed proposals to the peers'
// Endorser service, transactions submitted through their Gateway service),
// so it works against any Fabric-compatible peer. Where Fabric's CLI only
// says true/false, failed readiness checks name the fields on which the
// organisations' approvals differ (see NotReadyError).
//
// Concurrency: a Deployer runs one step at a time for one goroutine; it
// starts no goroutines. The gRPC connections in Config belong to the caller.
package ccdeploy

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sort"
	"strings"
	"time"

	lb "github.com/hyperledger/fabric-protos-go-apiv2/peer/lifecycle"
	"google.golang.org/grpc"

	"github.com/cairn-ledger/cairn/internal/envelope"
)

// Peer is one peer to talk to.
type Peer struct {
	// Name identifies the peer in progress lines and errors, e.g.
	// peer0.org1.example.com.
	Name string
	// Conn reaches the peer's Endorser and Gateway services.
	Conn grpc.ClientConnInterface
}

// Org is one organisation of the channel: its admin, who signs its
// installs and approvals, and its peers (the first one is the one used for
// its approvals, endorsements of commits and queries).
type Org struct {
	MSPID string
	Admin envelope.Signer
	Peers []Peer
}

// Config configures a Deployer.
type Config struct {
	// Channel is the channel definitions are approved and committed on.
	Channel string
	// Orgs are the channel's organisations taking part; for Deploy, every
	// organisation of the channel.
	Orgs []Org
	// Progress receives one line per step and per peer or organisation;
	// nil discards them.
	Progress io.Writer
	// PollInterval is how often waits ask peers again (default 200ms).
	PollInterval time.Duration
}

// Validate reports a missing or inconsistent field.
func (c Config) Validate() error {
	if c.Channel == "" {
		return errors.New("ccdeploy: channel must be set")
	}
	if len(c.Orgs) == 0 {
		return errors.New("ccdeploy: no organisations")
	}
	seen := map[string]bool{}
	for _, o := range c.Orgs {
		switch {
		case o.MSPID == "":
			return errors.New("ccdeploy: organisation without MSP ID")
		case seen[o.MSPID]:
			return fmt.Errorf("ccdeploy: organisation %s listed twice", o.MSPID)
		case o.Admin == nil:
			return fmt.Errorf("ccdeploy: organisation %s has no admin identity", o.MSPID)
		case len(o.Peers) == 0:
			return fmt.Errorf("ccdeploy: organisation %s has no peers", o.MSPID)
		}
		seen[o.MSPID] = true
		for _, p := range o.Peers {
			if p.Conn == nil {
				return fmt.Errorf("ccdeploy: peer %s of %s has no connection", p.Name, o.MSPID)
			}
		}
	}
	return nil
}

// Deployer runs lifecycle steps against the organisations of Config.
type Deployer struct {
	cfg Config
}

// New checks cfg and returns a Deployer.
func New(cfg Config) (*Deployer, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.Progress == nil {
		cfg.Progress = io.Discard
	}
	if cfg.PollInterval <= 0 {
		cfg.PollInterval = 200 * time.Millisecond
	}
	return &Deployer{cfg: cfg}, nil
}

func (d *Deployer) say(format string, args ...any) {
	fmt.Fprintf(d.cfg.Progress, format+"\n", args...)
}

func (d *Deployer) org(mspID string) (Org, error) {
	for _, o := range d.cfg.Orgs {
		if o.MSPID == mspID {
			return o, nil
		}
	}
	return Org{}, fmt.Errorf("no organisation %s", mspID)
}

// first is the organisation that submits commits and answers channel queries.
func (d *Deployer) first() Org { return d.cfg.Orgs[0] }

// sleep waits one poll interval or until ctx ends.
func (d *Deployer) sleep(ctx context.Context) error {
	t := time.NewTimer(d.cfg.PollInterval)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// InstallOn installs a package on one peer of an organisation, unless it is
// installed there already, and returns its package ID.
func (d *Deployer) InstallOn(ctx context.Context, mspID string, p Peer, pkg []byte) (id string, already bool, err error) {
	o, err := d.org(mspID)
	if err != nil {
		return "", false, err
	}
	id, err = packageID(pkg)
	if err != nil {
		return "", false, err
	}
	installed := &lb.QueryInstalledChaincodesResult{}
	if err := call(ctx, p, o.Admin, "", lifecycleCC, "QueryInstalledChaincodes", &lb.QueryInstalledChaincodesArgs{}, installed); err != nil {
		return "", false, err
	}
	for _, ic := range installed.InstalledChaincodes {
		if ic.PackageId == id {
			return id, true, nil
		}
	}
	res := &lb.InstallChaincodeResult{}
	if err := call(ctx, p, o.Admin, "", lifecycleCC, "InstallChaincode", &lb.InstallChaincodeArgs{ChaincodeInstallPackage: pkg}, res); err != nil {
		return "", false, fmt.Errorf("install: %w", err)
	}
	if res.PackageId != id {
		return "", false, fmt.Errorf("install on %s: peer reports package ID %s, expected %s", p.Name, res.PackageId, id)
	}
	return id, false, nil
}

// Install installs a package on every peer of every organisation (skipping
// peers that have it) and returns its package ID.
func (d *Deployer) Install(ctx context.Context, pkg []byte) (string, error) {
	var id string
	for _, o := range d.cfg.Orgs {
		for _, p := range o.Peers {
			got, already, err := d.InstallOn(ctx, o.MSPID, p, pkg)
			if err != nil {
				return "", err
			}
			id = got
			if already {
				d.say("  ✔ %s (%s): already installed", p.Name, o.MSPID)
			} else {
				d.say("  ✔ %s (%s): installed", p.Name, o.MSPID)
			}
		}
	}
	return id, nil
}

// PeerPackages lists the packages installed on one peer.
type PeerPackages struct {
	Peer     string             `json:"peer"`
	MSPID    string             `json:"mspId"`
	Packages []InstalledPackage `json:"installed"`
}

// InstalledPackage is one installed package.
type InstalledPackage struct {
	PackageID string `json:"packageId"`
	Label     string `json:"label"`
}

// Installed lists the packages installed on each peer of every organisation.
func (d *Deployer) Installed(ctx context.Context) ([]PeerPackages, error) {
	var out []PeerPackages
	for _, o := range d.cfg.Orgs {
		for _, p := range o.Peers {
			res := &lb.QueryInstalledChaincodesResult{}
			if err := call(ctx, p, o.Admin, "", lifecycleCC, "QueryInstalledChaincodes", &lb.QueryInstalledChaincodesArgs{}, res); err != nil {
				return nil, err
			}
			pp := PeerPackages{Peer: p.Name, MSPID: o.MSPID, Packages: []InstalledPackage{}}
			for _, ic := range res.InstalledChaincodes {
				pp.Packages = append(pp.Packages, InstalledPackage{PackageID: ic.PackageId, Label: ic.Label})
			}
			sort.Slice(pp.Packages, func(i, j int) bool { return pp.Packages[i].PackageID < pp.Packages[j].PackageID })
			out = append(out, pp)
		}
	}
	return out, nil
}

// Approve submits an organisation's approval of def and returns the block
// that holds it.
func (d *Deployer) Approve(ctx context.Context, mspID string, def Definition) (uint64, error) {
	o, err := d.org(mspID)
	if err != nil {
		return 0, err
	}
	args := &lb.ApproveChaincodeDefinitionForMyOrgArgs{
		Sequence: def.Sequence, Name: def.Name, Version: def.Version,
		EndorsementPlugin: def.EndorsementPlugin, ValidationPlugin: def.ValidationPlugin,
		ValidationParameter: def.Policy, Collections: def.Collections, InitRequired: def.InitRequired,
		Source: &lb.ChaincodeSource{Type: &lb.ChaincodeSource_Unavailable_{Unavailable: &lb.ChaincodeSource_Unavailable{}}},
	}
	if def.PackageID != "" {
		args.Source = &lb.ChaincodeSource{Type: &lb.ChaincodeSource_LocalPackage{LocalPackage: &lb.ChaincodeSource_Local{PackageId: def.PackageID}}}
	}
	p := o.Peers[0]
	res, err := submit(ctx, o.Admin, d.cfg.Channel, "ApproveChaincodeDefinitionForMyOrg", args, []Peer{p}, p)
	if err != nil {
		return 0, fmt.Errorf("approve chaincode %s sequence %d for %s: %w", def.Name, def.Sequence, mspID, err)
	}
	return res.Block, nil
}

// Approved returns an organisation's approval of chaincode name at
// sequence (0: its latest approval), or nil when it has none.
func (d *Deployer) Approved(ctx context.Context, mspID, name string, sequence int64) (*Definition, error) {
	o, err := d.org(mspID)
	if err != nil {
		return nil, err
	}
	res := &lb.QueryApprovedChaincodeDefinitionResult{}
	err = call(ctx, o.Peers[0], o.Admin, d.cfg.Channel, lifecycleCC, "QueryApprovedChaincodeDefinition",
		&lb.QueryApprovedChaincodeDefinitionArgs{Name: name, Sequence: sequence}, res)
	var se *StatusError
	if errors.As(err, &se) && (se.Status == 404 || strings.Contains(se.Message, "could not fetch approved chaincode definition")) {
		// Fabric's answer (and ours) when the org approved nothing.
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	return fromApproved(name, res), nil
}

// Readiness is CheckCommitReadiness: for each organisation of the channel,
// whether it approved exactly def. It asks the first organisation's peer.
func (d *Deployer) Readiness(ctx context.Context, def Definition) (map[string]bool, error) {
	o := d.first()
	res := &lb.CheckCommitReadinessResult{}
	err := call(ctx, o.Peers[0], o.Admin, d.cfg.Channel, lifecycleCC, "CheckCommitReadiness", &lb.CheckCommitReadinessArgs{
		Sequence: def.Sequence, Name: def.Name, Version: def.Version,
		EndorsementPlugin: def.EndorsementPlugin, ValidationPlugin: def.ValidationPlugin,
		ValidationParameter: def.Policy, Collections: def.Collections, InitRequired: def.InitRequired,
	}, res)
	if err != nil {
		return nil, fmt.Errorf("check commit readiness of %s sequence %d: %w", def.Name, def.Sequence, err)
	}
	return res.Approvals, nil
}

// CheckReady returns nil when at least need organisations approved def
// (need <= 0: all of them), and otherwise a *NotReadyError that names, per
// organisation, the fields on which its latest approval differs from def.
func (d *Deployer) CheckReady(ctx context.Context, def Definition, need int) error {
	approved, err := d.Readiness(ctx, def)
	if err != nil {
		return err
	}
	return d.notReady(ctx, def, approved, need)
}

// notReady builds CheckReady's answer from CheckCommitReadiness's approvals.
func (d *Deployer) notReady(ctx context.Context, def Definition, approved map[string]bool, need int) error {
	if need <= 0 {
		need = len(approved)
	}
	n := 0
	for _, ok := range approved {
		if ok {
			n++
		}
	}
	if n >= need {
		return nil
	}
	nr := &NotReadyError{Channel: d.cfg.Channel, Want: def, Approved: approved, Approvals: map[string]*Definition{}, Need: need}
	for org, ok := range approved {
		if ok {
			continue
		}
		if _, err := d.org(org); err != nil {
			continue // not one of ours: we cannot ask its peers
		}
		a, err := d.Approved(ctx, org, def.Name, def.Sequence)
		if err == nil && a == nil {
			a, err = d.Approved(ctx, org, def.Name, 0)
		}
		if err != nil {
			return fmt.Errorf("%w (and reading %s's approval failed: %v)", nr, org, err)
		}
		nr.Approvals[org] = a
	}
	return nr
}

// Commit submits the commit of def as the admin of organisation mspID,
// endorsed by the first peer of every organisation, and returns the block
// that holds it.
func (d *Deployer) Commit(ctx context.Context, mspID string, def Definition) (uint64, error) {
	o, err := d.org(mspID)
	if err != nil {
		return 0, err
	}
	var endorsers []Peer
	for _, eo := range d.cfg.Orgs {
		endorsers = append(endorsers, eo.Peers[0])
	}
	args := &lb.CommitChaincodeDefinitionArgs{
		Sequence: def.Sequence, Name: def.Name, Version: def.Version,
		EndorsementPlugin: def.EndorsementPlugin, ValidationPlugin: def.ValidationPlugin,
		ValidationParameter: def.Policy, Collections: def.Collections, InitRequired: def.InitRequired,
	}
	res, err := submit(ctx, o.Admin, d.cfg.Channel, "CommitChaincodeDefinition", args, endorsers, o.Peers[0])
	if err != nil {
		return 0, fmt.Errorf("commit chaincode %s sequence %d: %w", def.Name, def.Sequence, err)
	}
	return res.Block, nil
}

// CommittedOn returns the definition of chaincode name committed on the
// channel as one peer of an organisation sees it, or nil when there is none.
func (d *Deployer) CommittedOn(ctx context.Context, mspID string, p Peer, name string) (*Committed, error) {
	o, err := d.org(mspID)
	if err != nil {
		return nil, err
	}
	res := &lb.QueryChaincodeDefinitionResult{}
	err = call(ctx, p, o.Admin, d.cfg.Channel, lifecycleCC, "QueryChaincodeDefinition", &lb.QueryChaincodeDefinitionArgs{Name: name}, res)
	if isNotFound(err) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	return &Committed{
		Definition: Definition{
			Name: name, Version: res.Version, Sequence: res.Sequence, Policy: res.ValidationParameter,
			InitRequired: res.InitRequired, Collections: res.Collections,
			EndorsementPlugin: res.EndorsementPlugin, ValidationPlugin: res.ValidationPlugin,
		},
		Approvals: res.Approvals,
	}, nil
}

// Committed returns the committed definition of chaincode name as the
// first organisation's peer sees it, or nil when there is none.
func (d *Deployer) Committed(ctx context.Context, name string) (*Committed, error) {
	o := d.first()
	return d.CommittedOn(ctx, o.MSPID, o.Peers[0], name)
}

// CommittedAll lists every definition committed on the channel, by name.
func (d *Deployer) CommittedAll(ctx context.Context) ([]Committed, error) {
	o := d.first()
	res := &lb.QueryChaincodeDefinitionsResult{}
	if err := call(ctx, o.Peers[0], o.Admin, d.cfg.Channel, lifecycleCC, "QueryChaincodeDefinitions", &lb.QueryChaincodeDefinitionsArgs{}, res); err != nil {
		return nil, err
	}
	out := make([]Committed, 0, len(res.ChaincodeDefinitions))
	for _, cd := range res.ChaincodeDefinitions {
		c, err := d.Committed(ctx, cd.Name)
		if err != nil {
			return nil, err
		}
		if c != nil {
			out = append(out, *c)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}

// WaitCommitted waits until every peer of every organisation reports
// chaincode name at sequence (or later), one progress line per peer.
func (d *Deployer) WaitCommitted(ctx context.Context, name string, sequence int64) error {
	for _, o := range d.cfg.Orgs {
		for _, p := range o.Peers {
			for {
				c, err := d.CommittedOn(ctx, o.MSPID, p, name)
				if err == nil && c != nil && c.Sequence >= sequence {
					d.say("  ✔ %s (%s): reports %s version %s sequence %d", p.Name, o.MSPID, name, c.Version, c.Sequence)
					break
				}
				if serr := d.sleep(ctx); serr != nil {
					return fmt.Errorf("%s did not report chaincode %s sequence %d (last answer: %v): %w", p.Name, name, sequence, describeWait(c, err), serr)
				}
			}
		}
	}
	return nil
}

func describeWait(c *Committed, err error) string {
	switch {
	case err != nil:
		return err.Error()
	case c == nil:
		return "not defined"
	}
	return fmt.Sprintf("sequence %d", c.Sequence)
}

// WaitForBlock waits until the first peer of every organisation holds
// block number n, e.g. an approval just committed through another
// organisation's peer, so that readiness checks and commit endorsements
// see it.
func (d *Deployer) WaitForBlock(ctx context.Context, n uint64) error {
	return d.waitHeights(ctx, n+1)
}

// waitHeights waits until the first peer of every organisation (the
// endorsers of a commit) holds at least h blocks, so that each sees every
// approval before it simulates the commit.
func (d *Deployer) waitHeights(ctx context.Context, h uint64) error {
	for _, o := range d.cfg.Orgs {
		p := o.Peers[0]
		for {
			got, err := height(ctx, p, o.Admin, d.cfg.Channel)
			if err == nil && got >= h {
				break
			}
			if serr := d.sleep(ctx); serr != nil {
				return fmt.Errorf("%s did not reach height %d (last: %d, %v): %w", p.Name, h, got, err, serr)
			}
		}
	}
	return nil
}

// orgIDs lists the configured organisations' MSP IDs.
func (d *Deployer) orgIDs() []string {
	ids := make([]string, 0, len(d.cfg.Orgs))
	for _, o := range d.cfg.Orgs {
		ids = append(ids, o.MSPID)
	}
	return ids
}
