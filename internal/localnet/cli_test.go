package localnet_test

import (
	"encoding/json"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/cairn-ledger/cairn/internal/localnet"
)

// TestNetworkUpDetachAndDown runs the commands a user runs: `cairn network up
// --detach` must start the default consortium (3 orderers, Org1MSP and
// Org2MSP with 2 peers each, chaincode basic) well within 30 s and describe
// all of it in network.json, and `cairn network down` must leave no process
// behind.
func TestNetworkUpDetachAndDown(t *testing.T) {
	dir := t.TempDir()
	began := time.Now()
	out, err := exec.Command(cairnBin, "network", "up", "--detach", "--dir", dir).CombinedOutput()
	if err != nil {
		t.Fatalf("network up: %v\n%s", err, out)
	}
	elapsed := time.Since(began)
	if !strings.Contains(string(out), "network ready in") {
		t.Fatalf("network up printed no ready line:\n%s", out)
	}
	if elapsed > 30*time.Second {
		t.Fatalf("network up took %s, want < 30s", elapsed)
	}
	t.Logf("network up --detach: %s", elapsed)

	info, err := localnet.LoadInfo(dir)
	if err != nil {
		t.Fatal(err)
	}
	if info.Channel != "mychannel" || len(info.Chaincodes) != 1 || info.Chaincodes[0] != "basic" {
		t.Fatalf("network.json channel/chaincodes = %q %v", info.Channel, info.Chaincodes)
	}
	if len(info.Organizations) != 2 || info.Organizations[0].MSPID != "Org1MSP" || info.Organizations[1].MSPID != "Org2MSP" ||
		len(info.Organizations[0].Peers) != 2 || len(info.Organizations[1].Peers) != 2 {
		t.Fatalf("network.json organizations = %+v, want Org1MSP and Org2MSP with 2 peers each", info.Organizations)
	}
	if len(info.Orderers) != 3 {
		t.Fatalf("network.json lists %d orderers, want 3", len(info.Orderers))
	}
	for _, p := range []string{info.Organizations[1].Peers[1].TLSRootCert, info.Organizations[0].Users["user1"].Cert, info.Organizations[1].Users["admin"].Key, info.Orderers[2].TLSRootCert} {
		if !filepath.IsAbs(p) {
			t.Fatalf("path %q in network.json is not absolute", p)
		}
		if _, err := os.Stat(p); err != nil {
			t.Fatal(err)
		}
	}

	raw, err := os.ReadFile(filepath.Join(dir, localnet.StateFile))
	if err != nil {
		t.Fatal(err)
	}
	var st struct {
		Processes []localnet.Process `json:"processes"`
	}
	if err := json.Unmarshal(raw, &st); err != nil {
		t.Fatal(err)
	}
	roles := map[string]int{}
	for _, p := range st.Processes {
		roles[p.Role]++
	}
	if roles["orderer"] != 3 || roles["peer"] != 4 || roles["chaincode"] != 4 || len(st.Processes) != 11 {
		t.Fatalf("processes by role %v, want 3 orderers, 4 peers and a chaincode process per peer", roles)
	}
	for _, p := range st.Processes {
		if !running(p.PID) {
			t.Fatalf("%s (pid %d) is not running after up --detach", p.Name, p.PID)
		}
	}

	// Every node serves its operations endpoint.
	for _, p := range st.Processes {
		if p.OperationsAddress == "" {
			continue
		}
		for _, path := range []string{"/healthz", "/metrics"} {
			resp, err := http.Get("http://" + p.OperationsAddress + path)
			if err != nil {
				t.Fatalf("%s %s: %v", p.Name, path, err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				t.Fatalf("%s %s: %s %s", p.Name, path, resp.Status, body)
			}
			if path == "/metrics" && !strings.Contains(string(body), "go_goroutines") && !strings.Contains(string(body), "cairn_") {
				t.Fatalf("%s /metrics exposes no metrics:\n%s", p.Name, body)
			}
		}
	}

	out, err = exec.Command(cairnBin, "network", "down", "--dir", dir).CombinedOutput()
	if err != nil {
		t.Fatalf("network down: %v\n%s", err, out)
	}
	for _, p := range st.Processes {
		if running(p.PID) {
			t.Fatalf("%s (pid %d) still running after network down", p.Name, p.PID)
		}
	}
}

// running reports whether pid is a live process; a zombie (exited, not yet
// reaped by whoever adopted it) is not running.
func running(pid int) bool {
	if syscall.Kill(pid, 0) != nil {
		return false
	}
	raw, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "stat"))
	if err != nil {
		return false
	}
	i := strings.LastIndexByte(string(raw), ')')
	return i < 0 || i+2 >= len(raw) || raw[i+2] != 'Z'
}

// TestNetworkUpForegroundStopsOnSignal runs `cairn network up` in the
// foreground, as `make run` does (the smallest shape, to keep it quick), and
// checks Ctrl-C (SIGINT) stops every process it started.
func TestNetworkUpForegroundStopsOnSignal(t *testing.T) {
	dir := t.TempDir()
	cmd := exec.Command(cairnBin, "network", "up", "--dir", dir, "--orgs", "1", "--peers-per-org", "1", "--orderers", "1")
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = cmd.Stdout
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill()
	ready := make(chan string, 1)
	go func() {
		var seen strings.Builder
		buf := make([]byte, 4096)
		for {
			n, err := stdout.Read(buf)
			seen.Write(buf[:n])
			if strings.Contains(seen.String(), "press Ctrl-C to stop") {
				ready <- seen.String()
				io.Copy(io.Discard, stdout)
				return
			}
			if err != nil {
				ready <- seen.String()
				return
			}
		}
	}()
	var out string
	select {
	case out = <-ready:
	case <-time.After(60 * time.Second):
		t.Fatal("network up did not become ready")
	}
	if !strings.Contains(out, "network ready in") {
		t.Fatalf("no ready line:\n%s", out)
	}
	raw, err := os.ReadFile(filepath.Join(dir, localnet.StateFile))
	if err != nil {
		t.Fatal(err)
	}
	var st struct {
		Processes []localnet.Process `json:"processes"`
	}
	if err := json.Unmarshal(raw, &st); err != nil {
		t.Fatal(err)
	}
	if err := cmd.Process.Signal(syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("network up exited with %v after SIGINT", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("network up did not exit after SIGINT")
	}
	for _, p := range st.Processes {
		if running(p.PID) {
			t.Fatalf("%s (pid %d) still running after Ctrl-C", p.Name, p.PID)
		}
	}
}
