package msp

import (
	"bytes"
	"fmt"

	mspproto "github.com/hyperledger/fabric-protos-go-apiv2/msp"
	"google.golang.org/protobuf/proto"
)

// maxCombinedDepth bounds nesting of COMBINED principals, which arrive as bytes
// from channel configuration and transactions.
const maxCombinedDepth = 8

// Principal is an msp.MSPPrincipal decoded once, so that matching it against
// many identities does not unmarshal it again. It is immutable.
type Principal struct {
	class     mspproto.MSPPrincipal_Classification
	mspID     string
	role      mspproto.MSPRole_MSPRoleType
	ou        string
	certifier []byte
	identity  *mspproto.SerializedIdentity
	anonymity mspproto.MSPIdentityAnonymity_MSPIdentityAnonymityType
	combined  []*Principal
}

// ParsePrincipal decodes p. Malformed or unsupported principals give an error
// wrapping ErrInvalidPrincipal.
func ParsePrincipal(p *mspproto.MSPPrincipal) (*Principal, error) {
	return parsePrincipal(p, 0)
}

func parsePrincipal(p *mspproto.MSPPrincipal, depth int) (*Principal, error) {
	if p == nil {
		return nil, fmt.Errorf("%w: nil principal", ErrInvalidPrincipal)
	}
	out := &Principal{class: p.PrincipalClassification}
	switch p.PrincipalClassification {
	case mspproto.MSPPrincipal_ROLE:
		var r mspproto.MSPRole
		if err := proto.Unmarshal(p.Principal, &r); err != nil {
			return nil, fmt.Errorf("%w: unmarshal MSPRole: %v", ErrInvalidPrincipal, err)
		}
		if _, ok := mspproto.MSPRole_MSPRoleType_name[int32(r.Role)]; !ok {
			return nil, fmt.Errorf("%w: unknown MSP role %d", ErrInvalidPrincipal, int32(r.Role))
		}
		out.mspID, out.role = r.MspIdentifier, r.Role
	case mspproto.MSPPrincipal_ORGANIZATION_UNIT:
		var ou mspproto.OrganizationUnit
		if err := proto.Unmarshal(p.Principal, &ou); err != nil {
			return nil, fmt.Errorf("%w: unmarshal OrganizationUnit: %v", ErrInvalidPrincipal, err)
		}
		out.mspID, out.ou, out.certifier = ou.MspIdentifier, ou.OrganizationalUnitIdentifier, ou.CertifiersIdentifier
	case mspproto.MSPPrincipal_IDENTITY:
		var si mspproto.SerializedIdentity
		if err := proto.Unmarshal(p.Principal, &si); err != nil {
			return nil, fmt.Errorf("%w: unmarshal SerializedIdentity: %v", ErrInvalidPrincipal, err)
		}
		out.mspID, out.identity = si.Mspid, &si
	case mspproto.MSPPrincipal_ANONYMITY:
		var a mspproto.MSPIdentityAnonymity
		if err := proto.Unmarshal(p.Principal, &a); err != nil {
			return nil, fmt.Errorf("%w: unmarshal MSPIdentityAnonymity: %v", ErrInvalidPrincipal, err)
		}
		out.anonymity = a.AnonymityType
	case mspproto.MSPPrincipal_COMBINED:
		if depth >= maxCombinedDepth {
			return nil, fmt.Errorf("%w: combined principals nested deeper than %d", ErrInvalidPrincipal, maxCombinedDepth)
		}
		var c mspproto.CombinedPrincipal
		if err := proto.Unmarshal(p.Principal, &c); err != nil {
			return nil, fmt.Errorf("%w: unmarshal CombinedPrincipal: %v", ErrInvalidPrincipal, err)
		}
		if len(c.Principals) == 0 {
			return nil, fmt.Errorf("%w: combined principal with no principals", ErrInvalidPrincipal)
		}
		for _, sub := range c.Principals {
			sp, err := parsePrincipal(sub, depth+1)
			if err != nil {
				return nil, err
			}
			out.combined = append(out.combined, sp)
		}
	default:
		return nil, fmt.Errorf("%w: unknown classification %d", ErrInvalidPrincipal, int32(p.PrincipalClassification))
	}
	return out, nil
}

// String renders the principal as the policy DSL writes it where possible:
// 'Org1MSP.peer', ou('Org1MSP.department1'), identity('Org1MSP', "CN").
func (p *Principal) String() string {
	switch p.class {
	case mspproto.MSPPrincipal_ROLE:
		return fmt.Sprintf("'%s.%s'", p.mspID, RoleName(p.role))
	case mspproto.MSPPrincipal_ORGANIZATION_UNIT:
		return fmt.Sprintf("ou('%s.%s')", p.mspID, p.ou)
	case mspproto.MSPPrincipal_IDENTITY:
		cn := "unparsable certificate"
		if c, err := certFromPEM(p.identity.IdBytes); err == nil {
			cn = c.Subject.CommonName
		}
		return fmt.Sprintf("identity('%s', %q)", p.mspID, cn)
	case mspproto.MSPPrincipal_ANONYMITY:
		return "anonymity(" + p.anonymity.String() + ")"
	case mspproto.MSPPrincipal_COMBINED:
		var b bytes.Buffer
		b.WriteString("combined(")
		for i, c := range p.combined {
			if i > 0 {
				b.WriteString(", ")
			}
			b.WriteString(c.String())
		}
		b.WriteString(")")
		return b.String()
	}
	return fmt.Sprintf("principal(%d)", int32(p.class))
}

// MSPID returns the MSP the principal names ("" for ANONYMITY and COMBINED).
func (p *Principal) MSPID() string { return p.mspID }

// SatisfiesPrincipal reports whether the identity satisfies principal p, with
// Fabric 2.5's semantics. The error says why not and matches
// ErrPrincipalNotSatisfied (plus ErrWrongMSP or ErrWrongRole), or
// ErrInvalidPrincipal if p is malformed.
func (id *Identity) SatisfiesPrincipal(p *mspproto.MSPPrincipal) error {
	pp, err := ParsePrincipal(p)
	if err != nil {
		return err
	}
	return id.Satisfies(pp)
}

// Satisfies is SatisfiesPrincipal for a pre-parsed principal.
func (id *Identity) Satisfies(p *Principal) error {
	switch p.class {
	case mspproto.MSPPrincipal_ROLE:
		if err := id.checkMSP(p.mspID); err != nil {
			return err
		}
		return id.satisfiesRole(p.role)
	case mspproto.MSPPrincipal_ORGANIZATION_UNIT:
		if err := id.checkMSP(p.mspID); err != nil {
			return err
		}
		for _, ou := range id.cert.Subject.OrganizationalUnit {
			if ou == p.ou && bytes.Equal(id.certifiers, p.certifier) {
				return nil
			}
		}
		return unsatisfied(ErrWrongRole, "%s does not carry OU %q from the required CA chain", id, p.ou)
	case mspproto.MSPPrincipal_IDENTITY:
		if err := id.checkMSP(p.mspID); err != nil {
			return err
		}
		if bytes.Equal(p.identity.IdBytes, id.idBytes) {
			return nil // same certificate bytes as this already validated identity
		}
		c, err := certFromPEM(p.identity.IdBytes)
		if err != nil {
			return fmt.Errorf("%w: identity principal: %v", ErrInvalidPrincipal, err)
		}
		v, err := id.msp.validate(c)
		if err != nil {
			return fmt.Errorf("%w: identity principal is not valid in MSP %q: %v", ErrInvalidPrincipal, id.msp.id, err)
		}
		if !bytes.Equal(v.cert.Raw, id.cert.Raw) {
			return unsatisfied(ErrWrongRole, "%s is not the identity %q the principal names", id, c.Subject.CommonName)
		}
		return nil
	case mspproto.MSPPrincipal_ANONYMITY:
		switch p.anonymity {
		case mspproto.MSPIdentityAnonymity_NOMINAL:
			return nil
		case mspproto.MSPIdentityAnonymity_ANONYMOUS:
			return unsatisfied(ErrWrongRole, "principal requires an anonymous identity, X.509 identities are nominal")
		}
		return fmt.Errorf("%w: unknown anonymity type %d", ErrInvalidPrincipal, int32(p.anonymity))
	case mspproto.MSPPrincipal_COMBINED:
		for _, c := range p.combined {
			if err := id.Satisfies(c); err != nil {
				return err
			}
		}
		return nil
	}
	return fmt.Errorf("%w: unknown classification %d", ErrInvalidPrincipal, int32(p.class))
}

func (id *Identity) checkMSP(want string) error {
	if want != id.msp.id {
		return unsatisfied(ErrWrongMSP, "%s is a member of MSP %q, the principal needs MSP %q", id, id.msp.id, want)
	}
	return nil
}

func (id *Identity) satisfiesRole(want mspproto.MSPRole_MSPRoleType) error {
	switch want {
	case mspproto.MSPRole_MEMBER:
		return nil // Deserialize only returns identities valid in their MSP
	case mspproto.MSPRole_ADMIN:
		if id.IsAdmin() {
			return nil
		}
		return unsatisfied(ErrWrongRole, "%s %s, needs admin", id, id.hasRoleText())
	case mspproto.MSPRole_CLIENT, mspproto.MSPRole_PEER, mspproto.MSPRole_ORDERER:
		if !id.msp.nodeOUs {
			return unsatisfied(ErrWrongRole, "%s cannot be a %s: NodeOUs are not enabled in MSP %q, so client, peer and orderer identities cannot be told apart", id, RoleName(want), id.msp.id)
		}
		if id.nodeRole == want {
			return nil
		}
		return unsatisfied(ErrWrongRole, "%s %s, needs %s", id, id.hasRoleText(), RoleName(want))
	}
	return fmt.Errorf("%w: unknown MSP role %d", ErrInvalidPrincipal, int32(want))
}

func (id *Identity) hasRoleText() string {
	if r := id.roleName(); r != "" {
		return "has role " + r
	}
	return "has no admin or node role"
}
