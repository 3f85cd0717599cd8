package policy_test

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/cairn-ledger/cairn/internal/msp"
	"github.com/cairn-ledger/cairn/internal/msp/msptest"
	"github.com/cairn-ledger/cairn/internal/policy"
)

func TestCheckCurrent(t *testing.T) {
	ca := msptest.NewCA(t, "Org1MSP")
	ids := msptest.Manager(t, ca)
	now := time.Now()
	current := ca.Issue(t, "alice", "client")
	expired := ca.IssueWith(t, msptest.LeafOptions{Name: "bob", OUs: []string{"client"}, NotBefore: now.Add(-30 * time.Minute), NotAfter: now.Add(-time.Minute)})
	future := ca.IssueWith(t, msptest.LeafOptions{Name: "carol", OUs: []string{"client"}, NotBefore: now.Add(time.Hour), NotAfter: now.Add(48 * time.Hour)})
	sd := func(l *msptest.Leaf) policy.SignedData {
		msg := []byte("m")
		return policy.SignedData{Data: msg, Identity: l.Serialize(), Signature: l.Sign(t, msg)}
	}

	if err := policy.CheckCurrent("/Channel/Writers", ids, []policy.SignedData{sd(current)}, now); err != nil {
		t.Fatalf("current identity refused: %v", err)
	}
	err := policy.CheckCurrent("/Channel/Writers", ids, []policy.SignedData{sd(current), sd(expired)}, now)
	if !errors.Is(err, policy.ErrNotSatisfied) || !errors.Is(err, msp.ErrExpired) {
		t.Fatalf("expired identity: %v, want ErrNotSatisfied and msp.ErrExpired", err)
	}
	if msg := policy.Explain("/Channel/Writers", err); !strings.Contains(msg, "/Channel/Writers") || !strings.Contains(msg, "expired") || strings.Count(msg, "not satisfied") != 1 {
		t.Fatalf("explanation %q", msg)
	}
	if err := policy.CheckCurrent("/Channel/Readers", ids, []policy.SignedData{sd(future)}, now); !errors.Is(err, msp.ErrNotYetValid) {
		t.Fatalf("not-yet-valid identity: %v", err)
	}
	// Undeserializable identities are left to the policy evaluation.
	if err := policy.CheckCurrent("/Channel/Readers", ids, []policy.SignedData{{Identity: []byte("junk")}}, now); err != nil {
		t.Fatalf("garbage identity: %v", err)
	}
}
