package localnet_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os/exec"
	"reflect"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/cairn-ledger/cairn/internal/localnet"
)

// statusJSON is the documented shape of `cairn network status --json`.
type statusJSON struct {
	Nodes []struct {
		Name    string            `json:"name"`
		Role    string            `json:"role"`
		Org     string            `json:"org"`
		Address string            `json:"address"`
		PID     int               `json:"pid"`
		Healthy bool              `json:"healthy"`
		Height  map[string]uint64 `json:"height"`
		Leader  bool              `json:"leader"`
		Term    uint64            `json:"term"`
	} `json:"nodes"`
}

// cairn runs the cairn binary and returns its combined output.
func cairn(t *testing.T, args ...string) (string, error) {
	t.Helper()
	out, err := exec.Command(cairnBin, args...).CombinedOutput()
	return string(out), err
}

// networkUp runs `cairn network up --detach` with extra flags and takes the
// network down when the test ends.
func networkUp(t *testing.T, flags ...string) string {
	t.Helper()
	dir := t.TempDir()
	began := time.Now()
	out, err := cairn(t, append([]string{"network", "up", "--detach", "--dir", dir}, flags...)...)
	if err != nil {
		t.Fatalf("network up %v: %v\n%s", flags, err, out)
	}
	t.Logf("network up %v: %s", flags, time.Since(began).Round(time.Millisecond))
	t.Cleanup(func() {
		if out, err := cairn(t, "network", "down", "--dir", dir); err != nil {
			t.Errorf("network down: %v\n%s", err, out)
		}
	})
	return dir
}

// netStatus runs `cairn network status --json` and checks that it prints
// exactly the documented shape.
func netStatus(t *testing.T, dir string) statusJSON {
	t.Helper()
	out, err := exec.Command(cairnBin, "network", "status", "--json", "--dir", dir).Output()
	if err != nil {
		t.Fatalf("network status --json: %v\n%s", err, out)
	}
	var loose struct {
		Nodes []map[string]json.RawMessage `json:"nodes"`
	}
	if err := json.Unmarshal(out, &loose); err != nil {
		t.Fatalf("status --json is not JSON: %v\n%s", err, out)
	}
	want := []string{"address", "healthy", "height", "leader", "name", "org", "pid", "role", "term"}
	for _, n := range loose.Nodes {
		var keys []string
		for k := range n {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		if !reflect.DeepEqual(keys, want) {
			t.Fatalf("status node has keys %v, want %v", keys, want)
		}
	}
	var st statusJSON
	dec := json.NewDecoder(bytes.NewReader(out))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&st); err != nil {
		t.Fatalf("status --json does not decode strictly: %v\n%s", err, out)
	}
	return st
}

// waitStatus polls status until cond holds.
func waitStatus(t *testing.T, dir, what string, cond func(statusJSON) bool) statusJSON {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		st := netStatus(t, dir)
		if cond(st) {
			return st
		}
		if time.Now().After(deadline) {
			out, _ := cairn(t, "network", "status", "--dir", dir)
			t.Fatalf("timed out waiting for %s; status:\n%s", what, out)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// submitVia creates an asset through the gateway of an organisation's first peer as user1.
func submitVia(t *testing.T, dir string, org int, id string) {
	t.Helper()
	if err := trySubmit(dir, org, id); err != nil {
		t.Fatal(err)
	}
}

// submitEventually is submitVia for a peer just restarted: its chaincode
// process dials it again with a backoff of up to 5 s (until then endorsements
// fail with "chaincode is not registered"), and the other organisation's
// gateway reaches it again once membership has it back.
func submitEventually(t *testing.T, dir string, org int, id string) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		err := trySubmit(dir, org, id)
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatal(err)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// tryRead evaluates ReadAsset of an asset through an organisation's gateway.
func tryRead(dir string, org int, id string) error {
	info, err := localnet.LoadInfo(dir)
	if err != nil {
		return err
	}
	gw, conn, err := localnet.ConnectGateway(info, org, 0, "user1")
	if err != nil {
		return err
	}
	defer conn.Close()
	defer gw.Close()
	if _, err := gw.GetNetwork(info.Channel).GetContract("basic").EvaluateTransaction("ReadAsset", id); err != nil {
		return fmt.Errorf("ReadAsset %s through %s: %s", id, info.Organizations[org].MSPID, errorText(err))
	}
	return nil
}

func trySubmit(dir string, org int, id string) error {
	info, err := localnet.LoadInfo(dir)
	if err != nil {
		return err
	}
	gw, conn, err := localnet.ConnectGateway(info, org, 0, "user1")
	if err != nil {
		return err
	}
	defer conn.Close()
	defer gw.Close()
	if _, err := gw.GetNetwork(info.Channel).GetContract("basic").SubmitTransaction("CreateAsset", id, "green", "3", "Org"+fmt.Sprint(org+1), "42"); err != nil {
		return fmt.Errorf("CreateAsset %s through %s: %s", id, info.Organizations[org].MSPID, errorText(err))
	}
	return nil
}

// allHeightsEqual reports whether every orderer and peer is healthy and at
// the same height of mychannel, and returns it.
func allHeightsEqual(st statusJSON) (uint64, bool) {
	var h uint64
	for _, n := range st.Nodes {
		if n.Role != "orderer" && n.Role != "peer" {
			continue
		}
		if !n.Healthy || n.Height["mychannel"] == 0 || (h != 0 && n.Height["mychannel"] != h) {
			return 0, false
		}
		h = n.Height["mychannel"]
	}
	return h, true
}

// TestNetworkStatusStopStart drives a two-organisation network through the
// commands a user runs: status, submit through each organisation, crash a
// peer with `network stop --kill`, submit without it, `network start` it
// and watch it catch up.
func TestNetworkStatusStopStart(t *testing.T) {
	began := time.Now()
	dir := networkUp(t, "--orgs", "2", "--peers-per-org", "1", "--orderers", "1")

	st := waitStatus(t, dir, "all nodes healthy at one height", func(st statusJSON) bool { _, ok := allHeightsEqual(st); return ok })
	type row struct{ name, role, org string }
	var got []row
	for _, n := range st.Nodes {
		got = append(got, row{n.Name, n.Role, n.Org})
		if !n.Healthy || !running(n.PID) {
			t.Fatalf("%s: healthy %v, pid %d running %v", n.Name, n.Healthy, n.PID, running(n.PID))
		}
		switch n.Role {
		case "orderer":
			if !n.Leader || n.Term == 0 {
				t.Fatalf("single orderer %s: leader %v term %d, want leader with a term", n.Name, n.Leader, n.Term)
			}
		case "chaincode":
			if len(n.Height) != 0 || n.Leader || n.Term != 0 || n.Address != "" {
				t.Fatalf("chaincode %s: %+v, want no height, leader, term or address", n.Name, n)
			}
		default:
			if n.Leader || n.Term != 0 || n.Address == "" {
				t.Fatalf("peer %s: %+v", n.Name, n)
			}
		}
	}
	want := []row{
		{"orderer0.example.com", "orderer", "OrdererMSP"},
		{"peer0.org1.example.com", "peer", "Org1MSP"},
		{"peer0.org2.example.com", "peer", "Org2MSP"},
		{"basic.peer0.org1.example.com", "chaincode", "Org1MSP"},
		{"basic.peer0.org2.example.com", "chaincode", "Org2MSP"},
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("status nodes = %v, want %v", got, want)
	}
	// Genesis, two approvals and the commit of the definition.
	if h, _ := allHeightsEqual(st); h < 4 {
		t.Fatalf("height %d after deploying basic, want at least 4", h)
	}

	// Under the channel's MAJORITY endorsement policy each organisation's
	// gateway gathers the other organisation's endorsement too.
	submitVia(t, dir, 0, "org1-first")
	submitVia(t, dir, 1, "org2-first")

	// Crash a peer: status shows it down, its PID dead, its height unknown.
	const victim = "peer0.org2.example.com"
	if out, err := cairn(t, "network", "stop", victim, "--kill", "--dir", dir); err != nil {
		t.Fatalf("network stop: %v\n%s", err, out)
	}
	st = netStatus(t, dir)
	var oldPID int
	for _, n := range st.Nodes {
		if n.Name == victim {
			oldPID = n.PID
			if n.Healthy || running(n.PID) || len(n.Height) != 0 {
				t.Fatalf("stopped %s: healthy %v, pid %d running %v, height %v", victim, n.Healthy, n.PID, running(n.PID), n.Height)
			}
		}
	}
	table, err := cairn(t, "network", "status", "--dir", dir)
	if err != nil || !strings.Contains(table, "not running") || !strings.HasPrefix(table, "NAME") {
		t.Fatalf("status table (err %v):\n%s", err, table)
	}
	if out, err := cairn(t, "network", "stop", victim, "--dir", dir); err == nil || !strings.Contains(out, "not running") {
		t.Fatalf("stopping a stopped node: err %v\n%s", err, out)
	}

	// MAJORITY of two organisations needs both: while Org2's only peer is
	// down a submit fails with the gateway's endorsement error naming Org2MSP,
	// and reads through Org1 go on.
	if err := trySubmit(dir, 0, "org1-while-org2-down"); err == nil || !strings.Contains(err.Error(), "Org2MSP") {
		t.Fatalf("submit with Org2's only peer down: %v, want an endorsement error naming Org2MSP", err)
	}
	if err := tryRead(dir, 0, "org2-first"); err != nil {
		t.Fatalf("read through Org1 with Org2's peer down: %v", err)
	}

	if out, err := cairn(t, "network", "start", victim, "--dir", dir); err != nil {
		t.Fatalf("network start: %v\n%s", err, out)
	}
	st = waitStatus(t, dir, victim+" healthy and caught up", func(st statusJSON) bool { _, ok := allHeightsEqual(st); return ok })
	for _, n := range st.Nodes {
		if n.Name == victim && (n.PID == oldPID || !running(n.PID)) {
			t.Fatalf("restarted %s: pid %d (was %d), running %v", victim, n.PID, oldPID, running(n.PID))
		}
	}
	submitEventually(t, dir, 1, "org2-after-restart")

	// Clear errors for a running node and an unknown one.
	if out, err := cairn(t, "network", "start", "orderer0.example.com", "--dir", dir); err == nil || !strings.Contains(out, "already running") {
		t.Fatalf("starting a running node: err %v\n%s", err, out)
	}
	out, err := cairn(t, "network", "stop", "peer9.org1.example.com", "--dir", dir)
	if err == nil || !strings.Contains(out, `no node named "peer9.org1.example.com"`) || !strings.Contains(out, "peer0.org1.example.com") {
		t.Fatalf("stopping an unknown node: err %v\n%s", err, out)
	}
	t.Logf("whole scenario: %s", time.Since(began).Round(time.Millisecond))
}

// TestNetworkStatusThreeOrderers brings up three raft consenters with two
// organisations of two peers (the coming default size): exactly one orderer
// leads, a transaction is ordered; after the leader crashes another is
// elected in a later term and ordering goes on; the old leader comes back
// as a follower and catches up.
func TestNetworkStatusThreeOrderers(t *testing.T) {
	dir := networkUp(t, "--orderers", "3", "--orgs", "2", "--peers-per-org", "2")
	leader := func(st statusJSON) (name string, term uint64, leaders int) {
		for _, n := range st.Nodes {
			if n.Role == "orderer" && n.Healthy && n.Leader {
				name, term = n.Name, n.Term
				leaders++
			}
		}
		return name, term, leaders
	}
	st := waitStatus(t, dir, "one leader and equal heights", func(st statusJSON) bool {
		_, ok := allHeightsEqual(st)
		_, _, leaders := leader(st)
		return ok && leaders == 1
	})
	orderers, peers := 0, 0
	for _, n := range st.Nodes {
		switch n.Role {
		case "orderer":
			orderers++
		case "peer":
			peers++
		}
	}
	if orderers != 3 || peers != 4 {
		t.Fatalf("status lists %d orderers and %d peers, want 3 and 4", orderers, peers)
	}
	old, oldTerm, _ := leader(st)
	if oldTerm == 0 {
		t.Fatalf("leader %s reports term 0", old)
	}
	before, _ := allHeightsEqual(st)
	submitVia(t, dir, 0, "three-orderers")
	st = waitStatus(t, dir, "every node a block higher", func(st statusJSON) bool {
		h, ok := allHeightsEqual(st)
		return ok && h > before
	})

	if out, err := cairn(t, "network", "stop", old, "--kill", "--dir", dir); err != nil {
		t.Fatalf("network stop %s: %v\n%s", old, err, out)
	}
	st = waitStatus(t, dir, "a new leader", func(st statusJSON) bool {
		name, term, leaders := leader(st)
		return leaders == 1 && name != old && term > oldTerm
	})
	submitVia(t, dir, 1, "after-leader-crash")
	if out, err := cairn(t, "network", "start", old, "--dir", dir); err != nil {
		t.Fatalf("network start %s: %v\n%s", old, err, out)
	}
	st = waitStatus(t, dir, "old leader back and caught up", func(st statusJSON) bool {
		_, ok := allHeightsEqual(st)
		_, _, leaders := leader(st)
		return ok && leaders == 1
	})
	if name, _, _ := leader(st); name == old {
		t.Logf("%s leads again", old)
	}
}
