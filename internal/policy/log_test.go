package policy_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"log/slog"
	"testing"

	"github.com/cairn-ledger/cairn/internal/msp/msptest"
	"github.com/cairn-ledger/cairn/internal/policy"
)

// TestLogAttrCarriesTheExplanation: a failed evaluation logged with LogAttr
// gives the policy, what was missing and why each signature did not count as
// JSON fields.
func TestLogAttrCarriesTheExplanation(t *testing.T) {
	ca := msptest.NewCA(t, "Org1MSP")
	ids := msptest.Manager(t, ca)
	spe, err := policy.ParseDSL("AND('Org1MSP.peer','Org1MSP.admin')")
	if err != nil {
		t.Fatal(err)
	}
	client := ca.Issue(t, "alice", "client")
	msg := []byte("m")
	evalErr := policy.EvaluateEnvelope(spe, []policy.SignedData{{Data: msg, Identity: client.Serialize(), Signature: client.Sign(t, msg)}}, ids)
	if !errors.Is(evalErr, policy.ErrNotSatisfied) {
		t.Fatalf("evaluation: %v", evalErr)
	}
	var buf bytes.Buffer
	slog.New(slog.NewJSONHandler(&buf, nil)).Info("refused", policy.LogAttr(evalErr))
	var rec struct {
		Policy struct {
			Rule       string
			Missing    []string
			Signatures []struct {
				MSPID   string `json:"msp_id"`
				Counted bool
				Reason  string
			}
		}
	}
	if err := json.Unmarshal(buf.Bytes(), &rec); err != nil {
		t.Fatalf("%v: %s", err, buf.String())
	}
	p := rec.Policy
	if p.Rule == "" || len(p.Missing) == 0 || len(p.Signatures) != 1 || p.Signatures[0].Counted || p.Signatures[0].Reason == "" || p.Signatures[0].MSPID != "Org1MSP" {
		t.Fatalf("logged policy fields %+v from %s", p, buf.String())
	}
	// Other errors add nothing.
	buf.Reset()
	slog.New(slog.NewJSONHandler(&buf, nil)).Info("x", policy.LogAttr(errors.New("other")))
	if bytes.Contains(buf.Bytes(), []byte(`"policy"`)) {
		t.Fatalf("a non-policy error logged policy fields: %s", buf.String())
	}
}
