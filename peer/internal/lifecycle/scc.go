package lifecycle

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"

	"github.com/hyperledger/fabric-protos-go-apiv2/ledger/queryresult"
	pb "github.com/hyperledger/fabric-protos-go-apiv2/peer"
	lb "github.com/hyperledger/fabric-protos-go-apiv2/peer/lifecycle"
	"google.golang.org/protobuf/proto"

	"github.com/cairn-ledger/cairn/chaincode/ccpackage"
)

// Function names, as clients send them in Args[0].
const (
	InstallChaincodeFuncName                   = "InstallChaincode"
	QueryInstalledChaincodeFuncName            = "QueryInstalledChaincode"
	GetInstalledChaincodePackageFuncName       = "GetInstalledChaincodePackage"
	QueryInstalledChaincodesFuncName           = "QueryInstalledChaincodes"
	ApproveChaincodeDefinitionForMyOrgFuncName = "ApproveChaincodeDefinitionForMyOrg"
	QueryApprovedChaincodeDefinitionFuncName   = "QueryApprovedChaincodeDefinition"
	CheckCommitReadinessFuncName               = "CheckCommitReadiness"
	CommitChaincodeDefinitionFuncName          = "CommitChaincodeDefinition"
	QueryChaincodeDefinitionFuncName           = "QueryChaincodeDefinition"
	QueryChaincodeDefinitionsFuncName          = "QueryChaincodeDefinitions"
)

// Response statuses, as Fabric's shim uses them.
const (
	statusOK       = 200
	statusNotFound = 404
	statusError    = 500
)

// ResultsIterator yields range-scan results in key order; Next returns
// (nil, nil) at the end. It is an alias of an unnamed interface so that the
// ledger's iterator type satisfies State without either package importing
// the other.
type ResultsIterator = interface {
	Next() (*queryresult.KV, error)
	Close()
}

// State is the channel state seen by one simulated transaction; reads and
// writes are recorded into the transaction's read-write set.
type State interface {
	GetState(namespace, key string) ([]byte, error)
	SetState(namespace, key string, value []byte) error
	GetStateRangeScanIterator(namespace, startKey, endKey string) (ResultsIterator, error)
}

// Config configures an SCC.
type Config struct {
	// PackageDir holds installed packages, one file per package ID.
	PackageDir string
	// MSPID is this peer's organisation.
	MSPID string
	// Logger receives one line per successful install, approval and
	// commit; nil discards.
	Logger *slog.Logger
}

// Validate reports a missing setting.
func (c Config) Validate() error {
	if c.PackageDir == "" {
		return errors.New("lifecycle: PackageDir must be set")
	}
	if c.MSPID == "" {
		return errors.New("lifecycle: MSPID must be set")
	}
	return nil
}

// SCC is the `_lifecycle` system chaincode of one peer.
type SCC struct {
	mspID    string
	log      *slog.Logger
	packages *packageStore
}

// New opens (creating if needed) the package directory and returns the
// system chaincode.
func New(cfg Config) (*SCC, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	store, err := openPackageStore(cfg.PackageDir)
	if err != nil {
		return nil, fmt.Errorf("lifecycle: %w", err)
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &SCC{mspID: cfg.MSPID, log: log, packages: store}, nil
}

// Invocation is one call of the system chaincode.
type Invocation struct {
	// ChannelID is empty for channel-less calls (install and the queries of
	// installed packages).
	ChannelID string
	// Args are the proposal's arguments: function name, marshalled
	// lifecycle.<Fn>Args.
	Args [][]byte
	// State is the transaction's view of the channel state; nil for
	// channel-less calls.
	State State
	// CreatorMSPID is the MSP of the proposal's creator.
	CreatorMSPID string
	// CreatorIsAdmin is the endorser's verdict on whether the creator holds
	// the admin role of its MSP.
	CreatorIsAdmin bool
	// OrgMSPIDs are the channel's application organisations.
	OrgMSPIDs []string
}

// request is one invocation being served.
type request struct {
	scc *SCC
	inv *Invocation
}

// notFoundError makes Invoke answer with status 404, as Fabric does for an
// undefined namespace.
type notFoundError struct{ msg string }

func (e *notFoundError) Error() string { return e.msg }

// Invoke runs one function and returns the chaincode response: status 200
// with the marshalled lifecycle.<Fn>Result, or an error status with a
// message. It never panics on client bytes.
func (s *SCC) Invoke(ctx context.Context, inv Invocation) *pb.Response {
	if len(inv.Args) == 0 {
		return errorResponse(statusError, "lifecycle scc must be invoked with arguments")
	}
	if len(inv.Args) != 2 {
		return errorResponse(statusError, fmt.Sprintf("lifecycle scc operations require exactly two arguments but received %d", len(inv.Args)))
	}
	fn := string(inv.Args[0])
	if err := ctx.Err(); err != nil {
		return errorResponse(statusError, fmt.Sprintf("failed to invoke backing implementation of '%s': %s", fn, err))
	}
	out, err := s.dispatch(fn, inv.Args[1], &inv)
	if err != nil {
		var nf *notFoundError
		if errors.As(err, &nf) {
			return errorResponse(statusNotFound, nf.msg)
		}
		return errorResponse(statusError, fmt.Sprintf("failed to invoke backing implementation of '%s': %s", fn, err))
	}
	payload, err := deterministic.Marshal(out)
	if err != nil {
		return errorResponse(statusError, fmt.Sprintf("failed to marshal result of '%s': %s", fn, err))
	}
	return &pb.Response{Status: statusOK, Payload: payload}
}

func errorResponse(status int32, msg string) *pb.Response {
	// Function names and labels come from clients; proto3 strings must be
	// valid UTF-8 or the response cannot be marshalled.
	return &pb.Response{Status: status, Message: strings.ToValidUTF8(msg, "\uFFFD")}
}

// call decodes the argument message and runs f on it.
func call[A any, PA interface {
	*A
	proto.Message
}](input []byte, f func(PA) (proto.Message, error)) (proto.Message, error) {
	args := PA(new(A))
	if err := proto.Unmarshal(input, args); err != nil {
		return nil, fmt.Errorf("could not unmarshal input as %T: %w", args, err)
	}
	return f(args)
}

func (s *SCC) dispatch(fn string, input []byte, inv *Invocation) (proto.Message, error) {
	c := &request{scc: s, inv: inv}
	switch fn {
	case InstallChaincodeFuncName:
		return call(input, c.install)
	case QueryInstalledChaincodeFuncName:
		return call(input, c.queryInstalled)
	case GetInstalledChaincodePackageFuncName:
		return call(input, c.getInstalledPackage)
	case QueryInstalledChaincodesFuncName:
		return call(input, c.queryInstalledAll)
	}
	switch fn {
	case ApproveChaincodeDefinitionForMyOrgFuncName, QueryApprovedChaincodeDefinitionFuncName, CheckCommitReadinessFuncName,
		CommitChaincodeDefinitionFuncName, QueryChaincodeDefinitionFuncName, QueryChaincodeDefinitionsFuncName:
	default:
		return nil, fmt.Errorf("unknown lifecycle function '%s'", fn)
	}
	if inv.ChannelID == "" || inv.State == nil {
		return nil, fmt.Errorf("function '%s' must be invoked on a channel", fn)
	}
	switch fn {
	case ApproveChaincodeDefinitionForMyOrgFuncName:
		return call(input, c.approve)
	case QueryApprovedChaincodeDefinitionFuncName:
		return call(input, c.queryApproved)
	case CheckCommitReadinessFuncName:
		return call(input, c.checkCommitReadiness)
	case CommitChaincodeDefinitionFuncName:
		return call(input, c.commit)
	case QueryChaincodeDefinitionFuncName:
		return call(input, c.queryDefinition)
	default:
		return call(input, c.queryDefinitions)
	}
}

// requireLocalAdmin is Fabric's default ACL for installing, approving and
// the queries of installed packages: the creator must be an admin of this
// peer's own MSP. The message starts as Fabric's does, capital included,
// because scripts match on it.
func (s *SCC) requireLocalAdmin(inv *Invocation) error {
	if inv.CreatorMSPID != s.mspID || !inv.CreatorIsAdmin {
		return fmt.Errorf("Failed to authorize invocation due to failed ACL check: the creator (MSP '%s', admin: %t) is not an admin of this peer's organization '%s'", inv.CreatorMSPID, inv.CreatorIsAdmin, s.mspID)
	}
	return nil
}

func (c *request) install(a *lb.InstallChaincodeArgs) (proto.Message, error) {
	s, inv := c.scc, c.inv
	if err := s.requireLocalAdmin(inv); err != nil {
		return nil, err
	}
	pkg, err := ccpackage.Parse(a.ChaincodeInstallPackage)
	if err != nil {
		return nil, fmt.Errorf("could not parse as a chaincode install package: %w", err)
	}
	id := ccpackage.PackageID(pkg.Metadata.Label, a.ChaincodeInstallPackage)
	existed, err := s.packages.save(id, a.ChaincodeInstallPackage)
	if err != nil {
		return nil, fmt.Errorf("could not save cc install package: %w", err)
	}
	if existed {
		return nil, fmt.Errorf("chaincode already successfully installed (package ID '%s')", id)
	}
	s.log.Info("installed chaincode package", "package_id", id, "type", pkg.Metadata.Type)
	return &lb.InstallChaincodeResult{PackageId: id, Label: pkg.Metadata.Label}, nil
}

func (c *request) queryInstalled(a *lb.QueryInstalledChaincodeArgs) (proto.Message, error) {
	s, inv := c.scc, c.inv
	if err := s.requireLocalAdmin(inv); err != nil {
		return nil, err
	}
	ok, err := s.packages.has(a.PackageId)
	if err != nil {
		return nil, err
	}
	if !ok {
		return nil, fmt.Errorf("could not find chaincode with package id '%s'", a.PackageId)
	}
	label := a.PackageId[:strings.LastIndexByte(a.PackageId, ':')]
	return &lb.QueryInstalledChaincodeResult{PackageId: a.PackageId, Label: label}, nil
}

func (c *request) getInstalledPackage(a *lb.GetInstalledChaincodePackageArgs) (proto.Message, error) {
	s, inv := c.scc, c.inv
	if err := s.requireLocalAdmin(inv); err != nil {
		return nil, err
	}
	b, err := s.packages.load(a.PackageId)
	if errors.Is(err, errPackageNotFound) {
		return nil, fmt.Errorf("could not load cc install package: chaincode install package '%s' not found", a.PackageId)
	}
	if err != nil {
		return nil, fmt.Errorf("could not load cc install package: %w", err)
	}
	return &lb.GetInstalledChaincodePackageResult{ChaincodeInstallPackage: b}, nil
}

func (c *request) queryInstalledAll(_ *lb.QueryInstalledChaincodesArgs) (proto.Message, error) {
	s, inv := c.scc, c.inv
	if err := s.requireLocalAdmin(inv); err != nil {
		return nil, err
	}
	list, err := s.packages.list()
	if err != nil {
		return nil, err
	}
	res := &lb.QueryInstalledChaincodesResult{}
	for _, p := range list {
		res.InstalledChaincodes = append(res.InstalledChaincodes, &lb.QueryInstalledChaincodesResult_InstalledChaincode{
			PackageId: p.PackageID,
			Label:     p.Label,
		})
	}
	return res, nil
}

// orgs returns the channel's orgs, sorted and without duplicates so that
// reads, maps and messages come out in the same order on every peer.
func (c *request) orgs() ([]string, error) {
	if len(c.inv.OrgMSPIDs) == 0 {
		return nil, fmt.Errorf("no application config for channel '%s'", c.inv.ChannelID)
	}
	orgs := slices.Clone(c.inv.OrgMSPIDs)
	slices.Sort(orgs)
	return slices.Compact(orgs), nil
}

func (c *request) requireMember(orgs []string) error {
	if !slices.Contains(orgs, c.scc.mspID) {
		return fmt.Errorf("impossibly, this peer's org is processing requests for a channel it is not a member of")
	}
	return nil
}

func (c *request) approve(a *lb.ApproveChaincodeDefinitionForMyOrgArgs) (proto.Message, error) {
	if err := c.scc.requireLocalAdmin(c.inv); err != nil {
		return nil, err
	}
	orgs, err := c.orgs()
	if err != nil {
		return nil, err
	}
	if err := c.requireMember(orgs); err != nil {
		return nil, err
	}
	state := c.inv.State
	current, committed, err := committedSequence(state, a.Name)
	if err != nil {
		return nil, err
	}
	p := paramsOfApproval(a).withDefaults()
	if err := validateDefinition(a.Name, p, orgs, committed); err != nil {
		return nil, fmt.Errorf("error validating chaincode definition: %w", err)
	}
	seq := a.Sequence
	switch {
	case seq == 0 && current == 0:
		return nil, errors.New("requested sequence is 0, but first definable sequence number is 1")
	case seq < current:
		return nil, fmt.Errorf("currently defined sequence %d is larger than requested sequence %d", current, seq)
	case seq > current+1:
		return nil, fmt.Errorf("requested sequence %d is larger than the next available sequence number %d", seq, current+1)
	}
	packageID := a.GetSource().GetLocalPackage().GetPackageId()

	prev, err := readApproval(state, c.scc.mspID, a.Name, seq)
	if err != nil {
		return nil, err
	}
	unchanged := prev != nil && len(paramsOfApproval(prev).diff(p)) == 0 &&
		prev.GetSource().GetLocalPackage().GetPackageId() == packageID
	if seq == current {
		if diffs := paramsOfDefinition(committed).diff(p); len(diffs) > 0 {
			return nil, fmt.Errorf("attempted to redefine the current committed sequence (%d) for namespace %s with different parameters: %s",
				current, a.Name, strings.ReplaceAll(describeDiffs(diffs), "in the approval", "in the committed definition"))
		}
		if unchanged {
			return nil, fmt.Errorf("attempted to redefine the current committed sequence (%d) for namespace %s", current, a.Name)
		}
	} else if unchanged {
		return nil, fmt.Errorf("attempted to redefine uncommitted sequence (%d) for namespace %s with unchanged content", seq, a.Name)
	}

	src := &lb.ChaincodeSource{Type: &lb.ChaincodeSource_Unavailable_{Unavailable: &lb.ChaincodeSource_Unavailable{}}}
	if packageID != "" {
		src = &lb.ChaincodeSource{Type: &lb.ChaincodeSource_LocalPackage{LocalPackage: &lb.ChaincodeSource_Local{PackageId: packageID}}}
	}
	stored := &lb.ApproveChaincodeDefinitionForMyOrgArgs{
		Sequence:            seq,
		Name:                a.Name,
		Version:             p.Version,
		EndorsementPlugin:   p.EndorsementPlugin,
		ValidationPlugin:    p.ValidationPlugin,
		ValidationParameter: p.ValidationParameter,
		Collections:         p.Collections,
		InitRequired:        p.InitRequired,
		Source:              src,
	}
	if err := setProto(state, approvalKey(c.scc.mspID, a.Name, seq), stored); err != nil {
		return nil, fmt.Errorf("could not serialize chaincode parameters to state: %w", err)
	}
	c.scc.log.Info("endorsed chaincode approval", "channel", c.inv.ChannelID, "chaincode", a.Name,
		"sequence", seq, "version", p.Version, "package_id", packageID)
	return &lb.ApproveChaincodeDefinitionForMyOrgResult{}, nil
}

func setProto(state State, key string, m proto.Message) error {
	b, err := deterministic.Marshal(m)
	if err != nil {
		return err
	}
	return state.SetState(Namespace, key, b)
}

func (c *request) queryApproved(a *lb.QueryApprovedChaincodeDefinitionArgs) (proto.Message, error) {
	state := c.inv.State
	seq := a.Sequence
	if seq == 0 {
		// The latest approval: of the next sequence if there is one,
		// else of the committed one.
		current, _, err := committedSequence(state, a.Name)
		if err != nil {
			return nil, err
		}
		seq = current
		next, err := readApproval(state, c.scc.mspID, a.Name, current+1)
		if err != nil {
			return nil, err
		}
		if next != nil {
			seq = current + 1
		}
	}
	appr, err := readApproval(state, c.scc.mspID, a.Name, seq)
	if err != nil {
		return nil, err
	}
	if appr == nil {
		return nil, fmt.Errorf("could not fetch approved chaincode definition (name: '%s', sequence: '%d') on channel '%s'", a.Name, a.Sequence, c.inv.ChannelID)
	}
	return &lb.QueryApprovedChaincodeDefinitionResult{
		Sequence:            appr.Sequence,
		Version:             appr.Version,
		EndorsementPlugin:   appr.EndorsementPlugin,
		ValidationPlugin:    appr.ValidationPlugin,
		ValidationParameter: appr.ValidationParameter,
		Collections:         nonNilCollections(appr.Collections),
		InitRequired:        appr.InitRequired,
		Source:              appr.Source,
	}, nil
}

// nonNilCollections matches Fabric, which always returns a (possibly
// empty) collection package.
func nonNilCollections(c *pb.CollectionConfigPackage) *pb.CollectionConfigPackage {
	if c == nil {
		return &pb.CollectionConfigPackage{}
	}
	return c
}

// readiness is every org's standing on a requested definition.
type readiness struct {
	orgs      []string
	approvals map[string]bool
	differ    map[string][]fieldDiff // orgs whose approval differs
}

// explain says who has not approved and why, in org order.
func (r *readiness) explain(seq int64) string {
	var parts []string
	for _, org := range r.orgs {
		switch {
		case r.approvals[org]:
		case r.differ[org] != nil:
			parts = append(parts, fmt.Sprintf("%s approved sequence %d with a different definition (%s)", org, seq, describeDiffs(r.differ[org])))
		default:
			parts = append(parts, fmt.Sprintf("%s has not approved sequence %d", org, seq))
		}
	}
	return strings.Join(parts, "; ")
}

// readiness checks the sequence and reads every org's approval of the
// requested definition, as Fabric's CheckCommitReadiness.
func (c *request) readiness(name string, seq int64, p params) (*readiness, error) {
	orgs, err := c.orgs()
	if err != nil {
		return nil, err
	}
	current, committed, err := committedSequence(c.inv.State, name)
	if err != nil {
		return nil, err
	}
	if seq != current+1 {
		return nil, fmt.Errorf("requested sequence is %d, but new definition must be sequence %d", seq, current+1)
	}
	if err := validateDefinition(name, p, orgs, committed); err != nil {
		return nil, fmt.Errorf("error validating chaincode definition: %w", err)
	}
	r := &readiness{orgs: orgs, approvals: map[string]bool{}, differ: map[string][]fieldDiff{}}
	for _, org := range orgs {
		appr, err := readApproval(c.inv.State, org, name, seq)
		if err != nil {
			return nil, err
		}
		if appr == nil {
			r.approvals[org] = false
			continue
		}
		diffs := paramsOfApproval(appr).diff(p)
		r.approvals[org] = len(diffs) == 0
		if len(diffs) > 0 {
			r.differ[org] = diffs
		}
	}
	return r, nil
}

func (c *request) checkCommitReadiness(a *lb.CheckCommitReadinessArgs) (proto.Message, error) {
	p := params{
		Version: a.Version, EndorsementPlugin: a.EndorsementPlugin, InitRequired: a.InitRequired,
		ValidationPlugin: a.ValidationPlugin, ValidationParameter: a.ValidationParameter, Collections: a.Collections,
	}.withDefaults()
	r, err := c.readiness(a.Name, a.Sequence, p)
	if err != nil {
		return nil, err
	}
	res := &lb.CheckCommitReadinessResult{Approvals: r.approvals}
	if len(r.differ) > 0 {
		res.Mismatches = map[string]*lb.CheckCommitReadinessResult_Mismatches{}
		for org, diffs := range r.differ {
			res.Mismatches[org] = &lb.CheckCommitReadinessResult_Mismatches{Items: fieldNames(diffs)}
		}
	}
	return res, nil
}

func (c *request) commit(a *lb.CommitChaincodeDefinitionArgs) (proto.Message, error) {
	p := params{
		Version: a.Version, EndorsementPlugin: a.EndorsementPlugin, InitRequired: a.InitRequired,
		ValidationPlugin: a.ValidationPlugin, ValidationParameter: a.ValidationParameter, Collections: a.Collections,
	}.withDefaults()
	r, err := c.readiness(a.Name, a.Sequence, p)
	if err != nil {
		return nil, err
	}
	if err := c.requireMember(r.orgs); err != nil {
		return nil, err
	}
	// As in Fabric, a peer endorses a commit only if its own organisation
	// approved this definition; how many organisations must agree is the
	// channel's /Channel/Application/LifecycleEndorsement policy, which
	// validation applies to the endorsements (see ValidationPolicyForWrites).
	if !r.approvals[c.scc.mspID] {
		return nil, fmt.Errorf("chaincode definition not agreed to by this org (%s): %s", c.scc.mspID, r.explain(a.Sequence))
	}
	def := &lb.CommitChaincodeDefinitionArgs{
		Sequence:            a.Sequence,
		Name:                a.Name,
		Version:             p.Version,
		EndorsementPlugin:   p.EndorsementPlugin,
		ValidationPlugin:    p.ValidationPlugin,
		ValidationParameter: p.ValidationParameter,
		Collections:         p.Collections,
		InitRequired:        p.InitRequired,
	}
	if err := setProto(c.inv.State, definitionKey(a.Name), def); err != nil {
		return nil, fmt.Errorf("could not serialize chaincode definition: %w", err)
	}
	c.scc.log.Info("endorsed chaincode definition commit", "channel", c.inv.ChannelID, "chaincode", a.Name,
		"sequence", a.Sequence, "version", p.Version)
	return &lb.CommitChaincodeDefinitionResult{}, nil
}

// approvalsOf reports, for each channel org, whether it approved exactly
// the committed definition.
func (c *request) approvalsOf(def *lb.CommitChaincodeDefinitionArgs) (map[string]bool, error) {
	orgs, err := c.orgs()
	if err != nil {
		return nil, err
	}
	want := paramsOfDefinition(def)
	out := make(map[string]bool, len(orgs))
	for _, org := range orgs {
		appr, err := readApproval(c.inv.State, org, def.Name, def.Sequence)
		if err != nil {
			return nil, err
		}
		out[org] = appr != nil && len(paramsOfApproval(appr).diff(want)) == 0
	}
	return out, nil
}

func (c *request) queryDefinition(a *lb.QueryChaincodeDefinitionArgs) (proto.Message, error) {
	def, err := readDefinition(c.inv.State, a.Name)
	if err != nil {
		return nil, err
	}
	if def == nil {
		return nil, &notFoundError{msg: fmt.Sprintf("namespace %s is not defined", a.Name)}
	}
	approvals, err := c.approvalsOf(def)
	if err != nil {
		return nil, err
	}
	return &lb.QueryChaincodeDefinitionResult{
		Sequence:            def.Sequence,
		Version:             def.Version,
		EndorsementPlugin:   def.EndorsementPlugin,
		ValidationPlugin:    def.ValidationPlugin,
		ValidationParameter: def.ValidationParameter,
		Collections:         nonNilCollections(def.Collections),
		InitRequired:        def.InitRequired,
		Approvals:           approvals,
	}, nil
}

func (c *request) queryDefinitions(*lb.QueryChaincodeDefinitionsArgs) (proto.Message, error) {
	// '0' is the byte after '/', so this scans exactly "definitions/...".
	it, err := c.inv.State.GetStateRangeScanIterator(Namespace, definitionPrefix, strings.TrimSuffix(definitionPrefix, "/")+"0")
	if err != nil {
		return nil, fmt.Errorf("could not query namespace metadata: %w", err)
	}
	defer it.Close()
	res := &lb.QueryChaincodeDefinitionsResult{ChaincodeDefinitions: []*lb.QueryChaincodeDefinitionsResult_ChaincodeDefinition{}}
	for {
		kv, err := it.Next()
		if err != nil {
			return nil, fmt.Errorf("could not query namespace metadata: %w", err)
		}
		if kv == nil {
			break
		}
		def := &lb.CommitChaincodeDefinitionArgs{}
		if err := proto.Unmarshal(kv.Value, def); err != nil {
			return nil, fmt.Errorf("decode %s: %w", kv.Key, err)
		}
		res.ChaincodeDefinitions = append(res.ChaincodeDefinitions, &lb.QueryChaincodeDefinitionsResult_ChaincodeDefinition{
			Name:                def.Name,
			Sequence:            def.Sequence,
			Version:             def.Version,
			EndorsementPlugin:   def.EndorsementPlugin,
			ValidationPlugin:    def.ValidationPlugin,
			ValidationParameter: def.ValidationParameter,
			Collections:         nonNilCollections(def.Collections),
			InitRequired:        def.InitRequired,
		})
	}
	return res, nil
}
