package policy

import (
	"errors"
	"fmt"
	"sort"
	"strings"

	cb "github.com/hyperledger/fabric-protos-go-apiv2/common"
	"google.golang.org/protobuf/proto"

	"github.com/cairn-ledger/cairn/internal/msp"
)

// RootGroup is the name of the root group of a channel configuration.
const RootGroup = "Channel"

// implicitMeta is a compiled ImplicitMetaPolicy: the sub-policy of the same name
// in every child group, combined by ANY, ALL or MAJORITY.
type implicitMeta struct {
	path      string
	rule      string
	threshold int
	subs      []subPolicy
}

type subPolicy struct {
	path string
	ev   evaluator // nil when the child group has no such policy
}

func (im *implicitMeta) holds(set *signatureSet) bool {
	remaining := im.threshold
	for _, s := range im.subs {
		if remaining == 0 {
			break
		}
		if s.ev != nil && s.ev.holds(set) {
			remaining--
		}
	}
	return remaining == 0
}

// eval explains a failure by the sub-policies that failed, evaluated as
// holds does; only a failing evaluation pays for the explanations.
func (im *implicitMeta) eval(set *signatureSet) *Error {
	if im.holds(set) {
		return nil
	}
	remaining := im.threshold
	var failed []*Error
	for _, s := range im.subs {
		if remaining == 0 {
			return nil
		}
		var e *Error
		if s.ev == nil {
			e = &Error{Path: s.path, Cause: fmt.Errorf("%w %s", ErrNoPolicy, s.path)}
		} else {
			e = s.ev.eval(set)
		}
		if e == nil {
			remaining--
			continue
		}
		failed = append(failed, e)
	}
	if remaining == 0 {
		return nil
	}
	e := &Error{
		Path: im.path, Rule: im.rule, meta: true,
		Required: im.threshold, Total: len(im.subs), Satisfied: im.threshold - remaining,
		SubPolicies: failed,
	}
	for _, f := range failed {
		e.Missing = append(e.Missing, f.Path)
	}
	return e
}

func compileImplicitMeta(path string, imp *cb.ImplicitMetaPolicy, children []*group) (*implicitMeta, error) {
	if imp.SubPolicy == "" {
		return nil, fmt.Errorf("implicit meta policy %s: empty sub_policy", path)
	}
	im := &implicitMeta{path: path}
	for _, c := range children {
		im.subs = append(im.subs, subPolicy{path: c.path + "/" + imp.SubPolicy, ev: c.policies[imp.SubPolicy]})
	}
	n := len(im.subs)
	switch imp.Rule {
	case cb.ImplicitMetaPolicy_ANY:
		im.threshold = 1
	case cb.ImplicitMetaPolicy_ALL:
		im.threshold = n
	case cb.ImplicitMetaPolicy_MAJORITY:
		im.threshold = n/2 + 1
	default:
		return nil, fmt.Errorf("implicit meta policy %s: unknown rule %d", path, int32(imp.Rule))
	}
	if n == 0 {
		// Fabric: with no child groups, ANY, ALL and MAJORITY are all satisfied.
		im.threshold = 0
	}
	im.rule = fmt.Sprintf("%s %s", imp.Rule, imp.SubPolicy)
	return im, nil
}

// group is one compiled config group.
type group struct {
	path     string
	policies map[string]evaluator
	children map[string]*group
}

// Manager holds the compiled policies of one channel configuration. It is
// immutable and safe for concurrent use; a configuration change builds a new one.
type Manager struct {
	root *group
	ids  *msp.Manager
}

// NewManager compiles every policy of a channel's configuration tree (the
// Channel group of a common.Config) for evaluation against ids.
func NewManager(channelGroup *cb.ConfigGroup, ids *msp.Manager) (*Manager, error) {
	if channelGroup == nil {
		return nil, errors.New("new policy manager: nil channel group")
	}
	if ids == nil {
		return nil, errors.New("new policy manager: nil MSP manager")
	}
	root, err := buildGroup("/"+RootGroup, channelGroup, 0)
	if err != nil {
		return nil, fmt.Errorf("new policy manager: %w", err)
	}
	return &Manager{root: root, ids: ids}, nil
}

const maxGroupDepth = 32

func buildGroup(path string, cg *cb.ConfigGroup, depth int) (*group, error) {
	if depth > maxGroupDepth {
		return nil, fmt.Errorf("config groups nested deeper than %d at %s", maxGroupDepth, path)
	}
	g := &group{path: path, policies: map[string]evaluator{}, children: map[string]*group{}}
	names := sortedKeys(cg.GetGroups())
	children := make([]*group, 0, len(names))
	for _, name := range names {
		if err := checkName(name); err != nil {
			return nil, fmt.Errorf("group %s/%s: %w", path, name, err)
		}
		c, err := buildGroup(path+"/"+name, cg.Groups[name], depth+1)
		if err != nil {
			return nil, err
		}
		g.children[name] = c
		children = append(children, c)
	}
	for _, name := range sortedKeys(cg.GetPolicies()) {
		ppath := path + "/" + name
		if err := checkName(name); err != nil {
			return nil, fmt.Errorf("policy %s: %w", ppath, err)
		}
		p := cg.Policies[name].GetPolicy()
		if p == nil {
			return nil, fmt.Errorf("policy %s: empty", ppath)
		}
		switch cb.Policy_PolicyType(p.Type) {
		case cb.Policy_SIGNATURE:
			var spe cb.SignaturePolicyEnvelope
			if err := proto.Unmarshal(p.Value, &spe); err != nil {
				return nil, fmt.Errorf("policy %s: unmarshal SignaturePolicyEnvelope: %w", ppath, err)
			}
			sp, err := compileSignature(ppath, &spe)
			if err != nil {
				return nil, err
			}
			g.policies[name] = sp
		case cb.Policy_IMPLICIT_META:
			var imp cb.ImplicitMetaPolicy
			if err := proto.Unmarshal(p.Value, &imp); err != nil {
				return nil, fmt.Errorf("policy %s: unmarshal ImplicitMetaPolicy: %w", ppath, err)
			}
			im, err := compileImplicitMeta(ppath, &imp, children)
			if err != nil {
				return nil, err
			}
			g.policies[name] = im
		default:
			return nil, fmt.Errorf("policy %s: type %d not supported (SIGNATURE or IMPLICIT_META)", ppath, p.Type)
		}
	}
	return g, nil
}

func checkName(name string) error {
	if name == "" || strings.Contains(name, "/") {
		return fmt.Errorf("invalid name %q", name)
	}
	return nil
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// Policy returns the policy at path: absolute ("/Channel/Application/Writers")
// or relative to the Channel group ("Application/Writers", "Writers").
func (m *Manager) Policy(path string) (Policy, error) {
	abs, parts, err := splitPath(path)
	if err != nil {
		return nil, err
	}
	g := m.root
	for _, p := range parts[:len(parts)-1] {
		c, ok := g.children[p]
		if !ok {
			return nil, fmt.Errorf("%w %s: no group %s/%s", ErrNoPolicy, abs, g.path, p)
		}
		g = c
	}
	ev, ok := g.policies[parts[len(parts)-1]]
	if !ok {
		return nil, fmt.Errorf("%w %s", ErrNoPolicy, abs)
	}
	return &boundPolicy{ev: ev, ids: m.ids, path: abs}, nil
}

func splitPath(path string) (abs string, parts []string, err error) {
	rel := path
	if strings.HasPrefix(path, "/") {
		rest, ok := strings.CutPrefix(path, "/"+RootGroup+"/")
		if !ok {
			return "", nil, fmt.Errorf("%w %s: absolute paths start with /%s/", ErrNoPolicy, path, RootGroup)
		}
		rel = rest
	}
	parts = strings.Split(rel, "/")
	for _, p := range parts {
		if p == "" {
			return "", nil, fmt.Errorf("%w %q: empty path element", ErrNoPolicy, path)
		}
	}
	return "/" + RootGroup + "/" + rel, parts, nil
}

// Paths returns the absolute paths of every policy, sorted.
func (m *Manager) Paths() []string {
	var out []string
	var walk func(g *group)
	walk = func(g *group) {
		for name := range g.policies {
			out = append(out, g.path+"/"+name)
		}
		for _, c := range g.children {
			walk(c)
		}
	}
	walk(m.root)
	sort.Strings(out)
	return out
}

// MSPManager returns the MSP manager the policies evaluate against.
func (m *Manager) MSPManager() *msp.Manager { return m.ids }

// boundPolicy is a compiled policy of a Manager.
type boundPolicy struct {
	ev   evaluator
	ids  *msp.Manager
	path string
}

func (p *boundPolicy) Evaluate(signed []SignedData) error {
	if e := p.ev.eval(newSignatureSet(signed, p.ids)); e != nil {
		return e
	}
	return nil
}
