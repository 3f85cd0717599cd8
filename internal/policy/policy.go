// Package policy owns Fabric policy evaluation: signature policies (NOutOf trees
// over MSP principals, cauthdsl semantics), implicit meta policies (ANY, ALL,
// MAJORITY over child groups), the policy tree of a channel configuration
// addressed by paths such as /Channel/Application/Writers, and the signature
// policy DSL ("AND('Org1MSP.peer','Org2MSP.peer')").
//
// A failed evaluation returns an *Error that names the policy, what was missing
// and, for every offered signature, why it did not count.
//
// Managers and compiled policies are immutable and safe for concurrent use; each
// Evaluate call deserialises and verifies every SignedData at most once, however
// many sub-policies it visits.
package policy

import (
	"errors"
	"fmt"
	"strings"
)

// SignedData is one signature over Data by the serialized identity Identity
// (a marshalled msp.SerializedIdentity).
type SignedData struct {
	Data      []byte
	Identity  []byte
	Signature []byte
	// SignatureVerified says the caller has already verified Signature over
	// Data with the identity, deserialised by the same MSPs the policy uses,
	// so evaluation skips the ECDSA check (the identity is still
	// deserialised and validated). The endorser sets it for the proposal it
	// has just verified; leave it false for anything else.
	SignatureVerified bool
}

// Policy is a compiled policy.
type Policy interface {
	// Evaluate returns nil if the signatures satisfy the policy, or an error
	// matching ErrNotSatisfied (an *Error) explaining why not.
	Evaluate(signed []SignedData) error
}

var (
	// ErrNotSatisfied matches every *Error: the signatures do not satisfy the policy.
	ErrNotSatisfied = errors.New("policy not satisfied")
	// ErrNoPolicy means a policy path names no policy.
	ErrNoPolicy = errors.New("no such policy")
)

// Error explains a failed evaluation. Error() is one line; the fields keep the
// structure for logs and APIs.
type Error struct {
	// Path is the policy's path, e.g. /Channel/Application/Writers; empty for a
	// policy evaluated outside a channel tree (a chaincode endorsement policy).
	Path string
	// Rule is the policy in readable form: DSL for signature policies,
	// "MAJORITY Admins" for implicit meta policies.
	Rule string
	// Required and Satisfied count what the top of the rule needs and got:
	// branches of the root NOutOf, or sub-policies of an implicit meta policy.
	Required, Satisfied int
	// Total is the number of branches of the root NOutOf, or of sub-policies.
	Total int
	// Missing lists the principals (signature policy) or sub-policy paths
	// (implicit meta policy) that were not satisfied.
	Missing []string
	// Signatures says, for each offered signature, whether and why it counted.
	// Set for signature policies; for implicit meta ones see SubPolicies.
	Signatures []SignatureResult
	// SubPolicies holds the failures of the sub-policies of an implicit meta policy.
	SubPolicies []*Error
	// Cause is set when the policy could not be evaluated at all (e.g. a missing
	// sub-policy); it is returned by Unwrap.
	Cause error

	meta bool // implicit meta policy: SubPolicies rather than Signatures
}

// SignatureResult is the fate of one SignedData in an evaluation.
type SignatureResult struct {
	Index   int    // position in the evaluated []SignedData
	MSPID   string // claimed MSP ID, as far as it could be read
	Subject string // certificate common name, if the identity could be read
	// Counted is true if the signature satisfied a principal; CountedFor names it.
	Counted    bool
	CountedFor string
	// Reason says why the signature did not count.
	Reason string
	// Err is the underlying error (msp sentinels, crypto.ErrBadSignature, ...),
	// nil if the identity was valid but did not match.
	Err error
}

func (e *Error) Error() string {
	var b strings.Builder
	b.WriteString("policy ")
	if e.Path != "" {
		b.WriteString(e.Path)
		b.WriteString(" ")
	}
	b.WriteString("not satisfied: ")
	e.writeBody(&b)
	return b.String()
}

func (e *Error) writeBody(b *strings.Builder) {
	if e.Cause != nil {
		b.WriteString(e.Cause.Error())
		return
	}
	if e.meta {
		fmt.Fprintf(b, "%s needs %d of %d sub-policies, %d satisfied", e.Rule, e.Required, e.Total, e.Satisfied)
		for i, s := range e.SubPolicies {
			if i == 0 {
				b.WriteString(": ")
			} else {
				b.WriteString("; ")
			}
			b.WriteString(s.Path)
			b.WriteString(" ")
			s.writeBody(b)
		}
		return
	}
	fmt.Fprintf(b, "%s needs %d, got %d", e.Rule, e.Required, e.Satisfied)
	if len(e.Missing) > 0 {
		b.WriteString(", missing ")
		b.WriteString(strings.Join(e.Missing, ", "))
	}
	if len(e.Signatures) == 0 {
		b.WriteString(" (no signatures)")
		return
	}
	b.WriteString(" (")
	for i, s := range e.Signatures {
		if i > 0 {
			b.WriteString("; ")
		}
		fmt.Fprintf(b, "signature %d", s.Index)
		if s.MSPID != "" || s.Subject != "" {
			b.WriteString(" by ")
			b.WriteString(describe(s.MSPID, s.Subject))
		}
		if s.Counted {
			b.WriteString(" counted for ")
			b.WriteString(s.CountedFor)
		} else {
			b.WriteString(" did not count: ")
			b.WriteString(s.Reason)
		}
	}
	b.WriteString(")")
}

func describe(mspID, subject string) string {
	switch {
	case subject == "":
		return mspID
	case mspID == "":
		return fmt.Sprintf("%q", subject)
	}
	return fmt.Sprintf("%s %q", mspID, subject)
}

// Is makes every *Error match ErrNotSatisfied.
func (e *Error) Is(target error) bool { return target == ErrNotSatisfied }

// Unwrap returns Cause.
func (e *Error) Unwrap() error { return e.Cause }

// Explain renders a failed check of the policy at path in one line: an *Error
// already names its policy and why it failed; any other error gets the path
// prefixed, so every refusal says which policy refused.
func Explain(path string, err error) string {
	var pe *Error
	var nc *notCurrentError
	if errors.As(err, &pe) || errors.As(err, &nc) {
		return err.Error()
	}
	return fmt.Sprintf("policy %s not satisfied: %v", path, err)
}
