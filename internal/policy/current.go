package policy

import (
	"fmt"
	"time"

	"github.com/cairn-ledger/cairn/internal/msp"
)

// notCurrentError refuses a signer whose certificate is not valid now.
type notCurrentError struct {
	path  string
	index int
	cause error
}

func (e *notCurrentError) Error() string {
	return fmt.Sprintf("policy %s not satisfied: signature %d: %v", e.path, e.index, e.cause)
}

func (e *notCurrentError) Unwrap() []error { return []error{ErrNotSatisfied, e.cause} }

// CheckCurrent refuses signatures whose identity's certificate is expired or
// not yet valid at t. Clients that act now — Broadcast and Deliver — are held
// to it, as Fabric's expiration checks do; evaluating committed transactions
// never is, so replaying an old chain gives the same answers. Identities that
// do not deserialize are left to the policy evaluation, which explains them.
// The error matches ErrNotSatisfied and msp.ErrExpired / msp.ErrNotYetValid.
func CheckCurrent(path string, ids *msp.Manager, signed []SignedData, t time.Time) error {
	for i, sd := range signed {
		id, err := ids.Deserialize(sd.Identity)
		if err != nil {
			continue
		}
		if err := id.CheckValidAt(t); err != nil {
			return &notCurrentError{path: path, index: i, cause: err}
		}
	}
	return nil
}
