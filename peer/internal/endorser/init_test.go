package endorser

import (
	"strings"
	"testing"

	"github.com/cairn-ledger/cairn/peer/internal/lifecycle"
)

// state is committed state (reads) plus one transaction's writes, which —
// as in a Fabric simulation — reads do not see.
type state struct {
	committed map[string]string
	written   map[string]string
}

func (s *state) GetState(ns, key string) ([]byte, error) {
	v, ok := s.committed[ns+"/"+key]
	if !ok {
		return nil, nil
	}
	return []byte(v), nil
}

func (s *state) SetState(ns, key string, value []byte) error {
	if s.written == nil {
		s.written = map[string]string{}
	}
	s.written[ns+"/"+key] = string(value)
	return nil
}

// TestCheckInit follows Fabric's CheckInvocation: a definition requiring
// initialisation accepts only an init invocation until its version is
// initialised (recorded in the same transaction), then refuses one; a new
// version needs init again; a definition without the rule refuses init
// invocations.
func TestCheckInit(t *testing.T) {
	required := &lifecycle.ChaincodeDefinition{Name: "cc", Version: "1.0", Sequence: 1, InitRequired: true}
	marker := "cc/" + InitializedKey

	fresh := &state{}
	if _, err := checkInit("cc", required, false, fresh); err == nil || !strings.Contains(err.Error(), "has not been initialized for this version, must call as init first") {
		t.Fatalf("invocation before init: %v", err)
	}
	run, err := checkInit("cc", required, true, fresh)
	if err != nil || !run {
		t.Fatalf("init invocation: run %v, %v", run, err)
	}
	if fresh.written[marker] != "1.0" {
		t.Fatalf("init wrote %v, want the version under the initialized key", fresh.written)
	}

	initialised := &state{committed: map[string]string{marker: "1.0"}}
	if _, err := checkInit("cc", required, true, initialised); err == nil || !strings.Contains(err.Error(), "is already initialized but called as init") {
		t.Fatalf("second init: %v", err)
	}
	if run, err := checkInit("cc", required, false, initialised); err != nil || run {
		t.Fatalf("invocation after init: run %v, %v", run, err)
	}
	older := &state{committed: map[string]string{marker: "0.9"}}
	if _, err := checkInit("cc", required, false, older); err == nil || !strings.Contains(err.Error(), "must call as init first") {
		t.Fatalf("invocation of a version not initialised: %v", err)
	}

	notRequired := &lifecycle.ChaincodeDefinition{Name: "cc", Version: "1.0", Sequence: 1}
	if _, err := checkInit("cc", notRequired, true, &state{}); err == nil || !strings.Contains(err.Error(), "does not require initialization but called as init") {
		t.Fatalf("init of a chaincode that needs none: %v", err)
	}
	if run, err := checkInit("cc", notRequired, false, &state{}); err != nil || run {
		t.Fatalf("plain invocation: run %v, %v", run, err)
	}
}
