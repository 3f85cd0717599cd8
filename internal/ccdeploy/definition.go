package ccdeploy

import (
	"bytes"
	"errors"
	"fmt"
	"sort"
	"strings"

	pb "github.com/hyperledger/fabric-protos-go-apiv2/peer"
	lb "github.com/hyperledger/fabric-protos-go-apiv2/peer/lifecycle"
	"google.golang.org/protobuf/proto"

	"github.com/cairn-ledger/cairn/internal/policy"
)

// DefaultPolicyRef is the channel policy a definition without an explicit
// endorsement policy uses, as in Fabric.
const DefaultPolicyRef = "/Channel/Application/Endorsement"

// Fabric's defaults for the plugins, filled in by _lifecycle when empty.
const (
	defaultEndorsementPlugin = "escc"
	defaultValidationPlugin  = "vscc"
)

// Field names used when two definitions (or approvals) disagree. They match
// the command-line flags that set them, so users know what to change.
const (
	FieldSequence          = "sequence"
	FieldVersion           = "version"
	FieldPolicy            = "policy"
	FieldInitRequired      = "init-required"
	FieldCollections       = "collections"
	FieldPackage           = "package"
	FieldEndorsementPlugin = "endorsement-plugin"
	FieldValidationPlugin  = "validation-plugin"
)

// fieldOrder is the order fields are reported in.
var fieldOrder = []string{FieldSequence, FieldVersion, FieldPolicy, FieldInitRequired, FieldCollections, FieldPackage, FieldEndorsementPlugin, FieldValidationPlugin}

// Definition is a chaincode definition as an organisation approves it (with
// the package it runs) or as it is committed (PackageID empty).
type Definition struct {
	Name     string
	Version  string
	Sequence int64
	// PackageID is the installed package the approving organisation runs;
	// empty approves the definition without one (the org's peers will not
	// run the chaincode) and is always empty in a committed definition.
	PackageID string
	// Policy is the endorsement policy, a marshalled peer.ApplicationPolicy;
	// nil means DefaultPolicyRef.
	Policy            []byte
	InitRequired      bool
	Collections       *pb.CollectionConfigPackage
	EndorsementPlugin string
	ValidationPlugin  string
}

// ParsePolicy turns --policy into a marshalled peer.ApplicationPolicy: a
// path starting with /Channel/ references a channel policy (Fabric's
// --channel-config-policy), anything else is the signature policy language
// (Fabric's --signature-policy), e.g. "OR('Org1MSP.peer','Org2MSP.peer')".
// An empty expression returns nil: the channel's default.
func ParsePolicy(expr string) ([]byte, error) {
	expr = strings.TrimSpace(expr)
	if expr == "" {
		return nil, nil
	}
	var ap *pb.ApplicationPolicy
	if strings.HasPrefix(expr, "/Channel/") {
		ap = &pb.ApplicationPolicy{Type: &pb.ApplicationPolicy_ChannelConfigPolicyReference{ChannelConfigPolicyReference: expr}}
	} else {
		spe, err := policy.ParseDSL(expr)
		if err != nil {
			return nil, fmt.Errorf("endorsement policy %q: %w", expr, err)
		}
		ap = &pb.ApplicationPolicy{Type: &pb.ApplicationPolicy_SignaturePolicy{SignaturePolicy: spe}}
	}
	raw, err := proto.MarshalOptions{Deterministic: true}.Marshal(ap)
	if err != nil {
		return nil, fmt.Errorf("marshal endorsement policy: %w", err)
	}
	return raw, nil
}

// DescribePolicy renders a marshalled peer.ApplicationPolicy for people.
func DescribePolicy(raw []byte) string {
	if len(raw) == 0 {
		return DefaultPolicyRef
	}
	ap := &pb.ApplicationPolicy{}
	if err := proto.Unmarshal(raw, ap); err != nil {
		return fmt.Sprintf("undecodable policy %x", raw)
	}
	if ref := ap.GetChannelConfigPolicyReference(); ref != "" {
		return ref
	}
	if spe := ap.GetSignaturePolicy(); spe != nil {
		if s, err := policy.FormatDSL(spe); err == nil {
			return s
		}
	}
	return fmt.Sprintf("policy %x", raw)
}

// withDefaults fills empty fields as _lifecycle does before it stores or
// compares a definition, so a request and what the peer reports compare equal.
func (d Definition) withDefaults() Definition {
	if d.EndorsementPlugin == "" {
		d.EndorsementPlugin = defaultEndorsementPlugin
	}
	if d.ValidationPlugin == "" {
		d.ValidationPlugin = defaultValidationPlugin
	}
	if len(d.Policy) == 0 {
		d.Policy = defaultPolicy()
	}
	if d.Collections != nil && len(d.Collections.Config) == 0 {
		d.Collections = nil
	}
	return d
}

func defaultPolicy() []byte {
	raw, err := ParsePolicy(DefaultPolicyRef)
	if err != nil {
		panic("ccdeploy: the default policy reference does not marshal: " + err.Error())
	}
	return raw
}

// samePolicy compares two policies as _lifecycle does (bytes), except that
// two encodings of the same rule are also equal: our own marshalling and
// another tool's may order fields differently.
func samePolicy(a, b []byte) bool {
	if bytes.Equal(a, b) {
		return true
	}
	pa, pb2 := &pb.ApplicationPolicy{}, &pb.ApplicationPolicy{}
	if proto.Unmarshal(a, pa) != nil || proto.Unmarshal(b, pb2) != nil {
		return false
	}
	return proto.Equal(pa, pb2)
}

// Diff names the fields where a and b differ, in a fixed order. Empty
// fields compare equal to _lifecycle's defaults. The package is compared
// only when both name one (a committed definition names none).
func Diff(a, b Definition) []string {
	a, b = a.withDefaults(), b.withDefaults()
	var out []string
	if a.Sequence != b.Sequence {
		out = append(out, FieldSequence)
	}
	if a.Version != b.Version {
		out = append(out, FieldVersion)
	}
	if !samePolicy(a.Policy, b.Policy) {
		out = append(out, FieldPolicy)
	}
	if a.InitRequired != b.InitRequired {
		out = append(out, FieldInitRequired)
	}
	if !proto.Equal(a.Collections, b.Collections) {
		out = append(out, FieldCollections)
	}
	if a.PackageID != "" && b.PackageID != "" && a.PackageID != b.PackageID {
		out = append(out, FieldPackage)
	}
	if a.EndorsementPlugin != b.EndorsementPlugin {
		out = append(out, FieldEndorsementPlugin)
	}
	if a.ValidationPlugin != b.ValidationPlugin {
		out = append(out, FieldValidationPlugin)
	}
	return out
}

// describeField renders one field of d for an error message.
func describeField(d Definition, field string) string {
	d = d.withDefaults()
	switch field {
	case FieldSequence:
		return fmt.Sprintf("sequence %d", d.Sequence)
	case FieldVersion:
		return fmt.Sprintf("version %q", d.Version)
	case FieldPolicy:
		return "policy " + DescribePolicy(d.Policy)
	case FieldInitRequired:
		return fmt.Sprintf("init-required %t", d.InitRequired)
	case FieldCollections:
		return "collections " + describeCollections(d.Collections)
	case FieldPackage:
		if d.PackageID == "" {
			return "no package"
		}
		return "package " + d.PackageID
	case FieldEndorsementPlugin:
		return "endorsement-plugin " + d.EndorsementPlugin
	case FieldValidationPlugin:
		return "validation-plugin " + d.ValidationPlugin
	}
	return field
}

func describeCollections(c *pb.CollectionConfigPackage) string {
	if c == nil {
		return "none"
	}
	var names []string
	for _, cc := range c.GetConfig() {
		names = append(names, cc.GetStaticCollectionConfig().GetName())
	}
	return "[" + strings.Join(names, ", ") + "]"
}

// ErrNotReady marks a definition that cannot be committed because not
// enough organisations approved it as requested.
var ErrNotReady = errors.New("chaincode definition is not ready to commit")

// NotReadyError says which organisations have not approved the requested
// definition and, for those whose approval differs, on which fields.
type NotReadyError struct {
	Channel string
	Want    Definition
	// Approved maps every organisation of the channel to whether it
	// approved exactly Want (CheckCommitReadiness).
	Approved map[string]bool
	// Approvals holds each organisation's latest approval of the
	// chaincode (nil when it has approved none).
	Approvals map[string]*Definition
	// Need is how many approvals a commit needs.
	Need int
}

// Fields names every field on which some organisation's approval differs
// from the requested definition, in a fixed order.
func (e *NotReadyError) Fields() []string {
	seen := map[string]bool{}
	for org, a := range e.Approvals {
		if a == nil || e.Approved[org] {
			continue
		}
		for _, f := range Diff(*a, e.Want) {
			seen[f] = true
		}
	}
	var out []string
	for _, f := range fieldOrder {
		if seen[f] {
			out = append(out, f)
		}
	}
	return out
}

func (e *NotReadyError) Error() string {
	orgs := make([]string, 0, len(e.Approved))
	approved := 0
	for org, ok := range e.Approved {
		orgs = append(orgs, org)
		if ok {
			approved++
		}
	}
	sort.Strings(orgs)
	var b strings.Builder
	fmt.Fprintf(&b, "chaincode %s sequence %d on channel %s is approved by %d of %d organisations (%d needed)",
		e.Want.Name, e.Want.Sequence, e.Channel, approved, len(orgs), e.Need)
	if fields := e.Fields(); len(fields) > 0 {
		fmt.Fprintf(&b, "; the approvals differ in: %s", strings.Join(fields, ", "))
	}
	for _, org := range orgs {
		if e.Approved[org] {
			continue
		}
		a := e.Approvals[org]
		if a == nil {
			fmt.Fprintf(&b, "; %s has not approved chaincode %s", org, e.Want.Name)
			continue
		}
		diff := Diff(*a, e.Want)
		parts := make([]string, 0, len(diff))
		for _, f := range diff {
			parts = append(parts, fmt.Sprintf("%s (requested %s)", describeField(*a, f), describeField(e.Want, f)))
		}
		fmt.Fprintf(&b, "; %s approved %s", org, strings.Join(parts, ", "))
	}
	return b.String()
}

// Unwrap makes errors.Is(err, ErrNotReady) true.
func (e *NotReadyError) Unwrap() error { return ErrNotReady }

func fromApproved(name string, r *lb.QueryApprovedChaincodeDefinitionResult) *Definition {
	return &Definition{
		Name: name, Version: r.Version, Sequence: r.Sequence,
		PackageID: r.GetSource().GetLocalPackage().GetPackageId(),
		Policy:    r.ValidationParameter, InitRequired: r.InitRequired, Collections: r.Collections,
		EndorsementPlugin: r.EndorsementPlugin, ValidationPlugin: r.ValidationPlugin,
	}
}

// Committed is a definition committed on a channel.
type Committed struct {
	Definition
	// Approvals maps each organisation to whether it approved exactly
	// this definition.
	Approvals map[string]bool
}
