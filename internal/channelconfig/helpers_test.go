package channelconfig_test

import (
	"testing"

	"github.com/cairn-ledger/cairn/internal/crypto"
	"github.com/cairn-ledger/cairn/internal/policy"
)

type policySigned struct{ data, identity, sig []byte }

func toSigned(in []policySigned) []policy.SignedData {
	out := make([]policy.SignedData, len(in))
	for i, s := range in {
		out[i] = policy.SignedData{Data: s.data, Identity: s.identity, Signature: s.sig}
	}
	return out
}

func loadIdentity(t *testing.T, mspID, dir string) *crypto.SigningIdentity {
	t.Helper()
	id, err := crypto.LoadSigningIdentity(mspID, dir)
	if err != nil {
		t.Fatal(err)
	}
	return id
}
