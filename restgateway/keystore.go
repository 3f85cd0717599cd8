package restgateway

import (
	"context"
	"fmt"
	"os"

	"github.com/hyperledger/fabric-gateway/pkg/identity"

	"github.com/cairn-ledger/cairn/internal/crypto"
)

// Sign signs a SHA-256 digest and returns an ASN.1 DER ECDSA signature in
// low-S form; it is the fabric-gateway client's identity.Sign, so an HSM or
// Vault Transit signer plugs in without adapting.
type Sign = identity.Sign

// KeyStore hands out the signing function of an identity's private key. The
// gateway asks once per identity, when it first connects that identity, and
// checks the key against the identity's certificate before using it.
// Implementations must be safe for concurrent use, and so must the Sign
// functions they return.
type KeyStore interface {
	Signer(ctx context.Context, ref KeyStoreConfig) (Sign, error)
}

// FileKeyStore reads PEM private keys (PKCS#8 or SEC 1 EC) from files.
type FileKeyStore struct{}

// Signer implements KeyStore for keyStore.type "file".
func (FileKeyStore) Signer(_ context.Context, ref KeyStoreConfig) (Sign, error) {
	raw, err := os.ReadFile(ref.KeyFile)
	if err != nil {
		return nil, fmt.Errorf("file key store: %w", err)
	}
	key, err := crypto.ParsePrivateKeyPEM(raw)
	if err != nil {
		return nil, fmt.Errorf("file key store: %s: %w", ref.KeyFile, err)
	}
	// The client library's signer hashes nothing and normalises S, as Fabric needs.
	sign, err := identity.NewPrivateKeySign(key)
	if err != nil {
		return nil, fmt.Errorf("file key store: %s: %w", ref.KeyFile, err)
	}
	return sign, nil
}
