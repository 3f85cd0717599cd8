package policy

import (
	"errors"
	"fmt"
	"strconv"
	"strings"

	cb "github.com/hyperledger/fabric-protos-go-apiv2/common"
	mspproto "github.com/hyperledger/fabric-protos-go-apiv2/msp"
	"google.golang.org/protobuf/proto"
)

// ErrDSL matches every ParseDSL syntax error.
var ErrDSL = errors.New("invalid policy DSL")

const (
	maxDSLLength = 64 << 10
	maxDSLDepth  = 32
)

// ParseDSL parses a signature policy written in Fabric's policy language:
//
//	AND('Org1MSP.peer', 'Org2MSP.peer')
//	OR('Org1MSP.member', AND('Org2MSP.admin', 'Org3MSP.client'))
//	OutOf(2, 'A.member', 'B.member', 'C.member')
//
// Gates are AND/And/and, OR/Or/or and OutOf/outof/OUTOF; principals are quoted
// 'MSPID.role' with role member, admin, client, peer or orderer. The envelope is
// built as Fabric's policydsl builds it, principal indices included (each gate
// numbers its own principals after those of its nested gates). Unlike Fabric,
// OutOf(n, ...) with n greater than the number of branches is refused, since it
// can never be satisfied.
func ParseDSL(s string) (*cb.SignaturePolicyEnvelope, error) {
	if len(s) > maxDSLLength {
		return nil, fmt.Errorf("%w: policy is %d bytes, limit %d", ErrDSL, len(s), maxDSLLength)
	}
	p := &dslParser{src: s}
	p.skipSpace()
	g, err := p.gate(0)
	if err != nil {
		return nil, err
	}
	p.skipSpace()
	if p.pos != len(p.src) {
		return nil, p.errf("unexpected %s after the policy", p.peekDesc())
	}
	var principals []*mspproto.MSPPrincipal
	rule, err := g.compile(&principals)
	if err != nil {
		return nil, err
	}
	return &cb.SignaturePolicyEnvelope{Version: 0, Rule: rule, Identities: principals}, nil
}

// dslGate is a parsed gate: n out of args, each a nested gate or a principal.
type dslGate struct {
	n    int
	args []dslArg
}

type dslArg struct {
	gate      *dslGate
	principal *mspproto.MSPPrincipal
}

func (g *dslGate) compile(principals *[]*mspproto.MSPPrincipal) (*cb.SignaturePolicy, error) {
	rules := make([]*cb.SignaturePolicy, len(g.args))
	// Fabric compiles nested gates first (govaluate evaluates arguments before
	// the call), then numbers this gate's own principals left to right.
	for i, a := range g.args {
		if a.gate != nil {
			r, err := a.gate.compile(principals)
			if err != nil {
				return nil, err
			}
			rules[i] = r
		}
	}
	for i, a := range g.args {
		if a.principal != nil {
			rules[i] = SignedBy(int32(len(*principals)))
			*principals = append(*principals, a.principal)
		}
	}
	return NOutOf(int32(g.n), rules), nil
}

type dslParser struct {
	src string
	pos int
}

func (p *dslParser) errf(format string, args ...any) error {
	return fmt.Errorf("%w at offset %d: %s", ErrDSL, p.pos, fmt.Sprintf(format, args...))
}

func (p *dslParser) skipSpace() {
	for p.pos < len(p.src) && strings.IndexByte(" \t\r\n", p.src[p.pos]) >= 0 {
		p.pos++
	}
}

func (p *dslParser) peekDesc() string {
	if p.pos >= len(p.src) {
		return "end of input"
	}
	end := min(p.pos+12, len(p.src))
	return strconv.Quote(p.src[p.pos:end])
}

func (p *dslParser) expect(c byte) error {
	p.skipSpace()
	if p.pos >= len(p.src) || p.src[p.pos] != c {
		return p.errf("expected %q, found %s", c, p.peekDesc())
	}
	p.pos++
	return nil
}

func isIdentByte(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_'
}

func (p *dslParser) gate(depth int) (*dslGate, error) {
	if depth >= maxDSLDepth {
		return nil, p.errf("gates nested deeper than %d", maxDSLDepth)
	}
	start := p.pos
	for p.pos < len(p.src) && isIdentByte(p.src[p.pos]) {
		p.pos++
	}
	name := p.src[start:p.pos]
	if name == "" {
		return nil, p.errf("expected AND, OR or OutOf, found %s", p.peekDesc())
	}
	var kind string
	switch name {
	case "AND", "And", "and":
		kind = "AND"
	case "OR", "Or", "or":
		kind = "OR"
	case "OutOf", "outof", "OUTOF":
		kind = "OutOf"
	default:
		p.pos = start
		return nil, p.errf("unknown gate %q (want AND, OR or OutOf)", name)
	}
	if err := p.expect('('); err != nil {
		return nil, err
	}
	g := &dslGate{}
	if kind == "OutOf" {
		p.skipSpace()
		nStart := p.pos
		for p.pos < len(p.src) && p.src[p.pos] >= '0' && p.src[p.pos] <= '9' {
			p.pos++
		}
		if nStart == p.pos {
			return nil, p.errf("OutOf needs a non-negative integer first, found %s", p.peekDesc())
		}
		n, err := strconv.Atoi(p.src[nStart:p.pos])
		if err != nil || n > 1<<20 {
			p.pos = nStart
			return nil, p.errf("OutOf count %q out of range", p.src[nStart:p.pos])
		}
		g.n = n
		if err := p.expect(','); err != nil {
			return nil, err
		}
	}
	for {
		p.skipSpace()
		a, err := p.arg(depth)
		if err != nil {
			return nil, err
		}
		g.args = append(g.args, a)
		p.skipSpace()
		if p.pos < len(p.src) && p.src[p.pos] == ',' {
			p.pos++
			continue
		}
		if err := p.expect(')'); err != nil {
			return nil, p.errf("expected ',' or ')' in %s(...), found %s", kind, p.peekDesc())
		}
		break
	}
	switch kind {
	case "AND":
		g.n = len(g.args)
	case "OR":
		g.n = 1
	default:
		if g.n > len(g.args) {
			return nil, p.errf("OutOf(%d, ...) has only %d branches and could never be satisfied", g.n, len(g.args))
		}
	}
	return g, nil
}

func (p *dslParser) arg(depth int) (dslArg, error) {
	if p.pos >= len(p.src) {
		return dslArg{}, p.errf("expected a principal or a gate, found end of input")
	}
	c := p.src[p.pos]
	if c == '\'' || c == '"' {
		start := p.pos
		end := strings.IndexByte(p.src[p.pos+1:], c)
		if end < 0 {
			return dslArg{}, p.errf("unterminated quoted principal")
		}
		text := p.src[p.pos+1 : p.pos+1+end]
		pr, err := parsePrincipalText(text)
		if err != nil {
			p.pos = start
			return dslArg{}, p.errf("%v", err)
		}
		p.pos += end + 2
		return dslArg{principal: pr}, nil
	}
	if isIdentByte(c) {
		start := p.pos
		for p.pos < len(p.src) && (isIdentByte(p.src[p.pos]) || p.src[p.pos] == '.' || p.src[p.pos] == '-') {
			p.pos++
		}
		word := p.src[start:p.pos]
		p.skipSpace()
		if p.pos < len(p.src) && p.src[p.pos] == '(' {
			p.pos = start
			g, err := p.gate(depth + 1)
			if err != nil {
				return dslArg{}, err
			}
			return dslArg{gate: g}, nil
		}
		p.pos = start
		if _, err := parsePrincipalText(word); err == nil {
			return dslArg{}, p.errf("principal %s must be quoted: '%s'", word, word)
		}
		return dslArg{}, p.errf("unrecognized token %q", word)
	}
	return dslArg{}, p.errf("expected a principal or a gate, found %s", p.peekDesc())
}

// parsePrincipalText parses 'MSPID.role'. MSP IDs use letters, digits, '.' and
// '-', as Fabric's policydsl accepts.
func parsePrincipalText(s string) (*mspproto.MSPPrincipal, error) {
	dot := strings.LastIndexByte(s, '.')
	if dot <= 0 {
		return nil, fmt.Errorf("principal %q is not of the form 'MSPID.role'", s)
	}
	mspID, roleName := s[:dot], s[dot+1:]
	for i := 0; i < len(mspID); i++ {
		c := mspID[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '-') {
			return nil, fmt.Errorf("principal %q: MSP ID may only hold letters, digits, '.' and '-'", s)
		}
	}
	var role mspproto.MSPRole_MSPRoleType
	switch roleName {
	case "member":
		role = mspproto.MSPRole_MEMBER
	case "admin":
		role = mspproto.MSPRole_ADMIN
	case "client":
		role = mspproto.MSPRole_CLIENT
	case "peer":
		role = mspproto.MSPRole_PEER
	case "orderer":
		role = mspproto.MSPRole_ORDERER
	default:
		return nil, fmt.Errorf("principal %q: unknown role %q (want member, admin, client, peer or orderer)", s, roleName)
	}
	return RolePrincipal(mspID, role), nil
}

// RolePrincipal returns the ROLE principal for mspID and role.
func RolePrincipal(mspID string, role mspproto.MSPRole_MSPRoleType) *mspproto.MSPPrincipal {
	b, err := proto.Marshal(&mspproto.MSPRole{MspIdentifier: mspID, Role: role})
	if err != nil {
		// Marshalling a string and an enum cannot fail; if it did, the proto runtime is broken.
		panic(fmt.Sprintf("policy: marshal MSPRole: %v", err))
	}
	return &mspproto.MSPPrincipal{PrincipalClassification: mspproto.MSPPrincipal_ROLE, Principal: b}
}

// SignedBy returns a rule requiring a signature by principal index i.
func SignedBy(i int32) *cb.SignaturePolicy {
	return &cb.SignaturePolicy{Type: &cb.SignaturePolicy_SignedBy{SignedBy: i}}
}

// NOutOf returns a rule requiring n of rules.
func NOutOf(n int32, rules []*cb.SignaturePolicy) *cb.SignaturePolicy {
	return &cb.SignaturePolicy{Type: &cb.SignaturePolicy_NOutOf_{NOutOf: &cb.SignaturePolicy_NOutOf{N: n, Rules: rules}}}
}

// SignedByAnyMember requires one signature by a member of any of mspIDs.
func SignedByAnyMember(mspIDs []string) *cb.SignaturePolicyEnvelope {
	return signedByAnyRole(mspproto.MSPRole_MEMBER, mspIDs)
}

// SignedByAnyAdmin requires one signature by an admin of any of mspIDs.
func SignedByAnyAdmin(mspIDs []string) *cb.SignaturePolicyEnvelope {
	return signedByAnyRole(mspproto.MSPRole_ADMIN, mspIDs)
}

// SignedByAnyPeer requires one signature by a peer of any of mspIDs.
func SignedByAnyPeer(mspIDs []string) *cb.SignaturePolicyEnvelope {
	return signedByAnyRole(mspproto.MSPRole_PEER, mspIDs)
}

// SignedByAnyClient requires one signature by a client of any of mspIDs.
func SignedByAnyClient(mspIDs []string) *cb.SignaturePolicyEnvelope {
	return signedByAnyRole(mspproto.MSPRole_CLIENT, mspIDs)
}

func signedByAnyRole(role mspproto.MSPRole_MSPRoleType, mspIDs []string) *cb.SignaturePolicyEnvelope {
	env := &cb.SignaturePolicyEnvelope{}
	rules := make([]*cb.SignaturePolicy, len(mspIDs))
	for i, id := range mspIDs {
		env.Identities = append(env.Identities, RolePrincipal(id, role))
		rules[i] = SignedBy(int32(i))
	}
	env.Rule = NOutOf(1, rules)
	return env
}

// FormatDSL renders an envelope in the policy language (best effort for
// non-ROLE principals, which the language cannot express).
func FormatDSL(spe *cb.SignaturePolicyEnvelope) (string, error) {
	sp, err := compileSignature("", spe)
	if err != nil {
		return "", err
	}
	return sp.rule, nil
}
