package lifecycle

import (
	"bytes"
	"context"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	pb "github.com/hyperledger/fabric-protos-go-apiv2/peer"
	lb "github.com/hyperledger/fabric-protos-go-apiv2/peer/lifecycle"
	"google.golang.org/protobuf/proto"

	"github.com/cairn-ledger/cairn/chaincode/ccpackage"
)

// step is one invocation of a scenario, run on the peer of org (as an
// admin of that org unless creator says otherwise).
type step struct {
	org        string
	fn         string
	args       proto.Message
	creator    string // default: org
	notAdmin   bool
	wantStatus int32    // default 200
	wantMsg    []string // substrings of the message
	check      func(t *testing.T, resp *pb.Response)
}

func withSigPolicy(t *testing.T, a *lb.ApproveChaincodeDefinitionForMyOrgArgs, dsl string) *lb.ApproveChaincodeDefinitionForMyOrgArgs {
	a.ValidationParameter = sigPolicy(t, dsl)
	return a
}

func TestScenarios(t *testing.T) {
	const pkgID = "basic_1.0:0000000000000000000000000000000000000000000000000000000000000000"
	two := []string{"Org1MSP", "Org2MSP"}
	three := []string{"Org1MSP", "Org2MSP", "Org3MSP"}

	tests := []struct {
		name  string
		orgs  []string
		steps func(t *testing.T) []step
	}{
		{
			name: "one org approves and commits",
			orgs: []string{"Org1MSP"},
			steps: func(t *testing.T) []step {
				return []step{
					{org: "Org1MSP", fn: ApproveChaincodeDefinitionForMyOrgFuncName, args: approveArgs("basic", "1.0", 1, pkgID)},
					{org: "Org1MSP", fn: CheckCommitReadinessFuncName, args: &lb.CheckCommitReadinessArgs{Name: "basic", Version: "1.0", Sequence: 1},
						check: func(t *testing.T, resp *pb.Response) {
							res := decode(t, resp, &lb.CheckCommitReadinessResult{})
							if !maps.Equal(res.Approvals, map[string]bool{"Org1MSP": true}) || len(res.Mismatches) != 0 {
								t.Errorf("readiness = %v", res)
							}
						}},
					{org: "Org1MSP", fn: CommitChaincodeDefinitionFuncName, args: commitArgs("basic", "1.0", 1)},
					{org: "Org1MSP", fn: QueryChaincodeDefinitionFuncName, args: &lb.QueryChaincodeDefinitionArgs{Name: "basic"},
						check: func(t *testing.T, resp *pb.Response) {
							res := decode(t, resp, &lb.QueryChaincodeDefinitionResult{})
							want := &lb.QueryChaincodeDefinitionResult{
								Sequence: 1, Version: "1.0", EndorsementPlugin: "escc", ValidationPlugin: "vscc",
								ValidationParameter: defaultValidationParameter(), Collections: &pb.CollectionConfigPackage{},
								Approvals: map[string]bool{"Org1MSP": true},
							}
							if !proto.Equal(res, want) {
								t.Errorf("definition = %v, want %v", res, want)
							}
						}},
					{org: "Org1MSP", fn: QueryChaincodeDefinitionsFuncName, args: &lb.QueryChaincodeDefinitionsArgs{},
						check: func(t *testing.T, resp *pb.Response) {
							res := decode(t, resp, &lb.QueryChaincodeDefinitionsResult{})
							if len(res.ChaincodeDefinitions) != 1 || res.ChaincodeDefinitions[0].Name != "basic" || res.ChaincodeDefinitions[0].Sequence != 1 {
								t.Errorf("definitions = %v", res)
							}
						}},
					{org: "Org1MSP", fn: QueryApprovedChaincodeDefinitionFuncName, args: &lb.QueryApprovedChaincodeDefinitionArgs{Name: "basic"},
						check: func(t *testing.T, resp *pb.Response) {
							res := decode(t, resp, &lb.QueryApprovedChaincodeDefinitionResult{})
							if res.Sequence != 1 || res.Version != "1.0" || res.Source.GetLocalPackage().GetPackageId() != pkgID {
								t.Errorf("approved = %v", res)
							}
						}},
					// Approving the committed sequence again, unchanged.
					{org: "Org1MSP", fn: ApproveChaincodeDefinitionForMyOrgFuncName, args: approveArgs("basic", "1.0", 1, pkgID),
						wantStatus: 500, wantMsg: []string{"attempted to redefine the current committed sequence (1) for namespace basic"}},
					// Switching package at the committed sequence is allowed.
					{org: "Org1MSP", fn: ApproveChaincodeDefinitionForMyOrgFuncName, args: approveArgs("basic", "1.0", 1, "")},
					{org: "Org1MSP", fn: ApproveChaincodeDefinitionForMyOrgFuncName, args: approveArgs("basic", "2.0", 1, pkgID),
						wantStatus: 500, wantMsg: []string{"attempted to redefine the current committed sequence (1) for namespace basic with different parameters", "Version is '1.0' in the committed definition but '2.0' in the request"}},
					{org: "Org1MSP", fn: CommitChaincodeDefinitionFuncName, args: commitArgs("basic", "1.0", 1),
						wantStatus: 500, wantMsg: []string{"failed to invoke backing implementation of 'CommitChaincodeDefinition': requested sequence is 1, but new definition must be sequence 2"}},
					// Upgrade to sequence 2.
					{org: "Org1MSP", fn: ApproveChaincodeDefinitionForMyOrgFuncName, args: approveArgs("basic", "2.0", 2, pkgID)},
					{org: "Org1MSP", fn: CommitChaincodeDefinitionFuncName, args: commitArgs("basic", "2.0", 2)},
					{org: "Org1MSP", fn: ApproveChaincodeDefinitionForMyOrgFuncName, args: approveArgs("basic", "2.0", 1, pkgID),
						wantStatus: 500, wantMsg: []string{"currently defined sequence 2 is larger than requested sequence 1"}},
				}
			},
		},
		{
			name: "commit names the org that has not approved",
			orgs: two,
			steps: func(t *testing.T) []step {
				return []step{
					{org: "Org1MSP", fn: ApproveChaincodeDefinitionForMyOrgFuncName, args: approveArgs("basic", "1.0", 1, pkgID)},
					// As in Fabric, a peer endorses a commit only when its own
					// organisation approved; LifecycleEndorsement decides the rest.
					{org: "Org2MSP", fn: CommitChaincodeDefinitionFuncName, args: commitArgs("basic", "1.0", 1),
						wantStatus: 500, wantMsg: []string{
							"failed to invoke backing implementation of 'CommitChaincodeDefinition': ",
							"chaincode definition not agreed to by this org (Org2MSP)",
							"Org2MSP has not approved sequence 1",
						}},
					{org: "Org2MSP", fn: QueryChaincodeDefinitionFuncName, args: &lb.QueryChaincodeDefinitionArgs{Name: "basic"},
						wantStatus: 404, wantMsg: []string{"namespace basic is not defined"}},
					{org: "Org2MSP", fn: ApproveChaincodeDefinitionForMyOrgFuncName, args: approveArgs("basic", "1.0", 1, "")},
					{org: "Org2MSP", fn: CommitChaincodeDefinitionFuncName, args: commitArgs("basic", "1.0", 1)},
					{org: "Org2MSP", fn: QueryChaincodeDefinitionFuncName, args: &lb.QueryChaincodeDefinitionArgs{Name: "basic"},
						check: func(t *testing.T, resp *pb.Response) {
							res := decode(t, resp, &lb.QueryChaincodeDefinitionResult{})
							if !maps.Equal(res.Approvals, map[string]bool{"Org1MSP": true, "Org2MSP": true}) {
								t.Errorf("approvals = %v", res.Approvals)
							}
						}},
				}
			},
		},
		{
			name: "mismatched fields are named per org",
			orgs: three,
			steps: func(t *testing.T) []step {
				return []step{
					{org: "Org1MSP", fn: ApproveChaincodeDefinitionForMyOrgFuncName, args: approveArgs("basic", "1.0", 1, pkgID)},
					{org: "Org2MSP", fn: ApproveChaincodeDefinitionForMyOrgFuncName, args: withSigPolicy(t, approveArgs("basic", "1.1", 1, pkgID), "OR('Org1MSP.peer', 'Org2MSP.peer')")},
					{org: "Org1MSP", fn: CheckCommitReadinessFuncName, args: &lb.CheckCommitReadinessArgs{Name: "basic", Version: "1.0", Sequence: 1},
						check: func(t *testing.T, resp *pb.Response) {
							res := decode(t, resp, &lb.CheckCommitReadinessResult{})
							if !maps.Equal(res.Approvals, map[string]bool{"Org1MSP": true, "Org2MSP": false, "Org3MSP": false}) {
								t.Errorf("approvals = %v", res.Approvals)
							}
							if got := res.Mismatches["Org2MSP"].GetItems(); !slices.Equal(got, []string{"Version", "ValidationParameter"}) {
								t.Errorf("mismatches = %v", res.Mismatches)
							}
						}},
					{org: "Org2MSP", fn: CommitChaincodeDefinitionFuncName, args: commitArgs("basic", "1.0", 1),
						wantStatus: 500, wantMsg: []string{
							"chaincode definition not agreed to by this org (Org2MSP)",
							"Org2MSP approved sequence 1 with a different definition (Version is '1.1' in the approval but '1.0' in the request; " +
								"ValidationParameter is signature policy OR('Org1MSP.peer', 'Org2MSP.peer') in the approval but channel policy '/Channel/Application/Endorsement' in the request)",
							"Org3MSP has not approved sequence 1",
						}},
					{org: "Org3MSP", fn: ApproveChaincodeDefinitionForMyOrgFuncName, args: approveArgs("basic", "1.0", 1, "")},
					{org: "Org1MSP", fn: CommitChaincodeDefinitionFuncName, args: commitArgs("basic", "1.0", 1)},
					{org: "Org1MSP", fn: QueryChaincodeDefinitionFuncName, args: &lb.QueryChaincodeDefinitionArgs{Name: "basic"},
						check: func(t *testing.T, resp *pb.Response) {
							res := decode(t, resp, &lb.QueryChaincodeDefinitionResult{})
							if !maps.Equal(res.Approvals, map[string]bool{"Org1MSP": true, "Org2MSP": false, "Org3MSP": true}) {
								t.Errorf("approvals = %v", res.Approvals)
							}
						}},
				}
			},
		},
		{
			name: "majority without this peer's org",
			orgs: three,
			steps: func(t *testing.T) []step {
				return []step{
					{org: "Org2MSP", fn: ApproveChaincodeDefinitionForMyOrgFuncName, args: approveArgs("basic", "1.0", 1, pkgID)},
					{org: "Org3MSP", fn: ApproveChaincodeDefinitionForMyOrgFuncName, args: approveArgs("basic", "1.0", 1, pkgID)},
					{org: "Org1MSP", fn: CommitChaincodeDefinitionFuncName, args: commitArgs("basic", "1.0", 1),
						wantStatus: 500, wantMsg: []string{"chaincode definition not agreed to by this org (Org1MSP)", "Org1MSP has not approved sequence 1"}},
					{org: "Org2MSP", fn: CommitChaincodeDefinitionFuncName, args: commitArgs("basic", "1.0", 1)},
				}
			},
		},
		{
			name: "sequence rules",
			orgs: []string{"Org1MSP"},
			steps: func(t *testing.T) []step {
				return []step{
					{org: "Org1MSP", fn: ApproveChaincodeDefinitionForMyOrgFuncName, args: approveArgs("basic", "1.0", 0, pkgID),
						wantStatus: 500, wantMsg: []string{"requested sequence is 0, but first definable sequence number is 1"}},
					{org: "Org1MSP", fn: ApproveChaincodeDefinitionForMyOrgFuncName, args: approveArgs("basic", "1.0", 2, pkgID),
						wantStatus: 500, wantMsg: []string{"requested sequence 2 is larger than the next available sequence number 1"}},
					{org: "Org1MSP", fn: ApproveChaincodeDefinitionForMyOrgFuncName, args: approveArgs("basic", "1.0", 1, pkgID)},
					{org: "Org1MSP", fn: ApproveChaincodeDefinitionForMyOrgFuncName, args: approveArgs("basic", "1.0", 1, pkgID),
						wantStatus: 500, wantMsg: []string{"failed to invoke backing implementation of 'ApproveChaincodeDefinitionForMyOrg': attempted to redefine uncommitted sequence (1) for namespace basic with unchanged content"}},
					// A changed approval of the uncommitted sequence replaces the old one.
					{org: "Org1MSP", fn: ApproveChaincodeDefinitionForMyOrgFuncName, args: approveArgs("basic", "1.1", 1, pkgID)},
					{org: "Org1MSP", fn: CommitChaincodeDefinitionFuncName, args: commitArgs("basic", "1.0", 1),
						wantStatus: 500, wantMsg: []string{"Org1MSP approved sequence 1 with a different definition (Version is '1.1' in the approval but '1.0' in the request)"}},
					{org: "Org1MSP", fn: CommitChaincodeDefinitionFuncName, args: commitArgs("basic", "1.1", 2),
						wantStatus: 500, wantMsg: []string{"requested sequence is 2, but new definition must be sequence 1"}},
					{org: "Org1MSP", fn: CheckCommitReadinessFuncName, args: &lb.CheckCommitReadinessArgs{Name: "basic", Version: "1.1", Sequence: 3},
						wantStatus: 500, wantMsg: []string{"requested sequence is 3, but new definition must be sequence 1"}},
					{org: "Org1MSP", fn: CommitChaincodeDefinitionFuncName, args: commitArgs("basic", "1.1", 1)},
				}
			},
		},
		{
			name: "authorization",
			orgs: two,
			steps: func(t *testing.T) []step {
				return []step{
					{org: "Org1MSP", notAdmin: true, fn: ApproveChaincodeDefinitionForMyOrgFuncName, args: approveArgs("basic", "1.0", 1, pkgID),
						wantStatus: 500, wantMsg: []string{"Failed to authorize invocation due to failed ACL check", "not an admin of this peer's organization 'Org1MSP'"}},
					{org: "Org1MSP", creator: "Org2MSP", fn: ApproveChaincodeDefinitionForMyOrgFuncName, args: approveArgs("basic", "1.0", 1, pkgID),
						wantStatus: 500, wantMsg: []string{"Failed to authorize invocation due to failed ACL check"}},
					{org: "Org1MSP", notAdmin: true, fn: QueryChaincodeDefinitionFuncName, args: &lb.QueryChaincodeDefinitionArgs{Name: "basic"},
						wantStatus: 404},
					{org: "Org9MSP", fn: ApproveChaincodeDefinitionForMyOrgFuncName, args: approveArgs("basic", "1.0", 1, pkgID),
						wantStatus: 500, wantMsg: []string{"not a member"}},
				}
			},
		},
		{
			name: "definition validation",
			orgs: []string{"Org1MSP"},
			steps: func(t *testing.T) []step {
				badColl := approveArgs("basic", "1.0", 1, "")
				badColl.Collections = &pb.CollectionConfigPackage{Config: []*pb.CollectionConfig{{Payload: &pb.CollectionConfig_StaticCollectionConfig{
					StaticCollectionConfig: &pb.StaticCollectionConfig{Name: "priv", MaximumPeerCount: 1, RequiredPeerCount: 2},
				}}}}
				badPolicy := approveArgs("basic", "1.0", 1, "")
				badPolicy.ValidationParameter = []byte{0xff, 0xff}
				return []step{
					{org: "Org1MSP", fn: ApproveChaincodeDefinitionForMyOrgFuncName, args: approveArgs("bad name", "1.0", 1, ""),
						wantStatus: 500, wantMsg: []string{"error validating chaincode definition: invalid chaincode name 'bad name'. Names can only consist of alphanumerics, '_', and '-' and can only begin with alphanumerics"}},
					{org: "Org1MSP", fn: ApproveChaincodeDefinitionForMyOrgFuncName, args: approveArgs("lscc", "1.0", 1, ""),
						wantStatus: 500, wantMsg: []string{"chaincode name 'lscc' is the name of a system chaincode"}},
					{org: "Org1MSP", fn: ApproveChaincodeDefinitionForMyOrgFuncName, args: approveArgs("basic", "1 0", 1, ""),
						wantStatus: 500, wantMsg: []string{"invalid chaincode version '1 0'"}},
					{org: "Org1MSP", fn: CommitChaincodeDefinitionFuncName, args: commitArgs("basic", "", 1),
						wantStatus: 500, wantMsg: []string{"invalid chaincode version ''"}},
					{org: "Org1MSP", fn: ApproveChaincodeDefinitionForMyOrgFuncName, args: badColl,
						wantStatus: 500, wantMsg: []string{"collection-name: priv -- maximum peer count (1) cannot be less than the required peer count (2)"}},
					{org: "Org1MSP", fn: ApproveChaincodeDefinitionForMyOrgFuncName, args: badPolicy,
						wantStatus: 500, wantMsg: []string{"invalid validation parameter"}},
				}
			},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			l := newLedger()
			peers := map[string]*SCC{}
			for i, st := range tc.steps(t) {
				s := peers[st.org]
				if s == nil {
					s = newSCC(t, st.org)
					peers[st.org] = s
				}
				creator := st.creator
				if creator == "" {
					creator = st.org
				}
				resp := invokeInv(t, s, l, Invocation{CreatorMSPID: creator, CreatorIsAdmin: !st.notAdmin, OrgMSPIDs: tc.orgs}, st.fn, st.args)
				want := st.wantStatus
				if want == 0 {
					want = statusOK
				}
				if resp.Status != want {
					t.Fatalf("step %d (%s on %s): status %d, want %d: %s", i, st.fn, st.org, resp.Status, want, resp.Message)
				}
				for _, m := range st.wantMsg {
					if !strings.Contains(resp.Message, m) {
						t.Fatalf("step %d (%s on %s): message\n  %s\nlacks\n  %s", i, st.fn, st.org, resp.Message, m)
					}
				}
				if st.check != nil {
					st.check(t, resp)
				}
			}
		})
	}
}

func TestInstall(t *testing.T) {
	dir := t.TempDir()
	s, err := New(Config{PackageDir: dir, MSPID: "Org1MSP"})
	if err != nil {
		t.Fatal(err)
	}
	pkg := testPackage(t, "basic_1.0")
	wantID := ccpackage.PackageID("basic_1.0", pkg)

	res := decode(t, invokeAs(t, s, nil, nil, InstallChaincodeFuncName, &lb.InstallChaincodeArgs{ChaincodeInstallPackage: pkg}), &lb.InstallChaincodeResult{})
	if res.PackageId != wantID || res.Label != "basic_1.0" {
		t.Fatalf("install = %v, want %s", res, wantID)
	}
	again := invokeAs(t, s, nil, nil, InstallChaincodeFuncName, &lb.InstallChaincodeArgs{ChaincodeInstallPackage: pkg})
	if again.Status != statusError || !strings.Contains(again.Message, "chaincode already successfully installed (package ID '"+wantID+"')") {
		t.Fatalf("second install: %d %s", again.Status, again.Message)
	}
	bad := invokeAs(t, s, nil, nil, InstallChaincodeFuncName, &lb.InstallChaincodeArgs{ChaincodeInstallPackage: []byte("not a package")})
	if bad.Status != statusError || !strings.Contains(bad.Message, "could not parse as a chaincode install package") {
		t.Fatalf("bad install: %d %s", bad.Status, bad.Message)
	}
	denied := invokeInv(t, s, nil, Invocation{CreatorMSPID: "Org1MSP"}, InstallChaincodeFuncName, &lb.InstallChaincodeArgs{ChaincodeInstallPackage: testPackage(t, "other")})
	if denied.Status != statusError || !strings.Contains(denied.Message, "Failed to authorize invocation") {
		t.Fatalf("non-admin install: %d %s", denied.Status, denied.Message)
	}

	// A second package, and a restart: both are listed.
	pkg2 := testPackage(t, "basic_2.0")
	mustOK(t, invokeAs(t, s, nil, nil, InstallChaincodeFuncName, &lb.InstallChaincodeArgs{ChaincodeInstallPackage: pkg2}))
	s, err = New(Config{PackageDir: dir, MSPID: "Org1MSP"})
	if err != nil {
		t.Fatal(err)
	}
	list := decode(t, invokeAs(t, s, nil, nil, QueryInstalledChaincodesFuncName, &lb.QueryInstalledChaincodesArgs{}), &lb.QueryInstalledChaincodesResult{})
	var got []string
	for _, ic := range list.InstalledChaincodes {
		got = append(got, ic.Label+"="+ic.PackageId)
	}
	want := []string{"basic_1.0=" + wantID, "basic_2.0=" + ccpackage.PackageID("basic_2.0", pkg2)}
	if !slices.Equal(got, want) {
		t.Fatalf("installed = %v, want %v", got, want)
	}

	one := decode(t, invokeAs(t, s, nil, nil, QueryInstalledChaincodeFuncName, &lb.QueryInstalledChaincodeArgs{PackageId: wantID}), &lb.QueryInstalledChaincodeResult{})
	if one.PackageId != wantID || one.Label != "basic_1.0" {
		t.Fatalf("query installed = %v", one)
	}
	got1 := decode(t, invokeAs(t, s, nil, nil, GetInstalledChaincodePackageFuncName, &lb.GetInstalledChaincodePackageArgs{PackageId: wantID}), &lb.GetInstalledChaincodePackageResult{})
	if !bytes.Equal(got1.ChaincodeInstallPackage, pkg) {
		t.Fatal("GetInstalledChaincodePackage returned other bytes")
	}
	for _, id := range []string{"nope:1234", "../../etc/passwd:" + strings.Repeat("a", 64), "", "basic_1.0:" + strings.Repeat("b", 64)} {
		resp := invokeAs(t, s, nil, nil, QueryInstalledChaincodeFuncName, &lb.QueryInstalledChaincodeArgs{PackageId: id})
		if resp.Status != statusError || !strings.Contains(resp.Message, "could not find chaincode with package id '"+id+"'") {
			t.Errorf("query %q: %d %s", id, resp.Status, resp.Message)
		}
		resp = invokeAs(t, s, nil, nil, GetInstalledChaincodePackageFuncName, &lb.GetInstalledChaincodePackageArgs{PackageId: id})
		if resp.Status != statusError || !strings.Contains(resp.Message, "not found") {
			t.Errorf("get %q: %d %s", id, resp.Status, resp.Message)
		}
	}

	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	wantNames := []string{"basic_1.0." + wantID[len("basic_1.0:"):] + ".tar.gz", "basic_2.0." + ccpackage.PackageID("basic_2.0", pkg2)[len("basic_2.0:"):] + ".tar.gz"}
	if !slices.Equal(names, wantNames) {
		t.Fatalf("dir = %v, want %v", names, wantNames)
	}
}

func TestInterruptedInstallIsCleanedUp(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, tempPrefix+"123"), []byte("half"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := New(Config{PackageDir: dir, MSPID: "Org1MSP"}); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, tempPrefix+"123")); !os.IsNotExist(err) {
		t.Fatalf("temporary file survived: %v", err)
	}
}

func TestNewValidatesConfig(t *testing.T) {
	for _, cfg := range []Config{{MSPID: "Org1MSP"}, {PackageDir: t.TempDir()}} {
		if _, err := New(cfg); err == nil {
			t.Errorf("New(%+v) succeeded", cfg)
		}
	}
}

func TestMalformedArgs(t *testing.T) {
	s := newSCC(t, "Org1MSP")
	l := newLedger()
	garbage := []byte{0xff, 0xfe, 0x01, 0x80}
	tests := []struct {
		name    string
		args    [][]byte
		state   bool
		wantMsg string
	}{
		{"no args", nil, true, "lifecycle scc must be invoked with arguments"},
		{"one arg", [][]byte{[]byte(CommitChaincodeDefinitionFuncName)}, true, "lifecycle scc operations require exactly two arguments but received 1"},
		{"three args", [][]byte{[]byte("a"), nil, nil}, true, "exactly two arguments but received 3"},
		{"unknown function", [][]byte{[]byte("Nope"), nil}, true, "failed to invoke backing implementation of 'Nope': unknown lifecycle function 'Nope'"},
		{"garbage function name", [][]byte{garbage, nil}, true, "unknown lifecycle function"},
		{"channel function without channel", [][]byte{[]byte(QueryChaincodeDefinitionFuncName), nil}, false, "function 'QueryChaincodeDefinition' must be invoked on a channel"},
	}
	for _, fn := range []string{
		InstallChaincodeFuncName, QueryInstalledChaincodeFuncName, GetInstalledChaincodePackageFuncName, QueryInstalledChaincodesFuncName,
		ApproveChaincodeDefinitionForMyOrgFuncName, QueryApprovedChaincodeDefinitionFuncName, CheckCommitReadinessFuncName,
		CommitChaincodeDefinitionFuncName, QueryChaincodeDefinitionFuncName, QueryChaincodeDefinitionsFuncName,
	} {
		tests = append(tests, struct {
			name    string
			args    [][]byte
			state   bool
			wantMsg string
		}{"garbage " + fn, [][]byte{[]byte(fn), garbage}, true, "failed to invoke backing implementation of '" + fn + "': could not unmarshal input"})
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			inv := Invocation{Args: tc.args, CreatorMSPID: "Org1MSP", CreatorIsAdmin: true, OrgMSPIDs: []string{"Org1MSP"}}
			if tc.state {
				inv.ChannelID, inv.State = "mychannel", l.newTx()
			}
			resp := s.Invoke(context.Background(), inv)
			if resp.Status != statusError || !strings.Contains(resp.Message, tc.wantMsg) {
				t.Fatalf("got %d %q, want 500 containing %q", resp.Status, resp.Message, tc.wantMsg)
			}
			if _, err := proto.Marshal(resp); err != nil {
				t.Fatalf("response does not marshal: %v", err)
			}
		})
	}
}

func TestCorruptStateIsAnError(t *testing.T) {
	s := newSCC(t, "Org1MSP")
	l := newLedger()
	l.kv[lkey(Namespace, definitionKey("basic"))] = []byte{0xff, 0xff}
	l.kv[lkey(Namespace, approvalKey("Org1MSP", "other", 1))] = []byte{0xff, 0xff}
	for fn, args := range map[string]proto.Message{
		QueryChaincodeDefinitionFuncName:           &lb.QueryChaincodeDefinitionArgs{Name: "basic"},
		QueryChaincodeDefinitionsFuncName:          &lb.QueryChaincodeDefinitionsArgs{},
		ApproveChaincodeDefinitionForMyOrgFuncName: approveArgs("basic", "1.0", 1, ""),
		CommitChaincodeDefinitionFuncName:          commitArgs("other", "1.0", 1),
		QueryApprovedChaincodeDefinitionFuncName:   &lb.QueryApprovedChaincodeDefinitionArgs{Name: "other", Sequence: 1},
	} {
		resp := invokeAs(t, s, l, []string{"Org1MSP"}, fn, args)
		if resp.Status != statusError || !strings.Contains(resp.Message, "decode") {
			t.Errorf("%s: %d %s", fn, resp.Status, resp.Message)
		}
	}
	if _, _, err := Definition(l.newTx(), "basic"); err == nil {
		t.Error("Definition of corrupt state succeeded")
	}
}

// Two peers of one org endorsing the same approval must write identical
// bytes, or the transaction's endorsements would not match.
func TestDeterministicWrites(t *testing.T) {
	a := approveArgs("basic", "1.0", 1, "basic_1.0:"+strings.Repeat("c", 64))
	a.ValidationParameter = sigPolicy(t, "AND('Org1MSP.peer', OR('Org2MSP.peer', 'Org3MSP.peer'))")
	a.Collections = &pb.CollectionConfigPackage{Config: []*pb.CollectionConfig{{Payload: &pb.CollectionConfig_StaticCollectionConfig{
		StaticCollectionConfig: &pb.StaticCollectionConfig{
			Name: "priv", MaximumPeerCount: 2, RequiredPeerCount: 1, BlockToLive: 10,
			MemberOrgsPolicy: &pb.CollectionPolicyConfig{Payload: &pb.CollectionPolicyConfig_SignaturePolicy{
				SignaturePolicy: mustEnvelope(t, "OR('Org1MSP.member', 'Org2MSP.member')"),
			}},
		},
	}}}}
	orgs := []string{"Org1MSP", "Org2MSP", "Org3MSP"}
	var writes [][]string
	for range 2 {
		s := newSCC(t, "Org1MSP")
		l := newLedger()
		st := l.newTx()
		resp := s.Invoke(context.Background(), Invocation{
			ChannelID: "mychannel", Args: [][]byte{[]byte(ApproveChaincodeDefinitionForMyOrgFuncName), mustMarshal(t, a)},
			State: st, CreatorMSPID: "Org1MSP", CreatorIsAdmin: true, OrgMSPIDs: orgs,
		})
		mustOK(t, resp)
		var w []string
		for _, k := range st.order {
			w = append(w, k+"="+string(st.writes[k]))
		}
		writes = append(writes, w)
	}
	if len(writes[0]) != 1 || !slices.Equal(writes[0], writes[1]) {
		t.Fatalf("writes differ or are not one approval:\n%q\n%q", writes[0], writes[1])
	}
	if !strings.HasPrefix(writes[0][0], Namespace+"\x00approvals/Org1MSP/basic#1=") {
		t.Fatalf("approval key = %q", writes[0][0])
	}
}
