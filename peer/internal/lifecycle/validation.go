package lifecycle

import (
	"errors"
	"fmt"
	"strings"

	"github.com/hyperledger/fabric-protos-go-apiv2/ledger/rwset/kvrwset"
)

// ValidationPolicyForWrites returns the channel policy that must endorse a
// `_lifecycle` transaction with these writes (namespace `_lifecycle` only):
//
//   - writes only under one organisation's approval keys:
//     /Channel/Application/<MSPID>/Endorsement, so that only that
//     organisation's peers can record its approval;
//   - writes only of definitions, or no writes:
//     /Channel/Application/LifecycleEndorsement.
//
// Anything else — approvals of several organisations, approvals mixed with
// definitions, keys outside the layout — is an error: the SCC never
// produces such a transaction, so it was forged and must be invalidated.
func ValidationPolicyForWrites(writes []*kvrwset.KVWrite) (policyPath string, err error) {
	var org string
	definitions := false
	for _, w := range writes {
		key := w.GetKey()
		switch {
		case strings.HasPrefix(key, definitionPrefix):
			name := strings.TrimPrefix(key, definitionPrefix)
			if validateName(name) != nil {
				return "", fmt.Errorf("write to malformed lifecycle key %q", key)
			}
			definitions = true
		case strings.HasPrefix(key, approvalPrefix):
			o, ok := approvalOrg(key)
			if !ok {
				return "", fmt.Errorf("write to malformed lifecycle key %q", key)
			}
			if org != "" && o != org {
				return "", fmt.Errorf("transaction writes approvals of more than one organization (%s and %s)", org, o)
			}
			org = o
		default:
			return "", fmt.Errorf("write to unknown lifecycle key %q", key)
		}
	}
	switch {
	case org != "" && definitions:
		return "", errors.New("transaction writes both an organization's approval and a chaincode definition")
	case org != "":
		return "/Channel/Application/" + org + "/Endorsement", nil
	default:
		return LifecycleEndorsementPolicyRef, nil
	}
}
