// Package configtx owns Fabric's channel configuration updates: authorising a
// CONFIG_UPDATE envelope against the current configuration and producing the
// next configuration (ProposeUpdate, with the semantics of Fabric's
// common/configtx validator), re-checking a CONFIG envelope a peer receives in a
// config block (Validate), the checks an ordering service enforces on a new
// configuration (ValidateNew, ConsenterChange), and building signed update
// envelopes for clients and tests (NewUpdateEnvelope).
//
// The package holds no state: every function is pure over its arguments, never
// modifies the current configuration it is given, and is safe for concurrent
// use. Nothing it is given is trusted: malformed bytes yield errors, never
// panics.
//
// An update is a read set and a write set of config elements (groups, values,
// policies), each with a version. The rules, as in Fabric:
//   - every element of the read set must exist at that version in the current
//     configuration;
//   - the delta is the part of the write set whose version differs from the
//     read set's; it must not be empty;
//   - a changed element's version is its current version plus one, and the
//     change must satisfy its current mod_policy (relative paths are resolved
//     from the element's group: a group's own path, a value's or policy's
//     parent group);
//   - a new element has version 0 and is authorised through its group, whose
//     version the update must raise (so the group's mod_policy covers it);
//   - a group whose version is raised takes the membership the write set gives
//     it: children it no longer lists are deleted, again under the group's
//     mod_policy.
//
// Cairn is stricter than Fabric in one place: Fabric silently drops write-set
// elements that do not end up in the new configuration (a new element whose
// group is not modified); Cairn refuses such an update, since it cannot have
// been meant.
package configtx

import (
	"errors"
)

// Signer is a signing identity: its serialized msp.SerializedIdentity and a
// signature function (SHA-256 ECDSA, low-S) over arbitrary messages.
type Signer interface {
	Serialize() []byte
	Sign(msg []byte) ([]byte, error)
}

// Errors callers branch on (an orderer maps them to Fabric statuses:
// authorisation failures to FORBIDDEN, the rest to BAD_REQUEST).
// Authorisation failures match policy.ErrNotSatisfied instead: they wrap the
// *policy.Error of the mod_policy that refused.
var (
	// ErrMalformed marks an envelope or update that does not decode into the
	// expected structure, or is not a CONFIG_UPDATE.
	ErrMalformed = errors.New("malformed config update")
	// ErrWrongChannel marks an update for another channel.
	ErrWrongChannel = errors.New("config update for another channel")
	// ErrVersionMismatch marks an update computed against a configuration other
	// than the current one: the client must fetch the current configuration and
	// compute the update again.
	ErrVersionMismatch = errors.New("version mismatch")
	// ErrInvalidUpdate marks an update whose structure breaks the rules of
	// config updates (empty delta, bad names or mod_policies, orphan elements).
	ErrInvalidUpdate = errors.New("invalid config update")
	// ErrInvalidConfig marks a resulting configuration that does not parse or
	// that the ordering service refuses (ValidateNew, ConsenterChange).
	ErrInvalidConfig = errors.New("invalid channel configuration")
)
