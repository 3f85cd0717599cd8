// Package plan owns endorsement planning, shared by the gateway (which walks
// a Plan while collecting endorsements) and the discovery service (which
// publishes the layouts as endorsement descriptors), as Fabric's discovery
// service and gateway do it: from the endorsement policies a transaction must
// satisfy and the peers that could endorse it, Layouts computes every minimal
// way of satisfying all of them — a layout is a number of endorsements needed
// from each group of interchangeable peers — and a Plan then walks the
// layouts as endorsements arrive or fail: it hands out the peers to ask,
// offers another peer of the same group after a failure, abandons the layouts
// whose group ran out of peers, and reports the first layout completed.
//
// Groups: a principal of a signature policy is satisfied by a set of peers
// (identity.Satisfies); principals satisfied by the same set share one group.
// Within one signature policy the endorsements of a layout add up, because
// Fabric's evaluation uses each signature at most once (AND('A.peer',
// 'A.member') needs two peers of A); across separate policies — the
// sub-policies of an implicit meta policy, or the policies of several
// chaincodes and keys — they combine by maximum, because each policy is
// evaluated on its own over all endorsements.
//
// Layouts is a pure function. A *Plan is safe for concurrent use.
package plan

import (
	"errors"
	"fmt"
	"sort"
	"strings"

	cb "github.com/hyperledger/fabric-protos-go-apiv2/common"
	"google.golang.org/protobuf/proto"

	"github.com/cairn-ledger/cairn/internal/msp"
)

// Peer is a peer that may endorse.
type Peer struct {
	Address string
	MSPID   string
	// Identity is the peer's validated identity on the channel; nil matches
	// no principal.
	Identity *msp.Identity
	Height   uint64
	Local    bool
}

// Requirement is one endorsement policy the transaction must satisfy: a
// signature policy, or the path of a channel configuration policy.
type Requirement struct {
	Signature *cb.SignaturePolicyEnvelope
	Ref       string
}

func (r Requirement) String() string {
	if r.Signature == nil {
		return r.Ref
	}
	return "signature policy"
}

// Layout is one way to satisfy the requirements: group → endorsements needed.
type Layout map[string]int

// MaxLayouts bounds the layouts kept, smallest first, so that a policy with
// many combinations cannot make planning explode.
const MaxLayouts = 1000

// ErrUnsatisfiable is returned when no combination of the peers satisfies the
// requirements.
var ErrUnsatisfiable = errors.New("no combination of the available peers satisfies the endorsement policy")

const maxDepth = 64

// Layouts returns the minimal layouts satisfying every requirement with the
// given peers, smallest first, and the peers of each group the layouts name,
// ordered as Fabric's gateway tries them (highest ledger height first, the
// local peer first among equals). channel is the channel's configuration
// tree (common.Config.ChannelGroup), where Ref requirements are looked up.
func Layouts(channel *cb.ConfigGroup, reqs []Requirement, peers []Peer) ([]Layout, map[string][]Peer, error) {
	b := &builder{channel: channel, peers: peers, groups: map[string][]Peer{}, byPrincipal: map[string]string{}}
	all := []Layout{{}}
	for _, r := range reqs {
		var alts []Layout
		var err error
		if r.Signature != nil {
			alts, err = b.signature(r.Signature)
		} else {
			alts, err = b.ref(r.Ref, 0)
		}
		if err != nil {
			return nil, nil, fmt.Errorf("endorsement policy %s: %w", r, err)
		}
		if len(alts) == 0 {
			return nil, nil, fmt.Errorf("%w: %s cannot be satisfied", ErrUnsatisfiable, r)
		}
		all = product(all, alts, maxMerge)
	}
	all = minimal(all)
	if len(all) == 0 {
		return nil, nil, ErrUnsatisfiable
	}
	used := map[string][]Peer{}
	for _, l := range all {
		for g := range l {
			used[g] = b.groups[g]
		}
	}
	for _, ps := range used {
		SortPeers(ps)
	}
	return all, used, nil
}

// SortPeers orders peers as Fabric's gateway prefers them: decreasing ledger
// height, the local peer first among equals (then by address, for a stable
// order).
func SortPeers(ps []Peer) {
	sort.SliceStable(ps, func(i, j int) bool {
		if ps[i].Height != ps[j].Height {
			return ps[i].Height > ps[j].Height
		}
		if ps[i].Local != ps[j].Local {
			return ps[i].Local
		}
		return ps[i].Address < ps[j].Address
	})
}

type builder struct {
	channel     *cb.ConfigGroup
	peers       []Peer
	groups      map[string][]Peer
	byPrincipal map[string]string // marshalled principal → group ("" if none)
}

// group returns the group of peers satisfying a principal, "" if none does.
func (b *builder) group(raw []byte, p *msp.Principal) string {
	if g, ok := b.byPrincipal[string(raw)]; ok {
		return g
	}
	var members []Peer
	var names []string
	for _, peer := range b.peers {
		if peer.Identity != nil && peer.Identity.Satisfies(p) == nil {
			members = append(members, peer)
			names = append(names, peer.Address)
		}
	}
	g := ""
	if len(members) > 0 {
		sort.Strings(names)
		g = strings.Join(names, ",")
		b.groups[g] = members
	}
	b.byPrincipal[string(raw)] = g
	return g
}

func (b *builder) signature(spe *cb.SignaturePolicyEnvelope) ([]Layout, error) {
	if spe.GetRule() == nil {
		return nil, errors.New("signature policy has no rule")
	}
	groups := make([]string, len(spe.GetIdentities()))
	for i, id := range spe.GetIdentities() {
		p, err := msp.ParsePrincipal(id)
		if err != nil {
			continue // an unparsable principal is never satisfied, as in Fabric
		}
		raw, err := proto.Marshal(id)
		if err != nil {
			return nil, err
		}
		groups[i] = b.group(raw, p)
	}
	return b.rule(spe.GetRule(), groups, 0)
}

// rule returns the layouts satisfying one node of a signature policy; the
// endorsements of an NOutOf's branches add up.
func (b *builder) rule(r *cb.SignaturePolicy, groups []string, depth int) ([]Layout, error) {
	if depth > maxDepth {
		return nil, fmt.Errorf("rule nested deeper than %d", maxDepth)
	}
	switch t := r.GetType().(type) {
	case *cb.SignaturePolicy_SignedBy:
		i := int(t.SignedBy)
		if i < 0 || i >= len(groups) {
			return nil, fmt.Errorf("signed_by index %d out of range", i)
		}
		if groups[i] == "" {
			return nil, nil
		}
		return []Layout{{groups[i]: 1}}, nil
	case *cb.SignaturePolicy_NOutOf_:
		children := make([][]Layout, len(t.NOutOf.GetRules()))
		for i, c := range t.NOutOf.GetRules() {
			alts, err := b.rule(c, groups, depth+1)
			if err != nil {
				return nil, err
			}
			children[i] = alts
		}
		return choose(int(t.NOutOf.GetN()), children, sumMerge), nil
	}
	return nil, errors.New("rule is neither signed_by nor n_out_of")
}

// ref returns the layouts satisfying the channel policy at path.
func (b *builder) ref(path string, depth int) ([]Layout, error) {
	if depth > maxDepth {
		return nil, fmt.Errorf("policy references nested deeper than %d", maxDepth)
	}
	rel := strings.TrimPrefix(path, "/")
	parts := strings.Split(rel, "/")
	if strings.HasPrefix(path, "/") {
		if len(parts) < 2 || parts[0] != "Channel" {
			return nil, fmt.Errorf("policy %s: absolute paths start with /Channel/", path)
		}
		parts = parts[1:]
	}
	g := b.channel
	for _, name := range parts[:len(parts)-1] {
		g = g.GetGroups()[name]
		if g == nil {
			return nil, fmt.Errorf("policy %s: no group %s", path, name)
		}
	}
	return b.policy(g, parts[len(parts)-1], path, depth)
}

// policy returns the layouts satisfying the policy name of config group g.
func (b *builder) policy(g *cb.ConfigGroup, name, path string, depth int) ([]Layout, error) {
	cp := g.GetPolicies()[name].GetPolicy()
	if cp == nil {
		return nil, fmt.Errorf("no policy %s", path)
	}
	switch cb.Policy_PolicyType(cp.GetType()) {
	case cb.Policy_SIGNATURE:
		spe := &cb.SignaturePolicyEnvelope{}
		if err := proto.Unmarshal(cp.GetValue(), spe); err != nil {
			return nil, fmt.Errorf("policy %s: %w", path, err)
		}
		return b.signature(spe)
	case cb.Policy_IMPLICIT_META:
		imp := &cb.ImplicitMetaPolicy{}
		if err := proto.Unmarshal(cp.GetValue(), imp); err != nil {
			return nil, fmt.Errorf("policy %s: %w", path, err)
		}
		names := make([]string, 0, len(g.GetGroups()))
		for n := range g.GetGroups() {
			names = append(names, n)
		}
		sort.Strings(names)
		children := make([][]Layout, len(names))
		for i, n := range names {
			child := g.GetGroups()[n]
			if child.GetPolicies()[imp.GetSubPolicy()] == nil {
				continue // a missing sub-policy is never satisfied
			}
			alts, err := b.policy(child, imp.GetSubPolicy(), path+"/"+n+"/"+imp.GetSubPolicy(), depth+1)
			if err != nil {
				return nil, err
			}
			children[i] = alts
		}
		var threshold int
		switch imp.GetRule() {
		case cb.ImplicitMetaPolicy_ANY:
			threshold = 1
		case cb.ImplicitMetaPolicy_ALL:
			threshold = len(names)
		case cb.ImplicitMetaPolicy_MAJORITY:
			threshold = len(names)/2 + 1
		default:
			return nil, fmt.Errorf("policy %s: unknown implicit meta rule %d", path, imp.GetRule())
		}
		if len(names) == 0 {
			threshold = 0 // as Fabric: satisfied with no child groups
		}
		return choose(threshold, children, maxMerge), nil
	}
	return nil, fmt.Errorf("policy %s: type %d not supported", path, cp.GetType())
}

type merge func(a, b Layout) Layout

func sumMerge(a, b Layout) Layout {
	out := make(Layout, len(a)+len(b))
	for g, n := range a {
		out[g] += n
	}
	for g, n := range b {
		out[g] += n
	}
	return out
}

func maxMerge(a, b Layout) Layout {
	out := make(Layout, len(a)+len(b))
	for g, n := range a {
		out[g] = n
	}
	for g, n := range b {
		out[g] = max(out[g], n)
	}
	return out
}

// product combines every alternative of a with every alternative of b.
func product(a, b []Layout, m merge) []Layout {
	var out []Layout
	for _, x := range a {
		for _, y := range b {
			out = append(out, m(x, y))
		}
	}
	return minimal(out)
}

// choose returns the layouts satisfying n of the children, each child given
// by its own alternatives (none: that child cannot be satisfied).
func choose(n int, children [][]Layout, m merge) []Layout {
	if n <= 0 {
		return []Layout{{}}
	}
	var usable [][]Layout
	for _, c := range children {
		if len(c) > 0 {
			usable = append(usable, c)
		}
	}
	if n > len(usable) {
		return nil
	}
	var out []Layout
	var walk func(start int, acc []Layout, k int)
	walk = func(start int, acc []Layout, k int) {
		if len(out) > 4*MaxLayouts {
			return
		}
		if k == 0 {
			out = append(out, acc...)
			return
		}
		for i := start; i <= len(usable)-k; i++ {
			walk(i+1, product(acc, usable[i], m), k-1)
		}
	}
	walk(0, []Layout{{}}, n)
	return minimal(out)
}

// minimal removes duplicate layouts and those needing at least as much as
// another from every group, sorts the rest smallest first and keeps at most
// MaxLayouts.
func minimal(ls []Layout) []Layout {
	sort.SliceStable(ls, func(i, j int) bool { return less(ls[i], ls[j]) })
	var out []Layout
outer:
	for _, l := range ls {
		for _, kept := range out {
			if covers(l, kept) {
				continue outer
			}
		}
		out = append(out, l)
		if len(out) == MaxLayouts {
			break
		}
	}
	return out
}

// covers reports whether a needs at least what b needs from every group.
func covers(a, b Layout) bool {
	for g, n := range b {
		if a[g] < n {
			return false
		}
	}
	return true
}

func total(l Layout) int {
	t := 0
	for _, n := range l {
		t += n
	}
	return t
}

func less(a, b Layout) bool {
	if ta, tb := total(a), total(b); ta != tb {
		return ta < tb
	}
	if len(a) != len(b) {
		return len(a) < len(b)
	}
	return a.String() < b.String()
}

// String renders a layout as "group×n" entries in group order.
func (l Layout) String() string {
	keys := make([]string, 0, len(l))
	for g := range l {
		keys = append(keys, g)
	}
	sort.Strings(keys)
	parts := make([]string, len(keys))
	for i, g := range keys {
		parts[i] = fmt.Sprintf("%s×%d", g, l[g])
	}
	return "{" + strings.Join(parts, " ") + "}"
}
