package msp

import (
	"fmt"
	"sort"

	mspproto "github.com/hyperledger/fabric-protos-go-apiv2/msp"
	"google.golang.org/protobuf/proto"
)

// DefaultCacheSize is the number of validated identities a Manager keeps by default.
const DefaultCacheSize = 4096

// Manager holds the MSPs of one channel and deserialises identities against them.
// It is immutable apart from its internal cache and safe for concurrent use.
type Manager struct {
	msps  map[string]*MSP
	ids   []string
	cache *identityCache
}

// NewManager returns a Manager over msps with a cache of DefaultCacheSize
// identities. MSP IDs are expected to be unique; for a repeated ID the first wins.
func NewManager(msps ...*MSP) *Manager {
	return NewManagerWithCache(DefaultCacheSize, msps...)
}

// NewManagerWithCache is NewManager with a cache of size validated identities
// (0 or less disables caching).
func NewManagerWithCache(size int, msps ...*MSP) *Manager {
	m := &Manager{msps: make(map[string]*MSP, len(msps)), cache: newIdentityCache(size)}
	for _, x := range msps {
		if x == nil {
			continue
		}
		if _, dup := m.msps[x.id]; dup {
			continue
		}
		m.msps[x.id] = x
		m.ids = append(m.ids, x.id)
	}
	sort.Strings(m.ids)
	return m
}

// MSP returns the MSP with the given ID.
func (m *Manager) MSP(id string) (*MSP, bool) {
	x, ok := m.msps[id]
	return x, ok
}

// IDs returns the sorted MSP IDs the manager holds.
func (m *Manager) IDs() []string {
	return append([]string(nil), m.ids...)
}

// Deserialize parses a marshalled msp.SerializedIdentity and validates it against
// the MSP it names: ECDSA P-256 certificate, chain to the MSP's roots through its
// intermediates, not a CA, not revoked, NodeOU rules. Validated identities are
// cached by their exact bytes. Errors wrap the sentinels of this package.
func (m *Manager) Deserialize(serialized []byte) (*Identity, error) {
	if id, ok := m.cache.get(serialized); ok {
		return id, nil
	}
	var si mspproto.SerializedIdentity
	if err := proto.Unmarshal(serialized, &si); err != nil {
		return nil, fmt.Errorf("%w: unmarshal SerializedIdentity: %v", ErrMalformedIdentity, err)
	}
	x, ok := m.msps[si.Mspid]
	if !ok {
		return nil, fmt.Errorf("%w %q", ErrUnknownMSP, si.Mspid)
	}
	id, err := x.deserializeCert(serialized, si.IdBytes)
	if err != nil {
		return nil, err
	}
	m.cache.put(id)
	return id, nil
}

// deserializeCert validates a certificate PEM as a member of this MSP;
// serialized is recorded as the identity's Serialized() bytes.
func (x *MSP) deserializeCert(serialized, idBytes []byte) (*Identity, error) {
	c, err := certFromPEM(idBytes)
	if err != nil {
		return nil, fmt.Errorf("identity of MSP %q: %w", x.id, err)
	}
	v, err := x.validate(c)
	if err != nil {
		return nil, fmt.Errorf("identity %q of MSP %q: %w", c.Subject.CommonName, x.id, err)
	}
	serialized = append([]byte(nil), serialized...)
	return newIdentity(x, serialized, append([]byte(nil), idBytes...), v), nil
}

// Validate validates a PEM certificate as an identity of this MSP, without any
// cache. The identity's Serialized() form names this MSP.
func (x *MSP) Validate(certPEM []byte) (*Identity, error) {
	ser, err := proto.Marshal(&mspproto.SerializedIdentity{Mspid: x.id, IdBytes: certPEM})
	if err != nil {
		return nil, fmt.Errorf("serialize identity: %w", err)
	}
	return x.deserializeCert(ser, certPEM)
}
