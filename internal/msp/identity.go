package msp

import (
	"crypto/ecdsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"fmt"
	"runtime"
	"strings"
	"sync/atomic"
	"time"

	mspproto "github.com/hyperledger/fabric-protos-go-apiv2/msp"

	"github.com/cairn-ledger/cairn/internal/crypto"
	"github.com/cairn-ledger/cairn/internal/crypto/p256"
)

// Identity is a deserialised, validated member of an MSP. It is immutable.
type Identity struct {
	msp        *MSP
	serialized []byte
	idBytes    []byte // the PEM as presented
	cert       *x509.Certificate
	pub        *ecdsa.PublicKey
	id         string // hex SHA-256 of the (sanitised) certificate, Fabric's identity ID
	certifiers []byte
	nodeRole   mspproto.MSPRole_MSPRoleType
	hasNodeOU  bool
	admin      bool

	// verifies counts verifications until the key earns a table; table is
	// the key's precomputed multiples once it has (see keyTable).
	verifies atomic.Uint32
	table    atomic.Pointer[p256.Table]
}

// A key gets a precomputed table on its hotKeyVerifies-th verification: the
// table costs about 30 verifications to build and halves each one after, and
// the few client, peer and orderer keys that sign most of a channel's traffic
// reach this quickly. Each MSP holds at most maxKeyTables of them at a time
// (p256.TableBytes each, ≈230 KB), so many occasional signers cost no memory.
const (
	hotKeyVerifies = 32
	maxKeyTables   = 64
)

// MSPID returns the identifier of the identity's MSP.
func (id *Identity) MSPID() string { return id.msp.id }

// ID returns Fabric's identity identifier within the MSP: the hex SHA-256 of the
// certificate. MSPID()+ID() identifies a signer whatever the PEM encoding used.
func (id *Identity) ID() string { return id.id }

// Certificate returns the identity's certificate (low-S sanitised, as Fabric keeps it).
func (id *Identity) Certificate() *x509.Certificate { return id.cert }

// Serialized returns the SerializedIdentity bytes the identity was read from.
func (id *Identity) Serialized() []byte { return id.serialized }

// ExpiresAt returns the certificate's NotAfter.
func (id *Identity) ExpiresAt() time.Time { return id.cert.NotAfter }

// CheckValidAt returns ErrExpired or ErrNotYetValid when t is outside the
// certificate's validity period. MSP validation itself ignores expiry, as Fabric's
// does; the orderer's Broadcast and the Deliver services call this.
func (id *Identity) CheckValidAt(t time.Time) error {
	if t.After(id.cert.NotAfter) {
		return fmt.Errorf("%w: %s expired at %s", ErrExpired, id, id.cert.NotAfter.UTC().Format(time.RFC3339))
	}
	if t.Before(id.cert.NotBefore) {
		return fmt.Errorf("%w: %s valid from %s", ErrNotYetValid, id, id.cert.NotBefore.UTC().Format(time.RFC3339))
	}
	return nil
}

// NodeRole returns the role the identity's NodeOU gives it (CLIENT, PEER, ADMIN or
// ORDERER) and true, or MEMBER and false when its MSP does not use NodeOUs.
func (id *Identity) NodeRole() (mspproto.MSPRole_MSPRoleType, bool) {
	return id.nodeRole, id.hasNodeOU
}

// IsAdmin reports whether the identity is an admin of its MSP: listed in the
// admin certificates, or carrying the admin NodeOU.
func (id *Identity) IsAdmin() bool {
	return id.admin || (id.hasNodeOU && id.nodeRole == mspproto.MSPRole_ADMIN)
}

// OrganizationalUnits returns the OU names in the certificate's subject.
func (id *Identity) OrganizationalUnits() []string { return id.cert.Subject.OrganizationalUnit }

// CertifiersIdentifier returns Fabric's certifiers identifier of the identity: the
// SHA-256 over its issuing CA chain, used by ORGANIZATION_UNIT principals.
func (id *Identity) CertifiersIdentifier() []byte { return id.certifiers }

// Verify checks sig (ECDSA P-256 over SHA-256, DER, low-S) over msg.
func (id *Identity) Verify(msg, sig []byte) error {
	var err error
	if t := id.keyTable(); t != nil {
		err = crypto.VerifyTable(t, msg, sig)
	} else {
		err = crypto.Verify(id.pub, msg, sig)
	}
	if err != nil {
		return fmt.Errorf("verify signature of %s: %w", id, err)
	}
	return nil
}

// keyTable returns the key's precomputed table, building it on the
// hotKeyVerifies-th verification while the MSP has tables to spare. Exactly
// one caller builds it; the others verify without it meanwhile.
func (id *Identity) keyTable() *p256.Table {
	if t := id.table.Load(); t != nil {
		return t
	}
	if id.msp == nil || id.verifies.Add(1) != hotKeyVerifies || !id.msp.reserveKeyTable() {
		return nil
	}
	t, err := p256.NewTable(id.pub)
	if err != nil { // MSP validation admits P-256 keys only; keep the plain path
		id.msp.releaseKeyTable()
		return nil
	}
	id.table.Store(t)
	// The slot comes back when the identity is gone (evicted from the
	// identity cache and no longer in use), so a long-running node whose hot
	// signers change over time keeps building tables for the new ones.
	runtime.AddCleanup(id, (*MSP).releaseKeyTable, id.msp)
	return t
}

// String describes the identity for messages: MSP ID, role and common name.
func (id *Identity) String() string {
	var b strings.Builder
	b.WriteString(id.msp.id)
	if r := id.roleName(); r != "" {
		b.WriteString(" ")
		b.WriteString(r)
	}
	fmt.Fprintf(&b, " %q", id.cert.Subject.CommonName)
	return b.String()
}

func (id *Identity) roleName() string {
	if id.hasNodeOU {
		return RoleName(id.nodeRole)
	}
	if id.admin {
		return "admin"
	}
	return ""
}

// RoleName returns the policy DSL name of a role: member, admin, client, peer, orderer.
func RoleName(r mspproto.MSPRole_MSPRoleType) string {
	switch r {
	case mspproto.MSPRole_MEMBER:
		return "member"
	case mspproto.MSPRole_ADMIN:
		return "admin"
	case mspproto.MSPRole_CLIENT:
		return "client"
	case mspproto.MSPRole_PEER:
		return "peer"
	case mspproto.MSPRole_ORDERER:
		return "orderer"
	}
	return fmt.Sprintf("role(%d)", int32(r))
}

func newIdentity(m *MSP, serialized, idBytes []byte, v *validated) *Identity {
	sum := sha256.Sum256(v.cert.Raw)
	return &Identity{
		msp:        m,
		serialized: serialized,
		idBytes:    idBytes,
		cert:       v.cert,
		pub:        v.pub,
		id:         hex.EncodeToString(sum[:]),
		certifiers: v.certifiers,
		nodeRole:   v.nodeRole,
		hasNodeOU:  v.hasNodeOU,
		admin:      v.admin,
	}
}
