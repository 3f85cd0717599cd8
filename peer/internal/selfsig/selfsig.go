// Package selfsig owns the peer's memory of the endorsements it signed itself.
//
// Every transaction a peer endorsed comes back to it in a block, and
// validation checks each endorsement's signature, its own included: one ECDSA
// verification (~70 µs on a core here) per transaction that the peer could
// answer from memory, because an ECDSA signature that this peer produced over
// exactly these bytes is valid by construction. A Memo wraps the endorsing
// signer, remembers the SHA-256 of each message it signed under the signature,
// and tells validation whether a (identity, message, signature) triple is one
// of them. Anything it does not remember (an old endorsement, one from before a
// restart, another peer's) is verified as before, so the answer never changes,
// only its cost.
package selfsig

import (
	"bytes"
	"crypto/sha256"
	"sync"
)

// Signer is the identity whose signatures are remembered.
type Signer interface {
	Serialize() []byte
	Sign(msg []byte) ([]byte, error)
}

// DefaultSize is how many signatures a Memo remembers by default: at 2,000
// endorsements a second, the last ~16 s, far longer than an endorsed
// transaction takes to reach a block; ~5 MiB.
const DefaultSize = 1 << 15

// Config configures a Memo.
type Config struct {
	Signer Signer
	// Size bounds the signatures remembered; the oldest is forgotten first.
	// 0 means DefaultSize.
	Size int
}

// Memo is a Signer that remembers what it signed. It is safe for concurrent use.
type Memo struct {
	signer   Signer
	identity []byte

	mu      sync.Mutex
	digests map[string][sha256.Size]byte // signature → SHA-256 of the signed message
	order   []string                     // ring of the remembered signatures, oldest at next
	next    int
}

// New returns a Memo around cfg.Signer.
func New(cfg Config) *Memo {
	if cfg.Size <= 0 {
		cfg.Size = DefaultSize
	}
	return &Memo{
		signer:   cfg.Signer,
		identity: cfg.Signer.Serialize(),
		digests:  make(map[string][sha256.Size]byte, cfg.Size),
		order:    make([]string, cfg.Size),
	}
}

// Serialize returns the wrapped signer's serialized identity.
func (m *Memo) Serialize() []byte { return m.signer.Serialize() }

// Sign signs msg with the wrapped signer and remembers the signature.
func (m *Memo) Sign(msg []byte) ([]byte, error) {
	sig, err := m.signer.Sign(msg)
	if err != nil {
		return nil, err
	}
	digest := sha256.Sum256(msg)
	key := string(sig)
	m.mu.Lock()
	if old := m.order[m.next]; old != "" {
		delete(m.digests, old)
	}
	m.order[m.next] = key
	m.next = (m.next + 1) % len(m.order)
	m.digests[key] = digest
	m.mu.Unlock()
	return sig, nil
}

// Signed reports whether sig is a signature this Memo produced over msg for
// identity, so that verifying it again would be redundant. False means only
// "not remembered": the caller verifies as usual.
func (m *Memo) Signed(identity, msg, sig []byte) bool {
	if !bytes.Equal(identity, m.identity) {
		return false
	}
	m.mu.Lock()
	digest, ok := m.digests[string(sig)]
	m.mu.Unlock()
	return ok && digest == sha256.Sum256(msg)
}
