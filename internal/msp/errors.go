package msp

import (
	"errors"
	"fmt"
)

// Sentinel errors. Deserialize and SatisfiesPrincipal wrap them with the details
// (MSP ID, subject, cause), so callers branch with errors.Is and humans read the text.
var (
	// ErrMalformedIdentity means the bytes are not a SerializedIdentity holding a PEM certificate.
	ErrMalformedIdentity = errors.New("malformed identity")
	// ErrUnknownMSP means the identity names an MSP this manager does not hold.
	ErrUnknownMSP = errors.New("unknown MSP")
	// ErrUnsupportedKey means the certificate's key is not ECDSA P-256.
	ErrUnsupportedKey = errors.New("not a valid P-256 certificate")
	// ErrCAIdentity means a CA certificate was presented as an identity.
	ErrCAIdentity = errors.New("CA certificate cannot be used as an identity")
	// ErrUnknownIssuer means no chain leads from the certificate to a root CA of the MSP.
	ErrUnknownIssuer = errors.New("certificate not issued by any CA of the MSP")
	// ErrRevoked means a CRL of the issuing CA lists the certificate.
	ErrRevoked = errors.New("certificate revoked")
	// ErrInvalidOUs means the certificate's OUs do not fit the MSP's NodeOU or OU rules.
	ErrInvalidOUs = errors.New("certificate organizational units not accepted by the MSP")
	// ErrExpired is returned by Identity.CheckValidAt for a certificate past NotAfter.
	ErrExpired = errors.New("certificate expired")
	// ErrNotYetValid is returned by Identity.CheckValidAt before NotBefore.
	ErrNotYetValid = errors.New("certificate not yet valid")

	// ErrPrincipalNotSatisfied matches every "identity does not satisfy principal" error.
	ErrPrincipalNotSatisfied = errors.New("principal not satisfied")
	// ErrWrongMSP means the principal names another MSP than the identity's.
	ErrWrongMSP = errors.New("identity belongs to a different MSP")
	// ErrWrongRole means the identity is of the right MSP but lacks the role or OU.
	ErrWrongRole = errors.New("identity lacks the required role")
	// ErrInvalidPrincipal means the principal itself is malformed or unsupported.
	ErrInvalidPrincipal = errors.New("invalid principal")
)

// notSatisfied is an explanation of why an identity does not satisfy a principal.
// It matches ErrPrincipalNotSatisfied and its own kind.
// The message is formatted only when asked for: policy evaluation tries every
// signer against every principal and mostly discards the mismatches, so
// formatting each one eagerly cost ~1 % of a busy peer.
type notSatisfied struct {
	kind   error
	format string
	args   []any
}

func unsatisfied(kind error, format string, args ...any) *notSatisfied {
	return &notSatisfied{kind: kind, format: format, args: args}
}

func (e *notSatisfied) Error() string { return fmt.Sprintf(e.format, e.args...) }

func (e *notSatisfied) Is(target error) bool {
	return target == ErrPrincipalNotSatisfied || target == e.kind
}
