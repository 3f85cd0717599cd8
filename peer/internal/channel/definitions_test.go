package channel

import (
	"strings"
	"testing"

	pb "github.com/hyperledger/fabric-protos-go-apiv2/peer"
	"google.golang.org/protobuf/proto"

	"github.com/cairn-ledger/cairn/internal/policy"
)

// TestDefinitionsFollowLifecycleCommits checks that what ChaincodeInfo and
// EndorsementPolicy serve from the cache is what state holds after every
// _lifecycle commit: an upgrade to a new package and policy is seen at once,
// other blocks keep the cached entry, and errors are never cached.
func TestDefinitionsFollowLifecycleCommits(t *testing.T) {
	e := newCommitEnv(t)
	c := e.c
	if _, _, err := c.ChaincodeInfo("cached"); err == nil || !strings.Contains(err.Error(), "not defined") {
		t.Fatalf("undefined chaincode: %v", err)
	}
	e.define(t, "cached", "1.0", 1, "cached_1.0:aaaa", "OR('Org1MSP.peer')")

	check := func(stage, wantPkg, wantVersion string, wantSeq int64, wantPolicy string) {
		t.Helper()
		for range 2 { // the second read comes from the cache
			pkg, def, err := c.ChaincodeInfo("cached")
			if err != nil {
				t.Fatalf("%s: ChaincodeInfo: %v", stage, err)
			}
			if pkg != wantPkg || def.Version != wantVersion || def.Sequence != wantSeq {
				t.Fatalf("%s: package %s version %s sequence %d, want %s %s %d", stage, pkg, def.Version, def.Sequence, wantPkg, wantVersion, wantSeq)
			}
			spe, _, err := c.EndorsementPolicy("cached", nil)
			if err != nil {
				t.Fatalf("%s: EndorsementPolicy: %v", stage, err)
			}
			want, err := policy.ParseDSL(wantPolicy)
			if err != nil {
				t.Fatal(err)
			}
			if !proto.Equal(spe, want) {
				t.Fatalf("%s: policy %v, want %s", stage, spe, wantPolicy)
			}
		}
	}
	check("defined", "cached_1.0:aaaa", "1.0", 1, "OR('Org1MSP.peer')")

	gen := c.defs.current()
	d, _ := e.tx(t, txSpec{simulate: put("asset1", "x")})
	e.mustCommit(t, [][]byte{d}, pb.TxValidationCode_VALID)
	if c.defs.current() != gen {
		t.Fatal("a block without _lifecycle writes invalidated the cache")
	}
	check("after an ordinary block", "cached_1.0:aaaa", "1.0", 1, "OR('Org1MSP.peer')")

	e.define(t, "cached", "2.0", 2, "cached_2.0:bbbb", "AND('Org1MSP.peer','Org2MSP.peer')")
	if c.defs.current() == gen {
		t.Fatal("_lifecycle commits did not invalidate the cache")
	}
	check("upgraded", "cached_2.0:bbbb", "2.0", 2, "AND('Org1MSP.peer','Org2MSP.peer')")

	// Reopened, the channel starts with an empty cache and reads state.
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	c, err := Open(e.cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	check("reopened", "cached_2.0:bbbb", "2.0", 2, "AND('Org1MSP.peer','Org2MSP.peer')")
}
