package policy

import (
	"errors"
	"fmt"
	"strings"

	cb "github.com/hyperledger/fabric-protos-go-apiv2/common"

	"github.com/cairn-ledger/cairn/internal/msp"
)

// maxRuleDepth bounds the nesting of signature policy rules, which come from
// channel configuration and chaincode definitions.
const maxRuleDepth = 64

// evaluator is a compiled policy evaluated against a shared signature set.
// holds answers the same question as eval without building the explanation,
// which costs more than the evaluation itself: an ImplicitMeta policy asks it
// of every sub-policy, and ANY of several organisations fails all but one of
// them on every successful evaluation.
type evaluator interface {
	eval(set *signatureSet) *Error
	holds(set *signatureSet) bool
}

// node is a compiled SignaturePolicy: a gate (n of children) or a leaf
// (signedBy >= 0, an index into the principals).
type node struct {
	n        int
	children []*node
	signedBy int
}

// principal is a compiled MSP principal; err is set if it could not be parsed,
// in which case it never matches (as in Fabric, where it would fail to match).
type principal struct {
	p    *msp.Principal
	text string
	err  error
}

// signaturePolicy is a compiled SignaturePolicyEnvelope.
type signaturePolicy struct {
	path       string
	rule       string
	root       *node
	principals []principal
}

// SignaturePolicy is a compiled signature policy bound to an MSP manager. Build
// it once (e.g. per chaincode definition) and evaluate it many times.
type SignaturePolicy struct {
	sp  *signaturePolicy
	ids *msp.Manager
}

// NewSignaturePolicy compiles spe for evaluation against the identities of ids.
func NewSignaturePolicy(spe *cb.SignaturePolicyEnvelope, ids *msp.Manager) (*SignaturePolicy, error) {
	if ids == nil {
		return nil, errors.New("compile signature policy: nil MSP manager")
	}
	sp, err := compileSignature("", spe)
	if err != nil {
		return nil, err
	}
	return &SignaturePolicy{sp: sp, ids: ids}, nil
}

// Evaluate implements Policy.
func (p *SignaturePolicy) Evaluate(signed []SignedData) error {
	if e := p.sp.eval(newSignatureSet(signed, p.ids)); e != nil {
		return e
	}
	return nil
}

// String returns the policy in DSL form.
func (p *SignaturePolicy) String() string { return p.sp.rule }

// EvaluateEnvelope compiles spe and evaluates signed against it, with Fabric's
// cauthdsl semantics. Callers evaluating the same policy often should keep a
// NewSignaturePolicy instead.
func EvaluateEnvelope(spe *cb.SignaturePolicyEnvelope, signed []SignedData, ids *msp.Manager) error {
	p, err := NewSignaturePolicy(spe, ids)
	if err != nil {
		return err
	}
	return p.Evaluate(signed)
}

func compileSignature(path string, spe *cb.SignaturePolicyEnvelope) (*signaturePolicy, error) {
	where := "compile signature policy"
	if path != "" {
		where += " " + path
	}
	if spe == nil {
		return nil, fmt.Errorf("%s: nil envelope", where)
	}
	if spe.Version != 0 {
		return nil, fmt.Errorf("%s: version %d not supported (only 0)", where, spe.Version)
	}
	if spe.Rule == nil {
		return nil, fmt.Errorf("%s: no rule", where)
	}
	sp := &signaturePolicy{path: path, principals: make([]principal, len(spe.Identities))}
	for i, p := range spe.Identities {
		pp, err := msp.ParsePrincipal(p)
		if err != nil {
			sp.principals[i] = principal{text: fmt.Sprintf("invalid-principal-%d", i), err: err}
			continue
		}
		sp.principals[i] = principal{p: pp, text: pp.String()}
	}
	root, err := compileNode(spe.Rule, len(spe.Identities), 0)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", where, err)
	}
	sp.root = root
	sp.rule = sp.format(root)
	return sp, nil
}

func compileNode(r *cb.SignaturePolicy, nIDs, depth int) (*node, error) {
	if depth > maxRuleDepth {
		return nil, fmt.Errorf("rule nested deeper than %d", maxRuleDepth)
	}
	switch t := r.GetType().(type) {
	case *cb.SignaturePolicy_SignedBy:
		if t.SignedBy < 0 || int(t.SignedBy) >= nIDs {
			return nil, fmt.Errorf("signed_by index %d out of range (%d identities)", t.SignedBy, nIDs)
		}
		return &node{signedBy: int(t.SignedBy)}, nil
	case *cb.SignaturePolicy_NOutOf_:
		if t.NOutOf == nil {
			return nil, errors.New("empty n_out_of")
		}
		n := &node{n: int(t.NOutOf.N), signedBy: -1}
		for _, c := range t.NOutOf.Rules {
			cn, err := compileNode(c, nIDs, depth+1)
			if err != nil {
				return nil, err
			}
			n.children = append(n.children, cn)
		}
		return n, nil
	}
	return nil, errors.New("rule is neither signed_by nor n_out_of")
}

// format renders a compiled rule in DSL form.
func (sp *signaturePolicy) format(n *node) string {
	if n.signedBy >= 0 {
		return sp.principals[n.signedBy].text
	}
	parts := make([]string, len(n.children))
	for i, c := range n.children {
		parts[i] = sp.format(c)
	}
	switch {
	case n.n == 1:
		return "OR(" + strings.Join(parts, ", ") + ")"
	case n.n == len(n.children) && n.n > 0:
		return "AND(" + strings.Join(parts, ", ") + ")"
	}
	return fmt.Sprintf("OutOf(%d, %s)", n.n, strings.Join(parts, ", "))
}

// trace records, for an explanation, which valid identity each leaf consumed.
// It is copied and committed together with used, mirroring Fabric's rollback
// of a failed NOutOf branch.
type evalState struct {
	used   []bool
	leafBy map[*node]int // nil on the fast path
}

// match is Fabric's cauthdsl evaluation: greedy, first-fit, each identity used
// at most once; an NOutOf branch only keeps the identities it consumed if it is
// satisfied.
func (sp *signaturePolicy) match(n *node, ids []*msp.Identity, st *evalState) bool {
	if n.signedBy >= 0 {
		pr := sp.principals[n.signedBy]
		if pr.err != nil {
			return false
		}
		for i, id := range ids {
			if st.used[i] {
				continue
			}
			if id.Satisfies(pr.p) == nil {
				st.used[i] = true
				if st.leafBy != nil {
					st.leafBy[n] = i
				}
				return true
			}
		}
		return false
	}
	verified := 0
	scratch := evalState{used: make([]bool, len(st.used))}
	if st.leafBy != nil {
		scratch.leafBy = map[*node]int{}
	}
	for _, c := range n.children {
		copy(scratch.used, st.used)
		if scratch.leafBy != nil {
			clear(scratch.leafBy)
		}
		if sp.match(c, ids, &scratch) {
			verified++
			copy(st.used, scratch.used)
			for k, v := range scratch.leafBy {
				st.leafBy[k] = v
			}
		}
	}
	return verified >= n.n
}

func (sp *signaturePolicy) eval(set *signatureSet) *Error {
	if sp.holds(set) {
		return nil
	}
	return sp.explain(set)
}

func (sp *signaturePolicy) holds(set *signatureSet) bool {
	st := evalState{used: make([]bool, len(set.valid))}
	return sp.match(sp.root, set.valid, &st)
}

// explain re-runs the evaluation with tracing and builds the Error.
func (sp *signaturePolicy) explain(set *signatureSet) *Error {
	st := evalState{used: make([]bool, len(set.valid)), leafBy: map[*node]int{}}
	sp.match(sp.root, set.valid, &st)

	e := &Error{Path: sp.path, Rule: sp.rule}
	if sp.root.signedBy >= 0 {
		e.Required, e.Total = 1, 1
	} else {
		e.Required, e.Total = sp.root.n, len(sp.root.children)
	}
	countedFor := make([]string, len(set.valid))
	var leaves []*node
	sp.leaves(sp.root, &leaves)
	for _, l := range leaves {
		if v, ok := st.leafBy[l]; ok {
			countedFor[v] = sp.principals[l.signedBy].text
		} else {
			e.Missing = appendUnique(e.Missing, sp.principals[l.signedBy].text)
		}
	}
	if sp.root.signedBy >= 0 {
		if _, ok := st.leafBy[sp.root]; ok {
			e.Satisfied = 1
		}
	} else {
		for _, c := range sp.root.children {
			if sp.satisfiedIn(c, st.leafBy) {
				e.Satisfied++
			}
		}
	}
	e.Signatures = set.results(countedFor, func(v int) string { return sp.whyNot(set.valid[v], leaves) })
	return e
}

func (sp *signaturePolicy) leaves(n *node, out *[]*node) {
	if n.signedBy >= 0 {
		*out = append(*out, n)
		return
	}
	for _, c := range n.children {
		sp.leaves(c, out)
	}
}

// satisfiedIn reports whether n was satisfied in the traced evaluation.
func (sp *signaturePolicy) satisfiedIn(n *node, leafBy map[*node]int) bool {
	if n.signedBy >= 0 {
		_, ok := leafBy[n]
		return ok
	}
	got := 0
	for _, c := range n.children {
		if sp.satisfiedIn(c, leafBy) {
			got++
		}
	}
	return got >= n.n
}

// whyNot explains why a valid identity did not count.
func (sp *signaturePolicy) whyNot(id *msp.Identity, leaves []*node) string {
	var sameMSP []string
	var named []string
	for _, l := range leaves {
		pr := sp.principals[l.signedBy]
		if pr.err != nil {
			continue
		}
		err := id.Satisfies(pr.p)
		if err == nil {
			return fmt.Sprintf("satisfies %s, but that principal was already covered by another signature", pr.text)
		}
		named = appendUnique(named, pr.p.MSPID())
		if !errors.Is(err, msp.ErrWrongMSP) {
			sameMSP = appendUnique(sameMSP, err.Error())
		}
	}
	if len(sameMSP) > 0 {
		return strings.Join(sameMSP, "; ")
	}
	return fmt.Sprintf("MSP %q is not named by the policy (it names %s)", id.MSPID(), strings.Join(named, ", "))
}

func appendUnique(s []string, v string) []string {
	for _, x := range s {
		if x == v {
			return s
		}
	}
	return append(s, v)
}
