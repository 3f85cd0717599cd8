package lifecycle

import (
	"bytes"
	"errors"
	"fmt"
	"regexp"
	"strconv"
	"strings"

	cb "github.com/hyperledger/fabric-protos-go-apiv2/common"
	mspproto "github.com/hyperledger/fabric-protos-go-apiv2/msp"
	pb "github.com/hyperledger/fabric-protos-go-apiv2/peer"
	lb "github.com/hyperledger/fabric-protos-go-apiv2/peer/lifecycle"
	"google.golang.org/protobuf/proto"

	"github.com/cairn-ledger/cairn/internal/policy"
)

const (
	// Namespace is the state namespace _lifecycle writes to.
	Namespace = "_lifecycle"

	// DefaultEndorsementPolicyRef is the channel policy a definition uses
	// when it names no validation parameter.
	DefaultEndorsementPolicyRef = "/Channel/Application/Endorsement"
	// LifecycleEndorsementPolicyRef endorses writes of definitions.
	LifecycleEndorsementPolicyRef = "/Channel/Application/LifecycleEndorsement"

	defaultEndorsementPlugin = "escc"
	defaultValidationPlugin  = "vscc"

	definitionPrefix = "definitions/"
	approvalPrefix   = "approvals/"
)

// Reader reads committed (or simulated) state. The ledger's query executor
// and simulator both satisfy it.
type Reader interface {
	GetState(namespace, key string) ([]byte, error)
}

// ChaincodeDefinition is a chaincode definition committed on a channel.
// (The type is not called Definition because the function reading it is.)
type ChaincodeDefinition struct {
	Name              string
	Version           string
	Sequence          int64
	EndorsementPlugin string
	ValidationPlugin  string
	InitRequired      bool
	// ValidationParameter is a marshalled peer.ApplicationPolicy: the
	// chaincode's endorsement policy.
	ValidationParameter []byte
	// Collections is nil when the chaincode has no private data collections.
	Collections *pb.CollectionConfigPackage
}

// EndorsementPolicy decodes the validation parameter: either a signature
// policy, or the path of a channel config policy (such as
// /Channel/Application/Endorsement).
func (d *ChaincodeDefinition) EndorsementPolicy() (*cb.SignaturePolicyEnvelope, string, error) {
	return decodeApplicationPolicy(d.ValidationParameter)
}

func decodeApplicationPolicy(b []byte) (*cb.SignaturePolicyEnvelope, string, error) {
	ap := &pb.ApplicationPolicy{}
	if err := proto.Unmarshal(b, ap); err != nil {
		return nil, "", fmt.Errorf("decode application policy: %w", err)
	}
	switch t := ap.Type.(type) {
	case *pb.ApplicationPolicy_SignaturePolicy:
		if t.SignaturePolicy == nil || t.SignaturePolicy.Rule == nil {
			return nil, "", errors.New("application policy has an empty signature policy")
		}
		return t.SignaturePolicy, "", nil
	case *pb.ApplicationPolicy_ChannelConfigPolicyReference:
		if t.ChannelConfigPolicyReference == "" {
			return nil, "", errors.New("application policy has an empty channel config policy reference")
		}
		return nil, t.ChannelConfigPolicyReference, nil
	default:
		return nil, "", errors.New("application policy has neither a signature policy nor a channel config policy reference")
	}
}

// Definition returns the committed definition of chaincode name, and false
// if none is committed. It reports user chaincodes only.
func Definition(state Reader, name string) (*ChaincodeDefinition, bool, error) {
	def, err := readDefinition(state, name)
	if err != nil || def == nil {
		return nil, false, err
	}
	return definitionOf(def), true, nil
}

// ApprovedPackageID returns the package ID that organisation mspID approved
// for chaincode name at sequence. ok is false when the organisation has no
// approval at that sequence, or when that sequence is the committed one and
// the organisation approved different parameters than were committed (it
// was outvoted, so its package must not run the chaincode, as in Fabric).
// An empty ID with ok true means the organisation approved without a
// package: its peers do not run the chaincode.
func ApprovedPackageID(state Reader, name string, sequence int64, mspID string) (packageID string, ok bool, err error) {
	appr, err := readApproval(state, mspID, name, sequence)
	if err != nil || appr == nil {
		return "", false, err
	}
	def, err := readDefinition(state, name)
	if err != nil {
		return "", false, err
	}
	if def != nil && def.Sequence == sequence && len(paramsOfApproval(appr).diff(paramsOfDefinition(def))) > 0 {
		return "", false, nil
	}
	return appr.GetSource().GetLocalPackage().GetPackageId(), true, nil
}

func definitionKey(name string) string { return definitionPrefix + name }

func approvalKey(mspID, name string, sequence int64) string {
	return approvalPrefix + mspID + "/" + name + "#" + strconv.FormatInt(sequence, 10)
}

// approvalOrg returns the MSP ID named by a well-formed approval key.
// Chaincode names cannot hold '/', so the last '/' separates the org from
// the rest even if an MSP ID contained one.
func approvalOrg(key string) (string, bool) {
	rest, ok := strings.CutPrefix(key, approvalPrefix)
	if !ok {
		return "", false
	}
	i := strings.LastIndexByte(rest, '/')
	if i <= 0 {
		return "", false
	}
	name, seq, ok := strings.Cut(rest[i+1:], "#")
	if !ok || validateName(name) != nil {
		return "", false
	}
	if n, err := strconv.ParseInt(seq, 10, 64); err != nil || n < 1 || strconv.FormatInt(n, 10) != seq {
		return "", false
	}
	return rest[:i], true
}

var deterministic = proto.MarshalOptions{Deterministic: true}

// definitionOf is the committed definition as the peer uses it.
func definitionOf(def *lb.CommitChaincodeDefinitionArgs) *ChaincodeDefinition {
	return &ChaincodeDefinition{
		Name:                def.Name,
		Version:             def.Version,
		Sequence:            def.Sequence,
		EndorsementPlugin:   def.EndorsementPlugin,
		ValidationPlugin:    def.ValidationPlugin,
		InitRequired:        def.InitRequired,
		ValidationParameter: def.ValidationParameter,
		Collections:         def.Collections,
	}
}

func readDefinition(state Reader, name string) (*lb.CommitChaincodeDefinitionArgs, error) {
	b, err := state.GetState(Namespace, definitionKey(name))
	if err != nil {
		return nil, fmt.Errorf("read definition of %s: %w", name, err)
	}
	if b == nil {
		return nil, nil
	}
	def := &lb.CommitChaincodeDefinitionArgs{}
	if err := proto.Unmarshal(b, def); err != nil {
		return nil, fmt.Errorf("decode definition of %s: %w", name, err)
	}
	return def, nil
}

func readApproval(state Reader, mspID, name string, sequence int64) (*lb.ApproveChaincodeDefinitionForMyOrgArgs, error) {
	key := approvalKey(mspID, name, sequence)
	b, err := state.GetState(Namespace, key)
	if err != nil {
		return nil, fmt.Errorf("read approval %s: %w", key, err)
	}
	if b == nil {
		return nil, nil
	}
	appr := &lb.ApproveChaincodeDefinitionForMyOrgArgs{}
	if err := proto.Unmarshal(b, appr); err != nil {
		return nil, fmt.Errorf("decode approval %s: %w", key, err)
	}
	return appr, nil
}

// committedSequence is 0 when nothing is committed.
func committedSequence(state Reader, name string) (int64, *lb.CommitChaincodeDefinitionArgs, error) {
	def, err := readDefinition(state, name)
	if err != nil {
		return 0, nil, fmt.Errorf("could not get current sequence: %w", err)
	}
	if def == nil {
		return 0, nil, nil
	}
	return def.Sequence, def, nil
}

// params are the parts of a definition that organisations must agree on,
// besides the sequence. The package ID is not among them: each org names
// its own.
type params struct {
	Version             string
	EndorsementPlugin   string
	InitRequired        bool
	ValidationPlugin    string
	ValidationParameter []byte
	Collections         *pb.CollectionConfigPackage // nil when empty
}

func normalizeCollections(c *pb.CollectionConfigPackage) *pb.CollectionConfigPackage {
	if c == nil || len(c.Config) == 0 {
		return nil
	}
	return c
}

// withDefaults fills empty fields as Fabric's SetChaincodeDefinitionDefaults.
func (p params) withDefaults() params {
	if p.EndorsementPlugin == "" {
		p.EndorsementPlugin = defaultEndorsementPlugin
	}
	if p.ValidationPlugin == "" {
		p.ValidationPlugin = defaultValidationPlugin
	}
	if len(p.ValidationParameter) == 0 {
		p.ValidationParameter = defaultValidationParameter()
	}
	p.Collections = normalizeCollections(p.Collections)
	return p
}

func defaultValidationParameter() []byte {
	b, err := deterministic.Marshal(&pb.ApplicationPolicy{
		Type: &pb.ApplicationPolicy_ChannelConfigPolicyReference{ChannelConfigPolicyReference: DefaultEndorsementPolicyRef},
	})
	if err != nil {
		panic("lifecycle: marshal of a constant ApplicationPolicy failed: " + err.Error())
	}
	return b
}

func paramsOfApproval(a *lb.ApproveChaincodeDefinitionForMyOrgArgs) params {
	return params{
		Version: a.Version, EndorsementPlugin: a.EndorsementPlugin, InitRequired: a.InitRequired,
		ValidationPlugin: a.ValidationPlugin, ValidationParameter: a.ValidationParameter,
		Collections: normalizeCollections(a.Collections),
	}
}

func paramsOfDefinition(d *lb.CommitChaincodeDefinitionArgs) params {
	return params{
		Version: d.Version, EndorsementPlugin: d.EndorsementPlugin, InitRequired: d.InitRequired,
		ValidationPlugin: d.ValidationPlugin, ValidationParameter: d.ValidationParameter,
		Collections: normalizeCollections(d.Collections),
	}
}

// fieldDiff is one field on which two definitions disagree.
type fieldDiff struct {
	Field string
	Have  string // in the stored (approved or committed) definition
	Want  string // in the request
}

// diff lists the fields where have (stored) differs from want (requested),
// in a fixed order.
func (have params) diff(want params) []fieldDiff {
	var out []fieldDiff
	if have.Version != want.Version {
		out = append(out, fieldDiff{"Version", quote(have.Version), quote(want.Version)})
	}
	if have.EndorsementPlugin != want.EndorsementPlugin {
		out = append(out, fieldDiff{"EndorsementPlugin", quote(have.EndorsementPlugin), quote(want.EndorsementPlugin)})
	}
	if have.InitRequired != want.InitRequired {
		out = append(out, fieldDiff{"InitRequired", strconv.FormatBool(have.InitRequired), strconv.FormatBool(want.InitRequired)})
	}
	if have.ValidationPlugin != want.ValidationPlugin {
		out = append(out, fieldDiff{"ValidationPlugin", quote(have.ValidationPlugin), quote(want.ValidationPlugin)})
	}
	if !bytes.Equal(have.ValidationParameter, want.ValidationParameter) {
		h, w := describePolicy(have.ValidationParameter), describePolicy(want.ValidationParameter)
		if h == w {
			// Two encodings of the same rule: show the bytes, since
			// Fabric compares bytes and so do we.
			h, w = fmt.Sprintf("%s (bytes %x)", h, have.ValidationParameter), fmt.Sprintf("%s (bytes %x)", w, want.ValidationParameter)
		}
		out = append(out, fieldDiff{"ValidationParameter", h, w})
	}
	if !proto.Equal(have.Collections, want.Collections) {
		out = append(out, fieldDiff{"Collections", describeCollections(have.Collections), describeCollections(want.Collections)})
	}
	return out
}

func quote(s string) string { return "'" + s + "'" }

// describePolicy renders a validation parameter for people: the policy
// language for signature policies, the path for channel policy references.
func describePolicy(b []byte) string {
	spe, ref, err := decodeApplicationPolicy(b)
	switch {
	case err != nil:
		return fmt.Sprintf("undecodable policy %x", b)
	case ref != "":
		return "channel policy " + quote(ref)
	}
	s, err := policy.FormatDSL(spe)
	if err != nil {
		return fmt.Sprintf("signature policy %x", b)
	}
	return "signature policy " + s
}

func describeCollections(c *pb.CollectionConfigPackage) string {
	if c == nil {
		return "none"
	}
	names := make([]string, 0, len(c.Config))
	for _, cc := range c.Config {
		if s := cc.GetStaticCollectionConfig(); s != nil {
			names = append(names, s.Name)
		} else {
			names = append(names, "?")
		}
	}
	return "[" + strings.Join(names, ", ") + "]"
}

func describeDiffs(diffs []fieldDiff) string {
	parts := make([]string, len(diffs))
	for i, d := range diffs {
		parts[i] = fmt.Sprintf("%s is %s in the approval but %s in the request", d.Field, d.Have, d.Want)
	}
	return strings.Join(parts, "; ")
}

func fieldNames(diffs []fieldDiff) []string {
	out := make([]string, len(diffs))
	for i, d := range diffs {
		out[i] = d.Field
	}
	return out
}

// Fabric's rules (core/chaincode/lifecycle/scc.go).
var (
	chaincodeNameRegExp    = regexp.MustCompile(`^[a-zA-Z0-9]+([-_][a-zA-Z0-9]+)*$`)
	chaincodeVersionRegExp = regexp.MustCompile(`^[A-Za-z0-9_.+-]+$`)
	collectionNameRegExp   = regexp.MustCompile(`^[A-Za-z0-9-]+([A-Za-z0-9_-]+)*$`)
)

func isSystemChaincode(name string) bool {
	switch name {
	case "cscc", "escc", "lscc", "qscc", "vscc":
		return true
	}
	return false
}

func validateName(name string) error {
	if !chaincodeNameRegExp.MatchString(name) {
		return fmt.Errorf("invalid chaincode name '%s'. Names can only consist of alphanumerics, '_', and '-' and can only begin with alphanumerics", name)
	}
	if isSystemChaincode(name) {
		return fmt.Errorf("chaincode name '%s' is the name of a system chaincode", name)
	}
	return nil
}

// validateDefinition checks a requested definition as Fabric's
// validateInput does, with the channel's org list standing in for its MSP
// manager. committed may be nil.
func validateDefinition(name string, p params, orgs []string, committed *lb.CommitChaincodeDefinitionArgs) error {
	if err := validateName(name); err != nil {
		return err
	}
	if !chaincodeVersionRegExp.MatchString(p.Version) {
		return fmt.Errorf("invalid chaincode version '%s'. Versions can only consist of alphanumerics, '_', '-', '+', and '.'", p.Version)
	}
	if _, _, err := decodeApplicationPolicy(p.ValidationParameter); err != nil {
		return fmt.Errorf("invalid validation parameter: %w", err)
	}
	colls, err := staticCollections(p.Collections)
	if err != nil {
		return err
	}
	if err := validateCollections(colls, orgs); err != nil {
		return err
	}
	if committed != nil {
		return validateCollectionsAgainstCommitted(colls, normalizeCollections(committed.Collections))
	}
	return nil
}

func staticCollections(pkg *pb.CollectionConfigPackage) ([]*pb.StaticCollectionConfig, error) {
	if pkg == nil {
		return nil, nil
	}
	out := make([]*pb.StaticCollectionConfig, len(pkg.Config))
	for i, c := range pkg.Config {
		s := c.GetStaticCollectionConfig()
		if s == nil {
			return nil, errors.New("collection configuration is empty")
		}
		out[i] = s
	}
	return out, nil
}

func validateCollections(colls []*pb.StaticCollectionConfig, orgs []string) error {
	seen := map[string]bool{}
	for _, c := range colls {
		if !collectionNameRegExp.MatchString(c.Name) {
			return fmt.Errorf("invalid collection name '%s'. Names can only consist of alphanumerics, '_', and '-' and cannot begin with '_'", c.Name)
		}
		if seen[c.Name] {
			return fmt.Errorf("collection-name: %s -- found duplicate in collection configuration", c.Name)
		}
		seen[c.Name] = true
		if c.MaximumPeerCount < c.RequiredPeerCount {
			return fmt.Errorf("collection-name: %s -- maximum peer count (%d) cannot be less than the required peer count (%d)", c.Name, c.MaximumPeerCount, c.RequiredPeerCount)
		}
		if c.RequiredPeerCount < 0 {
			return fmt.Errorf("collection-name: %s -- requiredPeerCount (%d) cannot be less than zero", c.Name, c.RequiredPeerCount)
		}
		if err := validateMemberOrgsPolicy(c, orgs); err != nil {
			return err
		}
	}
	return nil
}

func validateMemberOrgsPolicy(c *pb.StaticCollectionConfig, orgs []string) error {
	if c.MemberOrgsPolicy == nil {
		return fmt.Errorf("collection member policy is not set for collection '%s'", c.Name)
	}
	spe := c.MemberOrgsPolicy.GetSignaturePolicy()
	if spe == nil {
		return fmt.Errorf("collection member org policy is empty for collection '%s'", c.Name)
	}
	if _, err := policy.FormatDSL(spe); err != nil {
		return fmt.Errorf("invalid member org policy for collection '%s': %w", c.Name, err)
	}
	if err := validateOrConcat(spe.Rule, 0); err != nil {
		return fmt.Errorf("collection-name: %s -- error in member org policy: %w", c.Name, err)
	}
	member := map[string]bool{}
	for _, o := range orgs {
		member[o] = true
	}
	for _, p := range spe.Identities {
		mspID, ok := principalMSPID(p.GetPrincipalClassification(), p.GetPrincipal())
		if !ok {
			return fmt.Errorf("collection-name: %s -- principal type %v is not supported", c.Name, p.GetPrincipalClassification())
		}
		if !member[mspID] {
			return fmt.Errorf("collection-name: %s -- collection member '%s' is not part of the channel", c.Name, mspID)
		}
	}
	return nil
}

// validateOrConcat checks a member policy is only ORs of principals, as
// Fabric requires. depth bounds recursion on hostile input.
func validateOrConcat(sp *cb.SignaturePolicy, depth int) error {
	if depth > 64 {
		return errors.New("signature policy is nested too deeply")
	}
	n := sp.GetNOutOf()
	if n == nil {
		return nil
	}
	if n.N != 1 {
		return fmt.Errorf("signature policy is not an OR concatenation, NOutOf %d", n.N)
	}
	for _, r := range n.Rules {
		if err := validateOrConcat(r, depth+1); err != nil {
			return err
		}
	}
	return nil
}

func validateCollectionsAgainstCommitted(proposed []*pb.StaticCollectionConfig, committed *pb.CollectionConfigPackage) error {
	if committed == nil {
		return nil
	}
	if len(proposed) == 0 {
		return errors.New("the proposed collection config does not contain previously defined collections")
	}
	byName := map[string]*pb.StaticCollectionConfig{}
	for _, c := range proposed {
		byName[c.Name] = c
	}
	for _, cc := range committed.Config {
		old := cc.GetStaticCollectionConfig()
		if old == nil {
			return errors.New("unknown collection configuration type")
		}
		c, ok := byName[old.Name]
		if !ok {
			return fmt.Errorf("existing collection [%s] missing in the proposed collection configuration", old.Name)
		}
		if c.BlockToLive != old.BlockToLive {
			return fmt.Errorf("the BlockToLive in an existing collection [%s] modified. Existing value [%d]", old.Name, old.BlockToLive)
		}
	}
	return nil
}

// principalMSPID returns the MSP a member-policy principal belongs to.
func principalMSPID(class mspproto.MSPPrincipal_Classification, b []byte) (string, bool) {
	switch class {
	case mspproto.MSPPrincipal_ROLE:
		r := &mspproto.MSPRole{}
		if proto.Unmarshal(b, r) != nil {
			return "", false
		}
		return r.MspIdentifier, true
	case mspproto.MSPPrincipal_ORGANIZATION_UNIT:
		ou := &mspproto.OrganizationUnit{}
		if proto.Unmarshal(b, ou) != nil {
			return "", false
		}
		return ou.MspIdentifier, true
	case mspproto.MSPPrincipal_IDENTITY:
		id := &mspproto.SerializedIdentity{}
		if proto.Unmarshal(b, id) != nil {
			return "", false
		}
		return id.Mspid, true
	}
	return "", false
}
