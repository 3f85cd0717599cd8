package policy

import (
	"errors"
	"strings"
	"testing"

	cb "github.com/hyperledger/fabric-protos-go-apiv2/common"
	mspproto "github.com/hyperledger/fabric-protos-go-apiv2/msp"
	"google.golang.org/protobuf/proto"
)

// principalsOf lists the envelope's principals as 'MSP.role' strings.
func principalsOf(t *testing.T, spe *cb.SignaturePolicyEnvelope) []string {
	t.Helper()
	var out []string
	for _, p := range spe.Identities {
		var r mspproto.MSPRole
		if err := proto.Unmarshal(p.Principal, &r); err != nil {
			t.Fatal(err)
		}
		out = append(out, r.MspIdentifier+"."+strings.ToLower(r.Role.String()))
	}
	return out
}

func TestParseDSL(t *testing.T) {
	tests := []struct {
		in         string
		rule       string   // FormatDSL of the result
		principals []string // in index order
	}{
		{"AND('Org1MSP.peer','Org2MSP.peer')", "AND('Org1MSP.peer', 'Org2MSP.peer')", []string{"Org1MSP.peer", "Org2MSP.peer"}},
		{"OR('Org1MSP.member', 'Org2MSP.admin')", "OR('Org1MSP.member', 'Org2MSP.admin')", []string{"Org1MSP.member", "Org2MSP.admin"}},
		{"OutOf(2,'A.member','B.member','C.member')", "OutOf(2, 'A.member', 'B.member', 'C.member')", []string{"A.member", "B.member", "C.member"}},
		{"outof(1, 'A.client', 'B.orderer')", "OR('A.client', 'B.orderer')", []string{"A.client", "B.orderer"}},
		{`and("A.peer")`, "OR('A.peer')", []string{"A.peer"}},
		{" Or ( 'A.member' ) ", "OR('A.member')", []string{"A.member"}},
		{"OutOf(0, 'A.member')", "OutOf(0, 'A.member')", []string{"A.member"}},
		{"AND('Org.1-x.MSP.admin', 'b.member')", "AND('Org.1-x.MSP.admin', 'b.member')", []string{"Org.1-x.MSP.admin", "b.member"}},
		// Fabric numbers nested gates' principals before the enclosing gate's own.
		{"AND('A.member', OR('B.member', 'C.member'))", "AND('A.member', OR('B.member', 'C.member'))", []string{"B.member", "C.member", "A.member"}},
		{"OR(AND('A.peer','B.peer'), 'C.admin', AND('D.peer', OR('E.peer')))", "OR(AND('A.peer', 'B.peer'), 'C.admin', AND('D.peer', OR('E.peer')))",
			[]string{"A.peer", "B.peer", "E.peer", "D.peer", "C.admin"}},
	}
	for _, tc := range tests {
		t.Run(tc.in, func(t *testing.T) {
			spe, err := ParseDSL(tc.in)
			if err != nil {
				t.Fatalf("ParseDSL: %v", err)
			}
			got, err := FormatDSL(spe)
			if err != nil {
				t.Fatal(err)
			}
			if got != tc.rule {
				t.Errorf("rule = %s, want %s", got, tc.rule)
			}
			if p := strings.Join(principalsOf(t, spe), " "); p != strings.Join(tc.principals, " ") {
				t.Errorf("principals = %s, want %s", p, strings.Join(tc.principals, " "))
			}
			// Round trip through the formatter parses to the same rule text.
			again, err := ParseDSL(got)
			if err != nil {
				t.Fatalf("reparse %s: %v", got, err)
			}
			if g2, _ := FormatDSL(again); g2 != got {
				t.Errorf("round trip %s -> %s", got, g2)
			}
		})
	}
}

func TestParseDSLErrors(t *testing.T) {
	tests := []struct{ in, want string }{
		{"", "expected AND, OR or OutOf"},
		{"'A.member'", "expected AND, OR or OutOf"},
		{"NAND('A.member')", `unknown gate "NAND"`},
		{"aNd('A.member')", `unknown gate "aNd"`},
		{"AND()", "expected a principal or a gate"},
		{"AND('A.member'", "expected ',' or ')'"},
		{"AND('A.member',)", "expected a principal or a gate"},
		{"AND('A.member') x", "after the policy"},
		{"AND('A.boss')", `unknown role "boss"`},
		{"AND('A.Member')", `unknown role "Member"`},
		{"AND('member')", "not of the form 'MSPID.role'"},
		{"AND('.member')", "not of the form"},
		{"AND('A_B.member')", "MSP ID may only hold"},
		{"AND(A.member)", "must be quoted"},
		{"AND(foo)", `unrecognized token "foo"`},
		{"AND('A.member)", "unterminated"},
		{"OutOf('A.member', 'B.member')", "non-negative integer"},
		{"OutOf(-1, 'A.member')", "non-negative integer"},
		{"OutOf(3, 'A.member', 'B.member')", "could never be satisfied"},
		{"OutOf(1 'A.member')", `expected ','`},
		{"OutOf(99999999999999999999, 'A.member')", "out of range"},
		{strings.Repeat("AND(", 40) + "'A.member'" + strings.Repeat(")", 40), "nested deeper"},
	}
	for _, tc := range tests {
		t.Run(tc.in, func(t *testing.T) {
			_, err := ParseDSL(tc.in)
			if !errors.Is(err, ErrDSL) {
				t.Fatalf("err = %v, want ErrDSL", err)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err %q does not contain %q", err, tc.want)
			}
		})
	}
}

func TestBuilders(t *testing.T) {
	spe := SignedByAnyMember([]string{"A", "B"})
	if s, _ := FormatDSL(spe); s != "OR('A.member', 'B.member')" {
		t.Fatalf("SignedByAnyMember = %s", s)
	}
	for name, spe := range map[string]*cb.SignaturePolicyEnvelope{
		"admin": SignedByAnyAdmin([]string{"A"}), "peer": SignedByAnyPeer([]string{"A"}), "client": SignedByAnyClient([]string{"A"}),
	} {
		if s, _ := FormatDSL(spe); s != "OR('A."+name+"')" {
			t.Fatalf("%s builder = %s", name, s)
		}
	}
}

func FuzzParseDSL(f *testing.F) {
	for _, s := range []string{
		"AND('Org1MSP.peer','Org2MSP.peer')",
		"OR('Org1MSP.member', AND('Org2MSP.admin', 'Org3MSP.client'))",
		"OutOf(2, 'A.member', 'B.member', 'C.member')",
		"AND(", "OutOf(", "'A.member'", "AND('A.member'))", `or("x.orderer")`,
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		spe, err := ParseDSL(s)
		if err != nil {
			if !errors.Is(err, ErrDSL) {
				t.Fatalf("error not ErrDSL: %v", err)
			}
			return
		}
		text, err := FormatDSL(spe)
		if err != nil {
			t.Fatalf("parsed policy does not compile: %v", err)
		}
		if _, err := ParseDSL(text); err != nil {
			t.Fatalf("formatted policy %q does not parse: %v", text, err)
		}
	})
}
