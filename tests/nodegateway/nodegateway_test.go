package nodegateway_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

// wantChecks are the checks gateway.mjs reports, in its order; each must be
// there once and pass.
var wantChecks = []string{
	"grpcReady",
	"submitTransaction",
	"evaluateTransaction",
	"submitAsync",
	"getAllAssets",
	"chaincodeEvents",
	"chaincodeEventsCheckpointResume",
	"blockEvents",
	"filteredBlockEvents",
	"blockAndPrivateDataEvents",
	"endorseError",
	"evaluateError",
	"commitStatusMVCCConflict",
	"offlineSigning",
	"chaincodeEventsReplay",
}

// TestNodeGatewaySDK installs the Node SDK with npm ci (package-lock.json),
// starts a network of two organisations (one peer each, one orderer, the
// basic chaincode under the channel's MAJORITY endorsement policy) with the
// cairn binary, and runs gateway.mjs against each organisation's peer.
func TestNodeGatewaySDK(t *testing.T) {
	forEachOrg(t, func(t *testing.T, run func(script string, rep any), info *networkInfo, org int, pinned map[string]string) {
		var rep report
		run("gateway.mjs", &rep)
		checkReport(t, &rep, info, org, pinned)
	})
}

// forEachOrg installs the npm packages (npm ci), starts a network of two
// organisations (one peer each, one orderer, the basic chaincode under the
// channel's MAJORITY endorsement policy) with the cairn binary, and calls
// check in a subtest per organisation; check's run executes a script of this
// folder against that organisation's peer and decodes its JSON report.
func forEachOrg(t *testing.T, check func(t *testing.T, run func(script string, rep any), info *networkInfo, org int, pinned map[string]string)) {
	t.Helper()
	if testing.Short() {
		t.Skip("starts a network and installs npm packages; skipped with -short")
	}
	node, npm := nodeTools(t)
	ctx, cancel := context.WithTimeout(t.Context(), 8*time.Minute)
	defer cancel()

	npmCI(ctx, t, npm)
	pinned := pinnedVersions(t)
	dir := startNetwork(ctx, t, buildCairn(ctx, t))
	info := readNetwork(t, dir)
	for i, org := range info.Organizations {
		t.Run(org.MSPID, func(t *testing.T) {
			run := func(script string, rep any) {
				runScript(ctx, t, node, script, filepath.Join(dir, "network.json"), i, rep)
			}
			check(t, run, info, i, pinned)
		})
	}
}

// nodeTools finds node and npm on PATH, skipping the test without them or
// with a Node that cannot load the SDK.
func nodeTools(t *testing.T) (node, npm string) {
	t.Helper()
	node, err := exec.LookPath("node")
	if err != nil {
		t.Skip("node is not on PATH: install Node.js 20.19+ (with npm) to run the Fabric Gateway Node SDK check")
	}
	npm, err = exec.LookPath("npm")
	if err != nil {
		t.Skip("npm is not on PATH: install npm to run the Fabric Gateway Node SDK check")
	}
	out, err := exec.Command(node, "--version").Output()
	if err != nil {
		t.Fatalf("node --version: %v", err)
	}
	version := strings.TrimSpace(string(out))
	if !canRequireESM(version) {
		// @hyperledger/fabric-gateway 1.12 loads the ES module @noble/curves
		// v2 with require(), which Node runs without a flag from 20.19 and
		// 22.12 on.
		t.Skipf("node %s cannot load @hyperledger/fabric-gateway 1.12: need Node 20.19+ or 22.12+", version)
	}
	return node, npm
}

// canRequireESM reports whether Node version "vMAJOR.MINOR.PATCH" loads ES
// modules with require() by default.
func canRequireESM(version string) bool {
	var major, minor int
	if _, err := fmt.Sscanf(version, "v%d.%d", &major, &minor); err != nil {
		return false
	}
	return major > 22 || (major == 22 && minor >= 12) || (major == 20 && minor >= 19)
}

// npmCI installs exactly what package-lock.json pins into node_modules. Install
// scripts are not run: the only one the SDK pulls in builds pkcs11js, the
// optional HSM signer, which the check does not use.
func npmCI(ctx context.Context, t *testing.T, npm string) {
	t.Helper()
	began := time.Now()
	cmd := exec.CommandContext(ctx, npm, "ci", "--ignore-scripts", "--no-audit", "--no-fund", "--prefer-offline")
	cmd.Env = append(os.Environ(), "npm_config_update_notifier=false")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("npm ci: %v\n%s", err, out)
	}
	t.Logf("npm ci: %s", time.Since(began).Round(time.Millisecond))
}

// pinnedVersions are the dependency versions package.json pins.
func pinnedVersions(t *testing.T) map[string]string {
	t.Helper()
	raw, err := os.ReadFile("package.json")
	if err != nil {
		t.Fatal(err)
	}
	var pkg struct {
		Dependencies map[string]string `json:"dependencies"`
	}
	if err := json.Unmarshal(raw, &pkg); err != nil {
		t.Fatalf("parse package.json: %v", err)
	}
	return pkg.Dependencies
}

// buildCairn builds the cairn binary of the repository root, with the root's
// own go.mod, into a folder removed when the test ends.
func buildCairn(ctx context.Context, t *testing.T) string {
	t.Helper()
	began := time.Now()
	bin := filepath.Join(t.TempDir(), "cairn")
	build := exec.CommandContext(ctx, "go", "build", "-o", bin, "./cmd/cairn")
	build.Dir = filepath.Join("..", "..")
	build.Env = append(os.Environ(), "GOWORK=off")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build cairn: %v\n%s", err, out)
	}
	t.Logf("go build ./cmd/cairn: %s", time.Since(began).Round(time.Millisecond))
	return bin
}

// startNetwork runs `cairn network up --detach` (it picks free loopback
// ports) in a temporary folder, stopped with `cairn network down` when the
// test ends, and returns the folder.
func startNetwork(ctx context.Context, t *testing.T, bin string) string {
	t.Helper()
	dir := t.TempDir()
	t.Cleanup(func() {
		out, err := exec.Command(bin, "network", "down", "--dir", dir).CombinedOutput()
		if err != nil {
			t.Errorf("cairn network down: %v\n%s", err, out)
		}
	})
	began := time.Now()
	up := exec.CommandContext(ctx, bin, "network", "up", "--dir", dir, "--detach",
		"--orgs", "2", "--peers-per-org", "1", "--orderers", "1")
	if out, err := up.CombinedOutput(); err != nil {
		t.Fatalf("cairn network up: %v\n%s", err, out)
	}
	t.Logf("cairn network up --detach: %s", time.Since(began).Round(time.Millisecond))
	return dir
}

// networkInfo is the part of network.json (internal/localnet/info.go) the
// test checks the report against.
type networkInfo struct {
	Channel       string `json:"channel"`
	Organizations []struct {
		MSPID string `json:"mspId"`
		Peers []struct {
			Name    string `json:"name"`
			Address string `json:"address"`
		} `json:"peers"`
	} `json:"organizations"`
	Orderers []struct {
		Address string `json:"address"`
	} `json:"orderers"`
}

func readNetwork(t *testing.T, dir string) *networkInfo {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join(dir, "network.json"))
	if err != nil {
		t.Fatal(err)
	}
	var info networkInfo
	if err := json.Unmarshal(raw, &info); err != nil {
		t.Fatalf("parse network.json: %v", err)
	}
	if len(info.Organizations) != 2 {
		t.Fatalf("network.json has %d organisations, want 2", len(info.Organizations))
	}
	return &info
}

// report is what gateway.mjs prints.
type report struct {
	OK       bool              `json:"ok"`
	Versions map[string]string `json:"versions"`
	Peer     struct {
		Name    string `json:"name"`
		Address string `json:"address"`
		MSPID   string `json:"mspId"`
		Channel string `json:"channel"`
	} `json:"peer"`
	Checks []check `json:"checks"`
}

// checkResult is what indexChecks reads of a script's check entry.
type checkResult interface {
	result() (name string, ok bool, err json.RawMessage, ms int64)
}

func (c check) result() (string, bool, json.RawMessage, int64) { return c.Name, c.OK, c.Error, c.MS }
func (c legacyCheck) result() (string, bool, json.RawMessage, int64) {
	return c.Name, c.OK, c.Error, c.MS
}

// indexChecks reports every check that failed, ran twice or did not run of
// the want list, and returns the checks by name with a one-line timing
// summary for the log.
func indexChecks[C checkResult](t *testing.T, got []C, want []string) (map[string]C, string) {
	t.Helper()
	byName := make(map[string]C, len(got))
	var summary []string
	for _, c := range got {
		name, ok, failure, ms := c.result()
		if _, dup := byName[name]; dup {
			t.Errorf("check %s reported twice", name)
		}
		byName[name] = c
		summary = append(summary, fmt.Sprintf("%s=%dms", name, ms))
		if !ok {
			t.Errorf("check %s failed: %s", name, failure)
		}
	}
	for _, name := range want {
		if _, ok := byName[name]; !ok {
			t.Errorf("check %s did not run", name)
		}
	}
	if len(got) != len(want) {
		t.Errorf("%d checks reported, want %d", len(got), len(want))
	}
	return byName, strings.Join(summary, " ")
}

// check is one entry of report.checks: the fields any check may set.
type check struct {
	Name  string          `json:"name"`
	OK    bool            `json:"ok"`
	Error json.RawMessage `json:"error"`
	MS    int64           `json:"ms"`

	AssetID        string   `json:"assetId"`
	TransactionID  string   `json:"transactionId"`
	BlockNumber    string   `json:"blockNumber"`
	Code           int      `json:"code"`
	Result         string   `json:"result"`
	Message        string   `json:"message"`
	Details        []detail `json:"details"`
	EventName      string   `json:"eventName"`
	Events         []event  `json:"events"`
	SameBlock      bool     `json:"sameBlock"`
	ValidCode      int      `json:"validCode"`
	ConflictCode   int      `json:"conflictCode"`
	Count          int      `json:"count"`
	InvalidSkipped int      `json:"invalidSkipped"`
}

// detail is the SDK's ErrorDetail.
type detail struct {
	Address string `json:"address"`
	MSPID   string `json:"mspId"`
	Message string `json:"message"`
}

type event struct {
	EventName     string `json:"eventName"`
	BlockNumber   string `json:"blockNumber"`
	TransactionID string `json:"transactionId"`
}

// runScript runs a check script (gateway.mjs, legacy.cjs) against the
// organisation's peer and decodes its JSON report into rep; exit status 1 (a
// failed check) still yields the report.
func runScript(ctx context.Context, t *testing.T, node, script, networkJSON string, org int, rep any) {
	t.Helper()
	began := time.Now()
	cmd := exec.CommandContext(ctx, node, script, networkJSON, strconv.Itoa(org))
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	cmd.WaitDelay = 10 * time.Second
	err := cmd.Run()
	t.Logf("node %s: %s", script, time.Since(began).Round(time.Millisecond))
	var exit *exec.ExitError
	if err != nil && !(errors.As(err, &exit) && exit.ExitCode() == 1) {
		t.Fatalf("node %s: %v\nstdout:\n%s\nstderr:\n%s", script, err, stdout.String(), stderr.String())
	}
	var outcome struct {
		OK bool `json:"ok"`
	}
	if jerr := errors.Join(json.Unmarshal(stdout.Bytes(), &outcome), json.Unmarshal(stdout.Bytes(), rep)); jerr != nil {
		t.Fatalf("%s printed no report (%v, exit %v)\nstdout:\n%s\nstderr:\n%s", script, jerr, err, stdout.String(), stderr.String())
	}
	if stderr.Len() > 0 {
		t.Logf("%s stderr:\n%s", script, stderr.String())
	}
	if err != nil || !outcome.OK {
		t.Errorf("%s reported failure (exit %v):\n%s", script, err, stdout.String())
	}
}

var txIDPattern = regexp.MustCompile(`^[0-9a-f]{64}$`)

// checkReport checks the report of a run against the organisation's peer:
// every expected check ran once and passed, with the SDK versions
// package.json pins, and what each one saw is what Fabric's gateway gives.
func checkReport(t *testing.T, rep *report, info *networkInfo, org int, pinned map[string]string) {
	t.Helper()
	o := info.Organizations[org]
	if rep.Peer.MSPID != o.MSPID || rep.Peer.Address != o.Peers[0].Address || rep.Peer.Channel != info.Channel {
		t.Errorf("report peer %+v, want %s's %s on %s", rep.Peer, o.MSPID, o.Peers[0].Address, info.Channel)
	}
	for pkg, key := range map[string]string{"@hyperledger/fabric-gateway": "fabricGateway", "@grpc/grpc-js": "grpcJs", "@hyperledger/fabric-protos": "fabricProtos"} {
		if got := rep.Versions[key]; got != pinned[pkg] {
			t.Errorf("ran with %s %s, package.json pins %s", pkg, got, pinned[pkg])
		}
	}

	checks, summary := indexChecks(t, rep.Checks, wantChecks)
	t.Logf("node %s, fabric-gateway %s, grpc-js %s: %s", rep.Versions["node"], rep.Versions["fabricGateway"], rep.Versions["grpcJs"], summary)
	if t.Failed() {
		return
	}

	peerOrg := make(map[string]string) // peer address -> MSP ID
	for _, o := range info.Organizations {
		for _, p := range o.Peers {
			peerOrg[p.Address] = o.MSPID
		}
	}
	missing := checks["submitTransaction"].AssetID + "-missing"

	async := checks["submitAsync"]
	if !txIDPattern.MatchString(async.TransactionID) || async.Code != 0 || async.Result != "Tom" {
		t.Errorf("submitAsync: transaction %q, status %d, result %q", async.TransactionID, async.Code, async.Result)
	}
	if n, err := strconv.ParseUint(async.BlockNumber, 10, 64); err != nil || n == 0 {
		t.Errorf("submitAsync committed in block %q", async.BlockNumber)
	}

	ev := checks["chaincodeEvents"]
	if ev.EventName != "TransferAsset" || ev.TransactionID != async.TransactionID || ev.BlockNumber != async.BlockNumber {
		t.Errorf("chaincodeEvents: %s of %s in block %s, want TransferAsset of %s in block %s", ev.EventName, ev.TransactionID, ev.BlockNumber, async.TransactionID, async.BlockNumber)
	}
	if got := checks["chaincodeEventsCheckpointResume"].Events; len(got) != 2 {
		t.Errorf("resumed from the checkpoint with %d events, want 2: %+v", len(got), got)
	}
	for _, name := range []string{"blockEvents", "filteredBlockEvents", "blockAndPrivateDataEvents"} {
		if got := checks[name].BlockNumber; got != async.BlockNumber {
			t.Errorf("%s started at block %s, want %s", name, got, async.BlockNumber)
		}
	}

	// A chaincode error: the SDK's EndorseError (gRPC Aborted) on submit and
	// a GatewayError (gRPC Unknown) on evaluate, each ErrorDetail naming a
	// peer and carrying Fabric's "chaincode response 500, <message>".
	wantDetail := "chaincode response 500, the asset " + missing + " does not exist"
	for _, tc := range []struct {
		name, message string
		code          int
	}{
		{"endorseError", "10 ABORTED: failed to endorse transaction, see attached details for more info", 10},
		{"evaluateError", "2 UNKNOWN: evaluate call to endorser returned error: " + wantDetail, 2},
	} {
		c := checks[tc.name]
		if c.Code != tc.code || c.Message != tc.message {
			t.Errorf("%s: code %d %q, want %d %q", tc.name, c.Code, c.Message, tc.code, tc.message)
		}
		if len(c.Details) == 0 {
			t.Errorf("%s: no error details", tc.name)
		}
		for _, d := range c.Details {
			if d.Message != wantDetail || peerOrg[d.Address] == "" || peerOrg[d.Address] != d.MSPID {
				t.Errorf("%s: detail %+v, want a peer of the network and message %q", tc.name, d, wantDetail)
			}
		}
	}
	if !txIDPattern.MatchString(checks["endorseError"].TransactionID) {
		t.Errorf("EndorseError transaction ID %q", checks["endorseError"].TransactionID)
	}

	if c := checks["commitStatusMVCCConflict"]; c.ValidCode != 0 || c.ConflictCode != 11 {
		t.Errorf("commit statuses %d and %d, want VALID (0) and MVCC_READ_CONFLICT (11)", c.ValidCode, c.ConflictCode)
	}
	if c := checks["chaincodeEventsReplay"]; c.Count < 5 || c.InvalidSkipped != 1 {
		t.Errorf("replayed %d events skipping %d invalid transactions, want at least 5 and 1", c.Count, c.InvalidSkipped)
	}
}

// wantLegacyChecks are the checks legacy.cjs reports, in its order; each
// must be there once and pass.
var wantLegacyChecks = []string{
	"connect",
	"discovery",
	"submitTransaction",
	"evaluateTransaction",
	"getTransactionByID",
	"contractListener",
	"blockListener",
	"blockReplay",
	"endorseError",
	"evaluateError",
	"withoutDiscovery",
}

// TestNodeLegacySDK checks Cairn with the legacy Node SDK, fabric-network
// 2.2 over fabric-common: discovery (config, peers and endorsement plan
// over TLS with the client certificate hash), proposals sent to each
// organisation's Endorser, broadcast to the orderer, commits, contract and
// block events on the peers' Deliver services. It starts its own network
// like TestNodeGatewaySDK and runs legacy.cjs through each organisation's
// peer.
func TestNodeLegacySDK(t *testing.T) {
	forEachOrg(t, func(t *testing.T, run func(script string, rep any), info *networkInfo, org int, pinned map[string]string) {
		var rep legacyReport
		run("legacy.cjs", &rep)
		checkLegacyReport(t, &rep, info, org, pinned)
	})
}

// legacyReport is what legacy.cjs prints.
type legacyReport struct {
	Versions map[string]string `json:"versions"`
	Peer     struct {
		Address string `json:"address"`
		MSPID   string `json:"mspId"`
		Channel string `json:"channel"`
	} `json:"peer"`
	Checks []legacyCheck `json:"checks"`
}

// legacyCheck is one entry of legacyReport.checks: the fields any check may set.
type legacyCheck struct {
	Name  string          `json:"name"`
	OK    bool            `json:"ok"`
	Error json.RawMessage `json:"error"`
	MS    int64           `json:"ms"`

	// discovery
	MSPs     []string `json:"msps"`
	Orderers []string `json:"orderers"`
	Peers    []struct {
		Endpoint string `json:"endpoint"`
		MSPID    string `json:"mspId"`
	} `json:"peers"`
	Groups []struct {
		Name   string   `json:"name"`
		MSPIDs []string `json:"mspIds"`
	} `json:"groups"`
	Layouts []string `json:"layouts"`

	AssetID        string   `json:"assetId"`
	TransactionID  string   `json:"transactionId"`
	ValidationCode *int     `json:"validationCode"`
	Endorsers      []string `json:"endorsers"`
	EventName      string   `json:"eventName"`
	BlockNumber    string   `json:"blockNumber"`
	Result         string   `json:"result"`
	Message        string   `json:"message"`
	Status         int      `json:"status"`
	Responses      []struct {
		Peer    string `json:"peer"`
		Status  int    `json:"status"`
		Message string `json:"message"`
	} `json:"responses"`
}

// checkLegacyReport checks the report of legacy.cjs run through the
// organisation's peer: every expected check ran once and passed with the
// fabric-network package.json pins, discovery described the network as
// network.json does, and what the SDK saw is what a Fabric network gives it.
func checkLegacyReport(t *testing.T, rep *legacyReport, info *networkInfo, org int, pinned map[string]string) {
	t.Helper()
	o := info.Organizations[org]
	if rep.Peer.MSPID != o.MSPID || rep.Peer.Address != o.Peers[0].Address || rep.Peer.Channel != info.Channel {
		t.Errorf("report peer %+v, want %s's %s on %s", rep.Peer, o.MSPID, o.Peers[0].Address, info.Channel)
	}
	// fabric-network pins fabric-common at its own version.
	if got, want := rep.Versions["fabricNetwork"], pinned["fabric-network"]; got != want || rep.Versions["fabricCommon"] != want {
		t.Errorf("ran with fabric-network %s and fabric-common %s, package.json pins fabric-network %s", got, rep.Versions["fabricCommon"], want)
	}

	checks, summary := indexChecks(t, rep.Checks, wantLegacyChecks)
	t.Logf("node %s, fabric-network %s, its grpc-js %s: %s", rep.Versions["node"], rep.Versions["fabricNetwork"], rep.Versions["grpcJs"], summary)
	if t.Failed() {
		return
	}

	// Discovery: every organisation's MSP and peer (at the address
	// network.json gives, under its MSP ID), the orderers, and a plan of one
	// group per organisation with one layout needing a peer of each.
	var wantMSPs, wantPeers, wantOrderers, gotPeers []string
	for _, o := range info.Organizations {
		wantMSPs = append(wantMSPs, o.MSPID)
		for _, p := range o.Peers {
			wantPeers = append(wantPeers, o.MSPID+" "+p.Address)
		}
	}
	for _, o := range info.Orderers {
		wantOrderers = append(wantOrderers, o.Address)
	}
	disc := checks["discovery"]
	for _, p := range disc.Peers {
		gotPeers = append(gotPeers, p.MSPID+" "+p.Endpoint)
	}
	for _, mspID := range wantMSPs {
		if !slices.Contains(disc.MSPs, mspID) {
			t.Errorf("discovery: MSPs %v lack %s", disc.MSPs, mspID)
		}
	}
	if !sameElements(gotPeers, wantPeers) || !sameElements(disc.Orderers, wantOrderers) {
		t.Errorf("discovery: peers %v and orderers %v, want %v and %v", gotPeers, disc.Orderers, wantPeers, wantOrderers)
	}
	var groupMSPs []string
	for _, g := range disc.Groups {
		if len(g.MSPIDs) != 1 {
			t.Errorf("discovery: group %s mixes organisations %v", g.Name, g.MSPIDs)
		}
		groupMSPs = append(groupMSPs, g.MSPIDs...)
	}
	if !sameElements(groupMSPs, wantMSPs) || !slices.Equal(disc.Layouts, []string{"G0:1,G1:1"}) {
		t.Errorf("discovery: groups of %v, layouts %v, want one group per organisation and layouts [G0:1,G1:1]", groupMSPs, disc.Layouts)
	}

	// The CreateAsset submitted through the discovery plan committed VALID
	// with an endorsement of each organisation.
	create, tx := checks["submitTransaction"], checks["getTransactionByID"]
	if !txIDPattern.MatchString(create.TransactionID) || tx.TransactionID != create.TransactionID {
		t.Errorf("GetTransactionByID returned %q for CreateAsset %q", tx.TransactionID, create.TransactionID)
	}
	if tx.ValidationCode == nil || *tx.ValidationCode != 0 || !sameElements(tx.Endorsers, wantMSPs) {
		t.Errorf("CreateAsset: validation code %v, endorsed by %v, want 0 and %v", tx.ValidationCode, tx.Endorsers, wantMSPs)
	}

	// Events: the live contract listener got the TransferAsset event, the
	// filtered block replay found it in the same block, the live block
	// listener a later block.
	ev, replay, live := checks["contractListener"], checks["blockReplay"], checks["blockListener"]
	evBlock, err := strconv.ParseUint(ev.BlockNumber, 10, 64)
	if err != nil || evBlock == 0 || ev.EventName != "TransferAsset" || ev.Result != "Tom" || !txIDPattern.MatchString(ev.TransactionID) {
		t.Errorf("contractListener: %s of %q in block %q with result %q", ev.EventName, ev.TransactionID, ev.BlockNumber, ev.Result)
	}
	if replay.BlockNumber != ev.BlockNumber || replay.TransactionID != ev.TransactionID {
		t.Errorf("blockReplay: transaction %s in block %s, want %s in block %s", replay.TransactionID, replay.BlockNumber, ev.TransactionID, ev.BlockNumber)
	}
	if n, err := strconv.ParseUint(live.BlockNumber, 10, 64); err != nil || n <= evBlock {
		t.Errorf("blockListener: block %q, want one after %d", live.BlockNumber, evBlock)
	}

	// A chaincode error: on submit, fabric-network's "No valid responses
	// from any peers" listing each endorser of the plan with the chaincode's
	// status and message; on evaluate, the message and status themselves.
	missing := create.AssetID + "-missing"
	wantMessage := "the asset " + missing + " does not exist"
	endorse := checks["endorseError"]
	var respPeers, wantLines []string
	for _, r := range endorse.Responses {
		respPeers = append(respPeers, r.Peer)
		if r.Status != 500 || r.Message != wantMessage {
			t.Errorf("endorseError: response %+v, want status 500 and %q", r, wantMessage)
		}
		wantLines = append(wantLines, fmt.Sprintf("peer=%s, status=500, message=%s", r.Peer, wantMessage))
	}
	var peerAddrs []string
	for _, p := range disc.Peers {
		peerAddrs = append(peerAddrs, p.Endpoint)
	}
	if !sameElements(respPeers, peerAddrs) {
		t.Errorf("endorseError: responses from %v, want one from each of %v", respPeers, peerAddrs)
	}
	if want := "No valid responses from any peers. Errors:\n    " + strings.Join(wantLines, "\n    "); endorse.Message != want {
		t.Errorf("endorseError: message %q, want %q", endorse.Message, want)
	}
	if c := checks["evaluateError"]; c.Message != wantMessage || c.Status != 500 {
		t.Errorf("evaluateError: %d %q, want 500 %q", c.Status, c.Message, wantMessage)
	}
	if c := checks["withoutDiscovery"]; !txIDPattern.MatchString(c.TransactionID) {
		t.Errorf("withoutDiscovery: transaction ID %q", c.TransactionID)
	}
}

// sameElements reports whether a and b hold the same strings, in any order.
func sameElements(a, b []string) bool {
	a, b = slices.Clone(a), slices.Clone(b)
	slices.Sort(a)
	slices.Sort(b)
	return slices.Equal(a, b)
}
