package ccdeploy

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"

	"github.com/cairn-ledger/cairn/chaincode/ccpackage"
)

// Request is what Deploy deploys.
type Request struct {
	// Name and Version of the chaincode definition.
	Name    string
	Version string
	// Package is the chaincode package file (see chaincode/ccpackage).
	Package []byte
	// Sequence is the definition's sequence; 0 picks it: 1 for a new
	// chaincode, the committed sequence + 1 for a changed one.
	Sequence int64
	// Policy is the endorsement policy (see ParsePolicy); nil is the
	// channel's default.
	Policy       []byte
	InitRequired bool
}

// Validate reports a missing field.
func (r Request) Validate() error {
	switch {
	case r.Name == "":
		return errors.New("chaincode name must be set")
	case r.Version == "":
		return errors.New("chaincode version must be set")
	case len(r.Package) == 0:
		return errors.New("chaincode package must be set")
	case r.Sequence < 0:
		return fmt.Errorf("sequence %d is negative", r.Sequence)
	}
	return nil
}

// Result is what Deploy did.
type Result struct {
	PackageID string
	// Sequence is the committed sequence after Deploy.
	Sequence int64
	// Previous is the sequence committed before (0: a new chaincode).
	Previous int64
	// Changed names what differs from the previous definition (FieldPolicy,
	// FieldPackage, ...); empty for a new chaincode.
	Changed []string
	// Unchanged is true when the definition was already committed as
	// requested and Deploy did nothing.
	Unchanged bool
}

func packageID(pkg []byte) (string, error) {
	parsed, err := ccpackage.Parse(pkg)
	if err != nil {
		return "", err
	}
	return ccpackage.PackageID(parsed.Metadata.Label, pkg), nil
}

// plan decides the sequence to deploy want at, given the definition
// committed now (nil if none) and the package each organisation approved
// for it. nothing is true when the committed definition already is want.
func plan(want Definition, requested int64, committed *Definition, running map[string]string) (seq int64, changed []string, nothing bool, err error) {
	if committed == nil {
		if requested == 0 {
			requested = 1
		}
		return requested, nil, false, nil
	}
	have, w := *committed, want
	have.Sequence, w.Sequence, have.PackageID, w.PackageID = 0, 0, "", ""
	changed = Diff(have, w)
	orgs := make([]string, 0, len(running))
	for org := range running {
		orgs = append(orgs, org)
	}
	sort.Strings(orgs)
	for _, org := range orgs {
		if running[org] != want.PackageID {
			changed = append(changed, FieldPackage)
			break
		}
	}
	next := committed.Sequence + 1
	switch {
	case len(changed) == 0 && (requested == 0 || requested == committed.Sequence):
		return committed.Sequence, nil, true, nil
	case requested == 0:
		return next, changed, false, nil
	case requested <= committed.Sequence:
		return 0, changed, false, fmt.Errorf("sequence %d of chaincode %s is already committed with a different %s; the next sequence is %d",
			requested, want.Name, strings.Join(changed, ", "), next)
	}
	return requested, changed, false, nil
}

// Deploy runs the whole lifecycle for every organisation: install the
// package on every peer, approve the definition for every organisation,
// check commit readiness, commit, and wait until every peer reports the
// definition. Steps already done (a package installed, an identical
// approval) are skipped, so a failed Deploy can simply be run again. When
// the chaincode is committed with a different package, version, policy or
// init-required, Deploy upgrades it at the next sequence; when nothing
// changed, it says so and does nothing. Collections of a committed
// definition are kept.
func (d *Deployer) Deploy(ctx context.Context, req Request) (*Result, error) {
	if err := req.Validate(); err != nil {
		return nil, err
	}
	id, err := packageID(req.Package)
	if err != nil {
		return nil, err
	}
	want := Definition{Name: req.Name, Version: req.Version, PackageID: id, Policy: req.Policy, InitRequired: req.InitRequired}
	committed, err := d.Committed(ctx, req.Name)
	if err != nil {
		return nil, fmt.Errorf("query committed definition of %s: %w", req.Name, err)
	}
	res := &Result{PackageID: id}
	var have *Definition
	running := map[string]string{}
	if committed != nil {
		have = &committed.Definition
		res.Previous = committed.Sequence
		want.Collections = committed.Collections
		for _, o := range d.cfg.Orgs {
			a, err := d.Approved(ctx, o.MSPID, req.Name, committed.Sequence)
			if err != nil {
				return nil, fmt.Errorf("query %s's approval of %s sequence %d: %w", o.MSPID, req.Name, committed.Sequence, err)
			}
			if a != nil {
				running[o.MSPID] = a.PackageID
			} else {
				running[o.MSPID] = ""
			}
		}
	}
	seq, changed, nothing, err := plan(want, req.Sequence, have, running)
	if err != nil {
		return nil, err
	}
	res.Sequence, res.Changed = seq, changed
	if nothing {
		res.Unchanged = true
		d.say("✔ chaincode %s is already committed on channel %s at sequence %d with this package, version, policy and init-required: nothing to do",
			req.Name, d.cfg.Channel, seq)
		return res, nil
	}
	want.Sequence = seq
	if committed == nil {
		d.say("» deploying chaincode %s version %s as sequence %d on channel %s (package %s)", req.Name, req.Version, seq, d.cfg.Channel, id)
	} else {
		d.say("» upgrading chaincode %s on channel %s from sequence %d to %d (changed: %s)", req.Name, d.cfg.Channel, committed.Sequence, seq, strings.Join(changed, ", "))
	}

	d.say("» installing package %s on every peer", id)
	if _, err := d.Install(ctx, req.Package); err != nil {
		return nil, err
	}

	d.say("» approving %s sequence %d for every organisation", req.Name, seq)
	var last uint64
	for _, o := range d.cfg.Orgs {
		a, err := d.Approved(ctx, o.MSPID, req.Name, seq)
		if err != nil {
			return nil, fmt.Errorf("query %s's approval of %s sequence %d: %w", o.MSPID, req.Name, seq, err)
		}
		if a != nil && a.PackageID == want.PackageID && len(Diff(*a, want)) == 0 {
			d.say("  ✔ %s: already approved", o.MSPID)
			continue
		}
		block, err := d.Approve(ctx, o.MSPID, want)
		if err != nil {
			return nil, err
		}
		d.say("  ✔ %s: approved (block %d)", o.MSPID, block)
		last = max(last, block)
	}
	if last > 0 {
		// Each approval was seen committed by its own organisation's
		// peer; every endorser of the commit must hold all of them.
		if err := d.waitHeights(ctx, last+1); err != nil {
			return nil, err
		}
	}

	d.say("» checking commit readiness")
	approved, err := d.Readiness(ctx, want)
	if err != nil {
		return nil, err
	}
	orgs := make([]string, 0, len(approved))
	for org := range approved {
		orgs = append(orgs, org)
	}
	sort.Strings(orgs)
	for _, org := range orgs {
		if approved[org] {
			d.say("  ✔ %s: approved", org)
		} else {
			d.say("  ✘ %s: not approved", org)
		}
	}
	if err := d.notReady(ctx, want, approved, 0); err != nil {
		return nil, err
	}

	d.say("» committing %s sequence %d", req.Name, seq)
	block, err := d.Commit(ctx, d.first().MSPID, want)
	if err != nil {
		return nil, err
	}
	d.say("  ✔ committed in block %d (endorsed by %s)", block, strings.Join(d.orgIDs(), ", "))

	d.say("» waiting for every peer to report %s sequence %d", req.Name, seq)
	if err := d.WaitCommitted(ctx, req.Name, seq); err != nil {
		return nil, err
	}
	d.say("✔ chaincode %s version %s sequence %d is committed on channel %s", req.Name, req.Version, seq, d.cfg.Channel)
	return res, nil
}
